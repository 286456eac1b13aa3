"""Pick the recommendations: k-NN in the routed genres, merged, then the rules callers rely on.

Rules: never the query song (by id, or the same recording: similarity ~1), no duplicates (same
id, same title+artist, or the same recording twice), an optional cap per artist. Hits of the
routed genres are merged by the routing score (routing.py); searches grow until k songs pass
the rules or the genres are exhausted. When the routed genres hold fewer than k eligible
songs, the fill genres top up the rest (after them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.common.errors import invalid
from services.recommender.index import DEFAULT_EF_SEARCH
from services.recommender.reasons import explain
from services.recommender.routing import DEFAULT_K, Route, RoutingPolicy
from services.recommender.store import IndexSet, SongRecord

SAME_RECORDING = 0.99999  # cosine similarity of two standardised vectors of the same audio


@dataclass
class Hit:
    song: SongRecord
    similarity: float
    reason: str


@dataclass
class Query:
    raw: np.ndarray  # the query's feature vector as the featurizer produced it
    routes: list[Route]
    k: int = DEFAULT_K
    max_per_artist: int = 0
    exclude_id: str = ""
    fill: list[str] = field(default_factory=list)  # searched only to top up to k
    policy: RoutingPolicy = field(default_factory=RoutingPolicy)


@dataclass
class Result:
    hits: list[Hit]
    routes: list[Route]  # the genres whose songs were considered, with their weights

    @property
    def searched(self) -> list[str]:
        return [r.genre for r in self.routes]


class _Picker:
    """Applies the rules to candidates in order, remembering what it has taken."""

    def __init__(self, index_set: IndexSet, query: Query) -> None:
        self.index_set = index_set
        self.query = query
        self.picked: list[tuple[int, float]] = []
        self.seen_ids: set[str] = {query.exclude_id} if query.exclude_id else set()
        self.seen_titles: set[tuple[str, str]] = set()
        self.per_artist: dict[str, int] = {}
        if query.exclude_id in index_set.by_id:
            song = index_set.songs[index_set.by_id[query.exclude_id]]
            self.seen_titles.add((song.title.casefold(), song.artist.casefold()))

    def offer(self, row: int, sim: float) -> None:
        song = self.index_set.songs[row]
        title_key = (song.title.casefold(), song.artist.casefold())
        artist = song.artist.casefold()
        unit = self.index_set.unit
        if song.id in self.seen_ids or sim >= SAME_RECORDING:
            return
        if song.title and title_key in self.seen_titles:
            return
        if self.picked and float(np.max(unit[[r for r, _ in self.picked]] @ unit[row])) >= SAME_RECORDING:
            return
        if self.query.max_per_artist and artist and self.per_artist.get(artist, 0) >= self.query.max_per_artist:
            return
        self.seen_ids.add(song.id)
        self.seen_titles.add(title_key)
        self.per_artist[artist] = self.per_artist.get(artist, 0) + 1
        self.picked.append((row, sim))


def _pick(
    index_set: IndexSet, query: Query, base: list[tuple[int, float]], candidates: list[tuple[int, float]], k: int
) -> list[tuple[int, float]]:
    picker = _Picker(index_set, query)
    for row, sim in base:  # already accepted: replaying them restores the picker's memory
        picker.offer(row, sim)
    for row, sim in candidates:
        if len(picker.picked) >= k:
            break
        picker.offer(row, sim)
    return picker.picked


def _fill(
    index_set: IndexSet, query: Query, base: list[tuple[int, float]], z: np.ndarray, routes: list[Route], ef: int
) -> list[tuple[int, float]]:
    """Add the routed genres' nearest songs, merged by routing score, until k are picked or
    the genres run out."""
    picked = list(base)
    total = sum(index_set.indexes[r.genre].count for r in routes)
    top = max((r.weight for r in routes), default=1.0)
    want = query.k + 8
    while routes:
        scored = [
            (query.policy.score(sim, route.weight, top), row, sim)
            for route in routes
            for row, sim in index_set.indexes[route.genre].search(z, want, ef)
        ]
        scored.sort(key=lambda c: -c[0])
        picked = _pick(index_set, query, base, [(row, sim) for _, row, sim in scored], query.k)
        if len(picked) >= query.k or want >= total:
            break
        want *= 2
    return picked


def recommend(index_set: IndexSet, query: Query, ef: int = DEFAULT_EF_SEARCH) -> Result:
    z = index_set.standardise(query.raw)
    if not np.all(np.isfinite(z)) or not np.isfinite(np.linalg.norm(z)):
        raise invalid(
            "the feature vector is far outside anything in the catalog (its standardised values overflow); "
            "send the featurizer's values for a real song"
        )
    routes = list({r.genre: r for r in query.routes if r.genre in index_set.indexes}.values())
    picked = _fill(index_set, query, [], z, routes, ef)
    if len(picked) < query.k:
        searched = {r.genre for r in routes}
        fill = [g for g in dict.fromkeys(query.fill) if g in index_set.indexes and g not in searched]
        extra = [Route(g, 1.0, "fill") for g in fill]
        picked = _fill(index_set, query, picked, z, extra, ef)
        routes += extra
    hits = [
        Hit(
            index_set.songs[row],
            sim,
            explain(index_set.groups, index_set.feature_names, z, index_set.z[row], query.raw, index_set.raw[row]),
        )
        for row, sim in picked
    ]
    return Result(hits, routes)
