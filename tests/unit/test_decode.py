"""Decoding: several channels are mixed to their mean, exactly as numpy's mean would."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from services.featurizer.decode import decode_span, mix_to_mono
from tests import synth


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 7, 8, 12])
def test_mix_to_mono_is_the_channels_mean(channels: int) -> None:
    rng = np.random.default_rng(channels)
    frames = (rng.standard_normal((48_001, channels)) * rng.uniform(1e-4, 2.0, channels)).astype(np.float32)
    mono = mix_to_mono(frames)
    assert mono.dtype == np.float32 and mono.shape == (48_001,)
    if channels < 8:  # numpy adds fewer than 8 values one after another, as the columns are added
        np.testing.assert_array_equal(mono, frames.mean(axis=1))
    else:  # from 8 on numpy sums in pairs: the order, not the value, differs
        np.testing.assert_allclose(mono, frames.mean(axis=1), rtol=0, atol=4 * np.finfo(np.float32).eps)


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_24")])
def test_a_multichannel_upload_decodes_to_the_mean_of_its_window(fmt: str, subtype: str) -> None:
    sr = 16_000
    song = np.stack([synth.beats(100, 100, sr=sr), synth.chirp(100, sr=sr), synth.noise(100, sr=sr)], axis=1)
    data = synth.encode(song, sr=sr, fmt=fmt, subtype=subtype)
    lo, hi = 59 * sr, 91 * sr
    decoded = decode_span(data, f"song.{fmt.lower()}", lambda seconds, rate: (lo, hi), 3.0, 3600.0)
    source = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0]
    assert decoded.channels == 3 and decoded.offset == lo
    np.testing.assert_array_equal(decoded.samples, source[lo:hi].mean(axis=1))
