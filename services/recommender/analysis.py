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
import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from services.common.errors import ServiceError
from services.recommender.routing import from_classification
from services.recommender.tags import read_tags
from services.recommender.upstream import Upstream


@dataclass
class Analysed:
    vector: list[float]
    predicted: str
    share: float
    ranking: list[str]
    probabilities: dict[str, float]
    song_seconds: float = 0.0  # the decoded song's length
    tags: dict = field(default_factory=dict)  # FileTags as a dict


@dataclass(frozen=True)
class Setup:
    """What every analysis of one run shares: the featurizer's schema and the classifier's models."""

    schema_version: str
    feature_names: list[str]
    feature_groups: dict[str, list[str]]
    models_key: str  # digest of the fold models' names, versions and labels


async def read_setup(upstream: Upstream, timeout: float) -> Setup:
    schema = await upstream.feature_schema(timeout)
    models = await upstream.models(timeout)
    described = json.dumps([list(models.labels), list(models.model_names), list(models.model_versions)])
    return Setup(
        schema.schema_version,
        list(schema.names),
        {g.name: list(g.features) for g in schema.groups},
        hashlib.sha256(described.encode()).hexdigest()[:16],
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
        return Analysed(**{k: entry[k] for k in Analysed.__dataclass_fields__})

    def put(self, sha: str, analysed: Analysed, source: str) -> None:
        target = self.path(sha)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**asdict(analysed), "file": source}))
        os.replace(tmp, target)


RETRIED = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
ATTEMPTS = 6


class Analyser:
    """One file at a time through the upstream client; the store answers what it already knows.
    A busy or restarting service (RESOURCE_EXHAUSTED, UNAVAILABLE: many shards share it) is
    retried with exponential backoff and jitter before the song counts as failed."""

    def __init__(self, upstream: Upstream, store: AnalysisStore, timeout: float) -> None:
        self.upstream = upstream
        self.store = store
        self.timeout = timeout
        self.analysed = 0  # files that went through the services (not the store)

    async def _with_backoff(self, call):
        for attempt in range(ATTEMPTS):
            try:
                return await call()
            except ServiceError as exc:
                if exc.code not in RETRIED or attempt == ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.2 * 2**attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def analyse(self, path: Path) -> tuple[str, Analysed]:
        """(content hash, analysis)."""
        data = await asyncio.to_thread(path.read_bytes)
        sha = content_hash(data)
        known = self.store.get(sha)
        if known is not None:
            return sha, known
        features = await self._with_backoff(lambda: self.upstream.featurize(data, path.name, self.timeout))
        vote = from_classification(await self._with_backoff(lambda: self.upstream.classify(features.mel, self.timeout)))
        tags = await asyncio.to_thread(read_tags, path)
        result = Analysed(
            list(features.features.values), vote.ranking[0], vote.share, vote.ranking, vote.probabilities,
            features.window.song_seconds, asdict(tags),
        )
        self.store.put(sha, result, str(path))
        self.analysed += 1
        return sha, result
