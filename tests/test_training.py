"""Sampling, the training loop, checkpoints and resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gsm3_ops.config import TrainingConfig
from gsm3_ops.errors import TrainingError
from gsm3_ops.model.bundle import BundleSpec
from gsm3_ops.training.checkpoint import load_checkpoint
from gsm3_ops.training.sampling import (
    BatchSampler,
    TrainingData,
    gather,
    iterations_per_epoch,
)
from gsm3_ops.training.trainer import train_ensemble, train_member

ROOT = Path(__file__).resolve().parents[1]


def toy_data(n_cells: int = 12, n_sites: int = 4, n_time: int = 80, seed: int = 0) -> TrainingData:
    """A learnable world: the target is a decaying memory of the first input."""
    rng = np.random.default_rng(seed)
    n = n_cells + n_sites
    x = rng.normal(size=(n, n_time, 3)).astype(np.float32)
    level = np.zeros((n, n_time))
    for t in range(1, n_time):
        level[:, t] = 0.7 * level[:, t - 1] + 0.5 * x[:, t, 0]
    y = np.stack([np.tanh(level), np.tanh(level) * 0.8], axis=-1).astype(np.float32)
    y[rng.random(y.shape[:2]) < 0.5, 0] = np.nan  # gappy SMAP
    y[:n_cells, :, 1] = np.nan  # cells have no in-situ target
    return TrainingData(x, y, np.r_[np.zeros(n_cells, bool), np.ones(n_sites, bool)])


def toy_spec(hidden: int = 16) -> BundleSpec:
    return BundleSpec(
        forcings=["t2m", "d2m"], statics=["sand"], targets=["smap", "insitu"],
        hidden_size=hidden, dropout=0.5, stats={}, grid="M09", product_target="insitu",
    )  # fmt: skip


def toy_cfg(**kw) -> TrainingConfig:
    base = dict(batch_size=8, seq_len=30, epochs=4, threads=1, device="cpu", checkpoint_every=1)
    return TrainingConfig(**(base | kw))


def test_epoch_size_follows_hydrodl() -> None:
    # 412 cells x 366 days, batch 128 x 365: p = 0.3099 -> ceil(log .01 / log .6901) = 13.
    assert iterations_per_epoch(412, 366, 128, 365) == 13
    assert iterations_per_epoch(10, 30, 128, 30) == 1


def test_sampler_share_and_gather_match_numpy() -> None:
    data = toy_data()
    a = BatchSampler(data, 8, 30, 0.25, seed=3)
    b = BatchSampler(data, 8, 30, 0.25, seed=3)
    locs, starts = a.draw()
    assert data.is_site[locs].sum() == 2 and (~data.is_site[locs]).sum() == 6
    xb, yb = gather(torch.from_numpy(data.x), torch.from_numpy(data.y), locs, starts, 30)
    xn, yn = b.sample()
    assert xb.shape == (30, 8, 3) and np.array_equal(xb.numpy(), xn)
    assert np.array_equal(yb.numpy(), yn, equal_nan=True)
    assert np.array_equal(xn[:, 0], data.x[locs[0], starts[0] : starts[0] + 30])


def test_sampler_state_round_trip() -> None:
    s = BatchSampler(toy_data(), 8, 30, 0.25, seed=1)
    s.draw()
    state = s.state()
    first = s.draw()
    s.set_state(state)
    again = s.draw()
    assert all(np.array_equal(p, q) for p, q in zip(first, again, strict=True))


def test_training_lowers_the_loss_with_adadelta_and_adam() -> None:
    data = toy_data()
    for opt, lr in (("adadelta", 1.0), ("adam", 0.01)):
        r = train_member(data, toy_spec(), toy_cfg(epochs=8, optimizer=opt, learning_rate=lr),
                         seed=0, progress=False)  # fmt: skip
        assert np.mean(r.losses[-10:]) < 0.7 * np.mean(r.losses[:10]), opt
        assert not r.net.training


def test_a_shared_head_learns_from_both_teachers() -> None:
    spec = BundleSpec(**{**toy_spec().__dict__, "heads": "shared"})
    r = train_member(toy_data(), spec, toy_cfg(epochs=8), seed=0, progress=False)
    assert r.net.linear_out.out_features == 1
    assert np.mean(r.losses[-10:]) < 0.7 * np.mean(r.losses[:10])


def test_same_seed_same_weights_other_seed_differs() -> None:
    data, spec, cfg = toy_data(), toy_spec(), toy_cfg(epochs=2)
    a, b, c = (train_member(data, spec, cfg, s, progress=False).net for s in (0, 0, 1))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.linear_out.weight, c.linear_out.weight)


def test_nan_guard_stops_with_a_clear_message() -> None:
    data = toy_data()
    data.x[:, :, 1] = np.inf
    with pytest.raises(TrainingError, match=r"NaN/inf 5 times.*learning_rate"):
        train_member(data, toy_spec(), toy_cfg(), seed=0, progress=False)


def test_ensemble_refuses_data_without_targets() -> None:
    data = toy_data()
    data.y[:] = np.nan
    with pytest.raises(TrainingError, match="no valid target"):
        train_ensemble(data, toy_spec(), toy_cfg(), progress=False)


def test_checkpoint_from_other_settings_is_refused(tmp_path) -> None:
    ckpt = tmp_path / "m.ckpt.safetensors"
    train_member(toy_data(), toy_spec(), toy_cfg(epochs=1), 0, False, checkpoint=ckpt)
    assert load_checkpoint(ckpt).complete
    with pytest.raises(TrainingError, match="other settings"):
        train_member(toy_data(), toy_spec(), toy_cfg(epochs=1), 1, False, checkpoint=ckpt)


def test_finished_checkpoint_is_reused_and_epochs_can_be_extended(tmp_path) -> None:
    ckpt = tmp_path / "m.ckpt.safetensors"
    data, spec = toy_data(), toy_spec()
    short = train_member(data, spec, toy_cfg(epochs=2), 0, False, checkpoint=ckpt)
    again = train_member(data, spec, toy_cfg(epochs=2), 0, False, checkpoint=ckpt)
    assert again.resumed_at == again.iterations == short.iterations
    assert torch.equal(again.net.linear_out.weight, short.net.linear_out.weight)
    longer = train_member(data, spec, toy_cfg(epochs=4), 0, False, checkpoint=ckpt)
    straight = train_member(data, spec, toy_cfg(epochs=4), 0, False)
    assert longer.resumed_at == short.iterations
    assert torch.equal(longer.net.linear_out.weight, straight.net.linear_out.weight)


# The child trains slowly enough (a sleep per batch, which changes no number) to be killed
# between two checkpoints.
_CHILD = """
import sys, time
import gsm3_ops.training.trainer as trainer
from tests.test_training import toy_data, toy_spec, toy_cfg
_gather = trainer.gather
def slow_gather(*a, **k):
    time.sleep(0.02)
    return _gather(*a, **k)
trainer.gather = slow_gather
trainer.train_member(toy_data(), toy_spec(), toy_cfg(epochs=30), 0, False, checkpoint=sys.argv[1])
"""


def test_resume_after_sigkill_gives_the_uninterrupted_weights(tmp_path) -> None:
    ckpt = tmp_path / "member-0.ckpt.safetensors"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(ckpt)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while not ckpt.exists():
            assert child.poll() is None, "the child ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        time.sleep(0.15)  # land between two checkpoints
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    saved = load_checkpoint(ckpt)
    assert not saved.complete and saved.iteration > 0

    data, spec, cfg = toy_data(), toy_spec(), toy_cfg(epochs=30)
    resumed = train_member(data, spec, cfg, 0, False, checkpoint=ckpt)
    straight = train_member(data, spec, cfg, 0, False)
    assert resumed.resumed_at == saved.iteration < resumed.iterations
    assert resumed.losses == pytest.approx(straight.losses, rel=0, abs=0)
    for (name, p), q in zip(
        resumed.net.state_dict().items(), straight.net.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name


def test_checkpoint_holding_a_pickle_is_refused(tmp_path) -> None:
    ckpt = tmp_path / "member-0.ckpt.safetensors"
    torch.save({"iteration": 3}, ckpt)
    with pytest.raises(TrainingError, match=r"cannot read training checkpoint .*member-0"):
        train_member(toy_data(), toy_spec(), toy_cfg(epochs=1), 0, False, checkpoint=ckpt)
