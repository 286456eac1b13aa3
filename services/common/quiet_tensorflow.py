"""Import TensorFlow without its start-up noise.

On a machine without a GPU, importing TensorFlow prints CUDA and oneDNN lines from C++
(absl) logging that TF_CPP_MIN_LOG_LEVEL does not reach, and they look like errors in our
JSON logs. The import runs with the process's stderr pointed at /dev/null; real errors
after the import are untouched.

oneDNN is turned on here: TensorFlow enables it by default only on CPUs with AVX-512 VNNI,
BF16 or AMX, and on an AVX2-only machine (this project's) every Predict ran about twice as
slow without it (the five folds on the model server stand-in: 320 against 154 ms of CPU per
song, 8 Predicts in flight), for a difference in the probabilities of at most 3e-7 (no vote
changed on the 171 clips). An earlier version set it to 0 to silence its start-up line; the
redirect below does that. TF_ENABLE_ONEDNN_OPTS=0 still turns it off.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from services.common.config import Setting

ONEDNN = Setting("TF_ENABLE_ONEDNN_OPTS", True, "model server, training, `deploy/base` TF Serving",
                 "TensorFlow's oneDNN kernels (TensorFlow itself leaves them off on CPUs without AVX-512 BF16 or AMX; "
                 "about twice as fast here)")


def import_tensorflow() -> ModuleType:
    if "tensorflow" in sys.modules and hasattr(sys.modules["tensorflow"], "constant"):
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault(ONEDNN.name, "1")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow

        tensorflow.get_logger().setLevel("ERROR")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow
