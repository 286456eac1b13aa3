"""Index generations on disk, the read side (serving): load one, find the current one.

    <INDEX_DIR>/CURRENT                -> "gen-1796712345678" (replaced atomically with os.replace)
    <INDEX_DIR>/gen-1796712345678/     manifest.json, songs/ (columns, songs.py), norms.npy,
                                       scaler.npz, hnsw-NN.bin (one graph per genre)

The graphs hold the only copy of the vectors: each song's standardised vector, unit length
(cosine space). Its length (norms.npy) and the scaler give back the standardised and the raw
vector of the few rows a query needs, so a loaded generation keeps no N x F array beside the
graphs. Song fields are memory-mapped columns.

A build (build.py, ingestion only) writes a hidden temporary folder, renames it to its
generation and only then points CURRENT at it, so a reader sees either the old generation or
the new one, never a half-built one. Servers poll CURRENT and swap their in-memory reference
(live.py); queries already running keep the object they started with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.recommender.index.graph import GenreIndex
from services.recommender.index.record import SongRecord
from services.recommender.index.songs import SongTable

CURRENT = "CURRENT"
__all__ = ["CURRENT", "IndexSet", "SongRecord", "current_generation", "generation_name", "load_current",
           "load_generation"]


@dataclass
class IndexSet:
    """One loaded generation: songs, one HNSW graph per genre, what rebuilds the vectors."""

    generation: int
    manifest: dict
    songs: SongTable
    norms: np.ndarray  # [N] length of each standardised vector
    mean: np.ndarray
    scale: np.ndarray
    indexes: dict[str, GenreIndex]
    # Derived once per generation, not per query:
    groups: dict[str, np.ndarray] = field(init=False)  # feature columns of each group the reasons speak of
    typical_gaps: dict[str, dict[str, float]] = field(init=False)  # genre -> group -> a neighbour's usual gap

    def __post_init__(self) -> None:
        position = {name: i for i, name in enumerate(self.feature_names)}
        self.groups = {
            group: np.array([position[n] for n in names]) for group, names in self.manifest["feature_groups"].items()
        }
        self.typical_gaps = self.manifest["typical_gaps"]  # measured by the build

    @property
    def schema_version(self) -> str:
        return self.manifest["schema_version"]

    @property
    def feature_names(self) -> list[str]:
        """The 57 features' names: the first columns of every vector (space.py)."""
        return self.manifest["feature_names"]

    @property
    def embedding_dim(self) -> int:
        """Values of the ear's embedding after the features (0 for an index built without it)."""
        return vector_dim(self.manifest) - len(self.feature_names)

    @property
    def dim(self) -> int:
        return vector_dim(self.manifest)

    @property
    def genres(self) -> list[str]:
        return sorted(self.indexes)

    def genre_rows(self) -> dict[str, np.ndarray]:
        codes = self.songs.genre_codes()
        return {self.songs.labels[c]: np.flatnonzero(codes == c) for c in np.unique(codes)}

    def row_of(self, song_id: str) -> int | None:
        return self.songs.row_of(song_id)

    def unit_rows(self, rows) -> np.ndarray:
        """[len(rows), F] unit-length standardised vectors, read from the genres' graphs."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        if not len(rows):
            return out
        codes = self.songs.genre_codes()[rows]
        for code in np.unique(codes):
            where = np.flatnonzero(codes == code)
            out[where] = self.indexes[self.songs.labels[code]].get(rows[where])
        return out

    def z_rows(self, rows) -> np.ndarray:
        """[len(rows), F] standardised vectors."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        return self.unit_rows(rows) * np.asarray(self.norms[rows], dtype=np.float32)[:, None]

    def raw_rows(self, rows) -> np.ndarray:
        """[len(rows), F] vectors as the featurizer produced them."""
        return (self.z_rows(rows) * self.scale + self.mean).astype(np.float32)

    def standardise(self, raw: np.ndarray) -> np.ndarray:
        """A query's standardised vectors; NaN where a value is past float32's range before the
        cap (the caller refuses those: no song is that far out)."""
        with np.errstate(over="ignore", invalid="ignore"):
            z = (np.asarray(raw, dtype=np.float64) - self.mean) / self.scale
        capped = _capped(z)
        capped[~(np.abs(z) <= np.finfo(np.float32).max)] = np.nan
        return capped


Z_LIMIT = 10.0  # a standardised value is capped here: no song can swamp a vector's other columns


def standardised(raw: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Raw feature vectors [n, F] as the index stores them: (raw - centre) / scale, capped at
    ±Z_LIMIT (a song that far out on a feature stays far, without overflowing float32 or
    drowning its other features), float32."""
    return _capped((np.asarray(raw, dtype=np.float64) - mean) / scale)


def _capped(z: np.ndarray) -> np.ndarray:
    return np.clip(z, -Z_LIMIT, Z_LIMIT).astype(np.float32)


def vector_dim(manifest: dict) -> int:
    """Columns of a song's vector: the features, then the ear's embedding (space.py)."""
    return len(manifest["feature_names"]) + int(manifest.get("embedding", {}).get("dim", 0))


def generation_name(generation: int) -> str:
    return f"gen-{generation:06d}"


def current_generation(index_dir: Path) -> int | None:
    try:
        name = (index_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return int(name.removeprefix("gen-"))


def load_generation(index_dir: Path, generation: int) -> IndexSet:
    folder = index_dir / generation_name(generation)
    manifest = json.loads((folder / "manifest.json").read_text())
    scaler = np.load(folder / "scaler.npz")
    dim = vector_dim(manifest)
    indexes = {
        genre: GenreIndex.load(folder / entry["file"], dim, entry["count"])
        for genre, entry in manifest["genres"].items()
    }
    songs, norms = SongTable.load(folder / "songs"), np.load(folder / "norms.npy", mmap_mode="r")
    return IndexSet(generation, manifest, songs, norms, scaler["mean"], scaler["scale"], indexes)


def load_current(index_dir: Path) -> IndexSet | None:
    generation = current_generation(index_dir)
    return None if generation is None else load_generation(index_dir, generation)
