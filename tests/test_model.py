"""Network, weight-drop, loss and bundle."""

from __future__ import annotations

import json

import pytest
import torch

from gsm3_ops.model.bundle import BundleError, BundleSpec, content_id, load_bundle, save_bundle
from gsm3_ops.model.loss import masked_multitask_rmse
from gsm3_ops.model.network import GSM3Net


def _spec(hidden: int = 8) -> BundleSpec:
    return BundleSpec(
        forcings=["t2m"], statics=["sand"], targets=["smap", "insitu"], hidden_size=hidden,
        dropout=0.5, stats={"t2m": {"mean": 290.0, "std": 5.0}}, grid="M09",
        product_target="insitu",
    )  # fmt: skip


def test_architecture_is_hydrodl() -> None:
    net = GSM3Net(35, 2)
    assert (net.linear_in.in_features, net.linear_in.out_features) == (35, 256)
    assert net.lstm.lstm.hidden_size == 256 and net.lstm.dropout == 0.5
    assert (net.linear_out.in_features, net.linear_out.out_features) == (256, 2)


def test_weight_drop_only_in_training_and_seeded() -> None:
    net = GSM3Net(4, 2, 16, 0.5)
    x = torch.randn(7, 3, 4)
    a, _ = net(x, generator=torch.Generator().manual_seed(1))
    b, _ = net(x, generator=torch.Generator().manual_seed(1))
    c, _ = net(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    net.eval()
    assert torch.equal(net(x)[0], net(x)[0])


def test_weight_drop_masks_are_bernoulli_draws() -> None:
    """The masks are hydroDL's Bernoulli(1 - p) draws: on the CPU the very masks
    torch.bernoulli gives from the same generator state, so runs before and after the
    faster draw are identical."""
    from torch.func import functional_call

    net = GSM3Net(4, 2, 16, 0.5)
    x = torch.relu(net.linear_in(torch.randn(6, 3, 4)))
    got, _ = net.lstm(x, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    params = {
        n: p * torch.bernoulli(torch.full_like(p, 0.5), generator=g) / 0.5
        if n.startswith("weight_") else p
        for n, p in net.lstm.lstm.named_parameters()
    }  # fmt: skip
    want, _ = functional_call(net.lstm.lstm, params, (x, None))
    assert torch.equal(got, want)


def test_weight_drop_gradients_reach_both_weight_matrices() -> None:
    net = GSM3Net(4, 2, 16, 0.5)
    y, _ = net(torch.randn(5, 3, 4), generator=torch.Generator().manual_seed(0))
    y.sum().backward()
    assert net.lstm.lstm.weight_ih_l0.grad.abs().sum() > 0
    assert net.lstm.lstm.weight_hh_l0.grad.abs().sum() > 0


def test_stepping_equals_whole_sequence() -> None:
    net = GSM3Net(4, 2, 16, 0.5).eval()
    x = torch.randn(12, 5, 4)
    whole, (h, _) = net(x)
    state, outs = None, []
    for t in range(12):
        o, state = net(x[t : t + 1], state)
        outs.append(o)
    assert torch.allclose(torch.cat(outs), whole, atol=1e-6)
    assert torch.allclose(state[0], h, atol=1e-6)


def test_loss_is_sum_of_masked_rmse() -> None:
    pred = torch.tensor([[[1.0, 0.0]], [[2.0, 5.0]], [[3.0, 1.0]]])
    obs = torch.tensor([[[1.5, float("nan")]], [[float("nan"), 4.0]], [[2.0, float("nan")]]])
    expected = ((0.5**2 + 1.0**2) / 2) ** 0.5 + 1.0
    assert masked_multitask_rmse(pred, obs).item() == pytest.approx(expected)


def test_loss_target_without_valid_values_contributes_zero() -> None:
    pred = torch.ones(4, 2, 2, requires_grad=True)
    obs = torch.full((4, 2, 2), float("nan"))
    obs[..., 0] = 0.0
    loss = masked_multitask_rmse(pred, obs)
    assert loss.item() == pytest.approx(1.0) and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    empty = masked_multitask_rmse(pred, torch.full((4, 2, 2), float("nan")))
    assert empty.item() == 0.0


def test_bundle_round_trip(tmp_path) -> None:
    spec = _spec()
    nets = [spec.new_network().eval(), spec.new_network().eval()]
    save_bundle(tmp_path / "b", spec, nets)
    bundle = load_bundle(tmp_path / "b")
    assert len(bundle.members) == 2 and bundle.spec.inputs == ["t2m", "sand"]
    assert len(bundle.bundle_id) == 16
    x = torch.randn(3, 2, 2)
    assert torch.equal(bundle.members[1](x)[0], nets[1](x)[0])


def test_bundle_with_pickle_is_refused(tmp_path) -> None:
    spec = _spec()
    save_bundle(tmp_path / "b", spec, [spec.new_network()])
    torch.save(spec.new_network().state_dict(), tmp_path / "b" / "member-0.safetensors")
    with pytest.raises(BundleError, match="pickle"):
        load_bundle(tmp_path / "b")


def test_bundle_missing_member_or_json(tmp_path) -> None:
    with pytest.raises(BundleError, match=r"bundle\.json"):
        load_bundle(tmp_path)
    spec = _spec()
    save_bundle(tmp_path / "b", spec, [spec.new_network()])
    (tmp_path / "b" / "member-0.safetensors").unlink()
    with pytest.raises(BundleError, match="member-0"):
        load_bundle(tmp_path / "b")


def test_shared_head_is_one_output_compared_with_both_teachers() -> None:
    """The paper's Eq. 2: L = RMSE(y, y_SMAP) + RMSE(y, y_insitu) for one simulated y."""
    pred = torch.tensor([[[1.0]], [[2.0]], [[3.0]]])  # (time, batch, 1)
    obs = torch.tensor([[[1.0, 2.0]], [[float("nan"), 2.0]], [[5.0, float("nan")]]])
    smap = ((0.0**2 + 2.0**2) / 2) ** 0.5  # t0 and t2
    insitu = ((1.0**2 + 0.0**2) / 2) ** 0.5  # t0 and t1
    assert masked_multitask_rmse(pred, obs).item() == pytest.approx(smap + insitu)
    spec = BundleSpec(**{**_spec().__dict__, "heads": "shared"})
    assert spec.n_outputs == 1 and spec.new_network().linear_out.out_features == 1
    assert spec.output_index("insitu") == spec.output_index("smap") == 0
    assert _spec().output_index("insitu") == 1 and _spec().n_outputs == 2


def test_bundles_record_their_heads_and_old_ones_load_as_separate(tmp_path) -> None:
    shared = BundleSpec(**{**_spec().__dict__, "heads": "shared"})
    save_bundle(tmp_path / "s", shared, [shared.new_network().eval()])
    assert load_bundle(tmp_path / "s").spec.heads == "shared"
    save_bundle(tmp_path / "old", _spec(), [_spec().new_network().eval()])
    meta = json.loads((tmp_path / "old" / "bundle.json").read_text())
    del meta["heads"]  # written before the option existed, and its id computed without it
    (tmp_path / "old" / "bundle.json").write_text(json.dumps(meta))
    (tmp_path / "old" / "bundle.id").write_text(content_id(tmp_path / "old") + "\n")
    old = load_bundle(tmp_path / "old")
    assert old.spec.heads == "separate" and old.members[0].linear_out.out_features == 2
    assert load_bundle(tmp_path / "s").bundle_id != old.bundle_id


@pytest.mark.parametrize("damage", ["no id", "weights", "statistics"])
def test_a_damaged_bundle_is_refused_naming_the_repair(tmp_path, damage) -> None:
    spec = _spec()
    path = save_bundle(tmp_path / "b", spec, [spec.new_network().eval()])
    assert content_id(path) == (path / "bundle.id").read_text().strip()
    if damage == "no id":
        (path / "bundle.id").unlink()
    elif damage == "weights":
        data = bytearray((path / "member-0.safetensors").read_bytes())
        data[-1] ^= 0x40  # one weight's last byte: still a valid safetensors file
        (path / "member-0.safetensors").write_bytes(bytes(data))
    else:
        meta = json.loads((path / "bundle.json").read_text())
        meta["stats"]["t2m"]["mean"] += 1.0
        (path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="retrain it") as info:
        load_bundle(path)
    assert ("no bundle.id" if damage == "no id" else "no longer match") in str(info.value)
