"""Export a trained fold model as a TF Serving SavedModel with crop-averaged inference.

Signature `serving_default`:
  input  `log_mel`        float32 [batch, n_mels, frames]  (the featurizer's log-mel, dB)
  output `probabilities`  float32 [batch, n_genres]        (mean of N_CROPS crop softmaxes)
  output `labels`         string  [n_genres]               (genre names, in output order)
Shipping the labels in the signature keeps the classifier's label order tied to the model.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

CROP_FRAMES = 256
N_CROPS = 5


def crops(log_mel: tf.Tensor) -> tf.Tensor:
    """N_CROPS evenly spaced crops along time: [batch * N_CROPS, n_mels, CROP_FRAMES, 1]."""
    frames = tf.shape(log_mel)[2]
    pad = tf.maximum(0, CROP_FRAMES - frames)
    log_mel = tf.pad(log_mel, [[0, 0], [0, 0], [0, pad]], constant_values=-80.0)
    last = tf.maximum(0, frames - CROP_FRAMES)
    offsets = tf.cast(tf.round(tf.linspace(0.0, tf.cast(last, tf.float32), N_CROPS)), tf.int32)
    parts = [log_mel[:, :, offsets[i] : offsets[i] + CROP_FRAMES] for i in range(N_CROPS)]
    stacked = tf.stack(parts, axis=1)  # [batch, crops, mels, crop]
    n_mels = tf.shape(log_mel)[1]
    return tf.reshape(stacked, [-1, n_mels, CROP_FRAMES, 1])


def crop_average(model: keras.Model, log_mel: tf.Tensor) -> tf.Tensor:
    probs = model((crops(log_mel) + 80.0) / 80.0, training=False)
    return tf.reduce_mean(tf.reshape(probs, [tf.shape(log_mel)[0], N_CROPS, -1]), axis=1)


def export_savedmodel(model: keras.Model, genres: list[str], base_path: Path, version: int = 1) -> Path:
    """Write <base_path>/<version>/ in TF Serving's layout."""
    target = base_path / str(version)
    labels = tf.constant(genres)

    def serve(log_mel: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": crop_average(model, log_mel), "labels": labels}

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
