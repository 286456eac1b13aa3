"""One test per attack tried against the running stack (issue "Secure by default"): each one
fails if the protection it guards is taken away."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis
import soundfile as sf

from devtools.localrun import Proc, free_port, running
from musicrec.v1 import audio_pb2, featurizer_pb2, featurizer_pb2_grpc, recommender_pb2, recommender_pb2_grpc
from services.common.auth import digest
from services.common.transport import sync_channel
from services.featurizer.schema import FEATURE_NAMES, SCHEMA_VERSION
from services.recommender.api.cache import by_id_key
from services.recommender.search.options import parse_options
from tests import synth
from tests.certs import make_pki
from tests.conftest import MODELS_CONFIG
from tests.integration.conftest import Catalog, recommender_env
from tests.recommender_calls import by_id, upload, upload_messages

SONG = synth.encode(synth.synthetic_song("chirps", 2, seconds=32))


def code_and_details(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details() or ""


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def stub(recommender: Proc):
    with grpc.insecure_channel(recommender.address) as channel:
        yield recommender_pb2_grpc.RecommenderServiceStub(channel)


# --- transport and identity ------------------------------------------------------------------


def test_upload_path_runs_over_mtls_and_refuses_clients_without_a_certificate(
    synthetic_index: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki(tmp_path / "pki")
    tls = pki.env(require_client_cert=True)

    def env(**extra: str) -> dict[str, str]:
        return {**tls, "HEALTH_PORT": str(free_port()), **extra}

    with (
        running("services.modelserver", env(MODEL_CONFIG_FILE=str(MODELS_CONFIG)), tmp_path) as ms,
        running("services.featurizer", env(), tmp_path) as fz,
        running("services.classifier", env(TF_SERVING_ADDR=ms.address), tmp_path) as cl,
        running("services.recommender", env(INDEX_DIR=str(synthetic_index.index_dir), REDIS_URL="off",
                                           FEATURIZER_ADDR=fz.address, CLASSIFIER_ADDR=cl.address), tmp_path) as rec,
    ):
        for key, value in tls.items():
            monkeypatch.setenv(key, value)
        with sync_channel(rec.address) as channel:  # the client presents its certificate
            reply = upload(recommender_pb2_grpc.RecommenderServiceStub(channel), SONG, "song.wav", k=3)
        assert len(reply.recommendations) == 3 and reply.classification.folds_voted == 5
        assert all("serving TLS" in p.log() for p in (ms, fz, cl, rec))

        anonymous = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())  # no client certificate
        for address in (rec.address, fz.address):
            with grpc.secure_channel(address, anonymous) as channel:
                stub = recommender_pb2_grpc.RecommenderServiceStub(channel)
                code, _ = code_and_details(lambda s=stub: by_id(s, "tones-01"))
                assert code == grpc.StatusCode.UNAVAILABLE  # the handshake is refused
        with grpc.insecure_channel(fz.address) as channel:  # nor in plaintext
            call = featurizer_pb2_grpc.FeaturizerServiceStub(channel).GetFeatureSchema
            code, _ = code_and_details(lambda: call(featurizer_pb2.GetFeatureSchemaRequest(), timeout=5))
            assert code == grpc.StatusCode.UNAVAILABLE


def test_each_service_accepts_only_the_peers_it_names_and_a_certificate_never_replaces_a_key(
    synthetic_index: Catalog, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    recommender_cert, classifier_cert = pki.issue("recommender"), pki.issue("classifier")
    keys = tmp_path / "keys"
    keys.write_text(f"team-a:{digest('key-a')}\n")
    with (
        running("services.featurizer", {**pki.issue("featurizer").env(), "HEALTH_PORT": str(free_port()),
                                        "TLS_ALLOWED_PEERS": "recommender,ingest"}, tmp_path) as fz,
        running("services.recommender", {**recommender_cert.env(), "HEALTH_PORT": str(free_port()),
                                         "API_KEYS_FILE": str(keys), "INDEX_DIR": str(synthetic_index.index_dir),
                                         "REDIS_URL": "off", "FEATURIZER_ADDR": fz.address,
                                         "CLASSIFIER_ADDR": "127.0.0.1:9"}, tmp_path) as rec,
    ):
        def credentials(cert) -> grpc.ChannelCredentials:
            return grpc.ssl_channel_credentials(pki.ca.read_bytes(), cert.key.read_bytes(), cert.cert.read_bytes())

        schema = featurizer_pb2.GetFeatureSchemaRequest()
        with grpc.secure_channel(fz.address, credentials(recommender_cert)) as channel:
            assert featurizer_pb2_grpc.FeaturizerServiceStub(channel).GetFeatureSchema(schema, timeout=10)
        with grpc.secure_channel(fz.address, credentials(classifier_cert)) as channel:  # signed by the CA, wrong name
            call = featurizer_pb2_grpc.FeaturizerServiceStub(channel).GetFeatureSchema
            code, details = code_and_details(lambda: call(schema, timeout=10))
            assert code == grpc.StatusCode.PERMISSION_DENIED and "names classifier" in details
        with grpc.secure_channel(rec.address, credentials(classifier_cert)) as channel:
            stub = recommender_pb2_grpc.RecommenderServiceStub(channel)
            request = recommender_pb2.GetIndexInfoRequest()
            code, _ = code_and_details(lambda: stub.GetIndexInfo(request, timeout=10))
            assert code == grpc.StatusCode.UNAUTHENTICATED  # a certificate alone does not open the front door
            assert stub.GetIndexInfo(request, metadata=[("authorization", "Bearer key-a")], timeout=10).songs


def test_front_door_needs_an_api_key_and_keys_rotate_without_restart(
    synthetic_index: Catalog, featurizer: Proc, classifier: Proc, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# name:sha256\nteam-a:{digest('key-a')}\n")
    env = recommender_env(synthetic_index, featurizer, classifier, API_KEYS_FILE=str(keys))
    with running("services.recommender", env, tmp_path) as rec, grpc.insecure_channel(rec.address) as channel:
        stub = recommender_pb2_grpc.RecommenderServiceStub(channel)

        def call(key: str | None):
            metadata = [("authorization", f"Bearer {key}")] if key else None
            request = recommender_pb2.RecommendByIdRequest(song_id="tones-01")
            return lambda: stub.RecommendById(request, metadata=metadata, timeout=10)

        code, details = code_and_details(call(None))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "authorization: Bearer" in details
        code, details = code_and_details(call("key-b"))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "not valid" in details
        assert len(call("key-a")().recommendations) == 5
        assert "key-a" not in rec.log() and digest("key-a") not in rec.log()  # nothing secret is logged

        time.sleep(0.05)
        keys.write_text(f"team-b:{digest('key-b')}\n")  # rotate: a is revoked, b is issued
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                call("key-b")()
                break
            except grpc.RpcError:
                time.sleep(0.3)
        assert len(call("key-b")().recommendations) == 5
        assert code_and_details(call("key-a"))[0] == grpc.StatusCode.UNAUTHENTICATED
        health = channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)  # probes need no key
        assert health is not None


def test_a_flood_of_maximal_messages_is_read_within_the_admission_bound(
    synthetic_index: Catalog, featurizer: Proc, classifier: Proc, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"team-a:{digest('key-a')}\n")
    env = recommender_env(synthetic_index, featurizer, classifier, API_KEYS_FILE=str(keys))
    seeds = recommender_pb2.RecommendBySeedsRequest(seeds=[recommender_pb2.Seed(
        audio=recommender_pb2.AudioFile(filename="big.wav", data=b"\1" * (31 * 2**20)))])
    payload = seeds.SerializeToString()  # 31 MiB, under MAX_MESSAGE_MB: gRPC itself would read it

    def flood(address: str, key: str) -> list[grpc.StatusCode]:
        codes: list[grpc.StatusCode] = []

        def sender() -> None:  # 4 connections x 16 calls at once
            with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 2**26)]) as channel:
                call = channel.unary_unary("/musicrec.v1.RecommenderService/RecommendBySeeds")
                metadata = [("authorization", f"Bearer {key}")]
                futures = [call.future(payload, timeout=60, metadata=metadata) for _ in range(16)]
                codes.extend(future.exception().code() for future in futures)

        threads = [threading.Thread(target=sender) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        return codes

    with running("services.recommender", env, tmp_path) as rec:
        baseline = resident_mib(rec.process.pid)
        assert flood(rec.address, "no-such-key") == [grpc.StatusCode.UNAUTHENTICATED] * 64
        grown = resident_mib(rec.process.pid) - baseline
        assert grown < 150, f"64 unauthenticated 31 MiB requests grew the recommender by {grown:.0f} MiB"
        # with a key the bodies are read, LARGE_REQUESTS_AT_ONCE (2) at a time; the others wait
        # with one flow-control window each (BDP probing on: 2.0 GB), and a refused request is
        # freed at once (in reference cycles until a full collection: +2 GB per flood)
        assert len(flood(rec.address, "key-a")) == 64
        first = resident_mib(rec.process.pid) - baseline
        assert first < 700, f"64 authenticated 31 MiB requests grew the recommender by {first:.0f} MiB"
        assert len(flood(rec.address, "key-a")) == 64
        second = resident_mib(rec.process.pid) - baseline - first
        assert second < 150, f"a second flood grew the recommender by {second:.0f} MiB more"
        with grpc.insecure_channel(rec.address) as channel:  # and it keeps serving
            stub = recommender_pb2_grpc.RecommenderServiceStub(channel)
            reply = stub.RecommendById(recommender_pb2.RecommendByIdRequest(song_id="tones-01"),
                                       metadata=[("authorization", "Bearer key-a")], timeout=10)
            assert reply.recommendations


def test_request_messages_are_limited_per_method(stub) -> None:
    request = recommender_pb2.RecommendByIdRequest(song_id="tones-01", options=recommender_pb2.RecommendOptions(
        exclude_ids=["x" * 2000] * 1000))  # 2 MB of options: over the small-message limit
    code, details = code_and_details(lambda: stub.RecommendById(request, timeout=10))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "RecommendById request message may hold at most" in details


def test_internal_services_accept_only_the_service_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("internal-secret\n")
    env = {"SERVICE_TOKEN_FILE": str(token)}
    with running("services.featurizer", env, tmp_path) as fz, grpc.insecure_channel(fz.address) as channel:
        call = featurizer_pb2_grpc.FeaturizerServiceStub(channel).GetFeatureSchema
        request = featurizer_pb2.GetFeatureSchemaRequest()
        code, details = code_and_details(lambda: call(request, timeout=5))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "service token" in details
        reply = call(request, metadata=[("authorization", "Bearer internal-secret")], timeout=5)
        assert reply.schema_version == SCHEMA_VERSION


def test_reflection_can_be_turned_off(tmp_path: Path) -> None:
    with running("services.featurizer", {"REFLECTION": "off"}, tmp_path) as fz, grpc.insecure_channel(
        fz.address
    ) as channel:
        reflect = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        code, _ = code_and_details(lambda: list(reflect(iter([b"\x3a\x00"]), timeout=5)))
        assert code == grpc.StatusCode.UNIMPLEMENTED


HEAVY_CALLER = """
import signal, sys, grpc
from musicrec.v1 import recommender_pb2 as pb, recommender_pb2_grpc
stub = recommender_pb2_grpc.RecommenderServiceStub(grpc.insecure_channel(sys.argv[1]))
calls = [
    lambda: stub.FindPath(pb.FindPathRequest(from_song_id="song-0", to_song_id="song-5", count=50), timeout=60),
    lambda: stub.RecommendBySeeds(pb.RecommendBySeedsRequest(
        seeds=[pb.Seed(song_id=f"song-{i * 7}") for i in range(20)],
        options=pb.RecommendOptions(k=100, diversity=1.0)), timeout=60),
    lambda: stub.RecommendById(pb.RecommendByIdRequest(song_id="song-3", options=pb.RecommendOptions(
        k=100, exclude_ids=[f"song-{i}" for i in range(13, 10_013, 10)])), timeout=60),
]
done = 0
signal.signal(signal.SIGTERM, lambda *_: (print(done, flush=True), sys.exit(0)))
while True:
    calls[done % 3]()
    done += 1
"""


def test_health_and_cheap_calls_stay_answered_while_the_heaviest_requests_run(tmp_path: Path) -> None:
    from bench.recommend import synthetic_catalog

    synthetic_catalog(tmp_path / "index", 30_000)
    env = {"INDEX_DIR": str(tmp_path / "index"), "REDIS_URL": "off",
           "FEATURIZER_ADDR": "127.0.0.1:9", "CLASSIFIER_ADDR": "127.0.0.1:9"}  # by id: never called
    with running("services.recommender", env, tmp_path) as rec, grpc.insecure_channel(rec.address) as channel:
        stub = recommender_pb2_grpc.RecommenderServiceStub(channel)
        # the heavy calls come from another process, one after another (a client's own threads
        # would share its interpreter with the measuring loop)
        heavy = subprocess.Popen([sys.executable, "-c", HEAVY_CALLER, rec.address], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        latencies = []
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        info = recommender_pb2.GetIndexInfoRequest()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            started = time.perf_counter()
            check(b"", timeout=5)
            stub.GetIndexInfo(info, timeout=5)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
        heavy.terminate()
        out, err = heavy.communicate(timeout=30)
        answered = int((out or "0").split()[-1])
        p99 = float(np.percentile(latencies, 99))
        assert answered >= 6, f"only {answered} heavy requests finished in 8 s: {err[-1500:]}"
        assert p99 < 0.1, f"health + GetIndexInfo p99 {p99 * 1000:.0f} ms while heavy requests ran"



# --- the cache ---------------------------------------------------------------------------------


def test_cache_poisoning_fails(stub, recommender: Proc, redis_server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    honest = by_id(stub, "beats-03", k=2)
    key = by_id_key(honest.index_generation, "beats-03", parse_options(recommender_pb2.RecommendOptions(k=2)))
    assert client.exists(key)
    evil = recommender_pb2.RecommendByIdResponse(
        query=honest.query,
        recommendations=[recommender_pb2.Recommendation(
            song=recommender_pb2.Song(id="evil", title="Click http://evil.example"), similarity=1.0)],
    )
    client.set(key, evil.SerializeToString(), ex=600)  # what an attacker on the Redis network can do
    reply = by_id(stub, "beats-03", k=2)
    assert not reply.cached and "evil" not in [r.song.id for r in reply.recommendations]
    assert [r.song.id for r in reply.recommendations] == [r.song.id for r in honest.recommendations]
    assert "bad signature" in recommender.log()
    assert by_id(stub, "beats-03", k=2).cached  # the honest answer was stored again, signed


# --- what the audio can do ---------------------------------------------------------------------


def flac(seconds: float, rate: int = 8000, tone_at: tuple[float, float] | None = None) -> bytes:
    """A FLAC of `seconds` of digital silence (a few KB per hour), with an optional tone."""
    buffer = io.BytesIO()
    block = rate * 60
    with sf.SoundFile(buffer, "w", rate, 1, format="FLAC", subtype="PCM_16") as f:
        written = 0
        total = int(seconds * rate)
        while written < total:
            n = min(block, total - written)
            chunk = np.zeros(n, np.float32)
            if tone_at:
                t = (written + np.arange(n)) / rate
                inside = (t >= tone_at[0]) & (t < tone_at[1])
                chunk[inside] = 0.3 * np.sin(2 * np.pi * 440 * t[inside])
            f.write(chunk)
            written += n
    return buffer.getvalue()


def test_decompression_bomb_is_refused_and_a_long_song_costs_only_its_window(featurizer: Proc) -> None:
    before = resident_mib(featurizer.process.pid)  # about 280 MiB idle: librosa, numba, scipy
    with grpc.insecure_channel(featurizer.address) as channel:
        stub = featurizer_pb2_grpc.FeaturizerServiceStub(channel)
        bomb = flac(6 * 3600)  # 6 h of audio in a few hundred KB
        assert len(bomb) < 2 * 2**20
        started = time.monotonic()
        request = featurizer_pb2.FeaturizeRequest(audio=bomb)
        code, details = code_and_details(lambda: stub.Featurize(request, timeout=30))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "MAX_AUDIO_SECONDS" in details
        assert time.monotonic() - started < 5
        long_song = flac(50 * 60, tone_at=(60, 90))  # under the limit: only 60-90 s is decoded
        reply = stub.Featurize(featurizer_pb2.FeaturizeRequest(audio=long_song, omit_mel=True), timeout=60)
        assert reply.window.policy == "killing_part" and reply.window.song_seconds == pytest.approx(3000)
    grown = resident_mib(featurizer.process.pid) - before
    assert grown < 30, f"featurizer grew {grown:.0f} MiB on a 6 h and a 50 min FLAC (a full decode took 2 GB)"


def test_too_short_or_corrupt_audio_is_refused_not_padded(stub) -> None:
    one_sample = synth.encode(np.array([0.5], np.float32))
    code, details = code_and_details(lambda: upload(stub, one_sample, "tiny.wav"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "MIN_AUDIO_SECONDS" in details
    short = synth.encode(synth.synthetic_song("beats", 1, seconds=0.3))
    assert code_and_details(lambda: upload(stub, short, "short.wav"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    mp3_like = b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 40
    code, details = code_and_details(lambda: upload(stub, mp3_like, "broken.mp3"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and " at 0x" not in details  # no Python reprs


# --- streams -----------------------------------------------------------------------------------


def test_slow_and_never_closing_uploads_are_cut_off_and_memory_stays_bounded(
    synthetic_index: Catalog, featurizer: Proc, classifier: Proc, tmp_path: Path
) -> None:
    env = recommender_env(synthetic_index, featurizer, classifier, UPLOAD_IDLE_SECONDS="2",
                          UPLOAD_DEADLINE_SECONDS="6", MAX_UPLOADS_PER_PEER="4", MAX_UPLOAD_MB="60")
    with running("services.recommender", env, tmp_path) as rec:
        baseline = resident_mib(rec.process.pid)
        outcomes: list[grpc.StatusCode] = []
        release = threading.Event()

        def never_closing() -> None:
            def messages():
                yield from list(upload_messages(b"\0" * (4 * 2**20), "slow.wav", chunk=2**20))[:3]
                release.wait(30)  # then goes quiet, never closing the stream

            with grpc.insecure_channel(rec.address) as channel:
                stub = recommender_pb2_grpc.RecommenderServiceStub(channel)
                try:
                    stub.RecommendByAudio(messages(), timeout=30)
                except grpc.RpcError as exc:
                    outcomes.append(exc.code())

        threads = [threading.Thread(target=never_closing) for _ in range(16)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        peak = resident_mib(rec.process.pid)
        for t in threads:
            t.join(20)
        release.set()
        assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 12  # 4 per peer, the rest refused
        assert outcomes.count(grpc.StatusCode.DEADLINE_EXCEEDED) == 4  # idle for UPLOAD_IDLE_SECONDS
        assert peak - baseline < 100, f"{peak - baseline:.0f} MiB held by 16 stalled uploads"
        with grpc.insecure_channel(rec.address) as channel:  # and it keeps serving
            assert by_id(recommender_pb2_grpc.RecommenderServiceStub(channel), "tones-02").recommendations


# --- what a request can say ---------------------------------------------------------------------


def test_overflowing_features_never_give_nan_similarities(stub) -> None:
    features = audio_pb2.FeatureVector(schema_version=SCHEMA_VERSION, names=FEATURE_NAMES, values=[3e38] * 57)
    request = recommender_pb2.RecommendByFeaturesRequest(features=features)
    code, details = code_and_details(lambda: stub.RecommendByFeatures(request, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "overflow" in details
    features.values[:] = [1e39] * 57  # finite in Python, infinite as float32
    code, _ = code_and_details(lambda: stub.RecommendByFeatures(request, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_huge_ids_are_echoed_short(stub) -> None:
    huge = "x" * 10_000
    code, details = code_and_details(lambda: by_id(stub, huge))
    assert code == grpc.StatusCode.NOT_FOUND and len(details) < 400 and "10000 characters" in details
    code, details = code_and_details(lambda: stub.GetSong(recommender_pb2.GetSongRequest(song_id=huge), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and len(details) < 400


def test_undecodable_requests_are_invalid_argument(recommender: Proc) -> None:
    with grpc.insecure_channel(recommender.address) as channel:
        raw = channel.unary_unary("/musicrec.v1.RecommenderService/RecommendById")
        for payload in (b"\xff\xff\xff\xff", b"\x0a\x02\xff\xfe"):  # not protobuf; a song_id of invalid UTF-8
            code, details = code_and_details(lambda p=payload: raw(p, timeout=10))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "protobuf" in details


def test_redis_url_empty_turns_the_cache_off_and_an_unset_one_is_named(
    synthetic_index: Catalog, featurizer: Proc, classifier: Proc, tmp_path: Path
) -> None:
    env = recommender_env(synthetic_index, featurizer, classifier, redis_url="")
    with running("services.recommender", env, tmp_path) as rec:
        assert "cache disabled" in rec.log()
        with grpc.insecure_channel(rec.address) as channel:
            info = recommender_pb2_grpc.RecommenderServiceStub(channel).GetIndexInfo(
                recommender_pb2.GetIndexInfoRequest(), timeout=10
            )
        assert not info.cache_available
    unset = {k: v for k, v in recommender_env(synthetic_index, featurizer, classifier).items() if k != "REDIS_URL"}
    saved = os.environ.pop("REDIS_URL", None)
    try:
        with running("services.recommender", unset, tmp_path) as rec:
            assert '"severity": "WARNING"' in rec.log() and "REDIS_URL is not set" in rec.log()
    finally:
        if saved is not None:
            os.environ["REDIS_URL"] = saved
