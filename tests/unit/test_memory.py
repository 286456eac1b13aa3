"""The services keep freed per-request arrays in the heap (services/common/memory.py)."""

from __future__ import annotations

import subprocess
import sys

from devtools.localrun import ROOT

# Featurize one synthetic 30 s song a few times, as a featurizer worker does, and print the
# minor page faults of one request once warm.
PROBE = """
import resource, sys
from services.common.threads import one_thread_per_worker
one_thread_per_worker()
from services.common.memory import reuse_freed_arrays
if sys.argv[1] == "on":
    assert reuse_freed_arrays()
from services.featurizer.pipeline import analyse
from tests.synth import encode, synthetic_song
data = encode(synthetic_song("beats", 0, seconds=40.0))
for _ in range(3):
    analyse(data, "song.wav")
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    analyse(data, "song.wav")
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)
"""


def faults_per_request(setting: str) -> float:
    done = subprocess.run([sys.executable, "-c", PROBE, setting], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.split()[-1])


def test_featurizer_requests_do_not_fault_their_arrays_in_again() -> None:
    # glibc's default maps and unmaps big arrays per request: hundreds of faults while the
    # featurizer built a 128-band dB mel beside the vector (913, then 230); with the ear's mel
    # instead, glibc's dynamic threshold keeps most of them (5-6 a request). With the thresholds
    # set, a warm worker reuses its whole heap: none. numba compiling from a cold cache frees
    # enough to raise the dynamic threshold too, so the cache is warmed first.
    faults_per_request("on")
    default, tuned = faults_per_request("off"), faults_per_request("on")
    assert tuned <= 1 and tuned < default, f"{tuned} faults a request with the thresholds, {default} without"
