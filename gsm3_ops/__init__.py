"""gsm3-ops: daily 9 km surface soil moisture from the GSM3 multitask LSTM."""

__version__ = "0.1.0"
