"""Ingest a catalog: featurize and classify every song, then publish a new index generation.

    python -m services.recommender.catalog.ingest --catalog var/demo/catalog.csv          # both steps
    python -m services.recommender.catalog.ingest --catalog C --only analyse --shard K --shards N
    python -m services.recommender.catalog.ingest --catalog C --only publish --shards N

Needs the featurizer and the classifier (FEATURIZER_ADDR, CLASSIFIER_ADDR), reached through the
same upstream client the recommender uses. Analyses are kept by file content, feature schema
and model versions (analysis.py), so a rebuild only analyses new or changed audio, and songs
no longer in the catalog leave the index. `--only analyse` runs one shard of a Kubernetes
Indexed Job (K and N default to JOB_COMPLETION_INDEX and JOB_COMPLETIONS); `--only publish`
merges the shards' reports into one generation (shards.py). Songs that cannot be analysed are
listed at the end (and fail the run with --strict); the rest are indexed. The new generation
is swapped in atomically: running servers pick it up by polling.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from services.common.errors import ServiceError, describe
from services.common.upload import UPLOADS_PER_PEER
from services.recommender import settings
from services.recommender.catalog.analysis import MAX_FILE_MB, Analysed, Analyser, AnalysisStore, Setup, read_setup
from services.recommender.catalog.build import build_generation
from services.recommender.catalog.reader import COLUMNS, CatalogError, CatalogSong, check_date, read_catalog
from services.recommender.catalog.shards import ShardReport, read_reports, shard_folder, shard_songs
from services.recommender.catalog.tags import FileTags
from services.recommender.index.store import SongRecord
from services.recommender.upstream import Upstream


async def analyse_songs(
    analyser: Analyser, songs: list[CatalogSong], label: str
) -> tuple[dict[str, str], dict[str, str]]:
    """({song id: content hash} of the analysed songs, {song id: why} of the rest), with the
    analyser's songs in flight at once (its batches are sized by them)."""
    hashes: dict[str, str] = {}
    failed: dict[str, str] = {}
    slots = asyncio.Semaphore(analyser.in_flight)

    async def one(song: CatalogSong) -> None:
        async with slots:
            try:
                hashes[song.id], _ = await analyser.analyse(song.audio_path)
            except (OSError, ServiceError) as exc:
                failed[song.id] = f"{song.audio_path}: {describe(exc)}"

    tasks = [asyncio.ensure_future(one(s)) for s in songs]
    for task in tqdm(asyncio.as_completed(tasks), total=len(tasks), desc=label, unit="song"):
        await task
    return hashes, failed


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


async def analyse_shard(args: argparse.Namespace, songs: list[CatalogSong]) -> tuple[ShardReport, int]:
    """Analyse this shard's songs; (its report, how many went through the services)."""
    upstream = Upstream(args.featurizer, args.classifier)
    try:
        setup = await read_setup(upstream, args.timeout)
        store = AnalysisStore(args.index_dir / "analysis-cache", setup)
        analyser = Analyser(upstream, store, args.timeout, args.workers, args.uploads, args.max_file_mb * 2**20)
        mine = shard_songs(songs, args.shard, args.shards)
        label = "featurize + classify" + (f" (shard {args.shard} of {args.shards})" if args.shards > 1 else "")
        hashes, failed = await analyse_songs(analyser, mine, label)
        return ShardReport(args.shard, args.shards, hashes, failed, setup), analyser.analysed
    finally:
        await upstream.close()


def publish(args: argparse.Namespace, songs: list[CatalogSong], reports: list[ShardReport]) -> tuple[int, list]:
    """Merge the shards' analyses in catalog order into one generation; (generation, records)."""
    setup: Setup = reports[0].setup
    store = AnalysisStore(args.index_dir / "analysis-cache", setup)
    hashes = {song_id: sha for r in reports for song_id, sha in r.hashes.items()}
    kept = [s for s in songs if s.id in hashes]
    analyses = [store.get(hashes[s.id]) for s in kept]
    lost = [s.id for s, a in zip(kept, analyses, strict=True) if a is None]
    if lost:
        raise ValueError(f"{len(lost)} analyses named by the shards are missing from the store (e.g. {lost[0]})")
    rows = [song_record(s, a) for s, a in zip(kept, analyses, strict=True)]
    dims = {len(a.embedding) for a in analyses}
    if len(dims) != 1:
        raise ValueError(f"the analyses carry embeddings of {sorted(dims)} values; one ear per index")
    vectors = np.array([a.vector + a.embedding for a in analyses], dtype=np.float32)
    generation = build_generation(
        args.index_dir, rows, vectors, setup.schema_version, setup.feature_names, setup.feature_groups,
        embedding=setup.embedding_space(dims.pop()), source=str(args.catalog),
    )
    return generation, rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True, help="CSV: " + ",".join(COLUMNS) + "[,album]")
    parser.add_argument("--index-dir", type=Path, default=Path(settings.INDEX_DIR.as_str()))
    parser.add_argument("--featurizer", default=settings.FEATURIZER_ADDR.as_str())
    parser.add_argument("--classifier", default=settings.CLASSIFIER_ADDR.as_str())
    parser.add_argument("--workers", type=int, default=16,
                        help="songs in flight; their mels are classified in batches of up to half of them (at most 8)")
    parser.add_argument("--uploads", type=int, default=UPLOADS_PER_PEER,
                        help="files sent to the featurizer at once; at most its MAX_UPLOADS_PER_PEER")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per song and call")
    parser.add_argument("--audio-root", type=Path, action="append", default=None,
                        help="folder the catalog's audio must lie under (repeatable); default: the catalog's folder")
    parser.add_argument("--max-file-mb", type=int, default=MAX_FILE_MB, help="largest audio file read")
    parser.add_argument("--strict", action="store_true", help="fail when any song cannot be analysed")
    parser.add_argument("--only", choices=["analyse", "publish"], help="one step (a shard, or the merge)")
    parser.add_argument("--shard", type=int, default=settings.SHARD.as_int())
    parser.add_argument("--shards", type=int, default=settings.SHARDS.as_int())
    args = parser.parse_args(argv)
    if args.only is None:  # both steps in one process: the whole catalog is one shard
        args.shard, args.shards = 0, 1
    if args.shards < 1 or not 0 <= args.shard < args.shards:
        parser.error(f"--shard {args.shard} must be in 0..{args.shards - 1} (--shards {args.shards})")
    for flag in ("workers", "uploads"):
        if getattr(args, flag) < 1:  # a semaphore of 0 would wait forever
            parser.error(f"--{flag} must be at least 1 (got {getattr(args, flag)})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        songs, malformed = read_catalog(args.catalog, args.audio_root)
    except (OSError, UnicodeDecodeError, CatalogError) as exc:
        print(f"cannot read the catalog: {exc}", file=sys.stderr)
        return 2
    for problem in malformed:
        print(f"not indexed: {problem}", file=sys.stderr)
    folder = shard_folder(args.index_dir, args.catalog)
    if args.only != "publish":
        try:
            report, fresh = asyncio.run(analyse_shard(args, songs))
        except ServiceError as exc:
            print(f"cannot start the ingestion: {exc.message}", file=sys.stderr)
            return 2
        report.write(folder)
        for song_id, reason in sorted(report.failed.items()):
            print(f"not indexed: {song_id}: {reason}", file=sys.stderr)
        done = len(report.hashes)
        print(f"shard {args.shard} of {args.shards}: {done} songs ({fresh} analysed, {done - fresh} known), "
              f"{len(report.failed)} failed, {time.monotonic() - started:.1f} s")
        if args.only == "analyse":
            return 1 if (report.failed or malformed) and args.strict else 0
    try:
        reports = read_reports(folder, args.shards if args.only == "publish" else 1)
    except ValueError as exc:
        print(f"cannot publish: {exc}", file=sys.stderr)
        return 1
    failed = {k: v for r in reports for k, v in r.failed.items()}
    if not any(r.hashes for r in reports) or ((failed or malformed) and args.strict):
        print(f"{len(failed)} of {len(songs)} songs could not be analysed and {len(malformed)} catalog rows were "
              "malformed; no index published", file=sys.stderr)
        return 1
    generation, rows = publish(args, songs, reports)
    labelled = [r for r in rows if r.genre_source == "catalog"]
    agree = sum(r.predicted_genre == r.genre for r in labelled)
    genres = sorted({r.genre for r in rows})
    print(
        f"indexed {len(rows)} songs in {len(genres)} genres as generation {generation} "
        f"({args.index_dir}) in {time.monotonic() - started:.1f} s; "
        f"classifier agrees with the catalog genre on {agree}/{len(labelled)}; skipped {len(failed) + len(malformed)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
