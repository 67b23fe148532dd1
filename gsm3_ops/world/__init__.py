"""The synthetic world's writers: its days as files in the providers' own formats.

The demo and the tests read these files through the real sources, so the pipeline never
knows the world exists. Each module writes one provider's format from the world's fields on
the 9 km window (registry names and units), sampled onto the provider's own grid by
``sample.py``.
"""
