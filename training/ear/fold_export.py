"""Export a fold head as a TF Serving SavedModel that reads the ear's embedding.

Signature `serving_default`:
  input  `embedding`      float32 [batch, D]        the ear's clip embedding (classifier.proto Embedding)
  output `probabilities`  float32 [batch, n_genres] softmax(head logits / T)
  output `labels`         string  [batch, n_genres] genre names in output order, every row alike
T is the fold's temperature, fitted on its own validation fold. Outputs are batch-major, as TF
Serving's server-side batching needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.common.quiet_tensorflow import import_tensorflow
from training.ear.heads import POOLED, Head

tf = import_tensorflow()


class ServedHead(tf.Module):
    def __init__(self, head: Head, temperature: float) -> None:
        super().__init__(name=f"{head.kind}_head")
        if head.kind not in POOLED:
            raise ValueError(f"only heads over the pooled embedding are served ({POOLED}), not {head.kind!r}")
        self.mean = tf.Variable(head.mean, trainable=False, name="mean")
        self.scale = tf.Variable(head.scale, trainable=False, name="scale")
        self.layers = [(tf.Variable(w, trainable=False, name=f"w{i}"), tf.Variable(b, trainable=False, name=f"b{i}"))
                       for i, (w, b) in enumerate(head.layers)]
        self.inverse_t = tf.Variable(np.float32(1.0 / temperature), trainable=False, name="inverse_temperature")
        self.labels = tf.constant(head.genres)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="embedding")])
    def serve(self, embedding):
        h = (embedding - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = tf.matmul(h, w) + b
            if i < len(self.layers) - 1:
                h = tf.nn.relu(h)
        return {
            "probabilities": tf.nn.softmax(h * self.inverse_t),
            "labels": tf.tile(self.labels[None, :], [tf.shape(embedding)[0], 1]),
        }


def export_head(head: Head, temperature: float, base_path: Path, version: int = 1) -> Path:
    """Write <base_path>/<version>/ in TF Serving's layout."""
    served = ServedHead(head, temperature)
    target = base_path / str(version)
    tf.saved_model.save(served, str(target), signatures={"serving_default": served.serve})
    return target
