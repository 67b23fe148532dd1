"""Keep credentials out of messages and published files: every error and log line that leaves a
source passes :func:`redact`; every configuration written out passes :func:`masked_config`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from gsm3_ops.errors import ConfigError

# Environment variables whose values are secrets wherever they appear.
_SECRET_NAME = re.compile(r"(KEY|TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL)", re.IGNORECASE)
# Not secret by name, but an account identifier that should not reach shared logs either.
_ACCOUNT_NAMES = ("EARTHDATA_USERNAME", "EARTHDATA_USER", "CDSAPI_URL_USER")
_MIN_LEN = 4  # shorter values would blank out ordinary words
MASK = "***"
# A configuration key or command-line flag that holds a credential (``client_secret``,
# ``--drive-token``, ``password``, ``api_key``); ``keep_raw`` or ``bundle`` do not match.
_SECRET_KEY = re.compile(r"(?i)(secret|password|passwd|token|credential|(^|[_-])(api_?)?key$)")
# ``name=value`` / ``name: value`` pairs inside a text; a quoted value is masked whole.
_PAIR = re.compile(
    r"(?i)\b([\w-]*(?:key|token|password|passwd|secret))([\"']?\s*[:=]\s*)"
    r"('[^']*'|\"[^\"]*\"|[^\s,;'\"]+)"
)
_configured: set[str] = set()  # credentials found in the configuration (see masked_config)


def secret_values() -> list[str]:
    """Values of secret environment variables and of credentials found in the configuration,
    longest first."""
    values = {
        v
        for k, v in os.environ.items()
        if (_SECRET_NAME.search(k) or k in _ACCOUNT_NAMES)
        and len(v) >= _MIN_LEN
        and not k.endswith("_FILE")  # a path to a secret, not the secret
    }
    return sorted(values | _configured, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every secret value (and ``key: ...`` / ``password=...`` pairs) masked."""
    for value in secret_values():
        text = text.replace(value, MASK)
    return _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def _remember(value: str) -> str:
    if len(value) >= _MIN_LEN:
        _configured.add(value)
    return MASK


def _masked_text(text: str) -> str:
    for m in _PAIR.finditer(text):
        inner = m.group(3).strip("'\"")
        _remember(inner)
        if inner != m.group(3):
            _masked_text(inner)  # a quoted value (a JSON token) holds pairs of its own
    return redact(text)


def _masked_args(items: list | tuple) -> list:
    """Command-line arguments with the value of each credential flag masked (``--x-token V``
    and ``--x-token=V``)."""
    out: list = []
    for i, item in enumerate(items):
        flag = items[i - 1] if i else ""
        if (
            isinstance(flag, str) and flag.startswith("-") and "=" not in flag
            and _SECRET_KEY.search(flag.lstrip("-"))
        ):  # fmt: skip
            out.append(_remember(str(item)))
        elif isinstance(item, str) and item.startswith("-") and "=" in item:
            name, value = item.split("=", 1)
            out.append(f"{name}={_remember(value)}" if _SECRET_KEY.search(name) else item)
        else:
            out.append(masked_config(item))
    return out


def masked_config(value: Any) -> Any:
    """A configuration document (dicts, lists, strings) with every credential masked: values
    of credential-named keys, of credential flags in argument lists, and ``name=value`` pairs
    inside strings (an rclone connection string's ``client_secret=...``). Each masked value
    is remembered, so that :func:`redact` masks it in every later log line and error."""
    if isinstance(value, dict):
        return {
            k: _remember(str(v)) if _SECRET_KEY.search(str(k)) and v not in (None, "") else
            masked_config(v)
            for k, v in value.items()
        }  # fmt: skip
    if isinstance(value, list | tuple):
        return _masked_args(value)
    if isinstance(value, str):
        return _masked_text(value)
    return value


# Credentials that may also be given as a file (``CDSAPI_KEY_FILE=/run/secrets/cds``), as
# container secrets are mounted; rclone's own ``RCLONE_CONFIG_<REMOTE>_<OPTION>`` too.
FILE_CREDENTIALS = (
    "CDSAPI_URL", "CDSAPI_KEY", "EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "EARTHDATA_TOKEN",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
)  # fmt: skip


def load_secret_files() -> list[str]:
    """For each ``<NAME>_FILE`` of a credential whose ``<NAME>`` is unset, set ``<NAME>`` to
    the file's content (one trailing newline dropped); return the names set. A file that
    cannot be read is a :class:`ConfigError` naming the variable and the file."""
    done = []
    for var, path in sorted(os.environ.items()):
        name = var.removesuffix("_FILE")
        if name == var or not (name in FILE_CREDENTIALS or name.startswith("RCLONE_CONFIG_")):
            continue
        if name in os.environ:
            continue  # the variable itself wins
        try:
            value = Path(path).read_text().removesuffix("\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(f"{var}: cannot read {path}: {reason}") from None
        os.environ[name] = value
        done.append(name)
    return done
