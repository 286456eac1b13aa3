"""Ingestion classifies the mels of the songs in flight in batches (BatchedClassifier)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from services.common.errors import ServiceError, invalid
from services.common.predict_batch import MAX_PREDICT_BATCH
from services.common.upload import UPLOADS_PER_PEER
from services.modelserver.batching import BatchingParameters
from services.recommender.catalog.analysis import Analyser, BatchedClassifier
from tests.conftest import ROOT


class FakeUpstream:
    """ClassifyBatch and Classify answering each mel with its own name; "bad" mels are refused."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.singles: list[str] = []

    async def classify_batch(self, mels: list[str], timeout: float) -> list[str]:
        self.batches.append(list(mels))
        await asyncio.sleep(0.01)
        if any(m.startswith("bad") for m in mels):
            raise invalid("the models rejected the spectrogram")
        return [f"vote:{m}" for m in mels]

    async def classify(self, mel: str, timeout: float) -> str:
        self.singles.append(mel)
        if mel.startswith("bad"):
            raise invalid("the models rejected the spectrogram")
        return f"vote:{mel}"


def run(classifier: BatchedClassifier, mels: list[str]) -> list:
    async def main() -> list:
        return await asyncio.gather(*(classifier.classify(m) for m in mels), return_exceptions=True)

    return asyncio.run(main())


def test_songs_in_flight_share_batches_and_each_gets_its_own_vote() -> None:
    upstream = FakeUpstream()
    classifier = BatchedClassifier(upstream, timeout=5, max_batch=4, linger=10)  # full batches never linger
    started = time.perf_counter()
    assert run(classifier, [f"m{i}" for i in range(8)]) == [f"vote:m{i}" for i in range(8)]
    assert upstream.batches == [["m0", "m1", "m2", "m3"], ["m4", "m5", "m6", "m7"]]
    assert time.perf_counter() - started < 5


def test_a_batch_that_does_not_fill_goes_after_the_linger() -> None:
    upstream = FakeUpstream()
    classifier = BatchedClassifier(upstream, timeout=5, max_batch=8, linger=0.05)
    started = time.perf_counter()
    assert run(classifier, ["a", "b", "c"]) == ["vote:a", "vote:b", "vote:c"]
    assert upstream.batches == [["a", "b", "c"]]
    assert 0.04 < time.perf_counter() - started < 2


def test_a_refused_batch_is_split_so_only_the_song_at_fault_fails() -> None:
    upstream = FakeUpstream()
    classifier = BatchedClassifier(upstream, timeout=5, max_batch=3, linger=10)

    async def main() -> list[asyncio.Task]:
        tasks = [asyncio.ensure_future(classifier.classify(m)) for m in ("a", "bad", "c")]
        await asyncio.wait(tasks)
        return tasks

    a, bad, c = asyncio.run(main())
    assert a.result() == "vote:a" and c.result() == "vote:c"
    error = bad.exception()  # raised to the song's caller, not handed back as its vote
    assert isinstance(error, ServiceError) and error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert upstream.singles == ["a", "bad", "c"]


def test_batches_fit_tf_servings_max_batch_size() -> None:
    # TF Serving refuses a Predict larger than max_batch_size instead of splitting it
    params = BatchingParameters.read(ROOT / "deploy" / "components" / "tfserving-batching" / "batching.config")
    assert params.max_batch_size == MAX_PREDICT_BATCH


@pytest.mark.parametrize(("in_flight", "batch"), [(1, 1), (2, 1), (8, 4), (16, 8), (64, 8)])
def test_batches_are_half_the_songs_in_flight_at_most_the_predict_limit(in_flight: int, batch: int) -> None:
    analyser = Analyser(FakeUpstream(), store=None, timeout=5, in_flight=in_flight)  # type: ignore[arg-type]
    assert analyser.classifier.max_batch == batch


class CountingFeaturizer:
    """featurize() that, like the featurizer, refuses more than `per_peer` uploads at once; it
    then stops the analysis (INVALID_ARGUMENT), since only the uploads are under test."""

    def __init__(self, per_peer: int) -> None:
        self.per_peer = per_peer
        self.active = self.peak = self.refused = self.calls = 0

    async def featurize(self, data: bytes, filename: str, timeout: float) -> None:
        self.calls += 1
        if self.active >= self.per_peer:
            self.refused += 1
            raise invalid("too many uploads from your address")
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.01)
        self.active -= 1
        raise invalid("analysis stops after the upload in this test")


class EmptyStore:
    def get(self, sha: str) -> None:
        return None


def test_songs_in_flight_send_no_more_uploads_at_once_than_the_featurizer_takes_from_one_address(tmp_path) -> None:
    featurizer = CountingFeaturizer(per_peer=UPLOADS_PER_PEER)
    analyser = Analyser(featurizer, EmptyStore(), timeout=5, in_flight=16)  # type: ignore[arg-type]
    files = []
    for i in range(16):
        files.append(tmp_path / f"{i}.wav")
        files[-1].write_bytes(bytes([i]))

    async def main() -> None:
        await asyncio.gather(*(analyser.analyse(f) for f in files), return_exceptions=True)

    asyncio.run(main())
    assert featurizer.calls == 16 and featurizer.refused == 0
    assert featurizer.peak == UPLOADS_PER_PEER
