"""The recommender on the real GTZAN clips (skipped without ../shared/data)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile as sf

from musicrec.v1 import recommender_pb2, recommender_pb2_grpc
from services.common.localrun import Proc, running
from services.recommender import ingest
from services.recommender.catalog import write_catalog
from services.recommender.demo_catalog import gtzan_catalog
from services.recommender.index import exact_search
from services.recommender.store import IndexSet, load_current
from tests.conftest import GTZAN, needs_gtzan
from tests.recommender_calls import upload

pytestmark = needs_gtzan


@pytest.fixture(scope="module")
def gtzan_index(featurizer: Proc, classifier: Proc, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gtzan")
    write_catalog(folder / "catalog.csv", gtzan_catalog(GTZAN))
    arguments = ["--catalog", str(folder / "catalog.csv"), "--index-dir", str(folder / "index"), "--strict"]
    arguments += ["--featurizer", featurizer.address, "--classifier", classifier.address]
    assert ingest.main(arguments) == 0
    return folder / "index"


@pytest.fixture(scope="module")
def stub(gtzan_index: Path, featurizer: Proc, classifier: Proc, tmp_path_factory) -> Iterator:
    env = {
        "INDEX_DIR": str(gtzan_index),
        "REDIS_URL": "off",
        "FEATURIZER_ADDR": featurizer.address,
        "CLASSIFIER_ADDR": classifier.address,
    }
    with (
        running("services.recommender", env, tmp_path_factory.mktemp("rec")) as rec,
        grpc.insecure_channel(rec.address) as channel,
    ):
        yield recommender_pb2_grpc.RecommenderServiceStub(channel)


def test_hnsw_top5_equals_exact_cosine_on_real_songs(gtzan_index: Path) -> None:
    index: IndexSet = load_current(gtzan_index)
    assert len(index.songs) == 100 and len(index.genres) == 10
    found = total = 0
    for genre in index.genres:
        rows = np.array([i for i, s in enumerate(index.songs) if s.genre == genre])
        for row in rows:
            exact, _ = exact_search(index.unit[rows], index.unit[row], 6)
            expected = {int(rows[e]) for e in exact} - {int(row)}
            graph = index.indexes[genre]
            graph.set_ef(64)
            labels, _ = graph.knn_query(index.unit[row], k=6)
            found += len(expected & (set(labels[0].tolist()) - {int(row)}))
            total += len(expected)
    assert found / total == 1.0


def test_by_id_searches_the_runner_up_only_for_low_confidence_votes(stub, gtzan_index: Path) -> None:
    index = load_current(gtzan_index)
    low = [s for s in index.songs if s.vote_share < 0.8]
    assert low, "the shipped models vote 3 of 5 or fewer on a few clips: the runner-up path runs"
    for song in index.songs[::7] + low:
        reply = stub.RecommendById(recommender_pb2.RecommendByIdRequest(song_id=song.id), timeout=30)
        assert len(reply.recommendations) == 5 and song.id not in [r.song.id for r in reply.recommendations]
        assert reply.searched_genres[0] == song.genre
        if song.vote_share < 0.8:
            runner_up = next(g for g in song.ranking if g != song.genre)
            assert list(reply.searched_genres) == [song.genre, runner_up]
        else:
            assert list(reply.searched_genres) == [song.genre]
            assert {r.song.genre for r in reply.recommendations} == {song.genre}


def test_upload_of_a_long_song_uses_the_killing_part(stub) -> None:
    parts = [sf.read(GTZAN / g / f"{g}.0000{n}.wav", dtype="float32")[0][: 30 * 22050] for g, n in
             (("rock", 1), ("classical", 2), ("metal", 3), ("pop", 4))]  # fmt: skip
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate(parts), 22050, format="FLAC")
    reply = upload(stub, buffer.getvalue(), "long.flac", chunk=512 * 1024)
    assert reply.window.policy == "killing_part" and reply.window.start_seconds == 60.0
    assert reply.window.song_seconds == pytest.approx(120.0, abs=0.01)
    assert reply.classification.genre == reply.searched_genres[0] and len(reply.recommendations) == 5
    assert "metal.00003" not in [r.song.id for r in reply.recommendations]  # the same recording
