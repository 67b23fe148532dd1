"""Training checkpoints: one safetensors file per member, with its JSON state in the header.

A checkpoint holds everything that decides the rest of a run, so that a run resumed after a
crash (even a SIGKILL) ends with the same weights as one that never stopped: the network
weights, the optimiser's state, the dropout generator's state (torch), the batch sampler's
generator state (numpy), the iteration count and the loss history. Tensors go in the
safetensors body and everything else in its JSON metadata; nothing is pickled, so loading a
checkpoint never runs code. A file is written beside the old one and renamed over it, so a
kill during the write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from gsm3_ops.errors import TrainingError

FORMAT = "gsm3-checkpoint-1"


class CheckpointError(TrainingError):
    """A checkpoint that cannot be read or belongs to another run."""


@dataclass
class Checkpoint:
    """The restorable state of one member's training run."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # torch optimiser state_dict (tensors inside)
    torch_rng: torch.Tensor
    sampler_rng: dict[str, Any]
    iteration: int
    losses: list[float]
    bad_losses: int
    fingerprint: str
    complete: bool = False


def save_checkpoint(path: Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically (a temporary file renamed over the old one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in ckpt.model.items()}
    tensors["rng.torch"] = ckpt.torch_rng.detach().cpu().contiguous()
    opt_state: dict[str, dict[str, Any]] = {}
    for idx, entry in ckpt.optimizer["state"].items():
        opt_state[str(idx)] = {}
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                opt_state[str(idx)][name] = value
    meta = {
        "format": FORMAT,
        "iteration": ckpt.iteration,
        "losses": ckpt.losses,
        "bad_losses": ckpt.bad_losses,
        "fingerprint": ckpt.fingerprint,
        "complete": ckpt.complete,
        "sampler_rng": ckpt.sampler_rng,
        "optimizer_param_groups": ckpt.optimizer["param_groups"],
        "optimizer_scalars": opt_state,
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, tmp, metadata={"state": json.dumps(meta)})
    with open(tmp, "rb") as fh:  # the rename must not overtake the data on disk
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    try:
        with safe_open(path, framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["state"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot read training checkpoint {path}: {exc}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} training checkpoint")
    state: dict[int, dict[str, Any]] = {
        int(i): dict(v) for i, v in meta["optimizer_scalars"].items()
    }
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    return Checkpoint(
        model={k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
        optimizer={"state": state, "param_groups": meta["optimizer_param_groups"]},
        torch_rng=tensors["rng.torch"],
        sampler_rng=meta["sampler_rng"],
        iteration=int(meta["iteration"]),
        losses=[float(v) for v in meta["losses"]],
        bad_losses=int(meta["bad_losses"]),
        fingerprint=str(meta["fingerprint"]),
        complete=bool(meta["complete"]),
    )
