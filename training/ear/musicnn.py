"""musicnn's MSD network (Pons & Serra 2019), rebuilt from its checkpoint with plain tf.nn ops.

The PyPI package `musicnn` ships four trained TF1 checkpoints in its wheel; its own code needs
tf.compat.v1.layers (gone with Keras 3) and pins numpy<1.17, so only the checkpoint is used:
its variables are read with tf.train's checkpoint reader and the network below re-expresses
`musicnn/models.py:build_musicnn` (front-end 7774timbraltemporal, mid-end of three dense
convolutions, back-end globalpool_dense) in inference mode: batch norms with their moving
statistics (epsilon 1e-3, tf.compat.v1.layers' default), no dropout.

Input: patches [n, 187, 96] of log10(10000 mel + 1), mel from 16 kHz, n_fft 512, hop 256,
96 slaney bands (featurizer/ear_mel.py computes it in float32; the package's float16 cast
overflows on loud clips). Outputs per patch: `embedding` (the 200-d penultimate layer, after
its batch norm), `tags` (sigmoid of the 50 MSD tag logits) and, for heads over time,
`frames` (the mid-end's 753 features per frame).
"""

from __future__ import annotations

import numpy as np

from services.common.quiet_tensorflow import import_tensorflow

tf = import_tensorflow()

PATCH_FRAMES = 187  # 3 s at hop 256 (musicnn's input_length=3)
N_BANDS = 96
EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default
EMBEDDING_DIM = 200
FRAME_FEATURES = 561 + 3 * 64


class Weights:
    """The checkpoint's variables as float32 numpy arrays, by their TF1 names."""

    def __init__(self, values: dict[str, np.ndarray]) -> None:
        self.values = values

    @classmethod
    def read(cls, prefix: str) -> Weights:
        reader = tf.compat.v1.train.NewCheckpointReader(prefix)
        names = [n for n in reader.get_variable_to_shape_map() if "Adam" not in n and not n.endswith("_power")]
        return cls({n: reader.get_tensor(n).astype(np.float32) for n in names})

    def conv(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        name = "conv2d" if index == 0 else f"conv2d_{index}"
        return self.values[f"{name}/kernel"], self.values[f"{name}/bias"]

    def dense(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        name = "dense" if index == 0 else f"dense_{index}"
        return self.values[f"{name}/kernel"], self.values[f"{name}/bias"]

    def norm(self, index: int) -> tuple[np.ndarray, ...]:
        name = "batch_normalization" if index == 0 else f"batch_normalization_{index}"
        return tuple(self.values[f"{name}/{k}"] for k in ("moving_mean", "moving_variance", "beta", "gamma"))


class Musicnn(tf.Module):
    """The network as a tf.Module whose variables hold the checkpoint (frozen: inference only)."""

    def __init__(self, weights: Weights) -> None:
        super().__init__(name="musicnn_msd")
        self._v = {name: tf.Variable(value, trainable=False, name=name.replace("/", "_"))
                   for name, value in weights.values.items()}

    def _conv(self, x, index: int, padding: str):
        kernel, bias = self._v[f"conv2d{'' if index == 0 else f'_{index}'}/kernel"], \
            self._v[f"conv2d{'' if index == 0 else f'_{index}'}/bias"]
        return tf.nn.relu(tf.nn.conv2d(x, kernel, strides=1, padding=padding) + bias)

    def _norm(self, x, index: int):
        name = "batch_normalization" if index == 0 else f"batch_normalization_{index}"
        v = self._v
        return tf.nn.batch_normalization(x, v[f"{name}/moving_mean"], v[f"{name}/moving_variance"],
                                         v[f"{name}/beta"], v[f"{name}/gamma"], EPSILON)

    def _dense(self, x, index: int):
        name = "dense" if index == 0 else f"dense_{index}"
        return tf.matmul(x, self._v[f"{name}/kernel"]) + self._v[f"{name}/bias"]

    def frames(self, patches):
        """The mid-end's per-frame features [n, 187, 753] (front-end 561 + three 64s)."""
        x = self._norm(patches[..., None], 0)  # [n, T, 96, 1]
        padded = tf.pad(x, [[0, 0], [3, 3], [0, 0], [0, 0]])

        def pooled(y, norm):  # batch norm, then max over the frequency axis
            return tf.reduce_max(self._norm(y, norm), axis=2)

        front = tf.concat([
            pooled(self._conv(padded, 0, "VALID"), 1),  # timbral 7 x 38
            pooled(self._conv(padded, 1, "VALID"), 2),  # timbral 7 x 67
            pooled(self._conv(x, 2, "SAME"), 3),  # temporal 128 x 1
            pooled(self._conv(x, 3, "SAME"), 4),  # temporal 64 x 1
            pooled(self._conv(x, 4, "SAME"), 5),  # temporal 32 x 1
        ], axis=2)  # [n, T, 561]

        def dense_conv(y, conv, norm):  # [n, T, C] -> [n, T, 64]: a 7-frame convolution over all C
            y = tf.pad(y[..., None], [[0, 0], [3, 3], [0, 0], [0, 0]])
            return self._norm(self._conv(y, conv, "VALID"), norm)[:, :, 0, :]

        c1 = dense_conv(front, 5, 6)
        c2 = dense_conv(c1, 6, 7) + c1
        c3 = dense_conv(c2, 7, 8) + c2
        return tf.concat([front, c1, c2, c3], axis=2)

    def patch_outputs(self, patches) -> dict:
        """Per patch: `embedding` [n, 200] and `tags` [n, 50]."""
        frames = self.frames(patches)
        pooled = tf.stack([tf.reduce_max(frames, axis=1), tf.reduce_mean(frames, axis=1)], axis=2)
        flat = self._norm(tf.reshape(pooled, [-1, 2 * FRAME_FEATURES]), 9)
        embedding = self._norm(tf.nn.relu(self._dense(flat, 0)), 10)
        return {"embedding": embedding, "tags": tf.sigmoid(self._dense(embedding, 1))}


def valid_frames(log_mel):
    """[batch] frames before the trailing silence a short clip is padded with (log10(1) = 0
    there); all frames when the whole clip is silent."""
    frames = tf.shape(log_mel)[2]
    live = tf.reduce_max(log_mel, axis=1) > 1e-6
    last = tf.reduce_max(tf.where(live, tf.range(1, frames + 1)[None, :], 0), axis=1)
    return tf.where(last > 0, last, frames)


def clip_patches(log_mel, count: int):
    """`count` patches of each clip [batch, 96, frames] -> [batch * count, 187, 96]: starts spread
    evenly over the clip's valid frames (the k-th centred in its k-th share), a clip shorter
    than a patch repeated cyclically (musicnn's repeat-pad), never its silent padding."""
    length = valid_frames(log_mel)  # [batch]
    span = tf.cast(tf.maximum(length - PATCH_FRAMES, 0), tf.float32)
    share = (tf.range(count, dtype=tf.float32) + 0.5) / count  # [count]
    starts = tf.cast(tf.round(share[None, :] * span[:, None]), tf.int32)  # [batch, count]
    index = (starts[:, :, None] + tf.range(PATCH_FRAMES)[None, None, :]) % length[:, None, None]
    patches = tf.gather(tf.transpose(log_mel, [0, 2, 1]), index, batch_dims=1)  # [batch, count, 187, 96]
    return tf.reshape(patches, [-1, PATCH_FRAMES, N_BANDS])


def clip_outputs(network: Musicnn, log_mel, count: int) -> dict:
    """Per clip: the mean over its `count` patches of each per-patch output."""
    per_patch = network.patch_outputs(clip_patches(log_mel, count))
    batch = tf.shape(log_mel)[0]
    return {k: tf.reduce_mean(tf.reshape(v, [batch, count, -1]), axis=1) for k, v in per_patch.items()}
