"""Artist-aware splits: a hold-out and grouped folds that never split an id block.

GTZAN numbers one artist's clips consecutively; a clip and its neighbour in the same id block
must never sit on both sides of a split, or the scores measure artist recognition.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def holdout_split(
    labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, holdout) indices. Per genre, whole groups are moved to the hold-out, in a seeded
    random order, while they fit within `fraction` of that genre's clips; so a genre whose
    clips are mostly one large block keeps that block for training and is tested on others."""
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for genre in np.unique(labels):
        members = np.flatnonzero(labels == genre)
        target = max(1, round(fraction * len(members)))
        taken = 0
        for group in rng.permutation(np.unique(groups[members])):
            idx = members[groups[members] == group]
            if taken + len(idx) <= target:
                held += idx.tolist()
                taken += len(idx)
    holdout = np.array(sorted(held), dtype=int)
    rest = np.setdiff1d(np.arange(len(labels)), holdout)
    return rest, holdout


def grouped_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, validation) index pairs, stratified by genre, no group on both sides."""
    splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))
