"""RecommendBySeeds' seeds, understood: each becomes a feature vector, a weight, a label and the
genres it routes to (catalog songs as RecommendById does, uploads as RecommendByAudio does)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import numpy as np

from musicrec.v1 import recommender_pb2
from services.common.errors import ServiceError, invalid, quoted
from services.common.upload import UPLOADS_PER_PEER
from services.recommender.api.lookup import analysed_vector, check_featurizer_schema, feature_vector, song_row
from services.recommender.index.store import IndexSet, SongRecord
from services.recommender.search.recommend import Seed
from services.recommender.search.routing import Route, RoutingPolicy, Vote, from_classification
from services.recommender.upstream import Upstream, with_backoff

MAX_SEEDS = 20
SEED_UPLOADS_AT_ONCE = UPLOADS_PER_PEER  # one request's uploaded seeds go to the featurizer this many at a time


@dataclass
class Resolved:
    seed: Seed
    routes: list[Route]
    genre: str
    song: SongRecord | None = None


def stored_vote(index: IndexSet, row: int) -> Vote:
    """The vote the classifier gave a catalog song at ingestion."""
    ranking, probabilities = index.songs.vote(row)
    return Vote(ranking or [index.songs.genre(row)], probabilities, float(index.songs.c["vote_share"][row]))


def _weight(seed: recommender_pb2.Seed, field: str) -> float:
    if not math.isfinite(seed.weight) or seed.weight < 0:
        raise invalid(f"{field}.weight must be a finite number >= 0 (0 means 1); got {seed.weight}")
    return seed.weight or 1.0


def _labels(seeds: list[recommender_pb2.Seed]) -> list[str]:
    """The caller's label, else the song id, the file name or seed-N; made unique with #2, #3..."""
    labels, seen = [], {}
    for n, seed in enumerate(seeds, start=1):
        source = seed.WhichOneof("source")
        base = seed.label.strip()[:200] or (
            seed.song_id if source == "song_id" else (seed.audio.filename if source == "audio" else "")
        )
        base = base or f"seed-{n}"
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return labels


async def resolve(
    seeds: list[recommender_pb2.Seed],
    index: IndexSet,
    policy: RoutingPolicy,
    upstream: Upstream,
    timeout: float,
) -> list[Resolved]:
    """Every seed, or the first problem as INVALID_ARGUMENT / NOT_FOUND naming the seed."""
    if not seeds:
        raise invalid("seeds is empty: give 1 to 20 seeds (song_id, audio or features)")
    if len(seeds) > MAX_SEEDS:
        raise invalid(f"{len(seeds)} seeds given; at most {MAX_SEEDS}")
    labels = _labels(seeds)
    jobs = []
    uploads = asyncio.Semaphore(SEED_UPLOADS_AT_ONCE)
    for n, (seed, label) in enumerate(zip(seeds, labels, strict=True)):
        field = f"seeds[{n}]"
        weight = _weight(seed, field)
        source = seed.WhichOneof("source")
        if source == "song_id":
            row = song_row(index, seed.song_id, f"{field}.song_id")
            song = index.songs[row]
            routes = policy.for_song(song.genre, song.genre_source == "catalog", stored_vote(index, row), index.genres)
            seed = Seed(index.raw_rows([row])[0], weight, label, song.id)
            jobs.append(_ready(Resolved(seed, routes, song.genre, song)))
        elif source == "features":
            raw = feature_vector(index, seed.features, f"{field}.features")
            routes = [Route(g, 1.0, "all") for g in index.genres]
            jobs.append(_ready(Resolved(Seed(raw, weight, label), routes, "")))
        elif source == "audio":
            if not seed.audio.data:
                raise invalid(f"{field}.audio.data is empty: send the file's bytes")
            jobs.append(_named(field, label, _analyse(seed.audio, Seed(np.zeros(0), weight, label), index, policy,
                                                      upstream, timeout, uploads)))
        else:
            raise invalid(f"{field} names no source: set song_id, audio or features")
    # the first failure cancels the other seeds' uploads (no work goes on after the reply)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(job) for job in jobs]
    except BaseExceptionGroup as failed:
        first = next((e for e in failed.exceptions if isinstance(e, ServiceError)), None)
        if first is None:
            raise
        raise first from None
    return [task.result() for task in tasks]


async def _ready(resolved: Resolved) -> Resolved:
    return resolved


async def _named(field: str, label: str, job) -> Resolved:
    """The seed's own failure, its status kept, its message naming the seed."""
    try:
        return await job
    except ServiceError as exc:
        raise ServiceError(exc.code, f"{field} ({quoted(label)}): {exc.message}") from None


async def _analyse(
    audio: recommender_pb2.AudioFile, seed: Seed, index: IndexSet, policy: RoutingPolicy, upstream: Upstream,
    timeout: float, uploads: asyncio.Semaphore,
) -> Resolved:
    async with uploads:  # within the featurizer's uploads per address; busy: backed off, then retried
        analysis = await with_backoff(lambda: upstream.featurize(audio.data, audio.filename, timeout))
    check_featurizer_schema(index, analysis.features)
    vote = await upstream.classify(analysis.mel, timeout)
    seed.raw = analysed_vector(index, analysis.features, vote)
    return Resolved(seed, policy.for_vote(from_classification(vote), index.genres), vote.genre)
