"""Say why this hit, in numbers: the feature groups on which it is unusually close to the query.

A group's gap is the mean absolute difference of its standardised features, query against hit.
Raw gaps rank the same low-variance groups first for every hit, so each gap is divided by the
gap between songs of the hit's genre and their 5 nearest neighbours (its typical gap,
measured once per index generation): the contrast. The reason names the groups with the
lowest contrast, i.e. where this hit is closest compared with what any near song would be.

Within one answer, sentences() avoids naming the same group for every hit (see there).

The groups (timbre, tempo, harmony, ...) come from the featurizer's schema, copied into the
index manifest at ingestion; nothing here knows the featurizer's feature names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from services.recommender.index.store import IndexSet

NEIGHBOURS = 5
SAMPLE = 300  # songs per genre whose neighbourhoods set the typical gaps


@dataclass(frozen=True)
class Reason:
    group: str
    gap: float
    typical_gap: float
    contrast: float
    detail: str = ""


def group_gaps(groups: dict[str, np.ndarray], a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Mean |a - b| per group; a and b are [..., F] standardised vectors."""
    return {g: np.mean(np.abs(a[..., cols] - b[..., cols]), axis=-1) for g, cols in groups.items()}


def typical_gaps(
    groups: dict[str, np.ndarray], z: np.ndarray, genre_rows: dict[str, np.ndarray], seed: int = 0
) -> dict[str, dict[str, float]]:
    """Per genre and group: the median gap between a song and its nearest neighbours in the genre
    (exact cosine neighbours of a sample of at most SAMPLE songs)."""
    rng = np.random.default_rng(seed)
    unit = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    typical: dict[str, dict[str, float]] = {}
    for genre, rows in genre_rows.items():
        if len(rows) < 2:
            typical[genre] = {g: 1.0 for g in groups}
            continue
        sample = rng.choice(rows, size=min(SAMPLE, len(rows)), replace=False)
        sims = unit[sample] @ unit[rows].T  # [sample, genre]
        sims[sample[:, None] == rows[None, :]] = -np.inf  # not the song itself
        k = min(NEIGHBOURS, len(rows) - 1)
        near = rows[np.argpartition(-sims, k - 1, axis=1)[:, :k]]  # [sample, k]
        gaps = group_gaps(groups, z[sample][:, None, :], z[near])
        typical[genre] = {g: max(float(np.median(v)), 1e-6) for g, v in gaps.items()}
    return typical


def explain(index_set: IndexSet, query_z: np.ndarray, query_raw: np.ndarray, row: int) -> list[Reason]:
    """Every group's Reason for this hit, most distinctive (lowest contrast) first."""
    song = index_set.songs[row]
    typical = index_set.typical_gaps.get(song.genre, {})
    hit_z = index_set.z_rows([row])[0]
    gaps = group_gaps(index_set.groups, query_z, hit_z)
    names = index_set.feature_names
    reasons = []
    for group, gap in gaps.items():
        usual = typical.get(group, 1.0)
        detail = ""
        if group == "tempo" and "tempo" in names:
            t = names.index("tempo")
            hit_tempo = hit_z[t] * index_set.scale[t] + index_set.mean[t]
            detail = f"{query_raw[t]:.0f} vs {hit_tempo:.0f} BPM"
        reasons.append(Reason(group, float(gap), usual, float(gap) / usual, detail))
    return sorted(reasons, key=lambda r: r.contrast)


REPEAT_PENALTY = 0.25  # added to a group's contrast for each time this answer has named it


def named_groups(answer: list[list[Reason]], top: int = 2) -> list[list[Reason]]:
    """The `top` groups each hit's sentence names. Within one answer a group is ranked by
    contrast + REPEAT_PENALTY * (times already named), so each hit says what sets it apart
    rather than what all of them share; the full ranking stays in the Reason lists."""
    named: dict[str, int] = {}
    out = []
    for reasons in answer:
        chosen = sorted(reasons, key=lambda r: r.contrast + REPEAT_PENALTY * named.get(r.group, 0))[:top]
        for r in chosen:
            named[r.group] = named.get(r.group, 0) + 1
        out.append(sorted(chosen, key=lambda r: r.contrast))
    return out


def sentences(answer: list[list[Reason]], top: int = 2) -> list[str]:
    """One sentence per hit, e.g. "unusually close in tempo (120 vs 123 BPM; 0.21x the usual gap)
    and timbre (0.48x the usual gap)"."""
    out = []
    for chosen in named_groups(answer, top):
        words = [f"{r.group} ({r.detail + '; ' if r.detail else ''}{r.contrast:.2f}x the usual gap)" for r in chosen]
        lead = "unusually close in " if chosen and chosen[0].contrast < 1.0 else "closest for its genre in "
        out.append(lead + " and ".join(words))
    return out
