"""`gsm3-ops train --folds K | --members N`: one bundle holding every member."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from gsm3_ops.cli import app
from gsm3_ops.model.bundle import load_bundle

runner = CliRunner()

# The session's coastal window near Lamu (land and sea, see tests/world_site.py), read through
# the real sources from its ingested cube; a short period and a tiny network.
SMALL = {
    "model": {"hidden_size": 8},
    "training": {
        "start": "2019-06-01", "end": "2019-07-20", "seq_len": 30, "batch_size": 8,
        "members": 1, "max_iterations": 3, "holdout_fraction": 0.2, "checkpoint_every": 1,
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def config(world_site, tmp_path_factory):
    return world_site.config(tmp_path_factory.mktemp("train"), name="small.yaml", **SMALL)


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch):
    monkeypatch.delenv("GSM3_CONFIG", raising=False)


def test_members_bundle_holds_every_member_and_the_resolved_config(config) -> None:
    out = config.parent / "members"
    result = runner.invoke(app, ["train", "--config", str(config), "--out", str(out),
                                 "--members", "2", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    bundle = load_bundle(out)
    tr = bundle.spec.training
    assert len(bundle.members) == 2 and tr["seeds"] == [0, 1] and tr["ensemble"] == "members"
    assert tr["config"]["training"]["max_iterations"] == 3
    assert tr["config"]["model"]["hidden_size"] == 8 and "options" not in tr["config"]["sources"]
    assert tr["held_out_cells"]["rows"] and not (out.parent / "members.checkpoints").exists()
    w0, w1 = (m.linear_out.weight for m in bundle.members)
    assert not np.array_equal(w0.detach().numpy(), w1.detach().numpy())


def test_folds_bundle_lists_each_members_unseen_cells(config) -> None:
    out = config.parent / "folds"
    result = runner.invoke(app, ["train", "--config", str(config), "--out", str(out),
                                 "--folds", "3", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    bundle = load_bundle(out)
    tr = bundle.spec.training
    assert len(bundle.members) == 3 and tr["ensemble"] == "folds"
    held = [set(zip(f["rows"], f["cols"], strict=True)) for f in tr["member_held_out_cells"]]
    assert all(held) and not (held[0] & held[1] or held[0] & held[2] or held[1] & held[2])
    assert sum(len(h) for h in held) == tr["n_cells"]
    outer = set(zip(tr["held_out_cells"]["rows"], tr["held_out_cells"]["cols"], strict=True))
    assert not outer & set.union(*held)


def test_folds_and_members_together_are_refused(config) -> None:
    result = runner.invoke(app, ["train", "--config", str(config), "--out", "x",
                                 "--folds", "3", "--members", "2"])  # fmt: skip
    assert result.exit_code == 2 and "not both" in result.stderr
