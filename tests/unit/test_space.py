"""The similarity space (services/recommender/index/space.py): the features joined with the ear's
embedding, each part weighted, and what a query without an embedding finds."""

from __future__ import annotations

import numpy as np
import pytest

from services.featurizer.schema import FEATURE_GROUPS, FEATURE_NAMES, SCHEMA_VERSION
from services.recommender.catalog.build import build_generation
from services.recommender.index.space import column_weights, joined
from services.recommender.index.store import SongRecord, load_current
from services.recommender.search.options import Options
from services.recommender.search.recommend import Query, recommend
from services.recommender.search.routing import Route

F, D = len(FEATURE_NAMES), 200


def test_each_part_weighs_its_share_of_a_vectors_length() -> None:
    z = np.random.default_rng(0).standard_normal((20_000, F + D))  # standardised columns
    weighted = z * column_weights(F, D, 0.9)
    shares = (weighted[:, F:] ** 2).sum(1).mean() / (weighted**2).sum(1).mean()
    assert shares == pytest.approx(0.9, abs=0.01)
    assert np.array_equal(column_weights(F, 0), np.ones(F))  # an index without the ear: as before


def test_a_query_without_an_embedding_takes_the_catalog_mean() -> None:
    mean = np.arange(F + D, dtype=np.float64)
    features = np.ones(F, np.float32)
    assert np.array_equal(joined(features, None, mean)[F:], mean[F:].astype(np.float32))
    assert np.array_equal(joined(features, np.full(D, 7.0), mean)[F:], np.full(D, 7.0, np.float32))
    assert joined(features, None, mean[:F]).shape == (F,)  # an index without the ear


def test_the_embedding_decides_the_neighbours_and_the_features_stay_readable(tmp_path) -> None:
    """Two styles the features cannot tell apart but the embedding can: the neighbours follow
    the embedding, a song's 57 features read back exactly, and a features-only query of a
    catalog song (its own features) never gets that song back."""
    rng = np.random.default_rng(1)
    n = 40
    features = rng.standard_normal((n, F)).astype(np.float32) * 3 + 10
    style = np.repeat([0, 1], n // 2)
    centres = rng.standard_normal((2, D)) * 4
    embedding = (centres[style] + rng.standard_normal((n, D))).astype(np.float32)
    songs = [SongRecord(f"s{i}", f"s{i}", f"artist{i}", "", "one") for i in range(n)]
    build_generation(tmp_path, songs, np.hstack([features, embedding]), SCHEMA_VERSION, FEATURE_NAMES,
                     FEATURE_GROUPS, embedding={"model": "musicnn_msd", "version": 1, "dim": D}, progress=False)
    index = load_current(tmp_path)
    assert index.dim == F + D and index.embedding_dim == D
    np.testing.assert_allclose(index.raw_rows(np.arange(n))[:, :F], features, rtol=1e-4, atol=1e-3)
    query = Query.one(index.raw_rows([0])[0], [Route("one", 1.0, "requested")], Options(k=5), "s0")
    assert {int(h.song.id[1:]) < n // 2 for h in recommend(index, query).hits} == {True}
    by_features = Query.one(joined(features[3], None, index.mean), [Route("one", 1.0, "all")], Options(k=5))
    assert "s3" not in [h.song.id for h in recommend(index, by_features).hits]  # the same recording


def test_an_upload_embedded_by_another_ear_is_refused(tmp_path) -> None:
    """Vectors of two ears are not comparable: an index says which ear made it, and an upload
    embedded by another (or another version) is UNAVAILABLE with the fix, not a silent mismatch."""
    import grpc

    from musicrec.v1 import audio_pb2, classifier_pb2
    from services.common.errors import ServiceError
    from services.recommender.api.lookup import analysed_vector

    rng = np.random.default_rng(2)
    songs = [SongRecord(f"s{i}", f"s{i}", "", "", "one") for i in range(8)]
    build_generation(tmp_path, songs, rng.standard_normal((8, F + D)).astype(np.float32), SCHEMA_VERSION,
                     FEATURE_NAMES, FEATURE_GROUPS, embedding={"model": "musicnn_msd", "version": 1, "dim": D},
                     progress=False)
    index = load_current(tmp_path)
    features = audio_pb2.FeatureVector(schema_version=SCHEMA_VERSION, values=rng.standard_normal(F).tolist())

    def vote(model: str, version: int, dim: int) -> classifier_pb2.ClassifyResponse:
        return classifier_pb2.ClassifyResponse(embedding=classifier_pb2.Embedding(
            model_name=model, model_version=version, values=rng.standard_normal(dim).tolist()))

    assert analysed_vector(index, features, vote("musicnn_msd", 1, D)).shape == (F + D,)
    for other in (vote("musicnn_mtt", 1, D), vote("musicnn_msd", 2, D), vote("musicnn_msd", 1, 64)):
        with pytest.raises(ServiceError) as err:
            analysed_vector(index, features, other)
        assert err.value.code == grpc.StatusCode.UNAVAILABLE and "re-run the ingestion" in err.value.message
