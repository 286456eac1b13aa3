"""Private numba caches, copied from one warmed seed.

librosa's and the featurizer's numba functions cache compiled code on disk, and that cache is
not safe to share between processes that write it at once (a segfault was seen in piptrack).
So every process the tests, the demo and the benchmarks start gets a folder of its own: a
copy of a seed that one process compiled once per checkout (var/numba/seed). Nobody pays the
compile twice, and no process writes a folder another one reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "var" / "numba" / "seed"
WARM = (
    "import numpy as np; from services.featurizer.features import warm_up; "
    "from services.featurizer.reference import reference_vector; warm_up(); "
    "reference_vector((0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)"
)


def ensure_seed() -> Path:
    """Compile every numba function the project uses into SEED, once (later calls return at once)."""
    if (SEED / ".warm").exists():
        return SEED
    building = SEED.with_name(f"seed.tmp-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(building)}
    subprocess.run([sys.executable, "-c", WARM], cwd=ROOT, env=env, check=True)
    (building / ".warm").touch()
    try:
        building.rename(SEED)
    except OSError:  # another run finished its seed first: use that one
        shutil.rmtree(building, ignore_errors=True)
    return SEED


def private_cache(folder: Path) -> Path:
    """A copy of the warmed seed at `folder`, for one process to use as its NUMBA_CACHE_DIR."""
    shutil.copytree(ensure_seed(), folder, dirs_exist_ok=True)
    return folder
