"""TF Serving's --tensorflow_session_config_file, for the stand-in.

The file is a text-format TensorFlow ConfigProto, the one the tensorflow/serving image reads
(deploy/components/tfserving-bf16/session.config). The stand-in honours its graph rewrite
toggles (`graph_options.rewrite_options`: e.g. oneDNN's bfloat16 auto mixed precision), set
process-wide before any model is loaded, as TF Serving applies the file to every session. Other
fields are left to the stand-in's own settings (threads come from the environment), and it says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format


@dataclass(frozen=True)
class SessionConfig:
    path: Path
    rewrites: dict[str, bool]  # graph rewrite option -> on (ON, AGGRESSIVE) or off (OFF)
    ignored: list[str]  # the fields set that the stand-in does not honour

    @property
    def bfloat16(self) -> bool:
        return any(self.rewrites.get(name) for name in BF16_REWRITES)


BF16_REWRITES = ("auto_mixed_precision_onednn_bfloat16", "auto_mixed_precision_mkl")


def cpu_has_amx_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bfloat16 on AMX tiles (Intel Sapphire Rapids and later): without
    AMX, oneDNN's bfloat16 was slower than float32 here (docs/scale.md)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and "amx_bf16" in line.split() for line in text.splitlines())


def read_session_config(path: Path) -> SessionConfig:
    """The file's graph rewrite toggles; SystemExit with the reason when it does not parse."""
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2

    toggle = rewriter_config_pb2.RewriterConfig.Toggle
    try:
        config = text_format.Parse(path.read_text(), config_pb2.ConfigProto())
    except (OSError, text_format.ParseError) as exc:
        raise SystemExit(f"TENSORFLOW_SESSION_CONFIG_FILE {path}: not a readable text ConfigProto ({exc})") from exc
    rewrite = config.graph_options.rewrite_options
    toggles = {
        field.name: value != toggle.Value("OFF")
        for field, value in rewrite.ListFields()
        if field.enum_type is not None and field.enum_type.full_name == toggle.DESCRIPTOR.full_name
    }
    others = [f.name for f, _ in config.ListFields() if f.name != "graph_options"]
    others += [f.name for f, _ in config.graph_options.ListFields() if f.name != "rewrite_options"]
    others += [f.name for f, _ in rewrite.ListFields() if f.name not in toggles]
    return SessionConfig(path, toggles, others)


def apply_session_config(tf: Any, path: Path) -> SessionConfig:
    """Set the file's rewrite toggles for every function this process instantiates from now on
    (before any model is loaded, as TF Serving applies the file to every session)."""
    config = read_session_config(path)
    tf.config.optimizer.set_experimental_options(config.rewrites)
    return config
