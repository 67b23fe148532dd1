"""Logging for the command line: human-readable lines or JSON, with secrets masked.

Every record passes :class:`RedactFilter`, so a credential that reaches a log message (an
exception text from a client library, a URL with a token) is masked before it is written.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from gsm3_ops.secrets import redact

HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


_CONTEXT: contextvars.ContextVar[dict[str, str] | None]
_CONTEXT = contextvars.ContextVar("gsm3_log_context", default=None)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Records logged inside (in this thread or task) carry ``fields`` (``day``, ``source``)
    as keys of their JSON line; nested contexts add to the outer one."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **{k: str(v) for k, v in fields.items()}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class RedactFilter(logging.Filter):
    """Replace a record's message (arguments merged, exception text included) by its redaction."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = redact(message), None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, and ``day``/``source``/
    ``step``/``status`` from the record's extras or the enclosing :func:`log_context`."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("day", "step", "source", "status"):
            if hasattr(record, key):
                doc[key] = str(getattr(record, key))
        for key, value in (_CONTEXT.get() or {}).items():
            doc.setdefault(key, value)
        return json.dumps(doc)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, never a stale stream."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr


def setup_logging(quiet: bool = False, json_lines: bool = False) -> None:
    """Send log records to stderr, INFO and up (WARNING when ``quiet``), masked, as text or JSON."""
    handler = _CurrentStderr()
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(HUMAN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_gsm3", False):
            root.removeHandler(old)
    handler._gsm3 = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)


def current_setup() -> tuple[bool, bool]:
    """``(quiet, json_lines)`` of the logging now in place, to set up a worker process alike."""
    root = logging.getLogger()
    mine = [h for h in root.handlers if getattr(h, "_gsm3", False)]
    json_lines = any(isinstance(h.formatter, JsonFormatter) for h in mine)
    return root.level >= logging.WARNING, json_lines


class Progress:
    """Periodic progress lines for long loops (a multi-year ingest, a cold start): at most
    one every ``every_s`` seconds, and one at the end, with the rate and an ETA. Log lines,
    not a bar, so they read the same in a terminal, a file or a log shipper."""

    def __init__(self, log: logging.Logger, what: str, total: int, every_s: float = 60.0):
        self.log, self.what, self.total, self.every_s = log, what, total, every_s
        self.done = 0
        self._t0 = self._last = time.monotonic()

    def step(self, n: int = 1) -> None:
        """Count ``n`` more items done; log when due (or when all are done)."""
        self.done += n
        now = time.monotonic()
        if now - self._last < self.every_s and self.done < self.total:
            return
        self._last = now
        rate = self.done / max(now - self._t0, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = "done" if self.done >= self.total else f"ETA {_duration(left)}"
        self.log.info("%s: %d/%d (%.2f/s, %s)", self.what, self.done, self.total, rate, eta,
                      extra={"step": f"{self.done}/{self.total}"})  # fmt: skip


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
