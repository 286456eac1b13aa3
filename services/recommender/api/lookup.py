"""What a request names, found in the served index or refused with a status a caller can act on:
a catalog song by id, a feature vector checked against the index's schema, an upload's analysis
as a vector of the index's space (space.py)."""

from __future__ import annotations

import numpy as np

from musicrec.v1 import audio_pb2, classifier_pb2
from services.common.errors import invalid, not_found, quoted, unavailable
from services.recommender.index.space import joined
from services.recommender.index.store import IndexSet


def song_row(index: IndexSet, song_id: str, field: str = "song_id") -> int:
    if not song_id.strip():
        raise invalid(f"{field} is empty: pass a catalog id (GetSong looks one up)")
    row = index.row_of(song_id)
    if row is None:
        raise not_found(
            f"{field} {quoted(song_id)} is not in the catalog (index generation {index.generation}, "
            f"{len(index.songs)} songs); check the id, or upload the audio"
        )
    return row


def feature_vector(index: IndexSet, features: audio_pb2.FeatureVector, field: str = "features") -> np.ndarray:
    """A caller's feature vector as float32, or INVALID_ARGUMENT saying what does not fit."""
    if features.schema_version != index.schema_version:
        raise invalid(
            f"{field}.schema_version {features.schema_version!r} does not match the index's "
            f"{index.schema_version!r} (FeaturizerService/GetFeatureSchema tells the layout)"
        )
    if features.names and list(features.names) != index.feature_names:
        raise invalid(f"{field}.names differ from the schema's names; send them in GetFeatureSchema order")
    expected = len(index.feature_names)
    if len(features.values) != expected:
        raise invalid(f"{field}.values has {len(features.values)} values; the schema has {expected}")
    raw = np.asarray(features.values, dtype=np.float32)
    if not np.all(np.isfinite(raw)):
        raise invalid(f"{field}.values holds NaN or infinity, or values beyond float32's range")
    return joined(raw, None, index.mean)


def analysed_vector(
    index: IndexSet, features: audio_pb2.FeatureVector, vote: classifier_pb2.ClassifyResponse
) -> np.ndarray:
    """An upload's vector in the index's space: the featurizer's features and the ear's embedding,
    which must come from the featurizer schema and the ear the index was built with."""
    check_featurizer_schema(index, features)
    built_with = index.manifest.get("embedding")
    if built_with:
        given = vote.embedding
        if (given.model_name, given.model_version, len(given.values)) != (
            built_with["model"], built_with["version"], built_with["dim"]
        ):
            raise unavailable(
                f"the classifier's ear is {given.model_name!r} version {given.model_version} "
                f"({len(given.values)} values) but the index was built with {built_with['model']!r} version "
                f"{built_with['version']} ({built_with['dim']}): re-run the ingestion with these models"
            )
    return joined(np.asarray(features.values, dtype=np.float32), np.asarray(vote.embedding.values, np.float32),
                  index.mean)


def check_featurizer_schema(index: IndexSet, features: audio_pb2.FeatureVector) -> None:
    """The featurizer's vectors must be comparable with the index's (else re-ingest)."""
    if features.schema_version != index.schema_version:
        raise unavailable(
            f"featurizer speaks feature schema {features.schema_version!r} but the index was built with "
            f"{index.schema_version!r}: re-run the ingestion with this featurizer"
        )
