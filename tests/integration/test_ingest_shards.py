"""Ingestion as a Kubernetes Indexed Job would run it: 4 shards as processes, then the merge,
equal to a single-process build; and incremental: only new or changed songs are analysed again."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from devtools.localrun import Proc
from services.recommender.index.store import IndexSet, load_current
from services.recommender.search.options import Options
from services.recommender.search.recommend import Query, recommend
from services.recommender.search.routing import Route
from tests.conftest import ROOT
from tests.synth import noise, write_synthetic_catalog

SHARDS = 4


def ingest(catalog: Path, index_dir: Path, featurizer: Proc, classifier: Proc, *extra: str,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "services.recommender.catalog.ingest", "--catalog", str(catalog), "--index-dir",
               str(index_dir), "--featurizer", featurizer.address, "--classifier", classifier.address, *extra]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out


def sharded(catalog: Path, index_dir: Path, featurizer: Proc, classifier: Proc) -> tuple[int, str, list[int]]:
    """The 4 shards at once (each told its index the way the Job tells it), then the merge;
    (songs the services analysed, the merge's output, songs per shard)."""
    # one upload each: here the shards share one address, and the featurizer takes 4 from it
    procs = [ingest(catalog, index_dir, featurizer, classifier, "--only", "analyse", "--uploads", "1",
                    env={"JOB_COMPLETION_INDEX": str(k), "JOB_COMPLETIONS": str(SHARDS)}) for k in range(SHARDS)]
    reports = [line for p in procs for line in finish(p).splitlines() if line.startswith("shard ")]
    fresh = sum(int(line.split("(")[1].split(" analysed")[0]) for line in reports)
    per_shard = [int(line.split(": ")[1].split(" songs")[0]) for line in reports]
    merged = finish(ingest(catalog, index_dir, featurizer, classifier, "--only", "publish", "--shards", str(SHARDS)))
    return fresh, merged, per_shard


def top5(index: IndexSet) -> dict[str, list[str]]:
    answers = {}
    for row, song in enumerate(index.songs):
        query = Query.one(index.raw_rows([row])[0], [Route(song.genre, 1.0, "catalog_genre")], Options(k=5), song.id,
                          fill=index.genres)
        answers[song.id] = [h.song.id for h in recommend(index, query).hits]
    return answers


def test_four_shards_merge_to_the_single_process_build_and_reruns_are_incremental(
    featurizer: Proc, classifier: Proc, tmp_path: Path
) -> None:
    catalog = write_synthetic_catalog(tmp_path / "songs")
    finish(ingest(catalog, tmp_path / "single", featurizer, classifier, "--strict"))
    fresh, merged, per_shard = sharded(catalog, tmp_path / "sharded", featurizer, classifier)
    assert fresh == 20 and re.search(r"indexed 20 songs in 4 genres as generation \d+", merged), merged
    assert sum(per_shard) == 20 and all(per_shard), per_shard  # the work was spread, no song twice

    single, parts = load_current(tmp_path / "single"), load_current(tmp_path / "sharded")
    assert [s.id for s in parts.songs] == [s.id for s in single.songs]  # catalog order, whatever the shards
    assert list(parts.songs) == list(single.songs)
    everyone = np.arange(len(single.songs))
    # the same space: the ear's embedding of a song batched with others differs in the 7th digit,
    # so compare the standardised vectors the search reads (raw values would amplify float32's
    # rounding by the catalog's spread of each feature)
    np.testing.assert_allclose(parts.z_rows(everyone), single.z_rows(everyone), atol=1e-4)
    n_features = len(single.feature_names)
    np.testing.assert_allclose(parts.scale[:n_features], single.scale[:n_features], rtol=1e-6)
    np.testing.assert_allclose(parts.scale[n_features:], single.scale[n_features:], rtol=1e-3)
    assert parts.manifest["feature_groups"] == single.manifest["feature_groups"]
    assert top5(parts) == top5(single)

    # again, unchanged: nothing is analysed
    fresh, _, _ = sharded(catalog, tmp_path / "sharded", featurizer, classifier)
    assert fresh == 0

    # one song removed from the catalog, one file changed: one analysis, and the index follows
    lines = catalog.read_text().splitlines()
    gone = lines[1].split(",")[0]
    catalog.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    changed = lines[5].split(",")[0]
    sf.write(catalog.parent / f"{changed}.wav", noise(35.0, seed=99, amp=0.3), 22050)
    before = parts.raw_rows([parts.row_of(changed)])[0]
    fresh, merged, _ = sharded(catalog, tmp_path / "sharded", featurizer, classifier)
    assert fresh == 1 and "indexed 19 songs" in merged
    after = load_current(tmp_path / "sharded")
    assert after.row_of(gone) is None and len(after.songs) == 19
    assert not np.allclose(after.raw_rows([after.row_of(changed)])[0], before)


def test_publish_refuses_while_a_shard_has_not_reported(featurizer: Proc, classifier: Proc, tmp_path: Path) -> None:
    catalog = write_synthetic_catalog(tmp_path / "songs", per_genre=2)
    finish(ingest(catalog, tmp_path / "index", featurizer, classifier, "--only", "analyse", "--shard", "1",
                  "--shards", "3"))
    proc = ingest(catalog, tmp_path / "index", featurizer, classifier, "--only", "publish", "--shards", "3")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "shards [0, 2] of 3 have not reported" in err
    assert load_current(tmp_path / "index") is None


@pytest.mark.parametrize(("bad", "named"), [
    (["--shard", "4", "--shards", "4"], "--shard"), (["--shards", "0"], "--shard"),
    (["--workers", "0"], "--workers must be at least 1"), (["--uploads", "0"], "--uploads must be at least 1"),
])
def test_bad_numbers_are_refused(bad: list[str], named: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "services.recommender.catalog.ingest", "--catalog", str(tmp_path / "c.csv"),
               "--only", "analyse", *bad]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and named in done.stderr


@pytest.mark.parametrize("content", [None, "title,artist\nx,y\n"])
def test_a_missing_or_malformed_catalog_is_named_not_a_traceback(content: str | None, tmp_path: Path) -> None:
    catalog = tmp_path / "c.csv"
    if content is not None:
        catalog.write_text(content)
    command = [sys.executable, "-m", "services.recommender.catalog.ingest", "--catalog", str(catalog), "--index-dir",
               str(tmp_path / "index")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot read the catalog" in done.stderr and str(catalog) in done.stderr
    assert "Traceback" not in done.stderr
