"""The torch device a configured name stands for (training and inference alike)."""

from __future__ import annotations

import torch

from gsm3_ops.errors import UsageError


class DeviceError(UsageError, RuntimeError):
    """A device the configuration asks for that this machine does not have."""


def pick_device(name: str, setting: str = "device") -> torch.device:
    """The device ``name`` stands for: ``auto`` is CUDA when available, else the CPU.

    ``setting`` is the configuration key that named it, quoted when the device is missing.
    Raises :class:`DeviceError` when ``cuda`` is asked for and no CUDA device is available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"{setting} is 'cuda' but no CUDA device is available; set it to 'auto' or 'cpu'"
        )
    return torch.device(name)
