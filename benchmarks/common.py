"""What the benchmarks share: the fixture folder, training a member from arrays, whole-series
prediction, scores and the JSON they write.

Every model here keeps the GSM3 paper's hyperparameters (``TrainingConfig`` and
``ModelConfig`` defaults: hidden 256, dropout 0.5, batch 128, 365-day windows, Adadelta
lr 1.0, RMSE_smap + RMSE_insitu); a benchmark only chooses how many epochs it can afford.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsm3_ops.config import ModelConfig, TrainingConfig
from gsm3_ops.evaluation.metrics import paired_metrics, summary
from gsm3_ops.model.bundle import BundleSpec
from gsm3_ops.model.network import GSM3Net
from gsm3_ops.training.sampling import TrainingData
from gsm3_ops.training.trainer import train_member

ROOT = Path(__file__).resolve().parents[1]


def fixtures_dir() -> Path:
    """The real-data folder: ``$GSM3_FIXTURES``, else ``../shared/data`` beside the project."""
    path = Path(os.environ.get("GSM3_FIXTURES", ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        raise SystemExit(f"real-data fixtures not found at {path}; set GSM3_FIXTURES")
    return path


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--json", type=Path, required=True, help="where to write the figures")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--max-iterations", type=int, default=None, help="cap per model (smoke tests only)"
    )
    return p


def spec_for(
    forcings: Sequence[str],
    statics: Sequence[str],
    targets: Sequence[str],
    heads: str = "separate",
) -> BundleSpec:
    """A bundle spec with the paper's architecture (hidden 256, dropout 0.5); ``heads``
    ``separate`` (one output per target) unless asked for the shared head."""
    m = ModelConfig()
    return BundleSpec(
        forcings=list(forcings), statics=list(statics), targets=list(targets),
        hidden_size=m.hidden_size, dropout=m.dropout, stats={}, grid="none",
        product_target=targets[-1], heads=heads,
    )  # fmt: skip


def training_config(epochs: int, seed: int, threads: int | None, **over: Any) -> TrainingConfig:
    """The paper's training settings with a benchmark's epoch budget, on the CPU."""
    return TrainingConfig(
        epochs=epochs, seed=seed, threads=threads, device="cpu", checkpoint_every=0, **over
    )


def train(
    data: TrainingData, spec: BundleSpec, cfg: TrainingConfig, label: str, progress: bool
) -> tuple[GSM3Net, dict[str, Any]]:
    """Train one member; also return its run figures (iterations, seconds, final loss)."""
    r = train_member(data, spec, cfg, cfg.seed, progress=progress, label=label)
    info = {
        "iterations": r.iterations,
        "seconds": round(r.seconds, 1),
        "final_train_loss": float(np.mean(r.losses[-10:])) if r.losses else None,
    }
    return r.net, info


@torch.no_grad()
def predict(net: GSM3Net, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Whole-series prediction from a zero state: x (locations, time, n_in) -> (time,
    locations, n_out), in normalised units, ``batch`` locations at a time."""
    net.eval()
    out = []
    for i in range(0, x.shape[0], batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch].transpose(1, 0, 2)))
        out.append(net(xb)[0].numpy())
    return np.concatenate(out, axis=1)


def score(pred: np.ndarray, obs: np.ndarray) -> dict[str, float]:
    """``median_r``, ``p25_r``, ``median_rmse``, ``median_ubrmse``, ``median_bias``,
    ``n_sites`` of (time, locations) arrays, in the observations' units."""
    return summary(paired_metrics(pred, obs))


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU count and vector unit, torch threads, load average."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # AVX2, AVX512 ...
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def write(path: Path, result: dict[str, Any], t0: float) -> None:
    """Add run time and machine to ``result``, write it as JSON and print it."""
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["machine"] = machine()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
