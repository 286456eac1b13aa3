"""Bytes to features: decode, cut the analysis window, featurize. No gRPC here."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import env_float
from services.common.errors import invalid
from services.featurizer.decode import decode_span
from services.featurizer.features import Features, featurize
from services.featurizer.window import Clip, cut_clip, source_span

SILENCE_PEAK = 10 ** (-80 / 20)  # -80 dBFS
MIN_AUDIO_SECONDS = env_float("MIN_AUDIO_SECONDS", 3.0)
MAX_AUDIO_SECONDS = env_float("MAX_AUDIO_SECONDS", 3600.0)


@dataclass(frozen=True)
class Analysis:
    features: Features
    clip: Clip
    source_sample_rate: int
    source_channels: int


def analyse(data: bytes, filename: str = "") -> Analysis:
    audio = decode_span(data, filename, source_span, MIN_AUDIO_SECONDS, MAX_AUDIO_SECONDS)
    clip = cut_clip(audio.samples, audio.sample_rate, audio.song_seconds, audio.offset)
    if max(float(clip.samples.max()), -float(clip.samples.min())) < SILENCE_PEAK:  # the peak, with no |x| copy
        label = f" {filename[:100]!r}" if filename else ""
        raise invalid(
            f"upload{label} is silent in the analysed window "
            f"({clip.start_seconds:.1f}-{clip.end_seconds:.1f} s peaks below -80 dBFS): nothing to match"
        )
    return Analysis(featurize(clip.samples), clip, audio.sample_rate, audio.channels)
