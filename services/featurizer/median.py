"""Exact sliding medians (scipy.ndimage.median_filter, "reflect") for HPSS.

The kernel is a comparison network shared across blocks of windows, generated as straight-line
numba source by devtools/median_network.py (where the method is explained) and committed as
median_kernel.py: one network, the window HPSS uses. A network orders values of every kind,
ties included, so the medians are exactly the order statistic scipy returns.
"""

from __future__ import annotations

import numba
import numpy as np

from services.featurizer import median_kernel


@numba.njit(cache=True, nogil=True)
def reflect_index(n: int, size: int, rows: int) -> np.ndarray:
    """Source row of each of `rows` padded positions, scipy "reflect" (d c b a | a b c d |
    d c b a, repeated for inputs shorter than the window); positions past n + size - 1 only
    fill the last block and repeat the last row."""
    half = size // 2
    idx = np.empty(rows, dtype=np.int64)
    for i in range(rows):
        j = min(i, n + 2 * half - 1) - half
        while j < 0 or j >= n:
            if j < 0:
                j = -j - 1
            if j >= n:
                j = 2 * n - j - 1
        idx[i] = j
    return idx


def running_median(x: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """scipy.ndimage.median_filter(x, size=(size, 1), mode="reflect") for float32 x [n, m]
    (any strides), exactly; into `out` [n, m] (any strides) when given. `size` is the
    kernel's window (median_kernel.SIZE)."""
    if size != median_kernel.SIZE:
        raise ValueError(f"the median kernel is built for windows of {median_kernel.SIZE}, not {size}; "
                         "regenerate it with python -m devtools.median_network")
    n, m = x.shape
    block = median_kernel.BLOCK
    idx = reflect_index(n, size, -(-n // block) * block + size - 1)
    if out is None:
        out = np.empty((n, m), dtype=np.float32)
    median_kernel.medians(x, idx, out)
    return out
