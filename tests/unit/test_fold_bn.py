"""training/fold_bn.py: batch norms folded into their convolutions compute what the model computes."""

from __future__ import annotations

import numpy as np
import pytest

from training.tiling import tf  # TensorFlow quietly, before keras

keras = pytest.importorskip("keras")


def _with_trained_statistics(model, rng: np.random.Generator):
    """Batch norms that are far from the identity, as after training."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape
            layer.moving_mean.assign(0.2 * rng.standard_normal(n))
            layer.moving_variance.assign(rng.uniform(0.3, 2.0, n))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(0.2 * rng.standard_normal(n))
    return model


@pytest.mark.parametrize("arch", ["xception-micro", "mobilenet"])  # SeparableConv2D, Conv2D; DepthwiseConv2D
def test_folded_model_computes_what_the_model_computes(arch: str) -> None:
    from training.fold_bn import FoldedAway, fold_batch_norms
    from training.models import build

    rng = np.random.default_rng(0)
    model = _with_trained_statistics(build(arch, (128, None, 1), 4), rng)
    folded = fold_batch_norms(model)

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    after_convolutions = [n for n in norms if "concatenate" not in n.input._keras_history.operation.name]
    assert sum(isinstance(layer, FoldedAway) for layer in folded.layers) == len(after_convolutions) > 10
    left = [layer for layer in folded.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(left) == len(norms) - len(after_convolutions)  # xception's band statistics keep theirs

    x = rng.uniform(0, 1, (2, 128, 96, 1)).astype(np.float32)
    pooled = next(layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    features = keras.Model(model.input, pooled.output)(x, training=False).numpy()
    assert np.abs(features).max() > 1e-2  # the convolutions reach the output (not all dead)
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(folded(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(model(x, training=False).numpy(), expected)  # the model is left as it was


def test_a_fold_export_keeps_the_trained_weights_for_the_next_re_export(tmp_path) -> None:
    """The served network is folded; the trained one (batch norms and all) rides along, in order,
    and an export from before folding gives its own variables back the same way."""
    from training.export import export_savedmodel, trained_variables
    from training.models import build

    model = _with_trained_statistics(build("xception-micro", (128, None, 1), 2), np.random.default_rng(1))
    target = export_savedmodel(model, ["a", "b"], 1.0, tmp_path / "fold", version=1)
    saved = trained_variables(tf.saved_model.load(str(target)))
    assert [tuple(v.shape) for v in saved] == [tuple(v.shape) for v in model.variables]
    for ours, theirs in zip(model.variables, saved, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), theirs.numpy())

    archive = keras.export.ExportArchive()  # how folds were exported before
    archive.track(model)
    archive.add_endpoint(name="serve", fn=lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec([None, 128, 64, 1], tf.float32)])
    archive.write_out(str(tmp_path / "old"), verbose=False)
    old = trained_variables(tf.saved_model.load(str(tmp_path / "old")))
    assert [tuple(v.shape) for v in old] == [tuple(v.shape) for v in model.variables]
