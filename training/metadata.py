"""Real metadata of GTZAN clips: ../shared/data/gtzan_metadata.csv (artist, title, album, year
per clip; `file` relative to the CSV's folder). Training groups folds by its artists; the demo
catalogs show its titles."""

from __future__ import annotations

import csv
from pathlib import Path

METADATA = "gtzan_metadata.csv"  # artist, title, album, year per clip, beside the clip folders


def _metadata_rows(folder: Path, cache: dict[Path, dict[str, dict]]) -> dict[str, dict]:
    if folder not in cache:
        csv_path = folder / METADATA
        with open(csv_path, newline="") as f:
            cache[folder] = {row["file"]: row for row in csv.DictReader(f)}
    return cache[folder]


def clip_metadata(path: Path, cache: dict[Path, dict[str, dict]] | None = None) -> dict | None:
    """The clip's row of the nearest gtzan_metadata.csv above it (keys: file relative to the CSV's
    folder), or None when no such file lists it."""
    cache = {} if cache is None else cache
    path = Path(path).resolve()
    for folder in path.parents:
        if (folder / METADATA).exists():
            return _metadata_rows(folder, cache).get(path.relative_to(folder).as_posix())
    return None
