"""The Predict messages built by hand are the ones TensorFlow's own helpers build."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2

from services.classifier.tfserving import INPUT_KEY, float_tensor, predict_inputs


def test_a_folds_request_is_its_model_spec_followed_by_the_shared_inputs() -> None:
    mel = np.random.default_rng(0).uniform(-80, 0, (128, 938)).astype(np.float32)
    expected = predict_pb2.PredictRequest()
    expected.model_spec.name = "xception_fold3"
    expected.model_spec.signature_name = "serving_default"
    expected.inputs[INPUT_KEY].CopyFrom(float_tensor(mel[None]))
    spec = predict_pb2.PredictRequest()
    spec.model_spec.CopyFrom(expected.model_spec)
    sent = predict_pb2.PredictRequest.FromString(spec.SerializeToString() + predict_inputs(mel))
    assert sent == expected
    tensor = sent.inputs[INPUT_KEY]
    assert [d.size for d in tensor.tensor_shape.dim] == [1, 128, 938]
    np.testing.assert_array_equal(np.frombuffer(tensor.tensor_content, "<f4").reshape(1, 128, 938), mel[None])


@pytest.mark.parametrize("array", [
    np.random.default_rng(1).random((3, 10)).astype(np.float32),
    np.array([[b"blues", b"jazz"], [b"blues", b"jazz"]], dtype=object),
    np.arange(6, dtype=np.int64).reshape(2, 3),
    np.zeros((0, 10), np.float32),
])
def test_the_model_servers_tensors_equal_tensorflows(array: np.ndarray) -> None:
    from services.common.quiet_tensorflow import import_tensorflow

    tf = import_tensorflow()
    from services.modelserver.servicer import to_array, to_tensor_proto

    assert to_tensor_proto(array) == tf.make_tensor_proto(array)
    np.testing.assert_array_equal(to_array(tf.make_tensor_proto(array)), array)
    assert to_array(tf.make_tensor_proto(array)).shape == array.shape
