"""numba kernels for the fused featurizer: the parts librosa computes slowly.

Spectra here are frame-major, [n_frames, n_bins], so one frame is contiguous.

- `running_median`: scipy.ndimage.median_filter(mode="reflect") along axis 0 for every
  column at once. Each column keeps its window sorted; one update is a branch-free pass
  SIMD-vectorised across columns (scipy's filter costs ~1 s a clip for HPSS; this ~5 ms).
- `harmonic_spectrum`: librosa's harmonic soft mask (power 2) applied to the STFT in one pass.
- `spectral_shape`: centroid, bandwidth and rolloff in one pass over the magnitudes.
- `piptrack_candidates`: the peaks librosa.piptrack finds, as estimate_tuning uses them.
Tests compare every kernel with the librosa/scipy function it replaces.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, fastmath=True)
def running_median(x: np.ndarray, size: int) -> np.ndarray:
    """scipy.ndimage.median_filter(x, size=(size, 1), mode="reflect"), exactly, for odd `size`.

    Each column keeps its window sorted. One step removes the oldest value and inserts the
    new one in a single branch-free pass over the sorted positions, the same for every column,
    so the column loop is SIMD-vectorised; the median is the middle row.
    """
    half = size // 2
    n, lanes = x.shape
    idx = np.empty(n + 2 * half, dtype=np.int64)
    for i in range(n + 2 * half):
        j = i - half
        # scipy "reflect": (d c b a | a b c d | d c b a), repeated for very short inputs
        while j < 0 or j >= n:
            if j < 0:
                j = -j - 1
            if j >= n:
                j = 2 * n - j - 1
        idx[i] = j
    srt = np.empty((size, lanes), dtype=x.dtype)  # each column's window, ascending
    removed = np.empty(lanes, dtype=x.dtype)  # position p-1 of the window without the old value
    out = np.empty((n, lanes), dtype=x.dtype)
    column = np.empty(size, dtype=x.dtype)
    for lane in range(lanes):
        for j in range(size):
            column[j] = x[idx[j], lane]
        column.sort()
        srt[:, lane] = column
    out[0] = srt[half]
    for i in range(1, n):
        old = x[idx[i - 1]]
        new = x[idx[i - 1 + size]]
        # Without old: R[p] = S[p] if S[p] < old else S[p+1] (drops its first occurrence).
        # With new:    S'[p] = R[p] if R[p] < new else max(new, R[p-1]).
        for lane in range(lanes):
            s = srt[0, lane]
            r = s if s < old[lane] else srt[1, lane]
            srt[0, lane] = r if r < new[lane] else new[lane]
            removed[lane] = r
        for p in range(1, size - 1):
            for lane in range(lanes):
                s = srt[p, lane]
                r = s if s < old[lane] else srt[p + 1, lane]
                srt[p, lane] = r if r < new[lane] else max(new[lane], removed[lane])
                removed[lane] = r
        for lane in range(lanes):
            srt[size - 1, lane] = max(new[lane], removed[lane])
        out[i] = srt[half]
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def harmonic_spectrum(stft: np.ndarray, harm: np.ndarray, perc: np.ndarray) -> np.ndarray:
    """stft * librosa.util.softmask(harm, perc, power=2) (all [frames, bins])."""
    n_t, n_f = stft.shape
    out = np.empty((1, n_t, n_f), dtype=stft.dtype)
    tiny = np.finfo(np.float32).tiny
    for t in range(n_t):
        for f in range(n_f):
            h = harm[t, f]
            p = perc[t, f]
            z = max(h, p)
            if z < tiny:
                out[0, t, f] = 0.0
            else:
                hz = (h / z) * (h / z)
                pz = (p / z) * (p / z)
                out[0, t, f] = stft[t, f] * (hz / (hz + pz))
    return out


@numba.njit(cache=True, nogil=True)
def spectral_shape(
    mag: np.ndarray, freqs: np.ndarray, roll_percent: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame spectral centroid, bandwidth (p=2, normalised) and rolloff from |STFT|."""
    n_t, n_f = mag.shape
    cent = np.zeros(n_t)
    bw = np.zeros(n_t)
    roll = np.zeros(n_t)
    tiny = np.finfo(np.float32).tiny
    for t in range(n_t):
        total = 0.0
        weighted = 0.0
        for f in range(n_f):
            s = mag[t, f]
            total += s
            weighted += freqs[f] * s
        if total < tiny:
            roll[t] = freqs[0]
            continue
        c = weighted / total
        cent[t] = c
        acc = 0.0
        for f in range(n_f):
            d = freqs[f] - c
            acc += mag[t, f] * d * d
        bw[t] = np.sqrt(acc / total)
        threshold = roll_percent * total
        cum = 0.0
        roll[t] = freqs[n_f - 1]
        for f in range(n_f):
            cum += mag[t, f]
            if cum >= threshold:
                roll[t] = freqs[f]
                break
    return cent, bw, roll


@numba.njit(cache=True, nogil=True)
def piptrack_candidates(
    S: np.ndarray, sr: float, n_fft: int, fmin: float, fmax: float, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(pitches, mags) of the peaks librosa.piptrack(S=S.T) reports, with pitch > 0."""
    n_t, n_f = S.shape
    bin_hz = sr / n_fft
    pitches = np.empty(n_f * n_t)
    mags = np.empty(n_f * n_t)
    count = 0
    for t in range(n_t):
        ref = 0.0
        for f in range(n_f):
            ref = max(ref, S[t, f])
        ref *= threshold
        for f in range(1, n_f - 1):
            freq = f * bin_hz
            if freq < fmin or freq >= fmax:
                continue
            z = S[t, f] if S[t, f] > ref else 0.0
            zl = S[t, f - 1] if S[t, f - 1] > ref else 0.0
            zr = S[t, f + 1] if S[t, f + 1] > ref else 0.0
            if not (z > zl and z >= zr):
                continue
            a = S[t, f + 1] + S[t, f - 1] - 2 * S[t, f]
            b = (S[t, f + 1] - S[t, f - 1]) / 2
            shift = 0.0 if abs(b) >= abs(a) else -b / a
            pitch = (f + shift) * bin_hz
            if pitch > 0:
                pitches[count] = pitch
                mags[count] = S[t, f] + 0.5 * b * shift
                count += 1
    return pitches[:count], mags[:count]


@numba.njit(cache=True, nogil=True, fastmath=True)
def overlap_add(frames: np.ndarray, window: np.ndarray, inv_wss: np.ndarray, hop: int) -> np.ndarray:
    """Windowed overlap-add of [k, frames, n_fft] with librosa's window-sum-square normalisation."""
    k, n_frames, n_fft = frames.shape
    out = np.zeros((k, n_fft + hop * (n_frames - 1)), dtype=np.float32)
    for c in range(k):
        for t in range(n_frames):
            base = t * hop
            for i in range(n_fft):
                out[c, base + i] += frames[c, t, i] * window[i]
        for i in range(out.shape[1]):
            out[c, i] *= inv_wss[i]
    return out


@numba.njit(cache=True, nogil=True)
def rms_and_zcr(y: np.ndarray, n_fft: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """librosa.feature.rms(y) and zero_crossing_rate(y) (centred frames) from two prefix sums.

    rms pads with zeros, zcr with the edge samples, as librosa does; |x| <= 1e-10 counts as 0.
    """
    n = len(y)
    half = n_fft // 2
    total = n + 2 * half
    n_frames = 1 + (total - n_fft) // hop
    energy = np.zeros(total + 1)
    crossings = np.zeros(total, dtype=np.int64)
    previous_negative = False
    for i in range(total):
        j = min(max(i - half, 0), n - 1)  # edge padding for the crossings
        x = y[j]
        inside = half <= i < half + n
        energy[i + 1] = energy[i] + (float(x) * float(x) if inside else 0.0)
        negative = abs(x) > 1e-10 and x < 0
        crossings[i] = (crossings[i - 1] if i else 0) + (1 if i and negative != previous_negative else 0)
        previous_negative = negative
    rms = np.empty(n_frames, dtype=np.float32)
    zcr = np.empty(n_frames)
    for t in range(n_frames):
        s = t * hop
        rms[t] = np.sqrt(max(energy[s + n_fft] - energy[s], 0.0) / n_fft)
        # crossings between samples s..s+n_fft-1 are flagged at indices s+1..s+n_fft-1
        zcr[t] = (crossings[s + n_fft - 1] - crossings[s]) / n_fft
    return rms, zcr
