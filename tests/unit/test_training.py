"""The training pieces: artist-aware splits, the ear's patches never on padding, calibration."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibrate import calibrated, fit_temperature, reliability
from training.data import artist_names, valid_frames
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


def test_groups_are_real_artists_from_the_metadata(tmp_path) -> None:
    (tmp_path / "genres" / "rock").mkdir(parents=True)
    (tmp_path / "gtzan_metadata.csv").write_text(
        "file,genre,artist,title,album,year\n"
        "genres/rock/rock.00001.wav,rock,Queen,A,B,1975\n"
        "genres/rock/rock.00042.wav,rock,Queen,C,D,1977\n"
        "genres/rock/rock.00002.wav,rock,,E,F,1990\n"
    )
    paths = [str(tmp_path / "genres" / "rock" / n) for n in ("rock.00001.wav", "rock.00042.wav", "rock.00002.wav",
                                                              "rock.00003.wav", "song.wav")]
    names = artist_names(paths)
    assert names[0] == names[1] == "artist:Queen"  # ids 1 and 42: one artist, far apart
    assert names[2] == names[3] == "rock:block0"  # no artist given: the GTZAN id block
    assert names[4] == "clip:rock/song"


def test_padding_is_never_in_a_patch() -> None:
    """A clip shorter than 30 s is zero-padded by the featurizer (log10(1) = 0 in the ear's mel):
    the ear's patches repeat its live frames, as musicnn's repeat-pad does, and never reach the padding."""
    from training.ear.musicnn import PATCH_FRAMES, clip_patches, tf

    mel = np.zeros((2, 96, 1876), np.float32)
    rng = np.random.default_rng(0)
    mel[0] = rng.uniform(0.5, 3, (96, 1876))
    mel[1, :, :100] = rng.uniform(0.5, 3, (96, 100))  # 1.6 s of sound, shorter than one patch
    patches = clip_patches(tf.constant(mel), 3).numpy().reshape(2, 3, PATCH_FRAMES, 96)
    assert (patches[1].max(axis=-1) > 0.4).all()  # every frame of every patch is live
    assert valid_frames(mel[1]) == 100 and valid_frames(mel[0]) == 1876
    starts = [int(np.flatnonzero((p[0] == mel[0].T).all(axis=1))[0]) for p in patches[0]]
    assert starts == [round((k + 0.5) / 3 * (1876 - PATCH_FRAMES)) for k in range(3)]


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
