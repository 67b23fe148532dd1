"""Training speed: the full GSM3 training step beside a bare ``torch.nn.LSTM`` of its shape.

The full step is the trainer's own loop (``training.trainer.train_member``): drawing a batch
of 128 random (location, 365-day window) pairs and gathering it on the device, the forward
pass (input linear + ReLU, weight-drop LSTM with hidden 256, output linear; bf16 autocast on
CUDA), the masked multitask loss, backward and the Adadelta step. Its throughput is the
difference between two runs of different length, so set-up and the first (warm-up) batch
cancel out. The bare reference is ``torch.nn.LSTM(256, 256)`` forward and backward on a
(365, 128, 256) input, timed in the same process, in the same precision, interleaved with
the training runs so that both see the same machine load.

    python -m benchmarks.train_speed --json train_speed.json [--device cuda]
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from benchmarks.common import parser, spec_for, write
from gsm3_ops.config import TrainingConfig
from gsm3_ops.model.device import pick_device
from gsm3_ops.training.sampling import TrainingData
from gsm3_ops.training.trainer import train_member
from gsm3_ops.variables import feature_set


def _data(n_locations: int, n_days: int, seed: int) -> TrainingData:
    """Random inputs of the gsm3 feature set's width and gappy targets (speed only)."""
    rng = np.random.default_rng(seed)
    forcings, statics = feature_set("gsm3")
    x = rng.standard_normal((n_locations, n_days, len(forcings) + len(statics)), np.float32)
    y = rng.standard_normal((n_locations, n_days, 2), np.float32)
    y[rng.random(y.shape) < 0.6] = np.nan
    is_site = np.zeros(n_locations, bool)
    is_site[: n_locations // 10] = True
    return TrainingData(x, y, is_site)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_lstm(cfg: TrainingConfig, hidden: int, device: torch.device, steps: int) -> float:
    """Seconds per forward + backward of a bare nn.LSTM (mean over ``steps`` after one
    warm-up), in the training's precision."""
    lstm = torch.nn.LSTM(hidden, hidden).to(device)
    x = torch.randn(cfg.seq_len, cfg.batch_size, hidden, device=device)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and cfg.bf16
        else contextlib.nullcontext()
    )

    def step() -> None:
        with autocast:
            out, _ = lstm(x)
        out.float().sum().backward()

    step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - t) / steps


def full_step(data: TrainingData, cfg: TrainingConfig, short: int, long: int) -> float:
    """Seconds per training step: (time of ``long`` - time of ``short`` steps) / difference."""
    spec = spec_for(*feature_set("gsm3"), ["smap", "insitu"])
    times = []
    for n in (short, long):
        run = cfg.model_copy(update={"max_iterations": n})
        times.append(train_member(data, spec, run, seed=cfg.seed, progress=False).seconds)
    return (times[1] - times[0]) / (long - short)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 3 CPU, 50 GPU)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of both timings")
    args = p.parse_args()
    t0 = time.perf_counter()
    device = pick_device(args.device)
    steps = args.steps or (50 if device.type == "cuda" else 3)
    cfg = TrainingConfig(
        device=device.type, threads=args.threads, seed=args.seed, checkpoint_every=0, epochs=1
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    hidden = spec_for(*feature_set("gsm3"), ["smap", "insitu"]).hidden_size
    data = _data(1000, 730, args.seed)
    bare, full = [], []
    for _ in range(args.rounds):
        bare.append(bare_lstm(cfg, hidden, device, steps))
        full.append(full_step(data, cfg, 1, 1 + steps))
    bare_s, full_s = float(np.median(bare)), float(np.median(full))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {
        "train_seq_per_s": round(cfg.batch_size / full_s, 2),
        "bare_seq_per_s": round(cfg.batch_size / bare_s, 2),
        "ratio": round(bare_s / full_s, 3),
        "device": f"{device.type} ({name})",
        "precision": "bf16 autocast" if device.type == "cuda" and cfg.bf16 else "float32",
        "shape": {
            "batch": cfg.batch_size,
            "seq_len": cfg.seq_len,
            "hidden": hidden,
            "inputs": data.x.shape[2],
        },
        "seconds_per_step": {
            "train": [round(v, 4) for v in full],
            "bare": [round(v, 4) for v in bare],
        },
        "timed_steps": steps,
    }
    write(args.json, result, t0)


if __name__ == "__main__":
    main()
