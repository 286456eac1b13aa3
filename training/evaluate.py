"""The evaluation report of the shipped models: the ear and its five fold heads.

    python -m training.evaluate [--models models] [--out reports]

Reads <models>/training.json (splits, fold figures), runs the exported SavedModels in-process
(the ear once per clip, then every fold head on its embedding) on the artist-aware hold-out, and
writes <out>/evaluation.json with: per-fold validation accuracy, hold-out vote accuracy and
balanced accuracy with 95 % bootstrap intervals, today's from-scratch folds on the hold-out clips
they never saw (reports/legacy_xception.json), the features-only baseline on the same split,
per-class ROC AUC / sensitivity / specificity, calibration (ECE before and after temperature
scaling, accuracy of unanimous and split votes), the similarity space and the routing table
(genre-consistency@5), and, when training/ear/compare.py has run, the heads table, the patches
study and the learning curve. Plots: confusion.png, roc.png, reliability.png, learning_curve.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import auc, confusion_matrix, roc_auc_score, roc_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, label_binarize

from services.classifier.voting import Ballot, tally
from services.common.modelconfig import EAR_MODEL, latest_version
from services.recommender.index.space import EMBEDDING_SHARE
from services.recommender.search.routing import RoutingPolicy, Vote
from training import data
from training.calibrate import calibrated, reliability
from training.ear.clips import CACHE, ROOT
from training.routing_eval import CatalogClips, CatalogIndex, Queries, compare, tune_mass, tune_share
from training.stats import accuracy, balanced_accuracy, fmt, with_ci


def resolve(path: str) -> Path:
    """training.json's paths are relative to the folder holding the checkout (../shared/...)."""
    return (ROOT.parent / path).resolve()


def _signature(models_dir: Path, name: str):
    from services.common.quiet_tensorflow import import_tensorflow

    tf = import_tensorflow()
    version = latest_version(models_dir / name)
    return tf, tf.saved_model.load(str(models_dir / name / str(version))).signatures["serving_default"]


def embed(models_dir: Path, mels: np.ndarray) -> np.ndarray:
    """[clips, D] the served ear's embeddings."""
    tf, fn = _signature(models_dir, EAR_MODEL)
    return np.concatenate([fn(log_mel=tf.constant(mels[i : i + 8]))["embedding"].numpy()
                           for i in range(0, len(mels), 8)])


def predict_folds(models_dir: Path, names: list[str], embeddings: np.ndarray) -> np.ndarray:
    """[folds, clips, genres] calibrated probabilities from each exported fold head."""
    out = []
    for name in names:
        tf, fn = _signature(models_dir, name)
        out.append(fn(embedding=tf.constant(embeddings))["probabilities"].numpy())
    return np.stack(out)


def legacy(paths: list[str], y_true: np.ndarray, new_pred: np.ndarray, out: Path) -> dict | None:
    """Today's from-scratch folds (their recorded predictions) beside the new vote, on the
    hold-out clips the old folds never trained on."""
    path = out / "legacy_xception.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    names = [p.split("shared/data/")[-1] for p in paths]
    unseen = [i for i, n in enumerate(names) if n in set(record["holdout"])]
    probs = np.stack([np.array(record["predictions"][names[i]]) for i in unseen], axis=1)
    ballots = [[Ballot(str(k), p[j]) for k, p in enumerate(probs)] for j in range(len(unseen))]
    old = np.array([record["labels"].index(tally(record["labels"], b).genre) for b in ballots])
    y = y_true[unseen]
    return {"what": record["what"], "clips": len(unseen),
            "old_vote_balanced_accuracy": with_ci(balanced_accuracy, y, old),
            "new_vote_balanced_accuracy": with_ci(balanced_accuracy, y, new_pred[unseen])}


def fold_masks(record: dict, clips: int):
    """(fold record, mask of its validation clips) for each fold: the fold clips are loaded as the
    folds' validation lists one after another, so fold k owns the k-th run of them."""
    start = 0
    for fold in record["folds"]:
        inside = np.zeros(clips, bool)
        inside[start : start + len(fold["validation"])] = True
        start += len(fold["validation"])
        yield fold, inside


def out_of_fold(record: dict, train: data.Dataset, genres: list[str]) -> dict:
    """Every fold clip predicted by the fold model that did not train on it (and by the
    features-only baseline trained on the same other folds): 142 artist-aware test clips
    instead of the hold-out's few, for a tighter interval (single models, not the vote)."""
    cnn, base = [], []
    for fold, inside in fold_masks(record, len(train.labels)):
        cnn.append(np.array(fold["validation_logits"]).argmax(1))
        base.append(features_baseline(train.subset(np.flatnonzero(~inside)), train.subset(np.flatnonzero(inside))))
    y = train.labels
    return {
        "clips": len(y),
        "fold_models_balanced_accuracy": with_ci(balanced_accuracy, y, np.concatenate(cnn)),
        "features_baseline_balanced_accuracy": with_ci(balanced_accuracy, y, np.concatenate(base)),
    }


def features_baseline(train: data.Dataset, test: data.Dataset) -> np.ndarray:
    """A regularised logistic regression on the hand-crafted vector, same split: predictions."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
    return model.fit(train.vectors, train.labels).predict(test.vectors)


def per_class(genres: list[str], cm: np.ndarray, onehot: np.ndarray, score: np.ndarray) -> dict:
    out = {}
    for c, genre in enumerate(genres):
        tp = cm[c, c]
        fn, fp = cm[c].sum() - tp, cm[:, c].sum() - tp
        tn = cm.sum() - tp - fn - fp
        present = 0 < onehot[:, c].sum() < len(onehot)
        out[genre] = {
            "roc_auc": float(roc_auc_score(onehot[:, c], score[:, c])) if present else None,
            "sensitivity": float(tp / (tp + fn)) if tp + fn else None,
            "specificity": float(tn / (tn + fp)) if tn + fp else None,
            "support": int(onehot[:, c].sum()),
        }
    return out


def calibration(record: dict, probs: np.ndarray, votes, y_true: np.ndarray, genres: list[str]) -> dict:
    """ECE of the folds on their own validation folds (before/after T) and of the served
    ensemble on the hold-out; how often unanimous and split votes are right."""
    before, after = [], []
    for fold in record["folds"]:
        logits = np.array(fold["validation_logits"])
        labels = np.array([genres.index(Path(p).parent.name) for p in fold["validation"]])
        raw = calibrated(logits, 1.0)
        scaled = calibrated(logits, fold["temperature"])
        before.append(reliability(raw.max(1), raw.argmax(1) == labels)["ece"])
        after.append(reliability(scaled.max(1), scaled.argmax(1) == labels)["ece"])
    ensemble = probs.mean(axis=0)
    vote_idx = np.array([genres.index(v.genre) for v in votes])
    correct = vote_idx == y_true
    unanimous = np.array([v.votes == v.voters for v in votes])
    share = np.array([v.votes / v.voters for v in votes])
    return {
        "fold_validation_ece_before_temperature": float(np.mean(before)),
        "fold_validation_ece_after_temperature": float(np.mean(after)),
        "temperatures": [f["temperature"] for f in record["folds"]],
        "holdout_ensemble": reliability(ensemble.max(1), ensemble.argmax(1) == y_true),
        "holdout_vote_share": reliability(share, correct),
        "unanimous_votes": {"count": int(unanimous.sum()), "accuracy": accuracy(correct[unanimous], True)},
        "split_votes": {"count": int((~unanimous).sum()), "accuracy": accuracy(correct[~unanimous], True)},
    }


def out_of_fold_pairs(record: dict, train: data.Dataset, vectors: np.ndarray, genres: list[str],
                      share: float) -> list[tuple[CatalogIndex, Queries]]:
    """Per fold: a catalog of the other folds' clips, and the fold's validation clips as queries
    with the calibrated prediction of the fold head that did not train on them
    (train.paths lists the folds' validation clips in fold order)."""
    pairs = []
    for fold, inside in fold_masks(record, len(train.paths)):
        catalog = CatalogClips([Path(p).stem for p in np.array(train.paths)[~inside]],
                               [genres[i] for i in train.labels[~inside]], vectors[~inside], share)
        votes = []
        for p in calibrated(np.array(fold["validation_logits"]), fold["temperature"]):
            ranking = [genres[i] for i in np.argsort(-p)]
            votes.append(Vote(ranking, {g: float(q) for g, q in zip(genres, p, strict=True)}, 1.0))
        queries = Queries(vectors[inside], [genres[i] for i in train.labels[inside]], votes)
        pairs.append((CatalogIndex(catalog), queries))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    parser.add_argument("--session-config", type=Path,
                        help="run the models under a TF Serving session config, e.g. "
                             "deploy/components/tfserving-bf16/session.config (bfloat16)")
    args = parser.parse_args()
    if args.session_config:
        from services.common.quiet_tensorflow import import_tensorflow
        from services.modelserver.session_config import apply_session_config

        print(f"session config: {apply_session_config(import_tensorflow(), args.session_config).rewrites}")
    record = json.loads((args.models / "training.json").read_text())
    genres, names = record["genres"], [f["model"] for f in record["folds"]]
    holdout_paths = [str(resolve(p)) for p in record["holdout"]]
    train_paths = [str(resolve(p)) for f in record["folds"] for p in f["validation"]]  # every fold clip once
    missing = [p for p in holdout_paths + train_paths if not Path(p).exists()]
    if missing:
        raise SystemExit(f"audio missing (e.g. {missing[0]}): is ../shared/data beside the project?")
    items = lambda paths: [(Path(p), Path(p).parent.name) for p in paths]  # noqa: E731
    holdout = data.load(items(holdout_paths), CACHE, genres)
    train = data.load(items(train_paths), CACHE, genres)

    held_embedding = embed(args.models, holdout.mels)
    train_embedding = embed(args.models, train.mels)
    probs = predict_folds(args.models, names, held_embedding)
    votes = [tally(genres, [Ballot(n, probs[k, i]) for k, n in enumerate(names)]) for i in range(len(holdout_paths))]
    y_true = holdout.labels
    y_pred = np.array([genres.index(v.genre) for v in votes])
    y_base = features_baseline(train, holdout)
    ensemble = probs.mean(axis=0)
    onehot = label_binarize(y_true, classes=range(len(genres)))
    cm = confusion_matrix(y_true, y_pred, labels=range(len(genres)))
    classes = per_class(genres, cm, onehot, ensemble)
    aucs = [v["roc_auc"] for v in classes.values() if v["roc_auc"] is not None]
    val = [f["val_accuracy"] for f in record["folds"]]

    train_vectors = np.hstack([train.vectors, train_embedding])
    held_vectors = np.hstack([holdout.vectors, held_embedding])
    space = tune_share(lambda share: out_of_fold_pairs(record, train, train_vectors, genres, share))
    share = EMBEDDING_SHARE  # the shipped space (space.py says why not best_share when they differ)
    catalog = CatalogIndex(CatalogClips([Path(p).stem for p in train.paths], [genres[i] for i in train.labels],
                                        train_vectors, share))
    tuning = tune_mass(out_of_fold_pairs(record, train, train_vectors, genres, share))
    policy = RoutingPolicy(mass=tuning["best"]["mass"], prior_weight=tuning["best"]["prior_weight"])
    routing_votes = [
        Vote([r[0] for r in v.ranking], {r[0]: r[3] for r in v.ranking}, v.votes / v.voters) for v in votes
    ]
    truths = [genres[i] for i in y_true]
    routing = compare(catalog, Queries(held_vectors, truths, routing_votes), policy)
    features_only = CatalogIndex(CatalogClips([Path(p).stem for p in train.paths],
                                              [genres[i] for i in train.labels], train.vectors))
    routing_features_only = compare(features_only, Queries(holdout.vectors, truths, routing_votes), policy)
    vote_right = y_pred == y_true
    for result in routing.values():
        per_query = np.array(result.pop("per_query"))
        result["when_vote_right"] = float(per_query[vote_right].mean()) if vote_right.any() else None
        result["when_vote_wrong"] = float(per_query[~vote_right].mean()) if (~vote_right).any() else None
    for result in routing_features_only.values():
        result.pop("per_query")

    report = {
        "ear": record["ear"],
        "head": record["head"],
        "genres": genres,
        "split": {"holdout_clips": len(holdout_paths), "fold_clips": len(train_paths),
                  "grouping": "real artists (gtzan_metadata.csv; the GTZAN id block where none is given); "
                              "content duplicates dropped first",
                  "extra_training_clips": record.get("extra"),
                  "duplicates_dropped": record.get("duplicates_dropped", [])},
        "fold_val_accuracy": val,
        "fold_val_accuracy_mean": float(np.mean(val)),
        "fold_val_accuracy_std": float(np.std(val)),
        "holdout_vote_accuracy": with_ci(accuracy, y_true, y_pred),
        "holdout_vote_balanced_accuracy": with_ci(balanced_accuracy, y_true, y_pred),
        "holdout_fold_accuracy": [accuracy(y_true, probs[k].argmax(1)) for k in range(len(names))],
        "old_models_side_by_side": legacy(holdout_paths, y_true, y_pred, args.out),
        "features_baseline": {
            "model": "StandardScaler + LogisticRegression(C=0.1) on the 57 features, trained on the fold clips",
            "accuracy": with_ci(accuracy, y_true, y_base),
            "balanced_accuracy": with_ci(balanced_accuracy, y_true, y_base),
        },
        "out_of_fold": out_of_fold(record, train, genres),
        "macro_roc_auc": float(np.mean(aucs)) if aucs else None,
        "per_class": classes,
        "confusion_matrix": {"labels": genres, "rows_true_cols_predicted": cm.tolist()},
        "calibration": calibration(record, probs, votes, y_true, genres),
        "similarity_space": {
            "protocol": "consistency@5 out of fold (each fold's clips queried against the other folds', routed "
                        "by the fold head that did not train on them) for each share of the ear's embedding in "
                        "the space (services/recommender/index/space.py)",
            **space,
        },
        "routing": {
            "protocol": "catalog = the fold clips (true genres); queries = the hold-out clips routed from the "
                        "shipped models' calibrated vote; mass settings tuned on out-of-fold predictions of the "
                        "fold clips (each clip queried against the others), never on the hold-out",
            "tuning_out_of_fold": tuning,
            "policy": {"mass": policy.mass, "runner_up_below": policy.runner_up_below,
                       "prior_weight": policy.prior_weight},
            "embedding_share": share,
            "strategies": routing,
            "strategies_features_only_space": routing_features_only,
        },
    }
    for extra in ("heads", "patches", "learning_curve"):
        path = args.out / f"{extra}.json"
        if path.exists():
            report[extra] = json.loads(path.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluation.json").write_text(json.dumps(report, indent=1))
    plot_roc(args.out / "roc.png", genres, onehot, ensemble)
    plot_confusion(args.out / "confusion.png", genres, cm)
    plot_reliability(args.out / "reliability.png", report["calibration"])
    if "learning_curve" in report:
        shipped = (len(train_paths) / len(genres), report["holdout_vote_balanced_accuracy"])
        plot_learning_curve(args.out / "learning_curve.png", report["learning_curve"], shipped)
    print_report(report)


def print_report(r: dict) -> None:
    cal = r["calibration"]
    print(f"ear {r['ear']['model']} + {r['head']} heads; hold-out {r['split']['holdout_clips']} clips "
          f"(whole artists), folds over {r['split']['fold_clips']}")
    print(f"fold validation accuracy    {r['fold_val_accuracy_mean']:.3f} ± {r['fold_val_accuracy_std']:.3f}")
    print(f"hold-out vote accuracy      {fmt(r['holdout_vote_accuracy'])}")
    print(f"hold-out balanced accuracy  {fmt(r['holdout_vote_balanced_accuracy'])}")
    print(f"features-only baseline      {fmt(r['features_baseline']['balanced_accuracy'])} (balanced)")
    oof = r["out_of_fold"]
    print(f"out of fold ({oof['clips']} clips): fold models {fmt(oof['fold_models_balanced_accuracy'])}, "
          f"features-only {fmt(oof['features_baseline_balanced_accuracy'])} (balanced)")
    print(f"macro ROC AUC               {r['macro_roc_auc']:.3f}")
    print(f"ECE on validation folds     {cal['fold_validation_ece_before_temperature']:.3f} -> "
          f"{cal['fold_validation_ece_after_temperature']:.3f} with temperature scaling; "
          f"hold-out ensemble ECE {cal['holdout_ensemble']['ece']:.3f}")
    print(f"unanimous votes right       {cal['unanimous_votes']['accuracy']:.2f} of {cal['unanimous_votes']['count']}; "
          f"split votes {cal['split_votes']['accuracy']:.2f} of {cal['split_votes']['count']}")
    tuned = r["routing"]["tuning_out_of_fold"]
    print(f"routing tuned out of fold: best mass {tuned['best']['mass']}, prior weight "
          f"{tuned['best']['prior_weight']}: {tuned['best']['consistency_at_k']:.3f} vs hard vote "
          f"{tuned['vote_consistency_at_k']:.3f}")
    print("routing (genre-consistency@5 on the hold-out):")
    for name, v in r["routing"]["strategies"].items():
        print(f"  {name:<10} {v['consistency_at_k']:.3f}  ({v['mean_genres_searched']:.1f} genres per query)")
    print(f"{'genre':<10} {'AUC':>6} {'sens':>6} {'spec':>6} {'n':>3}")
    for g, v in r["per_class"].items():
        show = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        cells = [show(v["roc_auc"]), show(v["sensitivity"]), show(v["specificity"])]
        print(f"{g:<10} " + " ".join(f"{c:>6}" for c in cells) + f" {v['support']:>3}")
    old = r["old_models_side_by_side"]
    if old:
        print(f"on the {old['clips']} hold-out clips today's from-scratch folds never saw: old vote "
              f"{fmt(old['old_vote_balanced_accuracy'])}, new {fmt(old['new_vote_balanced_accuracy'])} (balanced)")
    print("similarity space (consistency@5 out of fold; share of the ear's embedding):")
    for row in r["similarity_space"]["rows"]:
        print("  " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    print("routing in the features-only space (consistency@5 on the hold-out):")
    for name, v in r["routing"]["strategies_features_only_space"].items():
        print(f"  {name:<10} {v['consistency_at_k']:.3f}")
    if "heads" in r:
        print("heads (balanced accuracy: out of fold / hold-out vote):")
        for name, row in r["heads"]["rows"].items():
            print(f"  {name:<40} {fmt(row['out_of_fold_balanced_accuracy'])}  "
                  f"{fmt(row['holdout_vote_balanced_accuracy'])}")


def plot_roc(path: Path, genres: list[str], onehot: np.ndarray, score: np.ndarray) -> None:
    fig, ax = plt.subplots(figsize=(7, 6))
    for c, genre in enumerate(genres):
        if 0 < onehot[:, c].sum() < len(onehot):
            fpr, tpr, _ = roc_curve(onehot[:, c], score[:, c])
            ax.plot(fpr, tpr, label=f"{genre} (AUC {auc(fpr, tpr):.2f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC per genre (hold-out, ensemble)")
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


def plot_reliability(path: Path, cal: dict) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, key, title in [(axes[0], "holdout_ensemble", "ensemble probability (top genre)"),
                           (axes[1], "holdout_vote_share", "vote share")]:
        bins = cal[key]["bins"]
        centres = [(b["low"] + b["high"]) / 2 for b in bins]
        ax.bar(centres, [b["accuracy"] for b in bins], width=0.09, alpha=0.7, label="accuracy")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="C1", label="bin mean")
        for c, b in zip(centres, bins, strict=True):
            ax.text(c, 0.02, str(b["count"]), ha="center", fontsize=8)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=title, ylabel="share right",
               title=f"Hold-out: {title} (ECE {cal[key]['ece']:.3f})")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_learning_curve(path: Path, curve: dict, shipped: tuple[float, dict]) -> None:
    fig, ax = plt.subplots(figsize=(7, 5))
    x, figure = shipped
    error = [[figure["value"] - figure["ci_low"]], [figure["ci_high"] - figure["value"]]]
    ax.errorbar([x], [figure["value"]], yerr=error, fmt="*", markersize=12, color="k", capsize=4,
                label="shipped 5-fold vote")
    for series in curve["series"]:
        x = [p["clips_per_genre"] for p in series["points"]]
        y = [p["balanced_accuracy"]["value"] for p in series["points"]]
        lo = [p["balanced_accuracy"]["ci_low"] for p in series["points"]]
        hi = [p["balanced_accuracy"]["ci_high"] for p in series["points"]]
        ax.plot(x, y, "o-", label=series["name"])
        ax.fill_between(x, lo, hi, alpha=0.15)
    ax.axhline(0.80, color="k", ls=":", lw=0.8, label="target 0.80")
    ax.axhline(0.1, color="grey", ls="--", lw=0.8, label="chance")
    ax.set(xlabel="training clips per genre (mean)", ylabel="hold-out balanced accuracy", ylim=(0, 1),
           title="Learning curve (artist-aware hold-out, 95 % bootstrap bands)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
