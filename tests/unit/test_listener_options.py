"""Seeds, paths, exclusions, windows, diversity, shortfalls and contrast reasons, in process on
synthetic vectors (the same calls on real clips are in tests/integration/test_listener_real.py)."""

from __future__ import annotations

import itertools

import grpc
import numpy as np
import pytest

from musicrec.v1 import recommender_pb2
from services.common.errors import ServiceError
from services.recommender.index.graph import normalise_rows
from services.recommender.index.store import IndexSet, SongRecord, load_current
from services.recommender.search.options import MAX_EXCLUSIONS, Options, parse_options
from services.recommender.search.path import find_path
from services.recommender.search.reasons import sentences
from services.recommender.search.recommend import Query, Seed, recommend
from services.recommender.search.routing import Route, mix
from tests.unit.test_recommender_index import build, clustered

GENRES = ("rock", "jazz", "blues")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> IndexSet:
    """90 songs in 3 genres; 6 artists, 2 albums each; lengths 60-330 s, every 10th unknown."""
    songs = [
        SongRecord(
            f"{g}-{i}", f"{g} song {i}", f"artist {i % 6}", "", g, album=f"album {i % 6}-{i % 2}",
            duration_seconds=0.0 if i % 10 == 9 else 60.0 + 10 * i,
        )
        for g in GENRES
        for i in range(30)
    ]
    folder = tmp_path_factory.mktemp("index")
    build(folder, songs, clustered(len(songs), clusters=5, seed=3))
    return load_current(folder)


def ask(index: IndexSet, row: int, genres=("rock",), fill=(), **options):
    parsed = parse_options(recommender_pb2.RecommendOptions(**options))  # as the servicer does
    query = Query.one(index.raw_rows([row])[0], [Route(g, 1.0, "requested") for g in genres], parsed,
                      index.songs[row].id, fill=list(fill))
    return recommend(index, query)


def ids(result) -> list[str]:
    return [h.song.id for h in result.hits]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"diversity": 1.5}, "diversity"),
        ({"diversity": float("nan")}, "diversity"),
        ({"min_similarity": 1.5}, "min_similarity"),
        ({"min_duration_seconds": 300, "max_duration_seconds": 100}, "above max_duration_seconds"),
        ({"min_duration_seconds": -1}, "duration"),
        ({"max_duration_seconds": float("inf")}, "duration"),
        ({"no_repeat_artist_within": 101}, "no_repeat_artist_within"),
        ({"no_repeat_album_within": -1}, "no_repeat_album_within"),
        ({"exclude_ids": [str(i) for i in range(MAX_EXCLUSIONS + 1)]}, "at most"),
    ],
)
def test_bad_options_are_refused_with_the_field_named(fields: dict, message: str) -> None:
    with pytest.raises(ServiceError) as caught:
        parse_options(recommender_pb2.RecommendOptions(**fields))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and message in caught.value.message


def test_options_defaults_and_presence() -> None:
    parsed = parse_options(recommender_pb2.RecommendOptions(exclude_artists=[" Artist 1 ", ""]))
    assert parsed.k == 5 and parsed.min_similarity is None and parsed.exclude_artists == {"artist 1"}
    assert parse_options(recommender_pb2.RecommendOptions(min_similarity=0.0)).min_similarity == 0.0  # 0 is a floor


def test_exclusions_are_refilled_to_k(index: IndexSet) -> None:
    plain = ask(index, 0, k=5)
    assert plain.shortfall is None and len(plain.hits) == 5
    top = plain.hits[0].song
    result = ask(index, 0, k=5, exclude_ids=[top.id], exclude_artists=["ARTIST 2"], exclude_albums=["album 3-1"])
    assert len(result.hits) == 5 and result.shortfall is None
    for hit in result.hits:
        assert hit.song.id != top.id and hit.song.artist != "artist 2" and hit.song.album != "album 3-1"
    # what the exclusions removed was replaced by the next nearest, in order
    assert [h.similarity for h in result.hits] == sorted((h.similarity for h in result.hits), reverse=True)


def test_duration_bounds_leave_out_unknown_lengths(index: IndexSet) -> None:
    result = ask(index, 0, k=8, min_duration_seconds=100, max_duration_seconds=250)
    assert len(result.hits) == 8
    assert all(100 <= h.song.duration_seconds <= 250 for h in result.hits)


def test_no_repeat_windows_hold_across_consecutive_results(index: IndexSet) -> None:
    def repeats(values: list[str], window: int) -> bool:
        return any(values[n] in values[max(0, n - window):n] for n in range(len(values)))

    plain = ask(index, 0, k=12).hits
    assert repeats([h.song.artist for h in plain], 5) and repeats([h.song.album for h in plain], 5)  # unruled
    by_artist = ask(index, 0, k=12, no_repeat_artist_within=5).hits
    by_album = ask(index, 0, k=12, no_repeat_album_within=5).hits
    assert len(by_artist) == len(by_album) == 12
    assert not repeats([h.song.artist for h in by_artist], 5)
    assert not repeats([h.song.album for h in by_album], 5)
    artists = [h.song.artist for h in by_artist]
    assert len(set(artists)) < len(artists)  # a window, not a ban: artists come back later


def test_a_short_answer_says_why(index: IndexSet) -> None:
    result = ask(index, 0, k=10, exclude_artists=[f"artist {i}" for i in range(1, 6)])
    # artist 0 has 5 rock songs, one of them the query
    assert len(result.hits) == 4 and result.shortfall is not None
    assert result.shortfall.passed_over["exclude_artists"] == 25 and result.shortfall.passed_over["seed"] == 1
    assert "4 of 10 returned: all 30 songs of the searched genres were considered" in result.shortfall.message
    filled = ask(index, 0, k=10, fill=GENRES, exclude_artists=[f"artist {i}" for i in range(1, 6)])
    assert len(filled.hits) == 10 and filled.shortfall is None  # the fill genres qualify
    floor = ask(index, 0, k=5, min_similarity=0.999)
    assert floor.hits == [] and floor.shortfall.passed_over["min_similarity"] == 29


def test_diversity_trades_similarity_for_spread(index: IndexSet) -> None:
    plain = ask(index, 0, genres=GENRES, k=8)
    assert ids(ask(index, 0, genres=GENRES, k=8, diversity=0.0)) == ids(plain)
    diverse = ask(index, 0, genres=GENRES, k=8, diversity=0.7)

    def spread(result) -> float:
        unit = normalise_rows(index.z_rows([index.row_of(i) for i in ids(result)]))
        return float(np.mean([1 - unit[a] @ unit[b] for a, b in itertools.combinations(range(len(unit)), 2)]))

    assert spread(diverse) > spread(plain) + 0.05
    assert np.mean([h.similarity for h in diverse.hits]) < np.mean([h.similarity for h in plain.hits])
    assert diverse.hits[0].song.id == plain.hits[0].song.id  # the nearest still leads


def test_several_seeds_never_come_back_and_weights_pull(index: IndexSet) -> None:
    rows = [0, 31]  # a rock and a jazz song
    seeds = [Seed(index.raw_rows([r])[0], 1.0, index.songs[r].id, index.songs[r].id) for r in rows]
    routes = [Route(g, 1.0, "seeds") for g in GENRES]
    both = recommend(index, Query(seeds, routes, Options(k=10)))
    assert not {index.songs[r].id for r in rows} & set(ids(both))
    for hit in both.hits:
        assert len(hit.seed_similarities) == 2
        assert hit.similarity == pytest.approx(np.mean(hit.seed_similarities), abs=1e-5)
    seeds[0].weight = 9.0
    rock_heavy = recommend(index, Query(seeds, routes, Options(k=10)))
    assert np.mean([h.seed_similarities[0] for h in rock_heavy.hits]) > np.mean(
        [h.seed_similarities[0] for h in both.hits]
    )


def test_mixed_routes_weigh_each_seed_once() -> None:
    mixed = mix([(3.0, [Route("rock", 1.0, "catalog_genre")]),
                 (1.0, [Route("jazz", 0.6, "probability_mass"), Route("blues", 0.2, "probability_mass")])])
    assert [r.genre for r in mixed] == ["rock", "jazz", "blues"]
    assert [r.weight for r in mixed] == pytest.approx([0.75, 0.1875, 0.0625])


def test_a_path_moves_toward_the_target_and_arrives(index: IndexSet) -> None:
    start, end = 0, 65
    assert index.songs[start].genre != index.songs[end].genre  # across genres
    arriving = find_path(index, start, end, 6, Options())
    assert [s.row for s in arriving.steps][-1] == end and len(arriving.steps) == 7
    assert arriving.steps[-1].similarity_to_target == pytest.approx(1.0, abs=1e-5)
    assert [s.similarity_to_target for s in arriving.steps] == sorted(s.similarity_to_target for s in arriving.steps)
    path = find_path(index, start, end, 6, Options(), include_target=False)
    assert [s.row for s in path.steps] == [s.row for s in arriving.steps[:-1]]
    rows = [s.row for s in path.steps]
    assert len(rows) == 6 and path.shortfall is None
    assert len(set(rows)) == 6 and start not in rows and end not in rows
    to_target = [s.similarity_to_target for s in path.steps]
    assert to_target == sorted(to_target) and len(set(to_target)) == 6  # strictly closer every step
    unit = index.unit_rows(np.arange(len(index.songs)))
    assert to_target[0] > float(unit[start] @ unit[end])
    previous = [start, *rows[:-1]]
    for step, before in zip(path.steps, previous, strict=True):
        assert step.similarity_to_previous == pytest.approx(float(unit[step.row] @ unit[before]), abs=1e-5)
        assert step.genre_changed == (index.songs[step.row].genre != index.songs[before].genre)
        assert step.reason.startswith(("unusually close in ", "closest for its genre in "))
    # exclusions hold along the path, and an impossible one says why it stopped
    banned = index.songs[rows[0]].artist
    assert banned not in {index.songs[s.row].artist for s in find_path(index, start, end, 6,
                                                                       Options(exclude_artists=frozenset([banned]))).steps}
    stuck = find_path(index, start, end, 6, Options(min_similarity=0.999))
    assert [s.row for s in stuck.steps] == [end] and stuck.shortfall.message.startswith("0 of 6 returned")


def test_reasons_are_contrasts_and_differ_within_an_answer(index: IndexSet) -> None:
    result = ask(index, 0, genres=GENRES, k=5)
    for hit in result.hits:
        contrasts = [r.contrast for r in hit.reasons]
        assert contrasts == sorted(contrasts) and len(hit.reasons) == len(index.groups)
        for r in hit.reasons:
            assert r.contrast == pytest.approx(r.gap / r.typical_gap, rel=1e-5)
            assert r.typical_gap == pytest.approx(index.typical_gaps[hit.song.genre][r.group], rel=1e-6)
    named = [h.reason for h in result.hits]
    assert len(set(named)) == 5
    # the same hit alone would name its own two best groups; in the answer a repeat must earn its place
    lone = sentences([result.hits[1].reasons])[0]
    best_two = [r.group for r in result.hits[1].reasons[:2]]
    assert all(g in lone for g in best_two)


def test_typical_gaps_are_written_by_the_build(index: IndexSet) -> None:
    assert set(index.manifest["typical_gaps"]) == set(GENRES)
    assert set(index.manifest["typical_gaps"]["rock"]) == set(index.groups)


def test_equivalent_options_share_one_cache_entry() -> None:
    """The cache key is a digest of the parsed options: the default k written out, exclusions in
    another order or case are one answer, so one entry; any option that changes it, another."""
    from services.recommender.api.cache import by_id_key

    def key(**fields) -> str:
        return by_id_key(7, "jazz-3", parse_options(recommender_pb2.RecommendOptions(**fields)))

    same = key(exclude_ids=["a", "b"], exclude_artists=["Queen"])
    assert key(k=5, exclude_ids=["b", "a", "a"], exclude_artists=["QUEEN"]) == same
    assert key(k=6, exclude_ids=["a", "b"], exclude_artists=["Queen"]) != same
    assert key(exclude_ids=["a"], exclude_artists=["Queen"]) != same
    assert by_id_key(8, "jazz-3", parse_options(recommender_pb2.RecommendOptions())) != key()
