"""numba kernels for the fused featurizer: the parts librosa computes slowly.

Spectra here are frame-major, [n_frames, n_bins], so one frame is contiguous.

- `harmonic_spectrum`: librosa's harmonic soft mask (power 2) applied to the STFT, block by
  block of frames (HPSS's medians are median.py's).
- `spectrum_summary`: |X|, |X|^2, the mel spectrogram (sparse filters), centroid, bandwidth
  and rolloff in one pass over the STFT.
- `piptrack_candidates`: the peaks librosa.piptrack finds, as estimate_tuning uses them.
- `window_frames_into`, `overlap_add_into`: the STFT's windowed frames, the inverse STFT's
  overlap-add.
- `mean_normalised_power`: tempo's frames' power spectra, from one sliding DFT.
- `rms_and_zcr`: RMS and zero crossings.
Tests compare every kernel with the librosa/scipy function it replaces.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, error_model="numpy")
def harmonic_spectrum(stft: np.ndarray, harm: np.ndarray, perc: np.ndarray, t0: int, t1: int) -> np.ndarray:
    """Frames [t0, t1) of stft * librosa.util.softmask(harm, perc, power=2), bit for bit.

    stft is the complex64 STFT seen as float32 [frames, 2 * bins] (real, imaginary), harm
    and perc [frames, bins]; the result is float32 [t1 - t0, 2 * bins], to be seen as
    complex64 again. Branch-free, as librosa computes it (Z < tiny counts as 1, its mask
    as 0), so the loop vectorises."""
    n_f = harm.shape[1]
    out = np.empty((t1 - t0, 2 * n_f), dtype=np.float32)
    tiny = np.finfo(np.float32).tiny
    for t in range(t0, t1):
        h_row, p_row, s_row, o_row = harm[t], perc[t], stft[t], out[t - t0]
        for f in range(n_f):
            h = h_row[f]
            p = p_row[f]
            z = max(h, p)
            good = z >= tiny
            z = z if good else np.float32(1.0)
            hz = (h / z) * (h / z)
            pz = (p / z) * (p / z)
            mask = hz / (hz + pz) if good else np.float32(0.0)
            o_row[2 * f] = s_row[2 * f] * mask
            o_row[2 * f + 1] = s_row[2 * f + 1] * mask
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
    bandwidth (p=2, normalised) and rolloff from |X|, as librosa computes them.

    Indices are unsigned so the loops vectorise (numba wraps signed ones: the mel bands ran
    3x slower); the rolloff adds blocks of 16 bins until the threshold is near, then bins."""
    n_t, n_f = stft.shape
    n_mels = mel_basis.shape[0]
    values = stft.view(np.float32)  # [frames, 2 * bins]: real, imaginary
    mag = np.empty((n_t, n_f), dtype=np.float32)
    power = np.empty((n_t, n_f), dtype=np.float32)
    mel = np.empty((n_mels, n_t), dtype=np.float32)
    cent = np.zeros(n_t)
    bw = np.zeros(n_t)
    roll = np.zeros(n_t)
    tiny = np.finfo(np.float32).tiny
    bins = np.uint64(n_f)
    for t in range(n_t):
        frame, m, pw = values[t], mag[t], power[t]
        for f in range(bins):  # vectorised: no sum in this loop
            re = frame[2 * f]
            im = frame[2 * f + 1]
            pw[f] = re * re + im * im
            m[f] = np.sqrt(pw[f])
        total = 0.0
        weighted = 0.0
        for f in range(bins):
            s = np.float64(m[f])
            total += s
            weighted += freqs[f] * s
        for b in range(n_mels):
            acc = np.float32(0.0)
            band = mel_basis[b]
            for f in range(np.uint64(mel_lo[b]), np.uint64(mel_hi[b])):
                acc += band[f] * pw[f]
            mel[b, t] = acc
        if total < tiny:
            roll[t] = freqs[0]
            continue
        c = weighted / total
        cent[t] = c
        acc2 = 0.0
        for f in range(bins):
            d = freqs[f] - c
            acc2 += m[f] * d * d
        bw[t] = np.sqrt(acc2 / total)
        threshold = roll_percent * total
        cum = 0.0
        first = np.uint64(0)
        while first < bins:
            last = min(first + np.uint64(16), bins)
            block = 0.0
            for f in range(first, last):
                block += m[f]
            if cum + block >= threshold:
                break
            cum += block
            first = last
        roll[t] = freqs[n_f - 1]
        for f in range(first, bins):
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
    lo, hi = n_f - 1, 1  # the bins [lo, hi) inside [fmin, fmax), as tested bin by bin below
    for f in range(1, n_f - 1):
        if fmin <= f * bin_hz < fmax:
            lo, hi = min(lo, f), f + 1
    lanes = np.zeros(16, dtype=S.dtype)
    above = np.zeros(n_f, dtype=np.bool_)
    for t in range(n_t):
        row = S[t]
        lanes[:] = 0.0
        whole = np.uint64(n_f - n_f % 16)
        for f0 in range(np.uint64(0), whole, np.uint64(16)):  # the frame's maximum, 16 lanes at once
            for lane in range(np.uint64(16)):
                lanes[lane] = max(lanes[lane], row[f0 + lane])
        ref = np.float32(0.0)
        for lane in range(16):
            ref = max(ref, lanes[lane])
        for f in range(whole, np.uint64(n_f)):
            ref = max(ref, row[f])
        ref *= threshold
        for f in range(np.uint64(lo), np.uint64(hi)):  # vectorised; only these can be peaks
            above[f] = row[f] > ref
        for f in range(lo, hi):
            if not above[f]:
                continue
            z = row[f]
            zl = row[f - 1] if row[f - 1] > ref else 0.0
            zr = row[f + 1] if row[f + 1] > ref else 0.0
            if not (z > zl and z >= zr):
                continue
            a = row[f + 1] + row[f - 1] - 2 * row[f]
            b = (row[f + 1] - row[f - 1]) / 2
            shift = 0.0 if abs(b) >= abs(a) else -b / a
            pitch = (f + shift) * bin_hz
            if pitch > 0:
                pitches[count] = pitch
                mags[count] = row[f] + 0.5 * b * shift
                count += 1
    return pitches[:count], mags[:count]


@numba.njit(cache=True, nogil=True)
def window_frames_into(out: np.ndarray, y: np.ndarray, window: np.ndarray, first: int, hop: int) -> None:
    """out[t] = window * y[(first + t) * hop : ... + n_fft] for the rows of out [k, n_fft]
    (unsigned indices, so the loop vectorises)."""
    k, n_fft = out.shape
    for t in range(k):
        base = np.uint64((first + t) * hop)
        row = out[t]
        for i in range(np.uint64(n_fft)):
            row[i] = y[base + i] * window[i]


@numba.njit(cache=True, nogil=True, fastmath=True)
def overlap_add_into(out: np.ndarray, frames: np.ndarray, window: np.ndarray, first: int, hop: int) -> None:
    """Add the windowed frames [k, n_fft], the first being frame number `first`, into `out`
    (unsigned indices, so the loop vectorises)."""
    k, n_fft = frames.shape
    for t in range(k):
        base = np.uint64((first + t) * hop)
        frame = frames[t]
        for i in range(np.uint64(n_fft)):
            out[base + i] += frame[i] * window[i]


@numba.njit(cache=True, nogil=True, fastmath=REASSOCIATE)
def mean_normalised_power(
    padded: np.ndarray, n_frames: int, win: int, first: np.ndarray, energy: np.ndarray
) -> np.ndarray:
    """The mean over frames t < n_frames of |rfft(hann(win) * padded[t : t + win], 2 win)|^2
    / energy[t] (bins 0..win), from one sliding DFT instead of one FFT a frame.

    Frame t+1's unwindowed spectrum on the 2 win grid is frame t's with padded[t] taken out and
    padded[t + win] put in (at phase (-1)^k), turned by e^(2 pi i k / 2 win); the periodic hann
    window 0.5 - 0.5 cos(2 pi n / win) is then 0.5 S[k] - 0.25 (S[k - 2] + S[k + 2]). `first` is
    frame 0's unwindowed rfft (2 win points); `energy` each windowed frame's sum of squares,
    computed directly so a silent frame's is exactly 0 (set to 1 by the caller, as librosa's
    frames stay unnormalised), not the rounding left over from the loud frames before it.
    Real and imaginary parts live in separate arrays (with two bins either side) so the loops
    vectorise."""
    n_bins = win + 1
    re = np.zeros(n_bins + 4)  # bin k at k + 2; bins -2, -1, win + 1, win + 2 by symmetry
    im = np.zeros(n_bins + 4)
    turn_re = np.empty(n_bins)
    turn_im = np.empty(n_bins)
    sign = np.empty(n_bins)
    for k in range(n_bins):
        re[k + 2] = first[k].real
        im[k + 2] = first[k].imag
        angle = np.pi * k / win
        turn_re[k] = np.cos(angle)
        turn_im[k] = np.sin(angle)
        sign[k] = 1.0 if k % 2 == 0 else -1.0
    total = np.zeros(n_bins)
    for t in range(n_frames):
        if t > 0:
            leaving = np.float64(padded[t - 1])
            entering = np.float64(padded[t - 1 + win])
            for k in range(n_bins):
                a = re[k + 2] - leaving + sign[k] * entering
                b = im[k + 2]
                re[k + 2] = turn_re[k] * a - turn_im[k] * b
                im[k + 2] = turn_im[k] * a + turn_re[k] * b
        re[1], im[1] = re[3], -im[3]  # S[-1] = conj(S[1])
        re[0], im[0] = re[4], -im[4]
        re[n_bins + 2], im[n_bins + 2] = re[n_bins], -im[n_bins]  # S[win + 1] = conj(S[win - 1])
        re[n_bins + 3], im[n_bins + 3] = re[n_bins - 1], -im[n_bins - 1]
        scale = 1.0 / energy[t]
        for k in range(n_bins):
            x = 0.5 * re[k + 2] - 0.25 * (re[k] + re[k + 4])
            y = 0.5 * im[k + 2] - 0.25 * (im[k] + im[k + 4])
            total[k] += (x * x + y * y) * scale
    return total / n_frames


# Block sums in SIMD lanes, but exact divisions (arcp would turn crossings / n_fft into a
# multiplication by a rounded 1 / n_fft, one ulp off librosa's rate for n_fft not a power of 2).
@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})
def rms_and_zcr(y: np.ndarray, n_fft: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """librosa.feature.rms(y) and zero_crossing_rate(y) (centred frames), from sums over blocks
    of `hop` samples.

    rms pads with zeros, zcr with the edge samples, as librosa does; |x| <= 1e-10 counts as 0.
    Padding adds no energy and (being constant) no crossings, so only y's own samples count,
    and each frame's bounds are clipped to it. A centred frame starts n_fft / 2 before a
    multiple of hop, so with n_fft a multiple of 2 hop it covers whole blocks: its energy is
    the sum of its blocks' (each block summed in SIMD lanes), and its crossings those of its
    blocks plus the ones between neighbouring blocks inside it.
    """
    n = len(y)
    half = n_fft // 2
    n_frames = 1 + n // hop
    n_blocks = (n + hop - 1) // hop
    energy = np.zeros(n_blocks)  # block b: y[b * hop : (b + 1) * hop]
    inside = np.zeros(n_blocks, dtype=np.int64)  # sign changes between neighbours within block b
    negative = np.empty(n, dtype=np.bool_)
    for j in range(np.uint64(n)):
        negative[j] = (abs(y[j]) > 1e-10) & (y[j] < 0)
    for b in range(n_blocks):
        lo = np.uint64(b * hop)
        hi = np.uint64(min((b + 1) * hop, n))
        acc = 0.0
        for j in range(lo, hi):
            acc += float(y[j]) * float(y[j])
        energy[b] = acc
        count = 0
        for j in range(lo + np.uint64(1), hi):
            count += negative[j] != negative[j - 1]
        inside[b] = count
    rms = np.empty(n_frames, dtype=np.float32)
    zcr = np.empty(n_frames)
    aligned = n_fft % (2 * hop) == 0
    for t in range(n_frames):
        s = t * hop - half  # the frame covers y[s : s + n_fft] (padding outside)
        lo = min(max(s, 0), n)
        hi = min(max(s + n_fft, 0), n)
        total = 0.0
        crossings = 0
        if aligned:
            for b in range(lo // hop, (hi + hop - 1) // hop):
                total += energy[b]
                crossings += inside[b]
                if b * hop > lo:  # the pair across the boundary with the block before
                    crossings += negative[b * hop] != negative[b * hop - 1]
        else:
            for j in range(lo, hi):
                total += float(y[j]) * float(y[j])
                if j > lo:
                    crossings += negative[j] != negative[j - 1]
        rms[t] = np.sqrt(total / n_fft)
        zcr[t] = crossings / n_fft
    return rms, zcr
