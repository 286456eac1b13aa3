"""The fused featurizer: one STFT shared by the log-mel and every feature of the vector.

The naive reference (reference.py) runs nine librosa calls, each with its own STFT, and
scipy's median filter for HPSS. Here the STFT, its magnitude and power, and the mel power
spectrogram are computed once; MFCC, onset strength/tempo and the log-mel reuse the mel;
chroma, spectral shape and HPSS reuse the magnitude; the slow parts run as numba kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import librosa
import numpy as np
import scipy.fft

from services.featurizer import kernels
from services.featurizer.ear_mel import ear_mel
from services.featurizer.median import running_median
from services.featurizer.schema import assemble
from services.featurizer.stft_blocks import frame_count, spectra
from services.featurizer.window import CLIP_SAMPLES, SAMPLE_RATE

N_FFT = 2048
HOP = 512
N_MELS = 128
HPSS_KERNEL = 31
ROLL_PERCENT = 0.85
TEMPO_AC_SECONDS = 8.0
BLOCK_FRAMES = 128  # frames transformed at once: a block's arrays stay in L2


@dataclass(frozen=True)
class Features:
    log_mel: np.ndarray  # float32 [96, n_frames]: the pretrained ear's input (ear_mel.py)
    vector: np.ndarray  # float32 [N_FEATURES]


@lru_cache(maxsize=4)
def _mel_filters(sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """librosa's mel basis [n_mels, bins] and each band's non-zero bins [lo, hi)."""
    basis = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS)
    nonzero = basis > 0
    lo = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), 0)
    hi = np.where(nonzero.any(axis=1), basis.shape[1] - nonzero[:, ::-1].argmax(axis=1), 0)
    return basis, lo.astype(np.int64), hi.astype(np.int64)


@lru_cache(maxsize=4)
def _fft_freqs(sr: int) -> np.ndarray:
    return librosa.fft_frequencies(sr=sr, n_fft=N_FFT)


@lru_cache(maxsize=256)
def _chroma_basis_t(sr: int, tuning: float) -> np.ndarray:
    """librosa's chroma filters, transposed: [bins, 12]."""
    return np.ascontiguousarray(librosa.filters.chroma(sr=sr, n_fft=N_FFT, tuning=tuning, n_chroma=12).T)


@lru_cache(maxsize=1)
def _synthesis_window() -> np.ndarray:
    return librosa.filters.get_window("hann", N_FFT, fftbins=True).astype(np.float32)


@lru_cache(maxsize=8)
def _inverse_window_sum(n_frames: int) -> np.ndarray:
    wss = librosa.filters.window_sumsquare(
        window="hann", n_frames=n_frames, hop_length=HOP, win_length=N_FFT, n_fft=N_FFT, dtype=np.float32
    )
    inv = np.zeros_like(wss)
    good = wss > librosa.util.tiny(wss)
    inv[good] = 1.0 / wss[good]
    return inv


def _stft(y: np.ndarray) -> np.ndarray:
    """librosa.stft(y) (hann, centred, zero padding), frame-major: [n_frames, n_bins], computed
    block by block (stft_blocks.py)."""
    out = np.empty((frame_count(len(y), N_FFT, HOP), N_FFT // 2 + 1), dtype=np.complex64)
    for t0, block in spectra(y, N_FFT, HOP, _synthesis_window(), BLOCK_FRAMES):
        out[t0 : t0 + len(block)] = block
    return out


def _harmonic(stft: np.ndarray, mag: np.ndarray, length: int) -> np.ndarray:
    """librosa.effects.hpss(y)[0]: the inverse STFT (hann, centred) of the harmonic part.

    The medians along time and along frequency (median.py), then block by block of frames
    the soft mask, the inverse FFT and the overlap-add: no full masked spectrum or frame
    array is ever held."""
    harm = running_median(mag, HPSS_KERNEL)  # along time
    perc = np.empty_like(mag)
    running_median(mag.T, HPSS_KERNEL, out=perc.T)  # along frequency
    spectrum = stft.view(np.float32)  # [frames, 2 * bins]: real, imaginary
    n_frames = len(stft)
    y = np.zeros(N_FFT + HOP * (n_frames - 1), dtype=np.float32)
    window = _synthesis_window()
    for t0 in range(0, n_frames, BLOCK_FRAMES):
        t1 = min(t0 + BLOCK_FRAMES, n_frames)
        masked = kernels.harmonic_spectrum(spectrum, harm, perc, t0, t1).view(np.complex64)
        kernels.overlap_add_into(y, scipy.fft.irfft(masked, n=N_FFT, axis=-1), window, t0, HOP)
    y *= _inverse_window_sum(n_frames)
    start = N_FFT // 2
    return y[start : start + length]


@lru_cache(maxsize=4)
def _tempo_tables(sr: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """librosa.feature.tempo's defaults: 8 s autocorrelation window, log-normal prior at 120 BPM."""
    win = int(librosa.time_to_frames(TEMPO_AC_SECONDS, sr=sr, hop_length=HOP))
    window = librosa.filters.get_window("hann", win, fftbins=True)
    bpms = librosa.tempo_frequencies(win, hop_length=HOP, sr=sr)
    with np.errstate(divide="ignore"):
        logprior = -0.5 * (np.log2(bpms) - np.log2(120.0)) ** 2
    logprior[: int(np.argmax(bpms < 320.0))] = -np.inf
    return win, window, bpms, logprior


def _tempo(onset: np.ndarray, sr: int) -> float:
    """librosa.feature.tempo(onset_envelope=onset, sr=sr) with one inverse FFT instead of one per frame.

    The tempogram normalises each frame's autocorrelation by its largest magnitude, which is
    always the lag-0 value (the frame's energy); the mean over frames is then linear in the
    power spectra, so they are averaged first (kernels.mean_normalised_power: one sliding DFT,
    zero-padded to 2 win points, enough for every lag below win) and transformed back once.
    """
    win, window, bpms, logprior = _tempo_tables(sr)
    padded = np.pad(onset, win // 2, mode="linear_ramp", end_values=[0, 0]).astype(np.float64)
    energy = np.correlate(padded**2, window**2, mode="valid")[: len(onset)]
    energy[energy < np.finfo(energy.dtype).tiny] = 1.0  # librosa leaves (near-)silent frames as they are
    first = scipy.fft.rfft(padded[:win], n=2 * win)
    power = kernels.mean_normalised_power(padded, len(onset), win, first, energy)
    tempogram = scipy.fft.irfft(power, n=2 * win)[:win]
    return float(bpms[np.argmax(np.log1p(1e6 * tempogram) + logprior)])


def _tuning(power: np.ndarray, sr: int) -> float:
    pitches, mags = kernels.piptrack_candidates(power, float(sr), N_FFT, 150.0, 4000.0, 0.1)
    if len(pitches) == 0:
        return 0.0
    threshold = np.median(mags)
    return float(librosa.pitch_tuning(pitches[mags >= threshold], resolution=0.01, bins_per_octave=12))


def _power_db(mel: np.ndarray, top_db: float = 80.0) -> np.ndarray:
    """librosa.power_to_db(mel): 10 log10(max(mel, 1e-10)), clipped at top_db below its peak."""
    power_db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(power_db, power_db.max() - top_db)


def featurize(y: np.ndarray, sr: int = SAMPLE_RATE) -> Features:
    """The ear's log-mel and the feature vector of a clip (16 kHz float32)."""
    stft = _stft(y)  # [frames, bins]
    mag, power, mel, centroid, bandwidth, rolloff = kernels.spectrum_summary(
        stft, *_mel_filters(sr), _fft_freqs(sr), ROLL_PERCENT
    )  # mel: [n_mels, frames]
    mel_db = _power_db(mel)

    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=20)
    onset = librosa.onset.onset_strength(S=mel_db, sr=sr)
    tempo = _tempo(onset, sr)

    # (power @ basis.T).T: half the time of basis @ power.T (BLAS reads power row by row)
    chroma_raw = (power @ _chroma_basis_t(sr, _tuning(power, sr))).T
    chroma = librosa.util.normalize(chroma_raw, norm=np.inf, axis=-2)
    rms, zcr = kernels.rms_and_zcr(y, N_FFT, HOP)

    harmonic = _harmonic(stft, mag, len(y))
    # The soft masks sum to one wherever either median is non-zero and the STFT reconstructs
    # y exactly, so y - harmonic is librosa's percussive part (one inverse STFT instead of two).
    percussive = y - harmonic

    vector = assemble({
        "chroma_stft": chroma, "rms": rms, "spectral_centroid": centroid, "spectral_bandwidth": bandwidth,
        "rolloff": rolloff, "zero_crossing_rate": zcr, "harmony": harmonic, "perceptr": percussive,
        "tempo": tempo, "mfcc": mfcc,
    })
    return Features(log_mel=ear_mel(y), vector=vector)


def warm_up() -> None:
    """Compile the numba kernels and fill the caches (run before reporting SERVING)."""
    rng = np.random.default_rng(0)
    featurize((0.1 * rng.standard_normal(CLIP_SAMPLES)).astype(np.float32))
