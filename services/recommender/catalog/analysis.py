"""Featurize + classify one audio file through the services, remembered by what decides the answer.

An analysis is stored under <store>/<feature schema>/<models key>/<sha256 of the file>.json: the
same bytes analysed by the same featurizer schema and the same fold models (names, versions and
labels, from the classifier's ListGenres) are never analysed again, whichever machine or shard
asks. A new featurizer schema or model version starts a new folder, so every song is analysed
again exactly once. Entries are written to a temporary name and renamed (shared storage, many
writers).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from services.common.errors import ServiceError, exhausted, invalid
from services.common.predict_batch import MAX_PREDICT_BATCH
from services.common.upload import MAX_UPLOAD_MB, UPLOADS_PER_PEER
from services.recommender.catalog.tags import read_tags
from services.recommender.search.routing import from_classification
from services.recommender.upstream import Upstream, with_backoff


@dataclass
class Analysed:
    vector: list[float]
    predicted: str
    share: float
    ranking: list[str]
    probabilities: dict[str, float]
    song_seconds: float = 0.0  # the decoded song's length
    tags: dict = field(default_factory=dict)  # FileTags as a dict
    embedding: list[float] = field(default_factory=list)  # the ear's (Setup.ear names it)


@dataclass(frozen=True)
class Setup:
    """What every analysis of one run shares: the featurizer's schema and the classifier's models."""

    schema_version: str
    feature_names: list[str]
    feature_groups: dict[str, list[str]]
    models_key: str  # digest of the ear's and the fold models' names, versions and labels
    ear: dict = field(default_factory=dict)  # the ear's model name and version

    def embedding_space(self, dim: int) -> dict | None:
        """What build_generation records of the embedding its vectors carry (None: no ear)."""
        return {**self.ear, "dim": dim} if self.ear and dim else None


async def read_setup(upstream: Upstream, timeout: float) -> Setup:
    schema = await upstream.feature_schema(timeout)
    models = await upstream.models(timeout)
    ear = {"model": models.ear_model_name, "version": int(models.ear_model_version)} if models.ear_model_name else {}
    described = json.dumps([list(models.labels), list(models.model_names), list(models.model_versions), ear])
    return Setup(
        schema.schema_version,
        list(schema.names),
        {g.name: list(g.features) for g in schema.groups},
        hashlib.sha256(described.encode()).hexdigest()[:16],
        ear,
    )


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AnalysisStore:
    """The content-addressed analyses of one (schema, models) setup."""

    def __init__(self, root: Path, setup: Setup) -> None:
        self.folder = root / setup.schema_version / setup.models_key
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        return self.folder / f"{sha}.json"

    def get(self, sha: str) -> Analysed | None:
        try:
            entry = json.loads(self.path(sha).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return Analysed(**{k: entry[k] for k in Analysed.__dataclass_fields__ if k in entry})

    def put(self, sha: str, analysed: Analysed, source: str) -> None:
        target = self.path(sha)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**asdict(analysed), "file": source}))
        os.replace(tmp, target)


class BatchedClassifier:
    """The songs in flight classified together (ClassifyBatch): each fold gets one Predict per
    batch instead of one per song, which TF Serving runs as one batch. A batch goes when
    `max_batch` mels wait, or after waiting `linger` seconds for more. Songs finish featurizing one
    at a time, so without waiting the batches stayed at one song (measured: 165 Predicts for 172
    songs per fold); keep more songs in flight than `max_batch` (ingestion: twice) so the
    featurizer stays busy while a batch fills. One batch at a time: its five Predicts already
    keep the model server's workers busy.

    A batch the classifier refuses as a whole (INVALID_ARGUMENT) is classified song by song, so
    only the song at fault fails."""

    def __init__(self, upstream: Upstream, timeout: float, max_batch: int, linger: float = 1.0) -> None:
        self.upstream = upstream
        self.timeout = timeout
        self.max_batch = max_batch
        self.linger = linger
        self._waiting: list[tuple[object, asyncio.Future]] = []
        self._full = asyncio.Event()
        self._drainer: asyncio.Future | None = None

    async def classify(self, mel):
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((mel, future))
        if len(self._waiting) >= self.max_batch:
            self._full.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            if len(self._waiting) < self.max_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.linger)
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            if len(self._waiting) < self.max_batch:
                self._full.clear()
            try:
                results = await self._classify([mel for mel, _ in batch])
            except Exception as exc:  # every song of the batch gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):  # this song's own refusal, from a split batch
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _classify(self, mels: list) -> list:
        try:
            return await with_backoff(lambda: self.upstream.classify_batch(mels, self.timeout))
        except ServiceError as exc:
            if exc.code != grpc.StatusCode.INVALID_ARGUMENT or len(mels) == 1:
                raise
        return await asyncio.gather(*(with_backoff(lambda m=m: self.upstream.classify(m, self.timeout)) for m in mels),
                                    return_exceptions=True)


MAX_FILE_MB = MAX_UPLOAD_MB.default  # a larger file the featurizer would refuse anyway


def read_audio_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; a device (/dev/zero), a FIFO (which
    would block forever), a folder or a larger file is refused without reading past the limit."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise invalid(f"{path} is not a regular file; a catalog names audio files")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise exhausted(f"{path} is over {max_bytes / 2**20:.0f} MiB (--max-file-mb); a song is smaller")
    return data


class Analyser:
    """One file at a time through the upstream client; the store answers what it already knows.
    A busy or restarting service (RESOURCE_EXHAUSTED, UNAVAILABLE: many shards share it) is
    retried with exponential backoff and jitter before the song counts as failed. The mels of
    the songs in flight are classified in batches of up to half of them (BatchedClassifier).

    At most `uploads` files are sent to the featurizer at once: it refuses more than
    MAX_UPLOADS_PER_PEER from one address, and songs beyond that would only spin in backoff
    until one ran out of retries (seen on a slow machine: 16 in flight against 4)."""

    def __init__(
        self, upstream: Upstream, store: AnalysisStore, timeout: float, in_flight: int,
        uploads: int = UPLOADS_PER_PEER, max_bytes: int = MAX_FILE_MB * 2**20,
    ) -> None:
        self.upstream = upstream
        self.max_bytes = max_bytes
        self.store = store
        self.timeout = timeout
        self.in_flight = in_flight  # songs analysed at once (ingest.analyse_songs)
        self.classifier = BatchedClassifier(upstream, timeout, max(1, min(MAX_PREDICT_BATCH, in_flight // 2)))
        self.uploads = asyncio.Semaphore(max(1, uploads))
        self.analysed = 0  # files that went through the services (not the store)

    async def analyse(self, path: Path) -> tuple[str, Analysed]:
        """(content hash, analysis)."""
        data = await asyncio.to_thread(read_audio_file, path, self.max_bytes)
        sha = content_hash(data)
        known = self.store.get(sha)
        if known is not None:
            return sha, known
        async with self.uploads:
            features = await with_backoff(lambda: self.upstream.featurize(data, path.name, self.timeout))
        classified = await self.classifier.classify(features.mel)
        vote = from_classification(classified)
        tags = await asyncio.to_thread(read_tags, path)
        result = Analysed(
            list(features.features.values), vote.ranking[0], vote.share, vote.ranking, vote.probabilities,
            features.window.song_seconds, asdict(tags), list(classified.embedding.values),
        )
        self.store.put(sha, result, str(path))
        self.analysed += 1
        return sha, result
