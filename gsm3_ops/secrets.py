"""Keep credentials out of messages: every error and log line that leaves a source passes here."""

from __future__ import annotations

import os
import re

# Environment variables whose values are secrets wherever they appear.
_SECRET_NAME = re.compile(r"(KEY|TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL)", re.IGNORECASE)
# Not secret by name, but an account identifier that should not reach shared logs either.
_ACCOUNT_NAMES = ("EARTHDATA_USERNAME", "EARTHDATA_USER", "CDSAPI_URL_USER")
_MIN_LEN = 4  # shorter values would blank out ordinary words
MASK = "***"


def secret_values() -> list[str]:
    """Values of environment variables whose names mark them as secrets, longest first."""
    values = {
        v
        for k, v in os.environ.items()
        if (_SECRET_NAME.search(k) or k in _ACCOUNT_NAMES) and len(v) >= _MIN_LEN
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every secret value (and ``key: ...`` / ``password=...`` pairs) masked."""
    for value in secret_values():
        text = text.replace(value, MASK)
    return re.sub(
        r"(?i)\b(key|token|password|passwd|secret)(\s*[:=]\s*)([^\s,;'\"]+)",
        lambda m: f"{m.group(1)}{m.group(2)}{MASK}",
        text,
    )
