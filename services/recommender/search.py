"""Pick the recommendations: per-genre k-NN, then the rules callers rely on.

Rules: never the query song (by id, or the same recording: similarity ~1), no duplicates (same
id, same title+artist, or the same recording twice), an optional cap per artist, best first.
Searches grow until k songs pass the rules or the genres are exhausted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.recommender.index import DEFAULT_EF_SEARCH, hnsw_search
from services.recommender.reasons import explain, feature_groups
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


def recommend(index_set: IndexSet, query: Query, ef: int = DEFAULT_EF_SEARCH) -> list[Hit]:
    z = index_set.standardise(query.raw)
    genres = [g for g in query.genres if g in index_set.indexes]
    total = sum(index_set.indexes[g].get_current_count() for g in genres)
    want = query.k + 8
    while True:
        candidates: list[tuple[int, float]] = []
        for genre in genres:
            candidates += hnsw_search(index_set.indexes[genre], z, want, ef)
        candidates.sort(key=lambda c: -c[1])
        picked = _apply_rules(index_set, query, candidates)
        if len(picked) >= query.k or want >= total:
            break
        want *= 2
    picked = picked[: query.k]
    groups = feature_groups(index_set.feature_names)
    standardised = index_set.standardise(index_set.raw[[row for row, _ in picked]]) if picked else []
    return [
        Hit(
            index_set.songs[row],
            sim,
            explain(groups, index_set.feature_names, z, hit_z, query.raw, index_set.raw[row]),
        )
        for (row, sim), hit_z in zip(picked, standardised, strict=True)
    ]


def _apply_rules(index_set: IndexSet, query: Query, candidates: list[tuple[int, float]]) -> list[tuple[int, float]]:
    picked: list[tuple[int, float]] = []
    seen_ids: set[str] = {query.exclude_id} if query.exclude_id else set()
    seen_titles: set[tuple[str, str]] = set()
    per_artist: dict[str, int] = {}
    if query.exclude_id in index_set.by_id:
        song = index_set.songs[index_set.by_id[query.exclude_id]]
        seen_titles.add((song.title.casefold(), song.artist.casefold()))
    for row, sim in candidates:
        song = index_set.songs[row]
        title_key = (song.title.casefold(), song.artist.casefold())
        artist = song.artist.casefold()
        if song.id in seen_ids or sim >= SAME_RECORDING:
            continue
        if song.title and title_key in seen_titles:
            continue
        if any(float(index_set.unit[row] @ index_set.unit[other]) >= SAME_RECORDING for other, _ in picked):
            continue
        if query.max_per_artist and artist and per_artist.get(artist, 0) >= query.max_per_artist:
            continue
        seen_ids.add(song.id)
        seen_titles.add(title_key)
        per_artist[artist] = per_artist.get(artist, 0) + 1
        picked.append((row, sim))
        if len(picked) >= query.k:
            break
    return picked
