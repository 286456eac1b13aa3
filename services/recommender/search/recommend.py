"""Pick the recommendations: k-NN in the routed genres, merged, then the rules callers rely on.

A query has one seed (a song, an upload, a vector) or several (a playlist), each with a weight.
A song's similarity is the weighted mean of its cosine similarities to the seeds; hits of the
routed genres are merged by the routing score (routing.py) on that similarity. The rules
(rules.py) drop seeds, duplicates and whatever the caller excluded; `diversity` trades
similarity for novelty by maximal marginal relevance. Searches grow until k songs qualify, the
genres are exhausted or MAX_CANDIDATES per genre were read (so an answer costs the same at 1M
songs as at 10k); when the routed genres hold fewer than k qualifying songs, the fill genres top
up the rest (after them), and the result says why it is still short.

The weighted mean similarity to the seeds is the dot product with the weighted sum of their unit
vectors, so the blend is the probe that finds the best songs; each seed's own nearest k are
added as candidates too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.common.errors import invalid
from services.recommender.index.graph import DEFAULT_EF_SEARCH, normalise_rows
from services.recommender.index.store import IndexSet, SongRecord
from services.recommender.search.answer import AnswerReads
from services.recommender.search.compute import UNLIMITED, Budget
from services.recommender.search.options import Options
from services.recommender.search.reasons import Reason, explain, sentences
from services.recommender.search.routing import Route, RoutingPolicy
from services.recommender.search.rules import Chosen, Rules, Shortfall

MAX_CANDIDATES = 4096  # per genre and search: what bounds an answer's time and memory
PERMANENT = ("duplicate", "max_per_artist")  # blocking rules no later choice can lift
SPARE_CANDIDATES = 8  # read beyond k at first: a few near songs are usually the seed or duplicates
DIVERSITY_POOL = (4, 50)  # with diversity, at first max(4 k, 50) candidates: MMR needs room to choose


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

    def __init__(self, index_set: IndexSet, query: Query, ef: int, budget: Budget) -> None:
        self.index_set = index_set
        self.query = query
        self.ef = ef
        self.budget = budget
        self.z = standardised_seeds(index_set, query.seeds)
        self.units = normalise_rows(self.z)
        weights = np.array([max(s.weight, 0.0) for s in query.seeds], dtype=np.float64)
        self.weights = weights / weights.sum()
        self.probes = self.z if len(self.z) == 1 else np.vstack([self.z, self.weights @ self.units])
        self.reads = AnswerReads(index_set)
        self.rules = Rules(self.reads, query.options, {s.song_id for s in query.seeds if s.song_id}, self.units)
        self.blocked: dict[int, str] = {}

    def similarities(self, rows) -> np.ndarray:
        """[rows, seeds] exact cosine similarities."""
        return self.reads.units(rows) @ self.units.T

    def candidates(self, routes: list[Route], want: int) -> list[tuple[float, int, float]]:
        """(merge score, row, similarity) of the routes' nearest songs to any probe, best first."""
        top = max((r.weight for r in routes), default=1.0)
        weight_of: dict[int, float] = {}
        # the blend (last) reads `want`; each seed adds its own nearest few, so every seed has
        # songs near it to offer when diversity asks for them
        own = min(want, max(1, (self.query.options.k + SPARE_CANDIDATES) // len(self.query.seeds)))
        for route in routes:
            self.budget.check()
            index = self.index_set.indexes[route.genre]
            found = index.search_many(self.probes[-1:], want, self.ef)
            if len(self.probes) > 1:
                found += index.search_many(self.probes[:-1], own, self.ef)
            for hits in found:
                for row, _ in hits:
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

    def select(
        self, base: list[tuple[int, float]], candidates: list[tuple[float, int, float]], want: int
    ) -> list[tuple[int, float]]:
        """Up to k songs: `base` first, then, of the `want` best candidates no rule refuses, the
        best by maximal marginal relevance under the rules."""
        options = self.query.options
        chosen = Chosen()
        for row, _ in base:
            chosen.add(self.reads.song(row), row)
        picked = list(base)
        pool = []
        for score, row, sim in candidates:
            if len(pool) == want:
                break
            if not self.rules.refuses(row, sim):
                pool.append((score, row, sim))
        self.blocked = {}
        if not pool:
            return picked
        scores = np.array([score for score, _, _ in pool])
        lam = options.diversity
        nearest_chosen = np.full(len(pool), -1.0)
        pool_units = self.reads.units([row for _, row, _ in pool]) if lam else None
        if lam:
            for row, _ in base:
                nearest_chosen = np.maximum(nearest_chosen, pool_units @ self.reads.unit(row))
        open_ = np.ones(len(pool), dtype=bool)  # not taken and not blocked for good
        while len(picked) < options.k and open_.any():
            self.budget.check()
            value = scores if not lam or not chosen.rows else (1 - lam) * scores - lam * nearest_chosen
            candidates = np.flatnonzero(open_)
            best = -1
            for i in candidates[np.argsort(-value[candidates], kind="stable")]:
                row = pool[i][1]
                rule = self.rules.blocks(row, chosen)
                if not rule:
                    self.blocked.pop(row, None)
                    best = int(i)
                    break
                self.blocked[row] = rule
                if rule in PERMANENT:
                    open_[i] = False
            if best < 0:
                break
            open_[best] = False
            _, row, sim = pool[best]
            chosen.add(self.reads.song(row), row)
            picked.append((row, sim))
            if lam:
                nearest_chosen = np.maximum(nearest_chosen, pool_units @ self.reads.unit(row))
        return picked

    def fill(self, base: list[tuple[int, float]], routes: list[Route]) -> tuple[list[tuple[int, float]], bool]:
        """Grow the search in `routes` until k qualify; (picked, whether every song was considered)."""
        picked = list(base)
        total = sum(self.index_set.indexes[r.genre].count for r in routes)
        k = self.query.options.k
        # diversity needs room to choose from; the rules may drop many near songs
        factor, least = DIVERSITY_POOL
        want = k + SPARE_CANDIDATES if not self.query.options.diversity else max(factor * k, least)
        while routes:
            picked = self.select(base, self.candidates(routes, want), want)
            if len(picked) >= k or want >= total or want >= MAX_CANDIDATES:
                return picked, want >= total
            want = min(2 * want, MAX_CANDIDATES)
        return picked, True


def recommend(index_set: IndexSet, query: Query, ef: int = DEFAULT_EF_SEARCH, budget: Budget = UNLIMITED) -> Result:
    search = _Search(index_set, query, ef, budget)
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
        else f"the nearest songs of {len(routes)} genres were considered (up to {MAX_CANDIDATES} per genre)"
    )
    return Result(hits, routes, search.rules.shortfall(query.options.k, len(hits), search.blocked, where))


def _hit(index_set: IndexSet, search: _Search, row: int, sim: float) -> Hit:
    per_seed = search.similarities(np.array([row]))[0]
    nearest = int(np.argmax(per_seed))  # reasons speak of the seed the hit is closest to
    reasons = explain(index_set, search.z[nearest], search.query.seeds[nearest].raw, row)
    return Hit(index_set.songs[row], sim, "", reasons, [float(s) for s in per_seed])
