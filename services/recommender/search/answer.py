"""What one answer reads from the index, read once: songs' unit vectors (fetched from the graphs
many rows at a time), their features parts, their catalog records. The search and the path
own it; the rules read through it."""

from __future__ import annotations

import numpy as np

from services.recommender.index.record import SongRecord
from services.recommender.index.store import IndexSet


def features_part(units: np.ndarray, n_features: int) -> np.ndarray:
    """The 57 features' part of unit vectors (space.py: the features come first), unit length:
    the same audio has the same features, whatever else a vector holds (a features-only query
    has no embedding of its own)."""
    part = np.asarray(units, dtype=np.float32)[..., :n_features]
    return part / np.maximum(np.linalg.norm(part, axis=-1, keepdims=True), 1e-12)


class AnswerReads:
    def __init__(self, index_set: IndexSet) -> None:
        self.index_set = index_set
        self.n_features = len(index_set.feature_names)
        self._units: dict[int, np.ndarray] = {}
        self._features: dict[int, np.ndarray] = {}
        self._songs: dict[int, SongRecord] = {}

    def prefetch(self, rows) -> None:
        """Read the unit vectors of many rows at once (one graph call per genre)."""
        missing = [int(r) for r in rows if int(r) not in self._units]
        for row, vector in zip(missing, self.index_set.unit_rows(missing), strict=True):
            self._units[row] = vector

    def unit(self, row: int) -> np.ndarray:
        if row not in self._units:
            self.prefetch([row])
        return self._units[row]

    def units(self, rows) -> np.ndarray:
        """[rows, F] unit vectors (a [0, F] array for none)."""
        rows = [int(r) for r in rows]
        if not rows:
            return np.zeros((0, self.index_set.dim), dtype=np.float32)
        self.prefetch(rows)
        return np.stack([self._units[r] for r in rows])

    def features_unit(self, row: int) -> np.ndarray:
        """The song's features part, unit length (the rules compare every candidate with every
        song chosen)."""
        if row not in self._features:
            self._features[row] = features_part(self.unit(row), self.n_features)
        return self._features[row]

    def song(self, row: int) -> SongRecord:
        """The catalog's record of a row (the rules look at some many times)."""
        if row not in self._songs:
            self._songs[row] = self.index_set.songs[row]
        return self._songs[row]
