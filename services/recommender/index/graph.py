"""Cosine k-NN per genre. The only module that knows the backend (hnswlib): everything else
sees GenreIndex (build, save, load, search, get, count) and the exact search it is measured against.
Another backend (e.g. a sharded vector engine) replaces this file and nothing else.
"""

from __future__ import annotations

import threading
from pathlib import Path

import hnswlib
import numpy as np

DEFAULT_M = 16  # recall@5 >= 0.99 against exact at 1M songs (bench/recommend.py), 0.1 GiB less per 1M than 32
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF_SEARCH = 256


class GenreIndex:
    """One genre's songs as a cosine HNSW graph; hits are reported by their catalog row."""

    def __init__(self, graph: hnswlib.Index) -> None:
        self._graph = graph
        self._ef_lock = threading.Lock()  # ef is the graph's, not the query's: set and search together

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        rows: np.ndarray,
        m: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        threads: int = -1,
    ) -> GenreIndex:
        graph = hnswlib.Index(space="cosine", dim=vectors.shape[1])
        graph.init_index(max_elements=max(1, len(vectors)), M=m, ef_construction=ef_construction, random_seed=7)
        if len(vectors):
            graph.add_items(np.ascontiguousarray(vectors, dtype=np.float32), rows, num_threads=threads)
        return cls(graph)

    @classmethod
    def load(cls, path: Path, dim: int, count: int) -> GenreIndex:
        graph = hnswlib.Index(space="cosine", dim=dim)
        graph.load_index(str(path), max_elements=max(1, count))
        return cls(graph)

    def get(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of these rows ([len(rows), dim], unit length: cosine space)."""
        return np.asarray(self._graph.get_items(np.asarray(rows, dtype=np.int64), return_type="numpy"), np.float32)

    def save(self, path: Path) -> None:
        self._graph.save_index(str(path))

    @property
    def count(self) -> int:
        return self._graph.get_current_count()

    def search(self, query: np.ndarray, k: int, ef: int = DEFAULT_EF_SEARCH) -> list[tuple[int, float]]:
        """The k nearest (row, cosine similarity), best first; fewer when the genre is smaller."""
        return self.search_many(np.asarray(query).reshape(1, -1), k, ef)[0]

    def search_many(self, queries: np.ndarray, k: int, ef: int = DEFAULT_EF_SEARCH) -> list[list[tuple[int, float]]]:
        """search() for each row of `queries` [n, dim], in one call to the graph."""
        k = min(k, self.count)
        vectors = np.ascontiguousarray(queries, dtype=np.float32)
        if k <= 0 or not len(vectors):
            return [[] for _ in range(len(vectors))]
        try:
            with self._ef_lock:
                self._graph.set_ef(max(ef, k))
                rows, distances = self._graph.knn_query(vectors, k=k, num_threads=1)
        except RuntimeError:  # hnswlib found fewer than k (many identical vectors cut the graph up)
            return [self._exact(vector, k) for vector in vectors]
        return [
            [(int(r), 1.0 - float(d)) for r, d in zip(row_ids, row_distances, strict=True)]
            for row_ids, row_distances in zip(rows, distances, strict=True)
        ]

    def _exact(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Brute force over the genre's stored (unit) vectors: the answer HNSW could not give."""
        rows = np.asarray(self._graph.get_ids_list(), dtype=np.int64)
        order, sims = exact_search(self.get(rows), query, k)
        return [(int(rows[i]), float(sim)) for i, sim in zip(order, sims, strict=True)]


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def exact_search(unit_vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force cosine k-NN over rows already normalised to unit length: (rows, similarities)."""
    sims = unit_vectors @ normalise_rows(np.asarray(query, dtype=np.float32))
    k = min(k, len(sims))
    top = np.argpartition(-sims, k - 1)[:k]
    order = top[np.argsort(-sims[top], kind="stable")]
    return order, sims[order]
