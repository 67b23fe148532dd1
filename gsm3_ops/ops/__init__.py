"""Operations: the daily pipeline and what it needs around it (lock, manifests, model cache)."""
