"""Evaluation report of the fold models, regenerating the seed's table.

    python -m services.classifier.training.evaluate [--models models]

Writes reports/evaluation.json (all figures), reports/roc.png, reports/confusion.png and
prints the table: per-fold validation accuracy mean ± std, hold-out accuracy of the majority
vote, per-class and macro ROC AUC, sensitivity and specificity, the confusion matrix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import auc, confusion_matrix, roc_auc_score, roc_curve
from sklearn.preprocessing import label_binarize

from services.classifier.modelserver.config import latest_version
from services.classifier.voting import Ballot, tally
from services.featurizer.pipeline import analyse

ROOT = Path(__file__).resolve().parents[3]


def predict_folds(models_dir: Path, names: list[str], mels: np.ndarray) -> np.ndarray:
    """[folds, songs, genres] probabilities from each exported SavedModel."""
    import tensorflow as tf

    out = []
    for name in names:
        version = latest_version(models_dir / name)
        fn = tf.saved_model.load(str(models_dir / name / str(version))).signatures["serving_default"]
        out.append(
            np.concatenate(
                [fn(log_mel=tf.constant(mels[i : i + 8]))["probabilities"].numpy() for i in range(0, len(mels), 8)]
            )
        )
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    record = json.loads((args.models / "training.json").read_text())
    genres, names = record["genres"], [f["model"] for f in record["folds"]]
    paths = [Path(p) for p in record["holdout"]]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"hold-out audio missing (e.g. {missing[0]}): is ../shared/data present?")
    y_true = np.array([genres.index(p.parent.name) for p in paths])
    mels = np.stack([analyse(p.read_bytes(), p.name).features.log_mel for p in paths])
    probs = predict_folds(args.models, names, mels)
    votes = [tally(genres, [Ballot(n, probs[k, i]) for k, n in enumerate(names)]) for i in range(len(paths))]
    y_pred = np.array([genres.index(v.genre) for v in votes])
    score = probs.mean(axis=0)  # ensemble probability, for ROC
    onehot = label_binarize(y_true, classes=range(len(genres)))
    cm = confusion_matrix(y_true, y_pred, labels=range(len(genres)))
    per_class = {}
    for c, genre in enumerate(genres):
        tp = cm[c, c]
        fn = cm[c].sum() - tp
        fp = cm[:, c].sum() - tp
        tn = cm.sum() - tp - fn - fp
        per_class[genre] = {
            "roc_auc": float(roc_auc_score(onehot[:, c], score[:, c])),
            "sensitivity": float(tp / (tp + fn)) if tp + fn else None,
            "specificity": float(tn / (tn + fp)) if tn + fp else None,
        }
    val = [f["val_accuracy"] for f in record["folds"]]
    report = {
        "arch": record["arch"],
        "fold_val_accuracy": val,
        "fold_val_accuracy_mean": float(np.mean(val)),
        "fold_val_accuracy_std": float(np.std(val)),
        "holdout_songs": len(paths),
        "holdout_vote_accuracy": float(np.mean(y_pred == y_true)),
        "holdout_fold_accuracy": [float(np.mean(probs[k].argmax(1) == y_true)) for k in range(len(names))],
        "macro_roc_auc": float(np.mean([v["roc_auc"] for v in per_class.values()])),
        "per_class": per_class,
        "confusion_matrix": {"labels": genres, "rows_true_cols_predicted": cm.tolist()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluation.json").write_text(json.dumps(report, indent=1))
    plot_roc(args.out / "roc.png", genres, onehot, score)
    plot_confusion(args.out / "confusion.png", genres, cm)
    print(f"arch {record['arch']}, {len(names)} folds, hold-out {len(paths)} songs")
    print(f"fold validation accuracy  {report['fold_val_accuracy_mean']:.3f} ± {report['fold_val_accuracy_std']:.3f}")
    print(f"hold-out majority vote    {report['holdout_vote_accuracy']:.3f}")
    print(f"macro ROC AUC             {report['macro_roc_auc']:.3f}")
    print(f"{'genre':<10} {'AUC':>6} {'sens':>6} {'spec':>6}")
    for g, v in per_class.items():
        sens = "-" if v["sensitivity"] is None else f"{v['sensitivity']:.2f}"
        print(f"{g:<10} {v['roc_auc']:6.3f} {sens:>6} {v['specificity']:6.2f}")
    print(f"confusion matrix (rows true, cols predicted; {', '.join(genres)}):")
    for g, row in zip(genres, cm, strict=True):
        print(f"{g:<10} " + " ".join(f"{x:2d}" for x in row))
    print(f"wrote {args.out}/evaluation.json, roc.png, confusion.png")


def plot_roc(path: Path, genres: list[str], onehot: np.ndarray, score: np.ndarray) -> None:
    fig, ax = plt.subplots(figsize=(7, 6))
    for c, genre in enumerate(genres):
        fpr, tpr, _ = roc_curve(onehot[:, c], score[:, c])
        ax.plot(fpr, tpr, label=f"{genre} (AUC {auc(fpr, tpr):.2f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC per genre (hold-out)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(path: Path, genres: list[str], cm: np.ndarray) -> None:
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(genres)), genres, rotation=45, ha="right")
    ax.set_yticks(range(len(genres)), genres)
    for i in range(len(genres)):
        for j in range(len(genres)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (hold-out, majority vote)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
