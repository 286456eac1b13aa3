"""Heads that read the ear: what a fold model is, trained on a few clips per genre.

Every head maps the ear's output of a clip to genre logits:
- `linear`: standardised pooled embedding, L2 multinomial logistic regression, genres weighted
  to count alike (GTZAN's jazz has four times rock's clips);
- `mlp`: standardised pooled embedding, one hidden ReLU layer (L2, early stopping);
- `xception`: depthwise-separable convolution blocks over the mid-end's frame features of each
  patch, global pooling, a dense layer; the patches' logits averaged.
`fit` returns a Head whose `logits` the calibration and the export read (pooled heads export as
plain tf ops: standardise, matmuls).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

HEADS = ("linear", "mlp", "xception")
POOLED = ("linear", "mlp")  # heads that read the pooled embedding (the rest read frame features)
LINEAR_C = 0.003  # inverse L2 strength; training/ear/train.py chooses it per taxonomy out of fold
MLP_HIDDEN = 128
MLP_ALPHA = 1e-2


@dataclass
class Head:
    kind: str
    genres: list[str]
    mean: np.ndarray | None = None  # pooled heads: the standardiser
    scale: np.ndarray | None = None
    layers: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # pooled heads: (W, b), ReLU between
    keras_model: object = None  # the xception head

    def logits(self, x: np.ndarray) -> np.ndarray:
        """[n, n_genres] from embeddings [n, dim] (pooled heads) or frames [n, p, t, c] (xception)."""
        if self.kind in POOLED:
            h = (x - self.mean) / self.scale
            for i, (w, b) in enumerate(self.layers):
                h = h @ w + b
                if i < len(self.layers) - 1:
                    h = np.maximum(h, 0.0)
            return h
        n, p = x.shape[:2]
        per_patch = self.keras_model.predict(x.reshape(n * p, *x.shape[2:]).astype(np.float32), verbose=0)
        return per_patch.reshape(n, p, -1).mean(axis=1)


def fit(kind: str, x: np.ndarray, y: np.ndarray, genres: list[str], seed: int = 0) -> Head:
    if kind == "linear":
        return _fit_linear(x, y, genres)
    if kind == "mlp":
        return _fit_mlp(x, y, genres, seed)
    if kind == "xception":
        return _fit_xception(x, y, genres, seed)
    raise ValueError(f"unknown head {kind!r}: one of {HEADS}")


def _standardiser(x: np.ndarray) -> StandardScaler:
    return StandardScaler().fit(x)


def _full_classes(coef: np.ndarray, intercept: np.ndarray, present: np.ndarray, n: int):
    """Weights for every genre (a genre missing from a fold's training clips never wins)."""
    w = np.zeros((coef.shape[1], n), np.float32)
    b = np.full(n, -1e4, np.float32)
    w[:, present] = coef.T
    b[present] = intercept
    return w, b


def _fit_linear(x, y, genres) -> Head:
    scaler = _standardiser(x)
    model = LogisticRegression(C=LINEAR_C, max_iter=5000, class_weight="balanced")
    model.fit(scaler.transform(x), y)
    w, b = _full_classes(model.coef_, model.intercept_, model.classes_, len(genres))
    return Head("linear", genres, scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32), [(w, b)])


def _fit_mlp(x, y, genres, seed) -> Head:
    scaler = _standardiser(x)
    model = MLPClassifier((MLP_HIDDEN,), alpha=MLP_ALPHA, max_iter=2000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(x), y)
    hidden = (model.coefs_[0].astype(np.float32), model.intercepts_[0].astype(np.float32))
    w, b = _full_classes(model.coefs_[1].T, model.intercepts_[1], model.classes_, len(genres))
    return Head("mlp", genres, scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32), [hidden, (w, b)])


XCEPTION_EPOCHS = 40


def xception_network(frames: int, channels: int, n_genres: int):
    """Two depthwise-separable blocks (with a residual) over [frames, channels] of one patch."""
    import keras

    inputs = keras.Input((frames, channels))
    x = keras.layers.LayerNormalization()(inputs)
    x = keras.layers.Dense(128)(x)
    for filters in (128, 128):
        shortcut = x
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.SeparableConv1D(filters, 5, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Add()([x, shortcut])
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(n_genres, kernel_regularizer=keras.regularizers.l2(1e-3))(x)
    return keras.Model(inputs, outputs)


def _fit_xception(frames, y, genres, seed) -> Head:
    import keras

    keras.utils.set_random_seed(seed)
    n, p = frames.shape[:2]
    x = frames.reshape(n * p, *frames.shape[2:]).astype(np.float32)
    labels = np.repeat(y, p)
    model = xception_network(x.shape[1], x.shape[2], len(genres))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, labels, batch_size=32, epochs=XCEPTION_EPOCHS, verbose=0, shuffle=True)
    return Head("xception", genres, keras_model=model)
