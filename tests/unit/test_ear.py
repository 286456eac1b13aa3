"""The served ear (models/musicnn_msd) computes what musicnn's original graph computes.

tests/data/musicnn_reference.npz holds the original graph's outputs on fixed patches, recorded
once from the wheel's checkpoint and its .meta graph (`python -m training.ear.convert
--record-reference`, training/ear/reference.py). The SavedModel TF Serving serves is pinned to
them, patch by patch and as the clip mean its default signature returns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.common.modelconfig import EAR_MODEL, ear_and_folds, latest_version
from training.ear.reference import REFERENCE, fixed_patches

ROOT = Path(__file__).resolve().parents[2]
EAR = ROOT / "models" / EAR_MODEL
PATCH = 187


@pytest.fixture(scope="module")
def served():
    from services.common.quiet_tensorflow import import_tensorflow

    tf = import_tensorflow()
    return tf, tf.saved_model.load(str(EAR / str(latest_version(EAR)))).signatures


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in ("embedding", "tags")}


def test_each_patch_matches_the_original_graph(served, reference) -> None:
    tf, signatures = served
    out = signatures["patches"](patches=tf.constant(fixed_patches()))
    np.testing.assert_allclose(out["embedding"].numpy(), reference["embedding"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["tags"].numpy(), reference["tags"], rtol=1e-4, atol=1e-5)


def test_a_clip_is_the_mean_of_its_patches(served, reference) -> None:
    """The default signature cuts PROVENANCE's patches_per_clip patches, the k-th centred in its
    k-th share of the clip; placed there, the reference patches give their mean."""
    tf, signatures = served
    count = json.loads((EAR / "PROVENANCE.json").read_text())["patches_per_clip"]
    assert count <= len(reference["embedding"])
    frames = PATCH * (count + 1) + 50  # room for `count` patches that do not overlap
    clip = np.random.default_rng(1).uniform(0.5, 3.0, (frames, 96)).astype(np.float32)
    starts = np.round((np.arange(count) + 0.5) / count * (frames - PATCH)).astype(int)
    for k, start in enumerate(starts):
        clip[start : start + PATCH] = fixed_patches()[k]
    out = signatures["serving_default"](log_mel=tf.constant(clip.T[None]))
    np.testing.assert_allclose(out["embedding"].numpy()[0], reference["embedding"][:count].mean(0), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(out["tags"].numpy()[0], reference["tags"][:count].mean(0), rtol=1e-4, atol=1e-5)
    assert out["tag_names"].numpy().shape == (1, 50)


def test_models_config_serves_the_ear_beside_the_folds() -> None:
    ear, folds = ear_and_folds(ROOT / "models" / "models.config")
    assert ear == EAR_MODEL and len(folds) == 5 and EAR_MODEL not in folds
    provenance = json.loads((EAR / "PROVENANCE.json").read_text())
    assert provenance["package"] == "musicnn" and len(provenance["wheel_sha256"]) == 64
    assert "commercial use needs review" in provenance["licence"]
