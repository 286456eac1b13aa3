"""TensorFlow as the model server and the training load it: quiet, and with its fast kernels."""

from __future__ import annotations

import os
import subprocess
import sys

from devtools.localrun import ROOT

PROBE = (
    "from services.common.quiet_tensorflow import import_tensorflow; import_tensorflow(); "
    "from tensorflow.python.util import _pywrap_util_port as port; print(port.IsMklEnabled())"
)


def test_quiet_import_keeps_onednn_on() -> None:
    # TensorFlow leaves oneDNN off on AVX2-only CPUs, and turning it off (once done to silence its
    # start-up line) made every Predict about twice as slow: the quiet import turns it on and
    # silences the line, not the kernels.
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
    assert "oneDNN" not in done.stderr
