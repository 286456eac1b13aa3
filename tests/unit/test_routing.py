"""Genre routing and option parsing (services/recommender/search/routing.py), in process."""

from __future__ import annotations

import grpc
import pytest

from musicrec.v1 import classifier_pb2, recommender_pb2
from services.common.errors import ServiceError
from services.recommender.search.options import parse_options
from services.recommender.search.routing import RoutingPolicy, Vote, from_classification

INDEXED = ["blues", "jazz", "rock"]


def unsure_vote() -> Vote:
    """3 of 5 folds say rock; the calibrated probabilities are much less sure."""
    return Vote(["rock", "blues", "jazz", "metal"], {"rock": 0.45, "blues": 0.30, "jazz": 0.15, "metal": 0.10}, 0.6)


def genres(routes) -> list[str]:
    return [r.genre for r in routes]


def test_hard_vote_searches_the_winner_only() -> None:
    assert genres(RoutingPolicy("vote").for_vote(unsure_vote(), INDEXED)) == ["rock"]


def test_runner_up_rule_adds_the_next_indexed_genre_below_the_share() -> None:
    policy = RoutingPolicy("runner_up", runner_up_below=0.8)
    assert genres(policy.for_vote(unsure_vote(), INDEXED)) == ["rock", "blues"]
    sure = Vote(unsure_vote().ranking, unsure_vote().probabilities, 0.8)
    assert genres(policy.for_vote(sure, INDEXED)) == ["rock"]
    # a genre the catalog does not hold is skipped: the next indexed one is the runner-up
    assert genres(policy.for_vote(Vote(["rock", "metal", "jazz"], {}, 0.4), INDEXED)) == ["rock", "jazz"]


def test_probability_mass_searches_until_the_threshold_with_renormalised_weights() -> None:
    routes = RoutingPolicy("mass", mass=0.8).for_vote(unsure_vote(), INDEXED)
    # metal is not indexed: rock 0.45/0.9 = 0.5, blues 0.333 -> 0.833 >= 0.8 stops there
    assert genres(routes) == ["rock", "blues"]
    assert [round(r.weight, 3) for r in routes] == [0.5, 0.333]
    assert {r.reason for r in routes} == {"probability_mass"}
    assert genres(RoutingPolicy("mass", mass=0.5).for_vote(unsure_vote(), INDEXED)) == ["rock"]
    assert genres(RoutingPolicy("mass", mass=1.0).for_vote(unsure_vote(), INDEXED)) == ["rock", "blues", "jazz"]


def test_all_and_unknown_taxonomy_search_everything() -> None:
    assert genres(RoutingPolicy("all").for_vote(unsure_vote(), INDEXED)) == INDEXED
    other = Vote(["trot", "ballad"], {"trot": 0.9, "ballad": 0.1}, 1.0)
    routes = RoutingPolicy("mass").for_vote(other, INDEXED)
    assert genres(routes) == INDEXED and {r.reason for r in routes} == {"all"}


def test_catalog_songs_keep_their_catalog_genre() -> None:
    policy = RoutingPolicy("mass", mass=0.8)
    routes = policy.for_song("jazz", True, unsure_vote(), INDEXED)
    assert [(r.genre, r.reason) for r in routes] == [("jazz", "catalog_genre")]
    # a song the classifier labelled is routed from its stored vote, like an upload
    assert genres(policy.for_song("rock", False, unsure_vote(), INDEXED)) == ["rock", "blues"]
    old = RoutingPolicy("runner_up").for_song("jazz", True, unsure_vote(), INDEXED)
    assert genres(old) == ["jazz", "rock"]


def test_merge_score_prefers_the_likelier_genre_on_close_calls() -> None:
    policy = RoutingPolicy(prior_weight=0.1)
    assert policy.score(0.90, 0.5, 0.5) == pytest.approx(0.90)
    assert policy.score(0.95, 0.25, 0.5) < policy.score(0.90, 0.5, 0.5)  # 0.95 - 0.069
    assert policy.score(0.99, 0.25, 0.5) > policy.score(0.90, 0.5, 0.5)


def test_bad_settings_stop_the_service_with_the_variable_named() -> None:
    with pytest.raises(SystemExit, match="ROUTING="):
        RoutingPolicy("nearest")
    with pytest.raises(SystemExit, match="ROUTING_MASS"):
        RoutingPolicy("mass", mass=1.5)


def test_classification_carries_calibrated_probabilities() -> None:
    reply = classifier_pb2.ClassifyResponse(genre="rock", votes=3, folds_voted=5, ranking=[
        classifier_pb2.GenreScore(genre="rock", votes=3, probability_sum=2.0, probability=0.4),
        classifier_pb2.GenreScore(genre="jazz", votes=2, probability_sum=1.5, probability=0.3),
    ])
    vote = from_classification(reply)
    assert vote.ranking == ["rock", "jazz"] and vote.share == 0.6
    assert vote.probabilities == pytest.approx({"rock": 0.4, "jazz": 0.3})


def test_options_defaults_and_ranges() -> None:
    assert parse_options(recommender_pb2.RecommendOptions()).k == 5
    assert parse_options(recommender_pb2.RecommendOptions(k=100, max_per_artist=2)).max_per_artist == 2
    for bad, message in [({"k": 101}, "between 1 and 100"), ({"k": -1}, "between"), ({"max_per_artist": -1}, ">= 0")]:
        with pytest.raises(ServiceError, match=message) as caught:
            parse_options(recommender_pb2.RecommendOptions(**bad))
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
