"""Which 30 seconds of a song are analysed, at 16 kHz.

Policy (documented in docs/featurizer.md):
- song >= 90 s: the "killing part", 60-90 s;
- 30 s <= song < 90 s: the centred 30 s window, start = (duration - 30) / 2;
- song < 30 s: the whole song, zero-padded at the end to 30 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

SAMPLE_RATE = 16_000
CLIP_SECONDS = 30.0
KILLING_PART = (60.0, 90.0)
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)


@dataclass(frozen=True)
class Clip:
    samples: np.ndarray  # float32, exactly CLIP_SAMPLES long, 16 kHz
    song_seconds: float
    start_seconds: float
    end_seconds: float
    policy: str


def choose_window(song_seconds: float) -> tuple[float, float, str]:
    if song_seconds >= KILLING_PART[1]:
        return KILLING_PART[0], KILLING_PART[1], "killing_part"
    if song_seconds >= CLIP_SECONDS:
        start = (song_seconds - CLIP_SECONDS) / 2.0
        return start, start + CLIP_SECONDS, "centered"
    return 0.0, song_seconds, "padded"


def source_span(song_seconds: float, sample_rate: int) -> tuple[int, int]:
    """The source frames [lo, hi) to decode: the window plus up to one second of margin each
    side, so the resampler's filter sees real context at the edges."""
    start, end, _ = choose_window(song_seconds)
    total = round(song_seconds * sample_rate)
    lo = max(0, round(start * sample_rate) - sample_rate)
    hi = min(total, round(end * sample_rate) + sample_rate)
    return lo, hi


def cut_clip(samples: np.ndarray, sample_rate: int, song_seconds: float | None = None, offset: int = 0) -> Clip:
    """Cut the analysis window in the source rate, then resample only that part to 16 kHz.

    `samples` are the song's frames from `offset` on (the whole song by default; the decoder
    passes just the span `source_span` asked for)."""
    if song_seconds is None:
        song_seconds = len(samples) / float(sample_rate)
    start, end, policy = choose_window(song_seconds)
    # Cut with up to one second of margin, then drop the margin at 16 kHz.
    lo = round(start * sample_rate) - offset
    hi = min(len(samples), round(end * sample_rate) - offset)
    margin_lo = min(lo, sample_rate)
    margin_hi = max(0, min(len(samples) - hi, sample_rate))
    part = samples[lo - margin_lo : hi + margin_hi]
    if sample_rate != SAMPLE_RATE:
        part = soxr.resample(part, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    skip = round(margin_lo * SAMPLE_RATE / sample_rate)
    part = part[skip : skip + round((end - start) * SAMPLE_RATE)]
    out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    n = min(len(part), CLIP_SAMPLES)
    out[:n] = part[:n]
    return Clip(out, song_seconds, start, end, policy)
