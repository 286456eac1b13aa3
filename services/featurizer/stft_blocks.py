"""A centred STFT (librosa's framing: hann, zero padding) computed a block of frames at a time,
so the windowed frames of a block stay in cache instead of a whole clip's passing through memory.
The vector's STFT (features.py) and the ear's mel (ear_mel.py) both read it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.fft

from services.featurizer import kernels


def frame_count(samples: int, n_fft: int, hop: int) -> int:
    return 1 + (samples + 2 * (n_fft // 2) - n_fft) // hop


def spectra(y: np.ndarray, n_fft: int, hop: int, window: np.ndarray, block_frames: int
            ) -> Iterator[tuple[int, np.ndarray]]:
    """(first frame, rfft of the block's windowed frames [frames, n_fft // 2 + 1]) block by block."""
    padded = np.pad(y, n_fft // 2, mode="constant")
    n_frames = frame_count(len(y), n_fft, hop)
    block = np.empty((block_frames, n_fft), dtype=np.float32)
    for t0 in range(0, n_frames, block_frames):
        frames = block[: min(block_frames, n_frames - t0)]
        kernels.window_frames_into(frames, padded, window, t0, hop)
        yield t0, scipy.fft.rfft(frames, axis=-1)
