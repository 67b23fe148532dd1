"""A trained model bundle: ``member-<k>.safetensors`` per ensemble member and ``bundle.json``.

Loading a bundle never executes code: weights are read with safetensors only, and a weight
file that holds a pickle (a ``torch.save`` archive) is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gsm3_ops.di import N_CHANNELS, DISpec
from gsm3_ops.errors import InputError
from gsm3_ops.model.network import GSM3Net

BUNDLE_JSON = "bundle.json"
FORMAT_VERSION = 1


class BundleError(InputError):
    """A bundle directory that is missing, incomplete, unsafe or inconsistent.

    Exit status 2: the bundle is one the user named (``model.bundle``, ``--model``), so the
    fix is to point at a trained bundle before trying again.
    """

    exit_code = 2


@dataclass
class BundleSpec:
    """Everything but the weights: architecture, inputs, normalisation and provenance."""

    forcings: list[str]
    statics: list[str]
    targets: list[str]
    hidden_size: int
    dropout: float
    stats: dict[str, dict[str, float]]  # variable -> {"mean", "std"} after its transform
    grid: str
    product_target: str
    # "shared": one output for every target (the paper); "separate": one head per target.
    # Bundles written before the option existed had separate heads, hence the default.
    heads: str = "separate"
    # Data integration (gsm3_ops/di.py): DISpec.to_json() of a DI bundle; empty: open loop.
    di: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def inputs(self) -> list[str]:
        """Model input order: forcings then statics."""
        return [*self.forcings, *self.statics]

    @property
    def di_spec(self) -> DISpec | None:
        """What a DI bundle absorbs; None for an open-loop bundle."""
        return DISpec.from_json(self.di) if self.di else None

    @property
    def n_inputs(self) -> int:
        """Network inputs: forcings, statics, then a DI bundle's channels."""
        return len(self.inputs) + (N_CHANNELS if self.di else 0)

    @property
    def n_outputs(self) -> int:
        """Outputs of the network: one when the heads are shared, else one per target."""
        return 1 if self.heads == "shared" else len(self.targets)

    def output_index(self, target: str) -> int:
        """The network output compared with (and published for) ``target``."""
        if target not in self.targets:
            raise ValueError(f"{target!r} is not a target of this bundle ({self.targets})")
        return 0 if self.heads == "shared" else self.targets.index(target)

    def new_network(self) -> GSM3Net:
        """An untrained network with this architecture."""
        return GSM3Net(self.n_inputs, self.n_outputs, self.hidden_size, self.dropout)


PROVENANCE = ("training", "metrics", "code_version")  # recorded, not part of the bundle id


@dataclass
class Bundle:
    """A loaded bundle: the spec and one network per ensemble member (in eval mode)."""

    path: Path
    spec: BundleSpec
    members: list[GSM3Net]

    @property
    def bundle_id(self) -> str:
        """A short content hash identifying this bundle (weights and spec)."""
        return (self.path / "bundle.id").read_text().strip()


def save_bundle(path: Path, spec: BundleSpec, members: list[GSM3Net]) -> Path:
    """Write a bundle atomically: into a temporary directory, then renamed to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for k, net in enumerate(members):
        weights = {name: t.detach().cpu().contiguous() for name, t in net.state_dict().items()}
        save_file(weights, tmp / f"member-{k}.safetensors")
    meta = asdict(spec) | {"members": len(members)}
    if not spec.di:  # an open-loop bundle.json stays as it was before DI existed
        del meta["di"]
    text = json.dumps(meta, indent=2)
    (tmp / BUNDLE_JSON).write_text(text)
    (tmp / "bundle.id").write_text(content_id(tmp) + "\n")
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def content_id(path: Path) -> str:
    """The id a bundle's files give: sha256 of the member weights, then of what shapes the
    outputs as ``bundle.json`` holds it (inputs, statistics, architecture, member count), not
    the provenance (resolved config with its paths, timings), so the same model trained in
    two folders has the same id; 16 hex digits."""
    path = Path(path)
    meta = json.loads((path / BUNDLE_JSON).read_text())
    digest = hashlib.sha256()
    for k in range(int(meta["members"])):
        digest.update((path / f"member-{k}.safetensors").read_bytes())
    shaping = {k: v for k, v in meta.items() if k not in PROVENANCE}
    digest.update(json.dumps(shaping, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _check_id(path: Path) -> None:
    """Refuse a bundle whose files no longer give its ``bundle.id`` (a lost, truncated or
    altered file): the id names the model in every published day and state store."""
    id_file = path / "bundle.id"
    repair = "copy the bundle again from where it was trained, or retrain it (gsm3-ops train)"
    if not id_file.is_file():
        raise BundleError(f"bundle {path} has no bundle.id; {repair}")
    if content_id(path) != id_file.read_text().strip():
        raise BundleError(
            f"bundle {path} is damaged: its files no longer match its bundle.id; {repair}"
        )


def _check_not_pickle(file: Path) -> None:
    head = file.read_bytes()[:4]
    # torch.save writes a zip archive ("PK") or a raw pickle (protocol byte 0x80).
    if head.startswith(b"PK") or head[:1] == b"\x80":
        raise BundleError(
            f"{file} holds a pickle (torch.save archive), which could run code when loaded; "
            "bundles accept safetensors weights only"
        )


def read_spec(path: Path) -> tuple[BundleSpec, int]:
    """A bundle's spec and member count from its ``bundle.json``, without the weights."""
    path = Path(path)
    meta_file = path / BUNDLE_JSON
    if not meta_file.is_file():
        raise BundleError(f"{path} is not a model bundle: {BUNDLE_JSON} is missing")
    try:
        meta = json.loads(meta_file.read_text())
        n_members = int(meta.pop("members"))
        spec = BundleSpec(**meta)
    except (ValueError, TypeError, KeyError) as exc:
        raise BundleError(f"{meta_file} is not a valid bundle description: {exc}") from None
    if spec.format_version != FORMAT_VERSION:
        raise BundleError(
            f"{meta_file} has format {spec.format_version}, expected {FORMAT_VERSION}"
        )
    return spec, n_members


def load_bundle(path: Path, device: str | torch.device = "cpu") -> Bundle:
    """Load a bundle directory; networks are returned in eval mode on ``device``."""
    path = Path(path)
    spec, n_members = read_spec(path)
    members = []
    for k in range(n_members):
        file = path / f"member-{k}.safetensors"
        if not file.is_file():
            raise BundleError(f"bundle {path} lists {n_members} members but {file.name} is missing")
        _check_not_pickle(file)
        net = spec.new_network()
        try:
            net.load_state_dict(load_file(file))
        except (SafetensorError, RuntimeError) as exc:
            raise BundleError(f"cannot load weights from {file}: {exc}") from None
        members.append(net.to(device).eval())
    _check_id(path)
    return Bundle(path, spec, members)
