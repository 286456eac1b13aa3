"""The catalog songs of one index generation, as columns (not one Python object per song).

A million SongRecord objects cost about 1 GiB; here each text field is one UTF-8 blob plus an
offsets array, numbers are typed arrays, genres are small integer codes, and every array is an
.npy file that is memory-mapped on load (file-backed pages the kernel can drop and share).
A SongRecord is made only for the rows a query touches.

    songs/<field>.utf8.npy + <field>.offsets.npy    id, title, artist, album, release_date
    songs/<field>.npy                               genre, predicted, vote_share, duration, year,
                                                    from_catalog, ranking [N, R], probabilities [N, L]
                                                    (int8 genre codes, float16 probabilities, uint32
                                                    offsets while they fit)
    songs/id_order.npy                              rows sorted by id (binary search by id)
"""

from __future__ import annotations

import json
from bisect import bisect_left
from pathlib import Path

import numpy as np

from services.recommender.index.record import SongRecord

TEXT = ("id", "title", "artist", "album", "release_date")


def _smallest(largest: int, small: type, big: type) -> type:
    """The small integer type when `largest` fits it, else the big one."""
    return small if largest < np.iinfo(small).max else big


class SongTable:
    def __init__(self, columns: dict[str, np.ndarray], labels: list[str]) -> None:
        self.c = columns
        self.labels = labels  # genre names the integer codes stand for
        self._count = len(columns["genre"])

    # --- building ----------------------------------------------------------------------------

    @classmethod
    def from_records(cls, songs: list[SongRecord]) -> SongTable:
        labels = sorted({s.genre for s in songs} | {s.predicted_genre for s in songs if s.predicted_genre}
                        | {g for s in songs for g in s.ranking} | {g for s in songs for g in s.probabilities})
        code = {g: i for i, g in enumerate(labels)}
        n, width = len(songs), max((len(s.ranking) for s in songs), default=0)
        columns: dict[str, np.ndarray] = {}
        for name in TEXT:
            encoded = [getattr(s, name).encode() for s in songs]
            offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded], dtype=np.int64)])
            columns[f"{name}.offsets"] = offsets.astype(_smallest(int(offsets[-1]), np.uint32, np.int64))
            columns[f"{name}.utf8"] = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        genre_type = _smallest(len(labels), np.int8, np.int16)
        columns["genre"] = np.array([code[s.genre] for s in songs], dtype=genre_type)
        columns["predicted"] = np.array([code.get(s.predicted_genre, -1) for s in songs], dtype=genre_type)
        columns["vote_share"] = np.array([s.vote_share for s in songs], dtype=np.float32)
        columns["duration"] = np.array([s.duration_seconds for s in songs], dtype=np.float32)
        columns["year"] = np.array([s.year for s in songs], dtype=np.int16)
        columns["from_catalog"] = np.array([s.genre_source == "catalog" for s in songs], dtype=np.bool_)
        ranking = np.full((n, width), -1, dtype=genre_type)
        probabilities = np.zeros((n, len(labels)), dtype=np.float16)  # routing weights: 3 digits are plenty
        for row, s in enumerate(songs):
            ranking[row, : len(s.ranking)] = [code[g] for g in s.ranking]
            for genre, p in s.probabilities.items():
                probabilities[row, code[genre]] = p
        columns["ranking"] = ranking
        columns["probabilities"] = probabilities
        ids = [s.id.encode() for s in songs]
        columns["id_order"] = np.array(sorted(range(n), key=ids.__getitem__), dtype=_smallest(n, np.int32, np.int64))
        return cls(columns, labels)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in self.c.items():
            np.save(folder / f"{name}.npy", array)
        (folder / "labels.json").write_text(json.dumps(self.labels))

    @classmethod
    def load(cls, folder: Path) -> SongTable:
        columns = {p.name[: -len(".npy")]: np.load(p, mmap_mode="r") for p in folder.glob("*.npy")}
        return cls(columns, json.loads((folder / "labels.json").read_text()))

    # --- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    def __iter__(self):
        return (self[row] for row in range(self._count))

    def _utf8(self, name: str, row: int) -> bytes:
        offsets = self.c[f"{name}.offsets"]
        return bytes(self.c[f"{name}.utf8"][offsets[row] : offsets[row + 1]])

    def text(self, name: str, row: int) -> str:
        return self._utf8(name, row).decode()

    def genre(self, row: int) -> str:
        return self.labels[int(self.c["genre"][row])]

    def genre_codes(self) -> np.ndarray:
        return np.asarray(self.c["genre"])

    def row_of(self, song_id: str) -> int | None:
        """The row of a catalog id, by binary search over the rows sorted by id; None if absent."""
        order = self.c["id_order"]
        target = song_id.encode()
        at = bisect_left(range(len(order)), target, key=lambda i: self._utf8("id", int(order[i])))
        if at < len(order) and self._utf8("id", int(order[at])) == target:
            return int(order[at])
        return None

    def __getitem__(self, row: int) -> SongRecord:
        row = int(row)
        predicted = int(self.c["predicted"][row])
        return SongRecord(
            id=self.text("id", row),
            title=self.text("title", row),
            artist=self.text("artist", row),
            release_date=self.text("release_date", row),
            genre=self.genre(row),
            predicted_genre=self.labels[predicted] if predicted >= 0 else "",
            vote_share=float(self.c["vote_share"][row]),
            genre_source="catalog" if self.c["from_catalog"][row] else "classifier",
            album=self.text("album", row),
            duration_seconds=float(self.c["duration"][row]),
            year=int(self.c["year"][row]),
        )

    def vote(self, row: int) -> tuple[list[str], dict[str, float]]:
        """The stored vote of a song: genres best first, and each genre's probability."""
        ranking = [self.labels[int(c)] for c in self.c["ranking"][row] if c >= 0]
        p = self.c["probabilities"][row]
        return ranking, {self.labels[i]: float(v) for i, v in enumerate(p) if v > 0}
