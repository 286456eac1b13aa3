"""The feature vector's names and version (GTZAN `features_30_sec.csv` layout, without length)."""

from __future__ import annotations

SCHEMA_VERSION = "gtzan-57-v1"

_PAIRS = [
    "chroma_stft",
    "rms",
    "spectral_centroid",
    "spectral_bandwidth",
    "rolloff",
    "zero_crossing_rate",
    "harmony",
    "perceptr",
]

FEATURE_NAMES: list[str] = (
    [f"{base}_{stat}" for base in _PAIRS for stat in ("mean", "var")]
    + ["tempo"]
    + [f"mfcc{i}_{stat}" for i in range(1, 21) for stat in ("mean", "var")]
)
N_FEATURES = len(FEATURE_NAMES)
