"""Random (location, window) batches, as in hydroDL, from grid cells and in-situ sites.

A batch holds ``batch_size`` pairs of a location and a ``seq_len``-day window starting on a
random day. A share of the pairs (``insitu_share``) comes from in-situ sites, whose target
rows hold the in-situ series and the SMAP series of the site's cell; the rest come from grid
cells, whose rows hold SMAP only. Which pairs are drawn is decided by a seeded numpy
generator whose state can be saved and restored (checkpoints), and the windows are gathered
with torch on whatever device holds the data, so a GPU never waits for host copies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class TrainingData:
    """Normalised training arrays.

    ``x`` is (locations, time, n_in), ``y`` (locations, time, n_targets) with NaN where a
    target is missing; ``is_site`` marks in-situ locations (the rest are grid cells);
    ``cell``, when known, is the index of each location's grid cell (a site's cell), which
    lets folds hold out a cell together with the sites inside it.
    """

    x: np.ndarray
    y: np.ndarray
    is_site: np.ndarray
    cell: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.x.shape[:2] != self.y.shape[:2] or n != self.is_site.shape[0]:
            raise ValueError(f"inconsistent shapes x{self.x.shape} y{self.y.shape}")
        if self.cell is not None and self.cell.shape != (n,):
            raise ValueError(f"cell index has shape {self.cell.shape}, expected ({n},)")

    def select(self, keep: np.ndarray) -> TrainingData:
        """The locations where ``keep`` (boolean, per location) is True."""
        cell = None if self.cell is None else self.cell[keep]
        return TrainingData(self.x[keep], self.y[keep], self.is_site[keep], cell)


def iterations_per_epoch(n_locations: int, n_time: int, batch_size: int, seq_len: int) -> int:
    """hydroDL's rule: enough batches that each location-day is drawn with ~99 % probability.

    With ``p = batch_size * seq_len / (n_locations * n_time)`` the share of location-days one
    batch covers, an epoch is ``ceil(log(0.01) / log(1 - p))`` batches.
    """
    share = batch_size * seq_len / (n_locations * n_time)
    if share >= 1:
        return 1
    return max(1, math.ceil(math.log(0.01) / math.log(1 - share)))


class BatchSampler:
    """Draws batches: a share from in-situ sites, the rest from grid cells, random windows."""

    def __init__(
        self, data: TrainingData, batch_size: int, seq_len: int, insitu_share: float, seed: int
    ) -> None:
        n_time = data.x.shape[1]
        if n_time < seq_len:
            raise ValueError(f"training period has {n_time} days, shorter than seq_len {seq_len}")
        self.data, self.batch_size, self.seq_len = data, batch_size, seq_len
        self.sites = np.flatnonzero(data.is_site)
        self.cells = np.flatnonzero(~data.is_site)
        if self.cells.size == 0 and self.sites.size == 0:
            raise ValueError("no training locations")
        n_sites = round(batch_size * insitu_share) if self.sites.size else 0
        self.n_sites = n_sites if self.cells.size else batch_size
        self.rng = np.random.default_rng([seed, 15485863])
        self._steps = np.arange(seq_len)

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        """Location index and window start (both (batch,), int64) of the next batch."""
        locs = np.concatenate(
            [
                self.rng.choice(self.sites, self.n_sites) if self.n_sites else [],
                self.rng.choice(self.cells, self.batch_size - self.n_sites),
            ]
        ).astype(np.int64)
        starts = self.rng.integers(0, self.data.x.shape[1] - self.seq_len + 1, self.batch_size)
        return locs, starts

    def draw_lags(self, low: int, high: int) -> np.ndarray:
        """One DI lag per window of the batch, uniform on ``low..high`` days (int64)."""
        return self.rng.integers(low, high + 1, self.batch_size)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """One batch: x (seq_len, batch, n_in) and y (seq_len, batch, n_targets), time-major."""
        locs, starts = self.draw()
        steps = starts[:, None] + self._steps[None, :]
        x = self.data.x[locs[:, None], steps]
        y = self.data.y[locs[:, None], steps]
        return (
            np.ascontiguousarray(x.transpose(1, 0, 2)),
            np.ascontiguousarray(y.transpose(1, 0, 2)),
        )

    def state(self) -> dict[str, Any]:
        """The generator state (JSON-serialisable), for checkpoints."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state saved with :meth:`state`."""
        self.rng.bit_generator.state = state


def gather(
    x: torch.Tensor, y: torch.Tensor, locs: np.ndarray, starts: np.ndarray, seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of ``x`` and ``y`` (locations, time, features tensors, on any device) as
    time-major (seq_len, batch, features) tensors on that device."""
    device = x.device
    loc = torch.from_numpy(locs).to(device, non_blocking=True)
    steps = (
        torch.from_numpy(starts).to(device, non_blocking=True)[None, :]
        + torch.arange(seq_len, device=device)[:, None]
    )
    # Index (time, batch) directly so that the result is already time-major and contiguous.
    return x[loc[None, :], steps], y[loc[None, :], steps]
