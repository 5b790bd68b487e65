"""Cache-line-aligned arrays for what the kernels stream (weights, device planes).

numpy aligns its allocations to 16 bytes only. A 512 x 512 float32 read whose weights start
16 or 48 bytes past a 64-byte boundary takes 1-2 us more than one starting on it (or 32
bytes past it): the kernels' vector loads then straddle cache lines. Measured on this
project's 2-core machine, both read directions, all four offsets interleaved in one process.
"""

from __future__ import annotations

import numpy as np

CACHE_LINE = 64


def aligned_zeros(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A C-contiguous array of zeros whose first element starts on a cache line."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(nbytes + CACHE_LINE, dtype=np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start:start + nbytes].view(dtype).reshape(shape)
