"""Architecture table and learning curve, on the same artist-aware split as training.

    python -m training.compare architectures [--archs ...] [--epochs 20 --patience 6 --crops 2]
    python -m training.compare learning-curve

`architectures` trains every arch on the five grouped folds with the same recipe and budget
(no export) and writes reports/architectures.json: fold validation accuracy mean ± std (the
seed's table) and the hold-out accuracy of each arch's 5-fold vote.
`learning-curve` trains on 2, 4, ... clips per genre (random clips of the fold set, fixed
epochs, one model) and scores the hold-out; the features-only baseline is traced beside it
(mean of 5 draws). Writes reports/learning_curve.json; `python -m training.evaluate` plots both.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training import data
from training.augment import Recipe
from training.splits import grouped_folds, holdout_split
from training.stats import accuracy, balanced_accuracy, with_ci
from training.train import GTZAN_ROOTS, ROOT, load_dataset, train_fold

REPORTS = ROOT / "reports"


def split(seed: int, holdout: float) -> tuple[data.Dataset, data.Dataset, np.ndarray]:
    ds, _ = load_dataset(GTZAN_ROOTS, None)
    groups = data.groups(ds)
    rest, held = holdout_split(ds.labels, groups, holdout, seed)
    return ds.subset(rest), ds.subset(held), groups[rest]


def clip_probabilities(model, temperature: float, mels: np.ndarray) -> np.ndarray:
    from training.calibrate import calibrated
    from training.tiling import clip_logits, tf

    return calibrated(clip_logits(model, tf.constant(mels)).numpy(), temperature)


def architectures(args) -> None:
    train, held, groups = split(args.seed, args.holdout)
    folds = grouped_folds(train.labels, groups, 5, args.seed)
    table = REPORTS / "architectures.json"
    # rows of archs run before are kept (one arch may be run on its own later)
    rows: list[dict] = json.loads(table.read_text())["rows"] if table.exists() else []
    for arch in args.archs:
        started = time.time()
        val, votes = [], []
        for k, (tr, va) in enumerate(tqdm(folds, desc=arch, unit="fold")):
            recipe = Recipe(crops_per_song=args.crops)
            result = train_fold(train.subset(tr), train.subset(va), arch, recipe, epochs=args.epochs,
                                patience=args.patience, lr=2e-3, batch=32, seed=args.seed + k, label=f"{arch} {k}")
            val.append(result.val_accuracy)
            votes.append(clip_probabilities(result.model, result.temperature, held.mels).argmax(1))
            ballots = np.stack(votes)  # [folds so far, clips]
            vote = np.array([np.bincount(col, minlength=len(train.genres)).argmax() for col in ballots.T])
            row = {"arch": arch, "folds_done": len(val), "fold_val_mean": float(np.mean(val)),
                   "fold_val_std": float(np.std(val)), "fold_val": val,
                   "holdout_vote_accuracy": accuracy(held.labels, vote),
                   "holdout_vote_balanced_accuracy": balanced_accuracy(held.labels, vote),
                   "params": int(result.model.count_params()), "minutes": round((time.time() - started) / 60, 1)}
            rows = [r for r in rows if r["arch"] != arch] + [row]  # written after every fold
            write(table, {
                "protocol": f"5 grouped folds, same recipe and budget for every arch: {args.crops} crops per "
                            f"clip and epoch, at most {args.epochs} epochs, patience {args.patience}",
                "seed_table": {"resnet50": 69.17, "xception": 70.83, "mobilenet": 69.17,
                               "note": "the seed's 5-fold means, on random (leaky) folds"},
                "rows": rows,
            })
        tqdm.write(json.dumps(rows[-1]))


def learning_curve(args) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, held, _ = split(args.seed, args.holdout)
    rng = np.random.default_rng(args.seed)
    per_genre = np.bincount(train.labels)
    sizes = [n for n in (2, 4, 6, 8, 10) if n < per_genre.max()] + [int(per_genre.max())]

    def draw(n: int, draw_rng: np.random.Generator) -> np.ndarray:
        return np.concatenate([
            draw_rng.permutation(np.flatnonzero(train.labels == g))[:n] for g in range(len(train.genres))
        ])

    series = {"features (logistic regression)": [], f"{args.arch} (single model)": []}
    for n in tqdm(sizes, desc="learning curve", unit="size"):
        preds = []
        for d in range(5):
            idx = draw(n, np.random.default_rng(1000 * n + d))
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
            preds.append(model.fit(train.vectors[idx], train.labels[idx]).predict(held.vectors))
        pooled_true = np.tile(held.labels, len(preds))
        series["features (logistic regression)"].append(point(n, train, idx, pooled_true, np.concatenate(preds)))
        idx = draw(n, rng)
        result = train_fold(train.subset(idx), held, args.arch, Recipe(), epochs=args.epochs, patience=args.epochs,
                            lr=2e-3, batch=32, seed=args.seed, label=f"{n}/genre", keep_best=False)
        # fixed epochs: the last epoch's model, not the hold-out's best
        final = clip_probabilities(result.model, 1.0, held.mels).argmax(1)
        series[f"{args.arch} (single model)"].append(point(n, train, idx, held.labels, final))
        write(REPORTS / "learning_curve.json", {
            "protocol": f"random clips per genre from the fold set; CNN: one model, {args.epochs} epochs, "
                        "last epoch (the hold-out is not used to pick it); features: mean of 5 draws",
            "holdout_clips": len(held.labels),
            "series": [{"name": k, "points": v} for k, v in series.items()],
        })


def point(n: int, train: data.Dataset, idx: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    counts = np.bincount(train.labels[idx], minlength=len(train.genres))
    return {"clips_per_genre": float(counts.mean()), "requested": n,
            "balanced_accuracy": with_ci(balanced_accuracy, y_true, y_pred), "accuracy": accuracy(y_true, y_pred)}


def write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["architectures", "learning-curve"])
    parser.add_argument("--archs", nargs="+", default=["xception-micro", "xception-mini", "mobilenet", "resnet50"])
    parser.add_argument("--arch", default="xception-mini", help="learning curve: the arch to trace")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--crops", type=int, default=4, help="architectures: random crops per clip and epoch")
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    architectures(args) if args.what == "architectures" else learning_curve(args)


if __name__ == "__main__":
    main()
