"""What an audio file says about itself (ID3, Vorbis comments, MP4 atoms), read with mutagen at
ingestion: title, artist, album, date and length, used where the catalog CSV leaves them empty."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import mutagen

from services.recommender.catalog.reader import TEXT_LIMIT

# The same tag under the names the containers give it: easy keys (mp3, flac, ogg), raw ID3
# frames (wav, aiff), MP4 atoms.
KEYS = {
    "title": ("title", "TIT2", "\xa9nam"),
    "artist": ("artist", "albumartist", "TPE1", "TPE2", "\xa9ART", "aART"),
    "album": ("album", "TALB", "\xa9alb"),
    "date": ("date", "originaldate", "year", "TDRC", "TDOR", "TYER", "\xa9day"),
}
DATE = re.compile(r"^(\d{4})(-\d{2})?(-\d{2})?")


@dataclass(frozen=True)
class FileTags:
    title: str = ""
    artist: str = ""
    album: str = ""
    date: str = ""  # YYYY, YYYY-MM or YYYY-MM-DD, or ""
    duration_seconds: float = 0.0


def _first(tags, names: tuple[str, ...]) -> str:
    for name in names:
        try:
            value = tags.get(name)
        except (KeyError, ValueError):
            continue
        if value is None:
            continue
        text = getattr(value, "text", value)  # ID3 frames keep their values in .text
        items = text if isinstance(text, list) else [text]
        for item in items:
            if str(item).strip():
                return str(item).strip()[:TEXT_LIMIT]
    return ""


def read_tags(path: Path) -> FileTags:
    """The file's tags; empty fields where it has none or cannot be parsed (never raises)."""
    try:
        audio = mutagen.File(path, easy=True)
    except (mutagen.MutagenError, OSError, ValueError):
        return FileTags()
    if audio is None:
        return FileTags()
    length = float(getattr(audio.info, "length", 0.0) or 0.0)
    tags = audio.tags or {}
    match = DATE.match(_first(tags, KEYS["date"]))
    return FileTags(
        title=_first(tags, KEYS["title"]),
        artist=_first(tags, KEYS["artist"]),
        album=_first(tags, KEYS["album"]),
        date="".join(part or "" for part in match.groups()) if match else "",
        duration_seconds=length,
    )
