"""Ingest a catalog: featurize and classify every song, then publish a new index generation.

    python -m services.recommender.ingest --catalog var/demo/catalog.csv

Needs the featurizer and the classifier (FEATURIZER_ADDR, CLASSIFIER_ADDR). Results are cached
per file content and feature schema, so a rebuild only analyses new or changed audio. Songs
that cannot be analysed are listed at the end (and fail the run with --strict); the rest are
indexed. The new generation is swapped in atomically: running servers pick it up by polling.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from tqdm import tqdm

from musicrec.v1 import classifier_pb2, classifier_pb2_grpc, featurizer_pb2, featurizer_pb2_grpc
from services.common.config import env_str
from services.common.errors import describe
from services.common.server import channel_options
from services.common.upload import split_chunks
from services.recommender.catalog import COLUMNS, CatalogSong, read_catalog
from services.recommender.store import SongRecord, build_generation
from services.recommender.upstream import vote_ranking, vote_share


@dataclass
class Analysed:
    vector: np.ndarray
    predicted: str
    vote_share: float
    ranking: list[str]


class Analyser:
    """Featurize + classify one file over gRPC, with a content-addressed cache on disk."""

    def __init__(self, featurizer: str, classifier: str, cache_dir: Path, timeout: float) -> None:
        self._fz_channel = grpc.insecure_channel(featurizer, options=channel_options())
        self._cl_channel = grpc.insecure_channel(classifier, options=channel_options())
        self.featurizer = featurizer_pb2_grpc.FeaturizerServiceStub(self._fz_channel)
        self.classifier = classifier_pb2_grpc.ClassifierServiceStub(self._cl_channel)
        self.timeout = timeout
        schema = self.featurizer.GetFeatureSchema(featurizer_pb2.GetFeatureSchemaRequest(), timeout=timeout)
        self.schema_version = schema.schema_version
        self.feature_names = list(schema.names)
        self.cache_dir = cache_dir / self.schema_version
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def analyse(self, path: Path) -> Analysed:
        data = path.read_bytes()
        cached = self.cache_dir / f"{hashlib.sha256(data).hexdigest()}.json"
        if cached.exists():
            entry = json.loads(cached.read_text())
            vector = np.array(entry["vector"], dtype=np.float32)
            return Analysed(vector, entry["predicted"], entry["share"], entry["ranking"])
        chunks = (featurizer_pb2.FeaturizeStreamRequest(chunk=c, filename=path.name) for c in split_chunks(data))
        features = self.featurizer.FeaturizeStream(chunks, timeout=self.timeout)
        vote = self.classifier.Classify(classifier_pb2.ClassifyRequest(mel=features.mel), timeout=self.timeout)
        result = Analysed(
            np.array(features.features.values, dtype=np.float32), vote.genre, vote_share(vote), vote_ranking(vote)
        )
        entry = {
            "vector": result.vector.tolist(),
            "predicted": result.predicted,
            "share": result.vote_share,
            "ranking": result.ranking,
            "file": str(path),
        }
        cached.write_text(json.dumps(entry))
        return result

    def close(self) -> None:
        self._fz_channel.close()
        self._cl_channel.close()


def analyse_catalog(
    analyser: Analyser, songs: list[CatalogSong], workers: int
) -> tuple[dict[str, Analysed], dict[str, str]]:
    done: dict[str, Analysed] = {}
    failed: dict[str, str] = {}
    with ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(analyser.analyse, s.audio_path): s for s in songs}
        for future in tqdm(as_completed(futures), total=len(futures), desc="featurize + classify", unit="song"):
            song = futures[future]
            try:
                done[song.id] = future.result()
            except (OSError, grpc.RpcError) as exc:
                failed[song.id] = f"{song.audio_path}: {describe(exc)}"
    return done, failed


def records(songs: list[CatalogSong], analysed: dict[str, Analysed]) -> tuple[list[SongRecord], np.ndarray]:
    kept = [s for s in songs if s.id in analysed]
    rows = [
        SongRecord(
            id=s.id,
            title=s.title,
            artist=s.artist,
            release_date=s.release_date,
            genre=s.genre or analysed[s.id].predicted,
            predicted_genre=analysed[s.id].predicted,
            vote_share=analysed[s.id].vote_share,
            ranking=analysed[s.id].ranking,
        )
        for s in kept
    ]
    return rows, np.stack([analysed[s.id].vector for s in kept])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True, help="CSV: " + ",".join(COLUMNS))
    parser.add_argument("--index-dir", type=Path, default=Path(env_str("INDEX_DIR", "var/index")))
    parser.add_argument("--featurizer", default=env_str("FEATURIZER_ADDR", "127.0.0.1:50051"))
    parser.add_argument("--classifier", default=env_str("CLASSIFIER_ADDR", "127.0.0.1:50052"))
    parser.add_argument("--workers", type=int, default=2, help="songs analysed concurrently")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per song and call")
    parser.add_argument("--strict", action="store_true", help="fail when any song cannot be analysed")
    args = parser.parse_args(argv)

    started = time.monotonic()
    songs = read_catalog(args.catalog)
    try:
        analyser = Analyser(args.featurizer, args.classifier, args.index_dir / "analysis-cache", args.timeout)
    except grpc.RpcError as exc:
        print(f"featurizer at {args.featurizer} unreachable ({describe(exc)}); start it first", file=sys.stderr)
        return 2
    try:
        analysed, failed = analyse_catalog(analyser, songs, args.workers)
    finally:
        analyser.close()
    for song_id, reason in sorted(failed.items()):
        print(f"not indexed: {song_id}: {reason}", file=sys.stderr)
    if not analysed or (failed and args.strict):
        print(f"{len(failed)} of {len(songs)} songs could not be analysed; no index published", file=sys.stderr)
        return 1
    rows, vectors = records(songs, analysed)
    generation = build_generation(
        args.index_dir, rows, vectors, analyser.schema_version, analyser.feature_names, source=str(args.catalog)
    )
    labelled_ids = {s.id for s in songs if s.genre}
    labelled = [r for r in rows if r.id in labelled_ids]
    agree = sum(r.predicted_genre == r.genre for r in labelled)
    genres = sorted({r.genre for r in rows})
    print(
        f"indexed {len(rows)} songs in {len(genres)} genres as generation {generation} "
        f"({args.index_dir}) in {time.monotonic() - started:.1f} s; "
        f"classifier agrees with the catalog genre on {agree}/{len(labelled)}; skipped {len(failed)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
