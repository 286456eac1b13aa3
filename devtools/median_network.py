"""The median network behind the featurizer's HPSS, and the generator of its numba kernel.

    python -m devtools.median_network      # rewrites services/featurizer/median_kernel.py

Exact sliding medians (scipy.ndimage.median_filter, "reflect") by one comparison network
shared across a block of windows. A window of `size` values slides one step per output, so
`block` neighbouring windows share most of their values (A. Adams, "Fast median filters using
separable sorting networks", SIGGRAPH 2021). The network sorts what all windows of the block
share once, then halves the block again and again, merging in what each half shares and
keeping only the ranks that can still become a median. For 31-value windows in blocks of 16
that is 34 min/max a median, where keeping each window sorted costs about 120.

`median_program(size, block)` records the network as (op, dst_lo, dst_hi, a, b) rows: op 0
writes min(a, b) to dst_lo, op 1 max(a, b) to dst_hi, op 2 both; operands below
`block + size - 1` are the block's inputs, the rest scratch values. `kernel_source` turns it
into straight-line numba source, one local variable a value, so the whole network runs in
vector registers, LANES columns at a time (an interpreted network moving rows through memory
was 5x slower). The featurizer uses one network (31-value windows, blocks of 16): its source
is generated here and committed, so the service never writes or executes generated code, and
tests/unit/test_featurizer_math.py checks the committed file is what this writes.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

KERNEL = Path(__file__).resolve().parents[1] / "services" / "featurizer" / "median_kernel.py"
SIZE = 31  # HPSS's median window (librosa's default kernel_size)

LANES = 64  # columns per tile: the generated loop runs over them in vector registers
BLOCK = 16  # windows per network: for 31-value windows 34 min/max a median (8: 42, 32: 34)
INF = -1  # a +infinity sentinel padding lists to a power of two; it never becomes an op
MIN, MAX, BOTH = 0, 1, 2


@dataclass(frozen=True)
class MedianProgram:
    ops: np.ndarray  # int64 [n_ops, 5]: op, dst_lo, dst_hi, a, b (value ids; -1: not kept)
    outputs: np.ndarray  # int64 [block]: the value that is each window's median
    n_inputs: int  # block + size - 1 padded positions, values 0 .. n_inputs - 1
    block: int

    @property
    def size(self) -> int:
        return self.n_inputs - self.block + 1


class _Builder:
    """Records compare-exchanges as single-assignment min and max values."""

    def __init__(self, n_inputs: int) -> None:
        self.next_id = n_inputs
        self.ops: list[tuple[int, int, int, int]] = []  # (op, dst, a, b), op MIN or MAX

    def _emit(self, op: int, a: int, b: int) -> int:
        dst = self.next_id
        self.next_id += 1
        self.ops.append((op, dst, a, b))
        return dst

    def exchange(self, a: int, b: int) -> tuple[int, int]:
        if a == INF:
            return b, INF
        if b == INF:
            return a, INF
        return self._emit(MIN, a, b), self._emit(MAX, a, b)

    def merge(self, first: list[int], second: list[int]) -> list[int]:
        """Batcher's odd-even merge of two sorted lists (padded with INF to equal powers of two)."""
        if not first or not second:
            return first + second
        width = 1
        while width < max(len(first), len(second)):
            width *= 2
        v = first + [INF] * (width - len(first)) + second + [INF] * (width - len(second))

        def exchange(i: int, j: int) -> None:
            v[i], v[j] = self.exchange(v[i], v[j])

        def odd_even_merge(lo: int, n: int, r: int) -> None:
            step = 2 * r
            if step < n:
                odd_even_merge(lo, n, step)
                odd_even_merge(lo + r, n, step)
                for i in range(lo + r, lo + n - r, step):
                    exchange(i, i + r)
            else:
                exchange(lo, lo + r)

        odd_even_merge(0, 2 * width, 1)
        return [x for x in v if x != INF]

    def sort(self, values: list[int]) -> list[int]:
        if len(values) <= 1:
            return list(values)
        half = len(values) // 2
        return self.merge(self.sort(values[:half]), self.sort(values[half:]))


def _build(size: int, block: int) -> tuple[list[tuple[int, int, int, int]], list[int]]:
    """The network for windows t = 0..block-1 over inputs t..t+size-1, as SSA min/max ops."""
    rank = size // 2
    b = _Builder(block + size - 1)
    medians = [0] * block

    def solve(t0: int, t1: int, shared: list[int], below: int, parent: tuple[int, int]) -> None:
        # Every window of [t0, t1) holds positions [t1 - 1, t0 + size - 1]; `shared` holds them,
        # sorted, less the `below` smallest (they cannot be a median) and those above any median.
        first, last = t1 - 1, t0 + size - 1
        new = [p for p in range(first, last + 1) if not parent[0] <= p <= parent[1]]
        merged = b.merge(shared, b.sort(new))
        extras = (t1 - t0) - 1  # values each window has beyond the shared ones, at most
        drop = max(0, rank - extras - below)
        kept = merged[drop : rank - below + 1]
        if t1 - t0 == 1:
            medians[t0] = kept[0]
            return
        middle = (t0 + t1) // 2
        solve(t0, middle, kept, below + drop, (first, last))
        solve(middle, t1, kept, below + drop, (first, last))

    solve(0, block, [], 0, (1, 0))
    return b.ops, medians


def _prune(ops: list[tuple[int, int, int, int]], outputs: list[int]) -> np.ndarray:
    """Drop the values no median depends on; the min and max of one exchange become one op."""
    live = set(outputs)
    needed = []
    for op in reversed(ops):
        if op[1] in live:
            needed.append(op)
            live.update(op[2:])
    needed.reverse()
    fused: list[list[int]] = []  # [op, dst_lo, dst_hi, a, b]
    pending: dict[tuple[int, int], int] = {}  # operands -> the op that took one side of them
    for op, dst, a, b in needed:
        if (a, b) in pending:
            row = fused[pending.pop((a, b))]
            row[0] = BOTH
            row[1 if op == MIN else 2] = dst
        else:
            pending[(a, b)] = len(fused)
            fused.append([op, dst if op == MIN else -1, dst if op == MAX else -1, a, b])
    return np.array(fused, dtype=np.int64).reshape(-1, 5)


@lru_cache(maxsize=8)
def median_program(size: int, block: int = BLOCK) -> MedianProgram:
    """The program computing `block` neighbouring medians of odd `size` windows."""
    if size < 1 or size % 2 == 0 or block < 1:
        raise ValueError(f"windows must have an odd size and blocks at least one window: {size}, {block}")
    n_inputs = block + size - 1
    ops, medians = _build(size, block)
    return MedianProgram(_prune(ops, medians), np.array(medians, dtype=np.int64), n_inputs, block)


def kernel_source(program: MedianProgram) -> str:
    """numba source of `medians(x, idx, out)`: the program over every block of every tile.

    `_network` runs the program for all blocks of one tile [rows * LANES]; its offsets are
    constant multiples of LANES, so LLVM sees every access as one base plus a known distance
    and vectorises the lane loop. Indices are unsigned throughout: with signed ones numba
    wraps negatives, and the vectoriser gives up (the network ran 5x slower, scalar).
    `medians` gathers tiles of LANES columns of x [n, m] through the reflected row index and
    scatters the medians to out, each along its contiguous axis (HPSS's median along
    frequency reads and writes transposed views)."""
    size = program.size
    body = ["at = np.uint64(j0 * LANES + lane)"]
    body += [f"v{p} = tile[at + np.uint64({p * LANES})]" for p in range(program.n_inputs)]
    for op, lo, hi, a, b in program.ops.tolist():
        if op == BOTH:
            body.append(f"v{lo}, v{hi} = min(v{a}, v{b}), max(v{a}, v{b})")
        elif op == MIN:
            body.append(f"v{lo} = min(v{a}, v{b})")
        else:
            body.append(f"v{hi} = max(v{a}, v{b})")
    body += [f"med[at + np.uint64({t * LANES})] = v{v}" for t, v in enumerate(program.outputs.tolist())]
    network = "\n".join(f"            {line}" for line in body)
    return f'''# Generated by devtools/median_network.py (median of {size}, blocks of {program.block}): do not edit.
# Regenerate: python -m devtools.median_network
import numba
import numpy as np

LANES = {LANES}
SIZE = {size}
BLOCK = {program.block}


@numba.njit(cache=True, nogil=True, fastmath=True)
def _network(tile, med):
    for j0 in range(0, med.size // LANES, {program.block}):
        for lane in range(LANES):
{network}


@numba.njit(cache=True, nogil=True)
def medians(x, idx, out):
    n, m = out.shape
    n_out = len(idx) - {size - 1}
    tile = np.empty(len(idx) * LANES, dtype=np.float32)
    med = np.empty(n_out * LANES, dtype=np.float32)
    for c0 in range(0, m, LANES):
        width = min(LANES, m - c0)
        if x.strides[1] <= x.strides[0]:  # rows contiguous: copy row pieces
            for r in range(len(idx)):
                row = x[idx[r]]
                base = np.uint64(r * LANES)
                for lane in range(width):
                    tile[base + np.uint64(lane)] = row[np.uint64(c0 + lane)]
        else:  # columns contiguous (a transposed view): walk down each column
            for lane in range(width):
                column = x[:, c0 + lane]
                for r in range(len(idx)):
                    tile[np.uint64(r * LANES + lane)] = column[np.uint64(idx[r])]
        for r in range(len(idx)):
            for lane in range(width, LANES):
                tile[np.uint64(r * LANES + lane)] = 0.0
        _network(tile, med)
        if out.strides[1] <= out.strides[0]:
            for r in range(n):
                base = np.uint64(r * LANES)
                row = out[r]
                for lane in range(width):
                    row[np.uint64(c0 + lane)] = med[base + np.uint64(lane)]
        else:
            for lane in range(width):
                column = out[:, c0 + lane]
                for r in range(n):
                    column[np.uint64(r)] = med[np.uint64(r * LANES + lane)]
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=KERNEL)
    args = parser.parse_args()
    args.out.write_text(kernel_source(median_program(SIZE, BLOCK)))
    print(f"wrote {args.out} (median of {SIZE}, blocks of {BLOCK})")


if __name__ == "__main__":
    main()
