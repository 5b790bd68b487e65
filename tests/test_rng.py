"""The counter-based normal generators: moments and tail masses of a standard normal."""

import math

import numpy as np
import pytest
from numba import njit

from aimcsim import rng
from aimcsim.rng import fill_normals32, next_normal, normals32_scratch

N = 1_000_000


@njit(cache=True)
def _sequential(n: int) -> np.ndarray:
    s = np.uint64(12345)
    out = np.empty(n)
    for i in range(n):
        s, out[i] = next_normal(s)
    return out


def _filled32(n: int) -> np.ndarray:
    out = np.empty(n + 1, np.float32)
    fill_normals32(np.uint64(12345), out, n, np.empty(normals32_scratch(n), np.uint64))
    return out[:n].astype(np.float64)


@pytest.mark.parametrize("draw", [_sequential, _filled32], ids=["next_normal", "fill32"])
def test_normal_moments_and_tails(draw):
    x = draw(N)
    assert np.all(np.isfinite(x))
    # 5 sigma of the sampling error of each statistic for N standard normal draws
    assert abs(x.mean()) < 5 / math.sqrt(N)
    assert abs(x.var() - 1.0) < 5 * math.sqrt(2 / N)
    assert abs(np.mean(x**4) - 3.0) < 5 * math.sqrt(96 / N)
    assert abs(np.mean(x**3)) < 5 * math.sqrt(15 / N)
    for t in (1.0, 2.0, 3.0, 3.8):  # 3.8 lies beyond the ziggurat's base layer (r = 3.654)
        p = math.erfc(t / math.sqrt(2))
        assert abs(np.mean(np.abs(x) > t) - p) < 5 * math.sqrt(p * (1 - p) / N), t


def test_fill_normals32_is_reproducible_and_advances_the_stream():
    a, b = _filled32(1001), _filled32(1001)
    np.testing.assert_array_equal(a, b)
    out = np.empty(1002, np.float32)
    s1 = fill_normals32(np.uint64(1), out, 1001, np.empty(normals32_scratch(1001), np.uint64))
    first = out[:1001].copy()
    fill_normals32(s1, out, 1001, np.empty(normals32_scratch(1001), np.uint64))
    assert not np.array_equal(first, out[:1001])


@pytest.mark.parametrize("layers", [256, 1024])
def test_ziggurat_tables_close(layers):
    """The construction is consistent: the top layer's area (x1 (1 - f(x1))) is the layer area v."""
    kn, wn, fn = (rng._KN, rng._WN, rng._FN) if layers == 256 else (rng._KN10, rng._WN10, rng._FN10)
    r = rng._ZIG_R if layers == 256 else rng._ZIG_R10
    v = wn[0] * 2**31 * math.exp(-0.5 * r * r)  # wn[0] = v / f(r) / 2**31
    x1 = wn[1] * 2**31
    assert abs(x1 * (1.0 - fn[1]) - v) < 1e-9 * v
    assert np.all(np.diff(wn[1:]) > 0) and np.all(np.diff(fn[1:]) < 0)  # layers widen downwards


def test_fill_normals32_fills_every_slot():
    """Small and odd n, and n whose words straddle the packs of eight slow-path marks, leave
    no slot unwritten: every draw is finite and distinct (the NaN fill would show)."""
    for n in (1, 2, 3, 15, 16, 17, 127, 128, 129, 257, 4097):
        out = np.full(n + 1, np.nan, np.float32)
        fill_normals32(np.uint64(n), out, n, np.empty(normals32_scratch(n), np.uint64))
        assert np.all(np.isfinite(out[:n])) and len(np.unique(out[:n])) == n
