"""Ingestion throughput on real clips: songs/s and CPU per song, today's settings against the
tuned ones, measured side by side in one run.

    python -m bench.ingest [--clips 171] [--workers 8]

Every configuration runs the real services on loopback (model server stand-in, featurizer,
classifier) and `services.recommender.ingest` on the GTZAN clips in ../shared/data:
- before: the path before issue 11: no batching, BLAS/TF pools as wide as the cores, 2 songs in
  flight, TensorFlow's oneDNN kernels off (TF_ENABLE_ONEDNN_OPTS=0, as quiet_tensorflow.py had it);
- one thread: one BLAS/TF thread per worker, workers = cores in each service, more songs in
  flight, oneDNN on (TensorFlow's default);
- + batching (what deploy/base runs): the same, and the model server batches concurrent Predicts
  with deploy/components/tfserving-batching/batching.config (as TF Serving with --enable_batching).
Each configuration ingests the clips twice into fresh indexes: cold (services just started) and
warm (services warmed by the first run); then once more into the warm index, where every song
is already known (an incremental re-run). CPU per song is read from /proc for each process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from devtools.demo_catalog import folder_catalog
from devtools.localrun import ROOT, running
from services.recommender.catalog import write_catalog

DATA = ROOT.parent / "shared" / "data"
# one thread inside each op; the model server keeps an inter-op pool as wide as its workers
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                     "NUMBA_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")}
CORES = os.cpu_count() or 2
# what the services did before issue 11: every library's pool at full width, oneDNN off
BEFORE = {**{name: str(CORES) for name in (*ONE_THREAD, "TF_NUM_INTEROP_THREADS")}, "TF_ENABLE_ONEDNN_OPTS": "0"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest(catalog: Path, index_dir: Path, addresses: dict[str, str], workers: int) -> tuple[float, float, str]:
    """(wall seconds, client CPU seconds, last line of output)."""
    command = [sys.executable, "-m", "services.recommender.ingest", "--catalog", str(catalog), "--index-dir",
               str(index_dir), "--featurizer", addresses["featurizer"], "--classifier", addresses["classifier"],
               "--workers", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    usage = os.times()
    return wall, usage.children_user + usage.children_system, done.stdout.strip().splitlines()[-1]


def configuration(name: str, catalog: Path, songs: int, tmp: Path, tuned: bool, workers: int,
                  batching: bool = False) -> list[tuple]:
    threads = ONE_THREAD if tuned else BEFORE
    models = {"MODEL_CONFIG_FILE": str(ROOT / "models" / "models.config"), **threads}
    models.update(MODEL_SERVER_WORKERS=str(CORES if tuned else 2))
    if batching:
        models.update(ENABLE_BATCHING="1")
    rows = []
    with ExitStack() as stack:
        ms = stack.enter_context(running("services.modelserver", models, tmp))
        fz = stack.enter_context(running("services.featurizer", {**threads, "FEATURIZER_WORKERS": str(CORES),
                                                                  "MAX_UPLOADS_PER_PEER": "64"}, tmp))
        cl = stack.enter_context(running("services.classifier", {**models, "TF_SERVING_ADDR": ms.address}, tmp))
        procs = {"model server": ms, "featurizer": fz, "classifier": cl}
        addresses = {"featurizer": fz.address, "classifier": cl.address}
        in_flight = workers if tuned else 2
        for run, index in (("cold", "a"), ("warm", "b"), ("re-run, all known", "b")):
            before = {k: cpu_seconds(p.process.pid) for k, p in procs.items()}
            client_before = os.times().children_user + os.times().children_system
            wall, client_after, _ = ingest(catalog, tmp / name / index, addresses, in_flight)
            cpu = {k: (cpu_seconds(p.process.pid) - before[k]) * 1e3 / songs for k, p in procs.items()}
            cpu["ingest client"] = (client_after - client_before) * 1e3 / songs
            rows.append((name, run, songs / wall, cpu))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=171, help="at most this many real clips")
    parser.add_argument("--workers", type=int, default=4 * CORES, help="songs in flight, tuned configuration")
    args = parser.parse_args()
    clips = (folder_catalog(DATA / "gtzan_mini" / "genres") + folder_catalog(DATA / "gtzan_extra" / "genres"))
    if not clips:
        raise SystemExit(f"no clips under {DATA} (see ../shared/data/README.md)")
    clips = clips[: args.clips]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        catalog = tmp / "catalog.csv"
        write_catalog(catalog, clips)
        print(f"ingesting {len(clips)} real clips, {CORES} cores; CPU in ms per song")
        rows = configuration("before", catalog, len(clips), tmp, tuned=False, workers=2)
        rows += configuration("one thread", catalog, len(clips), tmp, tuned=True, workers=args.workers)
        rows += configuration("+ batching", catalog, len(clips), tmp, tuned=True, workers=args.workers, batching=True)
    parts = list(rows[0][3])
    print(f"{'configuration':<13} {'run':<18} {'songs/s':>8} " + " ".join(f"{p:>14}" for p in parts))
    for config, run, rate, cpu in rows:
        print(f"{config:<13} {run:<18} {rate:8.1f} " + " ".join(f"{cpu[p]:14.1f}" for p in parts))
    by = {(c, r): rate for c, r, rate, _ in rows}
    for config in ("one thread", "+ batching"):
        print(f"{config} vs before: cold {by[(config, 'cold')] / by[('before', 'cold')]:.2f}x, "
              f"warm {by[(config, 'warm')] / by[('before', 'warm')]:.2f}x songs/s")
    for config, run, _, cpu in rows:
        if run == "warm":
            total = sum(cpu.values())
            print(f"{config}: {total:.0f} ms of CPU per song in all -> at most {1e3 * CORES / total:.1f} songs/s "
                  f"on {CORES} cores kept busy")


if __name__ == "__main__":
    main()
