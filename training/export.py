"""Export a trained fold as a TF Serving SavedModel: tiled crops, calibrated probabilities.

Signature `serving_default`:
  input  `log_mel`        float32 [batch, n_mels, frames]  (the featurizer's log-mel, dB)
  output `probabilities`  float32 [batch, n_genres]        softmax(mean tile logits / T)
  output `labels`         string  [n_genres]               (genre names, in output order)
T is the fold's temperature, fitted on its own validation fold, so a served probability
means what it says. Shipping the labels keeps the classifier's label order tied to the model.
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
        return {"probabilities": tf.nn.softmax(clip_logits(model, log_mel) * inverse_t), "labels": labels}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None, None, None], tf.float32, name="log_mel")],
    )
    archive.write_out(str(target), verbose=False)
    return target


def write_models_config(path: Path, names: list[str], base_dir: str = "/models") -> None:
    """TF Serving ModelServerConfig (text format), one entry per fold model."""
    entries = "\n".join(
        f'  config {{\n    name: "{name}"\n    base_path: "{base_dir}/{name}"\n    model_platform: "tensorflow"\n  }}'
        for name in names
    )
    path.write_text(f"model_config_list {{\n{entries}\n}}\n")
