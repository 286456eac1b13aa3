"""Model builders: Xception (a width/depth-scaled preset and the full Keras application),
and the seed's baselines ResNet50 and MobileNet (V1).

Inputs are log-mel crops [n_mels, frames, 1] already scaled to about [0, 1] (see `scale`).
"""

from __future__ import annotations

import keras
from keras import layers

# Xception presets: (entry widths, middle width, middle blocks, exit widths).
# "full" is Chollet's network (keras.applications.Xception); "mini" keeps its structure
# (separable convs, residual entry/middle/exit flows) at 1/8 width and 2 of 8 middle blocks so
# five folds train on two CPU cores in minutes and ship in a few MB.
# Few steps per epoch on small data: BN statistics must settle fast.
BN_MOMENTUM = 0.9
PRESETS = {"mini": ((16, 32, 64), 64, 2, (96, 128))}


def scale(log_mel: keras.KerasTensor) -> keras.KerasTensor:
    """Log-mel in dB ([-80, 0], ref=max) to [0, 1]."""
    return (log_mel + 80.0) / 80.0


def _sep_bn(x, filters: int, relu_first: bool = True):
    if relu_first:
        x = layers.Activation("relu")(x)
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
    return layers.BatchNormalization(momentum=BN_MOMENTUM)(x)


def scaled_xception(input_shape: tuple[int, int, int], n_classes: int, preset: str = "mini") -> keras.Model:
    entry, middle, n_middle, exit_widths = PRESETS[preset]
    inputs = keras.Input(input_shape)
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
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"xception_{preset}")


def build(arch: str, input_shape: tuple[int, int, int], n_classes: int, weights: str | None = None) -> keras.Model:
    """arch: xception (mini preset), xception-full, resnet50 or mobilenet."""
    if arch == "xception":
        model = scaled_xception(input_shape, n_classes)
    elif arch == "xception-full":
        model = keras.applications.Xception(weights=None, input_shape=input_shape, classes=n_classes)
    elif arch == "resnet50":
        model = keras.applications.ResNet50(weights=None, input_shape=input_shape, classes=n_classes)
    elif arch == "mobilenet":
        model = keras.applications.MobileNet(weights=None, input_shape=input_shape, classes=n_classes)
    else:
        raise SystemExit(f"unknown --arch {arch!r}: use xception, xception-full, resnet50 or mobilenet")
    if weights:
        model.load_weights(weights)
    return model
