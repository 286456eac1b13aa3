"""The classifier's settings (the models it calls are in models.config: services/common/modelconfig.py)."""

from __future__ import annotations

from services.common.config import Setting

TF_SERVING_ADDR = Setting("TF_SERVING_ADDR", "127.0.0.1:8500", "classifier",
                          "TensorFlow Serving (or the stand-in) gRPC address")
PREDICT_TIMEOUT = Setting("PREDICT_TIMEOUT_SECONDS", 10.0, "classifier",
                          "per-Predict deadline (capped by the caller's deadline)")
