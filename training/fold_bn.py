"""Fold inference-mode batch normalisation into the convolution before it, for export.

Keras 3 runs a BatchNormalization layer at inference as a multiply and an add over the whole
activation, and TensorFlow's graph optimiser does not fold them into the convolution (it only
fuses FusedBatchNorm ops): in xception-mini they were 26 % of a fold's CPU time. Folded, a
convolution's kernel is scaled per output channel by gamma / sqrt(variance + epsilon) and it
gains the bias beta - mean * that scale, so the two elementwise passes disappear and the
convolution, its bias and the ReLU after it run as one fused kernel. The result is the same
function up to float rounding (tested); the trained model is left as it is, and only the
exported copy is folded (training/export.py).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

FOLDABLE = (layers.Conv2D, layers.SeparableConv2D, layers.DepthwiseConv2D)


def _producer(tensor) -> keras.layers.Layer:
    return tensor._keras_history.operation


def _graph_nodes(model: keras.Model) -> list:
    """The layer calls that make up `model` (a layer shared with other models has nodes there too)."""
    return [node for nodes in model._nodes_by_depth.values() for node in nodes]


def foldable_pairs(model: keras.Model) -> dict[str, str]:
    """{convolution name: batch norm name} for every BatchNormalization over channels that is
    called once, directly on the output of a linear convolution called once that nothing else reads."""
    nodes = _graph_nodes(model)
    calls: dict[int, int] = {}
    readers: dict[int, int] = {}
    for node in nodes:
        calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
        for tensor in node.input_tensors:
            readers[id(_producer(tensor))] = readers.get(id(_producer(tensor)), 0) + 1
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, layers.BatchNormalization) or calls.get(id(layer)) != 1:
            continue
        conv = _producer(layer.input)
        if (layer.axis in (-1, 3, [-1], [3]) and isinstance(conv, FOLDABLE)
                and conv.data_format == "channels_last" and conv.activation is keras.activations.linear
                and calls.get(id(conv)) == 1 and readers.get(id(conv)) == 1):
            pairs[conv.name] = layer.name
    return pairs


def _bn_affine(bn: layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) with bn(x) == x * scale + shift at inference."""
    mean = keras.ops.convert_to_numpy(bn.moving_mean).astype(np.float64)
    variance = keras.ops.convert_to_numpy(bn.moving_variance).astype(np.float64)
    gamma = keras.ops.convert_to_numpy(bn.gamma).astype(np.float64) if bn.scale else 1.0
    beta = keras.ops.convert_to_numpy(bn.beta).astype(np.float64) if bn.center else 0.0
    scale = gamma / np.sqrt(variance + bn.epsilon)
    return scale, beta - mean * scale


def _folded_weights(conv, bn: layers.BatchNormalization) -> list[np.ndarray]:
    """The weights of `conv` rebuilt with a bias, with `bn` folded in."""
    scale, shift = _bn_affine(bn)
    weights = [keras.ops.convert_to_numpy(w).astype(np.float64) for w in conv.weights]
    bias = weights.pop() if conv.use_bias else 0.0
    if isinstance(conv, layers.SeparableConv2D):  # [depthwise, pointwise]: scale the pointwise outputs
        weights[1] = weights[1] * scale
    elif isinstance(conv, layers.DepthwiseConv2D):  # [kh, kw, in, multiplier]: outputs are in x multiplier
        weights[0] = weights[0] * scale.reshape(weights[0].shape[2:])
    else:  # Conv2D [kh, kw, in, out]
        weights[0] = weights[0] * scale
    return [w.astype(np.float32) for w in [*weights, bias * scale + shift]]


class FoldedAway(layers.Layer):
    """Where a folded batch norm was: passes its input on (it takes the batch norm's call
    arguments, so the graph is cloned unchanged around it)."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def fold_batch_norms(model: keras.Model) -> keras.Model:
    """An inference copy of `model` with every foldable batch norm folded into its convolution
    (those BatchNormalization layers become FoldedAway). Every other layer is shared with `model`,
    which is left as it is."""
    pairs = foldable_pairs(model)
    folded_bns = set(pairs.values())

    def clone(layer):
        if layer.name in folded_bns:
            return FoldedAway(name=layer.name)
        if layer.name in pairs:
            return layer.__class__.from_config({**layer.get_config(), "use_bias": True})
        return layer  # shared, weights and all (a Lambda cannot be rebuilt from its config)

    inference = keras.models.clone_model(model, clone_function=clone)
    by_name = {layer.name: layer for layer in model.layers}
    for conv, bn in pairs.items():
        inference.get_layer(conv).set_weights(_folded_weights(by_name[conv], by_name[bn]))
    return inference
