"""The ear's outputs for a training set, computed once and cached under var/ear/.

Heads train on what the served ear returns: the clip's mean embedding over its patches
(musicnn.clip_outputs, the same rule the SavedModel runs), for every patch count the cost
study compares; and, for heads over time, the mid-end's frame features of the served patch
count, max-pooled over FRAME_POOL frames and kept as float16.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from services.common.quiet_tensorflow import import_tensorflow
from training.ear.convert import DEFAULT_CACHE, PATCHES_PER_CLIP, checkpoint_prefix, fetch_wheel
from training.ear.musicnn import Musicnn, Weights, clip_outputs, clip_patches

tf = import_tensorflow()

PATCH_COUNTS = (1, 2, 3, 5, 10)
FRAME_POOL = 4
BATCH = 8


@dataclass
class EarOutputs:
    embeddings: dict[int, np.ndarray]  # patch count -> [n, 200]
    tags: dict[int, np.ndarray]  # patch count -> [n, 50]
    frames: np.ndarray  # float16 [n, patches, 187 // FRAME_POOL, 753]
    patch_embeddings: np.ndarray  # [n, patches, 200]: each patch of the served patch count
    patch_tags: np.ndarray  # [n, patches, 50]


def network(cache: Path = DEFAULT_CACHE) -> Musicnn:
    return Musicnn(Weights.read(checkpoint_prefix(fetch_wheel(cache), cache)))


def _key(paths: list[str], mels: np.ndarray) -> str:
    digest = hashlib.sha1("\n".join(paths).encode())
    digest.update(np.ascontiguousarray(mels[:, :, ::97]).tobytes())
    return digest.hexdigest()[:16]


def ear_outputs(mels: np.ndarray, paths: list[str], cache: Path = DEFAULT_CACHE,
                counts: tuple[int, ...] = PATCH_COUNTS, frame_patches: int = PATCHES_PER_CLIP) -> EarOutputs:
    """The ear's outputs of each clip (mels [n, 96, frames]), cached by the clips and their mels;
    frame features and per-patch outputs only with `frame_patches` > 0 (the head comparison)."""
    path = cache / f"outputs-v2-{_key(paths, mels)}-{'-'.join(map(str, counts))}-{frame_patches}.npz"
    if path.exists():
        with np.load(path) as data:
            return EarOutputs({c: data[f"embedding{c}"] for c in counts}, {c: data[f"tags{c}"] for c in counts},
                              data["frames"], data["patch_embeddings"], data["patch_tags"])
    net = network(cache)
    embeddings: dict[int, list] = {c: [] for c in counts}
    tags: dict[int, list] = {c: [] for c in counts}
    frames, patch_embeddings, patch_tags = [], [], []
    for start in tqdm(range(0, len(mels), BATCH), desc="the ear listens", unit="batch"):
        batch = tf.constant(mels[start : start + BATCH])
        for count in counts:
            out = clip_outputs(net, batch, count)
            embeddings[count].append(out["embedding"].numpy())
            tags[count].append(out["tags"].numpy())
        if not frame_patches:
            continue
        patches = clip_patches(batch, frame_patches)
        per_patch = net.patch_outputs(patches)
        patch_embeddings.append(per_patch["embedding"].numpy().reshape(len(batch), frame_patches, -1))
        patch_tags.append(per_patch["tags"].numpy().reshape(len(batch), frame_patches, -1))
        patch_frames = net.frames(patches)  # [b * p, 187, 753]
        pooled = tf.nn.max_pool1d(patch_frames, FRAME_POOL, FRAME_POOL, "VALID").numpy().astype(np.float16)
        frames.append(pooled.reshape(len(batch), frame_patches, *pooled.shape[1:]))
    def joined(parts: list) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((len(mels), 0), np.float32)

    result = EarOutputs({c: np.concatenate(v) for c, v in embeddings.items()},
                        {c: np.concatenate(v) for c, v in tags.items()}, joined(frames),
                        joined(patch_embeddings), joined(patch_tags))
    cache.mkdir(parents=True, exist_ok=True)
    arrays = {f"embedding{c}": v for c, v in result.embeddings.items()}
    arrays.update({f"tags{c}": v for c, v in result.tags.items()})
    np.savez(path, frames=result.frames, patch_embeddings=result.patch_embeddings, patch_tags=result.patch_tags,
             **arrays)
    return result
