"""How much of the clip each fold must hear: accuracy against the frames a fold sees.

    python -m training.tile_budget [--models models] [--out reports]

Fewer frames per fold is the one way to cut the folds' CPU without retraining (their cost is
proportional to the frames they see). This measures what it costs in accuracy, with the
shipped weights (each fold's `trained` variables, the same network as served):
- out of fold (142 clips, each judged by the fold that never trained on it): balanced accuracy
  when a fold sees s of a clip's n tiles, averaged over every choice of s tiles;
- hold-out (29 clips, the majority vote of the five folds, ties to the larger summed
  probability as the classifier breaks them) when the folds share the tiles out between them,
  each fold hearing part of the clip and the five together all of it.
Writes <out>/tile_budget.json and tile_budget.png.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from services.classifier.voting import Ballot, tally
from training.calibrate import calibrated
from training.export import newest_version, trained_model
from training.stats import balanced_accuracy
from training.tiling import scale, tf
from training.train import recorded_clips

TILINGS = (4, 5, 8)  # tiles per 938-frame clip: 235, 188 and 118 frames each
# Hold-out schemes: (tiles per clip, the tiles fold k hears)
SHARED = {
    "every fold, every tile (served)": (4, lambda k: [0, 1, 2, 3]),
    "2 of 4 tiles per fold, alternating": (4, lambda k: [k % 2, k % 2 + 2]),
    "1 of 4 tiles per fold": (4, lambda k: [k % 4]),
    "1 of 5 tiles per fold (each fold its own)": (5, lambda k: [k]),
    "2 of 8 tiles per fold": (8, lambda k: [k % 8, (k + 4) % 8]),
}


def tiles(mel: np.ndarray, n: int) -> np.ndarray:
    """n tiles meeting end to end over the clip's frames, as training/tiling.py places them."""
    frames = mel.shape[1]
    width = -(-frames // n)
    starts = [round(j * (frames - width) / (n - 1)) for j in range(n)]
    return np.stack([mel[:, s : s + width] for s in starts])


def tile_logits(model, mels: np.ndarray, n: int) -> np.ndarray:
    """[clips, n, genres] logits of every tile."""
    x = np.stack([tiles(m, n) for m in mels])
    flat = scale(x.reshape(-1, x.shape[2], x.shape[3], 1))
    out = [model(tf.constant(flat[i : i + 64]), training=False).numpy() for i in range(0, len(flat), 64)]
    return np.concatenate(out).reshape(len(mels), n, -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    record = json.loads((args.models / "training.json").read_text())
    genres = record["genres"]

    holdout = recorded_clips(record["holdout"], genres)
    folds = [recorded_clips(f["validation"], genres) for f in record["folds"]]
    models = [trained_model(newest_version(args.models / f["model"]), record["arch"], len(genres))
              for f in record["folds"]]
    temperatures = [f["temperature"] for f in record["folds"]]
    clip_frames = holdout.mels.shape[2]  # every clip's mel is padded to the same 30 s
    width = {n: -(-clip_frames // n) for n in TILINGS}  # frames of one tile
    labels = np.concatenate([f.labels for f in folds])  # the folds' clips, in the folds' order

    out_of_fold: dict[str, list[dict]] = {}
    for n in TILINGS:
        own = [tile_logits(models[k], folds[k].mels, n) for k in range(len(models))]
        rows = []
        for seen in range(1, n + 1):
            scores = [balanced_accuracy(labels, np.concatenate([lg[:, list(c)].mean(1).argmax(1) for lg in own]))
                      for c in itertools.combinations(range(n), seen)]
            rows.append({"tiles": seen, "frames": seen * width[n],
                         "balanced_accuracy": float(np.mean(scores)), "min": float(np.min(scores)),
                         "max": float(np.max(scores))})
            print(f"out of fold, {n} tiles of {width[n]} frames, {seen} heard: balanced accuracy "
                  f"{rows[-1]['balanced_accuracy']:.3f} (choices {rows[-1]['min']:.3f}-{rows[-1]['max']:.3f})")
        out_of_fold[str(n)] = rows

    held = {n: [tile_logits(m, holdout.mels, n) for m in models] for n in TILINGS}
    shared = {}
    for name, (n, heard) in SHARED.items():
        probs = [calibrated(held[n][k][:, heard(k)].mean(1), temperatures[k]) for k in range(len(models))]
        votes = [tally(genres, [Ballot(str(k), p[c]) for k, p in enumerate(probs)]) for c in range(len(holdout.labels))]
        pred = np.array([genres.index(v.genre) for v in votes])
        frames = len(heard(0)) * width[n]
        shared[name] = {"frames_per_fold": frames, "vote_accuracy": float(np.mean(pred == holdout.labels)),
                        "vote_balanced_accuracy": float(balanced_accuracy(holdout.labels, pred))}
        print(f"hold-out vote, {name}: {frames} frames a fold, accuracy {shared[name]['vote_accuracy']:.3f}, "
              f"balanced {shared[name]['vote_balanced_accuracy']:.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tile_budget.json").write_text(json.dumps({"out_of_fold": out_of_fold, "holdout_shared": shared},
                                                          indent=1))
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, rows in out_of_fold.items():
        mean = np.array([r["balanced_accuracy"] for r in rows])
        spread = [mean - [r["min"] for r in rows], [r["max"] for r in rows] - mean]
        ax.errorbar([r["frames"] / clip_frames * 30 for r in rows], mean, yerr=spread, marker="o", capsize=3,
                    label=f"{n} tiles a clip")
    ax.set_xlabel("seconds of the 30 s clip a fold hears")
    ax.set_ylabel("out-of-fold balanced accuracy (142 clips)")
    ax.set_title("What a fold loses when it hears less of the clip")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "tile_budget.png", dpi=120)
    print(f"wrote {args.out / 'tile_budget.json'} and {args.out / 'tile_budget.png'}")


if __name__ == "__main__":
    main()
