"""Data integration (DI): the latest satellite retrieval available at run time as an input.

Fang and Shen (2020, J. Hydrometeorol. 21:399) feed an LSTM the most recent observation of
its target; hydroDL's cuDNN variant appends the lagged observation as an input channel. Here a
DI model gets two channels after its forcings and statics:

- ``value``: the most recent valid retrieval at least ``lag`` days old (normalised like the
  target), carried forward over the days without one; 0 (the training mean) when there is
  none within ``max_age`` days;
- ``age``: that retrieval's age in days divided by ``max_age``, clipped at 1 (1: none).

Forward fill with an age channel rather than hydroDL's closed loop (the model's own previous
output fed back where no observation exists): it keeps the fused LSTM kernel (a closed loop
needs a Python step loop, several times slower to train), and the age tells the network how
far to trust the value (docs/model.md, "Data integration").

Training draws one lag per sequence from ``latency`` (the configured latency and the later
deliveries operations see); SMAP's own revisit gaps supply the rest of the ages. A daily run
keeps, per cell, the last absorbed value and its day (:func:`absorb`), which gives exactly
what :func:`carry_forward` shifted by the lag gives over a whole series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

N_CHANNELS = 2
RETRIEVALS = "smap"  # the cube variable a DI model absorbs (and its target)
NO_DAY = -(2**31)  # the day index of "no retrieval yet"


@dataclass(frozen=True)
class DISpec:
    """What a DI model absorbs: ``target``'s retrievals, lags drawn from ``latency`` (both
    ends included) in training, none older than ``max_age`` days."""

    target: str
    latency: tuple[int, int]
    max_age: int

    def __post_init__(self) -> None:
        lo, hi = self.latency
        if not 1 <= lo <= hi:
            raise ValueError(f"DI latency {self.latency}: need 1 <= low <= high")
        if self.max_age < hi:
            raise ValueError(f"DI max_age {self.max_age} is below the latency {hi}")

    def to_json(self) -> dict[str, object]:
        """As recorded in ``bundle.json``."""
        return {"target": self.target, "latency": list(self.latency), "max_age": self.max_age}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> DISpec:
        """Inverse of :meth:`to_json`."""
        lo, hi = d["latency"]  # type: ignore[misc]
        return cls(str(d["target"]), (int(lo), int(hi)), int(d["max_age"]))  # type: ignore[call-overload]


def carry_forward(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (locations, time) retrievals with NaN gaps: the last valid value on or before each
    day and that value's day index (:data:`NO_DAY` and NaN where there is none yet)."""
    n_time = obs.shape[1]
    valid = np.isfinite(obs)
    day = np.where(valid, np.arange(n_time)[None, :], NO_DAY)
    day = np.maximum.accumulate(day, axis=1)
    value = np.take_along_axis(np.nan_to_num(obs), np.maximum(day, 0), axis=1)
    return np.where(day == NO_DAY, np.nan, value).astype(np.float32), day.astype(np.int64)


def features(value: np.ndarray, age: np.ndarray, max_age: int) -> np.ndarray:
    """The two DI channels (..., 2) from the absorbed ``value`` (NaN: none) and its ``age``
    in days."""
    none = ~np.isfinite(value) | (age > max_age)
    v = np.where(none, 0.0, np.nan_to_num(value))
    a = np.where(none, 1.0, np.clip(age, 0, max_age) / max_age)
    return np.stack([v, a], axis=-1).astype(np.float32)


def none_features(shape: tuple[int, ...]) -> np.ndarray:
    """The DI channels (*shape, 2) of no retrieval at all: what the open loop sees."""
    out = np.zeros((*shape, N_CHANNELS), np.float32)
    out[..., 1] = 1.0
    return out


def series_features(obs: np.ndarray, lag: int, max_age: int) -> np.ndarray:
    """DI channels (locations, time, 2) over a whole (locations, time) series of retrievals,
    each day seeing the retrievals at least ``lag`` days old."""
    value, day = carry_forward(obs)
    n_time = obs.shape[1]
    src = np.arange(n_time) - lag
    ok = src >= 0
    v = np.full(value.shape, np.nan, np.float32)
    d = np.full(day.shape, NO_DAY, np.int64)
    v[:, ok], d[:, ok] = value[:, src[ok]], day[:, src[ok]]
    age = np.arange(n_time)[None, :] - d
    return features(v, np.where(d == NO_DAY, max_age + 1, age), max_age)


def gather_features(
    value: torch.Tensor,
    day: torch.Tensor,
    locs: torch.Tensor,
    starts: torch.Tensor,
    lags: torch.Tensor,
    seq_len: int,
    max_age: int,
) -> torch.Tensor:
    """Training's DI channels, time-major (seq_len, batch, 2), for windows of the carried
    ``value``/``day`` tensors (locations, time; from :func:`carry_forward`) with one lag per
    window: the same numbers :func:`series_features` gives."""
    t = starts[None, :] + torch.arange(seq_len, device=value.device)[:, None]
    src = t - lags[None, :]
    ok = src >= 0
    idx = src.clamp(min=0)
    v = value[locs[None, :], idx]
    d = day[locs[None, :], idx]
    age = (t - d).to(value.dtype)
    none = ~ok | (d == NO_DAY) | torch.isnan(v) | (age > max_age)
    v = torch.where(none, torch.zeros_like(v), v)
    a = torch.where(none, torch.ones_like(age), age.clamp(min=0) / max_age)
    return torch.stack([v, a], dim=-1)


@dataclass
class DIState:
    """Per cell: the last absorbed retrieval (normalised; NaN: none) and its date as a day
    ordinal (:data:`NO_DAY`: none)."""

    value: np.ndarray
    day: np.ndarray

    @classmethod
    def empty(cls, n: int) -> DIState:
        """No retrieval absorbed yet."""
        return cls(np.full(n, np.nan, np.float32), np.full(n, NO_DAY, np.int64))


def absorb(state: DIState, obs: np.ndarray, obs_day: int) -> DIState:
    """``state`` after absorbing the retrievals ``obs`` (NaN: none) of day ordinal
    ``obs_day``: a cell takes the retrieval when it is newer than what it holds."""
    take = np.isfinite(obs) & (obs_day > state.day)
    return DIState(
        np.where(take, obs, state.value).astype(np.float32), np.where(take, obs_day, state.day)
    )


def state_features(state: DIState, today: int, max_age: int) -> np.ndarray:
    """The DI channels (cells, 2) a day with ordinal ``today`` sees from ``state``."""
    none = state.day == NO_DAY
    age = np.where(none, max_age + 1, today - state.day)
    return features(np.where(none, np.nan, state.value), age, max_age)
