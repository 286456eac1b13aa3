"""Real servers as subprocesses on loopback, shared by the integration tests of one run."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.localrun import Proc, RedisProc, running, start_redis
from tests.conftest import MODELS_CONFIG, ROOT
from tests.synth import write_synthetic_catalog


@pytest.fixture(scope="session")
def featurizer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("featurizer")
    with running("services.featurizer", {"MAX_MESSAGE_MB": "8", "MAX_UPLOAD_MB": "12"}, tmp) as proc:
        yield proc


@pytest.fixture(scope="session")
def modelserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("modelserver")
    with running("services.modelserver", {"MODEL_CONFIG_FILE": str(MODELS_CONFIG)}, tmp) as proc:
        yield proc


@pytest.fixture(scope="session")
def classifier(modelserver: Proc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("classifier")
    with running("services.classifier", {"TF_SERVING_ADDR": modelserver.address}, tmp) as proc:
        yield proc


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProc]:
    proc = start_redis(tmp_path_factory.mktemp("redis"))
    if proc is None:
        pytest.skip("redis-server not installed (apt-get install redis-server); .ci/run installs it")
    yield proc
    proc.stop()


@dataclass
class Catalog:
    csv: Path
    index_dir: Path
    folder: Path


@pytest.fixture(scope="session")
def synthetic_index(featurizer: Proc, classifier: Proc, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """The synthetic catalog (4 genres x 5 songs) ingested by the CLI, as an operator runs it."""
    folder = tmp_path_factory.mktemp("catalog")
    csv = write_synthetic_catalog(folder)
    index_dir = folder / "index"
    command = [sys.executable, "-m", "services.recommender.catalog.ingest", "--catalog", str(csv)]
    command += ["--index-dir", str(index_dir), "--featurizer", featurizer.address]
    command += ["--classifier", classifier.address, "--strict"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"indexed 20 songs in 4 genres as generation \d+", done.stdout), done.stdout
    assert "featurize + classify" in done.stderr  # the progress bar
    return Catalog(csv, index_dir, folder)


def recommender_env(
    catalog: Catalog, featurizer: Proc, classifier: Proc, redis_url: str = "off", **extra: str
) -> dict[str, str]:
    return {
        "INDEX_DIR": str(catalog.index_dir),
        "INDEX_POLL_SECONDS": "0.2",
        "REDIS_URL": redis_url,
        "FEATURIZER_ADDR": featurizer.address,
        "CLASSIFIER_ADDR": classifier.address,
        **extra,
    }


@pytest.fixture(scope="session")
def recommender(
    synthetic_index: Catalog,
    featurizer: Proc,
    classifier: Proc,
    redis_server: RedisProc,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    env = recommender_env(synthetic_index, featurizer, classifier, redis_server.url)
    with running("services.recommender", env, tmp_path_factory.mktemp("recommender")) as proc:
        yield proc
