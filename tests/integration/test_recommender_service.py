"""The recommender over real gRPC with real neighbours: featurizer, classifier, model server, Redis."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import redis

from devtools.localrun import Proc
from musicrec.v1 import audio_pb2, featurizer_pb2, featurizer_pb2_grpc, recommender_pb2, recommender_pb2_grpc
from services.featurizer.schema import FEATURE_NAMES, SCHEMA_VERSION
from services.recommender.api.cache import by_id_key
from services.recommender.catalog.build import build_generation
from services.recommender.index.store import generation_name, load_current
from services.recommender.search.options import parse_options
from tests import synth
from tests.conftest import grpcurl_exe
from tests.integration.conftest import Catalog
from tests.recommender_calls import Options, by_id, upload, upload_messages


@pytest.fixture(scope="module")
def stub(recommender: Proc) -> Iterator[recommender_pb2_grpc.RecommenderServiceStub]:
    with grpc.insecure_channel(recommender.address) as channel:
        yield recommender_pb2_grpc.RecommenderServiceStub(channel)


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.details(), "an error must say what to do"
    return err.value.code()


def test_recommend_by_id_defaults(stub) -> None:
    reply = by_id(stub, "beats-02")
    assert reply.query.id == "beats-02" and reply.query.artist == "Synth Lab C"
    assert len(reply.recommendations) == 5
    assert reply.searched_genres[0] == "beats" and reply.index_generation >= 1
    assert reply.routing[0].reason == "catalog_genre" and {r.reason for r in reply.routing[1:]} == {"fill"}
    # beats holds 4 other songs: the 5th comes from the other genres, after them
    assert len(reply.searched_genres) == 4
    ids = [r.song.id for r in reply.recommendations]
    assert "beats-02" not in ids and len(set(ids)) == 5
    for rec in reply.recommendations:
        song = rec.song
        assert song.title and song.artist and song.release_date and song.genre in reply.searched_genres
        assert -1.0 <= rec.similarity <= 1.0 and rec.reason.startswith(("unusually close in ", "closest for its genre"))
        assert len(rec.reasons) >= 2 and any(p.group in rec.reason for p in rec.reasons)
    sims = [r.similarity for r in reply.recommendations[:4]]
    assert sims == sorted(sims, reverse=True)
    assert set(ids[:4]) == {f"beats-0{n}" for n in (0, 1, 3, 4)} and not ids[4].startswith("beats")


def test_second_call_is_cached_and_equal(stub, redis_server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()  # other tests share this Redis
    first = by_id(stub, "tones-01", k=3)
    assert not first.cached
    key = by_id_key(first.index_generation, "tones-01", parse_options(recommender_pb2.RecommendOptions(k=3)))
    assert key.startswith(f"musicrec:v1:rec:g{first.index_generation}:id:tones-01:")  # the generation is in it
    assert 3500 < client.ttl(key) <= 3600  # CACHE_TTL_SECONDS
    second = by_id(stub, "tones-01", k=3)
    assert second.cached
    assert [r.song.id for r in second.recommendations] == [r.song.id for r in first.recommendations]
    assert by_id(stub, "tones-01", k=4).cached is False  # options are part of the key
    assert by_id(stub, "tones-01", k=3, exclude_ids=[first.recommendations[0].song.id]).cached is False  # all of them


def test_k_and_artist_cap(stub) -> None:
    assert len(by_id(stub, "noise-00", k=1).recommendations) == 1
    many = by_id(stub, "noise-00", k=100)
    assert len(many.recommendations) == 19  # every other song, once
    capped = by_id(stub, "noise-00", k=10, max_per_artist=1)
    artists = [r.song.artist for r in capped.recommendations]
    assert len(artists) == len(set(artists))


def test_bad_ids_and_options(stub) -> None:
    assert code_of(lambda: by_id(stub, "no-such-song")) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: by_id(stub, "")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: by_id(stub, "beats-00", k=-1)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: by_id(stub, "beats-00", k=101)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: by_id(stub, "beats-00", max_per_artist=-2)) == grpc.StatusCode.INVALID_ARGUMENT
    get = stub.GetSong
    assert code_of(lambda: get(recommender_pb2.GetSongRequest(song_id="nope"))) == grpc.StatusCode.NOT_FOUND
    assert get(recommender_pb2.GetSongRequest(song_id="chirps-03")).song.title == "Chirps No. 3"
    assert len(by_id(stub, "beats-00").recommendations) == 5  # still serving


def test_recommend_by_uploaded_audio(stub) -> None:
    data = synth.encode(synth.synthetic_song("beats", 2, seconds=40) * 0.9)
    for layout in ("header", "legacy"):
        reply = upload(stub, data, "my-song.wav", layout=layout, k=3)
        assert len(reply.recommendations) == 3 and reply.window.policy == "centered"
        assert reply.classification.folds_voted == 5 and reply.classification.genre in reply.classification.labels
        # the models speak GTZAN genres, this catalog its own: routing searches every genre and says so
        assert sorted(reply.searched_genres) == ["beats", "chirps", "noise", "tones"]
        expected = [(g, 1.0, "all") for g in reply.searched_genres]
        assert [(r.genre, r.weight, r.reason) for r in reply.routing] == expected


def test_upload_options_after_the_first_message_are_refused(stub) -> None:
    data = synth.encode(synth.synthetic_song("beats", 2, seconds=40))
    messages = list(upload_messages(data, "late.wav", layout="legacy"))
    messages[2].options.k = 7  # the old layout silently ignored this
    with pytest.raises(grpc.RpcError) as err:
        stub.RecommendByAudio(iter(messages), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "first message only" in err.value.details()
    data_first = [recommender_pb2.RecommendByAudioRequest(data=b"RIFF")]
    with pytest.raises(grpc.RpcError) as err:
        stub.RecommendByAudio(iter(data_first), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in err.value.details()


def test_upload_of_a_catalog_song_leaves_it_out(stub, synthetic_index: Catalog) -> None:
    data = (synthetic_index.folder / "chirps-01.wav").read_bytes()
    reply = upload(stub, data, "chirps-01.wav", k=100)
    assert "chirps-01" not in [r.song.id for r in reply.recommendations]


def test_bad_uploads(stub) -> None:
    assert code_of(lambda: upload(stub, b"")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: upload(stub, b"not audio at all" * 100)) == grpc.StatusCode.INVALID_ARGUMENT
    silence = synth.encode(np.zeros(22050 * 5, np.float32))
    assert code_of(lambda: upload(stub, silence)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: upload(stub, b"", k=500)) == grpc.StatusCode.INVALID_ARGUMENT


def test_recommend_by_features(stub, featurizer: Proc) -> None:
    with grpc.insecure_channel(featurizer.address) as channel:
        features = featurizer_pb2_grpc.FeaturizerServiceStub(channel).Featurize(
            featurizer_pb2.FeaturizeRequest(audio=synth.encode(synth.synthetic_song("tones", 3)), omit_mel=True),
            timeout=60,
        ).features
    request = recommender_pb2.RecommendByFeaturesRequest(features=features, options=Options(k=4))
    reply = stub.RecommendByFeatures(request, timeout=30)
    assert sorted(reply.searched_genres) == ["beats", "chirps", "noise", "tones"]
    assert len(reply.recommendations) == 4 and "tones-03" not in [r.song.id for r in reply.recommendations]
    request.genre = "noise"
    assert {r.song.genre for r in stub.RecommendByFeatures(request, timeout=30).recommendations} == {"noise"}

    def bad(**change) -> grpc.StatusCode:
        vector = audio_pb2.FeatureVector(schema_version=SCHEMA_VERSION, values=list(features.values))
        genre = change.pop("genre", "")
        for field, value in change.items():
            del vector.values[:]
            setattr(vector, field, value) if field == "schema_version" else vector.values.extend(value)
        req = recommender_pb2.RecommendByFeaturesRequest(features=vector, genre=genre)
        return code_of(lambda: stub.RecommendByFeatures(req, timeout=30))

    assert bad(schema_version="gtzan-58-v9") == grpc.StatusCode.INVALID_ARGUMENT
    assert bad(values=[1.0, 2.0]) == grpc.StatusCode.INVALID_ARGUMENT
    assert bad(values=[float("nan")] * len(FEATURE_NAMES)) == grpc.StatusCode.INVALID_ARGUMENT
    assert bad(genre="polka") == grpc.StatusCode.INVALID_ARGUMENT


def test_index_info(stub) -> None:
    info = stub.GetIndexInfo(recommender_pb2.GetIndexInfoRequest(), timeout=10)
    assert info.songs == 20 and info.schema_version == SCHEMA_VERSION and info.cache_available
    assert {(g.genre, g.songs) for g in info.genres} == {(g, 5) for g in ("beats", "chirps", "noise", "tones")}
    assert info.generation >= 1 and info.created_at.startswith("20")


def test_grpcurl_recommends_by_id(recommender: Proc) -> None:
    out = subprocess.run(
        [grpcurl_exe(), "-plaintext", "-d", '{"song_id": "tones-00", "options": {"k": 2}}', recommender.address,
         "musicrec.v1.RecommenderService/RecommendById"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert len(reply["recommendations"]) == 2 and reply["query"]["id"] == "tones-00"


def test_rebuild_swaps_generation_without_failed_queries(stub, synthetic_index: Catalog) -> None:
    before = by_id(stub, "beats-01").index_generation
    errors: list[BaseException] = []
    generations: set[int] = set()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                generations.add(by_id(stub, "beats-01", k=4).index_generation)
            except grpc.RpcError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    current = load_current(synthetic_index.index_dir)
    built = []
    for _ in range(2):  # two rebuilds while queries run
        built.append(build_generation(
            synthetic_index.index_dir, list(current.songs), current.raw_rows(np.arange(len(current.songs))),
            SCHEMA_VERSION, FEATURE_NAMES,
            current.manifest["feature_groups"], embedding=current.manifest["embedding"], progress=False,
        ))
        time.sleep(1.0)
    deadline = time.monotonic() + 10
    while max(generations, default=0) < built[-1] and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert before < built[0] < built[1] == max(generations), (before, built, generations)
    assert by_id(stub, "beats-01").cached is False  # a new generation starts with a cold cache


def test_broken_generation_is_skipped_and_the_old_one_keeps_serving(stub, recommender, synthetic_index) -> None:
    index_dir = synthetic_index.index_dir
    serving = by_id(stub, "noise-01").index_generation
    good = (index_dir / "CURRENT").read_text()
    broken = index_dir / generation_name(serving + 10**9)  # newer than anything served: it is tried
    broken.mkdir()
    (broken / "manifest.json").write_text("{ not json")
    (index_dir / "CURRENT").write_text(broken.name + "\n")
    try:
        time.sleep(1.5)  # several polls
        assert by_id(stub, "noise-01").index_generation == serving
        assert recommender.log().count("cannot load new index generation") == 1
    finally:
        (index_dir / "CURRENT").write_text(good)
        shutil.rmtree(broken)  # the session's index is shared: leave no generation behind


def seed_upload(n: int, data: bytes | None = None) -> recommender_pb2.Seed:
    genre = synth.SYNTH_GENRES[n % 4]
    audio = data if data is not None else synth.encode(synth.synthetic_song(genre, n % 5, seconds=6.0))
    return recommender_pb2.Seed(audio=recommender_pb2.AudioFile(filename=f"seed{n}.wav", data=audio))


def test_twenty_uploaded_seeds_work_and_a_bad_one_is_named(stub) -> None:
    """MAX_SEEDS uploads in one request on the local defaults (the featurizer takes 4 uploads from
    one address: a request's seeds go 4 at a time); a bad seed fails the request naming it, and
    cancels the seeds still waiting."""
    request = recommender_pb2.RecommendBySeedsRequest(seeds=[seed_upload(n) for n in range(20)], options=Options(k=5))
    reply = stub.RecommendBySeeds(request, timeout=120)
    assert len(reply.seeds) == 20 and all(s.genre for s in reply.seeds) and len(reply.recommendations) == 5
    seeds = [seed_upload(n) for n in range(20)]
    seeds[13] = seed_upload(13, b"not audio at all")
    with pytest.raises(grpc.RpcError) as err:
        stub.RecommendBySeeds(recommender_pb2.RecommendBySeedsRequest(seeds=seeds), timeout=120)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "seeds[13] ('seed13.wav')" in err.value.details() and "featurizer" in err.value.details()
