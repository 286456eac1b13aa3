"""Cosine k-NN: hnswlib graphs for serving, and the exact search they are measured against."""

from __future__ import annotations

from pathlib import Path

import hnswlib
import numpy as np

DEFAULT_M = 32
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF_SEARCH = 256


def build_hnsw(
    vectors: np.ndarray,
    labels: np.ndarray,
    m: int = DEFAULT_M,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
    threads: int = -1,
) -> hnswlib.Index:
    """A cosine HNSW graph over `vectors` whose hits are reported as `labels`."""
    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=max(1, len(vectors)), M=m, ef_construction=ef_construction, random_seed=7)
    if len(vectors):
        index.add_items(np.ascontiguousarray(vectors, dtype=np.float32), labels, num_threads=threads)
    return index


def load_hnsw(path: Path, dim: int, count: int) -> hnswlib.Index:
    index = hnswlib.Index(space="cosine", dim=dim)
    index.load_index(str(path), max_elements=max(1, count))
    return index


def hnsw_search(
    index: hnswlib.Index, query: np.ndarray, k: int, ef: int = DEFAULT_EF_SEARCH
) -> list[tuple[int, float]]:
    """The k nearest (label, cosine similarity), best first; fewer when the index is smaller."""
    k = min(k, index.get_current_count())
    if k <= 0:
        return []
    index.set_ef(max(ef, k))
    labels, distances = index.knn_query(np.asarray(query, dtype=np.float32).reshape(1, -1), k=k, num_threads=1)
    return [(int(label), 1.0 - float(d)) for label, d in zip(labels[0], distances[0], strict=True)]


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
