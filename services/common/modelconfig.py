"""TF Serving's models.config (ModelServerConfig text proto): the one list of served models.

It lists the pretrained ear (EAR_MODEL, default musicnn_msd) and the fold models. The model
server stand-in serves what it lists, the classifier embeds with the ear and votes with every
other model it lists, and the Kubernetes ConfigMap is made from the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from musicrec.tfserving.v1.tfserving_pb2 import ModelServerConfig
from services.common.config import Setting

EAR_MODEL = Setting("EAR_MODEL", "musicnn_msd", "classifier",
                    "which models.config entry is the pretrained ear (every other entry is a fold that votes)").as_str()

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "models" / "models.config"
MODEL_CONFIG_FILE = Setting("MODEL_CONFIG_FILE", str(DEFAULT_CONFIG), "classifier, model server",
                            "TF Serving ModelServerConfig (text): the model server serves the models it lists, the "
                            "classifier calls the ear and lets every other entry vote", shown="`models/models.config`")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path  # the version directory that is served
    version: int


def resolve_base_path(base_path: str, config_dir: Path, models_root: Path | None) -> Path:
    """TF Serving reads base_path as is (e.g. /models/x in the container). Locally the same file
    is used: an absolute path that does not exist is looked up by its last component under
    MODELS_ROOT (default: the folder holding models.config); a relative path is relative to it."""
    root = models_root or config_dir
    path = Path(base_path)
    if path.is_absolute():
        return path if path.exists() else root / path.name
    return root / path


def latest_version(base: Path) -> int:
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.is_dir() else []
    if not versions:
        raise FileNotFoundError(f"no numeric version directory under {base}")
    return max(versions)


def _parse(config_file: Path) -> ModelServerConfig:
    try:
        text = config_file.read_text()
    except OSError as exc:
        reason = exc.strerror
        raise SystemExit(f"models.config {config_file} cannot be read ({reason}): set MODEL_CONFIG_FILE") from None
    return text_format.Parse(text, ModelServerConfig())


def model_names(config_file: Path) -> list[str]:
    """The served model names, in file order: the fold list the classifier votes with."""
    names = [model.name for model in _parse(config_file).model_config_list.config]
    if not names:
        raise SystemExit(f"{config_file} lists no models")
    return names


def ear_and_folds(config_file: Path, ear: str = EAR_MODEL) -> tuple[str, list[str]]:
    """(the ear, the fold models): the ear is the entry named `ear`, every other entry votes."""
    names = model_names(config_file)
    folds = [name for name in names if name != ear]
    if ear not in names or not folds:
        raise SystemExit(f"{config_file} must list the ear {ear!r} (EAR_MODEL) and at least one fold model; "
                         f"it lists {names}")
    return ear, folds


def read_config(config_file: Path, models_root: Path | None = None) -> list[ModelEntry]:
    entries = []
    for model in _parse(config_file).model_config_list.config:
        if model.model_platform and model.model_platform != "tensorflow":
            raise ValueError(f"model {model.name}: only model_platform 'tensorflow' is served")
        base = resolve_base_path(model.base_path, config_file.parent, models_root)
        version = latest_version(base)
        entries.append(ModelEntry(model.name, base / str(version), version))
    return entries


def write_models_config(path: Path, names: list[str], base_dir: str = "/models") -> Path:
    """TF Serving's ModelServerConfig (text format): one entry per served model, under base_dir."""
    config = ModelServerConfig()
    for name in names:
        entry = config.model_config_list.config.add()
        entry.name, entry.base_path, entry.model_platform = name, f"{base_dir}/{name}", "tensorflow"
    path.write_text(text_format.MessageToString(config))
    return path
