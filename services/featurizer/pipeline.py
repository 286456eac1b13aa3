"""Bytes to features: decode, cut the analysis window, featurize. No gRPC here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.config import Setting
from services.common.errors import invalid
from services.featurizer.decode import decode_span
from services.featurizer.features import Features, featurize
from services.featurizer.window import Clip, cut_clip, source_span

SILENCE_PEAK = 10 ** (-80 / 20)  # -80 dBFS
# Full scale is 1.0. Float files may exceed it (a hot master, a mix); past +40 dBFS nothing is
# music any more, and the vector's variances (amplitude to the 4th power) leave the range where
# standardising them means anything (a sine x 1e10 reached 5e19 and moved other songs' answers).
MAX_PEAK = 100.0
MIN_AUDIO_SECONDS = Setting("MIN_AUDIO_SECONDS", 3.0, "featurizer",
                            "shorter songs are refused (INVALID_ARGUMENT), never padded from a few samples").as_float()
MAX_AUDIO_SECONDS = Setting("MAX_AUDIO_SECONDS", 3600.0, "featurizer",
                            "longer songs are refused (RESOURCE_EXHAUSTED) from the header, before decoding").as_float()
NUMBA_CACHE_DIR = Setting("NUMBA_CACHE_DIR", None, "featurizer, training",
                          "numba's on-disk cache; give every process its own (the images use `/tmp/numba`; tests, demo "
                          "and benchmarks copy a warmed seed per process)", shown="numba's default")


@dataclass(frozen=True)
class Analysis:
    features: Features
    clip: Clip
    source_sample_rate: int
    source_channels: int


def analyse(data: bytes, filename: str = "") -> Analysis:
    audio = decode_span(data, filename, source_span, MIN_AUDIO_SECONDS, MAX_AUDIO_SECONDS)
    clip = cut_clip(audio.samples, audio.sample_rate, audio.song_seconds, audio.offset)
    label = f" {filename[:100]!r}" if filename else ""
    window = f"{clip.start_seconds:.1f}-{clip.end_seconds:.1f} s"
    peak = max(float(clip.samples.max()), -float(clip.samples.min()))  # the peak, with no |x| copy
    if peak > MAX_PEAK:  # (non-finite samples never get here: decode.py refuses them)
        raise invalid(f"upload{label} peaks at {20 * np.log10(peak):.0f} dBFS in the analysed window ({window}); "
                      f"full scale is 0 dBFS and at most +{20 * np.log10(MAX_PEAK):.0f} is accepted: "
                      "normalise the file")
    if peak < SILENCE_PEAK:
        raise invalid(f"upload{label} is silent in the analysed window ({window} peaks below -80 dBFS): "
                      "nothing to match")
    features = featurize(clip.samples)
    if not (np.all(np.isfinite(features.vector)) and np.all(np.isfinite(features.log_mel))):
        raise invalid(f"upload{label} gives non-finite features in the analysed window ({window}): "
                      "send a file of ordinary audio")
    return Analysis(features, clip, audio.sample_rate, audio.channels)
