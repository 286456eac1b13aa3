"""The catalog CSV: one row per song (id, title, artist, release_date, genre, audio_path[, album]).

Empty title, artist, album and release_date are filled at ingestion from the file's own tags."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ["id", "title", "artist", "release_date", "genre", "audio_path"]
OPTIONAL = ["album"]
TEXT_LIMIT = 300  # characters kept of a title, artist, album or genre (catalog or file tags)


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


def read_catalog(path: Path, roots: list[Path] | None = None) -> tuple[list[CatalogSong], list[str]]:
    """The catalog's valid songs and a line per row left out (why, and where): a malformed row
    (too few or too many fields, a field over csv's 128 KiB, an empty, long or repeated id, a
    date in another format, an audio path outside the audio roots) is reported and the rest is
    read. Text fields are cut to TEXT_LIMIT, as file tags are. Audio paths are relative to the
    CSV's folder and, symbolic links resolved, must lie under one of `roots` (default: the CSV's
    folder), so a catalog cannot make ingestion read /etc/passwd or ../../secrets. A file
    without the columns raises CatalogError."""
    allowed = [root.resolve() for root in (roots or [path.parent])]
    songs: list[CatalogSong] = []
    problems: list[str] = []
    seen: set[str] = set()
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogError(f"{path}: missing columns {missing}; expected {COLUMNS}")
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # raised before the reader counts the line
                problems.append(f"{path}:{reader.line_num + 1}: {exc}")
                continue
            try:
                songs.append(_song(row, f"{path}:{reader.line_num}", path.parent, seen, allowed))
            except CatalogError as exc:
                problems.append(str(exc))
    return songs, problems


def _song(row: dict, where: str, folder: Path, seen: set[str], roots: list[Path]) -> CatalogSong:
    if None in row or any(row.get(c) is None for c in COLUMNS):
        raise CatalogError(f"{where}: {len([v for v in row.values() if v is not None])} fields where the header "
                           f"has {len([k for k in row if k is not None])}")
    song_id = row["id"].strip()
    if not song_id:
        raise CatalogError(f"{where}: empty id")
    if len(song_id) > TEXT_LIMIT:
        raise CatalogError(f"{where}: id of {len(song_id)} characters; at most {TEXT_LIMIT}")
    if song_id in seen:
        raise CatalogError(f"{where}: duplicate id {song_id!r}")
    release_date = check_date(row["release_date"], where)
    audio = (folder / row["audio_path"].strip()).resolve()  # an absolute path stays itself
    if not any(audio.is_relative_to(root) for root in roots):
        raise CatalogError(f"{where}: audio_path {row['audio_path'].strip()[:200]!r} is outside the audio root "
                           f"({', '.join(map(str, roots))}); give --audio-root to read from elsewhere")
    seen.add(song_id)
    return CatalogSong(
        id=song_id,
        title=row["title"].strip()[:TEXT_LIMIT],
        artist=row["artist"].strip()[:TEXT_LIMIT],
        release_date=release_date,
        genre=row["genre"].strip().lower()[:TEXT_LIMIT],
        audio_path=audio,
        album=(row.get("album") or "").strip()[:TEXT_LIMIT],
    )


def write_catalog(path: Path, songs: list[CatalogSong]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS + OPTIONAL)
        for s in songs:
            writer.writerow([s.id, s.title, s.artist, s.release_date, s.genre, str(s.audio_path), s.album])


def root_arguments(songs: list[CatalogSong]) -> list[str]:
    """`--audio-root` arguments for the folders these songs' files lie in (for tools that write
    a catalog of files kept elsewhere, such as the demo's clips in ../shared/data)."""
    return [arg for folder in sorted({str(s.audio_path.parent) for s in songs}) for arg in ("--audio-root", folder)]
