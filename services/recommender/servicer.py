"""The recommender's gRPC handlers: translate messages, ask routing and search, cache.

The rules live elsewhere: options and genre routing in routing.py, the picking rules in
search.py, the index in index.py/store.py, the upstream calls in upstream.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from musicrec.v1 import audio_pb2, recommender_pb2, recommender_pb2_grpc
from services.common.errors import invalid, not_found, quoted, unavailable
from services.common.upload import HeaderedUpload, UploadLimits, UploadSlots
from services.recommender.cache import ResponseCache, cache_key
from services.recommender.live import LiveIndex
from services.recommender.routing import Route, RoutingPolicy, Vote, from_classification, parse_options
from services.recommender.search import Hit, Query, recommend
from services.recommender.store import IndexSet, SongRecord
from services.recommender.upstream import Upstream

log = logging.getLogger("recommender")


def song_message(song: SongRecord) -> recommender_pb2.Song:
    return recommender_pb2.Song(
        id=song.id, title=song.title, artist=song.artist, release_date=song.release_date, genre=song.genre
    )


def hit_messages(hits: list[Hit]) -> list[recommender_pb2.Recommendation]:
    return [
        recommender_pb2.Recommendation(song=song_message(h.song), similarity=h.similarity, reason=h.reason)
        for h in hits
    ]


def routing_messages(routes: list[Route]) -> dict:
    """The response fields that say which genres were searched, and with what weight."""
    return {
        "searched_genres": [r.genre for r in routes],
        "routing": [recommender_pb2.GenreWeight(genre=r.genre, weight=r.weight, reason=r.reason) for r in routes],
    }


def stored_vote(song: SongRecord) -> Vote:
    return Vote(song.ranking or [song.genre], song.probabilities, song.vote_share)


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
    ) -> None:
        self._live = live
        self._cache = cache
        self._upstream = upstream
        self._upload_limits = upload_limits
        self._upload_slots = upload_slots
        self._timeout = upstream_timeout
        self._policy = policy
        self._ef = ef_search

    def _song_row(self, index: IndexSet, song_id: str) -> int:
        if not song_id.strip():
            raise invalid("song_id is empty: pass a catalog id (GetSong looks one up)")
        row = index.by_id.get(song_id)
        if row is None:
            raise not_found(
                f"song {quoted(song_id)} is not in the catalog (index generation {index.generation}, "
                f"{len(index.songs)} songs); check the id, or upload the audio with RecommendByAudio"
            )
        return row

    def _query(self, raw: np.ndarray, routes: list[Route], options, **extra) -> Query:
        return Query(raw, routes, options.k, options.max_per_artist, policy=self._policy, **extra)

    async def RecommendById(
        self, request: recommender_pb2.RecommendByIdRequest, context: grpc.aio.ServicerContext
    ) -> recommender_pb2.RecommendByIdResponse:
        options = parse_options(request.options)
        index = self._live.get()
        row = self._song_row(index, request.song_id)
        key = cache_key(index.generation, "id", request.song_id, options.k, options.max_per_artist)
        cached = await self._cache.get(key)
        if cached is not None:
            try:
                response = recommender_pb2.RecommendByIdResponse.FromString(cached)
                response.cached = True
                return response
            except DecodeError:
                log.warning("unreadable cache entry ignored", extra={"key": key})
        song = index.songs[row]
        routes = self._policy.for_song(song.genre, song.genre_source == "catalog", stored_vote(song), index.genres)
        query = self._query(index.raw[row], routes, options, exclude_id=song.id, fill=index.genres)
        result = recommend(index, query, self._ef)
        response = recommender_pb2.RecommendByIdResponse(
            query=song_message(song),
            recommendations=hit_messages(result.hits),
            index_generation=index.generation,
            **routing_messages(result.routes),
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
            remaining = context.time_remaining()
            timeout = self._timeout if remaining is None else min(self._timeout, remaining)
            analysis = await self._upstream.featurize_upload(upload, timeout)
        self._check_schema(index, analysis.features)
        vote = await self._upstream.classify(analysis.mel, timeout)
        routes = self._policy.for_vote(from_classification(vote), index.genres)
        raw = np.asarray(analysis.features.values, dtype=np.float32)
        result = recommend(index, self._query(raw, routes, options, fill=index.genres), self._ef)
        return recommender_pb2.RecommendByAudioResponse(
            recommendations=hit_messages(result.hits),
            classification=vote,
            window=analysis.window,
            index_generation=index.generation,
            **routing_messages(result.routes),
        )

    def _check_schema(self, index: IndexSet, features: audio_pb2.FeatureVector) -> None:
        if features.schema_version != index.schema_version:
            raise unavailable(
                f"featurizer speaks feature schema {features.schema_version!r} but the index was built with "
                f"{index.schema_version!r}: re-run the ingestion with this featurizer"
            )

    async def RecommendByFeatures(
        self, request: recommender_pb2.RecommendByFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> recommender_pb2.RecommendByFeaturesResponse:
        options = parse_options(request.options)
        index = self._live.get()
        features = request.features
        if features.schema_version != index.schema_version:
            raise invalid(
                f"features.schema_version {features.schema_version!r} does not match the index's "
                f"{index.schema_version!r} (FeaturizerService/GetFeatureSchema tells the layout)"
            )
        if features.names and list(features.names) != index.feature_names:
            raise invalid("features.names differ from the schema's names; send them in GetFeatureSchema order")
        expected = len(index.feature_names)
        if len(features.values) != expected:
            raise invalid(f"features.values has {len(features.values)} values; the schema has {expected}")
        raw = np.asarray(features.values, dtype=np.float32)
        if not np.all(np.isfinite(raw)):
            raise invalid("features.values holds NaN or infinity, or values beyond float32's range")
        genre = request.genre.strip().lower()
        if genre and genre not in index.indexes:
            raise invalid(f"unknown genre {quoted(request.genre)}; indexed genres: {', '.join(index.genres)}")
        routes = [Route(genre, 1.0, "requested")] if genre else [Route(g, 1.0, "all") for g in index.genres]
        result = recommend(index, self._query(raw, routes, options), self._ef)
        return recommender_pb2.RecommendByFeaturesResponse(
            recommendations=hit_messages(result.hits),
            index_generation=index.generation,
            **routing_messages(result.routes),
        )

    async def GetSong(
        self, request: recommender_pb2.GetSongRequest, context: grpc.aio.ServicerContext
    ) -> recommender_pb2.GetSongResponse:
        index = self._live.get()
        return recommender_pb2.GetSongResponse(song=song_message(index.songs[self._song_row(index, request.song_id)]))

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
