"""Majority vote of the fold models: the mode; ties broken by summed probability.

Each fold's probabilities are temperature-calibrated at export (training/calibrate.py), so
their mean over the voting folds is the ensemble's probability for each genre; the
recommender routes on it when the vote is not unanimous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ballot:
    model: str
    probabilities: np.ndarray | None  # None when the fold was unavailable


@dataclass(frozen=True)
class Tally:
    genre: str
    votes: int
    voters: int
    ranking: list[tuple[str, int, float, float]]  # (genre, votes, probability sum, mean probability), best first


def tally(labels: list[str], ballots: list[Ballot]) -> Tally:
    """Count each available fold's argmax; rank genres by (votes, probability sum)."""
    cast = [b.probabilities for b in ballots if b.probabilities is not None]
    if not cast:
        raise ValueError("no fold voted")
    votes = np.zeros(len(labels), dtype=int)
    sums = np.zeros(len(labels))
    for probs in cast:
        votes[int(np.argmax(probs))] += 1
        sums += probs
    order = sorted(range(len(labels)), key=lambda i: (-votes[i], -sums[i], i))
    ranking = [(labels[i], int(votes[i]), float(sums[i]), float(sums[i] / len(cast))) for i in order]
    return Tally(ranking[0][0], ranking[0][1], len(cast), ranking)
