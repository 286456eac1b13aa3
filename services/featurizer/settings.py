"""The featurizer's own settings (the upload bounds are in services/common/upload.py)."""

from __future__ import annotations

from services.common.config import Setting

WORKERS = Setting("FEATURIZER_WORKERS", 2, "featurizer", "featurization threads")
MAX_QUEUE = Setting("FEATURIZER_MAX_QUEUE", 16, "featurizer",
                    "uploads waiting beyond the workers before RESOURCE_EXHAUSTED")
