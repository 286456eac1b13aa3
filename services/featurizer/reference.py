"""The naive reference: one librosa call per feature, each computing its own STFT.

This is how the seed notebook (and GTZAN's features CSV) computes the vector. It is the
ground truth the fused implementation is tested and benchmarked against; it is not served.
"""

from __future__ import annotations

import librosa
import numpy as np

from services.featurizer.schema import assemble


def reference_log_mel(y: np.ndarray, sr: int) -> np.ndarray:
    """musicnn's input as its package computes it, but in float32 (its float16 cast overflows)."""
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, hop_length=256, n_mels=96)
    return np.log10(10000.0 * mel.astype(np.float32) + 1.0)


def reference_vector(y: np.ndarray, sr: int) -> np.ndarray:
    chroma = librosa.feature.chroma_stft(y=y, sr=sr)
    rms = librosa.feature.rms(y=y)
    centroid = librosa.feature.spectral_centroid(y=y, sr=sr)
    bandwidth = librosa.feature.spectral_bandwidth(y=y, sr=sr)
    rolloff = librosa.feature.spectral_rolloff(y=y, sr=sr)
    zcr = librosa.feature.zero_crossing_rate(y)
    harmonic, percussive = librosa.effects.hpss(y)
    tempo = librosa.feature.tempo(y=y, sr=sr)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
    return assemble({
        "chroma_stft": chroma, "rms": rms, "spectral_centroid": centroid, "spectral_bandwidth": bandwidth,
        "rolloff": rolloff, "zero_crossing_rate": zcr, "harmony": harmonic, "perceptr": percussive,
        "tempo": tempo, "mfcc": mfcc,
    })
