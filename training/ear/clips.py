"""Labelled clips as the heads see them: the ear's outputs, real-artist groups, and the hold-out.

A taxonomy's clips are split once: a hold-out of whole artists (training/splits.py, per genre up
to HOLDOUT of its clips) that no fold model ever sees, and grouped folds over the rest. Extra
clips from another collection may join the training folds under a genre mapping (e.g. the
Argentine set's `rock` is GTZAN's `rock`): they add artists where the taxonomy has few, and are
never in a hold-out or a validation fold, so every figure is on the taxonomy's own clips.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import data
from training.ear.embed import EarOutputs, ear_outputs
from training.splits import grouped_folds, holdout_split

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
GTZAN_ROOTS = [SHARED / "gtzan_mini" / "genres", SHARED / "gtzan_extra" / "genres"]
REGIONAL_ROOTS = [SHARED / "regional_mini" / "genres"]
# The Argentine set's genres that are GTZAN genres (its cumbia and folklore are not)
REGIONAL_AS_GTZAN = {"clasico": "classical", "rap": "hiphop", "reggae": "reggae", "rock": "rock"}
CACHE = ROOT / "var" / "cache" / "clips"
HOLDOUT = 0.25
FOLDS = 5
SEED = 42


def portable(path: str | Path) -> str:
    """Paths in training.json are relative to the folder holding the checkout (../shared/...)."""
    return os.path.relpath(Path(path).resolve(), ROOT.parent)


@dataclass
class Clips:
    ds: data.Dataset
    ear: EarOutputs
    groups: np.ndarray  # artist codes
    rest: np.ndarray  # indices outside the hold-out
    holdout: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]  # (train, validation) indices into ds, over `rest`
    dropped: list[tuple[str, str]]  # duplicate recordings left out

    @property
    def genres(self) -> list[str]:
        return self.ds.genres

    def embeddings(self, patches: int) -> np.ndarray:
        return self.ear.embeddings[patches]


@dataclass
class Extra:
    """Clips of another collection mapped into the taxonomy: training folds only."""

    paths: list[str]
    labels: np.ndarray
    ear: EarOutputs


def check_present(roots: list[Path]) -> None:
    missing = [str(r) for r in roots if not r.exists()]
    if missing:
        raise SystemExit(f"training data missing: {', '.join(missing)} (is ../shared/data beside the project?)")


def load_clips(roots: list[Path], holdout: float = HOLDOUT, folds: int = FOLDS, seed: int = SEED) -> Clips:
    check_present(roots)
    ds, dropped = data.dedupe(data.load(data.list_folders(roots), CACHE))
    groups = data.groups(ds)
    rest, held = holdout_split(ds.labels, groups, holdout, seed)
    splits = [(rest[tr], rest[va]) for tr, va in grouped_folds(ds.labels[rest], groups[rest], folds, seed)]
    return Clips(ds, ear_outputs(ds.mels, ds.paths), groups, rest, held, splits, dropped)


def load_extra(roots: list[Path], mapping: dict[str, str], genres: list[str]) -> Extra | None:
    """The mapped clips of `roots`; None when the collection is absent or the taxonomy lacks a
    genre the mapping names (another taxonomy trains on its own clips)."""
    if not all(r.exists() for r in roots) or not set(mapping.values()) <= set(genres):
        return None
    items = data.list_folders(roots)
    ds = data.load(items, CACHE)
    ear = ear_outputs(ds.mels, ds.paths)  # the whole collection: one cache entry for every use
    keep = np.array([i for i, (_, g) in enumerate(items) if g in mapping])
    labels = np.array([genres.index(mapping[items[i][1]]) for i in keep])
    subset = EarOutputs({c: v[keep] for c, v in ear.embeddings.items()}, {c: v[keep] for c, v in ear.tags.items()},
                        ear.frames[keep], ear.patch_embeddings[keep], ear.patch_tags[keep])
    return Extra([str(items[i][0]) for i in keep], labels, subset)
