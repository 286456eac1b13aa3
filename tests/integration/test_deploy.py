"""The Kubernetes manifests as built by kustomize: what every service must have."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed (kubectl kustomize)")
OUR_SERVICES = {"featurizer": 50051, "classifier": 50052, "recommender": 50053}


def build(folder: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / folder)], capture_output=True, text=True, check=True)
    return list(yaml.safe_load_all(out.stdout))


@needs_kubectl
def test_each_service_has_deployment_service_probes_limits_and_runs_as_non_root() -> None:
    docs = build("deploy/base")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for name in [*OUR_SERVICES, "tfserving", "redis"]:
        assert ("Deployment", name) in kinds and ("Service", name) in kinds
    assert ("HorizontalPodAutoscaler", "featurizer") in kinds
    for d in (d for d in docs if d["kind"] == "Deployment"):
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
        server = pod["containers"][0]
        assert "readinessProbe" in server and "livenessProbe" in server
        if d["metadata"]["name"] in OUR_SERVICES:
            assert server["readinessProbe"]["grpc"]["port"] == OUR_SERVICES[d["metadata"]["name"]]
    tfs = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "tfserving")
    assert tfs["spec"]["template"]["spec"]["containers"][0]["image"].startswith("tensorflow/serving")
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert config["data"]["models.config"] == (ROOT / "models" / "models.config").read_text()


@needs_kubectl
def test_strict_validation_rejects_a_misspelt_field(tmp_path: Path) -> None:
    validate = [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict"]
    docs = build("deploy/base")
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump_all(docs))
    assert subprocess.run([*validate, str(good)], capture_output=True).returncode == 0
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 1}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    assert subprocess.run([*validate, str(bad)], capture_output=True).returncode != 0
