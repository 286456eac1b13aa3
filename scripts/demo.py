"""The demo: everything up on loopback, the demo catalog indexed, recommendations printed.

    make demo
    python -m scripts.demo --data ../shared/data/regional_mini/genres --models models-regional

Starts Redis (when redis-server is installed), the local TF Serving stand-in with the fold
models (default: the shipped GTZAN ones), the featurizer, the classifier, ingests a catalog of
the <genre>/<clip> folder given (default: the GTZAN clips in ../shared/data, or synthetic songs
when they are absent), starts the recommender and prints a top-5 table for one catalog song
and for one uploaded file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from devtools.demo_catalog import folder_catalog
from devtools.localrun import ROOT, running, start_redis
from musicrec.v1 import recommender_pb2, recommender_pb2_grpc
from services.common.transport import sync_channel
from services.common.upload import split_chunks
from services.recommender import ingest
from services.recommender.catalog import write_catalog

GTZAN = ROOT.parent / "shared" / "data" / "gtzan_mini" / "genres"
WORK = ROOT / "var" / "demo"


def demo_catalog(data: Path, work: Path) -> tuple[Path, str, Path]:
    """(catalog CSV, a song id to query, a file to upload)."""
    if data == GTZAN and GTZAN.is_dir():
        path = work / "catalog.csv"
        write_catalog(path, folder_catalog(GTZAN))
        return path, "disco.00004", GTZAN / "classical" / "classical.00007.wav"
    if data != GTZAN:
        songs = folder_catalog(data)
        if not songs:
            raise SystemExit(f"no <genre>/<clip> audio under {data}")
        path = work / "catalog.csv"
        write_catalog(path, songs)
        genres = sorted({s.genre for s in songs})
        query = next(s for s in songs if s.genre == genres[len(genres) // 2])
        other = [s for s in songs if s.genre == genres[0]][-1]
        return path, query.id, other.audio_path
    print(f"(no real music at {GTZAN}: using a synthetic catalog; see ../shared/data/README.md)")
    from tests.synth import write_synthetic_catalog

    path = write_synthetic_catalog(work / "synthetic")
    return path, "beats-02", work / "synthetic" / "chirps-03.wav"


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
    """A header (filename, options), then the file in chunks."""
    header = recommender_pb2.UploadHeader(filename=path.name, options=recommender_pb2.RecommendOptions(k=5))
    messages = [recommender_pb2.RecommendByAudioRequest(header=header)] + [
        recommender_pb2.RecommendByAudioRequest(data=piece) for piece in split_chunks(path.read_bytes(), 256 * 1024)
    ]
    return stub.RecommendByAudio(iter(messages), timeout=120)


def routing(reply) -> str:
    return ", ".join(f"{r.genre} ({r.weight:.2f})" for r in reply.routing)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=GTZAN, help="<genre>/<clip> folder to index")
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="folder with models.config")
    args = parser.parse_args()
    work = WORK if args.data == GTZAN else WORK / args.data.resolve().parent.name
    work.mkdir(parents=True, exist_ok=True)
    catalog, song_id, upload_path = demo_catalog(args.data, work)
    index_dir = work / "index"
    with tempfile.TemporaryDirectory() as name, ExitStack() as stack:
        tmp = Path(name)
        redis = start_redis(tmp)
        if redis is None:
            print("redis-server not installed: the recommender runs without a cache")
        else:
            stack.callback(redis.stop)
        redis_url = redis.url if redis else "off"
        print("starting model server, featurizer, classifier ...")
        config = {"MODEL_CONFIG_FILE": str(args.models.resolve() / "models.config")}
        ms = stack.enter_context(running("services.modelserver", config, tmp))
        config["TF_SERVING_ADDR"] = ms.address
        fz = stack.enter_context(running("services.featurizer", {}, tmp))
        cl = stack.enter_context(running("services.classifier", config, tmp))
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
        channel = stack.enter_context(sync_channel(rec.address))
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
            f"genre {vote.genre} ({vote.note}); searched {routing(by_audio)}:",
            by_audio.recommendations,
        )
        print(f"\nindex generation {by_audio.index_generation}; recommender at {rec.address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
