"""What a caller may ask of an answer (RecommendOptions): every option rule, checked once here.

The rules themselves are applied by search.py (picking) and path.py (paths)."""

from __future__ import annotations

from dataclasses import dataclass

from musicrec.v1 import recommender_pb2
from services.common.errors import invalid

MAX_K = 100
DEFAULT_K = 5
MAX_EXCLUSIONS = 1000  # ids + artists + albums in one request
MAX_WINDOW = 100


@dataclass(frozen=True)
class Options:
    k: int = DEFAULT_K
    max_per_artist: int = 0
    exclude_ids: frozenset[str] = frozenset()
    exclude_artists: frozenset[str] = frozenset()  # casefolded
    exclude_albums: frozenset[str] = frozenset()  # casefolded
    min_duration: float = 0.0
    max_duration: float = 0.0
    no_repeat_artist_within: int = 0
    no_repeat_album_within: int = 0
    min_similarity: float | None = None
    diversity: float = 0.0


def _folded(values) -> frozenset[str]:
    return frozenset(v.strip().casefold() for v in values if v.strip())


def parse_options(options: recommender_pb2.RecommendOptions) -> Options:
    """The request's options with the defaults applied, or INVALID_ARGUMENT naming the field."""
    if options.k < 0 or options.k > MAX_K:
        raise invalid(f"options.k must be between 1 and {MAX_K} (0 means {DEFAULT_K}); got {options.k}")
    if options.max_per_artist < 0:
        raise invalid(f"options.max_per_artist must be >= 0 (0 means no cap); got {options.max_per_artist}")
    excluded = len(options.exclude_ids) + len(options.exclude_artists) + len(options.exclude_albums)
    if excluded > MAX_EXCLUSIONS:
        raise invalid(f"options excludes {excluded} ids, artists and albums; at most {MAX_EXCLUSIONS} in one request")
    low, high = options.min_duration_seconds, options.max_duration_seconds
    if not (0.0 <= low < float("inf")) or not (0.0 <= high < float("inf")):
        raise invalid(f"options.min/max_duration_seconds must be finite and >= 0 (0 means no bound); got {low}, {high}")
    if high and low > high:
        raise invalid(f"options.min_duration_seconds ({low}) is above max_duration_seconds ({high})")
    for name in ("no_repeat_artist_within", "no_repeat_album_within"):
        window = getattr(options, name)
        if not 0 <= window <= MAX_WINDOW:
            raise invalid(f"options.{name} must be between 0 (off) and {MAX_WINDOW}; got {window}")
    floor = options.min_similarity if options.HasField("min_similarity") else None
    if floor is not None and not -1.0 <= floor <= 1.0:
        raise invalid(f"options.min_similarity must be a cosine similarity in [-1, 1]; got {floor}")
    if not 0.0 <= options.diversity <= 1.0:
        raise invalid(f"options.diversity must be in [0, 1] (0 ranks by similarity alone); got {options.diversity}")
    return Options(
        k=options.k or DEFAULT_K,
        max_per_artist=options.max_per_artist,
        exclude_ids=frozenset(i.strip() for i in options.exclude_ids if i.strip()),
        exclude_artists=_folded(options.exclude_artists),
        exclude_albums=_folded(options.exclude_albums),
        min_duration=low,
        max_duration=high,
        no_repeat_artist_within=options.no_repeat_artist_within,
        no_repeat_album_within=options.no_repeat_album_within,
        min_similarity=floor,
        diversity=options.diversity,
    )
