"""Bytes to features: decode, cut the analysis window, featurize. No gRPC here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.errors import invalid
from services.featurizer.decode import decode
from services.featurizer.features import Features, featurize
from services.featurizer.window import Clip, cut_clip

SILENCE_PEAK = 10 ** (-80 / 20)  # -80 dBFS


@dataclass(frozen=True)
class Analysis:
    features: Features
    clip: Clip
    source_sample_rate: int
    source_channels: int


def analyse(data: bytes, filename: str = "") -> Analysis:
    audio = decode(data, filename)
    clip = cut_clip(audio.samples, audio.sample_rate)
    if float(np.max(np.abs(clip.samples))) < SILENCE_PEAK:
        label = f" {filename!r}" if filename else ""
        raise invalid(
            f"upload{label} is silent in the analysed window "
            f"({clip.start_seconds:.1f}-{clip.end_seconds:.1f} s peaks below -80 dBFS): nothing to match"
        )
    return Analysis(featurize(clip.samples), clip, audio.sample_rate, audio.channels)
