"""Say in a few words why two songs are close: the feature groups they agree on most.

The groups (timbre, tempo, harmony, ...) come from the featurizer's schema, copied into the
index manifest at ingestion; nothing here knows the featurizer's feature names."""

from __future__ import annotations

import numpy as np


def explain(
    groups: dict[str, np.ndarray],
    names: list[str],
    query_z: np.ndarray,
    hit_z: np.ndarray,
    query_raw: np.ndarray,
    hit_raw: np.ndarray,
    top: int = 2,
) -> str:
    """E.g. "closest in tempo (120 vs 123 BPM) and timbre" (standardised distance per group)."""
    gaps = {label: float(np.mean(np.abs(query_z[cols] - hit_z[cols]))) for label, cols in groups.items()}
    closest = sorted(gaps, key=gaps.get)[:top]
    words = []
    for label in closest:
        if label == "tempo" and "tempo" in names:
            t = names.index("tempo")
            words.append(f"tempo ({query_raw[t]:.0f} vs {hit_raw[t]:.0f} BPM)")
        else:
            words.append(label)
    return "closest in " + " and ".join(words)
