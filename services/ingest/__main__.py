"""Catalog ingestion in-process: python -m services.ingest --catalog C [any option of the services' CLI]

The same command line, steps, shards, store and publish as `python -m services.recommender.ingest`
(see its docstring), with the analysis step run here: the songs the store does not know yet go
through this machine's worker processes (batch_analysis.py) instead of the featurizer and
classifier services. No service needs to be up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tqdm import tqdm

from services.common.config import env_str
from services.common.errors import describe, unavailable
from services.common.modelconfig import DEFAULT_CONFIG
from services.ingest.batch_analysis import BatchAnalyser
from services.recommender import ingest
from services.recommender.analysis import AnalysisStore, content_hash
from services.recommender.catalog import CatalogSong
from services.recommender.shards import ShardReport, shard_songs


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, default=Path(env_str("MODEL_CONFIG_FILE", str(DEFAULT_CONFIG))),
                        help="the models.config of the fold models (MODEL_CONFIG_FILE)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2,
                        help="worker processes, one per core")


def _analysed(engine: BatchAnalyser, paths: list[Path], on_batch: Callable[[int], None]) -> Iterator:
    try:
        yield from engine.analyse(paths, on_batch)
    except BrokenProcessPool:
        raise unavailable("a worker process died (out of memory?); the analyses stored so far are kept: "
                          "run again to go on from there") from None


def analyse_shard(args: argparse.Namespace, songs: list[CatalogSong]) -> tuple[ShardReport, int]:
    """This shard's songs: those the store knows are taken from it, the rest go through the
    worker processes, each file once however many catalog rows name it; (report, analysed)."""
    hashes: dict[str, str] = {}
    failed: dict[str, str] = {}
    started = time.monotonic()
    with BatchAnalyser(args.models, args.processes) as engine:
        setup = engine.setup()
        print(f"in-process engine: {engine.workers} workers ready in {time.monotonic() - started:.1f} s "
              f"({engine.startup_cpu_seconds:.1f} s of CPU)", flush=True)
        store = AnalysisStore(args.index_dir / "analysis-cache", setup)
        todo: dict[Path, list[CatalogSong]] = {}
        for song in shard_songs(songs, args.shard, args.shards):
            try:
                sha = content_hash(song.audio_path.read_bytes())
            except OSError as exc:
                failed[song.id] = f"{song.audio_path}: {describe(exc)}"
                continue
            if store.get(sha) is not None:
                hashes[song.id] = sha
            else:
                todo.setdefault(song.audio_path, []).append(song)
        label = "featurize + classify, in-process"
        label += f" (shard {args.shard} of {args.shards})" if args.shards > 1 else ""
        fresh = 0
        with tqdm(total=len(todo), desc=label, unit="song") as progress:
            for path, sha, result in _analysed(engine, list(todo), progress.update):
                if not isinstance(result, str):
                    store.put(sha, result, str(path))
                    fresh += 1
                for song in todo[path]:
                    if isinstance(result, str):
                        failed[song.id] = result
                    else:
                        hashes[song.id] = sha
    return ShardReport(args.shard, args.shards, hashes, failed, setup), fresh


if __name__ == "__main__":
    sys.exit(ingest.main(analyse_locally=analyse_shard, more_options=options))
