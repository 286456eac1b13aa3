"""The fused featurizer equals the naive librosa reference (documented tolerance)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.ndimage
import soundfile as sf
from numpy.lib.stride_tricks import sliding_window_view

from devtools import median_network
from devtools.localrun import ROOT
from services.featurizer import kernels, median
from services.featurizer.features import featurize
from services.featurizer.reference import reference_log_mel, reference_vector
from services.featurizer.schema import FEATURE_NAMES, N_FEATURES
from services.featurizer.window import CLIP_SAMPLES, SAMPLE_RATE, cut_clip
from tests import synth
from tests.conftest import gtzan_clips, needs_gtzan

# Documented in docs/featurizer.md: every feature within 1e-3 relative (or 1e-6 absolute, for the
# near-zero means of the harmonic/percussive signals); tempo exactly equal; log-mel within 1e-3 dB.
# (A pure sine without any noise is not a fair case: its bandwidth is set by the float32 FFT
# rounding floor far from the tone, which differs between FFT libraries.)
RTOL, ATOL = 1e-3, 1e-6
EAR_MEL_ATOL = 1e-3  # the parity bound for the ear's log-mel (log10 units; measured ~3e-6)


def assert_matches_reference(y: np.ndarray) -> None:
    fused = featurize(y)
    ref = reference_vector(y, SAMPLE_RATE)
    assert fused.vector.shape == (N_FEATURES,) == ref.shape
    bad = [
        f"{name}: fused {a:.6g} vs reference {b:.6g}"
        for name, a, b in zip(FEATURE_NAMES, fused.vector, ref, strict=True)
        if not np.isclose(a, b, rtol=RTOL, atol=ATOL)
    ]
    assert not bad, "\n".join(bad)
    assert fused.vector[FEATURE_NAMES.index("tempo")] == ref[FEATURE_NAMES.index("tempo")]
    mel = reference_log_mel(y, SAMPLE_RATE)
    assert fused.log_mel.shape == mel.shape == (96, 1876)
    assert fused.log_mel.dtype == np.float32
    assert np.max(np.abs(fused.log_mel - mel)) <= EAR_MEL_ATOL


@pytest.mark.parametrize(
    "make",
    [
        lambda: synth.beats(30, 128, SAMPLE_RATE),
        lambda: synth.chirp(30, sr=SAMPLE_RATE) + synth.noise(30, SAMPLE_RATE, amp=0.01),
        lambda: np.concatenate(
            [
                synth.tone(12, 330, SAMPLE_RATE) + synth.noise(12, SAMPLE_RATE, amp=1e-3),
                np.zeros(18 * SAMPLE_RATE),
            ]
        ),
    ],
    ids=["beats", "chirp+noise", "tone-then-silence"],
)
def test_fused_matches_reference_on_synthetic_audio(make) -> None:
    assert_matches_reference(make().astype(np.float32)[:CLIP_SAMPLES])


@needs_gtzan
def test_fused_matches_reference_on_real_music() -> None:
    for path in gtzan_clips()[::17]:  # one clip from most genres
        y, sr = sf.read(path, dtype="float32")
        assert_matches_reference(cut_clip(y, sr).samples)


def reflected_running_median(x: np.ndarray, size: int) -> np.ndarray:
    """The slow, obviously right median: numpy's "symmetric" pad is scipy's "reflect" mode."""
    half = size // 2
    padded = np.pad(x, ((half, half), (0, 0)), mode="symmetric")
    return np.median(sliding_window_view(padded, size, axis=0), axis=-1)


def tied_spectrum(shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(1)
    x = (np.abs(rng.standard_normal(shape)) ** 3).astype(np.float32)
    x[: shape[0] // 3] = 0.0  # long runs of ties, like digital silence
    x[:, :2] = 1.0
    return x


@pytest.mark.parametrize("shape", [(1025, 938), (40, 7), (3, 50), (1, 1), (16, 64), (17, 65)])
def test_running_median_equals_reflected_median(shape: tuple[int, int]) -> None:
    x = tied_spectrum(shape)
    np.testing.assert_array_equal(median.running_median(x, 31), reflected_running_median(x, 31))


def test_running_median_reads_and_writes_strided_arrays() -> None:
    # HPSS's median along frequency reads the frames-major spectrum transposed
    x = tied_spectrum((300, 200))
    out = np.full((300, 200), np.nan, dtype=np.float32)
    median.running_median(x.T, 31, out=out.T)
    np.testing.assert_array_equal(out.T, reflected_running_median(x.T, 31))


def test_running_median_equals_scipy_as_librosa_calls_it() -> None:
    # scipy reads uninitialised memory when the input is shorter than half the window
    # (NaNs at random), so scipy itself is only compared where librosa's HPSS uses it.
    x = tied_spectrum((1025, 938))
    theirs = scipy.ndimage.median_filter(x, size=(31, 1), mode="reflect")
    np.testing.assert_array_equal(median.running_median(x, 31), theirs)


@pytest.mark.parametrize("size", [1, 3, 5, 7, 9, 15, 31])
@pytest.mark.parametrize("block", [1, 2, 4, 8, 16, 32])
def test_median_network_gives_every_windows_median(size: int, block: int) -> None:
    """Interpreted in numpy over small integers (many ties) and wide ones, for every block."""
    program = median_network.median_program(size, block)
    rng = np.random.default_rng(size * 100 + block)
    for high in (3, 1000):
        x = rng.integers(0, high, (program.n_inputs, 200)).astype(np.float32)
        values = {i: x[i] for i in range(program.n_inputs)}
        for op, lo, hi, a, b in program.ops.tolist():
            if op != median_network.MAX:
                values[lo] = np.minimum(values[a], values[b])
            if op != median_network.MIN:
                values[hi] = np.maximum(values[a], values[b])
        got = np.stack([values[v] for v in program.outputs.tolist()])
        want = np.median(sliding_window_view(x, size, axis=0), axis=-1)
        np.testing.assert_array_equal(got, want)


def test_median_network_shares_work_across_the_block() -> None:
    one = median_network.median_program(31, 1)
    shared = median_network.median_program(31, median_network.BLOCK)
    per_median = sum(2 if op == median_network.BOTH else 1 for op in shared.ops[:, 0]) / shared.block
    assert per_median < 0.2 * sum(2 if op == median_network.BOTH else 1 for op in one.ops[:, 0])


def test_harmonic_spectrum_is_librosas_soft_mask() -> None:
    # frames x bins with ties, silence and a frame count that is not a multiple of the block
    mag = tied_spectrum((133, 257))
    phase = np.exp(1j * np.random.default_rng(2).uniform(0, 2 * np.pi, mag.shape))
    stft = (mag * phase).astype(np.complex64)
    harm = median.running_median(mag, 31)
    perc = median.running_median(mag.T, 31).T.copy()
    expected = stft * librosa.util.softmask(harm, perc, power=2)
    got = np.concatenate([kernels.harmonic_spectrum(stft.view(np.float32), harm, perc, t0, min(t0 + 50, 133))
                          for t0 in range(0, 133, 50)])  # in blocks, as the featurizer asks
    np.testing.assert_array_equal(got.view(np.complex64), expected)


def test_spectrum_summary_equals_the_dense_products() -> None:
    from services.featurizer.features import ROLL_PERCENT, _fft_freqs, _mel_filters, _stft

    y = (synth.chirp(5, sr=SAMPLE_RATE) + synth.noise(5, SAMPLE_RATE, amp=0.01)).astype(np.float32)
    stft = _stft(y)
    basis, lo, hi = _mel_filters(SAMPLE_RATE)
    mag, power, mel, centroid, bandwidth, rolloff = kernels.spectrum_summary(
        stft, basis, lo, hi, _fft_freqs(SAMPLE_RATE), ROLL_PERCENT
    )
    np.testing.assert_allclose(mag, np.abs(stft), rtol=1e-6)
    np.testing.assert_allclose(power, np.abs(stft) ** 2, rtol=1e-5)
    np.testing.assert_allclose(mel, basis @ (np.abs(stft) ** 2).T, rtol=1e-4, atol=1e-9)
    S = np.abs(stft).T
    np.testing.assert_allclose(centroid, librosa.feature.spectral_centroid(S=S, sr=SAMPLE_RATE)[0], rtol=1e-5)
    np.testing.assert_allclose(bandwidth, librosa.feature.spectral_bandwidth(S=S, sr=SAMPLE_RATE)[0], rtol=1e-5)
    # the 85 % crossing is summed in float64 here, in float32 by librosa: a frame may land one bin apart
    off = np.abs(rolloff - librosa.feature.spectral_rolloff(S=S, sr=SAMPLE_RATE)[0])
    assert off.max() <= SAMPLE_RATE / 2048 and np.mean(off > 0) < 0.02


def test_tuning_matches_librosa() -> None:
    from services.featurizer.features import _stft, _tuning

    for freq in (440.0, 452.0, 431.0):
        y = synth.tone(5, freq, SAMPLE_RATE) + synth.tone(5, freq * 1.5, SAMPLE_RATE)
        power = np.abs(_stft(y)) ** 2
        expected = librosa.estimate_tuning(S=power.T, sr=SAMPLE_RATE, bins_per_octave=12)
        assert _tuning(power, SAMPLE_RATE) == pytest.approx(expected, abs=0.011)


@pytest.mark.parametrize(
    ("seconds", "policy", "start"),
    [
        (200.0, "killing_part", 60.0),
        (90.0, "killing_part", 60.0),
        (50.0, "centered", 10.0),
        (12.0, "padded", 0.0),
    ],
)
def test_window_policy(seconds: float, policy: str, start: float) -> None:
    sr = 8000
    samples = np.arange(int(seconds * sr), dtype=np.float32) / sr  # value = time in seconds
    clip = cut_clip(samples, sr)
    assert clip.policy == policy
    assert clip.start_seconds == pytest.approx(start)
    assert len(clip.samples) == CLIP_SAMPLES
    assert clip.samples[100] == pytest.approx(start + 100 / SAMPLE_RATE, abs=0.01)
    if policy == "padded":
        assert np.all(clip.samples[int(seconds * SAMPLE_RATE) + 100 :] == 0)


@pytest.mark.parametrize(
    "signal",
    [synth.beats(30, sr=SAMPLE_RATE), synth.noise(30, sr=SAMPLE_RATE), synth.tone(3, sr=SAMPLE_RATE), np.zeros(5000)],
    ids=["beats", "noise", "short-tone", "silence"],
)
@pytest.mark.parametrize("n_fft, hop", [(2048, 512), (1000, 256), (1536, 512)],
                         ids=["blocks", "unaligned", "odd-blocks"])  # frames of whole hop blocks, or not
def test_rms_and_zcr_equal_librosa(signal: np.ndarray, n_fft: int, hop: int) -> None:
    y = signal.astype(np.float32)
    rms, zcr = kernels.rms_and_zcr(y, n_fft, hop)
    np.testing.assert_allclose(rms, librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop)[0],
                               rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(zcr, librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop)[0])


def onset_of(y: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE)
    return librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=SAMPLE_RATE)


def test_tempo_equals_librosa_on_synthetic_beats() -> None:
    from services.featurizer.features import _tempo

    for bpm in (72, 96, 120, 143, 180):
        onset = onset_of(synth.beats(30, bpm=bpm, sr=SAMPLE_RATE))
        assert _tempo(onset, SAMPLE_RATE) == librosa.feature.tempo(onset_envelope=onset, sr=SAMPLE_RATE)[0]
    silent = np.zeros(938, np.float32)
    assert _tempo(silent, SAMPLE_RATE) == librosa.feature.tempo(onset_envelope=silent, sr=SAMPLE_RATE)[0]


def test_sliding_dft_gives_each_frames_normalised_power_spectrum() -> None:
    """Against one FFT a frame, with a silent stretch longer than the window after loud frames
    (the sliding DFT carries rounding from them; the directly summed energy keeps it out)."""
    win = 250
    rng = np.random.default_rng(3)
    onset = np.abs(rng.standard_normal(938)) * 5
    onset[300:700] = 0.0
    padded = np.pad(onset, win // 2, mode="linear_ramp", end_values=[0, 0])
    window = librosa.filters.get_window("hann", win, fftbins=True)
    frames = sliding_window_view(padded, win)[: len(onset)] * window
    energy = np.einsum("ij,ij->i", frames, frames)
    assert (energy[450:550] == 0).all()
    energy[energy == 0] = 1.0
    spectra = np.fft.rfft(frames, n=2 * win, axis=-1)
    expected = ((spectra.real**2 + spectra.imag**2) / energy[:, None]).mean(axis=0)
    got = kernels.mean_normalised_power(padded, len(onset), win, np.fft.rfft(padded[:win], n=2 * win), energy)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


@needs_gtzan
def test_tempo_equals_librosa_on_every_real_clip() -> None:
    from services.featurizer.features import _tempo

    for path in gtzan_clips():
        y, sr = sf.read(path, dtype="float32")
        onset = onset_of(cut_clip(y, sr).samples)
        assert _tempo(onset, SAMPLE_RATE) == librosa.feature.tempo(onset_envelope=onset, sr=SAMPLE_RATE)[0], path.name


def test_the_committed_median_kernel_is_what_its_generator_writes() -> None:
    committed = (ROOT / "services" / "featurizer" / "median_kernel.py").read_text()
    generated = median_network.kernel_source(median_network.median_program(median_network.SIZE))
    assert committed == generated, "services/featurizer/median_kernel.py is stale: python -m devtools.median_network"


def test_a_copied_numba_cache_still_holds_the_median_kernel(tmp_path) -> None:
    # tests, the demo and the benchmarks copy one warmed cache folder per process
    # (devtools/numba_cache.py): the median kernel must be found there, not compiled again
    probe = (
        "import numpy as np; from services.featurizer import median, median_kernel; "
        "median.running_median(np.ones((9, 70), np.float32), 31); "
        "print(sum(median_kernel.medians.stats.cache_hits.values()))"
    )

    def hits(cache: Path) -> int:
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
        done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.split()[-1])

    hits(tmp_path / "warmed")
    shutil.copytree(tmp_path / "warmed", tmp_path / "copy")
    assert hits(tmp_path / "copy") == 1
