"""Export a trained fold as a TF Serving SavedModel: tiled crops, calibrated probabilities.

Signature `serving_default`:
  input  `log_mel`        float32 [batch, n_mels, frames]  (the featurizer's log-mel, dB)
  output `probabilities`  float32 [batch, n_genres]        softmax(mean tile logits / T)
  output `labels`         string  [batch, n_genres]        (genre names in output order, every row alike)
T is the fold's temperature, fitted on its own validation fold, so a served probability
means what it says. The served network has its batch norms folded into its convolutions
(fold_bn.py); the trained weights are saved beside it (variable collection `trained`), so a
re-export starts from them. Shipping the labels keeps the classifier's label order tied to the model.
Every output is batch-major, as TF Serving's server-side batching (--enable_batching) needs:
it splits each output along dimension 0 between the requests it merged.

    python -m training.export --batch-major models     # re-export version 1 folds as version 2
    python -m training.export --retile models          # the same weights, today's export: tiling.py's
                                                       # tiles, batch norms folded (fold_bn.py)
"""

from __future__ import annotations

from pathlib import Path

from services.featurizer.features import N_MELS
from training.tiling import clip_logits, tf

TRAINED = "trained"  # the SavedModel's collection of the trained model's variables, in order


def export_savedmodel(
    model, genres: list[str], temperature: float, base_path: Path, version: int = 1
) -> Path:
    """Write <base_path>/<version>/ in TF Serving's layout (`model`: a keras.Model)."""
    import keras

    from training.fold_bn import fold_batch_norms

    target = base_path / str(version)
    labels = tf.constant(genres)
    inverse_t = tf.constant(1.0 / temperature, tf.float32)
    inference = fold_batch_norms(model)

    def serve(log_mel: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.nn.softmax(clip_logits(inference, log_mel) * inverse_t)
        return {"probabilities": probabilities, "labels": batch_major(labels, log_mel)}

    archive = keras.export.ExportArchive()
    archive.track(inference)
    archive.add_variable_collection(TRAINED, model.variables)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None, None, None], tf.float32, name="log_mel")],
    )
    archive.write_out(str(target), verbose=False)
    return target


def trained_variables(loaded) -> list:
    """The trained model's variables in a loaded fold SavedModel: its `trained` collection, or
    for exports made before batch norms were folded, all its variables (a batch-major re-export
    wraps the fold)."""
    if hasattr(loaded, TRAINED):
        return list(getattr(loaded, TRAINED))
    return list(getattr(loaded, "fold", loaded).variables)


def trained_model(source: Path, arch: str, n_genres: int):
    """A fresh `arch` network (any number of frames) holding the trained weights of the exported
    fold at `source` (its `trained` collection: the network before batch norms were folded)."""
    from training.models import build

    trained = trained_variables(tf.saved_model.load(str(source)))
    model = build(arch, (N_MELS, None, 1), n_genres)
    if [tuple(v.shape) for v in model.variables] != [tuple(v.shape) for v in trained]:
        raise SystemExit(f"{source}: its variables do not match a fresh {arch}")
    for variable, value in zip(model.variables, trained, strict=True):
        variable.assign(value.numpy())
    return model


def batch_major(labels: tf.Tensor, log_mel: tf.Tensor) -> tf.Tensor:
    """The labels once per input row: [batch, n_genres]."""
    return tf.tile(labels[None, :], [tf.shape(log_mel)[0], 1])


def upgrade_to_batch_major(base_path: Path) -> Path:
    """Re-export the newest version of a fold whose `labels` output is [n_genres] as the next
    version with batch-major labels (same weights, same probabilities); the old version is removed."""
    versions = sorted(int(p.name) for p in base_path.iterdir() if p.name.isdigit())
    source = base_path / str(versions[-1])
    loaded = tf.saved_model.load(str(source))
    serve = loaded.signatures["serving_default"]
    if serve.structured_outputs["labels"].shape.rank == 2:
        return source  # already batch-major

    class BatchMajor(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fold = loaded

        @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.float32, name="log_mel")])
        def serve(self, log_mel: tf.Tensor) -> dict[str, tf.Tensor]:
            out = serve(log_mel=log_mel)
            return {"probabilities": out["probabilities"], "labels": batch_major(out["labels"], log_mel)}

    module = BatchMajor()
    target = base_path / str(versions[-1] + 1)
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})
    import shutil

    shutil.rmtree(source)
    return target


def newest_version(base_path: Path) -> Path:
    return base_path / str(max(int(p.name) for p in base_path.iterdir() if p.name.isdigit()))


def retile(models_dir: Path, cache: Path | None = None) -> list[Path]:
    """Re-export every fold of models_dir with today's export (tiling.py's tiles, batch norms
    folded), as the next version.

    The trained weights are kept; the network is rebuilt to take tiles of any width, and each
    fold's validation logits, accuracy and temperature are measured again with the new tiles
    (training.json is updated: the evaluation's out-of-fold figures read them). The old
    versions are removed. `cache`: where the clips' analyses are cached (training's by default)."""
    import json
    import shutil

    import numpy as np

    from training.calibrate import fit_temperature
    from training.train import CACHE, recorded_clips

    path = models_dir / "training.json"
    record = json.loads(path.read_text())
    genres = record["genres"]
    targets = []
    for fold in record["folds"]:
        source = newest_version(models_dir / fold["model"])
        model = trained_model(source, record["arch"], len(genres))
        val = recorded_clips(fold["validation"], genres, cache or CACHE)
        logits = np.concatenate([clip_logits(model, tf.constant(val.mels[i : i + 16])).numpy()
                                 for i in range(0, len(val.labels), 16)])
        fold["validation_logits"] = logits.round(4).tolist()
        fold["val_accuracy"] = float(np.mean(logits.argmax(1) == val.labels))
        fold["temperature"] = fit_temperature(logits, val.labels)
        targets.append(export_savedmodel(model, genres, fold["temperature"], source.parent, int(source.name) + 1))
        shutil.rmtree(source)
    path.write_text(json.dumps(record, indent=1))
    return targets


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Re-export fold models (same weights)")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--batch-major", type=Path, help="folder of <fold>/<version>/ SavedModels")
    action.add_argument("--retile", type=Path, help="a models folder with training.json")
    args = parser.parse_args()
    if args.retile:
        for target in retile(args.retile):
            print(f"re-exported {target}")
        return
    for fold in sorted(p for p in args.batch_major.iterdir() if p.is_dir()):
        print(f"{fold.name}: {upgrade_to_batch_major(fold)}")


def write_models_config(path: Path, names: list[str], base_dir: str = "/models") -> None:
    """TF Serving ModelServerConfig (text format), one entry per fold model."""
    entries = "\n".join(
        f'  config {{\n    name: "{name}"\n    base_path: "{base_dir}/{name}"\n    model_platform: "tensorflow"\n  }}'
        for name in names
    )
    path.write_text(f"model_config_list {{\n{entries}\n}}\n")


if __name__ == "__main__":
    main()
