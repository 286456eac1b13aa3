"""The demo: everything up on loopback, the demo catalog indexed, recommendations printed.

    make demo
    python -m scripts.demo --data ../shared/data/regional_mini/genres --models models-regional

Starts Redis (when redis-server is installed), the local TF Serving stand-in with the fold
models (default: the shipped GTZAN ones), the featurizer, the classifier, ingests a catalog of
the <genre>/<clip> folder given (default: the GTZAN clips and the full songs in ../shared/data,
or synthetic songs when they are absent), starts the recommender and prints one answer of each
call: a catalog song, an uploaded file, a playlist of seeds, a path between two songs, and a
request with exclusions, a no-repeat window and diversity.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import grpc

from devtools.demo_catalog import folder_catalog, manifest_catalog
from devtools.localrun import ROOT, running, start_redis
from musicrec.v1 import recommender_pb2, recommender_pb2_grpc
from services.common.transport import sync_channel
from services.common.upload import split_chunks
from services.recommender.catalog import ingest
from services.recommender.catalog.reader import root_arguments, write_catalog

GTZAN = ROOT.parent / "shared" / "data" / "gtzan_mini" / "genres"
FULL_SONGS = ROOT.parent / "shared" / "data" / "full_songs"
TAGGED = "jazz_j1"  # the full song whose mp3 carries ID3 tags
WORK = ROOT / "var" / "demo"


def demo_catalog(data: Path, work: Path) -> tuple[Path, list[str], str, Path]:
    """(catalog CSV, its --audio-root arguments, a song id to query, a file to upload)."""
    if data == GTZAN and GTZAN.is_dir():
        path, songs = work / "catalog.csv", folder_catalog(GTZAN) + manifest_catalog(FULL_SONGS)
        write_catalog(path, songs)
        return path, root_arguments(songs), "disco.00004", GTZAN / "classical" / "classical.00007.wav"
    if data != GTZAN:
        songs = folder_catalog(data)
        if not songs:
            raise SystemExit(f"no <genre>/<clip> audio under {data}")
        path = work / "catalog.csv"
        write_catalog(path, songs)
        genres = sorted({s.genre for s in songs})
        query = next(s for s in songs if s.genre == genres[len(genres) // 2])
        other = [s for s in songs if s.genre == genres[0]][-1]
        return path, root_arguments(songs), query.id, other.audio_path
    print(f"(no real music at {GTZAN}: using a synthetic catalog; see ../shared/data/README.md)")
    from tests.synth import write_synthetic_catalog

    path = write_synthetic_catalog(work / "synthetic")
    return path, [], "beats-02", work / "synthetic" / "chirps-03.wav"  # its audio lies beside it


def song_cells(s) -> str:
    length = f"{int(s.duration_seconds) // 60}:{int(s.duration_seconds) % 60:02d}" if s.duration_seconds else "?"
    return (
        f"{s.title[:18]:<18} {(s.artist or 'unknown')[:14]:<14} {(s.album or '-')[:14]:<14} "
        f"{s.year or '-'!s:<5} {length:>5} {s.genre:<9}"
    )


def print_table(title: str, recommendations, seeds: bool = False) -> None:
    print(f"\n{title}")
    columns = f"{'title':<18} {'artist':<14} {'album':<14} {'year':<5} {'len':>5} {'genre':<9}"
    header = f"  {'#':>2}  {columns} {'sim':>6}  why"
    print(header)
    print("  " + "-" * (len(header) + 40))
    for rank, rec in enumerate(recommendations, start=1):
        extra = ""
        if seeds:
            extra = " [" + ", ".join(f"{s.seed} {s.similarity:.2f}" for s in rec.seed_similarities) + "]"
        print(f"  {rank:>2}  {song_cells(rec.song)} {rec.similarity:6.3f}  {rec.reason}{extra}")


def upload(stub: recommender_pb2_grpc.RecommenderServiceStub, path: Path) -> recommender_pb2.RecommendByAudioResponse:
    """A header (filename, options), then the file in chunks."""
    header = recommender_pb2.UploadHeader(filename=path.name, options=recommender_pb2.RecommendOptions(k=5))
    messages = [recommender_pb2.RecommendByAudioRequest(header=header)] + [
        recommender_pb2.RecommendByAudioRequest(data=piece) for piece in split_chunks(path.read_bytes(), 256 * 1024)
    ]
    return stub.RecommendByAudio(iter(messages), timeout=120)


def routing(reply) -> str:
    return ", ".join(f"{r.genre} ({r.weight:.2f})" for r in reply.routing)


def tagged_song(stub: recommender_pb2_grpc.RecommenderServiceStub) -> str:
    """A full song whose file carries tags (title, artist, album, year), printed; "" when absent."""
    try:
        song = stub.GetSong(recommender_pb2.GetSongRequest(song_id=TAGGED), timeout=30).song
    except grpc.RpcError:
        return ""
    print(f"\nFrom {TAGGED}.mp3's own tags: {song.title!r} by {song.artist}, album {song.album!r}, {song.year}, "
          f"{song.duration_seconds:.0f} s")
    return song.id


def more_calls(stub: recommender_pb2_grpc.RecommenderServiceStub, song_id: str, upload_path: Path, target: str) -> None:
    """One answer of each of the playlist, path and options calls (the path ends at `target`)."""
    by_id = stub.RecommendById(recommender_pb2.RecommendByIdRequest(song_id=song_id), timeout=30)
    other = by_id.recommendations[-1].song.id
    seeds = recommender_pb2.RecommendBySeedsRequest(
        seeds=[
            recommender_pb2.Seed(song_id=song_id, weight=2),
            recommender_pb2.Seed(song_id=other),
            recommender_pb2.Seed(
                audio=recommender_pb2.AudioFile(filename=upload_path.name, data=upload_path.read_bytes())
            ),
        ]
    )
    mix = stub.RecommendBySeeds(seeds, timeout=120)
    weights = ", ".join(f"{s.label} ({s.genre}, {s.weight:.2f})" for s in mix.seeds)
    print_table(f"A playlist of 3 seeds: {weights}:", mix.recommendations, seeds=True)

    request = recommender_pb2.FindPathRequest(from_song_id=song_id, to_song_id=target, count=6)
    path = stub.FindPath(request, timeout=60)
    print(f"\nA path of {len(path.steps)} songs from {path.start.title} ({path.start.genre}) "
          f"to {path.end.title} ({path.end.genre}):")
    for n, step in enumerate(path.steps, start=1):
        turn = " (genre changes)" if step.genre_changed else ""
        print(f"  {n:>2}  {song_cells(step.song)}  prev {step.similarity_to_previous:.2f}  "
              f"target {step.similarity_to_target:.2f}{turn}  {step.reason}")

    options = recommender_pb2.RecommendOptions(
        k=5, diversity=0.5, exclude_ids=[by_id.recommendations[0].song.id], min_similarity=0.2,
        no_repeat_artist_within=3, min_duration_seconds=20,
    )
    picked = stub.RecommendById(recommender_pb2.RecommendByIdRequest(song_id=song_id, options=options), timeout=30)
    print_table(
        f"{song_id} again, without {by_id.recommendations[0].song.id}, diversity 0.5, similarity >= 0.2:",
        picked.recommendations,
    )
    if picked.HasField("shortfall"):
        print(f"  short: {picked.shortfall.message}")
    strict = recommender_pb2.RecommendOptions(k=5, min_similarity=0.8)
    short = stub.RecommendById(recommender_pb2.RecommendByIdRequest(song_id=song_id, options=strict), timeout=30)
    print(f"\nWith min_similarity 0.8: {short.shortfall.message or 'all 5 qualified'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=GTZAN, help="<genre>/<clip> folder to index")
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="folder with models.config")
    args = parser.parse_args()
    work = WORK if args.data == GTZAN else WORK / args.data.resolve().parent.name
    work.mkdir(parents=True, exist_ok=True)
    catalog, roots, song_id, upload_path = demo_catalog(args.data, work)
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
        code = ingest.main(["--catalog", str(catalog), "--index-dir", str(index_dir), *addresses, *roots])
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
        more_calls(stub, song_id, upload_path, tagged_song(stub) or by_audio.recommendations[0].song.id)
        print(f"\nindex generation {by_audio.index_generation}; recommender at {rec.address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
