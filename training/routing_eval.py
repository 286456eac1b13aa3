"""Genre-consistency@k of the routing strategies, through the recommender's own code.

The catalog is the training clips (their true genres, indexed by the same build code as
ingestion); each hold-out clip is a query routed from its calibrated vote. Consistency@k is
the share of the k hits whose true genre is the query's.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.featurizer.schema import FEATURE_GROUPS, FEATURE_NAMES, SCHEMA_VERSION
from services.recommender.build import build_generation
from services.recommender.routing import STRATEGIES, RoutingPolicy, Vote
from services.recommender.search import Query, recommend
from services.recommender.store import SongRecord, load_current


@dataclass
class CatalogClips:
    ids: list[str]
    genres: list[str]
    vectors: np.ndarray


def consistency(catalog: CatalogClips, queries: np.ndarray, truths: list[str], votes: list[Vote],
                policy: RoutingPolicy, k: int = 5) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        songs = [SongRecord(i, i, "", "", g) for i, g in zip(catalog.ids, catalog.genres, strict=True)]
        build_generation(Path(tmp), songs, catalog.vectors, SCHEMA_VERSION, FEATURE_NAMES, FEATURE_GROUPS,
                         progress=False)
        index = load_current(Path(tmp))
        assert index is not None
        shares, searched = [], []
        for raw, truth, vote in zip(queries, truths, votes, strict=True):
            routes = policy.for_vote(vote, index.genres)
            result = recommend(index, Query(raw, routes, k, policy=policy, fill=index.genres))
            shares.append(np.mean([h.song.genre == truth for h in result.hits]))
            searched.append(len(routes))
    return {"consistency_at_k": float(np.mean(shares)), "k": k, "mean_genres_searched": float(np.mean(searched)),
            "per_query": [float(x) for x in shares]}


def compare(catalog: CatalogClips, queries: np.ndarray, truths: list[str], votes: list[Vote],
            base: RoutingPolicy) -> dict[str, dict]:
    """Every strategy with the same thresholds."""
    return {
        s: consistency(catalog, queries, truths, votes,
                       RoutingPolicy(s, base.mass, base.runner_up_below, base.prior_weight))
        for s in STRATEGIES
    }
