"""Where the model looks: random crops for training, tiling crops for inference.

Both stay inside the clip's valid frames (before the featurizer's end padding), so a short
clip's padding is never seen. A clip shorter than one crop is repeated cyclically, never
padded with silence.
"""

from __future__ import annotations

import numpy as np

from services.common.quiet_tensorflow import import_tensorflow

tf = import_tensorflow()
CROP_FRAMES = 256
SILENT_DB = -80.0


def scale(log_mel):
    """Log-mel in dB ([-80, 0], ref=max) to [0, 1]; the models' input."""
    return (log_mel - SILENT_DB) / -SILENT_DB


def random_crop(mel: np.ndarray, valid: int, rng: np.random.Generator) -> np.ndarray:
    """One CROP_FRAMES crop at a random start inside the first `valid` frames."""
    start = int(rng.integers(0, max(valid - CROP_FRAMES, 0) + 1))
    frames = (start + np.arange(CROP_FRAMES)) % valid
    return mel[:, frames]


def valid_lengths(log_mel: tf.Tensor) -> tf.Tensor:
    """[batch] frames before the trailing -80 dB padding (all frames when none is live)."""
    frames = tf.shape(log_mel)[2]
    live = tf.reduce_max(log_mel, axis=1) > SILENT_DB + 1e-3
    last = tf.reduce_max(tf.where(live, tf.range(1, frames + 1)[None, :], 0), axis=1)
    return tf.where(last > 0, last, frames)


def tiled_crops(log_mel: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Tile each clip's valid frames with the fewest crops that cover them all.

    Returns crops [batch, n, n_mels, CROP_FRAMES] and weights [batch, n] (1 for a clip's own
    crops, 0 for slots a shorter clip does not need). A 30 s clip (938 frames) gets 4 crops
    that overlap by 9 % in total, the least that covers every frame.
    """
    length = valid_lengths(log_mel)
    needed = tf.maximum(1, (length + CROP_FRAMES - 1) // CROP_FRAMES)  # [batch]
    n = tf.reduce_max(needed)
    j = tf.range(n)[None, :]  # [1, n]
    step = tf.cast(tf.maximum(length - CROP_FRAMES, 0), tf.float32) / tf.cast(tf.maximum(needed - 1, 1), tf.float32)
    offsets = tf.cast(tf.round(tf.cast(tf.minimum(j, needed[:, None] - 1), tf.float32) * step[:, None]), tf.int32)
    frame_idx = (offsets[:, :, None] + tf.range(CROP_FRAMES)[None, None, :]) % length[:, None, None]
    by_frame = tf.transpose(log_mel, [0, 2, 1])  # [batch, frames, n_mels]
    crops = tf.gather(by_frame, frame_idx, batch_dims=1)  # [batch, n, CROP, n_mels]
    weights = tf.cast(j < needed[:, None], tf.float32)
    return tf.transpose(crops, [0, 1, 3, 2]), weights


def clip_logits(model, log_mel: tf.Tensor) -> tf.Tensor:
    """[batch, n_genres] logits of whole clips: the weighted mean of their tiles' logits."""
    crops, weights = tiled_crops(log_mel)
    shape = tf.shape(crops)
    flat = tf.reshape(scale(crops), [-1, shape[2], CROP_FRAMES, 1])
    logits = tf.reshape(model(flat, training=False), [shape[0], shape[1], -1])
    return tf.reduce_sum(logits * weights[..., None], axis=1) / tf.reduce_sum(weights, axis=1, keepdims=True)
