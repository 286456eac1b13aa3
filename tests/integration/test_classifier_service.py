"""Classifier + local TF Serving stand-in over real gRPC, with the shipped ear and fold models."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile as sf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from devtools.localrun import Proc, free_port, running, start
from musicrec.v1 import audio_pb2, classifier_pb2, classifier_pb2_grpc
from services.classifier.tfserving import float_tensor as our_tensor
from services.common.modelconfig import write_models_config
from services.featurizer.features import featurize
from services.featurizer.window import cut_clip
from services.modelserver.session_config import cpu_has_fast_bf16
from tests import synth
from tests.conftest import grpcurl_exe, gtzan_clips, needs_gtzan

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
FOLDS = [f"linear_fold{k}" for k in range(5)]
EAR = "musicnn_msd"


def mel_of(samples: np.ndarray, sr: int) -> audio_pb2.MelSpectrogram:
    log_mel = featurize(cut_clip(samples, sr).samples).log_mel
    return audio_pb2.MelSpectrogram(shape=list(log_mel.shape), data=log_mel.astype("<f4").tobytes())


def classify(address: str, mel: audio_pb2.MelSpectrogram, timeout: float = 30) -> classifier_pb2.ClassifyResponse:
    with grpc.insecure_channel(address) as channel:
        return classifier_pb2_grpc.ClassifierServiceStub(channel).Classify(
            classifier_pb2.ClassifyRequest(mel=mel), timeout=timeout
        )


def test_models_config_lists_the_ear_and_five_folds_and_models_are_small() -> None:
    text = (MODELS / "models.config").read_text()
    assert all(f'name: "{f}"' in text for f in [EAR, *FOLDS])
    size = sum(p.stat().st_size for p in MODELS.rglob("*") if p.is_file())
    assert size <= 30 * 2**20, f"shipped models are {size / 2**20:.1f} MiB, budget 30 MiB"


def float_tensor(batch: np.ndarray) -> tensor_pb2.TensorProto:
    """TensorFlow's own TensorProto, from the classifier's bytes (the same wire format)."""
    return tensor_pb2.TensorProto.FromString(our_tensor(batch).SerializeToString())


def predict(address: str, model: str, key: str, batch: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
    with grpc.insecure_channel(address) as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.inputs[key].CopyFrom(float_tensor(batch))
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
    return {k: np.frombuffer(reply.outputs[k].tensor_content, "<f4").reshape(len(batch), -1) for k in outputs}


def test_model_server_speaks_tf_serving_api(modelserver) -> None:
    mel = np.full((1, 96, 1876), 1.0, np.float32)
    embedding = predict(modelserver.address, EAR, "log_mel", mel, ["embedding"])["embedding"]
    assert embedding.shape == (1, 200)
    with grpc.insecure_channel(modelserver.address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = FOLDS[0]
        request.inputs["embedding"].CopyFrom(float_tensor(embedding))
        reply = stub.Predict(request, timeout=30)
        probs = np.frombuffer(reply.outputs["probabilities"].tensor_content, "<f4")
        assert probs.shape == (10,) and probs.sum() == pytest.approx(1.0, abs=1e-4)
        assert len(reply.outputs["labels"].string_val) == 10
        assert reply.model_spec.version.value == 1
        meta = stub.GetModelMetadata(
            get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=request.model_spec, metadata_field=["signature_def"]
            )
        )
        sigs = get_model_metadata_pb2.SignatureDefMap()
        meta.metadata["signature_def"].Unpack(sigs)
        assert "embedding" in sigs.signature_def["serving_default"].inputs
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec=request.model_spec)
        )
        assert status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        request.model_spec.name = "no_such_model"
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_what_the_model_server_does_not_implement_is_unimplemented(modelserver) -> None:
    """TF Serving's Classify, Regress, MultiInference: the stand-in serves Predict only, and says so
    with UNIMPLEMENTED, as TF Serving does for what it lacks (it answered INTERNAL and logged a traceback)."""
    from tensorflow_serving.apis import classification_pb2

    with grpc.insecure_channel(modelserver.address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Classify(classification_pb2.ClassificationRequest(), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED and "Classify" in err.value.details()
    assert "Traceback" not in modelserver.log()


def test_model_server_runs_the_ear_under_tf_servings_session_config(modelserver, tmp_path) -> None:
    """deploy/components/tfserving-bf16's file (TF Serving's --tensorflow_session_config_file): the
    ear's embedding within bfloat16's rounding and the same votes; where bfloat16 is fast the
    ear really ran in it."""
    config = ROOT / "deploy" / "components" / "tfserving-bf16" / "session.config"
    mels = np.stack([featurize(cut_clip(song, 22050).samples).log_mel for song in (synth.beats(30), synth.chirp(30))])
    env = {"MODEL_CONFIG_FILE": str(MODELS / "models.config"), "TENSORFLOW_SESSION_CONFIG_FILE": str(config)}
    with running("services.modelserver", env, tmp_path) as bf16:
        ours = predict(bf16.address, EAR, "log_mel", mels, ["embedding"])["embedding"]
        theirs = predict(modelserver.address, EAR, "log_mel", mels, ["embedding"])["embedding"]
        cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
        assert cosine.min() > 0.99
        for fold in FOLDS[:2]:
            a = predict(bf16.address, fold, "embedding", ours, ["probabilities"])["probabilities"]
            b = predict(modelserver.address, fold, "embedding", theirs, ["probabilities"])["probabilities"]
            assert (a.argmax(1) == b.argmax(1)).all()
        if cpu_has_fast_bf16():
            assert np.abs(ours - theirs).max() > 0  # float32 would give the same floats
        log = bf16.log()
    assert '"graph_rewrites": {"auto_mixed_precision_onednn_bfloat16": true}' in log, log[-2000:]


def test_list_genres_before_any_classification(modelserver, tmp_path) -> None:
    with (
        running("services.classifier", {"TF_SERVING_ADDR": modelserver.address}, tmp_path) as cl,
        grpc.insecure_channel(cl.address) as channel,
    ):
        reply = classifier_pb2_grpc.ClassifierServiceStub(channel).ListGenres(classifier_pb2.ListGenresRequest())
    assert len(reply.labels) == 10 and "disco" in reply.labels and reply.model_names == FOLDS
    assert reply.ear_model_name == EAR and reply.ear_model_version == 1


def test_classify_votes_with_all_five_folds(classifier) -> None:
    reply = classify(classifier.address, mel_of(synth.beats(30), 22050))
    assert reply.folds_voted == reply.folds_total == 5 and not reply.degraded
    assert reply.genre in reply.labels and len(reply.labels) == 10
    assert sum(s.votes for s in reply.ranking) == 5
    assert reply.votes == max(s.votes for s in reply.ranking)
    for fold in reply.folds:
        assert fold.available and len(fold.probabilities) == 10
    # each genre's probability is the mean of the folds' calibrated probabilities
    mean = np.mean([fold.probabilities for fold in reply.folds], axis=0)
    for score in reply.ranking:
        assert score.probability == pytest.approx(mean[list(reply.labels).index(score.genre)], abs=1e-5)
    assert sum(s.probability for s in reply.ranking) == pytest.approx(1.0, abs=1e-4)
    assert reply.embedding.model_name == EAR and len(reply.embedding.values) == 200


@needs_gtzan
def test_classify_real_songs_mostly_right(classifier) -> None:
    clips = gtzan_clips()[::10]  # one per genre (some in the training folds)
    right = 0
    for path in clips:
        y, sr = sf.read(path, dtype="float32")
        right += classify(classifier.address, mel_of(y, sr)).genre == path.parent.name
    assert right >= 0.7 * len(clips), f"{right}/{len(clips)} right"


def test_classify_batch_answers_each_mel_as_classify_does(classifier) -> None:
    mels = [mel_of(song, 22050) for song in (synth.beats(30), synth.chirp(30), synth.noise(30))]
    with grpc.insecure_channel(classifier.address) as channel:
        stub = classifier_pb2_grpc.ClassifierServiceStub(channel)
        batch = stub.ClassifyBatch(classifier_pb2.ClassifyBatchRequest(mels=mels), timeout=60).results
        alone = [stub.Classify(classifier_pb2.ClassifyRequest(mel=mel), timeout=60) for mel in mels]
        assert len(batch) == 3
        for ours, theirs in zip(batch, alone, strict=True):
            assert ours.genre == theirs.genre and ours.votes == theirs.votes and ours.labels == theirs.labels
            for a, b in zip(ours.folds, theirs.folds, strict=True):
                assert a.model_name == b.model_name and a.genre == b.genre
                np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)
            np.testing.assert_allclose(ours.embedding.values, theirs.embedding.values, rtol=1e-4, atol=1e-4)
        assert batch[0].folds[0].probabilities != batch[1].folds[0].probabilities  # each mel its own row
        for wrong, why in (([], "1 to 8"), (mels * 3, "1 to 8")):
            with pytest.raises(grpc.RpcError) as err:
                stub.ClassifyBatch(classifier_pb2.ClassifyBatchRequest(mels=wrong), timeout=60)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and why in err.value.details()
        short = mel_of(synth.beats(10), 22050)
        short.shape[:] = [96, 10]
        short.data = short.data[: 4 * 96 * 10]
        with pytest.raises(grpc.RpcError) as err:
            stub.ClassifyBatch(classifier_pb2.ClassifyBatchRequest(mels=[mels[0], short]), timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "one shape" in err.value.details()


def test_bad_mel_is_invalid_argument(classifier) -> None:
    for mel in (
        audio_pb2.MelSpectrogram(shape=[64, 10], data=b"\0" * 4 * 640),
        audio_pb2.MelSpectrogram(shape=[96, 10], data=b"\0" * 12),
        audio_pb2.MelSpectrogram(shape=[96, 1], data=np.full(96, -40.0, "<f4").tobytes()),  # dB, not the ear's mel
        audio_pb2.MelSpectrogram(),
    ):
        with pytest.raises(grpc.RpcError) as err:
            classify(classifier.address, mel)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_one_fold_missing_votes_with_the_rest(modelserver, tmp_path) -> None:
    config = write_models_config(tmp_path / "models.config", [EAR, *FOLDS[:4], "linear_fold9"])
    env = {"TF_SERVING_ADDR": modelserver.address, "MODEL_CONFIG_FILE": str(config)}
    with running("services.classifier", env, tmp_path) as cl:
        reply = classify(cl.address, mel_of(synth.beats(30), 22050))
    assert reply.degraded and reply.folds_voted == 4 and reply.folds_total == 5
    assert "linear_fold9" in reply.note and "NOT_FOUND" in reply.note
    assert not reply.folds[4].available


@contextmanager
def waiting_classifier(env: dict[str, str], tmp_path: Path) -> Iterator[Proc]:
    """A classifier that cannot reach what it needs: started, waited for until it logs that it
    waits for TF Serving, checked NOT_SERVING, and stopped afterwards."""
    cl = start("services.classifier", env, tmp_path, wait=False)
    try:
        deadline = time.monotonic() + 60
        while "waiting for TF Serving" not in cl.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "waiting for TF Serving" in cl.log()
        with grpc.insecure_channel(cl.address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
        yield cl
    finally:
        cl.stop()


def test_an_ear_the_model_server_lacks_keeps_the_classifier_not_serving(modelserver, tmp_path) -> None:
    """No vote without the ear: a models.config whose ear TF Serving does not serve leaves the
    classifier NOT_SERVING, and its log names the ear it waits for."""
    config = write_models_config(tmp_path / "models.config", ["musicnn_other", *FOLDS])
    env = {"TF_SERVING_ADDR": modelserver.address, "MODEL_CONFIG_FILE": str(config), "EAR_MODEL": "musicnn_other"}
    with waiting_classifier(env, tmp_path) as cl:
        assert "musicnn_other (the ear" in cl.log()


def test_model_server_down_keeps_the_classifier_not_serving_and_says_why(tmp_path) -> None:
    env = {"TF_SERVING_ADDR": f"127.0.0.1:{free_port()}", "PREDICT_TIMEOUT_SECONDS": "2"}
    with waiting_classifier(env, tmp_path) as cl:
        with pytest.raises(grpc.RpcError) as err:
            classify(cl.address, mel_of(synth.beats(30), 22050))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "TF Serving" in err.value.details()


def grpcurl(address: str, *arguments: str, data: str = "") -> str:
    flags = ["-d", data] if data else []
    command = [grpcurl_exe(), "-plaintext", *flags, address, *arguments]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_grpcurl_describes_classifier(classifier) -> None:
    assert "rpc Classify" in grpcurl(classifier.address, "describe", "musicrec.v1.ClassifierService")


def test_grpcurl_describes_the_model_server_like_tf_serving(modelserver) -> None:
    assert "rpc Predict" in grpcurl(modelserver.address, "describe", "tensorflow.serving.PredictionService")
    assert "rpc GetModelStatus" in grpcurl(modelserver.address, "describe", "tensorflow.serving.ModelService")
    status = grpcurl(modelserver.address, "tensorflow.serving.ModelService/GetModelStatus",
                     data='{"model_spec": {"name": "musicnn_msd"}}')
    assert '"state": "AVAILABLE"' in status


def test_model_server_and_classifier_logs_carry_no_tensorflow_noise(modelserver, classifier) -> None:
    for proc in (modelserver, classifier):
        log = proc.log()
        assert "cuda" not in log.lower() and "onednn" not in log.lower(), log[:2000]
        assert all(line.startswith("{") for line in log.splitlines() if line.strip()), log[:2000]


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_classifier_does_not_load_the_tensorflow_runtime(classifier) -> None:
    # It only builds TensorProto messages (musicrec.tfserving.v1): 770 MB resident with
    # TensorFlow loaded.
    rss = resident_mib(classifier.process.pid)
    assert rss < 250, f"classifier holds {rss:.0f} MiB: is the TensorFlow runtime loaded again?"


REGIONAL = ROOT / "models-regional"
REGIONAL_CLIPS = ROOT.parent / "shared" / "data" / "regional_mini" / "genres"


@pytest.mark.skipif(not REGIONAL_CLIPS.is_dir(), reason=f"regional clips not found at {REGIONAL_CLIPS}")
def test_another_taxonomy_is_served_from_its_own_models_config(tmp_path) -> None:
    """`make train DATA=.../regional_mini/genres NAME=regional MODELS=models-regional` shipped these
    (the same ear, its own heads);
    the model server and the classifier need nothing but its models.config."""
    env = {"MODEL_CONFIG_FILE": str(REGIONAL / "models.config")}
    with (
        running("services.modelserver", env, tmp_path) as ms,
        running("services.classifier", {**env, "TF_SERVING_ADDR": ms.address}, tmp_path) as cl,
    ):
        clip = sorted((REGIONAL_CLIPS / "rock").glob("*.flac"))[0]
        y, sr = sf.read(clip, dtype="float32")
        reply = classify(cl.address, mel_of(y, sr))  # a 15 s clip: padded by the window, patches on its frames
    assert sorted(reply.labels) == ["clasico", "cumbia", "folklore", "rap", "reggae", "rock"]
    assert [f.model_name for f in reply.folds] == [f"regional_fold{k}" for k in range(5)]
    assert reply.genre in reply.labels and reply.folds_voted == 5
