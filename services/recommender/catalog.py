"""The catalog CSV: one row per song (id, title, artist, release_date, genre, audio_path[, album]).

Empty title, artist, album and release_date are filled at ingestion from the file's own tags."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ["id", "title", "artist", "release_date", "genre", "audio_path"]
OPTIONAL = ["album"]


@dataclass(frozen=True)
class CatalogSong:
    id: str
    title: str
    artist: str
    release_date: str  # ISO YYYY-MM-DD (or YYYY / YYYY-MM) or "" when unknown
    genre: str  # the catalog's label; "" lets the classifier decide at ingestion
    audio_path: Path
    album: str = ""


class CatalogError(ValueError):
    pass


def check_date(value: str, where: str) -> str:
    value = value.strip()
    if not value:
        return ""
    for fmt in ("%Y-%m-%d", "%Y-%m", "%Y"):
        try:
            dt.datetime.strptime(value, fmt)
            return value
        except ValueError:
            continue
    raise CatalogError(f"{where}: release_date {value!r} is not YYYY-MM-DD, YYYY-MM or YYYY")


def read_catalog(path: Path) -> list[CatalogSong]:
    """Read and validate a catalog; audio paths are relative to the CSV's folder."""
    songs: list[CatalogSong] = []
    seen: set[str] = set()
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogError(f"{path}: missing columns {missing}; expected {COLUMNS}")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            song_id = row["id"].strip()
            if not song_id:
                raise CatalogError(f"{where}: empty id")
            if song_id in seen:
                raise CatalogError(f"{where}: duplicate id {song_id!r}")
            seen.add(song_id)
            audio = Path(row["audio_path"].strip())
            songs.append(
                CatalogSong(
                    id=song_id,
                    title=row["title"].strip(),
                    artist=row["artist"].strip(),
                    release_date=check_date(row["release_date"], where),
                    genre=row["genre"].strip().lower(),
                    audio_path=audio if audio.is_absolute() else (path.parent / audio).resolve(),
                    album=(row.get("album") or "").strip(),
                )
            )
    return songs


def write_catalog(path: Path, songs: list[CatalogSong]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS + OPTIONAL)
        for s in songs:
            writer.writerow([s.id, s.title, s.artist, s.release_date, s.genre, str(s.audio_path), s.album])
