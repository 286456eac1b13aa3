"""A path of songs from one catalog song to another (like OpenSubsonic's findSonicPath).

Step i aims at the waypoint i/(n+1) of the way from the start to the target (on the unit
sphere of standardised vectors) and takes the unused song that is nearest to both the waypoint
and the previous song, among those closer to the target than the previous song. Every genre is
searched, so the path may change genre. The caller's exclusions, duration bounds and no-repeat
windows apply; the similarity floor applies between consecutive songs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.recommender.index import DEFAULT_EF_SEARCH
from services.recommender.options import Options
from services.recommender.reasons import Reason, explain, sentences
from services.recommender.rules import Chosen, Rules, Shortfall
from services.recommender.store import IndexSet

DEFAULT_STEPS = 8
MAX_STEPS = 50


@dataclass
class Step:
    row: int
    similarity_to_previous: float
    similarity_to_target: float
    genre_changed: bool
    reason: str


@dataclass
class Path:
    steps: list[Step]
    shortfall: Shortfall | None


def find_path(
    index_set: IndexSet, start: int, end: int, count: int, options: Options, ef: int = DEFAULT_EF_SEARCH
) -> Path:
    unit = index_set.unit
    ends = {index_set.songs[start].id, index_set.songs[end].id}
    rules = Rules(index_set, options, ends, unit[[start, end]], cap_artists=False)
    chosen = Chosen()
    chosen.add(index_set.songs[start], start)
    total = len(index_set.songs)
    steps: list[Step] = []
    reasons: list[list[Reason]] = []
    previous = start
    for i in range(1, count + 1):
        t = i / (count + 1)
        waypoint = (1 - t) * unit[start] + t * unit[end]
        row = _next(index_set, rules, chosen, previous, end, waypoint, total, ef)
        if row is None:
            break
        reasons.append(explain(index_set, index_set.z[previous], index_set.raw[previous], row))
        steps.append(
            Step(
                row,
                float(unit[row] @ unit[previous]),
                float(unit[row] @ unit[end]),
                index_set.songs[row].genre != index_set.songs[previous].genre,
                "",
            )
        )
        chosen.add(index_set.songs[row], row)
        previous = row
    for step, sentence in zip(steps, sentences(reasons), strict=True):
        step.reason = sentence
    where = f"after step {len(steps)} no unused song of the {total} qualified and was closer to the target"
    return Path(steps, rules.shortfall(count, len(steps), {}, where))


def _next(
    index_set: IndexSet,
    rules: Rules,
    chosen: Chosen,
    previous: int,
    end: int,
    waypoint: np.ndarray,
    total: int,
    ef: int,
) -> int | None:
    """The best next song, searching ever wider around the waypoint; None when none qualifies."""
    unit = index_set.unit
    progress = float(unit[previous] @ unit[end])
    want = 16
    while True:
        rows = {row for index in index_set.indexes.values() for row, _ in index.search(waypoint, want, ef)}
        best, best_score = None, -np.inf
        for row in sorted(rows):
            to_previous = float(unit[row] @ unit[previous])
            if float(unit[row] @ unit[end]) <= progress:
                continue
            if rules.refuses(row, to_previous) or rules.blocks(row, chosen):
                continue
            score = to_previous + float(unit[row] @ waypoint) / max(float(np.linalg.norm(waypoint)), 1e-12)
            if score > best_score:
                best, best_score = row, score
        if best is not None or want >= total:
            return best
        want *= 4
