"""Ingestion's in-process engine (`python -m services.ingest`): the featurizer's pipeline and the fold
models run in this machine's worker processes, with no service in between.

Through the services, each song's audio and its 480 KB mel cross three gRPC hops (to the
featurizer, back, to the classifier, five times to TF Serving), and that costs more than the
fold inference itself (bench/ingest.py). Here each of
`workers` processes (one per core, each with one math thread, spawned so TensorFlow starts
clean) decodes and featurizes BATCH_SONGS songs with services.featurizer.pipeline, runs every
fold once on their stacked mels, and votes with services.classifier.response, the code the
services run: an analysis is the same whichever engine made it (tested), and both share one
analysis store, keyed alike (analysis.py).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path
from typing import Any

from services.common.errors import ServiceError, describe
from services.common.modelconfig import ModelEntry, read_config
from services.common.threads import one_thread_per_worker
from services.recommender.analysis import Analysed, Setup, content_hash, models_key

BATCH_SONGS = 8  # songs whose mels go through each fold at once (TF Serving's max_batch_size here)
_state: dict[str, Any] = {}  # in a worker: the loaded folds and their labels


def _batch_shape() -> tuple[int, int, int]:
    """Every batch is BATCH_SONGS 30 s mels (clips are cut or padded to 30 s; the last batch padded)."""
    from services.featurizer.features import HOP, N_MELS
    from services.featurizer.window import CLIP_SAMPLES

    return BATCH_SONGS, N_MELS, 1 + CLIP_SAMPLES // HOP


def _private_numba_cache(started: Any) -> None:
    """numba's cache is not safe for processes that write it at once: worker k uses
    <NUMBA_CACHE_DIR>-worker<k>, seeded with what NUMBA_CACHE_DIR holds, and kept for the next
    run (the first run on a machine compiles the kernels, about a minute, in every worker at once)."""
    with started.get_lock():
        k = started.value
        started.value += 1
    base = os.environ.get("NUMBA_CACHE_DIR") or str(Path(tempfile.gettempdir()) / "musicrec-numba")
    mine = f"{base.rstrip('/')}-worker{k}"
    if Path(base).is_dir() and not Path(mine).exists():
        shutil.copytree(base, mine, dirs_exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = mine


def _start_worker(entries: list[ModelEntry], everyone_ready: Any, started: Any) -> None:
    from services.common.memory import reuse_freed_arrays

    _private_numba_cache(started)  # before numba loads (with the featurizer, below)
    reuse_freed_arrays()
    import numpy as np

    from services.common.quiet_tensorflow import import_tensorflow
    from services.featurizer.features import warm_up

    tf = import_tensorflow()
    folds = [tf.saved_model.load(str(e.path)).signatures["serving_default"] for e in entries]
    probe = tf.constant(np.full(_batch_shape(), -40.0, np.float32))  # the one shape, set up once
    labels = [[s.decode() for s in fold(log_mel=probe)["labels"].numpy()[0]] for fold in folds]
    if any(found != labels[0] for found in labels):
        raise ValueError(f"the fold models disagree on their labels: {labels}")
    warm_up()
    _state.update(tf=tf, folds=folds, entries=entries, labels=labels[0])
    everyone_ready.wait()  # no worker takes work before all have started (BatchAnalyser.setup)


def _describe() -> tuple[list[str], list[str], list[int]]:
    entries: list[ModelEntry] = _state["entries"]
    return _state["labels"], [e.name for e in entries], [e.version for e in entries]


def _analyse_batch(paths: list[Path]) -> list[tuple[str, Analysed | str]]:
    """(content hash, analysis or why there is none) of each file, in order."""
    import numpy as np

    from services.classifier.response import classify_response
    from services.classifier.tfserving import Prediction
    from services.featurizer.pipeline import analyse
    from services.recommender.routing import from_classification
    from services.recommender.tags import read_tags

    tf, folds, entries, labels = _state["tf"], _state["folds"], _state["entries"], _state["labels"]
    done: list[tuple[str, Any]] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            done.append(("", f"{path}: {describe(exc)}"))
            continue
        try:
            done.append((content_hash(data), analyse(data, path.name)))
        except ServiceError as exc:  # what the featurizer would have refused, in its words
            done.append((content_hash(data), f"{path}: {describe(exc)}"))
        except Exception as exc:  # one song the decoder chokes on fails alone, as an INTERNAL from a service
            done.append((content_hash(data), f"{path}: could not be analysed ({type(exc).__name__}: {exc})"))
    analysed = [i for i, (_, a) in enumerate(done) if not isinstance(a, str)]
    if not analysed:
        return done
    mels = np.full(_batch_shape(), -80.0, np.float32)
    for row, i in enumerate(analysed):
        mels[row] = done[i][1].features.log_mel
    batch = tf.constant(mels)
    probabilities = [fold(log_mel=batch)["probabilities"].numpy() for fold in folds]
    names = [e.name for e in entries]
    for row, i in enumerate(analysed):
        sha, analysis = done[i]
        predictions = [Prediction(e.name, e.version, p[row], labels)
                       for e, p in zip(entries, probabilities, strict=True)]
        vote = from_classification(classify_response(labels, names, predictions))
        done[i] = (sha, Analysed(
            [float(v) for v in analysis.features.vector], vote.ranking[0], vote.share, vote.ranking,
            vote.probabilities, analysis.clip.song_seconds, asdict(read_tags(paths[i])),
        ))
    return done


def _cpu_seconds(pid: int) -> float:
    """A live process's CPU so far (Linux /proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BatchAnalyser:
    """Worker processes that analyse files in batches; setup() returns once every one is ready."""

    def __init__(self, config_file: Path, workers: int) -> None:
        self.entries = read_config(config_file)
        self.workers = max(1, workers)
        self.startup_cpu_seconds = 0.0  # the workers' start-up (TensorFlow, models, numba), once setup() ran
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> BatchAnalyser:
        # Workers inherit this environment when spawned, before any math library loads in them:
        # one thread of each (TensorFlow's inter-op pool too: a worker runs one batch at a time).
        one_thread_per_worker()
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(self.workers, context, initializer=_start_worker,
                                         initargs=(self.entries, context.Barrier(self.workers), context.Value("i", 0)))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def setup(self) -> Setup:
        """The store key of what these workers compute, as the services would report it."""
        from services.featurizer.schema import FEATURE_GROUPS, FEATURE_NAMES, SCHEMA_VERSION

        assert self._pool is not None
        # a spawn pool starts a process for each task while none is idle: one task a worker starts them all
        described = [f.result() for f in [self._pool.submit(_describe) for _ in range(self.workers)]]
        labels, names, versions = described[0]
        self.startup_cpu_seconds = sum(map(_cpu_seconds, getattr(self._pool, "_processes", {})))
        return Setup(SCHEMA_VERSION, list(FEATURE_NAMES), {g: list(n) for g, n in FEATURE_GROUPS.items()},
                     models_key(labels, names, versions))

    def analyse(
        self, paths: list[Path], on_batch: Callable[[int], None] = lambda n: None
    ) -> Iterator[tuple[Path, str, Analysed | str]]:
        """(path, content hash, analysis or why not) of every file, batch by batch as they finish;
        at most two batches a worker are in flight, so memory stays bounded for any catalog."""
        assert self._pool is not None
        batches = iter([paths[i : i + BATCH_SONGS] for i in range(0, len(paths), BATCH_SONGS)])
        running: dict[Future, list[Path]] = {}
        while True:
            while len(running) < 2 * self.workers and (batch := next(batches, None)) is not None:
                running[self._pool.submit(_analyse_batch, batch)] = batch
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                batch = running.pop(future)
                for path, (sha, result) in zip(batch, future.result(), strict=True):
                    yield path, sha, result
                on_batch(len(batch))
