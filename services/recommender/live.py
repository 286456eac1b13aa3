"""The generation being served, swapped in when the ingestion publishes a new one."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from prometheus_client import Gauge

from services.common.errors import unavailable
from services.recommender.store import IndexSet, current_generation, load_generation

log = logging.getLogger("recommender.index")
GENERATION = Gauge("musicrec_index_generation", "Index generation being served")
SONGS = Gauge("musicrec_index_songs", "Songs in the served index")
# What a missing, half-written or corrupt generation raises while loading.
LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError)


class LiveIndex:
    def __init__(self, index_dir: Path, poll_seconds: float) -> None:
        self.index_dir = index_dir
        self.poll_seconds = poll_seconds
        self._current: IndexSet | None = None
        self._task: asyncio.Task | None = None

    def get(self) -> IndexSet:
        """The generation to answer one query with (hold on to it for the whole query)."""
        if self._current is None:
            raise unavailable(
                f"no index loaded yet from {self.index_dir}: run the ingestion "
                "(python -m services.recommender.ingest) and retry"
            )
        return self._current

    async def refresh(self) -> bool:
        """Load CURRENT if it names a newer generation; True when one was swapped in."""
        generation = current_generation(self.index_dir)
        if generation is None or (self._current is not None and generation <= self._current.generation):
            return False
        loaded = await asyncio.to_thread(load_generation, self.index_dir, generation)
        previous = self._current.generation if self._current else None
        self._current = loaded  # one reference swap: queries in flight keep the old set
        GENERATION.set(generation)
        SONGS.set(len(loaded.songs))
        log.info(
            "index generation loaded",
            extra={
                "generation": generation,
                "previous": previous,
                "songs": len(loaded.songs),
                "genres": loaded.genres,
                "schema_version": loaded.schema_version,
            },
        )
        return True

    async def wait_first(self) -> None:
        """Block until some generation is loaded (the server stays NOT_SERVING until then)."""
        announced = False
        while True:
            try:
                await self.refresh()
            except LOAD_ERRORS as exc:
                log.error("cannot load index", extra={"index_dir": str(self.index_dir), "error": str(exc)})
            if self._current is not None:
                return
            if not announced:
                log.warning("waiting for an index", extra={"index_dir": str(self.index_dir)})
                announced = True
            await asyncio.sleep(self.poll_seconds)

    def start_watching(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        failed: int | None = None
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.refresh()
            except LOAD_ERRORS as exc:
                # A broken generation is logged (once) and skipped: the old one keeps serving.
                try:
                    generation = current_generation(self.index_dir)
                except ValueError:
                    generation = -1  # CURRENT itself is unreadable
                if generation != failed:
                    error = f"{type(exc).__name__}: {exc}"
                    log.error("cannot load new index generation", extra={"generation": generation, "error": error})
                failed = generation

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
