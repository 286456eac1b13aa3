"""Ingestion throughput on real clips: songs/s and CPU per song, today's settings against the
tuned ones, measured side by side in one run.

    python -m bench.ingest [--clips 171] [--workers 8] [--before-models DIR] [--mp3]

Every configuration runs the real services on loopback (model server stand-in, featurizer,
classifier) and `services.recommender.catalog.ingest` on the GTZAN clips in ../shared/data:
- before: the path before issue 11: no batching, BLAS/TF pools as wide as the cores, 2 songs in
  flight, TensorFlow's oneDNN kernels off (TF_ENABLE_ONEDNN_OPTS=0, as quiet_tensorflow.py had it),
  glibc's malloc defaults (REUSE_FREED_ARRAYS=0: every clip's arrays page-faulted in anew);
- tuned, before models: one BLAS/TF thread per worker, workers = cores in each service, 16
  songs in flight with their mels classified 8 at a time (ClassifyBatch: one Predict per fold
  for 8 songs), oneDNN on (services/common/quiet_tensorflow.py turns it on; TensorFlow alone
  leaves it off on AVX2-only CPUs), freed arrays reused (services/common/memory.py), and the
  model server batches concurrent Predicts with deploy/components/tfserving-batching/batching.config
  (as TF Serving with --enable_batching);
- deployed (what deploy/base runs): the same settings with the shipped fold models (models/);
- deployed, bfloat16: the same under deploy/components/tfserving-bf16's session config (oneDNN's
  bfloat16 auto mixed precision, deploy/overlays/bf16), run only on a CPU where bfloat16 beats
  float32: AMX-BF16, or AMD's AVX-512 BF16 (session_config.cpu_has_fast_bf16; --bf16 forces it).
"before models" are the fold models as they were before issue 11 (`--before-models`; the shipped
ones when not given), e.g. extracted from git:
    mkdir -p var/models-before && git archive 7152d5c models | tar -x --strip-components=1 -C var/models-before
Every configuration's services are started up front and the configurations take turns, so a
slow spell of the machine (this VM's speed drifts by 2x over minutes) hits them alike: each
ingests the clips into a fresh index once cold (services just started), then --rounds times
warm (the best is kept), then once more into its warm index, where every song is already known
(an incremental re-run). CPU per song is read from /proc for each process. Songs/s are also
scaled to the issue's machine speed (its "before" ran 6.5 songs/s): this run's ratio to
"before" times 6.5.

--mp3 ingests the same clips made into what a real catalog holds (transcoded once into
var/bench/mp3/): 92 s songs (each clip looped, so the 60-90 s killing part is cut by seeking),
44.1 kHz stereo mp3. Decoding that window costs more than a GTZAN clip's whole WAV.

--uploads-against N adds "deployed, N uploads": the deployment with the featurizer taking N
uploads from one address and ingestion sending N at once (`--uploads`), against the default 4.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from devtools.demo_catalog import folder_catalog
from devtools.localrun import ROOT, running
from services.common import threads
from services.common.upload import UPLOADS_PER_PEER
from services.modelserver.session_config import cpu_has_fast_bf16
from services.recommender.catalog.reader import CatalogSong, root_arguments, write_catalog

DATA = ROOT.parent / "shared" / "data"
# one thread inside each op; the model server keeps an inter-op pool as wide as its workers
ONE_THREAD = {name: "1" for name in threads.VARIABLES if name != "TF_NUM_INTEROP_THREADS"}
CORES = os.cpu_count() or 2
# "before", warm, as issue 11 measured it; its target (20 songs/s) is at that machine's speed
ISSUE_BEFORE_SONGS_PER_S = 6.5
# what the services did before issue 11: every library's pool at full width, oneDNN off
BEFORE = {**{name: str(CORES) for name in threads.VARIABLES}, "TF_ENABLE_ONEDNN_OPTS": "0", "REUSE_FREED_ARRAYS": "0"}


BF16_SESSION_CONFIG = ROOT / "deploy" / "components" / "tfserving-bf16" / "session.config"
MP3_DIR = ROOT / "var" / "bench" / "mp3"
MP3_RATE, MP3_SECONDS = 44_100, 92


def mp3_song(source: Path, target: Path) -> None:
    """A 92 s, 44.1 kHz stereo mp3 of a clip: the clip looped, the right channel 1 ms late."""
    import numpy as np
    import soundfile as sf
    import soxr

    from services.featurizer.decode import mix_to_mono

    clip, rate = sf.read(source, dtype="float32", always_2d=True)
    left = soxr.resample(mix_to_mono(clip), rate, MP3_RATE)
    left = np.tile(left, -(-MP3_SECONDS * MP3_RATE // len(left)))[: MP3_SECONDS * MP3_RATE]
    stereo = np.stack([left, 0.9 * np.roll(left, MP3_RATE // 1000)], axis=1)
    partial = target.with_suffix(".part")
    sf.write(partial, stereo, MP3_RATE, format="MP3", subtype="MPEG_LAYER_III")
    partial.replace(target)


def as_mp3_songs(clips: list[CatalogSong]) -> list[CatalogSong]:
    """The clips as mp3 songs under MP3_DIR, transcoding the ones not there yet."""
    from tqdm import tqdm

    MP3_DIR.mkdir(parents=True, exist_ok=True)
    songs = [CatalogSong(c.id, c.title, c.artist, c.release_date, c.genre, MP3_DIR / f"{c.audio_path.stem}.mp3")
             for c in clips]
    todo = [(c.audio_path, s.audio_path) for c, s in zip(clips, songs, strict=True) if not s.audio_path.exists()]
    if todo:
        with ProcessPoolExecutor(CORES) as pool:
            jobs = [pool.submit(mp3_song, *pair) for pair in todo]
            for job in tqdm(jobs, desc=f"transcoding clips into {MP3_DIR}", unit="song"):
                job.result()
    return songs


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest(
    catalog: list[str], index_dir: Path, addresses: dict[str, str], workers: int, uploads: int
) -> tuple[float, float, str]:
    """(wall seconds, client CPU seconds, last line of output); `catalog`: --catalog and --audio-root."""
    command = [sys.executable, "-m", "services.recommender.catalog.ingest", *catalog, "--index-dir",
               str(index_dir), "--featurizer", addresses["featurizer"], "--classifier", addresses["classifier"],
               "--workers", str(workers), "--uploads", str(uploads),
               "--strict"]  # a song refused fails the bench, never skews it
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    usage = os.times()
    return wall, usage.children_user + usage.children_system, done.stdout.strip().splitlines()[-1]


@dataclass
class Configuration:
    name: str
    tuned: bool
    models: Path
    batching: bool = False
    session_config: Path | None = None  # TF Serving's --tensorflow_session_config_file
    uploads: int = UPLOADS_PER_PEER  # the featurizer's MAX_UPLOADS_PER_PEER and ingestion's --uploads
    procs: dict = field(default_factory=dict)

    def start(self, stack: ExitStack, tmp: Path) -> None:
        threads = ONE_THREAD if self.tuned else BEFORE
        models = {"MODEL_CONFIG_FILE": str(self.models / "models.config"), **threads}
        models.update(MODEL_SERVER_WORKERS=str(CORES if self.tuned else 2))
        if self.batching:
            models.update(ENABLE_BATCHING="1")
        server = {**models, "TENSORFLOW_SESSION_CONFIG_FILE": str(self.session_config or "")}
        ms = stack.enter_context(running("services.modelserver", server, tmp))
        featurizer = {**threads, "FEATURIZER_WORKERS": str(CORES), "MAX_UPLOADS_PER_PEER": str(self.uploads)}
        fz = stack.enter_context(running("services.featurizer", featurizer, tmp))
        cl = stack.enter_context(running("services.classifier", {**models, "TF_SERVING_ADDR": ms.address}, tmp))
        self.procs = {"model server": ms, "featurizer": fz, "classifier": cl}

    def run(self, catalog: list[str], index_dir: Path, songs: int, workers: int) -> tuple[float, dict[str, float]]:
        """(songs/s, {part: CPU ms per song}) of one ingestion into index_dir."""
        before = {k: cpu_seconds(p.process.pid) for k, p in self.procs.items()}
        client_before = os.times().children_user + os.times().children_system
        addresses = {"featurizer": self.procs["featurizer"].address, "classifier": self.procs["classifier"].address}
        wall, client_after, _ = ingest(catalog, index_dir, addresses, workers if self.tuned else 2, self.uploads)
        cpu = {k: (cpu_seconds(p.process.pid) - before[k]) * 1e3 / songs for k, p in self.procs.items()}
        cpu["ingest client"] = (client_after - client_before) * 1e3 / songs
        return songs / wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=171, help="at most this many real clips")
    parser.add_argument("--workers", type=int, default=16,
                        help="songs in flight, tuned configurations (ClassifyBatch batches of up to half of them)")
    parser.add_argument("--rounds", type=int, default=2, help="warm runs per configuration (the best is kept)")
    parser.add_argument("--before-models", type=Path, default=ROOT / "models",
                        help="the fold models before issue 11 (a folder with models.config); default: the shipped ones")
    parser.add_argument("--mp3", action="store_true",
                        help="the clips as 92 s, 44.1 kHz stereo mp3 songs, as a real catalog holds them")
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                        help="also run the bfloat16 folds (deploy/overlays/bf16); auto: where this CPU runs them fast")
    parser.add_argument("--uploads-against", type=int, default=0, metavar="N",
                        help="also run the deployment with N uploads at a time (against the default 4)")
    args = parser.parse_args()
    clips = (folder_catalog(DATA / "gtzan_mini" / "genres") + folder_catalog(DATA / "gtzan_extra" / "genres"))
    if not clips:
        raise SystemExit(f"no clips under {DATA} (see ../shared/data/README.md)")
    clips = clips[: args.clips]
    if args.mp3:
        clips = as_mp3_songs(clips)
    shipped = ROOT / "models"
    configs = [Configuration("before", tuned=False, models=args.before_models),
               Configuration("tuned, before models", tuned=True, models=args.before_models, batching=True),
               Configuration("deployed", tuned=True, models=shipped, batching=True)]
    if args.bf16 == "on" or (args.bf16 == "auto" and cpu_has_fast_bf16()):
        configs.append(Configuration("deployed, bfloat16", tuned=True, models=shipped, batching=True,
                                     session_config=BF16_SESSION_CONFIG))
    else:
        print("deployed, bfloat16: not run (no AMX-BF16 or AMD AVX-512 BF16 on this CPU; --bf16 on runs it anyway)")
    if args.uploads_against:
        configs.append(Configuration(f"deployed, {args.uploads_against} uploads", tuned=True, models=shipped,
                                     batching=True, uploads=args.uploads_against))
    rows: dict[tuple[str, str], tuple[float, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as name, ExitStack() as stack:
        tmp = Path(name)
        write_catalog(tmp / "catalog.csv", clips)
        catalog = ["--catalog", str(tmp / "catalog.csv"), *root_arguments(clips)]
        for config in configs:  # every configuration's services up front, idle until their turn
            config.start(stack, tmp)
        print(f"fold models: before = {args.before_models}, deployed = {shipped}")
        what = "92 s stereo mp3 songs made of real clips" if args.mp3 else "real clips"
        print(f"ingesting {len(clips)} {what}, {CORES} cores; CPU in ms per song; "
              f"the configurations take turns ({args.rounds} warm rounds, the best kept)")
        n = len(clips)
        for config in configs:
            rows[(config.name, "cold")] = config.run(catalog, tmp / config.name / "cold", n, args.workers)
        for round_ in range(args.rounds):
            for config in configs:
                rate, cpu = config.run(catalog, tmp / config.name / f"warm{round_}", n, args.workers)
                if rate > rows.get((config.name, "warm"), (0.0, {}))[0]:
                    rows[(config.name, "warm")] = (rate, cpu)
        for config in configs:  # into the last warm index: every song is known
            rows[(config.name, "re-run, all known")] = config.run(
                catalog, tmp / config.name / f"warm{args.rounds - 1}", n, args.workers)
    parts = list(rows[("before", "cold")][1])
    print(f"{'configuration':<21} {'run':<18} {'songs/s':>8} " + " ".join(f"{p:>14}" for p in parts))
    for config in configs:
        for run in ("cold", "warm", "re-run, all known"):
            rate, cpu = rows[(config.name, run)]
            print(f"{config.name:<21} {run:<18} {rate:8.1f} " + " ".join(f"{cpu[p]:14.1f}" for p in parts))
    for config in configs[1:]:
        print(f"{config.name} vs before: cold {rows[(config.name, 'cold')][0] / rows[('before', 'cold')][0]:.2f}x, "
              f"warm {rows[(config.name, 'warm')][0] / rows[('before', 'warm')][0]:.2f}x songs/s")
    if args.uploads_against:
        name = f"deployed, {args.uploads_against} uploads"
        print(f"deployed ({UPLOADS_PER_PEER} uploads) vs {name}: "
              f"warm {rows[('deployed', 'warm')][0] / rows[(name, 'warm')][0]:.2f}x songs/s")
    speed = ISSUE_BEFORE_SONGS_PER_S / rows[("before", "warm")][0]  # this VM's speed drifts
    for config in configs[1:]:
        print(f"{config.name} at the issue's machine speed (before = {ISSUE_BEFORE_SONGS_PER_S} songs/s): "
              f"{rows[(config.name, 'warm')][0] * speed:.1f} songs/s warm (the issue's target: 20)")
    for config in configs:
        total = sum(rows[(config.name, "warm")][1].values())
        print(f"{config.name}: {total:.0f} ms of CPU per song in all -> at most {1e3 * CORES / total:.1f} songs/s "
              f"on {CORES} cores kept busy")


if __name__ == "__main__":
    main()
