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


def cpu_has_fast_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether oneDNN's bfloat16 folds beat float32 on this CPU, as measured (python -m bench.folds
    --session-config, batches of 8): on AMX tiles (Intel Sapphire Rapids and later: 0.49x the
    CPU) and on AMD's AVX-512 BF16 (Zen 4 and later: 0.56x). Intel's AVX-512 BF16 without AMX
    was slower than float32 (1.20x), so it does not count (docs/scale.md)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags: set[str] = set()
    vendor = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags = set(value.split())
        elif key.strip() == "vendor_id":
            vendor = value.strip()
    return "amx_bf16" in flags or (vendor == "AuthenticAMD" and "avx512_bf16" in flags)


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
