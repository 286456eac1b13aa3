"""The ear's cost per clip: CPU of the served musicnn SavedModel against patches per clip, in
float32 and under oneDNN's bfloat16 auto mixed precision, measured side by side in one run.

    python -m bench.ear [--batch 8] [--repeats 5]

Each precision runs in a fresh process with one TensorFlow thread (as the model server's
workers), batches of 8 clips' patches through the `patches` signature; CPU per clip is the
patches per clip times the CPU per patch. The served count is in models/musicnn_msd/PROVENANCE.json.
"""

from __future__ import annotations

import argparse
import json

from devtools.localrun import ROOT
from services.modelserver.session_config import cpu_has_fast_bf16
from training.ear.compare import ear_cpu_ms_per_patch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    served = json.loads((ROOT / "models" / "musicnn_msd" / "PROVENANCE.json").read_text())["patches_per_clip"]
    fp32 = ear_cpu_ms_per_patch(False, args.batch, args.repeats)
    bf16 = ear_cpu_ms_per_patch(True, args.batch, args.repeats)
    print(f"ear CPU per patch: float32 {fp32:.1f} ms, bfloat16 {bf16:.1f} ms ({bf16 / fp32:.2f}x; "
          f"this CPU {'has' if cpu_has_fast_bf16() else 'lacks'} fast bfloat16)")
    print(f"{'patches':>7} {'float32 ms/clip':>16} {'bfloat16 ms/clip':>17}")
    for count in (1, 2, 3, 5, 10):
        mark = "  <- served" if count == served else ""
        print(f"{count:>7} {count * fp32:>16.1f} {count * bf16:>17.1f}{mark}")


if __name__ == "__main__":
    main()
