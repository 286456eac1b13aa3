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
from services.recommender.catalog.build import build_generation
from services.recommender.index.space import EMBEDDING_SHARE
from services.recommender.index.store import SongRecord, load_current
from services.recommender.search.options import Options
from services.recommender.search.recommend import Query, recommend
from services.recommender.search.routing import STRATEGIES, RoutingPolicy, Vote


@dataclass
class CatalogClips:
    ids: list[str]
    genres: list[str]
    vectors: np.ndarray  # [n, 57 features + the ear's embedding] (services/recommender/index/space.py)
    embedding_share: float = EMBEDDING_SHARE


@dataclass
class Queries:
    vectors: np.ndarray
    truths: list[str]
    votes: list[Vote]
    ids: list[str] | None = None  # catalog ids of the queries, when they are catalog songs (left out)


class CatalogIndex:
    """The catalog clips as one index generation, built and loaded by the service's own code."""

    def __init__(self, catalog: CatalogClips) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        songs = [SongRecord(i, i, "", "", g) for i, g in zip(catalog.ids, catalog.genres, strict=True)]
        dim = catalog.vectors.shape[1] - len(FEATURE_NAMES)
        embedding = {"model": "musicnn_msd", "version": 1, "dim": dim} if dim else None
        build_generation(Path(self._tmp.name), songs, catalog.vectors, SCHEMA_VERSION, FEATURE_NAMES,
                         FEATURE_GROUPS, embedding=embedding, embedding_share=catalog.embedding_share, progress=False)
        self.index = load_current(Path(self._tmp.name))

    def consistency(self, queries: Queries, policy: RoutingPolicy, k: int = 5) -> dict:
        shares, searched = [], []
        ids = queries.ids or [""] * len(queries.truths)
        for raw, truth, vote, song_id in zip(queries.vectors, queries.truths, queries.votes, ids, strict=True):
            routes = policy.for_vote(vote, self.index.genres)
            query = Query.one(raw, routes, Options(k=k), song_id, policy=policy, fill=self.index.genres)
            result = recommend(self.index, query)
            shares.append(np.mean([h.song.genre == truth for h in result.hits]))
            searched.append(len(routes))
        return {"consistency_at_k": float(np.mean(shares)), "k": k,
                "mean_genres_searched": float(np.mean(searched)), "per_query": [float(x) for x in shares]}


def compare(index: CatalogIndex, queries: Queries, base: RoutingPolicy) -> dict[str, dict]:
    """Every strategy with the same thresholds."""
    return {
        s: index.consistency(queries, RoutingPolicy(s, base.mass, base.runner_up_below, base.prior_weight))
        for s in STRATEGIES
    }


def tune_mass(
    pairs: list[tuple[CatalogIndex, Queries]], masses=(0.5, 0.8, 0.95), weights=(0.05, 0.1, 0.3, 1.0)
) -> dict:
    """Probability-mass settings on tuning pairs, never on the hold-out: each fold's validation
    clips (with that fold model's out-of-fold prediction) queried against the other folds' clips,
    so no query finds its own artist block in the catalog."""

    def mean_over_pairs(policy: RoutingPolicy, key: str) -> float:
        results = [(index.consistency(q, policy)[key], len(q.truths)) for index, q in pairs]
        return sum(v * n for v, n in results) / sum(n for _, n in results)

    rows = []
    for mass in masses:
        for weight in weights:
            policy = RoutingPolicy("mass", mass=mass, prior_weight=weight)
            rows.append({"mass": mass, "prior_weight": weight,
                         "consistency_at_k": mean_over_pairs(policy, "consistency_at_k"),
                         "mean_genres_searched": mean_over_pairs(policy, "mean_genres_searched")})
    vote = mean_over_pairs(RoutingPolicy("vote"), "consistency_at_k")
    best = max(rows, key=lambda r: (r["consistency_at_k"], -r["mean_genres_searched"]))
    return {"grid": rows, "vote_consistency_at_k": vote, "best": best}


def tune_share(
    make_pairs, shares=(0.0, 0.5, 0.75, 0.9, 1.0), strategies=("vote", "mass", "all")
) -> dict:
    """Consistency@5 out of fold for each share of the ear's embedding in the similarity space
    (space.py) and each routing strategy; `make_pairs(share)` builds the tuning pairs."""
    rows = []
    for share in shares:
        pairs = make_pairs(share)
        row = {"embedding_share": share}
        for strategy in strategies:
            results = [(index.consistency(q, RoutingPolicy(strategy))["consistency_at_k"], len(q.truths))
                       for index, q in pairs]
            row[strategy] = sum(v * n for v, n in results) / sum(n for _, n in results)
        rows.append(row)
    best = max(rows, key=lambda r: max(r[s] for s in strategies))
    return {"rows": rows, "best_share": best["embedding_share"]}
