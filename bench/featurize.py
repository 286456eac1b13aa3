"""Fused featurizer vs the naive per-feature librosa reference, side by side on real clips.

    make bench            # or: python -m bench.featurize [--clips N]

Both paths get the same decoded, 16 kHz, 30 s clips; each clip is timed in both paths in
turn (best of --repeat), so machine noise hits both alike. Prints per-clip times and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from services.featurizer.features import featurize, warm_up
from services.featurizer.reference import reference_vector
from services.featurizer.schema import FEATURE_NAMES
from services.featurizer.window import SAMPLE_RATE, cut_clip

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gtzan_mini" / "genres"


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=20, help="clips to time (spread over genres)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    paths = sorted(DATA.glob("*/*.wav"))
    if not paths:
        print(f"SKIP: no real clips under {DATA} (see ../shared/data/README.md)")
        return 0
    paths = paths[:: max(1, len(paths) // args.clips)][: args.clips]
    warm_up()
    fused_t, naive_t, worst = [], [], np.zeros(len(FEATURE_NAMES))
    for path in paths:
        y, sr = sf.read(path, dtype="float32")
        clip = cut_clip(y, sr).samples
        fused_t.append(best_of(lambda clip=clip: featurize(clip), args.repeat))
        naive_t.append(best_of(lambda clip=clip: reference_vector(clip, SAMPLE_RATE), args.repeat))
        ours, ref = featurize(clip).vector, reference_vector(clip, SAMPLE_RATE)
        worst = np.maximum(worst, np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-6))
    ratios = [n / f for n, f in zip(naive_t, fused_t, strict=True)]
    print(f"clips: {len(paths)} real 30 s GTZAN clips at {SAMPLE_RATE} Hz, best of {args.repeat}, one thread")
    print(f"naive  (9 librosa calls, 9 STFTs): median {statistics.median(naive_t) * 1000:8.1f} ms/clip")
    print(f"fused  (1 STFT + numba kernels)  : median {statistics.median(fused_t) * 1000:8.1f} ms/clip")
    print(
        f"speed-up naive/fused: median {statistics.median(ratios):.1f}x  "
        f"(min {min(ratios):.1f}x, max {max(ratios):.1f}x)"
    )
    i = int(np.argmax(worst))
    print(f"largest relative difference: {worst[i]:.2e} ({FEATURE_NAMES[i]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
