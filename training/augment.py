"""The small-data recipe's augmentations, on log-mel crops in dB: class-balanced sampling,
random gain, SpecAugment-style masks, label smoothing and mixup."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.tiling import SILENT_DB, random_crop, scale


@dataclass(frozen=True)
class Recipe:
    crops_per_song: int = 4  # per epoch, on average
    gain_db: float = 12.0  # a quieter recording: up to this much closer to the floor
    freq_masks: int = 2
    freq_mask_bands: int = 16
    time_masks: int = 2
    time_mask_frames: int = 32
    mixup_alpha: float = 0.3
    label_smoothing: float = 0.1


def balanced_songs(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n song indices drawn so every genre is equally likely, whatever its clip count."""
    counts = np.bincount(labels)
    p = 1.0 / counts[labels]
    return rng.choice(len(labels), size=n, p=p / p.sum())


def spec_augment(crop: np.ndarray, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    out = crop.copy()
    n_mels, frames = out.shape
    fill = float(out.mean())
    for _ in range(recipe.freq_masks):
        w = int(rng.integers(0, recipe.freq_mask_bands + 1))
        f0 = int(rng.integers(0, n_mels - w + 1))
        out[f0 : f0 + w] = fill
    for _ in range(recipe.time_masks):
        w = int(rng.integers(0, recipe.time_mask_frames + 1))
        t0 = int(rng.integers(0, frames - w + 1))
        out[:, t0 : t0 + w] = fill
    return out


def epoch_batch(
    mels: np.ndarray, valid: np.ndarray, labels: np.ndarray, n_classes: int, recipe: Recipe, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of augmented, mixed-up crops [n, n_mels, CROP, 1] and soft targets [n, n_classes]."""
    songs = balanced_songs(labels, len(labels) * recipe.crops_per_song, rng)
    crops = []
    for i in songs:
        crop = random_crop(mels[i], int(valid[i]), rng)
        crop = np.maximum(crop - rng.uniform(0, recipe.gain_db), SILENT_DB)
        crops.append(spec_augment(crop, recipe, rng))
    x = scale(np.stack(crops).astype(np.float32))
    y = np.full((len(songs), n_classes), recipe.label_smoothing / n_classes, dtype=np.float32)
    y[np.arange(len(songs)), labels[songs]] += 1.0 - recipe.label_smoothing
    lam = rng.beta(recipe.mixup_alpha, recipe.mixup_alpha, size=len(songs)).astype(np.float32)
    lam = np.maximum(lam, 1 - lam)[:, None]  # the first clip dominates
    partner = rng.permutation(len(songs))
    x = lam[:, :, None] * x + (1 - lam[:, :, None]) * x[partner]
    y = lam * y + (1 - lam) * y[partner]
    return x[..., None], y
