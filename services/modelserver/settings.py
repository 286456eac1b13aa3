"""The model server's settings (imported before TensorFlow: the thread counts must be set first)."""

from __future__ import annotations

import os
from pathlib import Path

from services.common.config import Setting

DEFAULT_BATCHING = Path(__file__).resolve().parents[2] / "deploy/components/tfserving-batching/batching.config"

WORKERS = Setting("MODEL_SERVER_WORKERS", os.cpu_count() or 2, "model server",
                  "inference threads, each single-threaded; the inter-op pool is as wide", shown="the CPU count")
MODELS_ROOT = Setting("MODELS_ROOT", None, "model server",
                      "where `/models/<name>` base paths are looked up locally", shown="folder of the config")
SESSION_CONFIG = Setting("TENSORFLOW_SESSION_CONFIG_FILE", None, "model server",
                         "a text TensorFlow ConfigProto, the file TF Serving's `--tensorflow_session_config_file` "
                         "reads (`deploy/components/tfserving-bf16/session.config`: bfloat16)", shown="none")
ENABLE_BATCHING = Setting("ENABLE_BATCHING", False, "model server",
                          "batch concurrent Predicts as TF Serving's `--enable_batching` does (the Kubernetes base "
                          "turns TF Serving's on)")
BATCHING_PARAMETERS = Setting("BATCHING_PARAMETERS_FILE", str(DEFAULT_BATCHING), "model server",
                              "the batching parameters (the file TF Serving's `--batching_parameters_file` reads)",
                              shown="`deploy/components/tfserving-batching/batching.config`")
