"""Recommender benchmarks, each measured side by side in one run.

    make bench-recommend      # or: python -m bench.recommend [--sizes 100000,1000000]

1. By id over loopback gRPC: p50/p99 latency and requests/s with the Redis cache (warm) and
   without it, against the same synthetic catalog index; prints the ratio.
2. HNSW (hnswlib, the service's parameters) vs exact cosine (numpy matrix-vector product) at
   each size: build time, per-query time (one thread), recall@5 of HNSW against exact.
3. Index memory per 1M songs, each layout loaded in a fresh process: the layout before
   (one SongRecord object per song, raw + standardised + unit arrays beside graphs of M=32)
   against the served one (store.py: columns, vectors only in the graphs), anonymous and
   file-backed memory apart; build time; and the peak while a new generation swaps in,
   side by side against in place (live.py).
Synthetic vectors: 57 dimensions in overlapping clusters (like the feature vectors).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from devtools.localrun import free_port, running, start_redis
from musicrec.v1 import recommender_pb2, recommender_pb2_grpc
from services.common.transport import sync_channel
from services.featurizer.schema import FEATURE_GROUPS, FEATURE_NAMES, SCHEMA_VERSION
from services.recommender.catalog.build import build_generation
from services.recommender.index.graph import DEFAULT_EF_SEARCH, DEFAULT_M, GenreIndex, exact_search, normalise_rows
from services.recommender.index.store import SongRecord

EAR = {"model": "musicnn_msd", "version": 1, "dim": 200}  # what ingestion records of the ear
DIM = len(FEATURE_NAMES) + EAR["dim"]  # a song's vector: the features, then the ear's embedding (space.py)
GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]


def clustered(n: int, seed: int, clusters: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((clusters, DIM)) * 2
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks: 1M x 257 without a float64 copy
        m = min(100_000, n - start)
        out[start : start + m] = centres[rng.integers(0, clusters, m)] + rng.standard_normal((m, DIM))
    return out


def synthetic_catalog(index_dir: Path, songs: int) -> list[str]:
    genres = GENRES
    records = [
        SongRecord(f"song-{i}", f"Song {i}", f"Artist {i % 997}", "2020-01-01", genres[i % 10], genres[i % 10], 1.0)
        for i in range(songs)
    ]
    vectors = clustered(songs, 1)
    build_generation(index_dir, records, vectors, SCHEMA_VERSION, FEATURE_NAMES, FEATURE_GROUPS, embedding=EAR,
                     progress=False)
    return [r.id for r in records]


def load(address: str, ids: list[str], seconds: float, clients: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        with sync_channel(address) as channel:
            stub = recommender_pb2_grpc.RecommenderServiceStub(channel)
            while time.monotonic() < deadline:
                request = recommender_pb2.RecommendByIdRequest(song_id=rng.choice(ids))
                started = time.perf_counter()
                try:
                    stub.RecommendById(request, timeout=10)
                except grpc.RpcError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors


def loopback(songs: int, seconds: float, clients: int) -> None:
    print(f"\n1. RecommendById over loopback gRPC: {songs} songs, {clients} clients, {seconds:.0f} s per run")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ids = synthetic_catalog(tmp / "index", songs)
        hot = ids[:500]  # the ids asked for in both runs (the cached run warms them first)
        redis = start_redis(tmp)
        if redis is None:
            print("   redis-server not installed: skipping the cached run")
        dead = f"127.0.0.1:{free_port()}"  # by id needs neither featurizer nor classifier
        base = {"INDEX_DIR": str(tmp / "index"), "FEATURIZER_ADDR": dead, "CLASSIFIER_ADDR": dead}
        rows = []
        runs = [("uncached", "off")] + ([("cached (Redis)", redis.url)] if redis else [])
        for label, url in runs:
            with running("services.recommender", {**base, "REDIS_URL": url}, tmp) as rec:
                if url != "off":
                    with sync_channel(rec.address) as channel:
                        stub = recommender_pb2_grpc.RecommenderServiceStub(channel)
                        for song_id in hot:
                            stub.RecommendById(recommender_pb2.RecommendByIdRequest(song_id=song_id), timeout=10)
                latencies, errors = load(rec.address, hot, seconds, clients)
            ms = np.array(latencies) * 1e3
            rows.append((label, np.percentile(ms, 50), np.percentile(ms, 99), len(ms) / seconds, errors))
        if redis:
            redis.stop()
    print(f"   {'path':<16} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>7}")
    for label, p50, p99, rps, errors in rows:
        print(f"   {label:<16} {p50:8.2f} {p99:8.2f} {rps:8.0f} {errors:7d}")
    if len(rows) == 2:
        (_, p50_u, _, rps_u, _), (_, p50_c, _, rps_c, _) = rows
        print(f"   cached vs uncached: p50 {p50_u / p50_c:.2f}x lower, {rps_c / rps_u:.2f}x the requests/s")


def knn(sizes: list[int], queries: int, k: int = 5) -> None:
    print(f"\n2. HNSW (M={DEFAULT_M}, ef_construction=200, ef={DEFAULT_EF_SEARCH}) vs exact cosine, {DIM}-d, "
          "one query thread")
    print(f"   {'vectors':>9} {'build s':>8} {'hnsw ms/q':>10} {'exact ms/q':>11} {'speed-up':>9} {'recall@5':>9}")
    q = clustered(queries, 99)
    for n in sizes:
        vectors = clustered(n, 2)
        started = time.perf_counter()
        graph = GenreIndex.build(vectors, np.arange(n))
        build_s = time.perf_counter() - started
        unit = normalise_rows(vectors)
        del vectors
        started = time.perf_counter()
        approx = [{row for row, _ in graph.search(x, k)} for x in q]
        hnsw_ms = (time.perf_counter() - started) * 1e3 / queries
        started = time.perf_counter()
        exact = [set(exact_search(unit, x, k)[0].tolist()) for x in q]
        exact_ms = (time.perf_counter() - started) * 1e3 / queries
        recall = sum(len(a & e) for a, e in zip(approx, exact, strict=True)) / (k * queries)
        print(f"   {n:>9} {build_s:8.1f} {hnsw_ms:10.3f} {exact_ms:11.3f} {exact_ms / hnsw_ms:8.0f}x {recall:9.3f}")
        del graph, unit


def classified_songs(n: int) -> list[SongRecord]:
    """Songs as the ingestion makes them: the vote's ranking and probabilities over 10 genres."""
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(10), size=n).astype(np.float32)
    return [
        SongRecord(f"song-{i:07d}", f"Song title {i}", f"Artist {i % 99_991}", "2020-01-01", GENRES[i % 10],
                   GENRES[i % 10], 0.6, [GENRES[g] for g in np.argsort(-p[i])],
                   dict(zip(GENRES, p[i].tolist(), strict=True)), "catalog", f"Album {i // 12}", 200.0 + i % 100, 2020)
        for i in range(n)
    ]


MEASURE = """
import json, sys, time
import numpy as np
from pathlib import Path

def status():
    s = {l.split(':')[0]: int(l.split()[1]) for l in open('/proc/self/status') if l.split(':')[0] in
         ('RssAnon', 'RssFile', 'VmHWM')}
    return s

layout, folder, generation = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
from services.recommender.index.store import load_generation, current_generation, SongRecord
from services.recommender.index.graph import GenreIndex
before = status()
if layout == 'before':
    manifest = json.loads((folder / 'gen-before' / 'manifest.json').read_text())
    songs = [SongRecord(**row) for row in json.loads((folder / 'gen-before' / 'songs.json').read_text())]
    raw = np.load(folder / 'gen-before' / 'raw.npy')
    z = (raw - raw.mean(0)) / raw.std(0)
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    by_id = {s.id: i for i, s in enumerate(songs)}
    graphs = [GenreIndex.load(folder / 'gen-before' / e['file'], raw.shape[1], e['count'])
              for e in manifest['genres'].values()]
    after = status()
elif layout == 'now':
    index = load_generation(folder, generation)
    for array in [*index.songs.c.values(), index.norms]:  # touch every page, as a long-running server
        int(np.asarray(array).reshape(-1).view(np.uint8)[::4096].sum())  # no copy of the column
    after = status()
else:  # a swap: generation 1 served, generation 2 swapped in by the policy given
    import asyncio, os
    from services.recommender.index.live import LiveIndex
    live = LiveIndex(folder, 1.0, swap=layout)
    (folder / 'CURRENT').write_text('gen-000001')
    asyncio.run(live.refresh())
    loaded = status()
    (folder / 'CURRENT').write_text('gen-000002')
    asyncio.run(live.refresh())
    after = status()
    before = loaded  # the peak above one loaded generation
print(json.dumps({'anon': (after['RssAnon'] - before['RssAnon']) / 1024,
                  'file': (after['RssFile'] - before['RssFile']) / 1024,
                  'peak_over': (after['VmHWM'] - before['RssAnon'] - before['RssFile']) / 1024}))  # MiB
"""


def measure(layout: str, folder: Path, generation: int = 1) -> dict:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", MEASURE, layout, str(folder), str(generation)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def layouts(n: int) -> tuple[float, dict[str, dict]]:
    """(build seconds, memory of each layout) for a catalog of n synthetic classified songs."""
    import json
    from dataclasses import asdict

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        songs, vectors = classified_songs(n), clustered(n, 3)
        started = time.perf_counter()
        build_generation(folder, songs, vectors, SCHEMA_VERSION, FEATURE_NAMES, FEATURE_GROUPS, embedding=EAR,
                         progress=False)
        build_s = time.perf_counter() - started
        build_generation(folder, songs, vectors, SCHEMA_VERSION, FEATURE_NAMES, FEATURE_GROUPS, embedding=EAR,
                         progress=False)
        old = folder / "gen-before"  # the layout before: songs.json, raw.npy, graphs of M=32
        old.mkdir()
        (old / "songs.json").write_text(json.dumps([asdict(s) for s in songs]))
        np.save(old / "raw.npy", vectors)
        labels = np.array([s.genre for s in songs])
        entries = {}
        for k, genre in enumerate(GENRES):
            rows = np.flatnonzero(labels == genre)
            z = (vectors[rows] - vectors.mean(0)) / vectors.std(0)
            GenreIndex.build(z, rows, m=32).save(old / f"hnsw-{k:02d}.bin")
            entries[genre] = {"file": f"hnsw-{k:02d}.bin", "count": len(rows)}
        (old / "manifest.json").write_text(json.dumps({"genres": entries}))
        del songs, vectors
        return build_s, {layout: measure(layout, folder) for layout in ("before", "now", "side_by_side", "in_place")}


def memory(n: int) -> None:
    """Per-song memory is the slope between two catalog sizes (fixed costs of a process cancel)."""
    small = n // 4
    print(f"\n3. Index memory per 1M songs: slope between {small} and {n} synthetic songs (ranking, probabilities,"
          " album as ingestion writes them)")
    _, low = layouts(small)
    build_s, high = layouts(n)

    def per_million(layout: str, key: str) -> float:
        return (high[layout][key] - low[layout][key]) / (n - small) * 1e6 / 1024  # MiB -> GiB per 1M

    print(f"   {'layout':<34} {'anonymous GiB':>14} {'file-backed GiB':>16} {'total GiB':>10}")
    totals = {}
    for label, layout in (("before (objects + 3 arrays, M=32)", "before"), ("now (columns, graphs only)", "now")):
        anon, file = per_million(layout, "anon"), per_million(layout, "file")
        totals[layout] = anon + file
        print(f"   {label:<34} {anon:14.3f} {file:16.3f} {anon + file:10.3f}")
    minutes = build_s * 1e6 / n / 60
    print(f"   now vs before: {totals['before'] / totals['now']:.1f}x less memory; build {minutes:.1f} min "
          f"per 1M songs ({build_s:.1f} s for {n}, 2 cores)")
    side, in_place = per_million("side_by_side", "peak_over"), per_million("in_place", "peak_over")
    print(f"   peak above one generation while the next swaps in: side by side {side:.3f} GiB per 1M, "
          f"in place {in_place:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=20_000, help="catalog size for the loopback run")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each loopback run")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sizes", default="100000,1000000", help="vector counts for HNSW vs exact")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--memory-songs", type=int, default=200_000, help="catalog size for the memory run")
    parser.add_argument("--only", choices=["loopback", "knn", "memory"], help="run one part")
    args = parser.parse_args()
    if args.only in (None, "loopback"):
        loopback(args.songs, args.seconds, args.clients)
    if args.only in (None, "knn"):
        knn([int(s) for s in args.sizes.split(",")], args.queries)
    if args.only in (None, "memory"):
        memory(args.memory_songs)


if __name__ == "__main__":
    main()
