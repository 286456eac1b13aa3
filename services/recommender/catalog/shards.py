"""Ingestion spread over machines: which songs a shard analyses, what it leaves behind, the merge.

A Kubernetes Indexed Job runs one pod per shard (JOB_COMPLETION_INDEX = K of JOB_COMPLETIONS
= N). Shard K takes the catalog songs whose id hashes to K (stable when songs are added or
removed), analyses them into the shared analysis store, and writes

    <index_dir>/shards/<catalog digest>/shard-K-of-N.json     {song id: content hash}, failures

The publish step checks that all N shards of this catalog reported, reads every song's analysis
back from the store and builds one generation (build.py), published atomically. The catalog is
the truth: a song no longer in it leaves the index, a changed file has a new hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from services.recommender.catalog.analysis import Setup
from services.recommender.catalog.reader import CatalogSong


def shard_of(song_id: str, shards: int) -> int:
    return int.from_bytes(hashlib.sha1(song_id.encode()).digest()[:8], "big") % shards


def shard_songs(songs: list[CatalogSong], shard: int, shards: int) -> list[CatalogSong]:
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    return [s for s in songs if shard_of(s.id, shards) == shard]


def catalog_digest(catalog: Path) -> str:
    return hashlib.sha256(catalog.read_bytes()).hexdigest()[:16]


def shard_folder(index_dir: Path, catalog: Path) -> Path:
    return index_dir / "shards" / catalog_digest(catalog)


@dataclass
class ShardReport:
    shard: int
    shards: int
    hashes: dict[str, str]  # song id -> content hash of its file
    failed: dict[str, str]  # song id -> why
    setup: Setup

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"shard-{self.shard}-of-{self.shards}.json"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        payload = {"shard": self.shard, "shards": self.shards, "hashes": self.hashes, "failed": self.failed,
                   "setup": self.setup.__dict__}
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, target)
        return target


def read_reports(folder: Path, shards: int) -> list[ShardReport]:
    """Every shard's report, or ValueError naming the shards that have not reported (yet)."""
    reports, missing = [], []
    for k in range(shards):
        path = folder / f"shard-{k}-of-{shards}.json"
        if not path.exists():
            missing.append(k)
            continue
        raw = json.loads(path.read_text())
        reports.append(ShardReport(raw["shard"], raw["shards"], raw["hashes"], raw["failed"], Setup(**raw["setup"])))
    if missing:
        raise ValueError(f"shards {missing} of {shards} have not reported under {folder}: run them first")
    setups = {(r.setup.schema_version, r.setup.models_key) for r in reports}
    if len(setups) > 1:
        raise ValueError(f"shards ran against different featurizer schemas or models {sorted(setups)}: run them again")
    return reports
