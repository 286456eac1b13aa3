"""The recommender's gRPC handlers: validate, pick the genres to search, search, cache."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from musicrec.v1 import audio_pb2, classifier_pb2, recommender_pb2, recommender_pb2_grpc
from services.common.errors import invalid, not_found, unavailable
from services.common.upload import collect_upload
from services.recommender.cache import ResponseCache, cache_key
from services.recommender.live import LiveIndex
from services.recommender.search import DEFAULT_K, MAX_K, Hit, Query, recommend
from services.recommender.store import IndexSet, SongRecord
from services.recommender.upstream import Upstream, vote_ranking, vote_share

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


def parse_options(options: recommender_pb2.RecommendOptions) -> tuple[int, int]:
    """(k, max_per_artist) with the defaults applied, or INVALID_ARGUMENT."""
    if options.k < 0 or options.k > MAX_K:
        raise invalid(f"options.k must be between 1 and {MAX_K} (0 means {DEFAULT_K}); got {options.k}")
    if options.max_per_artist < 0:
        raise invalid(f"options.max_per_artist must be >= 0 (0 means no cap); got {options.max_per_artist}")
    return options.k or DEFAULT_K, options.max_per_artist


def with_runner_up(primary: str, ranking: list[str], share: float, threshold: float, index: IndexSet) -> list[str]:
    """The primary genre, plus the runner-up when the vote was not confident enough."""
    genres = [primary]
    if share < threshold:
        genres += [g for g in ranking if g != primary and g in index.indexes][:1]
    return genres


class RecommenderServicer(recommender_pb2_grpc.RecommenderServiceServicer):
    def __init__(
        self,
        live: LiveIndex,
        cache: ResponseCache,
        upstream: Upstream,
        max_upload_bytes: int,
        upstream_timeout: float,
        runner_up_below: float,
        ef_search: int,
    ) -> None:
        self._live = live
        self._cache = cache
        self._upstream = upstream
        self._max_upload = max_upload_bytes
        self._timeout = upstream_timeout
        self._runner_up_below = runner_up_below
        self._ef = ef_search

    def _song_row(self, index: IndexSet, song_id: str) -> int:
        if not song_id.strip():
            raise invalid("song_id is empty: pass a catalog id (GetSong looks one up)")
        row = index.by_id.get(song_id)
        if row is None:
            raise not_found(
                f"song {song_id!r} is not in the catalog (index generation {index.generation}, "
                f"{len(index.songs)} songs); check the id, or upload the audio with RecommendByAudio"
            )
        return row

    async def RecommendById(
        self, request: recommender_pb2.RecommendByIdRequest, context: grpc.aio.ServicerContext
    ) -> recommender_pb2.RecommendByIdResponse:
        k, cap = parse_options(request.options)
        index = self._live.get()
        row = self._song_row(index, request.song_id)
        key = cache_key(index.generation, "id", request.song_id, k, cap)
        cached = await self._cache.get(key)
        if cached is not None:
            try:
                response = recommender_pb2.RecommendByIdResponse.FromString(cached)
                response.cached = True
                return response
            except DecodeError:
                log.warning("unreadable cache entry ignored", extra={"key": key})
        song = index.songs[row]
        genres = with_runner_up(song.genre, song.ranking, song.vote_share, self._runner_up_below, index)
        query = Query(index.raw[row], genres, k, cap, exclude_id=song.id, fallback=index.genres)
        result = recommend(index, query, self._ef)
        response = recommender_pb2.RecommendByIdResponse(
            query=song_message(song),
            recommendations=hit_messages(result.hits),
            searched_genres=result.searched,
            index_generation=index.generation,
        )
        await self._cache.put(key, response.SerializeToString())
        return response

    async def RecommendByAudio(
        self,
        request_iterator: AsyncIterator[recommender_pb2.RecommendByAudioRequest],
        context: grpc.aio.ServicerContext,
    ) -> recommender_pb2.RecommendByAudioResponse:
        data, first = await collect_upload(request_iterator, self._max_upload)
        k, cap = parse_options(first.options)
        index = self._live.get()
        remaining = context.time_remaining()
        timeout = self._timeout if remaining is None else min(self._timeout, remaining)
        analysis = await self._upstream.featurize(data, first.filename, timeout)
        self._check_schema(index, analysis.features)
        vote = await self._upstream.classify(analysis.mel, timeout)
        genres = self._genres_for_vote(index, vote)
        raw = np.asarray(analysis.features.values, dtype=np.float32)
        result = recommend(index, Query(raw, genres, k, cap, fallback=index.genres), self._ef)
        return recommender_pb2.RecommendByAudioResponse(
            recommendations=hit_messages(result.hits),
            classification=vote,
            window=analysis.window,
            searched_genres=result.searched,
            index_generation=index.generation,
        )

    def _genres_for_vote(self, index: IndexSet, vote: classifier_pb2.ClassifyResponse) -> list[str]:
        ranking = vote_ranking(vote)
        indexed = [g for g in ranking if g in index.indexes]
        if not indexed:  # the catalog uses other genre names than the models: search it all
            return index.genres
        return with_runner_up(indexed[0], indexed, vote_share(vote), self._runner_up_below, index)

    def _check_schema(self, index: IndexSet, features: audio_pb2.FeatureVector) -> None:
        if features.schema_version != index.schema_version:
            raise unavailable(
                f"featurizer speaks feature schema {features.schema_version!r} but the index was built with "
                f"{index.schema_version!r}: re-run the ingestion with this featurizer"
            )

    async def RecommendByFeatures(
        self, request: recommender_pb2.RecommendByFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> recommender_pb2.RecommendByFeaturesResponse:
        k, cap = parse_options(request.options)
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
        if not all(math.isfinite(v) for v in features.values):
            raise invalid("features.values contains NaN or infinity")
        genre = request.genre.strip().lower()
        if genre and genre not in index.indexes:
            raise invalid(f"unknown genre {request.genre!r}; indexed genres: {', '.join(index.genres)}")
        genres = [genre] if genre else index.genres
        raw = np.asarray(features.values, dtype=np.float32)
        result = recommend(index, Query(raw, genres, k, cap), self._ef)
        return recommender_pb2.RecommendByFeaturesResponse(
            recommendations=hit_messages(result.hits),
            searched_genres=result.searched,
            index_generation=index.generation,
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
            genres=[
                recommender_pb2.GenreCount(genre=g, songs=index.indexes[g].get_current_count()) for g in index.genres
            ],
            cache_available=self._cache.available,
        )
