"""Index generations on disk, and their atomic swap.

    <INDEX_DIR>/CURRENT            -> "gen-000007" (replaced atomically with os.replace)
    <INDEX_DIR>/gen-000007/        manifest.json, songs.json, raw.npy, scaler.npz, hnsw-NN.bin

A build writes a hidden temporary folder, renames it to its generation and only then points
CURRENT at it, so a reader sees either the old generation or the new one, never a half-built
one. Servers poll CURRENT and swap their in-memory reference; queries already running keep the
object they started with.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hnswlib
import numpy as np
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from services.recommender.index import DEFAULT_EF_CONSTRUCTION, DEFAULT_M, build_hnsw, load_hnsw, normalise_rows
from services.recommender.reasons import feature_groups

CURRENT = "CURRENT"
KEEP_GENERATIONS = 3


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


@dataclass
class IndexSet:
    """One loaded generation: songs, standardised vectors and one HNSW graph per genre."""

    generation: int
    manifest: dict
    songs: list[SongRecord]
    raw: np.ndarray  # [N, F] feature vectors as the featurizer produced them
    mean: np.ndarray
    scale: np.ndarray
    indexes: dict[str, hnswlib.Index]
    # Derived once per generation, not per query:
    by_id: dict[str, int] = field(init=False)
    z: np.ndarray = field(init=False)  # standardised rows
    unit: np.ndarray = field(init=False)  # standardised rows, unit length (for exact checks)
    groups: dict[str, np.ndarray] = field(init=False)  # feature groups the reasons speak of

    def __post_init__(self) -> None:
        self.by_id = {s.id: i for i, s in enumerate(self.songs)}
        self.z = self.standardise(self.raw)
        self.unit = normalise_rows(self.z)
        self.groups = feature_groups(self.feature_names)

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
        return ((np.asarray(raw, dtype=np.float64) - self.mean) / self.scale).astype(np.float32)


def generation_name(generation: int) -> str:
    return f"gen-{generation:06d}"


def current_generation(index_dir: Path) -> int | None:
    try:
        name = (index_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return int(name.removeprefix("gen-"))


def _next_generation(index_dir: Path) -> int:
    numbers = [int(p.name[4:]) for p in index_dir.glob("gen-*") if p.name[4:].isdigit()]
    return max([*numbers, current_generation(index_dir) or 0]) + 1


def build_generation(
    index_dir: Path,
    songs: list[SongRecord],
    raw: np.ndarray,
    schema_version: str,
    feature_names: list[str],
    source: str = "",
    m: int = DEFAULT_M,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
    progress: bool = True,
) -> int:
    """Standardise, build one cosine graph per genre, persist, and swap CURRENT to it."""
    if len(songs) != len(raw) or not len(songs):
        raise ValueError(f"need one vector per song ({len(songs)} songs, {len(raw)} vectors)")
    index_dir.mkdir(parents=True, exist_ok=True)
    generation = _next_generation(index_dir)
    name = generation_name(generation)
    tmp = index_dir / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    raw = np.asarray(raw, dtype=np.float32)
    scaler = StandardScaler().fit(raw)
    standardised = scaler.transform(raw).astype(np.float32)
    genres = sorted({s.genre for s in songs})
    files = {}
    for number, genre in enumerate(tqdm(genres, desc="indexing genres", unit="genre", disable=not progress)):
        rows = np.array([i for i, s in enumerate(songs) if s.genre == genre], dtype=np.int64)
        graph = build_hnsw(standardised[rows], rows, m=m, ef_construction=ef_construction)
        files[genre] = {"file": f"hnsw-{number:02d}.bin", "count": len(rows)}
        graph.save_index(str(tmp / files[genre]["file"]))
    np.save(tmp / "raw.npy", raw)
    np.savez(tmp / "scaler.npz", mean=scaler.mean_, scale=scaler.scale_)
    (tmp / "songs.json").write_text(json.dumps([asdict(s) for s in songs]))
    manifest = {
        "generation": generation,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "schema_version": schema_version,
        "feature_names": list(feature_names),
        "songs": len(songs),
        "genres": files,
        "hnsw": {"space": "cosine", "M": m, "ef_construction": ef_construction},
        "source": source,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    os.rename(tmp, index_dir / name)
    pointer = index_dir / f".{CURRENT}.tmp-{os.getpid()}"
    pointer.write_text(name + "\n")
    os.replace(pointer, index_dir / CURRENT)
    _prune(index_dir, generation)
    return generation


def _prune(index_dir: Path, newest: int) -> None:
    """Keep the last few generations: a server may still be loading the previous one."""
    for path in index_dir.glob("gen-*"):
        number = path.name[4:]
        if number.isdigit() and int(number) <= newest - KEEP_GENERATIONS:
            shutil.rmtree(path, ignore_errors=True)


def load_generation(index_dir: Path, generation: int) -> IndexSet:
    folder = index_dir / generation_name(generation)
    manifest = json.loads((folder / "manifest.json").read_text())
    songs = [SongRecord(**row) for row in json.loads((folder / "songs.json").read_text())]
    raw = np.load(folder / "raw.npy")
    scaler = np.load(folder / "scaler.npz")
    indexes = {
        genre: load_hnsw(folder / entry["file"], raw.shape[1], entry["count"])
        for genre, entry in manifest["genres"].items()
    }
    return IndexSet(generation, manifest, songs, raw, scaler["mean"], scaler["scale"], indexes)


def load_current(index_dir: Path) -> IndexSet | None:
    generation = current_generation(index_dir)
    return None if generation is None else load_generation(index_dir, generation)
