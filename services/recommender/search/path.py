"""A path of songs from one catalog song to another (like OpenSubsonic's findSonicPath).

Step i aims at the waypoint i/(n+1) of the way from the start to the target (on the unit
sphere of standardised vectors) and prefers the unused song nearest to both the waypoint and the
previous song, among those closer to the target than the previous song; a depth-first search
backtracks when that greedy choice leads to a dead end. Every genre is searched, so the path may
change genre. The caller's exclusions, duration bounds and no-repeat
windows apply; the similarity floor applies between consecutive songs.

Bounded whatever the catalog's size: the pool holds at most MAX_POOL songs (the nearest to the
waypoints), a song's similarities to the pool are computed when the search first steps on it
(not a pool x pool matrix), and the search stops after NODE_BUDGET steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.recommender.index.graph import DEFAULT_EF_SEARCH, normalise_rows
from services.recommender.index.store import IndexSet
from services.recommender.search.answer import AnswerReads
from services.recommender.search.compute import UNLIMITED, Budget
from services.recommender.search.options import Options
from services.recommender.search.reasons import explain, sentences
from services.recommender.search.rules import Chosen, Rules, Shortfall

DEFAULT_STEPS = 8
MAX_STEPS = 50
MAX_POOL = 2048
FIRST_PER_WAYPOINT = 32


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
    index_set: IndexSet, start: int, end: int, count: int, options: Options, ef: int = DEFAULT_EF_SEARCH,
    budget: Budget = UNLIMITED, include_target: bool = True,
) -> Path:
    """`count` songs from start toward end, each closer to end than the one before; then, with
    include_target, end itself as the last step (whatever the floor: the path arrives), also
    when fewer than `count` songs qualified between (the shortfall says so)."""
    reads = AnswerReads(index_set)
    a, b = reads.units([start, end])
    ends = {reads.song(start).id, reads.song(end).id}
    rules = Rules(reads, options, ends, np.stack([a, b]), cap_artists=False)
    t = np.arange(1, count + 1)[:, None] / (count + 1)
    waypoints = normalise_rows((1 - t) * a + t * b)  # [count, F]
    total = len(index_set.songs)
    most = max(1, MAX_POOL // count)  # per waypoint: the pool stays within MAX_POOL songs
    want = min(FIRST_PER_WAYPOINT, most)
    nearest = _nearest(index_set, rules, waypoints, most, ef, budget)
    while True:
        budget.check()
        pool = _pool(nearest, want)
        chain = _PathSearch(rules, start, end, waypoints, pool, budget).run()
        if len(chain) == count or want >= min(total, most):
            break
        want = min(4 * want, most)
    steps, reasons, previous = [], [], start
    for row in [*chain, end] if include_target else chain:
        z_prev = index_set.z_rows([previous])[0]
        reasons.append(explain(index_set, z_prev, index_set.raw_rows([previous])[0], row))
        genre_changed = index_set.songs.genre(row) != index_set.songs.genre(previous)
        u, u_prev = reads.unit(row), reads.unit(previous)
        steps.append(Step(row, float(u @ u_prev), float(u @ b), genre_changed, ""))
        previous = row
    for step, sentence in zip(steps, sentences(reasons), strict=True):
        step.reason = sentence
    where = f"no chain of {count} songs, each closer to the target, qualified among the {len(pool)} nearest the way"
    return Path(steps, rules.shortfall(count, len(chain), {}, where))


def _nearest(
    index_set: IndexSet, rules: Rules, waypoints: np.ndarray, most: int, ef: int, budget: Budget
) -> list[np.ndarray]:
    """For each waypoint, the `most` songs nearest to it over every genre, best first, without
    the songs a rule refuses outright (one graph call per genre for all waypoints)."""
    found: list[list[tuple[int, float]]] = [[] for _ in waypoints]
    for index in index_set.indexes.values():
        budget.check()
        for mine, hits in zip(found, index.search_many(waypoints, most, min(ef, max(2 * most, 64))), strict=True):
            mine.extend(hits)
    nearest = []
    for hits in found:
        rows = [row for row, _ in sorted(hits, key=lambda h: -h[1])[:most]]
        nearest.append(np.array([r for r in rows if not rules.refuses(r, np.inf)], dtype=np.int64))
    return nearest


def _pool(nearest: list[np.ndarray], want: int) -> np.ndarray:
    """The `want` nearest songs of each waypoint, together."""
    return np.unique(np.concatenate([rows[:want] for rows in nearest])) if nearest else np.zeros(0, np.int64)


class _PathSearch:
    """Depth-first search for a chain through the pool: at each step the BRANCH best songs (near
    the previous song and the waypoint, closer to the target than the previous song, allowed by
    the windows and the floor), backtracking when a chain dead-ends, within NODE_BUDGET steps."""

    BRANCH = 6
    NODE_BUDGET = 5000

    def __init__(
        self, rules: Rules, start: int, end: int, waypoints: np.ndarray, pool: np.ndarray, budget: Budget = UNLIMITED
    ) -> None:
        self.rules, self.start, self.budget = rules, start, budget
        self.pool = pool
        self.rows = np.concatenate([[start], pool]).astype(np.int64)  # position 0 is the start song
        self.units = rules.reads.units(self.rows)  # [1 + pool, F]
        self._pair: dict[int, np.ndarray] = {}
        self.to_target = self.units @ rules.reads.unit(end)
        self.to_waypoint = waypoints @ self.units[1:].T  # [count, pool]
        self.floor = rules.options.min_similarity
        self.nodes = 0
        self.best: list[int] = []

    def pair(self, position: int) -> np.ndarray:
        """Similarities of the song at `position` to every pool song, computed on first use."""
        if position not in self._pair:
            self._pair[position] = self.units[1:] @ self.units[position]
        return self._pair[position]

    def run(self) -> list[int]:
        chosen = Chosen()
        chosen.add(self.rules.reads.song(self.start), self.start)
        self._extend([0], chosen)
        return [int(self.rows[p]) for p in self.best[1:]]

    def _extend(self, chain: list[int], chosen: Chosen) -> bool:
        """chain: positions in self.rows, the start first. True once it holds every step."""
        if len(chain) > len(self.best):
            self.best = list(chain)
        step = len(chain) - 1
        if step == len(self.to_waypoint):
            return True
        self.budget.check()
        last = chain[-1]
        pair = self.pair(last)
        closer = self.to_target[1:] > self.to_target[last]
        closer[[p - 1 for p in chain[1:]]] = False
        if self.floor is not None:
            closer &= pair >= self.floor
        score = np.where(closer, pair + self.to_waypoint[step], -np.inf)
        tried = 0
        for candidate in np.argsort(-score, kind="stable"):
            if not np.isfinite(score[candidate]) or tried == self.BRANCH or self.nodes >= self.NODE_BUDGET:
                break
            row = int(self.pool[candidate])
            if self.rules.blocks(row, chosen):
                continue
            tried += 1
            self.nodes += 1
            chosen.add(self.rules.reads.song(row), row)
            if self._extend([*chain, int(candidate) + 1], chosen):
                return True
            chosen.pop()
        return False
