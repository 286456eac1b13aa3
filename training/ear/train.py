"""Train the five fold heads on the pretrained ear, calibrate and export them with the ear.

    python -m training.ear.train                     # GTZAN in ../shared/data (+ the Argentine set's
                                                     # rock, reggae, rap and clasico clips) -> models/
    python -m training.ear.train --data ../shared/data/regional_mini/genres --name regional \\
        --out models-regional --holdout 0.2          # another taxonomy on the same ear (the hold-out
                                                     # its from-scratch folds had)

Each fold head reads the ear's clip embedding (training/ear/heads.py: HEAD; its L2 strength
chosen by out-of-fold balanced accuracy over the taxonomy's own folds), is trained on the
other folds' clips (plus the mapped extra clips), gets its temperature on its own validation
fold (artist-disjoint from its training clips) and is exported as <out>/<name>_fold<k>/1/.
The ear (models/musicnn_msd, from `python -m training.ear.convert`) is copied beside the folds
so that every models folder is whole; <out>/models.config lists the ear, then the folds, and
<out>/training.json records the splits for `make evaluate`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from services.common.modelconfig import EAR_MODEL, write_models_config
from training.calibrate import fit_temperature
from training.ear import heads
from training.ear.clips import (
    GTZAN_ROOTS,
    HOLDOUT,
    REGIONAL_AS_GTZAN,
    REGIONAL_ROOTS,
    ROOT,
    SEED,
    Clips,
    Extra,
    load_clips,
    load_extra,
    portable,
)
from training.ear.convert import MODEL_NAME, PATCHES_PER_CLIP
from training.ear.fold_export import export_head
from training.stats import balanced_accuracy

DEFAULT_OUT = ROOT / "models"
EAR_SOURCE = DEFAULT_OUT / MODEL_NAME
DEPLOY_MODELS_CONFIG = ROOT / "deploy" / "base" / "tfserving" / "models.config"
HEAD = "linear"  # chosen by grouped CV (training/ear/compare.py, reports/heads.json)
LINEAR_CS = (0.001, 0.003, 0.01, 0.03, 0.1)  # its L2 strength: chosen per taxonomy out of fold


def ear_inputs(clips: Clips, extra: Extra | None, patches: int = PATCHES_PER_CLIP):
    """(the clips' embeddings, the extra clips' embeddings, their labels): what the heads read."""
    if extra is None:
        return clips.embeddings(patches), None, None
    return clips.embeddings(patches), extra.ear.embeddings[patches], extra.labels


def fold_heads(clips: Clips, x: np.ndarray, extra_x: np.ndarray | None = None, extra_y: np.ndarray | None = None,
               kind: str = HEAD, seed: int = SEED) -> list[tuple]:
    """Per fold: (head, temperature, validation rows, validation logits); each head is trained on
    the other folds' rows of `x` (plus the extra clips) and calibrated on its own fold."""
    y = clips.ds.labels
    out = []
    for k, (tr, va) in enumerate(clips.folds):
        xs, ys = x[tr], y[tr]
        if extra_x is not None:
            xs, ys = np.concatenate([xs, extra_x]), np.concatenate([ys, extra_y])
        head = heads.fit(kind, xs, ys, clips.genres, seed=seed + k)
        logits = head.logits(x[va])
        out.append((head, fit_temperature(logits, y[va]), va, logits))
    return out


def out_of_fold(clips: Clips, folds: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """(truths, picks) of every fold clip, each picked by the head that did not train on it."""
    rows = np.concatenate([va for _, _, va, _ in folds])
    return clips.ds.labels[rows], np.concatenate([logits.argmax(1) for _, _, _, logits in folds])


def choose_c(clips: Clips, inputs: tuple) -> tuple[float, dict[str, float]]:
    """The linear head's L2 strength with the best out-of-fold balanced accuracy over the
    taxonomy's own folds: (C, {C: balanced accuracy})."""
    scores = {}
    for c in LINEAR_CS:
        heads.LINEAR_C = c
        scores[str(c)] = balanced_accuracy(*out_of_fold(clips, fold_heads(clips, *inputs)))
    best = max(LINEAR_CS, key=lambda c: scores[str(c)])
    heads.LINEAR_C = best
    return best, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=GTZAN_ROOTS, help="<root>/<genre>/<clip> folders")
    parser.add_argument("--name", default="linear", help="fold model prefix: <name>_fold<k>")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-extra", action="store_true", help="train on --data's clips only")
    parser.add_argument("--holdout", type=float, default=HOLDOUT, help="share of each genre held out, by artist")
    args = parser.parse_args()

    clips = load_clips(args.data, args.holdout)
    extra = None if args.no_extra else load_extra(REGIONAL_ROOTS, REGIONAL_AS_GTZAN, clips.genres)
    print(f"{len(clips.ds.labels)} clips ({len(clips.dropped)} duplicates dropped), {len(set(clips.groups))} "
          f"artists; hold-out {len(clips.holdout)}, folds over {len(clips.rest)}; "
          f"{0 if extra is None else len(extra.labels)} extra training clips")
    inputs = ear_inputs(clips, extra)
    c, scores = choose_c(clips, inputs)
    print(f"linear head: C {c} (out-of-fold balanced accuracy by C: {scores})")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.out.resolve() != DEFAULT_OUT.resolve():
        shutil.rmtree(args.out / MODEL_NAME, ignore_errors=True)
        shutil.copytree(EAR_SOURCE, args.out / MODEL_NAME)
    record = {
        "ear": json.loads((EAR_SOURCE / "PROVENANCE.json").read_text()),
        "head": HEAD, "linear_c": c, "linear_c_out_of_fold": scores, "patches_per_clip": PATCHES_PER_CLIP,
        "genres": clips.genres, "seed": SEED, "holdout_share": args.holdout,
        "sources": [portable(s) for s in args.data],
        "extra": None if extra is None else {"mapping": REGIONAL_AS_GTZAN, "clips": [portable(p) for p in extra.paths]},
        "duplicates_dropped": [[portable(a), portable(b)] for a, b in clips.dropped],
        "holdout": [portable(clips.ds.paths[i]) for i in clips.holdout], "folds": [],
    }
    names = []
    for k, (head, temperature, va, logits) in enumerate(tqdm(fold_heads(clips, *inputs), desc="export", unit="fold")):
        name = f"{args.name}_fold{k}"
        shutil.rmtree(args.out / name, ignore_errors=True)
        export_head(head, temperature, args.out / name)
        names.append(name)
        accuracy = float(np.mean(logits.argmax(1) == clips.ds.labels[va]))
        record["folds"].append({
            "model": name, "val_accuracy": accuracy, "temperature": temperature,
            "validation": [portable(clips.ds.paths[i]) for i in va], "validation_logits": logits.round(4).tolist(),
        })
        tqdm.write(f"fold {k}: validation accuracy {accuracy:.3f} on {len(va)} clips, T={temperature:.2f}")
    write_models_config(args.out / "models.config", [EAR_MODEL, *names])
    if args.out.resolve() == DEFAULT_OUT.resolve():  # the Kubernetes ConfigMap serves the same file
        write_models_config(DEPLOY_MODELS_CONFIG, [EAR_MODEL, *names])
    (args.out / "training.json").write_text(json.dumps(record, indent=1))
    print(f"models in {args.out}: {', '.join([EAR_MODEL, *names])}")


if __name__ == "__main__":
    main()
