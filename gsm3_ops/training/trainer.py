"""The training loop: one ensemble member at a time, seeded, with a NaN guard and progress."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from gsm3_ops.config import TrainingConfig
from gsm3_ops.model.bundle import BundleSpec
from gsm3_ops.model.loss import masked_multitask_rmse
from gsm3_ops.model.network import GSM3Net
from gsm3_ops.training.sampling import BatchSampler, TrainingData, iterations_per_epoch

log = logging.getLogger(__name__)

MAX_BAD_LOSSES = 5


class TrainingError(RuntimeError):
    """Training that cannot go on (repeated NaN loss, no data)."""


@dataclass
class MemberResult:
    """A trained member and its loss history."""

    net: GSM3Net
    losses: list[float]
    iterations: int
    seconds: float


def total_iterations(data: TrainingData, cfg: TrainingConfig) -> int:
    """Epochs x hydroDL's iterations per epoch, capped by ``max_iterations``."""
    per_epoch = iterations_per_epoch(data.x.shape[0], data.x.shape[1], cfg.batch_size, cfg.seq_len)
    n = cfg.epochs * per_epoch
    return min(n, cfg.max_iterations) if cfg.max_iterations else n


def _optimizer(net: GSM3Net, cfg: TrainingConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    return torch.optim.Adadelta(net.parameters(), lr=cfg.learning_rate)


def train_member(
    data: TrainingData, spec: BundleSpec, cfg: TrainingConfig, seed: int, progress: bool = True
) -> MemberResult:
    """Train one member on ``data`` from seed ``seed`` (initial weights, batches, dropout)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with torch.random.fork_rng(devices=[]):
        # Seed the initial weights without disturbing anyone else's global RNG state.
        torch.manual_seed(seed)
        net = spec.new_network()
    net.train()
    generator = torch.Generator().manual_seed(seed)
    sampler = BatchSampler(data, cfg.batch_size, cfg.seq_len, cfg.insitu_share, seed)
    opt = _optimizer(net, cfg)
    n_iter = total_iterations(data, cfg)
    losses: list[float] = []
    bad = 0
    t0 = time.perf_counter()
    bar = tqdm(range(n_iter), desc=f"member seed {seed}", disable=not progress, unit="batch")
    for _ in bar:
        xb, yb = sampler.sample()
        pred, _ = net(torch.from_numpy(xb), generator=generator)
        loss = masked_multitask_rmse(pred, torch.from_numpy(yb))
        if not torch.isfinite(loss):
            bad += 1
            if bad >= MAX_BAD_LOSSES:
                raise TrainingError(
                    f"loss was NaN/inf {bad} times in a row (seed {seed}); check the inputs "
                    "for non-finite values or lower the learning rate"
                )
            opt.zero_grad()
            continue
        bad = 0
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        elapsed = time.perf_counter() - t0
        bar.set_postfix(
            loss=f"{losses[-1]:.4f}", seq_s=f"{len(losses) * cfg.batch_size / elapsed:.0f}"
        )
    net.eval()
    return MemberResult(net, losses, n_iter, time.perf_counter() - t0)


def train_ensemble(
    data: TrainingData, spec: BundleSpec, cfg: TrainingConfig, progress: bool = True
) -> list[MemberResult]:
    """Train ``cfg.members`` members with seeds ``cfg.seed``, ``cfg.seed + 1``, ..."""
    if not np.isfinite(data.y).any():
        raise TrainingError("training data hold no valid target value")
    return [train_member(data, spec, cfg, cfg.seed + k, progress) for k in range(cfg.members)]
