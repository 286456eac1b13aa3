"""Audio decoding: any format libsndfile reads (wav, mp3, flac, ogg, au) to mono float32."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from services.common.errors import invalid

SUPPORTED = "wav, mp3, flac, ogg or au"


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # mono float32 at `sample_rate`
    sample_rate: int
    channels: int
    format: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / float(self.sample_rate)


def decode(data: bytes, filename: str = "") -> DecodedAudio:
    """Decode an encoded audio file; raise INVALID_ARGUMENT with the reason when it is not usable."""
    label = f" {filename!r}" if filename else ""
    if not data:
        raise invalid(f"upload{label} is empty: send the bytes of a {SUPPORTED} file")
    _check_riff_length(data, label)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            expected = f.frames
            channels = f.channels
            rate = f.samplerate
            fmt = f.format
            frames = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise invalid(
            f"upload{label} ({len(data)} bytes) is not a readable audio file ({exc}); send a {SUPPORTED} file"
        ) from exc
    if expected == 0 or frames.shape[0] == 0:
        raise invalid(f"upload{label} decodes to zero samples: the file holds no audio")
    # libsndfile reports the header's frame count; fewer frames read means a cut-off file.
    # mp3/ogg report estimates, so only trust the count for uncompressed containers.
    if fmt in {"WAV", "WAVEX", "AU", "AIFF", "FLAC"} and frames.shape[0] < expected:
        raise invalid(
            f"upload{label} is truncated: header promises {expected} frames, "
            f"only {frames.shape[0]} present; re-send the complete file"
        )
    mono = frames.mean(axis=1) if channels > 1 else frames[:, 0]
    if not np.all(np.isfinite(mono)):
        raise invalid(f"upload{label} holds non-finite samples (NaN or inf)")
    return DecodedAudio(np.ascontiguousarray(mono, dtype=np.float32), rate, channels, fmt)


def _check_riff_length(data: bytes, label: str) -> None:
    """A WAV whose RIFF header promises more bytes than arrived was cut off in transfer.

    libsndfile silently reads what is there, so the header is checked here. Streaming writers
    that leave the size at 0 or 0xFFFFFFFF are let through.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    promised = int.from_bytes(data[4:8], "little") + 8
    if 8 < promised < 0xFFFFFFFF and promised > len(data):
        raise invalid(
            f"upload{label} is truncated: the WAV header promises {promised} bytes, "
            f"only {len(data)} arrived; re-send the complete file"
        )
