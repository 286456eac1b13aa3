"""The generation being served, swapped in when the ingestion publishes a new one.

Two ways to swap (INDEX_SWAP):
- side_by_side: load the new generation while the old one serves, then swap one reference. No
  query notices, but memory holds both generations for the load's duration.
- in_place: drop the old generation first (new queries get UNAVAILABLE "being swapped in", the
  ones running finish on the object they hold), then load the new one: the peak stays near one
  generation. Behind a Service with several replicas, clients retry on another replica.
- auto (default): side_by_side while both generations' files fit in INDEX_SWAP_BUDGET_MB
  (default 2048), in_place above.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from prometheus_client import Gauge

from services.common.errors import unavailable
from services.recommender.index.store import IndexSet, current_generation, generation_name, load_generation

log = logging.getLogger("recommender.index")
GENERATION = Gauge("musicrec_index_generation", "Index generation being served")
SONGS = Gauge("musicrec_index_songs", "Songs in the served index")
# What a missing, half-written or corrupt generation raises while loading.
LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError)


SWAPS = ("auto", "side_by_side", "in_place")


def generation_bytes(index_dir: Path, generation: int) -> int:
    """What a generation's files take on disk (about what it takes loaded)."""
    folder = index_dir / generation_name(generation)
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class LiveIndex:
    def __init__(self, index_dir: Path, poll_seconds: float, swap: str = "auto", budget_mb: float = 2048) -> None:
        if swap not in SWAPS:
            raise SystemExit(f"INDEX_SWAP={swap!r}: use one of {', '.join(SWAPS)}")
        self.index_dir = index_dir
        self.poll_seconds = poll_seconds
        self.swap = swap
        self.budget_bytes = budget_mb * 2**20
        self._current: IndexSet | None = None
        self._loading: int | None = None  # the generation being swapped in, in place
        self._task: asyncio.Task | None = None

    def get(self) -> IndexSet:
        """The generation to answer one query with (hold on to it for the whole query)."""
        if self._current is None and self._loading is not None:
            raise unavailable(f"index generation {self._loading} is being swapped in (INDEX_SWAP); retry in a moment")
        if self._current is None:
            raise unavailable(
                f"no index loaded yet from {self.index_dir}: run the ingestion "
                "(python -m services.recommender.catalog.ingest) and retry"
            )
        return self._current

    async def refresh(self) -> bool:
        """Load CURRENT if it names a newer generation; True when one was swapped in."""
        generation = current_generation(self.index_dir)
        if generation is None or (self._current is not None and generation <= self._current.generation):
            return False
        previous = self._current.generation if self._current else None
        in_place = self._current is not None and self._swap_in_place(previous, generation)
        if in_place:
            self._loading, self._current = generation, None  # queries in flight keep the old set
        try:
            loaded = await asyncio.to_thread(load_generation, self.index_dir, generation)
        except BaseException:
            if in_place:  # the old generation is gone: reload it rather than serve nothing
                self._current = await asyncio.to_thread(load_generation, self.index_dir, previous)
            raise
        finally:
            self._loading = None
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
                "swap": "in_place" if in_place else "side_by_side",
            },
        )
        return True

    def _swap_in_place(self, previous: int, generation: int) -> bool:
        if self.swap != "auto":
            return self.swap == "in_place"
        both = generation_bytes(self.index_dir, previous) + generation_bytes(self.index_dir, generation)
        return both > self.budget_bytes

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
