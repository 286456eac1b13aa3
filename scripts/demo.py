"""The demo: everything up on loopback, the demo catalog indexed, recommendations printed.

    make demo

Starts Redis (when redis-server is installed), the local TF Serving stand-in with the shipped
fold models, the featurizer, the classifier, ingests the demo catalog (the GTZAN clips in
../shared/data, or synthetic songs when they are absent), starts the recommender and prints a
top-5 table for one catalog song and for one uploaded file.
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import grpc

from musicrec.v1 import recommender_pb2, recommender_pb2_grpc
from services.common.localrun import ROOT, running, start_redis
from services.common.upload import split_chunks
from services.recommender import ingest
from services.recommender.catalog import write_catalog
from services.recommender.demo_catalog import gtzan_catalog

GTZAN = ROOT.parent / "shared" / "data" / "gtzan_mini" / "genres"
WORK = ROOT / "var" / "demo"


def demo_catalog() -> tuple[Path, str, Path]:
    """(catalog CSV, a song id to query, a file to upload)."""
    if GTZAN.is_dir():
        path = WORK / "catalog.csv"
        write_catalog(path, gtzan_catalog(GTZAN))
        return path, "disco.00004", GTZAN / "classical" / "classical.00007.wav"
    print(f"(no real music at {GTZAN}: using a synthetic catalog; see ../shared/data/README.md)")
    from tests.synth import write_synthetic_catalog

    path = write_synthetic_catalog(WORK / "synthetic")
    return path, "beats-02", WORK / "synthetic" / "chirps-03.wav"


def print_table(title: str, recommendations) -> None:
    print(f"\n{title}")
    header = f"  {'#':>2}  {'title':<22} {'artist':<14} {'released':<10} {'genre':<10} {'sim':>6}  why"
    print(header)
    print("  " + "-" * (len(header) + 20))
    for rank, rec in enumerate(recommendations, start=1):
        s = rec.song
        print(
            f"  {rank:>2}  {s.title[:22]:<22} {(s.artist or 'unknown')[:14]:<14} {s.release_date or 'unknown':<10} "
            f"{s.genre:<10} {rec.similarity:6.3f}  {rec.reason}"
        )


def upload(stub: recommender_pb2_grpc.RecommenderServiceStub, path: Path) -> recommender_pb2.RecommendByAudioResponse:
    first = {"filename": path.name, "options": recommender_pb2.RecommendOptions(k=5)}
    messages = (
        recommender_pb2.RecommendByAudioRequest(chunk=piece, **(first if n == 0 else {}))
        for n, piece in enumerate(split_chunks(path.read_bytes(), 256 * 1024))
    )
    return stub.RecommendByAudio(messages, timeout=120)


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    catalog, song_id, upload_path = demo_catalog()
    index_dir = WORK / "index"
    with tempfile.TemporaryDirectory() as name, ExitStack() as stack:
        tmp = Path(name)
        redis = start_redis(tmp)
        if redis is None:
            print("redis-server not installed: the recommender runs without a cache")
        else:
            stack.callback(redis.stop)
        redis_url = redis.url if redis else "off"
        print("starting model server, featurizer, classifier ...")
        config = {"MODEL_CONFIG_FILE": str(ROOT / "models" / "models.config")}
        ms = stack.enter_context(running("services.classifier.modelserver", config, tmp))
        fz = stack.enter_context(running("services.featurizer", {}, tmp))
        cl = stack.enter_context(running("services.classifier", {"TF_SERVING_ADDR": ms.address}, tmp))
        print(f"indexing {catalog} ...")
        addresses = ["--featurizer", fz.address, "--classifier", cl.address]
        code = ingest.main(["--catalog", str(catalog), "--index-dir", str(index_dir), *addresses])
        if code:
            return code
        env = {
            "INDEX_DIR": str(index_dir),
            "REDIS_URL": redis_url,
            "FEATURIZER_ADDR": fz.address,
            "CLASSIFIER_ADDR": cl.address,
        }
        rec = stack.enter_context(running("services.recommender", env, tmp))
        channel = stack.enter_context(grpc.insecure_channel(rec.address))
        stub = recommender_pb2_grpc.RecommenderServiceStub(channel)

        by_id = stub.RecommendById(recommender_pb2.RecommendByIdRequest(song_id=song_id), timeout=30)
        q = by_id.query
        print_table(
            f"Because you listened to {q.title!r} ({q.genre}); searched {', '.join(by_id.searched_genres)}:",
            by_id.recommendations,
        )
        again = stub.RecommendById(recommender_pb2.RecommendByIdRequest(song_id=song_id), timeout=30)
        print(f"  (asked again: served from cache = {again.cached}; redis: {redis_url})")

        by_audio = upload(stub, upload_path)
        vote = by_audio.classification
        w = by_audio.window
        print_table(
            f"Uploaded {upload_path.name}: analysed {w.start_seconds:.0f}-{w.end_seconds:.0f} s ({w.policy}); "
            f"genre {vote.genre} ({vote.note}); searched {', '.join(by_audio.searched_genres)}:",
            by_audio.recommendations,
        )
        print(f"\nindex generation {by_audio.index_generation}; recommender at {rec.address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
