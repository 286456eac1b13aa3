"""Model builders: Xception presets (width/depth-scaled) and the seed's baselines ResNet50
and MobileNet (V1). Every model maps a scaled log-mel crop [n_mels, frames, 1] to logits;
the softmax (with the fold's temperature) is applied at export, so calibration is one number.

Xception presets keep Chollet's structure (separable convolutions, residual entry/middle/exit
flows) at a fraction of its width and depth, so five folds train on two CPU cores. Each one
also has a small "band statistics" branch: the mean and spread of every mel band over the
crop, the summary the hand-crafted features are built from. On a few hundred clips it carries
what the convolutions cannot learn from so few examples; the convolutions add texture.
"""

from __future__ import annotations

import keras
from keras import layers

# Few steps per epoch on small data: BN statistics must settle fast.
BN_MOMENTUM = 0.9


# preset: (entry widths, middle width, middle blocks, exit widths)
XCEPTION_PRESETS: dict[str, tuple[tuple[int, ...], int, int, tuple[int, int]]] = {
    "micro": ((8, 16, 32), 32, 1, (48, 64)),
    "mini": ((16, 32, 64), 64, 2, (96, 128)),
}
ARCHES = [f"xception-{p}" for p in XCEPTION_PRESETS] + ["xception-full", "resnet50", "mobilenet"]


def _sep_bn(x, filters: int, relu_first: bool = True):
    if relu_first:
        x = layers.Activation("relu")(x)
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
    return layers.BatchNormalization(momentum=BN_MOMENTUM)(x)


def _xception_trunk(inputs, preset: str):
    entry, middle, n_middle, exit_widths = XCEPTION_PRESETS[preset]
    x = layers.Conv2D(entry[0], 3, strides=2, use_bias=False)(inputs)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(entry[0] * 2, 3, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.Activation("relu")(x)
    for i, width in enumerate([*entry[1:], middle]):
        residual = layers.Conv2D(width, 1, strides=2, padding="same", use_bias=False)(x)
        residual = layers.BatchNormalization(momentum=BN_MOMENTUM)(residual)
        x = _sep_bn(x, width, relu_first=i > 0)
        x = _sep_bn(x, width)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.add([x, residual])
    for _ in range(n_middle):
        residual = x
        for _ in range(3):
            x = _sep_bn(x, middle)
        x = layers.add([x, residual])
    residual = layers.Conv2D(exit_widths[1], 1, strides=2, padding="same", use_bias=False)(x)
    residual = layers.BatchNormalization(momentum=BN_MOMENTUM)(residual)
    x = _sep_bn(x, exit_widths[0])
    x = _sep_bn(x, exit_widths[1])
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.add([x, residual])
    x = layers.SeparableConv2D(exit_widths[1] * 2, 3, padding="same", activation="relu")(x)
    return layers.GlobalAveragePooling2D()(x)


def _band_statistics(inputs):
    """Per mel band: mean and standard deviation over the crop's frames, batch-normalised."""
    bands = layers.Reshape((inputs.shape[1], -1))(inputs)  # any number of frames
    mean = layers.Lambda(lambda t: keras.ops.mean(t, axis=2))(bands)
    std = layers.Lambda(lambda t: keras.ops.std(t, axis=2))(bands)
    stats = layers.Concatenate()([mean, std])
    return layers.BatchNormalization(momentum=BN_MOMENTUM)(stats)


def scaled_xception(input_shape: tuple[int, int, int], n_classes: int, preset: str) -> keras.Model:
    inputs = keras.Input(input_shape)
    texture = layers.Dropout(0.3)(_xception_trunk(inputs, preset))
    stats = layers.Dropout(0.2)(_band_statistics(inputs))
    x = layers.Concatenate()([texture, stats])
    outputs = layers.Dense(n_classes, kernel_regularizer=keras.regularizers.l2(1e-3))(x)
    return keras.Model(inputs, outputs, name=f"xception_{preset}")


APPLICATIONS = {
    "xception-full": keras.applications.Xception,
    "resnet50": keras.applications.ResNet50,
    "mobilenet": keras.applications.MobileNet,
}


def _application(network, input_shape: tuple, n_classes: int) -> keras.Model:
    """A keras.applications network, headless with global average pooling and a linear Dense
    layer: its own top, but one that accepts any number of frames."""
    base = network(weights=None, include_top=False, input_shape=input_shape, pooling="avg")
    return keras.Model(base.input, layers.Dense(n_classes)(base.output), name=base.name)


def build(arch: str, input_shape: tuple, n_classes: int, weights: str | None = None) -> keras.Model:
    """arch: one of ARCHES; input_shape (n_mels, frames, 1), frames None for any number (the
    inference tiles are narrower than the training crops). `weights`: a local weights file to
    start from (nothing is downloaded)."""
    if arch.startswith("xception-") and arch.removeprefix("xception-") in XCEPTION_PRESETS:
        model = scaled_xception(input_shape, n_classes, arch.removeprefix("xception-"))
    elif arch in APPLICATIONS:
        model = _application(APPLICATIONS[arch], input_shape, n_classes)
    else:
        raise SystemExit(f"unknown --arch {arch!r}: use one of {', '.join(ARCHES)}")
    if weights:
        model.load_weights(weights)
    return model
