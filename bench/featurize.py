"""The featurizer against its floor, the naive librosa reference and Essentia, side by side.

    make bench            # or: python -m bench.featurize [--clips N]

Two sets: GTZAN clips (30 s, mono, 22.05 kHz WAV) and the real songs of full_songs/ (mp3,
44.1 kHz stereo, a few minutes: the window is 60-90 s, and decoding it is most of the floor).
Every path starts from the file's bytes, one thread, each clip timed in every path in turn
(best of --repeat), so machine noise hits all alike:
- floor: decode the window, resample to 16 kHz, one STFT (what any featurizer must do);
- fused: the service's pipeline (decode, window, resample, one STFT shared by every feature);
- naive: decode + window, then the reference's nine librosa calls (nine STFTs);
- Essentia: decode + window, then Essentia's standard algorithms for a comparable set (frame-wise
  spectrum, MFCC, centroid, roll-off, ZCR, RMS, HPCP chroma, RhythmExtractor2013 tempo), when
  `essentia` is installed (pip install essentia; not a service dependency).
Prints medians and the ratios to the floor, and the fused vector's largest difference from the
reference (parity); for the clips also where featurize() spends its time (its STFT, the spectrum
summary, HPSS); for the stereo songs also the mixdown to mono, numpy's mean along the
channels against the decoder's column sums (decode.mix_to_mono, the same floats).
"""

from __future__ import annotations

from services.common.memory import reuse_freed_arrays
from services.common.threads import one_thread_per_worker

one_thread_per_worker()  # as the featurizer runs: one math thread per worker
reuse_freed_arrays()  # and keep freed arrays for the next clip (services/common/server.py)

import argparse
import statistics
import sys
from functools import partial
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

from bench.timing import best_of
from services.featurizer import kernels
from services.featurizer.decode import decode_span, mix_to_mono
from services.featurizer.features import (
    HOP,
    N_FFT,
    ROLL_PERCENT,
    _fft_freqs,
    _harmonic,
    _mel_filters,
    _stft,
    featurize,
    warm_up,
)
from services.featurizer.pipeline import MAX_AUDIO_SECONDS, MIN_AUDIO_SECONDS, analyse
from services.featurizer.reference import reference_vector
from services.featurizer.schema import FEATURE_NAMES
from services.featurizer.window import SAMPLE_RATE, cut_clip, source_span

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {  # label: (files, what they are)
    "clips": (("gtzan_mini/genres", "*/*.wav"), "real 30 s GTZAN clips (WAV, mono, 22.05 kHz)"),
    "songs": (("full_songs", "*.mp3"), "real songs (mp3, 44.1 kHz stereo, 3-4 min; window 60-90 s)"),
}
LABELS = {"floor": "decode window + resample + 1 STFT", "fused": "the service's featurizer",
          "naive": "librosa reference (9 STFTs)", "Essentia": "Essentia standard algorithms"}


def decode_clip(data: bytes, name: str) -> np.ndarray:
    """The 16 kHz analysis window, decoded and resampled as the service does."""
    audio = decode_span(data, name, source_span, MIN_AUDIO_SECONDS, MAX_AUDIO_SECONDS)
    return cut_clip(audio.samples, audio.sample_rate, audio.song_seconds, audio.offset).samples


def floor(data: bytes, name: str) -> None:
    clip = decode_clip(data, name)
    scipy.signal.stft(clip, nperseg=N_FFT, noverlap=N_FFT - HOP, window="hann", boundary="even", padded=False)


def essentia_features():
    """Essentia's standard algorithms over one clip, or None when essentia is not installed."""
    try:
        import essentia
        import essentia.standard as es
    except ImportError:
        return None
    essentia.log.infoActive = False
    window, spectrum = es.Windowing(type="hann"), es.Spectrum()
    mfcc, centroid, rolloff = es.MFCC(), es.Centroid(range=SAMPLE_RATE / 2), es.RollOff(sampleRate=SAMPLE_RATE)
    zcr, rms = es.ZeroCrossingRate(), es.RMS()
    peaks, hpcp = es.SpectralPeaks(sampleRate=SAMPLE_RATE), es.HPCP(sampleRate=SAMPLE_RATE)
    rhythm = es.RhythmExtractor2013()

    def run(clip: np.ndarray) -> None:
        rows = []
        for frame in es.FrameGenerator(clip, frameSize=N_FFT, hopSize=HOP, startFromZero=True):
            spec = spectrum(window(frame))
            freqs, mags = peaks(spec)
            rows.append([*mfcc(spec)[1], centroid(spec), rolloff(spec), zcr(frame), rms(frame), *hpcp(freqs, mags)])
        np.mean(rows, axis=0)
        rhythm(clip)

    return run


def time_set(paths: list[Path], repeat: int, essentia_run) -> tuple[dict[str, list[float]], np.ndarray]:
    """Seconds per file of every path, taking turns on each file; the largest relative
    difference of each feature from the reference."""
    times: dict[str, list[float]] = {key: [] for key in LABELS}
    worst = np.zeros(len(FEATURE_NAMES))
    for path in paths:
        data, name = path.read_bytes(), path.name
        paths_of = {
            "floor": lambda: floor(data, name),  # noqa: B023 (timed inside this iteration)
            "fused": lambda: analyse(data, name),  # noqa: B023
            "naive": lambda: reference_vector(decode_clip(data, name), SAMPLE_RATE),  # noqa: B023
        }
        if essentia_run is not None:
            paths_of["Essentia"] = lambda: essentia_run(decode_clip(data, name))  # noqa: B023
        for key, fn in paths_of.items():
            times[key].append(best_of(fn, repeat))
        clip = decode_clip(data, name)
        ours, ref = featurize(clip).vector, reference_vector(clip, SAMPLE_RATE)
        worst = np.maximum(worst, np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-6))
    return times, worst


def report(times: dict[str, list[float]], worst: np.ndarray) -> None:
    base = statistics.median(times["floor"])
    for key, label in LABELS.items():
        if not times[key]:
            print(f"  {key:<9} {label:<36}: not measured (pip install essentia)")
            continue
        median = statistics.median(times[key])
        print(f"  {key:<9} {label:<36}: median {median * 1000:8.1f} ms/file  {median / base:5.1f}x the floor")
    print(f"  naive / fused: {statistics.median(times['naive']) / statistics.median(times['fused']):.1f}x")
    i = int(np.argmax(worst))
    print(f"  parity: largest relative difference from the reference {worst[i]:.2e} ({FEATURE_NAMES[i]})")


def mixdown(paths: list[Path], repeat: int) -> None:
    """Stereo windows to mono: numpy's mean along the channels against the column sums."""
    mean, columns = [], []
    for path in paths:
        with sf.SoundFile(path) as f:
            f.seek(60 * f.samplerate - f.samplerate)
            frames = f.read(32 * f.samplerate, dtype="float32", always_2d=True)
        mean.append(best_of(lambda: frames.mean(axis=1), repeat))  # noqa: B023
        columns.append(best_of(lambda: mix_to_mono(frames), repeat))  # noqa: B023
    a, b = statistics.median(mean), statistics.median(columns)
    print(f"  stereo mixdown of a 32 s window: numpy mean {a * 1000:.1f} ms, column sums {b * 1000:.1f} ms "
          f"({a / b:.0f}x; the same floats)")


def stages(paths: list[Path], repeat: int) -> None:
    """Where featurize() spends its time on the clips: its shared STFT, the spectrum summary
    (magnitude, power, mel, spectral shape) and HPSS's harmonic part, timed on their own."""
    times: dict[str, list[float]] = {"featurize()": [], "STFT": [], "spectrum summary": [], "HPSS": []}
    for path in paths:
        y = decode_clip(path.read_bytes(), path.name)
        stft = _stft(y)
        summarise = partial(kernels.spectrum_summary, stft, *_mel_filters(SAMPLE_RATE), _fft_freqs(SAMPLE_RATE),
                            ROLL_PERCENT)
        mag = summarise()[0]
        times["featurize()"].append(best_of(partial(featurize, y), repeat))
        times["STFT"].append(best_of(partial(_stft, y), repeat))
        times["spectrum summary"].append(best_of(summarise, repeat))
        times["HPSS"].append(best_of(partial(_harmonic, stft, mag, len(y)), repeat))
    whole = statistics.median(times["featurize()"])
    parts = ", ".join(f"{k} {statistics.median(v) * 1000:.1f} ms" for k, v in times.items() if k != "featurize()")
    print(f"  stages: featurize() {whole * 1000:.1f} ms from the 16 kHz clip; {parts}; "
          f"HPSS is {statistics.median(times['HPSS']) / whole:.0%} of it")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=20, help="GTZAN clips to time (spread over genres)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    found = {label: sorted((DATA / folder).glob(pattern)) for label, ((folder, pattern), _) in SETS.items()}
    if not any(found.values()):
        print(f"SKIP: no real clips or songs under {DATA} (see ../shared/data/README.md)")
        return 0
    clips = found["clips"]
    found["clips"] = clips[:: max(1, len(clips) // args.clips)][: args.clips]
    warm_up()
    essentia_run = essentia_features()
    for label, paths in found.items():
        if not paths:
            print(f"{label}: SKIP, none under {DATA / SETS[label][0][0]}")
            continue
        print(f"{label}: {len(paths)} {SETS[label][1]}, from their bytes, best of {args.repeat}, one thread")
        report(*time_set(paths, args.repeat, essentia_run))
        if label == "clips":
            stages(paths, args.repeat)
        if label == "songs":
            mixdown(paths, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
