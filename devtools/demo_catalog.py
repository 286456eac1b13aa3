"""Write a catalog CSV for a folder of <root>/<genre>/<file> clips (GTZAN, regional_mini, ...).

Titles, artists, albums and years come from gtzan_metadata.csv where it lists the clip
(training/metadata.py); otherwise they are left empty and the ingestion reads them from the
files' tags (GTZAN clips carry none, so their title is then the clip name). The CSV holds
paths only; the audio stays in ../shared/data.

    python -m devtools.demo_catalog --data ../shared/data/gtzan_mini/genres --out var/demo/catalog.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from services.recommender.catalog.reader import CatalogSong, write_catalog
from training.metadata import clip_metadata

AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".au"}


def folder_catalog(root: Path) -> list[CatalogSong]:
    songs, cache = [], {}
    for path in sorted(p for p in root.glob("*/*") if p.suffix.lower() in AUDIO_SUFFIXES):
        row = clip_metadata(path, cache) or {}
        year = (row.get("year") or "").strip()
        songs.append(
            CatalogSong(
                id=path.stem,
                title=(row.get("title") or "").strip(),
                artist=(row.get("artist") or "").strip(),
                release_date=year if year.isdigit() and len(year) == 4 else "",
                genre=path.parent.name.lower(),
                audio_path=path.resolve(),
                album=(row.get("album") or "").strip(),
            )
        )
    return songs


def manifest_catalog(root: Path) -> list[CatalogSong]:
    """A flat folder with a manifest.csv of file,genre rows (../shared/data/full_songs)."""
    manifest = root / "manifest.csv"
    if not manifest.exists():
        return []
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        CatalogSong(id=Path(r["file"]).stem, title="", artist="", release_date="", genre=r["genre"].strip().lower(),
                    audio_path=(root / r["file"]).resolve())
        for r in rows
        if (root / r["file"]).exists()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/gtzan_mini/genres"))
    parser.add_argument("--out", type=Path, default=Path("var/demo/catalog.csv"))
    args = parser.parse_args()
    songs = folder_catalog(args.data)
    if not songs:
        raise SystemExit(f"no audio under {args.data} (see ../shared/data/README.md)")
    write_catalog(args.out, songs)
    print(f"wrote {len(songs)} songs to {args.out}")


if __name__ == "__main__":
    main()
