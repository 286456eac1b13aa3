"""Two sets of fold models side by side: the CPU of one clip's folds, and whether they agree.

    python -m bench.folds --against DIR [--models models] [--clips 171] [--repeat 15]

DIR is another models folder (with its models.config), e.g. the folds before batch norms were
folded, extracted from git:
    mkdir -p var/models-v3 && git archive 80312b8~1 models | tar -x --strip-components=1 -C var/models-v3
Both sets are loaded in one process, one thread per op, as the model server runs them. They take
turns on one real clip (--repeat rounds, so a slow spell of the machine hits both alike) and
the CPU time of each set's folds is printed, best and median. Then every real clip goes through
both: the largest probability difference and on how many clips any fold picked another genre
(only meaningful when both sets hold the same trained weights, e.g. a re-export).
"""

from __future__ import annotations

from services.common.threads import one_thread_per_worker

one_thread_per_worker()  # as the model server runs: one thread per op

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from devtools.localrun import ROOT
from services.common.modelconfig import read_config
from services.common.quiet_tensorflow import import_tensorflow
from services.featurizer.pipeline import analyse

DATA = ROOT.parent / "shared" / "data"


def load_folds(models: Path) -> list:
    tf = import_tensorflow()
    entries = read_config(models / "models.config")
    return [tf.saved_model.load(str(e.path)).signatures["serving_default"] for e in entries]


def probabilities(folds: list, mel) -> np.ndarray:
    """[folds, genres] for one clip."""
    return np.array([fold(log_mel=mel)["probabilities"].numpy()[0] for fold in folds])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--against", type=Path, required=True, help="another models folder")
    parser.add_argument("--clips", type=int, default=171, help="at most this many real clips")
    parser.add_argument("--repeat", type=int, default=15, help="timed rounds, the sets taking turns")
    args = parser.parse_args()
    paths = sorted((DATA / "gtzan_mini" / "genres").glob("*/*.wav")) + sorted(
        (DATA / "gtzan_extra" / "genres").glob("*/*.flac"))
    if not paths:
        raise SystemExit(f"no clips under {DATA} (see ../shared/data/README.md)")
    tf = import_tensorflow()
    sets = {str(args.models): load_folds(args.models), str(args.against): load_folds(args.against)}
    mels = [tf.constant(analyse(p.read_bytes(), p.name).features.log_mel[None]) for p in paths[: args.clips]]
    for folds in sets.values():
        probabilities(folds, mels[0])  # warm
    cpu: dict[str, list[float]] = {name: [] for name in sets}
    for _ in range(args.repeat):
        for name, folds in sets.items():
            start = time.process_time()
            probabilities(folds, mels[0])
            cpu[name].append(time.process_time() - start)
    print(f"one 30 s clip's folds, CPU, {args.repeat} rounds taking turns, one thread per op:")
    for name, times in cpu.items():
        print(f"  {name:<28} {len(sets[name])} folds: best {min(times) * 1e3:6.1f} ms, "
              f"median {statistics.median(times) * 1e3:6.1f} ms")
    (a, b), (ours, theirs) = sets.keys(), sets.values()
    print(f"{a} / {b}: {min(cpu[a]) / min(cpu[b]):.2f}x (best)")
    worst, changed = 0.0, 0
    for mel in mels:
        p, q = probabilities(ours, mel), probabilities(theirs, mel)
        if p.shape == q.shape:
            worst = max(worst, float(np.abs(p - q).max()))
            changed += int((p.argmax(1) != q.argmax(1)).any())
    print(f"{len(mels)} real clips: largest probability difference {worst:.2e}; "
          f"clips where any fold picked another genre: {changed}")


if __name__ == "__main__":
    main()
