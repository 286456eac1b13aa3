"""The Kubernetes manifests as built by kustomize: what every service must have."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.common.upload import CONCURRENT_UPLOADS, UPLOADS_PER_PEER
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
def test_services_called_inside_the_cluster_are_headless_and_tf_serving_ages_connections() -> None:
    # a ClusterIP balances connections; gRPC clients keep one, so each would load one replica
    docs = build("deploy/base")
    services = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Service"}
    for name in ("featurizer", "classifier", "tfserving"):
        assert services[name].get("clusterIP") == "None", name
    tfs = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "tfserving")
    args = " ".join(tfs["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "--grpc_channel_arguments=grpc.max_connection_age_ms=" in args


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


@needs_kubectl
def test_every_empty_dir_has_a_size_limit() -> None:
    folders = ["deploy/base", "deploy/jobs", "deploy/jobs-sharded/analyse", "deploy/jobs-sharded/publish"]
    for docs in map(build, folders):
        for d in docs:
            if d["kind"] in {"Deployment", "Job"}:
                for volume in d["spec"]["template"]["spec"].get("volumes", []):
                    if "emptyDir" in volume:
                        assert volume["emptyDir"].get("sizeLimit"), (d["metadata"]["name"], volume["name"])


@needs_kubectl
def test_sharded_ingestion_is_an_indexed_job_and_its_publish_step_agrees_on_the_shards() -> None:
    (analyse,) = build("deploy/jobs-sharded/analyse")
    (publish,) = build("deploy/jobs-sharded/publish")
    spec = analyse["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] <= spec["completions"]
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["JOB_COMPLETIONS"] == str(spec["completions"])  # each pod knows N; K comes from Kubernetes
    command = publish["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--shards") + 1] == str(spec["completions"])
    assert "--only" in container["command"] and "analyse" in container["command"]


@needs_kubectl
def test_secure_overlay_locks_every_hop_down() -> None:
    docs = build("deploy/overlays/secure")
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    deny = by_kind["NetworkPolicy"]["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    edges = {name for name in by_kind["NetworkPolicy"] if name != "default-deny"}
    assert {"tfserving-from-classifier", "redis-from-recommender", "featurizer-from-recommender-and-ingest"} <= edges
    for name, deployment in by_kind["Deployment"].items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == name and pod["automountServiceAccountToken"] is False
        assert by_kind["ServiceAccount"][name]["automountServiceAccountToken"] is False
    assert set(by_kind["PodDisruptionBudget"]) == {"featurizer", "classifier", "recommender", "tfserving"}
    for name in OUR_SERVICES:
        server = by_kind["Deployment"][name]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in server["env"]}
        assert env["REFLECTION"] == "off" and env["TLS_CERT_FILE"].startswith("/etc/musicrec/tls/")
        assert server["readinessProbe"]["grpc"]["port"] == int(env["HEALTH_PORT"])  # probes speak no TLS
        if name != "recommender":
            assert env["TLS_REQUIRE_CLIENT_CERT"] == "true"
    recommender = by_kind["Deployment"]["recommender"]["spec"]["template"]["spec"]["containers"][0]
    assert {"API_KEYS_FILE", "CACHE_HMAC_KEY_FILE", "REDIS_PASSWORD_FILE"} <= {e["name"] for e in recommender["env"]}
    tfs = by_kind["Deployment"]["tfserving"]["spec"]["template"]["spec"]["containers"][0]
    assert "--ssl_config_file=/ssl/ssl.config" in tfs["args"]
    redis = by_kind["Deployment"]["redis"]["spec"]["template"]["spec"]["containers"][0]
    assert "--requirepass" in redis["args"] and not any("password" in str(v) for v in redis["args"][:-2])


@needs_kubectl
def test_bf16_overlay_runs_tf_serving_in_bfloat16_only_where_it_is_faster() -> None:
    docs = build("deploy/overlays/bf16")
    tfserving = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "tfserving")
    pod = tfserving["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    label = "feature.node.kubernetes.io/"
    accepted = [{e["key"].removeprefix(label): tuple(e["values"]) for e in t["matchExpressions"]} for t in terms]
    assert all(e["operator"] == "In" for t in terms for e in t["matchExpressions"])
    assert accepted == [  # AMX, or AMD's AVX-512 BF16 (Intel's without AMX was slower than float32)
        {"cpu-cpuid.AMXBF16": ("true",)},
        {"cpu-cpuid.AVX512BF16": ("true",), "cpu-model.vendor_id": ("AMD", "AuthenticAMD")},
    ]
    args = pod["containers"][0]["args"]
    flag = next(a for a in args if a.startswith("--tensorflow_session_config_file="))
    mounted = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    path = Path(flag.split("=", 1)[1])
    assert mounted[str(path.parent)] == "config" and "--enable_batching" in args
    config_map = next(v["configMap"]["name"] for v in pod["volumes"] if v["name"] == "config")
    data = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_map)["data"]
    shipped = ROOT / "deploy" / "components" / "tfserving-bf16" / "session.config"
    assert data[path.name] == shipped.read_text()  # the file the stand-in's tests read
    assert {"models.config", "batching.config"} <= set(data)
    base = next(d for d in build("deploy/base") if d["kind"] == "Deployment" and d["metadata"]["name"] == "tfserving")
    assert "nodeSelector" not in base["spec"]["template"]["spec"]  # float32 anywhere without the overlay


def env_of(docs: list[dict], deployment: str) -> dict[str, str]:
    d = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment)
    return {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])}


@needs_kubectl
def test_the_featurizer_takes_from_one_recommender_every_upload_the_recommender_accepts() -> None:
    # the recommender forwards its callers' uploads from one address: a lower per-peer limit
    # would refuse users the recommender let in, with a message about an address not theirs
    docs = build("deploy/base")
    featurizer, recommender = env_of(docs, "featurizer"), env_of(docs, "recommender")
    per_peer = int(featurizer.get("MAX_UPLOADS_PER_PEER", UPLOADS_PER_PEER))
    assert per_peer >= int(recommender.get("MAX_CONCURRENT_UPLOADS", CONCURRENT_UPLOADS))
