"""Two sets of fold models side by side: the CPU of one clip's folds, and whether they agree.

    python -m bench.folds --against DIR [--models models] [--session-config FILE] [--batch 1]
                          [--clips 171] [--repeat 15]

DIR is another models folder (with its models.config), e.g. the folds before batch norms were
folded, extracted from git:
    mkdir -p var/models-v3 && git archive 80312b8~1 models | tar -x --strip-components=1 -C var/models-v3
Both sets are loaded in one process, one thread per op, as the model server runs them. They take
turns on real clips (--repeat rounds of one batch of --batch clips, so a slow spell of the
machine hits both alike) and the CPU time of each set's folds per clip is printed, best and
median. Then every real clip goes through both: the largest probability difference, on how many
clips any fold picked another genre, and on how many the majority vote changed (only meaningful
when both sets hold the same trained weights, e.g. a re-export).

--session-config runs the --models set under a TF Serving session config's graph rewrites (the
model server's TENSORFLOW_SESSION_CONFIG_FILE), the other set without them; e.g. the bfloat16
folds of deploy/components/tfserving-bf16 against the same folds in float32:
    python -m bench.folds --against models --session-config deploy/components/tfserving-bf16/session.config
"""

from __future__ import annotations

from services.common.threads import one_thread_per_worker

one_thread_per_worker()  # as the model server runs: one thread per op

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devtools.localrun import ROOT
from services.classifier.voting import Ballot, tally
from services.common.modelconfig import read_config
from services.common.quiet_tensorflow import import_tensorflow
from services.featurizer.pipeline import analyse
from services.modelserver.session_config import read_session_config

DATA = ROOT.parent / "shared" / "data"


def load_folds(models: Path) -> list:
    tf = import_tensorflow()
    entries = read_config(models / "models.config")
    return [tf.saved_model.load(str(e.path)).signatures["serving_default"] for e in entries]


def probabilities(folds: list, mel) -> np.ndarray:
    """[folds, clips, genres] for a batch of clips."""
    return np.array([fold(log_mel=mel)["probabilities"].numpy() for fold in folds])


@dataclass
class FoldSet:
    label: str
    folds: list
    rewrites: dict[str, bool]  # graph rewrites this set runs under

    def run(self, tf, mel) -> np.ndarray:
        tf.config.optimizer.set_experimental_options(self.rewrites)  # functions are instantiated per config
        return probabilities(self.folds, mel)


def votes(probs: np.ndarray) -> list[str]:
    """Each clip's majority vote, as the classifier counts it."""
    labels = [str(i) for i in range(probs.shape[-1])]
    return [tally(labels, [Ballot(str(f), p[c]) for f, p in enumerate(probs)]).genre for c in range(probs.shape[1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--against", type=Path, required=True, help="another models folder")
    parser.add_argument("--session-config", type=Path, help="a TF Serving session config for the --models set")
    parser.add_argument("--batch", type=int, default=1, help="clips per Predict in the timed rounds")
    parser.add_argument("--clips", type=int, default=171, help="at most this many real clips")
    parser.add_argument("--repeat", type=int, default=15, help="timed rounds, the sets taking turns")
    args = parser.parse_args()
    paths = sorted((DATA / "gtzan_mini" / "genres").glob("*/*.wav")) + sorted(
        (DATA / "gtzan_extra" / "genres").glob("*/*.flac"))
    if not paths:
        raise SystemExit(f"no clips under {DATA} (see ../shared/data/README.md)")
    tf = import_tensorflow()
    rewrites = read_session_config(args.session_config).rewrites if args.session_config else {}
    ours = FoldSet(f"{args.models}" + (f" + {args.session_config.name}" if rewrites else ""),
                   load_folds(args.models), rewrites)
    theirs = FoldSet(str(args.against), load_folds(args.against), dict.fromkeys(rewrites, False))
    sets = (ours, theirs)
    mels = [analyse(p.read_bytes(), p.name).features.log_mel for p in paths[: args.clips]]
    timed = tf.constant(np.stack(mels[: args.batch]))
    for fold_set in sets:
        fold_set.run(tf, timed)  # warm
    cpu: dict[str, list[float]] = {s.label: [] for s in sets}
    for _ in range(args.repeat):
        for fold_set in sets:
            start = time.process_time()
            fold_set.run(tf, timed)
            cpu[fold_set.label].append((time.process_time() - start) / len(timed))
    print(f"one 30 s clip's folds, CPU per clip in batches of {len(timed)}, {args.repeat} rounds taking turns, "
          "one thread per op:")
    for fold_set in sets:
        times = cpu[fold_set.label]
        print(f"  {fold_set.label:<28} {len(fold_set.folds)} folds: best {min(times) * 1e3:6.1f} ms, "
              f"median {statistics.median(times) * 1e3:6.1f} ms")
    print(f"{ours.label} / {theirs.label}: {min(cpu[ours.label]) / min(cpu[theirs.label]):.2f}x (best)")
    batches = [tf.constant(np.stack(mels[i : i + 8])) for i in range(0, len(mels), 8)]
    p = np.concatenate([ours.run(tf, b) for b in batches], axis=1)
    q = np.concatenate([theirs.run(tf, b) for b in batches], axis=1)
    if p.shape != q.shape:
        return
    picks = int((p.argmax(-1) != q.argmax(-1)).sum())
    changed = int((p.argmax(-1) != q.argmax(-1)).any(axis=0).sum())
    flipped = sum(a != b for a, b in zip(votes(p), votes(q), strict=True))
    print(f"{len(mels)} real clips: largest probability difference {float(np.abs(p - q).max()):.2e}; "
          f"fold picks changed {picks} of {p.shape[0] * p.shape[1]} (on {changed} clips); votes changed: {flipped}")


if __name__ == "__main__":
    main()
