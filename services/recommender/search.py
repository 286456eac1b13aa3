"""Pick the recommendations: per-genre k-NN, then the rules callers rely on.

Rules: never the query song (by id, or the same recording: similarity ~1), no duplicates (same
id, same title+artist, or the same recording twice), an optional cap per artist, best first.
Searches grow until k songs pass the rules or the genres are exhausted. When the query's
genres hold fewer than k eligible songs, the fallback genres fill the rest (after them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.recommender.index import DEFAULT_EF_SEARCH, hnsw_search
from services.recommender.reasons import explain
from services.recommender.store import IndexSet, SongRecord

MAX_K = 100
DEFAULT_K = 5
SAME_RECORDING = 0.99999  # cosine similarity of two standardised vectors of the same audio


@dataclass
class Hit:
    song: SongRecord
    similarity: float
    reason: str


@dataclass
class Query:
    raw: np.ndarray  # the query's feature vector as the featurizer produced it
    genres: list[str]
    k: int = DEFAULT_K
    max_per_artist: int = 0
    exclude_id: str = ""
    fallback: list[str] = field(default_factory=list)  # searched only to fill up to k


@dataclass
class Result:
    hits: list[Hit]
    searched: list[str]  # the genres whose songs were considered


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
    index_set: IndexSet, query: Query, base: list[tuple[int, float]], z: np.ndarray, genres: list[str], ef: int
) -> list[tuple[int, float]]:
    """Add the genres' nearest songs, best first, until k are picked or the genres run out."""
    picked = list(base)
    total = sum(index_set.indexes[g].get_current_count() for g in genres)
    want = query.k + 8
    while genres:
        candidates = [c for genre in genres for c in hnsw_search(index_set.indexes[genre], z, want, ef)]
        candidates.sort(key=lambda c: -c[1])
        picked = _pick(index_set, query, base, candidates, query.k)
        if len(picked) >= query.k or want >= total:
            break
        want *= 2
    return picked


def recommend(index_set: IndexSet, query: Query, ef: int = DEFAULT_EF_SEARCH) -> Result:
    z = index_set.standardise(query.raw)
    genres = [g for g in dict.fromkeys(query.genres) if g in index_set.indexes]
    picked = _fill(index_set, query, [], z, genres, ef)
    searched = list(genres)
    if len(picked) < query.k:
        extra = [g for g in dict.fromkeys(query.fallback) if g in index_set.indexes and g not in genres]
        picked = _fill(index_set, query, picked, z, extra, ef)
        searched += extra
    hits = [
        Hit(
            index_set.songs[row],
            sim,
            explain(index_set.groups, index_set.feature_names, z, index_set.z[row], query.raw, index_set.raw[row]),
        )
        for row, sim in picked
    ]
    return Result(hits, searched)
