"""Pick the recommendations: k-NN in the routed genres, merged, then the rules callers rely on.

A query has one seed (a song, an upload, a vector) or several (a playlist), each with a weight.
A song's similarity is the weighted mean of its cosine similarities to the seeds; hits of the
routed genres are merged by the routing score (routing.py) on that similarity. The rules
(rules.py) drop seeds, duplicates and whatever the caller excluded; `diversity` trades
similarity for novelty by maximal marginal relevance. Searches grow until k songs qualify or
the genres are exhausted; when the routed genres hold fewer than k qualifying songs, the fill
genres top up the rest (after them), and the result says why it is still short.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.common.errors import invalid
from services.recommender.index import DEFAULT_EF_SEARCH, normalise_rows
from services.recommender.options import Options
from services.recommender.reasons import Reason, explain, sentences
from services.recommender.routing import Route, RoutingPolicy
from services.recommender.rules import Chosen, Rules, Shortfall
from services.recommender.store import IndexSet, SongRecord


@dataclass
class Seed:
    raw: np.ndarray  # the feature vector as the featurizer produced it
    weight: float = 1.0
    label: str = "query"
    song_id: str = ""  # a catalog song: never recommended back


@dataclass
class Hit:
    song: SongRecord
    similarity: float  # weighted mean over the seeds
    reason: str  # the sentence naming the most distinctive groups (reasons.sentences)
    reasons: list[Reason] = field(default_factory=list)
    seed_similarities: list[float] = field(default_factory=list)


@dataclass
class Query:
    seeds: list[Seed]
    routes: list[Route]
    options: Options = field(default_factory=Options)
    fill: list[str] = field(default_factory=list)  # searched only to top up to k
    policy: RoutingPolicy = field(default_factory=RoutingPolicy)

    @classmethod
    def one(cls, raw: np.ndarray, routes: list[Route], options: Options | None = None, exclude_id: str = "", **kw):
        """A query of one seed (a catalog song when exclude_id names it)."""
        return cls([Seed(raw, 1.0, exclude_id or "query", exclude_id)], routes, options or Options(), **kw)


@dataclass
class Result:
    hits: list[Hit]
    routes: list[Route]  # the genres whose songs were considered, with their weights
    shortfall: Shortfall | None = None

    @property
    def searched(self) -> list[str]:
        return [r.genre for r in self.routes]


def standardised_seeds(index_set: IndexSet, seeds: list[Seed]) -> np.ndarray:
    """The seeds in the index's standardised space, [seeds, F]; INVALID_ARGUMENT when absurd."""
    z = index_set.standardise(np.stack([s.raw for s in seeds]))
    if not np.all(np.isfinite(z)) or not np.all(np.isfinite(np.linalg.norm(z, axis=1))):
        raise invalid(
            "the feature vector is far outside anything in the catalog (its standardised values overflow); "
            "send the featurizer's values for a real song"
        )
    return z


class _Search:
    """One answer: the candidates found so far and the rules that sift them."""

    def __init__(self, index_set: IndexSet, query: Query, ef: int) -> None:
        self.index_set = index_set
        self.query = query
        self.ef = ef
        self.z = standardised_seeds(index_set, query.seeds)
        self.units = normalise_rows(self.z)
        weights = np.array([max(s.weight, 0.0) for s in query.seeds], dtype=np.float64)
        self.weights = weights / weights.sum()
        self.probes = self.z if len(self.z) == 1 else np.vstack([self.z, self.weights @ self.units])
        self.rules = Rules(index_set, query.options, {s.song_id for s in query.seeds if s.song_id}, self.units)
        self.blocked: dict[int, str] = {}

    def unit_rows(self, rows) -> np.ndarray:
        """[rows, F] unit vectors of catalog rows (a [0, F] array for none), read once per answer."""
        rows = [int(r) for r in rows]
        if not rows:
            return np.zeros((0, self.units.shape[1]), dtype=np.float32)
        self.rules.prefetch(rows)
        return np.stack([self.rules.unit(r) for r in rows])

    def similarities(self, rows) -> np.ndarray:
        """[rows, seeds] exact cosine similarities."""
        return self.unit_rows(rows) @ self.units.T

    def candidates(self, routes: list[Route], want: int) -> list[tuple[float, int, float]]:
        """(merge score, row, similarity) of the routes' nearest songs to any probe, best first."""
        top = max((r.weight for r in routes), default=1.0)
        weight_of: dict[int, float] = {}
        for route in routes:
            index = self.index_set.indexes[route.genre]
            for probe in self.probes:
                for row, _ in index.search(probe, want, self.ef):
                    weight_of[row] = route.weight
        if not weight_of:
            return []
        rows = np.fromiter(weight_of, dtype=np.int64)
        sims = self.similarities(rows) @ self.weights
        scored = [
            (self.query.policy.score(float(s), weight_of[int(r)], top), int(r), float(s))
            for r, s in zip(rows, sims, strict=True)
        ]
        scored.sort(key=lambda c: (-c[0], c[1]))
        return scored

    def select(self, base: list[tuple[int, float]], pool: list[tuple[float, int, float]]) -> list[tuple[int, float]]:
        """Up to k songs: `base` first, then the pool by maximal marginal relevance under the rules."""
        options = self.query.options
        chosen = Chosen()
        for row, _ in base:
            chosen.add(self.index_set.songs[row], row)
        picked = list(base)
        pool = [(score, row, sim) for score, row, sim in pool if not self.rules.refuses(row, sim)]
        taken = [False] * len(pool)
        nearest_chosen = np.full(len(pool), -1.0)
        pool_units = self.unit_rows([row for _, row, _ in pool])
        for row, _ in base:
            nearest_chosen = np.maximum(nearest_chosen, pool_units @ self.rules.unit(row))
        lam = options.diversity
        self.blocked = {}
        while len(picked) < options.k:
            best, best_value = -1, -np.inf
            for i, (score, row, _) in enumerate(pool):
                if taken[i]:
                    continue
                rule = self.rules.blocks(row, chosen)
                if rule:
                    self.blocked[row] = rule
                    continue
                self.blocked.pop(row, None)
                value = score if not lam or not chosen.rows else (1 - lam) * score - lam * nearest_chosen[i]
                if value > best_value:
                    best, best_value = i, value
                if not lam:
                    break  # the pool is in score order: the first that qualifies is the best
            if best < 0:
                break
            taken[best] = True
            _, row, sim = pool[best]
            chosen.add(self.index_set.songs[row], row)
            picked.append((row, sim))
            nearest_chosen = np.maximum(nearest_chosen, pool_units @ self.rules.unit(row))
        return picked

    def fill(self, base: list[tuple[int, float]], routes: list[Route]) -> tuple[list[tuple[int, float]], bool]:
        """Grow the search in `routes` until k qualify; (picked, whether every song was considered)."""
        picked = list(base)
        total = sum(self.index_set.indexes[r.genre].count for r in routes)
        k = self.query.options.k
        # diversity needs room to choose from; the rules may drop many near songs
        want = k + 8 if not self.query.options.diversity else max(4 * k, 50)
        while routes:
            picked = self.select(base, self.candidates(routes, want))
            if len(picked) >= k or want >= total:
                return picked, want >= total
            want *= 2
        return picked, True


def recommend(index_set: IndexSet, query: Query, ef: int = DEFAULT_EF_SEARCH) -> Result:
    search = _Search(index_set, query, ef)
    routes = list({r.genre: r for r in query.routes if r.genre in index_set.indexes}.values())
    picked, exhausted = search.fill([], routes)
    if len(picked) < query.options.k:
        searched = {r.genre for r in routes}
        fill = [g for g in dict.fromkeys(query.fill) if g in index_set.indexes and g not in searched]
        extra = [Route(g, 1.0, "fill") for g in fill]
        if extra:
            picked, exhausted = search.fill(picked, extra)
            routes += extra
    hits = [_hit(index_set, search, row, sim) for row, sim in picked]
    for hit, sentence in zip(hits, sentences([h.reasons for h in hits]), strict=True):
        hit.reason = sentence
    songs = sum(index_set.indexes[r.genre].count for r in routes)
    where = (
        f"all {songs} songs of the searched genres were considered"
        if exhausted
        else f"the nearest songs of {len(routes)} genres were considered"
    )
    return Result(hits, routes, search.rules.shortfall(query.options.k, len(hits), search.blocked, where))


def _hit(index_set: IndexSet, search: _Search, row: int, sim: float) -> Hit:
    per_seed = search.similarities(np.array([row]))[0]
    nearest = int(np.argmax(per_seed))  # reasons speak of the seed the hit is closest to
    reasons = explain(index_set, search.z[nearest], search.query.seeds[nearest].raw, row)
    return Hit(index_set.songs[row], sim, "", reasons, [float(s) for s in per_seed])
