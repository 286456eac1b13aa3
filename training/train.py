"""Train the five fold models with the small-data recipe, calibrate and export them.

    python -m training.train                                   # all GTZAN clips in ../shared/data
    python -m training.train --data ../shared/data/regional_mini/genres --name regional --out models-regional
    python -m training.train --catalog catalog.csv --arch resnet50

Splits are artist-aware (training/splits.py): an id-block hold-out that no fold ever sees,
and five grouped folds on the rest. Each fold trains on class-balanced, augmented, mixed-up
crops (training/augment.py), stops early on its validation fold, gets its temperature from
that fold, and is exported as <out>/<name>_fold<k>/1/ with <out>/models.config and
<out>/training.json (splits, figures, recipe), which `python -m training.evaluate` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from services.common.config import env_int
from training import data
from training.augment import Recipe, epoch_batch
from training.calibrate import fit_temperature
from training.export import export_savedmodel, write_models_config
from training.splits import grouped_folds, holdout_split

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
GTZAN_ROOTS = [SHARED / "gtzan_mini" / "genres", SHARED / "gtzan_extra" / "genres"]
DEFAULT_OUT = ROOT / "models"
DEPLOY_MODELS_CONFIG = ROOT / "deploy" / "base" / "tfserving" / "models.config"
CACHE = ROOT / "var" / "cache" / "clips"


def portable(path: str | Path) -> str:
    """Paths in training.json are relative to the folder holding the checkout (../shared/...),
    so a fresh clone with ../shared beside it finds the same clips."""
    return os.path.relpath(Path(path).resolve(), ROOT.parent)


def resolve(path: str) -> Path:
    return (ROOT.parent / path).resolve()


def recorded_clips(paths: list[str], genres: list[str], cache: Path = CACHE) -> data.Dataset:
    """The clips training.json lists (paths as `portable` wrote them; the genre is the folder),
    analysed once and cached."""
    return data.load([(resolve(p), Path(p).parent.name) for p in paths], cache, genres)


@dataclass
class FoldResult:
    model: object  # keras.Model
    val_logits: np.ndarray
    val_accuracy: float
    best_epoch: int
    temperature: float
    seconds: float


def load_dataset(sources: list[Path], catalog: Path | None) -> tuple[data.Dataset, list[tuple[str, str]]]:
    missing = [s for s in ([catalog] if catalog else sources) if not s.exists()]
    if missing:
        where = ", ".join(map(str, missing))
        raise SystemExit(f"training data missing: {where} (is ../shared/data beside the project?)")
    items = data.list_catalog(catalog) if catalog else data.list_folders(sources)
    return data.dedupe(data.load(items, CACHE))


def train_fold(
    train: data.Dataset, val: data.Dataset, arch: str, recipe: Recipe, *, epochs: int, patience: int,
    lr: float, batch: int, seed: int, label: str, keep_best: bool = True, min_epochs: int = 0,
) -> FoldResult:
    """Train one model on `train`; with keep_best, stop early and keep the epoch that scored
    best on `val` (then fit the temperature there), not before `min_epochs` (a validation fold
    of a few dozen clips crowns lucky early epochs); without, keep the last epoch."""
    import keras

    from training.models import build
    from training.tiling import clip_logits, tf

    start = time.time()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    n_classes = len(train.genres)
    model = build(arch, (train.mels.shape[1], None, 1), n_classes)  # trains on crops, infers on tiles
    model.compile(
        optimizer=keras.optimizers.AdamW(lr, weight_decay=1e-4),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    x_val = tf.constant(val.mels)
    best = (-1.0, np.inf, None, 0, None)  # accuracy, nll, weights, epoch, logits
    bar = tqdm(range(epochs), desc=label, unit="epoch", leave=False)
    for epoch in bar:
        x, y = epoch_batch(train.mels, train.valid_frames, train.labels, n_classes, recipe, rng)
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)
        logits = clip_logits(model, x_val).numpy()
        acc = float(np.mean(logits.argmax(1) == val.labels))
        nll = float(-np.mean(tf.nn.log_softmax(logits).numpy()[np.arange(len(val.labels)), val.labels]))
        if epoch >= min_epochs - 1 and (acc, -nll) > (best[0], -best[1]):
            best = (acc, nll, model.get_weights(), epoch, logits)
        bar.set_postfix(val_acc=f"{acc:.2f}", best=f"{best[0]:.2f}@{best[3]}")
        if epoch >= min_epochs and epoch - best[3] >= patience:
            break
    if not keep_best:
        return FoldResult(model, logits, acc, epoch, 1.0, time.time() - start)
    model.set_weights(best[2])
    return FoldResult(model, best[4], best[0], best[3], fit_temperature(best[4], val.labels), time.time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=GTZAN_ROOTS, help="<root>/<genre>/<clip> folders")
    parser.add_argument("--catalog", type=Path, help="a catalog CSV instead of folders")
    parser.add_argument("--arch", default="xception-mini")
    parser.add_argument("--name", default="xception", help="model name prefix: <name>_fold<k>")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=env_int("TRAIN_EPOCHS", 60))
    parser.add_argument("--patience", type=int, default=12)
    parser.add_argument("--min-epochs", type=int, default=0, help="no early stop and no best epoch before this")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--holdout", type=float, default=0.2, help="share of each genre held out by id block")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    ds, dropped = load_dataset(args.data, args.catalog)
    groups = data.groups(ds)
    rest, holdout = holdout_split(ds.labels, groups, args.holdout, args.seed)
    train_ds = ds.subset(rest)
    recipe = Recipe()
    print(f"{len(ds.labels)} clips after dedupe ({len(dropped)} duplicates dropped), {len(set(groups))} groups; "
          f"hold-out {len(holdout)}, folds over {len(rest)}")
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "arch": args.arch, "genres": ds.genres, "seed": args.seed, "recipe": asdict(recipe),
        "sources": [portable(s) for s in ([args.catalog] if args.catalog else args.data)],
        "duplicates_dropped": [[portable(a), portable(b)] for a, b in dropped],
        "holdout": [portable(ds.paths[i]) for i in holdout], "folds": [],
    }
    names = []
    splits = grouped_folds(train_ds.labels, groups[rest], args.folds, args.seed)
    for k, (tr, va) in enumerate(tqdm(splits, desc="folds", unit="fold")):
        result = train_fold(
            train_ds.subset(tr), train_ds.subset(va), args.arch, recipe, epochs=args.epochs,
            patience=args.patience, lr=args.lr, batch=args.batch, seed=args.seed + k, label=f"fold {k}",
            min_epochs=args.min_epochs,
        )
        name = f"{args.name}_fold{k}"
        shutil.rmtree(args.out / name, ignore_errors=True)
        export_savedmodel(result.model, ds.genres, result.temperature, args.out / name)
        names.append(name)
        record["folds"].append({
            "model": name, "val_accuracy": result.val_accuracy, "best_epoch": result.best_epoch,
            "temperature": result.temperature, "seconds": round(result.seconds, 1),
            "validation": [portable(train_ds.paths[i]) for i in va],
            "validation_logits": result.val_logits.round(4).tolist(),
        })
        tqdm.write(f"fold {k}: val accuracy {result.val_accuracy:.3f} at epoch {result.best_epoch}, "
                   f"T={result.temperature:.2f}, {result.seconds:.0f} s")
    write_models_config(args.out / "models.config", names)
    if args.out.resolve() == DEFAULT_OUT.resolve():  # the Kubernetes ConfigMap serves the same file
        write_models_config(DEPLOY_MODELS_CONFIG, names)
    (args.out / "training.json").write_text(json.dumps(record, indent=1))
    accs = [f["val_accuracy"] for f in record["folds"]]
    print(f"fold validation accuracy {np.mean(accs):.3f} ± {np.std(accs):.3f}; models in {args.out}")


if __name__ == "__main__":
    main()
