"""Which head, how many patches, how many clips: the studies behind the shipped choices.

    python -m training.ear.compare            # reports/heads.json, patches.json (+ .png), learning_curve.json

All on the shipped split (training/ear/clips.py): out-of-fold predictions over the five
artist-grouped folds (each clip predicted by a head that never heard its artist) and the
five-fold vote on the artist-aware hold-out, balanced accuracy with 95 % bootstrap intervals.
- heads: the linear head, the MLP and the Xception-style head over frame features; the 57
  hand-crafted features with the linear head; and today's from-scratch xception-mini folds
  (reports/legacy_xception.json, their recorded predictions) on the hold-out clips they never saw.
- patches: accuracy of the linear head against patches per clip, beside the ear's CPU per clip
  in float32 and bfloat16 (one thread, batches of 8); the cheapest count within TOLERANCE of the
  best is the one to serve.
- learning curve: the hold-out vote against training clips per genre, the ear against the
  features.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from services.classifier.voting import Ballot, tally
from training.calibrate import calibrated
from training.ear import heads
from training.ear.clips import GTZAN_ROOTS, REGIONAL_AS_GTZAN, REGIONAL_ROOTS, ROOT, Clips, load_clips, load_extra
from training.ear.convert import PATCHES_PER_CLIP
from training.ear.embed import PATCH_COUNTS
from training.ear.musicnn import N_BANDS, PATCH_FRAMES
from training.ear.train import LINEAR_CS, fold_heads, out_of_fold
from training.stats import balanced_accuracy, fmt, with_ci

REPORTS = ROOT / "reports"
TOLERANCE = 0.02
CURVE_SIZES = (2, 4, 6, 8, 12)
CURVE_REPEATS = 5


def vote(genres: list[str], probabilities: np.ndarray) -> np.ndarray:
    """[clips] the majority vote of [folds, clips, genres] calibrated probabilities."""
    return np.array([
        genres.index(tally(genres, [Ballot(str(k), p[i]) for k, p in enumerate(probabilities)]).genre)
        for i in range(probabilities.shape[1])
    ])


def evaluate_head(clips: Clips, kind: str, features: np.ndarray, extra: np.ndarray | None,
                  extra_labels: np.ndarray | None) -> dict:
    """Out-of-fold and hold-out-vote balanced accuracy of one head on one input."""
    started = time.time()
    folds = fold_heads(clips, features, extra, extra_labels, kind, seed=0)
    fold_probs = [calibrated(head.logits(features[clips.holdout]), t) for head, t, _, _ in folds]
    voted = vote(clips.genres, np.stack(fold_probs))
    return {
        "out_of_fold_balanced_accuracy": with_ci(balanced_accuracy, *out_of_fold(clips, folds)),
        "holdout_vote_balanced_accuracy": with_ci(balanced_accuracy, clips.ds.labels[clips.holdout], voted),
        "seconds": round(time.time() - started, 1),
    }


def legacy_row(clips: Clips) -> dict | None:
    """Today's from-scratch folds on the hold-out clips they were not trained on."""
    path = REPORTS / "legacy_xception.json"
    if not path.exists():
        return None
    legacy = json.loads(path.read_text())
    names = [str(Path(p).resolve()).split("shared/data/")[-1] for p in clips.ds.paths]
    unseen = [i for i in clips.holdout if names[i] in set(legacy["holdout"])]
    probs = np.stack([np.array(legacy["predictions"][names[i]]) for i in unseen], axis=1)  # [folds, clips, genres]
    y = clips.ds.labels[unseen]
    return {"clips": len(unseen), "holdout_vote_balanced_accuracy": with_ci(balanced_accuracy, y,
                                                                              vote(legacy["labels"], probs))}


def heads_table(clips: Clips, extra) -> dict:
    e = clips.embeddings(PATCHES_PER_CLIP)
    ex, ey = (extra.ear.embeddings[PATCHES_PER_CLIP], extra.labels) if extra else (None, None)
    rows = {
        "linear (ear embedding)": evaluate_head(clips, "linear", e, ex, ey),
        "mlp (ear embedding)": evaluate_head(clips, "mlp", e, ex, ey),
        "xception-style (ear frame features)": evaluate_head(
            clips, "xception", clips.ear.frames, extra.ear.frames if extra else None, ey),
        "linear (57 hand-crafted features)": evaluate_head(clips, "linear", clips.ds.vectors, None, None),
    }
    shipped_c = heads.LINEAR_C
    sweep = {}
    for c in LINEAR_CS:  # the linear head's L2 strength, chosen out of fold
        heads.LINEAR_C = c
        sweep[str(c)] = evaluate_head(clips, "linear", e, ex, ey)
    heads.LINEAR_C = shipped_c
    return {"protocol": "5 artist-grouped folds over the non-hold-out clips (+ mapped extra clips in training "
                        "only); hold-out = the five folds' majority vote", "rows": rows,
            "linear_c_sweep": sweep, "linear_c_shipped": shipped_c,
            "today_xception_mini_on_unseen_holdout": legacy_row(clips)}


def ear_cpu_ms_per_patch(bfloat16: bool, batch: int = 8, repeats: int = 5) -> float:  # also bench/ear.py
    """CPU ms per patch of the served ear (its `patches` signature), one thread, in a fresh process."""
    import subprocess
    import sys

    code = f"""
import time, numpy as np
from services.common.quiet_tensorflow import import_tensorflow

tf = import_tensorflow()
if {bfloat16}: tf.config.optimizer.set_experimental_options({{"auto_mixed_precision_onednn_bfloat16": True}})
tf.config.threading.set_intra_op_parallelism_threads(1); tf.config.threading.set_inter_op_parallelism_threads(1)
fn = tf.saved_model.load("{ROOT / 'models' / 'musicnn_msd' / '1'}").signatures["patches"]
x = tf.constant(np.random.default_rng(0).uniform(0, 3, ({batch}, {PATCH_FRAMES}, {N_BANDS})).astype(np.float32))
for _ in range(2): fn(patches=x)
t = time.process_time()
for _ in range({repeats}): fn(patches=x)["embedding"].numpy()
print((time.process_time() - t) / {repeats} / {batch} * 1000)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def patches_table(clips: Clips, extra) -> dict:
    fp32, bf16 = ear_cpu_ms_per_patch(False), ear_cpu_ms_per_patch(True)
    rows = []
    for count in PATCH_COUNTS:
        ex, ey = (extra.ear.embeddings[count], extra.labels) if extra else (None, None)
        figures = evaluate_head(clips, "linear", clips.embeddings(count), ex, ey)
        rows.append({"patches": count, **figures, "cpu_ms_per_clip_float32": round(count * fp32, 1),
                     "cpu_ms_per_clip_bfloat16": round(count * bf16, 1)})
    best = max(r["out_of_fold_balanced_accuracy"]["value"] for r in rows)
    chosen = min(r["patches"] for r in rows if r["out_of_fold_balanced_accuracy"]["value"] >= best - TOLERANCE)
    return {"rule": f"the fewest patches within {TOLERANCE} balanced accuracy (out of fold) of the best",
            "chosen": chosen, "served": PATCHES_PER_CLIP, "cpu_ms_per_patch": {"float32": fp32, "bfloat16": bf16},
            "rows": rows}


def learning_curve(clips: Clips) -> dict:
    """The hold-out vote of one linear head trained on n clips per genre (drawn from the
    non-hold-out clips, CURVE_REPEATS draws), the ear against the 57 features."""
    y = clips.ds.labels
    rng = np.random.default_rng(0)
    series = []
    for name, features in (("ear embedding + linear", clips.embeddings(PATCHES_PER_CLIP)),
                           ("57 features + linear", clips.ds.vectors)):
        points = []
        for size in CURVE_SIZES:
            truths, preds = [], []
            for _ in range(CURVE_REPEATS):
                rows = np.concatenate([rng.permutation(clips.rest[y[clips.rest] == g])[:size]
                                       for g in range(len(clips.genres))])
                head = heads.fit("linear", features[rows], y[rows], clips.genres)
                preds.append(head.logits(features[clips.holdout]).argmax(1))
                truths.append(y[clips.holdout])
            mean_size = float(np.mean([min(size, int((y[clips.rest] == g).sum())) for g in range(len(clips.genres))]))
            points.append({"clips_per_genre": mean_size,
                           "balanced_accuracy": with_ci(balanced_accuracy, np.concatenate(truths),
                                                        np.concatenate(preds))})
        series.append({"name": name, "points": points})
    return {"protocol": f"one linear head per draw, {CURVE_REPEATS} draws per size, hold-out clips", "series": series}


def plot_patches(path: Path, table: dict) -> None:
    rows = table["rows"]
    fig, ax = plt.subplots(figsize=(7, 5))
    x = [r["patches"] for r in rows]
    for key, label in (("out_of_fold_balanced_accuracy", "out of fold (130 clips)"),
                       ("holdout_vote_balanced_accuracy", "hold-out vote")):
        v = [r[key]["value"] for r in rows]
        ax.errorbar(x, v, yerr=[[a - r[key]["ci_low"] for a, r in zip(v, rows, strict=True)],
                                [r[key]["ci_high"] - a for a, r in zip(v, rows, strict=True)]],
                    fmt="o-", capsize=3, label=label)
    ax.axvline(table["chosen"], color="k", ls=":", label=f"chosen: {table['chosen']}")
    twin = ax.twinx()
    twin.plot(x, [r["cpu_ms_per_clip_float32"] for r in rows], "s--", color="grey", label="CPU ms/clip float32")
    twin.set_ylabel("ear CPU ms per clip (float32)")
    ax.set(xlabel="patches of 3 s per clip", ylabel="balanced accuracy", ylim=(0, 1),
           title="Accuracy against the ear's patches per clip")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    clips = load_clips(GTZAN_ROOTS)
    extra = load_extra(REGIONAL_ROOTS, REGIONAL_AS_GTZAN, clips.genres)
    REPORTS.mkdir(exist_ok=True)
    patches = patches_table(clips, extra)
    (REPORTS / "patches.json").write_text(json.dumps(patches, indent=1))
    plot_patches(REPORTS / "patches.png", patches)
    print(f"patches: chosen {patches['chosen']} (served {patches['served']}); "
          f"CPU ms per patch {patches['cpu_ms_per_patch']}")
    for r in patches["rows"]:
        print(f"  {r['patches']:>2}  oof {fmt(r['out_of_fold_balanced_accuracy'])}  "
              f"hold-out {fmt(r['holdout_vote_balanced_accuracy'])}  {r['cpu_ms_per_clip_float32']} ms")
    curve = learning_curve(clips)
    (REPORTS / "learning_curve.json").write_text(json.dumps(curve, indent=1))
    table = heads_table(clips, extra)
    (REPORTS / "heads.json").write_text(json.dumps(table, indent=1))
    for name, r in table["rows"].items():
        print(f"  {name:<40} oof {fmt(r['out_of_fold_balanced_accuracy'])}  "
              f"hold-out {fmt(r['holdout_vote_balanced_accuracy'])}  {r['seconds']} s")
    for c, r in table["linear_c_sweep"].items():
        print(f"  linear C={c:<6} oof {fmt(r['out_of_fold_balanced_accuracy'])}  "
              f"hold-out {fmt(r['holdout_vote_balanced_accuracy'])}")
    legacy = table["today_xception_mini_on_unseen_holdout"]
    if legacy:
        print(f"  today's xception-mini on {legacy['clips']} unseen hold-out clips: "
              f"{fmt(legacy['holdout_vote_balanced_accuracy'])}")


if __name__ == "__main__":
    main()
