"""Results to response messages: songs, hits with their reasons, routing, shortfalls."""

from __future__ import annotations

from musicrec.v1 import recommender_pb2
from services.recommender.index.store import SongRecord
from services.recommender.search.recommend import Hit
from services.recommender.search.routing import Route
from services.recommender.search.rules import Shortfall

SONG_FIELDS = [field.name for field in recommender_pb2.Song.DESCRIPTOR.fields]  # each one a SongRecord field


def song_message(song: SongRecord) -> recommender_pb2.Song:
    """The proto Song, derived from the record by field name (a test keeps the names aligned)."""
    return recommender_pb2.Song(**{name: getattr(song, name) for name in SONG_FIELDS})


def hit_messages(hits: list[Hit], seed_labels: list[str] | None = None) -> list[recommender_pb2.Recommendation]:
    """Recommendations; with seed_labels (RecommendBySeeds), each says how close it is to every seed."""
    return [
        recommender_pb2.Recommendation(
            song=song_message(h.song),
            similarity=h.similarity,
            reason=h.reason,
            reasons=[
                recommender_pb2.ReasonPart(
                    group=r.group, gap=r.gap, typical_gap=r.typical_gap, contrast=r.contrast, detail=r.detail
                )
                for r in h.reasons
            ],
            seed_similarities=[
                recommender_pb2.SeedSimilarity(seed=label, similarity=s)
                for label, s in zip(seed_labels or [], h.seed_similarities, strict=False)
            ],
        )
        for h in hits
    ]


def routing_messages(routes: list[Route]) -> dict:
    """The response fields that say which genres were searched, and with what weight."""
    return {
        "searched_genres": [r.genre for r in routes],
        "routing": [recommender_pb2.GenreWeight(genre=r.genre, weight=r.weight, reason=r.reason) for r in routes],
    }


def shortfall_message(shortfall: Shortfall | None) -> dict:
    """{"shortfall": ...} when the answer is short, else nothing (the field stays unset)."""
    if shortfall is None:
        return {}
    return {
        "shortfall": recommender_pb2.Shortfall(
            requested=shortfall.requested,
            returned=shortfall.returned,
            passed_over=[recommender_pb2.RuleCount(rule=r, songs=n) for r, n in shortfall.passed_over.items()],
            message=shortfall.message,
        )
    }
