"""Which songs an answer may hold: the never-the-seed rules, the caller's exclusions and windows.

Two kinds of rule:
- `refuses`: about the song alone (a seed or the same recording as one, excluded ids, artists or
  albums, the duration bounds, the similarity floor). A refused song never qualifies.
- `blocks`: about the songs already chosen (a duplicate, the per-artist cap, an artist or
  album repeated within the no-repeat window). A blocked song may qualify later, when the
  window has moved on.
Every song passed over is remembered under its rule, so a short answer can say why.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from services.recommender.index.record import SongRecord
from services.recommender.search.answer import AnswerReads, features_part
from services.recommender.search.options import Options

SAME_RECORDING = 0.99999  # cosine similarity of two songs' standardised features: the same audio


def title_key(song: SongRecord) -> tuple[str, str] | None:
    return (song.title.casefold(), song.artist.casefold()) if song.title else None


@dataclass
class Chosen:
    """The songs chosen so far, in order, with what the blocking rules look up."""

    rows: list[int] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    titles: set[tuple[str, str]] = field(default_factory=set)
    per_artist: dict[str, int] = field(default_factory=dict)
    songs: list[SongRecord] = field(default_factory=list)

    def add(self, song: SongRecord, row: int) -> None:
        self.rows.append(row)
        self.songs.append(song)
        self.ids.add(song.id)
        if key := title_key(song):
            self.titles.add(key)
        artist = song.artist.casefold()
        self.per_artist[artist] = self.per_artist.get(artist, 0) + 1

    def pop(self) -> None:
        """Take back the last song added (a path search backtracking); duplicates were never added."""
        self.rows.pop()
        song = self.songs.pop()
        self.ids.discard(song.id)
        if key := title_key(song):
            self.titles.discard(key)
        artist = song.artist.casefold()
        self.per_artist[artist] -= 1


@dataclass(frozen=True)
class Shortfall:
    requested: int
    returned: int
    passed_over: dict[str, int]  # rule -> songs it kept out
    message: str


class Rules:
    def __init__(
        self,
        reads: AnswerReads,
        options: Options,
        seed_ids: set[str],
        seed_units: np.ndarray,
        cap_artists: bool = True,
    ) -> None:
        self.reads = reads
        index_set = reads.index_set
        self.options = options
        self.seed_ids = set(seed_ids)
        self.seed_features = features_part(seed_units, reads.n_features)  # [seeds, 57], unit length
        seed_rows = [r for i in seed_ids if (r := index_set.row_of(i)) is not None]
        self.seed_titles = {key for r in seed_rows if (key := title_key(reads.song(r)))}
        self.cap = options.max_per_artist if cap_artists else 0
        self.passed_over: dict[str, set[int]] = defaultdict(set)

    def refuses(self, row: int, similarity: float) -> str | None:
        """The rule that keeps this song out of the answer whatever else is chosen, or None."""
        rule = self._refusal(row, similarity)
        if rule:
            self.passed_over[rule].add(row)
        return rule

    def _refusal(self, row: int, similarity: float) -> str | None:
        song, o = self.reads.song(row), self.options
        if song.id in self.seed_ids or title_key(song) in self.seed_titles:
            return "seed"
        mine = self.reads.features_unit(row)
        if len(self.seed_features) and float(np.max(self.seed_features @ mine)) >= SAME_RECORDING:
            return "seed"
        if song.id in o.exclude_ids:
            return "exclude_ids"
        if o.exclude_artists and song.artist.casefold() in o.exclude_artists:
            return "exclude_artists"
        if o.exclude_albums and song.album.casefold() in o.exclude_albums:
            return "exclude_albums"
        if o.min_duration or o.max_duration:
            length = song.duration_seconds
            if not length or length < o.min_duration or (o.max_duration and length > o.max_duration):
                return "duration"
        if o.min_similarity is not None and similarity < o.min_similarity:
            return "min_similarity"
        return None

    def blocks(self, row: int, chosen: Chosen) -> str | None:
        """The rule that keeps this song out given what is chosen so far, or None."""
        song, o = self.reads.song(row), self.options
        key = title_key(song)
        if song.id in chosen.ids or (key and key in chosen.titles):
            return "duplicate"
        mine = self.reads.features_unit(row)
        if chosen.rows and float(np.max(np.stack([self.reads.features_unit(r) for r in chosen.rows]) @ mine)) >= (
            SAME_RECORDING
        ):
            return "duplicate"
        artist = song.artist.casefold()
        if self.cap and artist and chosen.per_artist.get(artist, 0) >= self.cap:
            return "max_per_artist"
        if artist and o.no_repeat_artist_within:
            recent = chosen.rows[-o.no_repeat_artist_within :]
            if any(self.reads.song(r).artist.casefold() == artist for r in recent):
                return "no_repeat_artist_within"
        album = song.album.casefold()
        if album and o.no_repeat_album_within:
            recent = chosen.rows[-o.no_repeat_album_within :]
            if any(self.reads.song(r).album.casefold() == album for r in recent):
                return "no_repeat_album_within"
        return None

    def shortfall(self, requested: int, returned: int, blocked: dict[int, str], where: str) -> Shortfall | None:
        """None when the answer is full; else the counts per rule and a sentence saying why."""
        if returned >= requested:
            return None
        counts: dict[str, set[int]] = defaultdict(set)
        for rule, rows in self.passed_over.items():
            counts[rule] |= rows
        for row, rule in blocked.items():
            counts[rule].add(row)
        passed = {rule: len(rows) for rule, rows in sorted(counts.items(), key=lambda kv: -len(kv[1]))}
        reasons = ", ".join(f"{n} by {rule}" for rule, n in passed.items()) or "none by a rule"
        message = f"{returned} of {requested} returned: {where}; songs left out: {reasons}"
        return Shortfall(requested, returned, passed, message)
