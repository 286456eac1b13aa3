"""Labelled clips for training: GTZAN-style folders or a catalog CSV, analysed once.

Every clip goes through the featurizer's own pipeline (decode, 30 s window, fused log-mel and
feature vector), so the models see exactly what the service sends them. Analyses are cached
per file (path, size, mtime) under var/cache/, so adding clips only analyses the new ones.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from services.featurizer.pipeline import analyse
from services.featurizer.schema import SCHEMA_VERSION
from training.metadata import clip_metadata

AUDIO_SUFFIXES = {".wav", ".mp3", ".au", ".flac", ".ogg"}
GTZAN_ID = re.compile(r"\.(\d{5})\.\w+$")
ID_BLOCK = 10  # GTZAN numbers one artist's clips consecutively: ids in one block share a group


@dataclass
class Dataset:
    mels: np.ndarray  # float32 [n, 96, n_frames]: the ear's log-mel (services/featurizer/ear_mel.py)
    vectors: np.ndarray  # float32 [n, n_features]
    labels: np.ndarray  # int [n]
    genres: list[str]
    paths: list[str]
    valid_frames: np.ndarray  # int [n]: frames before the featurizer's end padding

    def subset(self, idx: np.ndarray) -> Dataset:
        return Dataset(
            self.mels[idx], self.vectors[idx], self.labels[idx], self.genres,
            [self.paths[i] for i in idx], self.valid_frames[idx],
        )


def list_folders(roots: list[Path]) -> list[tuple[Path, str]]:
    """<root>/<genre>/<clip>: the genre is the folder name; several roots are merged."""
    items = [
        (p, p.parent.name)
        for root in roots
        for p in sorted(root.glob("*/*"))
        if p.suffix.lower() in AUDIO_SUFFIXES
    ]
    if not items:
        raise SystemExit(f"no audio files under {', '.join(map(str, roots))} (<root>/<genre>/<clip>)")
    return items


def list_catalog(csv_path: Path) -> list[tuple[Path, str]]:
    """A catalog CSV (id,title,artist,release_date,genre,audio_path); paths relative to the CSV."""
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("genre")]
    return [((csv_path.parent / r["audio_path"]).resolve(), r["genre"]) for r in rows]


def valid_frames(log_mel: np.ndarray) -> int:
    """Frames before the trailing padding: the featurizer zero-pads songs shorter than 30 s,
    and padded frames are log10(1) = 0 in every band (training/ear/musicnn.py:valid_frames
    is the same rule inside the served model)."""
    live = np.flatnonzero(log_mel.max(axis=0) > 1e-6)
    return int(live[-1]) + 1 if len(live) else log_mel.shape[1]


def _file_key(path: Path) -> str:
    stat = path.stat()
    described = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{SCHEMA_VERSION}|ear-mel-96"
    return hashlib.sha1(described.encode()).hexdigest()


def load(items: list[tuple[Path, str]], cache_dir: Path, genres: list[str] | None = None) -> Dataset:
    """Analyse every clip (cached per file); `genres` fixes the label order (default: sorted)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    genres = genres or sorted({g for _, g in items})
    mels, vectors = [], []
    for path, _ in tqdm(items, desc="analysing clips", unit="clip"):
        cached = cache_dir / f"{_file_key(path)}.npz"
        if cached.exists():
            with np.load(cached) as data:
                mel, vector = data["mel"], data["vector"]
        else:
            features = analyse(path.read_bytes(), path.name).features
            mel, vector = features.log_mel, features.vector
            np.savez(cached, mel=mel, vector=vector)
        mels.append(mel)
        vectors.append(vector)
    mel_array = np.stack(mels).astype(np.float32)
    return Dataset(
        mels=mel_array,
        vectors=np.stack(vectors).astype(np.float32),
        labels=np.array([genres.index(g) for _, g in items]),
        genres=genres,
        paths=[str(p) for p, _ in items],
        valid_frames=np.array([valid_frames(m) for m in mel_array]),
    )


def duplicates(ds: Dataset, threshold: float = 0.995) -> list[tuple[int, int]]:
    """Pairs of clips that are the same recording: correlation of their mean mel spectra
    and of their standardised feature vectors both above `threshold` (GTZAN repeats some
    recordings under other ids, in other encodings)."""
    spectra = ds.mels.mean(axis=2)
    spectra = (spectra - spectra.mean(1, keepdims=True)) / (spectra.std(1, keepdims=True) + 1e-9)
    vec = (ds.vectors - ds.vectors.mean(0)) / (ds.vectors.std(0) + 1e-9)
    vec = (vec - vec.mean(1, keepdims=True)) / (vec.std(1, keepdims=True) + 1e-9)
    n = len(ds.labels)
    a = spectra @ spectra.T / spectra.shape[1]
    b = vec @ vec.T / vec.shape[1]
    return [(i, j) for i in range(n) for j in range(i + 1, n) if a[i, j] > threshold and b[i, j] > threshold]


def dedupe(ds: Dataset) -> tuple[Dataset, list[tuple[str, str]]]:
    """Keep the first clip of every duplicate pair; return the dropped pairs (kept, dropped)."""
    pairs = duplicates(ds)
    drop = {j for _, j in pairs}
    keep = np.array([i for i in range(len(ds.labels)) if i not in drop])
    return ds.subset(keep), [(ds.paths[i], ds.paths[j]) for i, j in pairs]


def artist_names(paths: list[str]) -> list[str]:
    """The real artist of each clip (gtzan_metadata.csv); where it is unknown, the GTZAN id
    block (one artist's clips are numbered consecutively) or, without an id, the clip itself."""
    cache: dict[Path, dict[str, dict]] = {}
    names = []
    for path in paths:
        row = clip_metadata(Path(path), cache)
        match = GTZAN_ID.search(Path(path).name)
        if row and row.get("artist"):
            names.append(f"artist:{row['artist']}")
        elif match:
            names.append(f"{Path(path).parent.name}:block{int(match.group(1)) // ID_BLOCK}")
        else:
            names.append(f"clip:{Path(path).parent.name}/{Path(path).stem}")
    return names


def groups(ds: Dataset) -> np.ndarray:
    """Artist-aware groups: one code per real artist (artist_names); a split never puts one
    artist on both sides."""
    _, codes = np.unique(artist_names(ds.paths), return_inverse=True)
    return codes
