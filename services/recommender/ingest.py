"""Ingest a catalog: featurize and classify every song, then publish a new index generation.

    python -m services.recommender.ingest --catalog var/demo/catalog.csv

Needs the featurizer and the classifier (FEATURIZER_ADDR, CLASSIFIER_ADDR), reached through the
same upstream client the recommender uses. Results are cached per file content and feature
schema, so a rebuild only analyses new or changed audio. Songs that cannot be analysed are
listed at the end (and fail the run with --strict); the rest are indexed. The new generation
is swapped in atomically: running servers pick it up by polling.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from services.common.config import env_str
from services.common.errors import ServiceError, describe
from services.recommender.build import build_generation
from services.recommender.catalog import COLUMNS, CatalogError, CatalogSong, check_date, read_catalog
from services.recommender.routing import from_classification
from services.recommender.store import SongRecord
from services.recommender.tags import FileTags, read_tags
from services.recommender.upstream import Upstream


@dataclass
class Analysed:
    vector: list[float]
    predicted: str
    share: float
    ranking: list[str]
    probabilities: dict[str, float]
    song_seconds: float = 0.0  # the decoded song's length
    tags: dict = field(default_factory=dict)  # FileTags as a dict


class Analyser:
    """Featurize + classify one file through the upstream client, with a content-addressed cache."""

    def __init__(self, upstream: Upstream, cache_dir: Path, timeout: float) -> None:
        self.upstream = upstream
        self.timeout = timeout
        self.cache_root = cache_dir
        self.schema_version = ""
        self.feature_names: list[str] = []
        self.feature_groups: dict[str, list[str]] = {}

    async def read_schema(self) -> None:
        schema = await self.upstream.feature_schema(self.timeout)
        self.schema_version = schema.schema_version
        self.feature_names = list(schema.names)
        self.feature_groups = {g.name: list(g.features) for g in schema.groups}
        (self.cache_root / self.schema_version).mkdir(parents=True, exist_ok=True)

    async def analyse(self, path: Path) -> Analysed:
        data = await asyncio.to_thread(path.read_bytes)
        cached = self.cache_root / self.schema_version / f"{hashlib.sha256(data).hexdigest()}.json"
        if cached.exists():
            entry = json.loads(cached.read_text())
            if "tags" in entry:  # entries from before tags (or calibration) are analysed again
                return Analysed(**{k: entry[k] for k in Analysed.__dataclass_fields__})
        features = await self.upstream.featurize(data, path.name, self.timeout)
        vote = from_classification(await self.upstream.classify(features.mel, self.timeout))
        tags = await asyncio.to_thread(read_tags, path)
        result = Analysed(
            list(features.features.values), vote.ranking[0], vote.share, vote.ranking, vote.probabilities,
            features.window.song_seconds, asdict(tags),
        )
        cached.write_text(json.dumps({**asdict(result), "file": str(path)}))
        return result


async def analyse_catalog(
    analyser: Analyser, songs: list[CatalogSong], workers: int
) -> tuple[dict[str, Analysed], dict[str, str]]:
    done: dict[str, Analysed] = {}
    failed: dict[str, str] = {}
    slots = asyncio.Semaphore(workers)

    async def one(song: CatalogSong) -> None:
        async with slots:
            try:
                done[song.id] = await analyser.analyse(song.audio_path)
            except (OSError, ServiceError) as exc:
                failed[song.id] = f"{song.audio_path}: {describe(exc)}"

    tasks = [asyncio.ensure_future(one(s)) for s in songs]
    for task in tqdm(asyncio.as_completed(tasks), total=len(tasks), desc="featurize + classify", unit="song"):
        await task
    return done, failed


def song_record(song: CatalogSong, analysed: Analysed) -> SongRecord:
    """The catalog's row, its empty fields filled from the file's tags (the title, at worst, from
    the file name), with the vote the classifier gave."""
    tags = FileTags(**analysed.tags)
    try:
        date = song.release_date or check_date(tags.date, str(song.audio_path))
    except CatalogError:
        date = ""
    return SongRecord(
        id=song.id,
        title=song.title or tags.title or song.audio_path.stem,
        artist=song.artist or tags.artist,
        release_date=date,
        genre=song.genre or analysed.predicted,
        predicted_genre=analysed.predicted,
        vote_share=analysed.share,
        ranking=analysed.ranking,
        probabilities=analysed.probabilities,
        genre_source="catalog" if song.genre else "classifier",
        album=song.album or tags.album,
        duration_seconds=round(analysed.song_seconds or tags.duration_seconds, 3),
        year=int(date[:4]) if date else 0,
    )


def records(songs: list[CatalogSong], analysed: dict[str, Analysed]) -> tuple[list[SongRecord], np.ndarray]:
    kept = [s for s in songs if s.id in analysed]
    rows = [song_record(s, analysed[s.id]) for s in kept]
    return rows, np.array([analysed[s.id].vector for s in kept], dtype=np.float32)


async def analyse_all(args: argparse.Namespace, songs: list[CatalogSong]) -> tuple[Analyser, dict, dict]:
    upstream = Upstream(args.featurizer, args.classifier)
    try:
        analyser = Analyser(upstream, args.index_dir / "analysis-cache", args.timeout)
        await analyser.read_schema()
        analysed, failed = await analyse_catalog(analyser, songs, args.workers)
        return analyser, analysed, failed
    finally:
        await upstream.close()


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
        analyser, analysed, failed = asyncio.run(analyse_all(args, songs))
    except ServiceError as exc:
        print(f"cannot start the ingestion: {exc.message}", file=sys.stderr)
        return 2
    for song_id, reason in sorted(failed.items()):
        print(f"not indexed: {song_id}: {reason}", file=sys.stderr)
    if not analysed or (failed and args.strict):
        print(f"{len(failed)} of {len(songs)} songs could not be analysed; no index published", file=sys.stderr)
        return 1
    rows, vectors = records(songs, analysed)
    generation = build_generation(
        args.index_dir, rows, vectors, analyser.schema_version, analyser.feature_names, analyser.feature_groups,
        source=str(args.catalog),
    )
    labelled = [r for r in rows if r.genre_source == "catalog"]
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
