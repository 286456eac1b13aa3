"""The feature vector's contract, written once: ordered blocks, each with its feature names
and the group a listener would call it by (GTZAN `features_30_sec.csv` layout, without length).

The fused featurizer and the naive reference both hand their per-block signals to `assemble`,
GetFeatureSchema serves the names and groups, and ingestion copies the groups into each index
manifest, where the recommender's reasons read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = "gtzan-57-v1"
STATS = ("mean", "var")


@dataclass(frozen=True)
class Block:
    """One signal summarised into the vector: by mean and variance (`stats`), per row for a
    matrix signal (`rows` > 0, named <key><row>_<stat>), or as its single value (no stats)."""

    key: str
    group: str
    stats: tuple[str, ...] = STATS
    rows: int = 0

    @property
    def names(self) -> list[str]:
        if self.rows:
            return [f"{self.key}{i}_{stat}" for i in range(1, self.rows + 1) for stat in self.stats]
        return [f"{self.key}_{stat}" for stat in self.stats] if self.stats else [self.key]

    def summarise(self, signal: np.ndarray | float) -> list[float]:
        """Each row's stats, row by row; every row in one reduction per stat, and the variance
        reusing the mean (the same floats as np.mean and np.var row by row)."""
        if not self.stats:
            return [float(np.atleast_1d(signal)[0])]
        rows = np.asarray(signal) if self.rows else np.asarray(signal).reshape(1, -1)
        mean = rows.mean(axis=-1, keepdims=True)
        values = {"mean": mean[:, 0], "var": rows.var(axis=-1, mean=mean)}
        return [float(values[stat][i]) for i in range(len(rows)) for stat in self.stats]


BLOCKS: tuple[Block, ...] = (
    Block("chroma_stft", "harmony"),
    Block("rms", "loudness"),
    Block("spectral_centroid", "brightness"),
    Block("spectral_bandwidth", "spectral spread"),
    Block("rolloff", "brightness"),
    Block("zero_crossing_rate", "noisiness"),
    Block("harmony", "harmonic energy"),
    Block("perceptr", "percussive energy"),
    Block("tempo", "tempo", stats=()),
    Block("mfcc", "timbre", rows=20),
)

FEATURE_NAMES: list[str] = [name for block in BLOCKS for name in block.names]
N_FEATURES = len(FEATURE_NAMES)
# group -> its feature names, in vector order (first appearance orders the groups)
FEATURE_GROUPS: dict[str, list[str]] = {}
for _block in BLOCKS:
    FEATURE_GROUPS.setdefault(_block.group, []).extend(_block.names)


def assemble(signals: Mapping[str, np.ndarray | float]) -> np.ndarray:
    """The float32 vector from each block's signal (keyed by Block.key), in schema order."""
    missing = [b.key for b in BLOCKS if b.key not in signals]
    if missing:
        raise KeyError(f"signals missing for blocks {missing}")
    vector = np.asarray([v for block in BLOCKS for v in block.summarise(signals[block.key])], dtype=np.float32)
    assert vector.shape == (N_FEATURES,)
    return vector
