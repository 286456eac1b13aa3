"""Labelled log-mels for training: from a GTZAN-style folder or a catalog CSV.

Each song goes through the featurizer's own pipeline (decode, 30 s window, fused log-mel),
so the models see exactly what the service will send them. Results are cached in an .npz.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from services.featurizer.pipeline import analyse


@dataclass
class Dataset:
    mels: np.ndarray  # float32 [n, n_mels, n_frames]
    labels: np.ndarray  # int [n]
    genres: list[str]
    paths: list[str]


def list_gtzan(root: Path) -> list[tuple[Path, str]]:
    """<root>/<genre>/*.{wav,mp3,au,...}: the genre is the folder name."""
    items = [
        (p, p.parent.name)
        for p in sorted(root.glob("*/*"))
        if p.suffix.lower() in {".wav", ".mp3", ".au", ".flac", ".ogg"}
    ]
    if not items:
        raise SystemExit(f"no audio files under {root}/<genre>/")
    return items


def list_catalog(csv_path: Path) -> list[tuple[Path, str]]:
    """A catalog CSV (id,title,artist,release_date,genre,audio_path); paths relative to the CSV."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [((csv_path.parent / r["audio_path"]).resolve(), r["genre"]) for r in rows]


def load(items: list[tuple[Path, str]], cache: Path | None = None) -> Dataset:
    key = [str(p) for p, _ in items]
    if cache is not None and cache.exists():
        data = np.load(cache, allow_pickle=False)
        if list(data["paths"]) == key:
            return Dataset(data["mels"], data["labels"], list(data["genres"]), key)
    genres = sorted({g for _, g in items})
    mels = []
    for path, _ in tqdm(items, desc="featurizing", unit="song"):
        mels.append(analyse(path.read_bytes(), path.name).features.log_mel)
    labels = np.array([genres.index(g) for _, g in items])
    ds = Dataset(np.stack(mels).astype(np.float32), labels, genres, key)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, mels=ds.mels, labels=ds.labels, genres=np.array(genres), paths=np.array(key))
    return ds
