"""numba kernels for the fused featurizer: the parts librosa computes slowly.

Spectra here are frame-major, [n_frames, n_bins], so one frame is contiguous.

- `running_median`: scipy.ndimage.median_filter(mode="reflect") along axis 0, exactly. Each
  column keeps its window sorted; one update is a branch-free pass SIMD-vectorised across a
  tile of 64 columns that stays in cache (scipy's filter costs ~1 s a clip for HPSS).
- `harmonic_spectrum`: the percussive median along frequency, tile by tile of frames, and
  librosa's harmonic soft mask (power 2) applied to the STFT as each tile is done.
- `spectrum_summary`: |X|, |X|^2, the mel spectrogram (sparse filters), centroid, bandwidth
  and rolloff in one pass over the STFT.
- `piptrack_candidates`: the peaks librosa.piptrack finds, as estimate_tuning uses them.
- `overlap_add_into`, `rms_and_zcr`: the inverse STFT's overlap-add; RMS and zero crossings.
Tests compare every kernel with the librosa/scipy function it replaces.
"""

from __future__ import annotations

import numba
import numpy as np

LANES = 64  # columns slid at once: a tile of 31 x 64 sorted values stays in L1, and the
# lane loop is long enough for LLVM to vectorise it (8 or 16 lanes were not: 5x slower)


@numba.njit(cache=True, nogil=True)
def _reflect_index(n: int, size: int) -> np.ndarray:
    """Row of each window position, scipy "reflect" (d c b a | a b c d | d c b a), repeated
    for inputs shorter than the window."""
    half = size // 2
    idx = np.empty(n + 2 * half, dtype=np.int64)
    for i in range(n + 2 * half):
        j = i - half
        while j < 0 or j >= n:
            if j < 0:
                j = -j - 1
            if j >= n:
                j = 2 * n - j - 1
        idx[i] = j
    return idx


@numba.njit(cache=True, nogil=True, fastmath=True)
def _slide_median(tile: np.ndarray, idx: np.ndarray, size: int, out: np.ndarray) -> None:
    """Median of every window along axis 0 of `tile` [n, LANES], into `out` [n, LANES].

    Each lane keeps its window sorted. One step removes the oldest value and inserts the new
    one in a single branch-free pass over the sorted positions, the same for every lane:
    without the old value r[p] = s[p] if s[p] < old else s[p+1] (its first occurrence goes),
    with the new one s'[p] = min(r[p], max(new, r[p-1])). Exact, ties included.
    """
    half = size // 2
    n = tile.shape[0]
    srt = np.empty((size, LANES), dtype=tile.dtype)
    column = np.empty(size, dtype=tile.dtype)
    for lane in range(LANES):
        for j in range(size):
            column[j] = tile[idx[j], lane]
        column.sort()
        for j in range(size):
            srt[j, lane] = column[j]
    for lane in range(LANES):
        out[0, lane] = srt[half, lane]
    old = np.empty(LANES, dtype=tile.dtype)
    new = np.empty(LANES, dtype=tile.dtype)
    previous = np.empty(LANES, dtype=tile.dtype)
    for i in range(1, n):
        a = idx[i - 1]
        b = idx[i - 1 + size]
        for lane in range(LANES):
            old[lane] = tile[a, lane]
            new[lane] = tile[b, lane]
            previous[lane] = -np.inf
        for p in range(size - 1):
            for lane in range(LANES):
                s = srt[p, lane]
                r = srt[p + 1, lane] if s >= old[lane] else s
                srt[p, lane] = min(r, max(new[lane], previous[lane]))
                previous[lane] = r
        for lane in range(LANES):
            srt[size - 1, lane] = max(new[lane], previous[lane])
            out[i, lane] = srt[half, lane]


@numba.njit(cache=True, nogil=True)
def running_median(x: np.ndarray, size: int) -> np.ndarray:
    """scipy.ndimage.median_filter(x, size=(size, 1), mode="reflect") for float32 x [n, m],
    exactly, for odd `size`: columns are slid LANES at a time through a contiguous tile."""
    n, m = x.shape
    idx = _reflect_index(n, size)
    out = np.empty_like(x)
    tile = np.zeros((n, LANES), dtype=x.dtype)
    medians = np.empty((n, LANES), dtype=x.dtype)
    for c0 in range(0, m, LANES):
        width = min(LANES, m - c0)
        for i in range(n):
            for lane in range(width):
                tile[i, lane] = x[i, c0 + lane]
        _slide_median(tile, idx, size, medians)
        for i in range(n):
            for lane in range(width):
                out[i, c0 + lane] = medians[i, lane]
    return out


@numba.njit(cache=True, nogil=True)
def harmonic_spectrum(
    stft: np.ndarray, mag: np.ndarray, harm: np.ndarray, size: int, t0: int, t1: int
) -> np.ndarray:
    """Frames [t0, t1) of stft * librosa.util.softmask(harm, perc, power=2), perc = `mag`'s
    median along frequency (scipy "reflect", `size` bins); inputs [frames, bins], the result
    [t1 - t0, bins].

    The percussive median is slid tile by tile of frames (frames as lanes, transposed into a
    tile that stays in cache) and used at once: it is never stored.
    """
    n_f = mag.shape[1]
    idx = _reflect_index(n_f, size)
    out = np.empty((t1 - t0, n_f), dtype=stft.dtype)
    tile = np.zeros((n_f, LANES), dtype=mag.dtype)
    perc = np.empty((n_f, LANES), dtype=mag.dtype)
    tiny = np.finfo(np.float32).tiny
    for first in range(t0, t1, LANES):
        width = min(LANES, t1 - first)
        for lane in range(width):
            for f in range(n_f):
                tile[f, lane] = mag[first + lane, f]
        _slide_median(tile, idx, size, perc)
        for lane in range(width):
            t = first + lane
            for f in range(n_f):
                h = harm[t, f]
                p = perc[f, lane]
                z = max(h, p)
                if z < tiny:
                    out[t - t0, f] = 0.0
                else:
                    hz = (h / z) * (h / z)
                    pz = (p / z) * (p / z)
                    out[t - t0, f] = stft[t, f] * (hz / (hz + pz))
    return out


# Sums may be reassociated (SIMD partial sums); no fused multiply-adds, so |X| stays bit-exact;
# NaN and infinity keep their meaning.
REASSOCIATE = {"reassoc", "nsz", "arcp"}


@numba.njit(cache=True, nogil=True, fastmath=REASSOCIATE)
def spectrum_summary(
    stft: np.ndarray, mel_basis: np.ndarray, mel_lo: np.ndarray, mel_hi: np.ndarray, freqs: np.ndarray,
    roll_percent: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the STFT frames [frames, bins]: |X|, |X|^2, the mel power spectrogram
    [n_mels, frames] (band m's filter is non-zero only on bins [mel_lo[m], mel_hi[m]): about
    two weights a bin instead of a dense 128 x 1025 product), and per-frame spectral centroid,
    bandwidth (p=2, normalised) and rolloff from |X|, as librosa computes them."""
    n_t, n_f = stft.shape
    n_mels = mel_basis.shape[0]
    mag = np.empty((n_t, n_f), dtype=np.float32)
    power = np.empty((n_t, n_f), dtype=np.float32)
    mel = np.empty((n_mels, n_t), dtype=np.float32)
    cent = np.zeros(n_t)
    bw = np.zeros(n_t)
    roll = np.zeros(n_t)
    tiny = np.finfo(np.float32).tiny
    for t in range(n_t):
        frame, m, pw = stft[t], mag[t], power[t]
        for f in range(n_f):  # vectorised: no sum in this loop
            re = frame[f].real
            im = frame[f].imag
            pw[f] = re * re + im * im
            m[f] = np.sqrt(pw[f])
        total = 0.0
        weighted = 0.0
        for f in range(n_f):
            s = np.float64(m[f])
            total += s
            weighted += freqs[f] * s
        for b in range(n_mels):
            acc = np.float32(0.0)
            for f in range(mel_lo[b], mel_hi[b]):
                acc += mel_basis[b, f] * pw[f]
            mel[b, t] = acc
        if total < tiny:
            roll[t] = freqs[0]
            continue
        c = weighted / total
        cent[t] = c
        acc2 = 0.0
        for f in range(n_f):
            d = freqs[f] - c
            acc2 += m[f] * d * d
        bw[t] = np.sqrt(acc2 / total)
        threshold = roll_percent * total
        cum = 0.0
        roll[t] = freqs[n_f - 1]
        for f in range(n_f):
            cum += m[f]
            if cum >= threshold:
                roll[t] = freqs[f]
                break
    return mag, power, mel, cent, bw, roll


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
def overlap_add_into(out: np.ndarray, frames: np.ndarray, window: np.ndarray, first: int, hop: int) -> None:
    """Add the windowed frames [k, n_fft], the first being frame number `first`, into `out`."""
    k, n_fft = frames.shape
    for t in range(k):
        base = (first + t) * hop
        for i in range(n_fft):
            out[base + i] += frames[t, i] * window[i]


@numba.njit(cache=True, nogil=True)
def rms_and_zcr(y: np.ndarray, n_fft: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """librosa.feature.rms(y) and zero_crossing_rate(y) (centred frames) from two prefix sums.

    rms pads with zeros, zcr with the edge samples, as librosa does; |x| <= 1e-10 counts as 0.
    Padding adds no energy and (being constant) no crossings, so both prefix sums run over y
    alone and each frame's bounds are clipped to it.
    """
    n = len(y)
    half = n_fft // 2
    n_frames = 1 + n // hop
    energy = np.zeros(n + 1)  # energy[k]: sum of y[:k]**2
    crossings = np.zeros(n, dtype=np.int64)  # crossings[k]: sign changes between y[j-1], y[j], j <= k
    previous_negative = abs(y[0]) > 1e-10 and y[0] < 0
    energy[1] = float(y[0]) * float(y[0])
    for j in range(1, n):
        x = y[j]
        energy[j + 1] = energy[j] + float(x) * float(x)
        negative = abs(x) > 1e-10 and x < 0
        crossings[j] = crossings[j - 1] + (1 if negative != previous_negative else 0)
        previous_negative = negative
    rms = np.empty(n_frames, dtype=np.float32)
    zcr = np.empty(n_frames)
    for t in range(n_frames):
        s = t * hop - half  # the frame covers y[s : s + n_fft] (padding outside)
        lo = min(max(s, 0), n)
        hi = min(max(s + n_fft, 0), n)
        rms[t] = np.sqrt(max(energy[hi] - energy[lo], 0.0) / n_fft)
        # crossings between neighbours inside the frame: pairs (j-1, j) with s < j < s + n_fft
        first = min(max(s, 0), n - 1)
        last = min(max(s + n_fft - 1, 0), n - 1)
        zcr[t] = (crossings[last] - crossings[first]) / n_fft
    return rms, zcr
