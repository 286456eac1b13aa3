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


def tile_width(frames):
    """Width of the inference tiles for mels of `frames` frames (padded length, the same for
    every clip of a batch): the fewest CROP_FRAMES-or-narrower tiles that cover them, made as
    wide as needed to meet end to end (938 frames: 4 tiles of 235, not 4 of 256 overlapping by
    9 %). Up to one crop's frames: one CROP_FRAMES tile (a short clip repeats to fill it).

    It depends on the padded length only, never on the clip or on its batch-mates, so a clip
    gets the same answer alone or batched with others (TF Serving merges requests of one shape).
    """
    tiles = (frames + CROP_FRAMES - 1) // CROP_FRAMES
    return tf.where(tiles <= 1, CROP_FRAMES, (frames + tiles - 1) // tiles)


def tiled_crops(log_mel: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Tile each clip's valid frames with the fewest tiles that cover them all.

    Returns crops [batch, n, n_mels, width] (width = tile_width(frames)) and weights [batch, n]
    (1 for a clip's own tiles, 0 for slots a shorter clip does not need). A 30 s clip (938
    frames) gets 4 tiles of 235 frames that meet end to end (2 frames seen twice); a shorter
    clip's tiles spread over its valid frames, overlapping as little as they can.
    """
    length = valid_lengths(log_mel)
    width = tile_width(tf.shape(log_mel)[2])
    needed = tf.maximum(1, (length + width - 1) // width)  # [batch]
    n = tf.reduce_max(needed)
    j = tf.range(n)[None, :]  # [1, n]
    step = tf.cast(tf.maximum(length - width, 0), tf.float32) / tf.cast(tf.maximum(needed - 1, 1), tf.float32)
    offsets = tf.cast(tf.round(tf.cast(tf.minimum(j, needed[:, None] - 1), tf.float32) * step[:, None]), tf.int32)
    frame_idx = (offsets[:, :, None] + tf.range(width)[None, None, :]) % length[:, None, None]
    by_frame = tf.transpose(log_mel, [0, 2, 1])  # [batch, frames, n_mels]
    crops = tf.gather(by_frame, frame_idx, batch_dims=1)  # [batch, n, width, n_mels]
    weights = tf.cast(j < needed[:, None], tf.float32)
    return tf.transpose(crops, [0, 1, 3, 2]), weights


def clip_logits(model, log_mel: tf.Tensor) -> tf.Tensor:
    """[batch, n_genres] logits of whole clips: the weighted mean of their tiles' logits."""
    crops, weights = tiled_crops(log_mel)
    shape = tf.shape(crops)
    flat = tf.reshape(scale(crops), [-1, shape[2], shape[3], 1])
    logits = tf.reshape(model(flat, training=False), [shape[0], shape[1], -1])
    return tf.reduce_sum(logits * weights[..., None], axis=1) / tf.reduce_sum(weights, axis=1, keepdims=True)
