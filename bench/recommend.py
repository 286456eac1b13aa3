"""Recommender benchmarks, each measured side by side in one run.

    make bench-recommend      # or: python -m bench.recommend [--sizes 100000,1000000]

1. By id over loopback gRPC: p50/p99 latency and requests/s with the Redis cache (warm) and
   without it, against the same synthetic catalog index; prints the ratio.
2. HNSW (hnswlib, the service's parameters) vs exact cosine (numpy matrix-vector product) at
   each size: build time, per-query time (one thread), recall@5 of HNSW against exact.
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
from services.recommender.build import build_generation
from services.recommender.index import DEFAULT_EF_SEARCH, GenreIndex, exact_search, normalise_rows
from services.recommender.store import SongRecord

DIM = len(FEATURE_NAMES)


def clustered(n: int, seed: int, clusters: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((clusters, DIM)) * 2
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks: 1M x 57 without a float64 copy
        m = min(100_000, n - start)
        out[start : start + m] = centres[rng.integers(0, clusters, m)] + rng.standard_normal((m, DIM))
    return out


def synthetic_catalog(index_dir: Path, songs: int) -> list[str]:
    genres = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
    records = [
        SongRecord(f"song-{i}", f"Song {i}", f"Artist {i % 997}", "2020-01-01", genres[i % 10], genres[i % 10], 1.0)
        for i in range(songs)
    ]
    vectors = clustered(songs, 1)
    build_generation(index_dir, records, vectors, SCHEMA_VERSION, FEATURE_NAMES, FEATURE_GROUPS, progress=False)
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
    print(f"\n2. HNSW (M=32, ef_construction=200, ef={DEFAULT_EF_SEARCH}) vs exact cosine, {DIM}-d, one query thread")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=20_000, help="catalog size for the loopback run")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each loopback run")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sizes", default="100000,1000000", help="vector counts for HNSW vs exact")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    loopback(args.songs, args.seconds, args.clients)
    knn([int(s) for s in args.sizes.split(",")], args.queries)


if __name__ == "__main__":
    main()
