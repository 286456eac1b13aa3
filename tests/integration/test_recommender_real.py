"""The recommender on the real GTZAN clips (skipped without ../shared/data)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile as sf

from devtools.demo_catalog import folder_catalog
from devtools.localrun import Proc, running
from musicrec.v1 import recommender_pb2, recommender_pb2_grpc
from services.recommender.catalog import ingest
from services.recommender.catalog.reader import root_arguments, write_catalog
from services.recommender.index.graph import DEFAULT_EF_SEARCH, GenreIndex, exact_search
from services.recommender.index.store import IndexSet, load_current
from services.recommender.search.routing import RoutingPolicy
from tests.conftest import GTZAN, needs_gtzan
from tests.recommender_calls import upload

pytestmark = needs_gtzan


@pytest.fixture(scope="module")
def gtzan_index(featurizer: Proc, classifier: Proc, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gtzan")
    songs = folder_catalog(GTZAN)
    write_catalog(folder / "catalog.csv", songs)
    arguments = ["--catalog", str(folder / "catalog.csv"), "--index-dir", str(folder / "index"), "--strict"]
    arguments += root_arguments(songs)
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
        "ROUTING": "mass",  # the probability-mass rule (the default is the vote: test_routing.py)
    }
    with (
        running("services.recommender", env, tmp_path_factory.mktemp("rec")) as rec,
        grpc.insecure_channel(rec.address) as channel,
    ):
        yield recommender_pb2_grpc.RecommenderServiceStub(channel)


def test_hnsw_top5_equals_exact_cosine_on_real_songs(gtzan_index: Path) -> None:
    """One graph over all 100 real songs (not 10 per genre, which any search gets right), searched
    through the service's own GenreIndex.search with its default ef."""
    index: IndexSet = load_current(gtzan_index)
    assert len(index.songs) == 100 and len(index.genres) == 10
    rows = np.arange(len(index.songs))
    z, unit = index.z_rows(rows), index.unit_rows(rows)

    def recall(graph: GenreIndex, ef: int) -> float:
        found = 0
        for row in rows:
            exact, _ = exact_search(unit, unit[row], 6)
            found += len(set(exact.tolist()) & {r for r, _ in graph.search(z[row], 6, ef)})
        return found / (6 * len(rows))

    assert recall(GenreIndex.build(z, rows), DEFAULT_EF_SEARCH) == 1.0
    assert recall(GenreIndex.build(z, rows, m=2, ef_construction=2), 1) < 1.0  # the check can fail


def test_by_id_searches_the_catalog_genre_by_default(stub, gtzan_index: Path) -> None:
    index = load_current(gtzan_index)
    for song in list(index.songs)[::7]:
        reply = stub.RecommendById(recommender_pb2.RecommendByIdRequest(song_id=song.id), timeout=30)
        assert len(reply.recommendations) == 5 and song.id not in [r.song.id for r in reply.recommendations]
        assert [(r.genre, r.reason) for r in reply.routing] == [(song.genre, "catalog_genre")]
        assert {r.song.genre for r in reply.recommendations} == {song.genre}


def test_runner_up_rule_searches_the_runner_up_only_for_low_confidence_votes(
    gtzan_index: Path, featurizer: Proc, classifier: Proc, tmp_path: Path
) -> None:
    index = load_current(gtzan_index)
    low = [s for s in index.songs if s.vote_share < 0.8]
    assert low, "the shipped models vote 3 of 5 or fewer on some clips: the runner-up path runs"
    env = {"INDEX_DIR": str(gtzan_index), "REDIS_URL": "off", "ROUTING": "runner_up",
           "FEATURIZER_ADDR": featurizer.address, "CLASSIFIER_ADDR": classifier.address}
    with running("services.recommender", env, tmp_path) as rec, grpc.insecure_channel(rec.address) as channel:
        stub = recommender_pb2_grpc.RecommenderServiceStub(channel)
        for song in list(index.songs)[::7] + low:
            reply = stub.RecommendById(recommender_pb2.RecommendByIdRequest(song_id=song.id), timeout=30)
            if song.vote_share < 0.8:
                ranking, _ = index.songs.vote(index.row_of(song.id))
                runner_up = next(g for g in ranking if g != song.genre)
                assert list(reply.searched_genres) == [song.genre, runner_up]
            else:
                assert list(reply.searched_genres) == [song.genre]


def test_upload_of_a_long_song_uses_the_killing_part(stub) -> None:
    parts = [sf.read(GTZAN / g / f"{g}.0000{n}.wav", dtype="float32")[0][: 30 * 22050] for g, n in
             (("rock", 1), ("classical", 2), ("metal", 3), ("pop", 4))]  # fmt: skip
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate(parts), 22050, format="FLAC")
    reply = upload(stub, buffer.getvalue(), "long.flac", chunk=512 * 1024)
    assert reply.window.policy == "killing_part" and reply.window.start_seconds == 60.0
    assert reply.window.song_seconds == pytest.approx(120.0, abs=0.01)
    assert len(reply.recommendations) == 5 and reply.routing[0].reason == "probability_mass"
    # routing follows the calibrated probabilities, best first, until ROUTING_MASS is reached
    probability = {s.genre: s.probability for s in reply.classification.ranking}
    weights = [r.weight for r in reply.routing]
    assert weights == sorted(weights, reverse=True) and reply.routing[0].genre == max(probability, key=probability.get)
    mass = RoutingPolicy().mass  # ROUTING_MASS's default
    assert sum(weights) >= mass - 1e-6 and sum(weights[:-1]) < mass
    assert "metal.00003" not in [r.song.id for r in reply.recommendations]  # the same recording
