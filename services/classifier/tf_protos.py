"""Import TF Serving's request protos without loading TensorFlow.

The generated modules `tensorflow.core.framework.*_pb2` live inside the `tensorflow` package,
whose __init__ loads all of TensorFlow (about 770 MB resident) although the classifier only
builds TensorProto messages. Registering a bare package object for `tensorflow` lets Python
import those submodules (their own __init__ files are empty) without running that __init__.
Call this first thing in the classifier process, never in one that needs TensorFlow itself.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def without_tensorflow_runtime() -> None:
    if "tensorflow" in sys.modules:
        return
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or spec.submodule_search_locations is None:
        return  # let the real import fail with its own message
    package = types.ModuleType("tensorflow")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["tensorflow"] = package
