"""The featurizer refuses audio no song is made of, with INVALID_ARGUMENT a caller can act on
(never INTERNAL, which ingestion would retry): non-finite samples, absurd levels."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from services.common.errors import ServiceError
from services.featurizer.pipeline import MAX_PEAK, analyse
from tests import synth


def float_wav(samples: np.ndarray) -> bytes:
    return synth.encode(samples.astype(np.float32), sr=16_000, subtype="FLOAT")


@pytest.mark.parametrize(("gain", "why"), [(1e10, "dBFS"), (1e18, "dBFS"), (np.nan, "non-finite samples")])
def test_absurd_audio_is_invalid_argument(gain: float, why: str) -> None:
    sine = synth.tone(32, 440.0, 16_000) * gain
    with pytest.raises(ServiceError) as err:
        analyse(float_wav(sine), "loud.wav")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and why in err.value.message
    assert "'loud.wav'" in err.value.message


def test_a_hot_float_master_is_still_music() -> None:
    hot = synth.tone(32, 440.0, 16_000) * (0.9 * MAX_PEAK / 0.5)  # synth.tone peaks at 0.5
    result = analyse(float_wav(hot), "hot.wav")
    assert np.all(np.isfinite(result.features.vector))
