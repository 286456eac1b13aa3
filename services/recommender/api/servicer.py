"""The recommender's gRPC handlers: translate messages, ask routing and search, cache.

The rules live elsewhere: options, routing and picking in ../search/, the index in ../index/,
the featurizer and classifier calls in ../upstream.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import nullcontext

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from musicrec.v1 import recommender_pb2, recommender_pb2_grpc
from services.common.errors import invalid, quoted
from services.common.upload import HeaderedUpload, UploadLimits, UploadSlots
from services.recommender.api import seeds as seed_requests
from services.recommender.api.cache import ResponseCache, by_id_key
from services.recommender.api.lookup import analysed_vector, check_featurizer_schema, feature_vector, song_row
from services.recommender.api.messages import hit_messages, routing_messages, shortfall_message, song_message
from services.recommender.index.live import LiveIndex
from services.recommender.index.store import IndexSet
from services.recommender.search.compute import Budget, Compute
from services.recommender.search.options import Options, parse_options
from services.recommender.search.path import DEFAULT_STEPS, MAX_STEPS, find_path
from services.recommender.search.recommend import Query, Result, recommend
from services.recommender.search.routing import Route, RoutingPolicy, from_classification, mix
from services.recommender.upstream import Upstream

log = logging.getLogger("recommender")


class RecommenderServicer(recommender_pb2_grpc.RecommenderServiceServicer):
    def __init__(
        self,
        live: LiveIndex,
        cache: ResponseCache,
        upstream: Upstream,
        upload_limits: UploadLimits,
        upload_slots: UploadSlots,
        upstream_timeout: float,
        policy: RoutingPolicy,
        ef_search: int,
        compute: Compute,
    ) -> None:
        self._live = live
        self._cache = cache
        self._upstream = upstream
        self._upload_limits = upload_limits
        self._upload_slots = upload_slots
        self._upstream_timeout = upstream_timeout
        self._policy = policy
        self._ef = ef_search
        self._compute = compute

    def _query(self, raw: np.ndarray, routes: list[Route], options: Options, exclude_id: str = "", **kw) -> Query:
        return Query.one(raw, routes, options, exclude_id, policy=self._policy, **kw)

    async def _recommend(
        self, index: IndexSet, query: Query, context: grpc.aio.ServicerContext, seed_labels: list[str] | None = None
    ) -> tuple[Result, list[recommender_pb2.Recommendation]]:
        """The search and its hits' messages, on a worker thread (compute.py): the event loop
        keeps answering meanwhile."""

        def work(budget: Budget) -> tuple[Result, list[recommender_pb2.Recommendation]]:
            result = recommend(index, query, self._ef, budget)
            return result, hit_messages(result.hits, seed_labels)

        return await self._compute.run(work, context.time_remaining())

    def _timeout(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        return self._upstream_timeout if remaining is None else min(self._upstream_timeout, remaining)

    async def RecommendById(
        self, request: recommender_pb2.RecommendByIdRequest, context: grpc.aio.ServicerContext
    ) -> recommender_pb2.RecommendByIdResponse:
        options = parse_options(request.options)
        index = self._live.get()
        row = song_row(index, request.song_id)
        key = by_id_key(index.generation, request.song_id, options)
        cached = await self._cache.get(key)
        if cached is not None:
            try:
                response = recommender_pb2.RecommendByIdResponse.FromString(cached)
                response.cached = True
                return response
            except DecodeError:
                log.warning("unreadable cache entry ignored", extra={"key": key})
        song = index.songs[row]
        routes = self._policy.for_song(
            song.genre, song.genre_source == "catalog", seed_requests.stored_vote(index, row), index.genres
        )
        query = self._query(index.raw_rows([row])[0], routes, options, exclude_id=song.id, fill=index.genres)
        result, hits = await self._recommend(index, query, context)
        response = recommender_pb2.RecommendByIdResponse(
            query=song_message(song),
            recommendations=hits,
            index_generation=index.generation,
            **routing_messages(result.routes),
            **shortfall_message(result.shortfall),
        )
        await self._cache.put(key, response.SerializeToString())
        return response

    async def RecommendByAudio(
        self,
        request_iterator: AsyncIterator[recommender_pb2.RecommendByAudioRequest],
        context: grpc.aio.ServicerContext,
    ) -> recommender_pb2.RecommendByAudioResponse:
        with self._upload_slots.hold(context):
            upload = HeaderedUpload(request_iterator, self._upload_limits)
            await upload.read_header()
            options = parse_options(upload.options)  # refused before any audio is read
            index = self._live.get()
            timeout = self._timeout(context)
            analysis = await self._upstream.featurize_upload(upload, timeout)
        check_featurizer_schema(index, analysis.features)
        vote = await self._upstream.classify(analysis.mel, timeout)
        routes = self._policy.for_vote(from_classification(vote), index.genres)
        raw = analysed_vector(index, analysis.features, vote)
        result, hits = await self._recommend(index, self._query(raw, routes, options, fill=index.genres), context)
        return recommender_pb2.RecommendByAudioResponse(
            recommendations=hits,
            classification=vote,
            window=analysis.window,
            index_generation=index.generation,
            **routing_messages(result.routes),
            **shortfall_message(result.shortfall),
        )

    async def RecommendByFeatures(
        self, request: recommender_pb2.RecommendByFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> recommender_pb2.RecommendByFeaturesResponse:
        options = parse_options(request.options)
        index = self._live.get()
        raw = feature_vector(index, request.features)
        genre = request.genre.strip().lower()
        if genre and genre not in index.indexes:
            raise invalid(f"unknown genre {quoted(request.genre)}; indexed genres: {', '.join(index.genres)}")
        routes = [Route(genre, 1.0, "requested")] if genre else [Route(g, 1.0, "all") for g in index.genres]
        result, hits = await self._recommend(index, self._query(raw, routes, options), context)
        return recommender_pb2.RecommendByFeaturesResponse(
            recommendations=hits,
            index_generation=index.generation,
            **routing_messages(result.routes),
            **shortfall_message(result.shortfall),
        )

    async def GetSong(
        self, request: recommender_pb2.GetSongRequest, context: grpc.aio.ServicerContext
    ) -> recommender_pb2.GetSongResponse:
        index = self._live.get()
        return recommender_pb2.GetSongResponse(song=song_message(index.songs[song_row(index, request.song_id)]))

    async def GetIndexInfo(
        self, request: recommender_pb2.GetIndexInfoRequest, context: grpc.aio.ServicerContext
    ) -> recommender_pb2.GetIndexInfoResponse:
        index = self._live.get()
        return recommender_pb2.GetIndexInfoResponse(
            generation=index.generation,
            created_at=index.manifest["created_at"],
            schema_version=index.schema_version,
            songs=len(index.songs),
            genres=[recommender_pb2.GenreCount(genre=g, songs=index.indexes[g].count) for g in index.genres],
            cache_available=self._cache.available,
        )

    async def RecommendBySeeds(
        self, request: recommender_pb2.RecommendBySeedsRequest, context: grpc.aio.ServicerContext
    ) -> recommender_pb2.RecommendBySeedsResponse:
        options = parse_options(request.options)
        index = self._live.get()
        uploads = any(seed.WhichOneof("source") == "audio" for seed in request.seeds)
        with self._upload_slots.hold(context) if uploads else nullcontext():
            resolved = await seed_requests.resolve(
                list(request.seeds), index, self._policy, self._upstream, self._timeout(context)
            )
        routes = mix([(r.seed.weight, r.routes) for r in resolved])
        query = Query([r.seed for r in resolved], routes, options, fill=index.genres, policy=self._policy)
        result, hits = await self._recommend(index, query, context, [r.seed.label for r in resolved])
        total = sum(r.seed.weight for r in resolved)
        return recommender_pb2.RecommendBySeedsResponse(
            recommendations=hits,
            seeds=[
                recommender_pb2.SeedSummary(
                    label=r.seed.label,
                    weight=r.seed.weight / total,
                    genre=r.genre,
                    **({"song": song_message(r.song)} if r.song else {}),
                )
                for r in resolved
            ],
            index_generation=index.generation,
            **routing_messages(result.routes),
            **shortfall_message(result.shortfall),
        )

    async def FindPath(
        self, request: recommender_pb2.FindPathRequest, context: grpc.aio.ServicerContext
    ) -> recommender_pb2.FindPathResponse:
        if not 0 <= request.count <= MAX_STEPS:
            raise invalid(f"count must be between 1 and {MAX_STEPS} (0 means {DEFAULT_STEPS}); got {request.count}")
        options = parse_options(request.options)
        index = self._live.get()
        start = song_row(index, request.from_song_id, "from_song_id")
        end = song_row(index, request.to_song_id, "to_song_id")
        if start == end:
            raise invalid("from_song_id and to_song_id name the same song: a path needs two different songs")
        count = request.count or DEFAULT_STEPS
        include_target = request.include_target if request.HasField("include_target") else True

        def work(budget: Budget) -> recommender_pb2.FindPathResponse:
            path = find_path(index, start, end, count, options, self._ef, budget, include_target)
            return recommender_pb2.FindPathResponse(
                start=song_message(index.songs[start]),
                end=song_message(index.songs[end]),
                steps=[
                    recommender_pb2.PathStep(
                        song=song_message(index.songs[step.row]),
                        similarity_to_previous=step.similarity_to_previous,
                        similarity_to_target=step.similarity_to_target,
                        genre_changed=step.genre_changed,
                        reason=step.reason,
                    )
                    for step in path.steps
                ],
                index_generation=index.generation,
                **shortfall_message(path.shortfall),
            )

        return await self._compute.run(work, context.time_remaining())
