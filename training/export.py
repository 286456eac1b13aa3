"""Export a trained fold as a TF Serving SavedModel: tiled crops, calibrated probabilities.

Signature `serving_default`:
  input  `log_mel`        float32 [batch, n_mels, frames]  (the featurizer's log-mel, dB)
  output `probabilities`  float32 [batch, n_genres]        softmax(mean tile logits / T)
  output `labels`         string  [batch, n_genres]        (genre names in output order, every row alike)
T is the fold's temperature, fitted on its own validation fold, so a served probability
means what it says. Shipping the labels keeps the classifier's label order tied to the model.
Every output is batch-major, as TF Serving's server-side batching (--enable_batching) needs:
it splits each output along dimension 0 between the requests it merged.

    python -m training.export --batch-major models     # re-export version 1 folds as version 2
"""

from __future__ import annotations

from pathlib import Path

from training.tiling import clip_logits, tf


def export_savedmodel(
    model, genres: list[str], temperature: float, base_path: Path, version: int = 1
) -> Path:
    """Write <base_path>/<version>/ in TF Serving's layout (`model`: a keras.Model)."""
    import keras

    target = base_path / str(version)
    labels = tf.constant(genres)
    inverse_t = tf.constant(1.0 / temperature, tf.float32)

    def serve(log_mel: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.nn.softmax(clip_logits(model, log_mel) * inverse_t)
        return {"probabilities": probabilities, "labels": batch_major(labels, log_mel)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None, None, None], tf.float32, name="log_mel")],
    )
    archive.write_out(str(target), verbose=False)
    return target


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


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Re-export fold models with batch-major outputs")
    parser.add_argument("--batch-major", type=Path, required=True, help="folder of <fold>/<version>/ SavedModels")
    args = parser.parse_args()
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
