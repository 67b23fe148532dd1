"""The training loop: one ensemble member at a time, seeded, checkpointed and resumable.

Defaults are hydroDL's and the GSM3 paper's: Adadelta (lr 1.0), batches of 128 random
365-day windows, the masked RMSE_smap + RMSE_insitu loss, float32 (as the paper and hydroDL;
``training.bf16`` runs the CUDA forward pass under bf16 autocast). Every ``checkpoint_every``
epochs (hydroDL epochs, see ``sampling.iterations_per_epoch``) the member's whole state is
saved, and a run started again with the same configuration and data resumes from it and ends
with exactly the weights an uninterrupted run would have had.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gsm3_ops.config import TrainingConfig
from gsm3_ops.di import carry_forward, gather_features
from gsm3_ops.errors import TrainingError
from gsm3_ops.model.bundle import BundleSpec
from gsm3_ops.model.device import pick_device
from gsm3_ops.model.loss import masked_multitask_rmse
from gsm3_ops.model.network import GSM3Net
from gsm3_ops.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from gsm3_ops.training.sampling import BatchSampler, TrainingData, gather, iterations_per_epoch

log = logging.getLogger(__name__)

MAX_BAD_LOSSES = 5
# Settings that do not change the weights a run ends with: a checkpoint stays valid across them
# (so a run can be resumed with more threads, or extended with more epochs).
_NOT_FINGERPRINTED = {"threads", "checkpoint_every", "epochs", "max_iterations", "members"}


@dataclass
class MemberResult:
    """A trained member and its loss history."""

    net: GSM3Net
    losses: list[float]
    iterations: int
    seconds: float
    resumed_at: int = 0  # the iteration a checkpoint resumed from (0: a fresh start)


def total_iterations(data: TrainingData, cfg: TrainingConfig) -> int:
    """Epochs x hydroDL's iterations per epoch, capped by ``max_iterations``."""
    per_epoch = iterations_per_epoch(data.x.shape[0], data.x.shape[1], cfg.batch_size, cfg.seq_len)
    n = cfg.epochs * per_epoch
    return min(n, cfg.max_iterations) if cfg.max_iterations else n


def make_optimizer(net: GSM3Net, cfg: TrainingConfig) -> torch.optim.Optimizer:
    """Adadelta (hydroDL's choice, lr 1.0) or Adam, as configured."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    return torch.optim.Adadelta(net.parameters(), lr=cfg.learning_rate)


def fingerprint(data: TrainingData, spec: BundleSpec, cfg: TrainingConfig, seed: int) -> str:
    """A hash of what decides a run's weights: settings, architecture, seed and data."""
    h = hashlib.sha256()
    settings = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _NOT_FINGERPRINTED}
    arch = [spec.inputs, spec.targets, spec.hidden_size, spec.dropout, spec.heads, spec.di]
    h.update(json.dumps([settings, arch, seed, data.x.shape, data.y.shape]).encode())
    # A strided sample of the arrays tells datasets apart without hashing gigabytes.
    for a in (data.x, data.y, data.is_site):
        step = max(1, a.shape[0] // 512)
        h.update(np.ascontiguousarray(a[::step]).tobytes())
    return h.hexdigest()[:24]


def train_member(
    data: TrainingData,
    spec: BundleSpec,
    cfg: TrainingConfig,
    seed: int,
    progress: bool = True,
    checkpoint: Path | None = None,
    label: str | None = None,
) -> MemberResult:
    """Train one member on ``data`` from seed ``seed`` (initial weights, batches, dropout).

    Parameters
    ----------
    checkpoint
        File to checkpoint to every ``cfg.checkpoint_every`` epochs and at the end; when it
        exists the run resumes from it (it must come from the same settings, seed and data).
    label
        Name shown on the progress bar (default: the seed).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device, "training.device")
    with torch.random.fork_rng(devices=[]):
        # Seed the initial weights without disturbing anyone else's global RNG state.
        torch.manual_seed(seed)
        net = spec.new_network()
    net.to(device).train()
    generator = torch.Generator(device=device).manual_seed(seed)
    sampler = BatchSampler(data, cfg.batch_size, cfg.seq_len, cfg.insitu_share, seed)
    opt = make_optimizer(net, cfg)
    per_epoch = iterations_per_epoch(*data.x.shape[:2], cfg.batch_size, cfg.seq_len)
    n_iter = total_iterations(data, cfg)
    every = cfg.checkpoint_every * per_epoch
    autocast = device.type == "cuda" and cfg.bf16
    x_all = torch.from_numpy(data.x).to(device)
    y_all = torch.from_numpy(data.y).to(device)
    batch = _batcher(data, spec, sampler, x_all, y_all, cfg.seq_len)

    fp = fingerprint(data, spec, cfg, seed)
    losses: list[float] = []
    bad, start = 0, 0
    if checkpoint is not None and Path(checkpoint).exists():
        start, bad = _restore(checkpoint, fp, net, opt, generator, sampler, losses)
        if start > n_iter:
            raise TrainingError(
                f"checkpoint {checkpoint} is at iteration {start}, past this run's {n_iter} "
                "iterations; raise training.epochs/max_iterations or delete the checkpoint"
            )
        log.info("resuming %s from iteration %d of %d", label or seed, start, n_iter)

    def save(complete: bool) -> None:
        if checkpoint is None:
            return
        save_checkpoint(
            checkpoint,
            Checkpoint(
                model=net.state_dict(), optimizer=opt.state_dict(),
                torch_rng=generator.get_state(), sampler_rng=sampler.state(), iteration=it,
                losses=losses, bad_losses=bad, fingerprint=fp, complete=complete,
            ),
        )  # fmt: skip

    t0 = time.perf_counter()
    it = start
    bar = tqdm(
        total=n_iter, initial=start, desc=f"member {label or seed}", disable=not progress,
        unit="batch", mininterval=1.0,
    )  # fmt: skip
    while it < n_iter:
        xb, yb = batch()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            pred, _ = net(xb, generator=generator)
        loss = masked_multitask_rmse(pred, yb)
        value = loss.item()
        opt.zero_grad(set_to_none=True)
        it += 1
        if not np.isfinite(value):
            bad += 1
            if bad >= MAX_BAD_LOSSES:
                raise TrainingError(
                    f"loss was NaN/inf {bad} times in a row at iteration {it} (member "
                    f"{label or seed}); check the inputs for non-finite values or lower "
                    f"training.learning_rate ({cfg.learning_rate})"
                )
        else:
            bad = 0
            loss.backward()
            opt.step()
            losses.append(value)
        done = it - start
        bar.update(1)
        bar.set_postfix(
            loss=f"{value:.4f}",
            seq_s=f"{done * cfg.batch_size / (time.perf_counter() - t0):.1f}",
            refresh=False,
        )
        if every and it % every == 0 and it < n_iter:
            save(complete=False)
    bar.close()
    if start < n_iter:
        save(complete=True)  # a rerun of a finished member then costs nothing
    net.eval()
    return MemberResult(net, losses, n_iter, time.perf_counter() - t0, resumed_at=start)


def _batcher(
    data: TrainingData,
    spec: BundleSpec,
    sampler: BatchSampler,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    seq_len: int,
) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """The next batch's inputs and targets; a DI model's inputs end with its two channels,
    each window seeing its target's retrievals at a lag drawn from the DI latency."""
    di = spec.di_spec
    if di is None:
        return lambda: gather(x_all, y_all, *sampler.draw(), seq_len)
    value, day = carry_forward(data.y[:, :, spec.targets.index(di.target)])
    device = x_all.device
    value_t, day_t = torch.from_numpy(value).to(device), torch.from_numpy(day).to(device)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        locs, starts = sampler.draw()
        lags = sampler.draw_lags(*di.latency)
        xb, yb = gather(x_all, y_all, locs, starts, seq_len)
        idx = [torch.from_numpy(a).to(device) for a in (locs, starts, lags)]
        extra = gather_features(value_t, day_t, *idx, seq_len, di.max_age)
        return torch.cat([xb, extra], dim=-1), yb

    return batch


def _restore(
    path: Path,
    fp: str,
    net: GSM3Net,
    opt: torch.optim.Optimizer,
    generator: torch.Generator,
    sampler: BatchSampler,
    losses: list[float],
) -> tuple[int, int]:
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        raise TrainingError(str(exc)) from None
    if ckpt.fingerprint != fp:
        raise TrainingError(
            f"checkpoint {path} was written by a run with other settings, seed or data; "
            "delete it to start afresh, or train into another output directory"
        )
    net.load_state_dict(ckpt.model)
    opt.load_state_dict(ckpt.optimizer)
    generator.set_state(ckpt.torch_rng.to(generator.get_state().device))
    sampler.set_state(ckpt.sampler_rng)
    losses.extend(ckpt.losses)
    return ckpt.iteration, ckpt.bad_losses


def train_ensemble(
    data: TrainingData,
    spec: BundleSpec,
    cfg: TrainingConfig,
    progress: bool = True,
    checkpoint_dir: Path | None = None,
) -> list[MemberResult]:
    """Train ``cfg.members`` members with seeds ``cfg.seed``, ``cfg.seed + 1``, ...

    With ``checkpoint_dir``, member k checkpoints to ``member-<k>.ckpt.safetensors`` there
    and an interrupted ensemble resumes where it stopped (finished members are not redone).
    """
    if not np.isfinite(data.y).any():
        raise TrainingError("training data hold no valid target value")
    return [
        train_member(
            data, spec, cfg, cfg.seed + k, progress,
            checkpoint=None if checkpoint_dir is None
            else Path(checkpoint_dir) / f"member-{k}.ckpt.safetensors",
            label=f"{k + 1}/{cfg.members}",
        )
        for k in range(cfg.members)
    ]  # fmt: skip
