"""The featurizer over real gRPC: good uploads, streamed uploads, bad input, grpcurl."""

from __future__ import annotations

import json
import subprocess

import grpc
import numpy as np
import pytest

from devtools.localrun import Proc
from musicrec.v1 import featurizer_pb2, featurizer_pb2_grpc
from services.featurizer.schema import FEATURE_GROUPS, FEATURE_NAMES, SCHEMA_VERSION
from tests import synth
from tests.conftest import grpcurl_exe


@pytest.fixture()
def stub(featurizer: Proc):
    limit = 64 * 1024 * 1024
    channel = grpc.insecure_channel(
        featurizer.address,
        options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)],
    )
    yield featurizer_pb2_grpc.FeaturizerServiceStub(channel)
    channel.close()


def chunks(data: bytes, size: int = 64 * 1024, filename: str = "up.wav"):
    for i in range(0, max(len(data), 1), size):
        yield featurizer_pb2.FeaturizeStreamRequest(chunk=data[i : i + size], filename=filename if i == 0 else "")


def test_unary_wav_gives_mel_and_named_vector(stub) -> None:
    reply = stub.Featurize(featurizer_pb2.FeaturizeRequest(audio=synth.encode(synth.beats(40)), filename="a.wav"))
    assert list(reply.mel.shape) == [96, 1876]  # the ear's input: 96 bands, hop 256 at 16 kHz
    assert (reply.mel.sample_rate, reply.mel.n_fft, reply.mel.hop_length) == (16000, 512, 256)
    mel = np.frombuffer(reply.mel.data, dtype="<f4").reshape(96, 1876)
    assert mel.min() >= 0.0 and 0.5 < mel.max() < 10.0  # log10(10000 mel + 1), never the float16 overflow
    assert reply.features.schema_version == SCHEMA_VERSION
    assert list(reply.features.names) == FEATURE_NAMES
    assert np.all(np.isfinite(reply.features.values))
    assert reply.window.policy == "centered" and reply.window.start_seconds == pytest.approx(5.0, abs=0.01)
    assert reply.window.source_sample_rate == 22050


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("FLAC", None), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III"), ("AU", None)]
)
def test_other_formats_decode(stub, fmt: str, subtype: str | None) -> None:
    data = synth.encode(synth.beats(35), fmt=fmt, subtype=subtype)
    reply = stub.Featurize(featurizer_pb2.FeaturizeRequest(audio=data, omit_mel=True))
    assert len(reply.features.values) == len(FEATURE_NAMES)
    assert not reply.HasField("mel")


def test_stream_equals_unary_and_long_song_uses_killing_part(stub) -> None:
    stereo = np.stack([synth.beats(100, 100, sr=16000), synth.chirp(100, sr=16000)], axis=1)
    data = synth.encode(stereo, sr=16000)  # 6.4 MB: under the test server's 8 MiB message limit
    unary = stub.Featurize(featurizer_pb2.FeaturizeRequest(audio=data))
    streamed = stub.FeaturizeStream(chunks(data))
    assert streamed.window.policy == "killing_part"
    assert (streamed.window.start_seconds, streamed.window.end_seconds) == (60.0, 90.0)
    assert streamed.window.source_channels == 2
    assert list(streamed.features.values) == list(unary.features.values)
    assert streamed.mel.data == unary.mel.data


def test_short_clip_is_padded(stub) -> None:
    reply = stub.Featurize(featurizer_pb2.FeaturizeRequest(audio=synth.encode(synth.beats(8))))
    assert reply.window.policy == "padded" and list(reply.mel.shape) == [96, 1876]
    mel = np.frombuffer(reply.mel.data, dtype="<f4").reshape(96, 1876)
    assert mel[:, -100:].max() == 0.0  # the padding is log10(1): the ear's patches stay off it


def truncated_wav() -> bytes:
    data = synth.encode(synth.beats(5))
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"this is not audio at all" * 100, "not a readable audio file"),
        (truncated_wav(), "truncated"),
        (synth.encode(np.zeros(0, np.float32)), "zero samples"),
        (synth.encode(np.zeros(22050 * 40, np.float32)), "silent"),
    ],
    ids=["empty", "not-audio", "truncated", "zero-length", "silence"],
)
def test_bad_input_is_invalid_argument_and_server_keeps_serving(stub, data: bytes, needle: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Featurize(featurizer_pb2.FeaturizeRequest(audio=data, filename="bad.wav"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()
    ok = stub.Featurize(featurizer_pb2.FeaturizeRequest(audio=synth.encode(synth.beats(3)), omit_mel=True))
    assert len(ok.features.values) == len(FEATURE_NAMES)


def test_oversize_unary_and_stream_are_resource_exhausted(stub) -> None:
    big = synth.encode(synth.noise(60 * 5, 44100))  # ~26 MB of PCM16
    with pytest.raises(grpc.RpcError) as err:
        stub.Featurize(featurizer_pb2.FeaturizeRequest(audio=big))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as err:
        stub.FeaturizeStream(chunks(big, 1024 * 1024))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "MAX_UPLOAD_MB" in err.value.details()
    schema = stub.GetFeatureSchema(featurizer_pb2.GetFeatureSchemaRequest(), timeout=10)  # still serving
    assert schema.schema_version == SCHEMA_VERSION


def test_schema_serves_names_and_groups_from_one_declaration(stub) -> None:
    schema = stub.GetFeatureSchema(featurizer_pb2.GetFeatureSchemaRequest(), timeout=10)
    assert list(schema.names) == FEATURE_NAMES
    assert {g.name: list(g.features) for g in schema.groups} == FEATURE_GROUPS


def test_empty_stream_is_invalid(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.FeaturizeStream(iter(()))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def grpcurl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([grpcurl_exe(), "-plaintext", *args], capture_output=True, text=True, timeout=60)


def test_grpcurl_lists_describes_and_calls(featurizer: Proc) -> None:
    listed = grpcurl(featurizer.address, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"musicrec.v1.FeaturizerService", "grpc.health.v1.Health"} <= set(listed.stdout.split())
    described = grpcurl(featurizer.address, "describe", "musicrec.v1.FeaturizerService")
    assert "rpc FeaturizeStream ( stream .musicrec.v1.FeaturizeStreamRequest )" in described.stdout
    schema = grpcurl(featurizer.address, "musicrec.v1.FeaturizerService/GetFeatureSchema")
    assert json.loads(schema.stdout)["schema_version"] == SCHEMA_VERSION
    health = grpcurl(featurizer.address, "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout)["status"] == "SERVING"
    bad = grpcurl("-d", '{"audio": ""}', featurizer.address, "musicrec.v1.FeaturizerService/Featurize")
    assert bad.returncode != 0 and "InvalidArgument" in bad.stderr
