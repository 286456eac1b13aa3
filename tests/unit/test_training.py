"""The training recipe's pieces: artist-aware splits, padding never seen, tiling, calibration."""

from __future__ import annotations

import numpy as np
import pytest

from training.augment import Recipe, balanced_songs, epoch_batch
from training.calibrate import calibrated, fit_temperature, reliability
from training.data import valid_frames
from training.splits import grouped_folds, holdout_split


def test_holdout_and_folds_never_split_a_group() -> None:
    labels = np.repeat(np.arange(3), 12)
    groups = np.concatenate([np.repeat(np.arange(g * 10, g * 10 + 4), 3) for g in range(3)])  # 4 blocks of 3
    rest, held = holdout_split(labels, groups, 0.25, seed=1)
    assert set(groups[rest]).isdisjoint(groups[held]) and len(held) == 9  # one block of 3 per genre
    assert sorted(np.bincount(labels[held])) == [3, 3, 3]
    for train, val in grouped_folds(labels[rest], groups[rest], 3, seed=1):
        assert set(groups[rest][train]).isdisjoint(groups[rest][val])


def test_a_genre_that_is_one_big_block_keeps_it_for_training() -> None:
    labels = np.array([0] * 10 + [0, 0, 0] + [1] * 13)
    groups = np.array([0] * 10 + [1, 2, 3] + list(range(10, 23)))
    _, held = holdout_split(labels, groups, 0.2, seed=0)
    assert not (set(held) & set(range(10)))  # the 10-clip block is never held out whole


def test_padding_is_found_and_never_cropped() -> None:
    mel = np.full((128, 938), -80.0, np.float32)
    mel[:, :469] = np.random.default_rng(0).uniform(-60, 0, (128, 469))
    assert valid_frames(mel) == 469
    rng = np.random.default_rng(0)
    x, y = epoch_batch(mel[None].repeat(4, 0), np.array([469] * 4), np.array([0, 0, 1, 1]), 2, Recipe(), rng)
    assert x.shape == (16, 128, 256, 1) and y.shape == (16, 2)
    assert np.allclose(y.sum(1), 1.0)
    # mixup blends clips, masks fill with the crop mean: a crop is never mostly the -80 dB floor
    assert (x[..., 0] <= 1e-6).mean(axis=(1, 2)).max() < 0.2


def test_inference_tiles_only_the_valid_frames() -> None:
    from training.tiling import tf, tiled_crops

    batch = np.full((3, 128, 938), -80.0, np.float32)
    batch[0] = np.random.default_rng(1).uniform(-70, 0, (128, 938))
    batch[1, :, :469] = -20.0
    batch[2, :, :100] = -30.0
    crops, weights = tiled_crops(tf.constant(batch))
    assert crops.shape == (3, 4, 128, 235)  # 4 tiles meet end to end, not 4 x 256 overlapping
    assert weights.numpy().tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]
    used = crops.numpy()
    assert (used[1, :2] == -20.0).all() and (used[2, 0] == -30.0).all()  # short clips repeat, never pad
    # every frame of the full clip is seen, at most 2 of the 938 twice
    seen = np.concatenate([np.flatnonzero(np.isin(batch[0, 0], used[0, k, 0])) for k in range(4)])
    assert set(seen.tolist()) == set(range(938)) and len(seen) - 938 <= 2


def test_the_tile_budget_hears_the_tiles_the_served_folds_hear() -> None:
    """training/tile_budget.py judges what the served folds would lose: its tiles must be theirs."""
    from training.tile_budget import tiles
    from training.tiling import tf, tiled_crops

    clip = np.random.default_rng(3).uniform(-70, 0, (128, 938)).astype(np.float32)
    served, _ = tiled_crops(tf.constant(clip[None]))
    np.testing.assert_array_equal(tiles(clip, 4), served.numpy()[0])


def test_tile_width_depends_on_the_shape_only() -> None:
    """A clip's tiles (so its answer) do not change with the clips it is batched with."""
    from training.tiling import clip_logits, tf, tile_width

    assert [int(tile_width(n)) for n in (100, 256, 257, 512, 938, 1000)] == [256, 256, 129, 256, 235, 250]
    rng = np.random.default_rng(2)
    clip = rng.uniform(-70, 0, (1, 128, 938)).astype(np.float32)
    short = np.full((1, 128, 938), -80.0, np.float32)
    short[0, :, :200] = rng.uniform(-70, 0, (128, 200))  # alone, one tile of 256 would suit it

    def model(x: tf.Tensor, training: bool = False) -> tf.Tensor:  # a stand-in: per-tile band means
        return tf.reduce_mean(x[..., 0], axis=2)[:, :10]

    alone = clip_logits(model, tf.constant(clip)).numpy()
    batched = clip_logits(model, tf.constant(np.concatenate([clip, short]))).numpy()
    np.testing.assert_allclose(batched[0], alone[0], rtol=1e-6)


def test_class_balanced_sampling() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    drawn = labels[balanced_songs(labels, 20_000, np.random.default_rng(0))]
    assert abs(drawn.mean() - 0.5) < 0.02


def test_temperature_scaling_fixes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 2000)
    logits = rng.normal(0, 1, (2000, 4))
    logits[np.arange(2000), labels] += 1.0
    overconfident = logits * 4
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(4.0, rel=0.25)
    before = calibrated(overconfident, 1.0)
    after = calibrated(overconfident, t)
    ece = lambda p: reliability(p.max(1), p.argmax(1) == labels)["ece"]  # noqa: E731
    assert ece(after) < 0.05 < ece(before)


def test_retile_keeps_the_weights_and_measures_the_folds_again(tmp_path) -> None:
    """python -m training.export --retile: same weights, today's tiles, validation re-measured."""
    import json

    from tests.synth import encode, synthetic_song
    from training.export import export_savedmodel, retile
    from training.models import build
    from training.tiling import clip_logits, tf

    genres = ["beats", "noise"]
    clips = []
    for genre in genres:
        for n in range(2):
            clips.append(tmp_path / "clips" / genre / f"{genre}{n}.wav")
            clips[-1].parent.mkdir(parents=True, exist_ok=True)
            clips[-1].write_bytes(encode(synthetic_song(genre, n, seconds=32.0)))
    model = build("xception-micro", (128, None, 1), len(genres))
    models = tmp_path / "models"
    export_savedmodel(model, genres, 1.0, models / "x_fold0", version=1)
    fold = {"model": "x_fold0", "temperature": 1.0, "val_accuracy": 0.0, "validation": [str(c) for c in clips]}
    (models / "training.json").write_text(json.dumps({"arch": "xception-micro", "genres": genres, "folds": [fold]}))

    (target,) = retile(models, cache=tmp_path / "cache")
    assert target == models / "x_fold0" / "2" and not (models / "x_fold0" / "1").exists()
    record = json.loads((models / "training.json").read_text())["folds"][0]
    assert np.array(record["validation_logits"]).shape == (4, 2) and record["temperature"] > 0
    mel = np.random.default_rng(3).uniform(-70, 0, (2, 128, 938)).astype(np.float32)
    served = tf.saved_model.load(str(target)).signatures["serving_default"](log_mel=tf.constant(mel))
    expected = tf.nn.softmax(clip_logits(model, tf.constant(mel)) / record["temperature"]).numpy()
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, rtol=1e-4, atol=1e-6)
