"""A path of songs from one catalog song to another (like OpenSubsonic's findSonicPath).

Step i aims at the waypoint i/(n+1) of the way from the start to the target (on the unit
sphere of standardised vectors) and prefers the unused song nearest to both the waypoint and the
previous song, among those closer to the target than the previous song; a depth-first search
backtracks when that greedy choice leads to a dead end. Every genre is searched, so the path may
change genre. The caller's exclusions, duration bounds and no-repeat
windows apply; the similarity floor applies between consecutive songs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.recommender.index import DEFAULT_EF_SEARCH, normalise_rows
from services.recommender.options import Options
from services.recommender.reasons import explain, sentences
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
    a, b = index_set.unit_rows([start, end])
    ends = {index_set.songs[start].id, index_set.songs[end].id}
    rules = Rules(index_set, options, ends, np.stack([a, b]), cap_artists=False)
    t = np.arange(1, count + 1)[:, None] / (count + 1)
    waypoints = normalise_rows((1 - t) * a + t * b)  # [count, F]
    total = len(index_set.songs)
    want = 32
    while True:
        chain = _PathSearch(index_set, rules, start, end, waypoints, _pool(index_set, rules, waypoints, want, ef)).run()
        if len(chain) == count or want >= total:
            break
        want *= 4
    steps, reasons, previous = [], [], start
    for row in chain:
        z_prev = index_set.z_rows([previous])[0]
        reasons.append(explain(index_set, z_prev, index_set.raw_rows([previous])[0], row))
        genre_changed = index_set.songs.genre(row) != index_set.songs.genre(previous)
        u, u_prev = rules.unit(row), rules.unit(previous)
        steps.append(Step(row, float(u @ u_prev), float(u @ b), genre_changed, ""))
        previous = row
    for step, sentence in zip(steps, sentences(reasons), strict=True):
        step.reason = sentence
    where = f"no chain of {count} songs, each closer to the target, qualified among the {total}"
    return Path(steps, rules.shortfall(count, len(steps), {}, where))


def _pool(index_set: IndexSet, rules: Rules, waypoints: np.ndarray, want: int, ef: int) -> np.ndarray:
    """The `want` songs nearest to each waypoint (over every genre) that no rule refuses outright."""
    rows: set[int] = set()
    for waypoint in waypoints:
        found = [hit for index in index_set.indexes.values() for hit in index.search(waypoint, want, ef)]
        rows.update(row for row, _ in sorted(found, key=lambda h: -h[1])[:want])
    return np.array([r for r in sorted(rows) if not rules.refuses(r, np.inf)], dtype=np.int64)


class _PathSearch:
    """Depth-first search for a chain through the pool: at each step the BRANCH best songs (near
    the previous song and the waypoint, closer to the target than the previous song, allowed by
    the windows and the floor), backtracking when a chain dead-ends, within NODE_BUDGET steps."""

    BRANCH = 6
    NODE_BUDGET = 5000

    def __init__(
        self, index_set: IndexSet, rules: Rules, start: int, end: int, waypoints: np.ndarray, pool: np.ndarray
    ) -> None:
        self.index_set, self.rules, self.start = index_set, rules, start
        self.pool = pool
        self.rows = np.concatenate([[start], pool]).astype(np.int64)  # position 0 is the start song
        rules.prefetch(self.rows)
        units = np.stack([rules.unit(int(r)) for r in self.rows])
        self.pair = units @ units[1:].T  # [1 + pool, pool]
        self.to_target = units @ rules.unit(end)
        self.to_waypoint = waypoints @ units[1:].T  # [count, pool]
        self.floor = rules.options.min_similarity
        self.nodes = 0
        self.best: list[int] = []

    def run(self) -> list[int]:
        self._extend([0])
        return [int(self.rows[p]) for p in self.best[1:]]

    def _extend(self, chain: list[int]) -> bool:
        """chain: positions in self.rows, the start first. True once it holds every step."""
        if len(chain) > len(self.best):
            self.best = list(chain)
        step = len(chain) - 1
        if step == len(self.to_waypoint):
            return True
        last = chain[-1]
        closer = self.to_target[1:] > self.to_target[last]
        closer[[p - 1 for p in chain[1:]]] = False
        if self.floor is not None:
            closer &= self.pair[last] >= self.floor
        score = np.where(closer, self.pair[last] + self.to_waypoint[step], -np.inf)
        chosen = Chosen()
        for p in chain:
            chosen.add(self.index_set.songs[int(self.rows[p])], int(self.rows[p]))
        tried = 0
        for candidate in np.argsort(-score, kind="stable"):
            if not np.isfinite(score[candidate]) or tried == self.BRANCH or self.nodes >= self.NODE_BUDGET:
                break
            if self.rules.blocks(int(self.pool[candidate]), chosen):
                continue
            tried += 1
            self.nodes += 1
            if self._extend([*chain, int(candidate) + 1]):
                return True
        return False
