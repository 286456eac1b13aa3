"""Faults and load: Redis, a fold, the model server or the featurizer down; SIGTERM under load;
broken catalog rows; a bounded loopback load (LOAD_SECONDS, default 60) with zero errors."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import grpc
import numpy as np
import pytest

from devtools.localrun import Proc, free_port, running, start_redis
from musicrec.v1 import audio_pb2, recommender_pb2, recommender_pb2_grpc
from services.common.modelconfig import write_models_config
from services.featurizer.schema import FEATURE_NAMES, SCHEMA_VERSION
from services.recommender.index.store import current_generation, load_current
from tests import synth
from tests.conftest import MODELS_CONFIG, REPORT, ROOT
from tests.integration.conftest import Catalog, recommender_env
from tests.recommender_calls import Options, by_id, upload

SONG_IDS = [f"{g}-{n:02d}" for g in synth.SYNTH_GENRES for n in range(5)]


def stub_for(proc: Proc) -> tuple[grpc.Channel, recommender_pb2_grpc.RecommenderServiceStub]:
    channel = grpc.insecure_channel(proc.address)
    return channel, recommender_pb2_grpc.RecommenderServiceStub(channel)


def wait_for(predicate, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


SONG = synth.encode(synth.synthetic_song("chirps", 2, seconds=32))


def test_redis_down_at_start_then_up_then_stopped(synthetic_index: Catalog, featurizer, classifier, tmp_path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (apt-get install redis-server); .ci/run installs it")
    port = free_port()
    env = recommender_env(synthetic_index, featurizer, classifier, f"redis://127.0.0.1:{port}/0")
    with running("services.recommender", env, tmp_path) as rec:
        channel, stub = stub_for(rec)
        # no Redis yet: serving, uncached, and the log says so
        assert not by_id(stub, "beats-01").cached and not by_id(stub, "beats-01").cached
        assert "redis unavailable: serving uncached" in rec.log()

        redis = start_redis(tmp_path, port)
        wait_for(lambda: by_id(stub, "tones-02").cached, what="the cache to come back")
        assert "redis reachable again" in rec.log()

        redis.stop()  # Redis dies under a warm cache: every query still answers
        answers = [by_id(stub, song) for song in SONG_IDS]
        assert all(len(a.recommendations) == 5 and not a.cached for a in answers)
        assert rec.log().count("redis unavailable: serving uncached") == 2  # once per outage, not per query
        channel.close()


def test_one_fold_down_still_recommends(synthetic_index: Catalog, featurizer, modelserver, tmp_path) -> None:
    folds = ["musicnn_msd"] + [f"linear_fold{k}" for k in range(4)] + ["linear_fold9"]
    config = write_models_config(tmp_path / "models.config", folds)
    cl_env = {"TF_SERVING_ADDR": modelserver.address, "MODEL_CONFIG_FILE": str(config)}
    with (
        running("services.classifier", cl_env, tmp_path) as cl,
        running("services.recommender", recommender_env(synthetic_index, featurizer, cl), tmp_path) as rec,
    ):
        channel, stub = stub_for(rec)
        reply = upload(stub, SONG)
        assert len(reply.recommendations) == 5
        vote = reply.classification
        assert vote.degraded and vote.folds_voted == 4 and "linear_fold9" in vote.note
        channel.close()


def test_model_server_down_is_unavailable_for_uploads_only(synthetic_index: Catalog, featurizer, tmp_path) -> None:
    with (
        running("services.modelserver", {"MODEL_CONFIG_FILE": str(MODELS_CONFIG)}, tmp_path) as ms,
        running("services.classifier", {"TF_SERVING_ADDR": ms.address, "PREDICT_TIMEOUT_SECONDS": "3"}, tmp_path) as cl,
        running("services.recommender", recommender_env(synthetic_index, featurizer, cl), tmp_path) as rec,
    ):
        channel, stub = stub_for(rec)
        assert len(upload(stub, SONG).recommendations) == 5
        ms.stop(signal.SIGKILL)
        with pytest.raises(grpc.RpcError) as err:
            upload(stub, SONG)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "classifier" in err.value.details() and "TF Serving" in err.value.details()
        assert len(by_id(stub, "beats-01").recommendations) == 5  # catalog queries need no model
        channel.close()


def test_featurizer_down_is_unavailable(synthetic_index: Catalog, classifier, tmp_path) -> None:
    dead = Proc("featurizer", f"127.0.0.1:{free_port()}", None, tmp_path / "none")  # type: ignore[arg-type]
    env = recommender_env(synthetic_index, dead, classifier, UPSTREAM_TIMEOUT_SECONDS="3")
    with running("services.recommender", env, tmp_path) as rec:
        channel, stub = stub_for(rec)
        with pytest.raises(grpc.RpcError) as err:
            upload(stub, SONG)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "featurizer at" in err.value.details() and "retry" in err.value.details()
        assert len(by_id(stub, "beats-01").recommendations) == 5
        channel.close()


def sigterm_under_load(rec: Proc, threads: list[threading.Thread]) -> float:
    """Start the client threads, SIGTERM the server a second later, wait for its clean exit;
    the time of the signal."""
    for t in threads:
        t.start()
    time.sleep(1.0)
    sigterm_at = time.monotonic()
    rec.process.send_signal(signal.SIGTERM)
    assert rec.process.wait(30) == 0
    return sigterm_at


def test_sigterm_under_load_drains_in_flight_requests(synthetic_index: Catalog, featurizer, classifier, tmp_path):
    env = recommender_env(synthetic_index, featurizer, classifier, SHUTDOWN_GRACE_SECONDS="20")
    with running("services.recommender", env, tmp_path) as rec:
        channel, stub = stub_for(rec)
        outcomes: list[tuple[float, str]] = []  # (start time, status)
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    by_id(stub, random.choice(SONG_IDS), k=random.randint(1, 10))
                    outcomes.append((started, "OK"))
                except grpc.RpcError as exc:
                    outcomes.append((started, exc.code().name))
                    time.sleep(0.05)

        slow_upload: dict[str, object] = {}

        def upload_slowly() -> None:  # a client still sending its file when SIGTERM arrives
            try:
                slow_upload["reply"] = upload(stub, SONG, chunk=128 * 1024, pause=0.3)
            except grpc.RpcError as exc:
                slow_upload["error"] = exc

        threads = [threading.Thread(target=hammer) for _ in range(4)] + [threading.Thread(target=upload_slowly)]
        sigterm_at = sigterm_under_load(rec, threads)
        stop.set()
        for t in threads:
            t.join()
        channel.close()
    assert "error" not in slow_upload, slow_upload.get("error")
    assert len(slow_upload["reply"].recommendations) == 5
    # Everything the server had received before SIGTERM was answered; later calls are refused
    # (UNAVAILABLE, or CANCELLED when one races the final stop); on Kubernetes the readiness
    # probe and the preStop delay take the pod out of rotation first.
    before = Counter(code for started, code in outcomes if started < sigterm_at - 0.05)
    after = Counter(code for started, code in outcomes if started >= sigterm_at - 0.05)
    assert before["OK"] > 50 and set(before) == {"OK"}, before
    assert set(after) <= {"OK", "UNAVAILABLE", "CANCELLED"} and after["UNAVAILABLE"] > 0, after
    log = rec.log()
    assert "draining" in log and "stopped" in log


def test_sigterm_lets_every_in_flight_by_id_call_complete(synthetic_index: Catalog, featurizer, classifier, tmp_path):
    """8 clients in a tight loop; each fails over (stops) at its first refusal, as a client of a
    replicated service does. Nothing sent before the signal may fail, and nothing is CANCELLED."""
    with running("services.recommender", recommender_env(synthetic_index, featurizer, classifier), tmp_path) as rec:
        outcomes: list[tuple[float, str]] = []

        def client() -> None:
            channel, stub = stub_for(rec)
            while True:
                started = time.monotonic()
                try:
                    by_id(stub, random.choice(SONG_IDS), k=5)
                    outcomes.append((started, "OK"))
                except grpc.RpcError as exc:
                    outcomes.append((started, exc.code().name))
                    break
            channel.close()

        threads = [threading.Thread(target=client) for _ in range(8)]
        sigterm_at = sigterm_under_load(rec, threads)
        for t in threads:
            t.join()
    codes = Counter(code for _, code in outcomes)
    assert codes["CANCELLED"] == 0, codes
    assert {code for started, code in outcomes if started < sigterm_at} == {"OK"}
    assert codes["UNAVAILABLE"] == 8  # each client was told to go elsewhere, once


def test_broken_catalog_rows_are_reported_not_lost(synthetic_index: Catalog, featurizer, classifier, tmp_path):
    csv = tmp_path / "catalog.csv"
    rows = synthetic_index.csv.read_text().splitlines()
    folder = synthetic_index.folder
    rows = [rows[0]] + [r.replace(",tones-", f",{folder}/tones-") for r in rows[1:6]]
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    rows += ["gone,Gone,X,,tones,missing.wav", "broken,Broken,X,,tones,broken.wav", "short,Short"]
    csv.write_text("\n".join(rows) + "\n")
    index_dir = tmp_path / "index"
    base = [sys.executable, "-m", "services.recommender.catalog.ingest", "--catalog", str(csv)]
    base += ["--index-dir", str(index_dir)]
    base += ["--featurizer", featurizer.address, "--classifier", classifier.address]
    base += ["--audio-root", str(tmp_path), "--audio-root", str(folder)]
    strict = subprocess.run([*base, "--strict"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert strict.returncode == 1 and current_generation(index_dir) is None
    done = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not indexed: gone:" in done.stderr and "not indexed: broken:" in done.stderr
    assert "catalog.csv:9: 2 fields where the header has 6" in done.stderr  # a malformed row: reported, not fatal
    assert "INVALID_ARGUMENT" in done.stderr and "skipped 3" in done.stdout
    assert [s.id for s in load_current(index_dir).songs] == [r.split(",")[0] for r in rows[1:6]]
    # the rows after a malformed one are read: nothing else of the catalog is lost


def test_bounded_load_has_zero_errors(recommender: Proc, synthetic_index: Catalog) -> None:
    seconds = float(os.environ.get("LOAD_SECONDS", "60"))
    channel, stub = stub_for(recommender)
    values = load_current(synthetic_index.index_dir).raw_rows([0])[0][: len(FEATURE_NAMES)].tolist()  # the 57 features
    vector = audio_pb2.FeatureVector(schema_version=SCHEMA_VERSION, names=FEATURE_NAMES, values=values)
    latencies: dict[str, list[float]] = {"by_id": [], "by_features": [], "by_audio": []}
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            kind = rng.choices(["by_id", "by_features", "by_audio"], [85, 13, 2])[0]
            started = time.perf_counter()
            try:
                if kind == "by_id":
                    assert by_id(stub, rng.choice(SONG_IDS), k=rng.randint(1, 10)).recommendations
                elif kind == "by_features":
                    request = recommender_pb2.RecommendByFeaturesRequest(features=vector, options=Options(k=5))
                    assert stub.RecommendByFeatures(request, timeout=30).recommendations
                else:
                    assert upload(stub, SONG).recommendations
            except (grpc.RpcError, AssertionError) as exc:
                errors.append(f"{kind}: {exc}")
            latencies[kind].append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    channel.close()
    total = sum(len(v) for v in latencies.values())
    summary = ", ".join(
        f"{kind} n={len(v)} p50={np.percentile(v, 50) * 1e3:.1f} ms p99={np.percentile(v, 99) * 1e3:.1f} ms"
        for kind, v in latencies.items()
        if v
    )
    rate = total / seconds
    REPORT.append(f"load {seconds:.0f} s, 4 clients: {total} requests, {rate:.0f} rps, {len(errors)} errors; {summary}")
    assert not errors, errors[:5]
    assert total > seconds * 20
