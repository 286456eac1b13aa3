from __future__ import annotations

import numpy as np
import pytest

from services.classifier.voting import Ballot, tally

LABELS = ["blues", "jazz", "rock"]


def ballot(*p: float) -> Ballot:
    return Ballot("m", np.array(p))


def test_mode_wins() -> None:
    result = tally(LABELS, [ballot(0.6, 0.3, 0.1), ballot(0.5, 0.4, 0.1), ballot(0.1, 0.1, 0.8)])
    assert (result.genre, result.votes, result.voters) == ("blues", 2, 3)
    assert [r[0] for r in result.ranking] == ["blues", "rock", "jazz"]


def test_tie_broken_by_summed_probability() -> None:
    # two votes each for blues and rock; rock's probability mass is larger
    result = tally(
        LABELS,
        [ballot(0.5, 0.1, 0.4), ballot(0.4, 0.2, 0.39), ballot(0.1, 0.0, 0.9), ballot(0.3, 0.0, 0.7)],
    )
    assert result.genre == "rock" and result.votes == 2


def test_unavailable_folds_do_not_vote() -> None:
    result = tally(LABELS, [Ballot("a", None), ballot(0.1, 0.8, 0.1), Ballot("c", None)])
    assert (result.genre, result.voters) == ("jazz", 1)
    with pytest.raises(ValueError):
        tally(LABELS, [Ballot("a", None)])
