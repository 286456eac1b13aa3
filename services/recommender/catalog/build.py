"""Index generations, the build side (ingestion only): standardise, one graph per genre,
publish atomically. Serving never imports this module (nor tqdm)."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from services.recommender.index.graph import DEFAULT_EF_CONSTRUCTION, DEFAULT_M, GenreIndex
from services.recommender.index.songs import SongTable
from services.recommender.index.space import EMBEDDING_SHARE, column_weights
from services.recommender.index.store import CURRENT, SongRecord, current_generation, generation_name, standardised
from services.recommender.search.reasons import typical_gaps

KEEP_GENERATIONS = 3
WINSOR_SPAN = 1.0  # fit_standardiser clips at the 5th-95th percentile range beyond it


def _generations(index_dir: Path) -> list[int]:
    return sorted(int(p.name[4:]) for p in index_dir.glob("gen-*") if p.name[4:].isdigit())


def _next_generation(index_dir: Path) -> int:
    """A number no generation had, anywhere: the publishing time in milliseconds (or one more than
    this folder's newest). A rebuild in an empty folder therefore still outnumbers what running
    servers serve (they only swap to a newer number), and cache keys, which carry the number,
    never meet answers of an older catalog."""
    newest = max([*_generations(index_dir), current_generation(index_dir) or 0])
    return max(newest + 1, time.time_ns() // 1_000_000)


def fit_standardiser(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (float64), robust to a few absurd songs: each
    column is first clipped to its 5th-95th percentile range widened by WINSOR_SPAN times that
    range on each side, which leaves ordinary catalogs as they are (the mean and deviation
    sklearn's StandardScaler fits) but keeps one song whose feature is 1e19 from moving every
    other song's scaled vector (a sine x 1e10 changed 9 of 12 top-1 answers). A column whose
    5th and 95th percentiles meet (mostly one value) is not clipped; a constant one gets scale 1.
    (The median and interquartile range cost a third of consistency@5 searching all genres:
    the ear's embedding has many mostly-zero dimensions.) numpy only: importing sklearn made
    `import services.recommender.catalog.ingest` 1.4 s slower and cost the recommender image a package."""
    raw = np.asarray(raw, dtype=np.float64)
    low, high = np.percentile(raw, [5.0, 95.0], axis=0)
    span = high - low
    widened = np.where(span > 0, span * WINSOR_SPAN, np.inf)
    clipped = np.clip(raw, low - widened, high + widened)
    mean = clipped.mean(axis=0)
    scale = clipped.std(axis=0)
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
    return mean, scale


def build_generation(
    index_dir: Path,
    songs: list[SongRecord],
    raw: np.ndarray,
    schema_version: str,
    feature_names: list[str],
    feature_groups: dict[str, list[str]],
    embedding: dict | None = None,
    embedding_share: float = EMBEDDING_SHARE,
    source: str = "",
    m: int = DEFAULT_M,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
    progress: bool = True,
) -> int:
    """Standardise, build one cosine graph per genre, persist, and swap CURRENT to it.

    `raw` holds each song's features, then (when `embedding` describes it: model, version, dim)
    the ear's embedding; space.py weights the two parts.

    Builds may run at once (two ingestions, a test): each builds in its own hidden folder,
    and only the short publish step (number, rename, CURRENT) holds a lock on the folder."""
    if len(songs) != len(raw) or not len(songs):
        raise ValueError(f"need one vector per song ({len(songs)} songs, {len(raw)} vectors)")
    index_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".gen-building-", dir=index_dir))

    raw = np.asarray(raw, dtype=np.float32)
    n_embedding = int(embedding["dim"]) if embedding else 0
    if raw.shape[1] != len(feature_names) + n_embedding:
        raise ValueError(f"vectors have {raw.shape[1]} columns; {len(feature_names)} features and "
                         f"{n_embedding} embedding values expected")
    mean, scale = fit_standardiser(raw)
    weights = column_weights(len(feature_names), n_embedding, embedding_share)
    scale = scale / weights  # the parts' weights, folded into the scaler (space.py)
    z = standardised(raw, mean, scale)
    labels = np.array([s.genre for s in songs])
    genre_rows = {g: np.flatnonzero(labels == g) for g in sorted(set(labels.tolist()))}
    files = {}
    for number, genre in enumerate(tqdm(genre_rows, desc="indexing genres", unit="genre", disable=not progress)):
        rows = genre_rows[genre]
        graph = GenreIndex.build(z[rows], rows, m=m, ef_construction=ef_construction)
        files[genre] = {"file": f"hnsw-{number:02d}.bin", "count": len(rows)}
        graph.save(tmp / files[genre]["file"])
    position = {name: i for i, name in enumerate(feature_names)}
    columns = {group: np.array([position[n] for n in names]) for group, names in feature_groups.items()}
    # the graphs keep the unit vectors; their lengths and the scaler give the rest back (store.py)
    np.save(tmp / "norms.npy", np.linalg.norm(z, axis=1).astype(np.float32))
    np.savez(tmp / "scaler.npz", mean=mean, scale=scale)
    SongTable.from_records(songs).save(tmp / "songs")
    manifest = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "schema_version": schema_version,
        "feature_names": list(feature_names),
        "feature_groups": {group: list(names) for group, names in feature_groups.items()},
        "songs": len(songs),
        "genres": files,
        "typical_gaps": typical_gaps(columns, z, genre_rows),
        "hnsw": {"space": "cosine", "M": m, "ef_construction": ef_construction},
        **({"embedding": {**embedding, "share": embedding_share}} if embedding else {}),
        "source": source,
    }
    with open(index_dir / ".publish.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        generation = _next_generation(index_dir)
        name = generation_name(generation)
        (tmp / "manifest.json").write_text(json.dumps({"generation": generation, **manifest}, indent=2))
        os.rename(tmp, index_dir / name)
        pointer = index_dir / f".{CURRENT}.tmp-{os.getpid()}"
        pointer.write_text(name + "\n")
        os.replace(pointer, index_dir / CURRENT)
        _prune(index_dir, generation)
    return generation


def _prune(index_dir: Path, newest: int) -> None:
    """Keep the last few generations: a server may still be loading the previous one."""
    for number in _generations(index_dir)[:-KEEP_GENERATIONS]:
        if number != newest:
            shutil.rmtree(index_dir / generation_name(number), ignore_errors=True)
