"""The ClassifyResponse of one spectrogram from its folds' predictions: the vote, each fold's
pick, and what was missing. The classifier's RPC and in-process batch analysis
(services/ingest/batch_analysis.py) both answer with it, so both vote alike."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from musicrec.v1 import classifier_pb2
from services.classifier.tfserving import Prediction
from services.classifier.voting import Ballot, tally
from services.common.errors import describe


def classify_response(
    labels: list[str], models: Sequence[str], results: Sequence[Prediction | BaseException]
) -> classifier_pb2.ClassifyResponse:
    """results[i]: fold models[i]'s Prediction, or why it gave none; at least one Prediction."""
    folds, ballots, missing = [], [], []
    for model, result in zip(models, results, strict=True):
        if isinstance(result, Prediction):
            ballots.append(Ballot(model, result.probabilities))
            folds.append(
                classifier_pb2.FoldPrediction(
                    model_name=model,
                    available=True,
                    genre=result.labels[int(np.argmax(result.probabilities))],
                    probabilities=result.probabilities.tolist(),
                    model_version=result.version,
                )
            )
        else:
            reason = describe(result)
            missing.append(f"{model} ({reason})")
            folds.append(classifier_pb2.FoldPrediction(model_name=model, available=False, error=reason))
    result = tally(labels, ballots)
    note = f"{result.votes}/{result.voters} folds voted {result.genre}"
    if missing:
        note += f"; unavailable: {', '.join(missing)}"
    return classifier_pb2.ClassifyResponse(
        genre=result.genre,
        votes=result.votes,
        folds_voted=result.voters,
        folds_total=len(models),
        folds=folds,
        ranking=[
            classifier_pb2.GenreScore(genre=g, votes=v, probability_sum=s, probability=p)
            for g, v, s, p in result.ranking
        ],
        labels=labels,
        degraded=bool(missing),
        note=note,
    )
