"""Index generations on disk, the read side (serving): load one, find the current one.

    <INDEX_DIR>/CURRENT            -> "gen-000007" (replaced atomically with os.replace)
    <INDEX_DIR>/gen-000007/        manifest.json, songs.json, raw.npy, scaler.npz, hnsw-NN.bin

A build (build.py, ingestion only) writes a hidden temporary folder, renames it to its
generation and only then points CURRENT at it, so a reader sees either the old generation or
the new one, never a half-built one. Servers poll CURRENT and swap their in-memory reference;
queries already running keep the object they started with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.recommender.index import GenreIndex, normalise_rows
from services.recommender.reasons import typical_gaps

CURRENT = "CURRENT"


@dataclass
class SongRecord:
    id: str
    title: str
    artist: str
    release_date: str
    genre: str  # the index it lives in
    predicted_genre: str = ""
    # Share of the voting folds that agreed with predicted_genre; 1.0 when not classified.
    vote_share: float = 1.0
    # Genres ranked by the vote (best first), for the runner-up search.
    ranking: list[str] = field(default_factory=list)
    # The classifier's calibrated probability per genre (empty when not classified).
    probabilities: dict[str, float] = field(default_factory=dict)
    # "catalog" when the catalog gave the genre, "classifier" when the vote chose it.
    genre_source: str = "catalog"
    album: str = ""
    duration_seconds: float = 0.0  # the whole song; 0 when unknown
    year: int = 0  # 0 when unknown


@dataclass
class IndexSet:
    """One loaded generation: songs, standardised vectors and one HNSW graph per genre."""

    generation: int
    manifest: dict
    songs: list[SongRecord]
    raw: np.ndarray  # [N, F] feature vectors as the featurizer produced them
    mean: np.ndarray
    scale: np.ndarray
    indexes: dict[str, GenreIndex]
    # Derived once per generation, not per query:
    by_id: dict[str, int] = field(init=False)
    z: np.ndarray = field(init=False)  # standardised rows
    unit: np.ndarray = field(init=False)  # standardised rows, unit length (for exact checks)
    groups: dict[str, np.ndarray] = field(init=False)  # feature columns of each group the reasons speak of
    typical_gaps: dict[str, dict[str, float]] = field(init=False)  # genre -> group -> a neighbour's usual gap

    def __post_init__(self) -> None:
        self.by_id = {s.id: i for i, s in enumerate(self.songs)}
        self.z = self.standardise(self.raw)
        self.unit = normalise_rows(self.z)
        position = {name: i for i, name in enumerate(self.feature_names)}
        self.groups = {
            group: np.array([position[n] for n in names]) for group, names in self.manifest["feature_groups"].items()
        }
        # written by the build; generations from before it are measured here, once
        self.typical_gaps = self.manifest.get("typical_gaps") or typical_gaps(self.groups, self.z, self.genre_rows())

    def genre_rows(self) -> dict[str, np.ndarray]:
        genres = np.array([s.genre for s in self.songs])
        return {g: np.flatnonzero(genres == g) for g in sorted(set(genres.tolist()))}

    @property
    def schema_version(self) -> str:
        return self.manifest["schema_version"]

    @property
    def feature_names(self) -> list[str]:
        return self.manifest["feature_names"]

    @property
    def genres(self) -> list[str]:
        return sorted(self.indexes)

    def standardise(self, raw: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # the caller checks for non-finite results
            return ((np.asarray(raw, dtype=np.float64) - self.mean) / self.scale).astype(np.float32)


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
    songs = [SongRecord(**row) for row in json.loads((folder / "songs.json").read_text())]
    raw = np.load(folder / "raw.npy")
    scaler = np.load(folder / "scaler.npz")
    indexes = {
        genre: GenreIndex.load(folder / entry["file"], raw.shape[1], entry["count"])
        for genre, entry in manifest["genres"].items()
    }
    return IndexSet(generation, manifest, songs, raw, scaler["mean"], scaler["scale"], indexes)


def load_current(index_dir: Path) -> IndexSet | None:
    generation = current_generation(index_dir)
    return None if generation is None else load_generation(index_dir, generation)
