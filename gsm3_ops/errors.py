"""The one family of errors a user can act on.

Every error a user or operator can fix derives from :class:`Gsm3Error`; the command line
catches that base once, prints its message as one line and exits with its ``exit_code``:

- 2 (:class:`UsageError`, :class:`ConfigError`): fix the command, the configuration or the
  request before trying again (a bad flag or date, a day the profile cannot serve, a model
  or evaluation setting that cannot work).
- 1 (the others): a run that failed on its data or its machine (a source that could not
  deliver, a damaged cube, bundle or state, training or inference that could not go on, a
  day that could not be published); the next run may succeed once the cause is gone.

Each stage defines its own subclasses beside its code (``CubeError`` in ``cube/``,
``BundleError`` in ``model/bundle.py`` ...), deriving from one of the classes here; a
built-in second base (``ValueError``, ``RuntimeError``) is kept where callers catch it.
Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class Gsm3Error(Exception):
    """Base of every user-facing error; ``exit_code`` is what the command line exits with."""

    exit_code: int = 1


class UsageError(Gsm3Error):
    """A request that cannot be honoured as asked: a flag, date or option to correct."""

    exit_code = 2


class ConfigError(UsageError, ValueError):
    """The configuration file or environment is unreadable or invalid."""


class InputError(Gsm3Error, RuntimeError):
    """Data that is missing, damaged or does not fit: a cube, bundle, state or raw file."""


class SourceError(Gsm3Error, RuntimeError):
    """A source could not deliver a day (not available yet, corrupt file, wrong variable)."""


class TrainingError(Gsm3Error, RuntimeError):
    """Training that cannot go on (repeated NaN loss, no data, a foreign checkpoint)."""


class InferenceError(Gsm3Error, RuntimeError):
    """Inputs that cannot give a correct day (mismatched bundle, missing forcing days)."""


class PublishError(Gsm3Error, RuntimeError):
    """A day could not be published; the product is as it was before the attempt."""


class DayFailedError(Gsm3Error, RuntimeError):
    """A day could not be published; the previous product is intact (see the failure record)."""
