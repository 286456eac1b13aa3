"""Train the fold models: fixed stratified hold-out split, stratified 5-fold CV on the rest.

    python -m services.classifier.training.train --data ../shared/data/gtzan_mini/genres
    python -m services.classifier.training.train --catalog data/catalog.csv --arch resnet50

Each fold trains on random crops (augmentation), is validated crop-averaged, keeps its best
epoch, and is exported as models/<arch-name>_fold<k>/1/ plus models/models.config.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split
from tqdm import tqdm

from services.classifier.training import dataset
from services.classifier.training.export import CROP_FRAMES, export_savedmodel, write_models_config

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUT = ROOT / "models"
DEPLOY_MODELS_CONFIG = ROOT / "deploy" / "base" / "tfserving" / "models.config"


def random_crops(mels: np.ndarray, labels: np.ndarray, rng: np.random.Generator, per_song: int):
    """`per_song` random time crops of every song (the augmentation), scaled to [0, 1]."""
    songs = np.repeat(np.arange(len(mels)), per_song)
    starts = rng.integers(0, mels.shape[2] - CROP_FRAMES + 1, size=len(songs))
    out = np.stack([mels[i, :, s : s + CROP_FRAMES] for i, s in zip(songs, starts, strict=True)])
    return ((out + 80.0) / 80.0)[..., None], labels[songs]


def train_fold(args, ds, train_idx, val_idx, fold: int):
    import keras
    import tensorflow as tf

    from services.classifier.training.export import crop_average
    from services.classifier.training.models import build

    keras.utils.set_random_seed(args.seed + fold)
    rng = np.random.default_rng(args.seed + fold)
    model = build(args.arch, (ds.mels.shape[1], CROP_FRAMES, 1), len(ds.genres), args.weights)
    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss="sparse_categorical_crossentropy")
    x_val = tf.constant(ds.mels[val_idx])
    best = (-1.0, None, 0)
    bar = tqdm(range(args.epochs), desc=f"fold {fold}", unit="epoch")
    for epoch in bar:
        x, y = random_crops(ds.mels[train_idx], ds.labels[train_idx], rng, args.crops)
        model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, shuffle=True)
        if epoch % 3 == 2 or epoch == args.epochs - 1:
            probs = crop_average(model, x_val).numpy()
            acc = float(np.mean(probs.argmax(1) == ds.labels[val_idx]))
            if acc > best[0]:
                best = (acc, model.get_weights(), epoch)
            bar.set_postfix(val_acc=f"{acc:.2f}", best=f"{best[0]:.2f}")
    model.set_weights(best[1])
    return model, best[0], best[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/gtzan_mini/genres")
    src.add_argument("--catalog", type=Path, help="catalog CSV instead of a GTZAN-style folder")
    parser.add_argument("--arch", default="xception", choices=["xception", "xception-full", "resnet50", "mobilenet"])
    parser.add_argument("--weights", help="local weights file to start from (no downloads)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=int(os.environ.get("TRAIN_EPOCHS", 30)))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crops", type=int, default=4, help="random crops per song per epoch")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    items = dataset.list_catalog(args.catalog) if args.catalog else dataset.list_gtzan(args.data)
    ds = dataset.load(items, ROOT / "var" / "cache" / "train_mels.npz")
    idx = np.arange(len(ds.labels))
    rest, holdout = train_test_split(idx, test_size=args.holdout, stratify=ds.labels, random_state=args.seed)
    name = args.arch.replace("-", "_")
    folds = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "arch": args.arch,
        "genres": ds.genres,
        "seed": args.seed,
        "holdout": [ds.paths[i] for i in holdout],
        "folds": [],
    }
    names = []
    for k, (tr, va) in enumerate(folds.split(rest, ds.labels[rest])):
        start = time.time()
        model, acc, epoch = train_fold(args, ds, rest[tr], rest[va], k)
        model_name = f"{name}_fold{k}"
        shutil.rmtree(args.out / model_name, ignore_errors=True)
        export_savedmodel(model, ds.genres, args.out / model_name)
        names.append(model_name)
        record["folds"].append(
            {
                "model": model_name,
                "val_accuracy": acc,
                "best_epoch": epoch,
                "seconds": round(time.time() - start, 1),
                "validation": [ds.paths[i] for i in rest[va]],
            }
        )
    write_models_config(args.out / "models.config", names)
    if args.out.resolve() == DEFAULT_OUT.resolve():  # the Kubernetes ConfigMap serves the same file
        write_models_config(DEPLOY_MODELS_CONFIG, names)
    (args.out / "training.json").write_text(json.dumps(record, indent=1))
    accs = [f["val_accuracy"] for f in record["folds"]]
    print(f"fold validation accuracy {np.mean(accs):.3f} ± {np.std(accs):.3f}; models in {args.out}")


if __name__ == "__main__":
    main()
