"""The pretrained ear's input (musicnn, Pons & Serra 2019): log10(10000 mel + 1) in float32.

musicnn was trained on 16 kHz mono, n_fft 512, hop 256, 96 mel bands (librosa's default
slaney mel, power 2, centred frames with zero padding). Its package casts the mel to float16
before the logarithm, which overflows to inf on loud clips; here it stays float32. The clip is
the featurizer's own 30 s window (decode, window and resample shared with the vector).
"""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np

from services.featurizer.stft_blocks import frame_count, spectra
from services.featurizer.window import SAMPLE_RATE

N_FFT = 512
HOP = 256
N_MELS = 96
BLOCK_FRAMES = 512  # frames windowed and transformed at once (a block stays in L2)


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """(hann window [n_fft], mel basis transposed [bins, n_mels]), float32 as librosa's."""
    window = librosa.filters.get_window("hann", N_FFT, fftbins=True).astype(np.float32)
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
    return window, np.ascontiguousarray(basis.T)


def ear_mel(y: np.ndarray) -> np.ndarray:
    """[96, frames] float32: librosa.feature.melspectrogram(y, sr=16000, n_fft=512, hop_length=256,
    n_mels=96), then log10(10000 x + 1)."""
    window, basis_t = _tables()
    mel = np.empty((frame_count(len(y), N_FFT, HOP), N_MELS), dtype=np.float32)
    for t0, spectrum in spectra(y, N_FFT, HOP, window, BLOCK_FRAMES):
        power = spectrum.real**2 + spectrum.imag**2
        np.matmul(power, basis_t, out=mel[t0 : t0 + len(spectrum)])
    mel *= 10000.0
    mel += 1.0
    np.log10(mel, out=mel)
    return np.ascontiguousarray(mel.T)
