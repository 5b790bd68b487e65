"""Counter-based random numbers for the numba kernels.

Every random draw in aimcsim comes from a SplitMix64 stream whose state is a plain
``uint64`` owned by the caller (a tile keeps its states in small arrays). A stream is
derived from a key with :func:`stream`, so parallel kernels give each crossbar row its own
stream keyed by (call counter, row): results are bit-identical whatever the thread count.

Normal deviates use the Marsaglia-Tsang ziggurat (256 layers) with the layer index and the
value taken from disjoint bits: one SplitMix64 step per draw for the reads' float64 noise,
half a step per draw for the updates' float32 noise (:func:`fill_normals32`). That matters
because a pulsed update draws one cycle-to-cycle noise sample per coincidence.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_S32 = np.uint64(32)
_MASK8 = np.uint64(255)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


_LAYERS = 256
_ZIG_R = 3.6541528853610088  # start of the tail


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tables kn, wn, fn of the 256-layer ziggurat for the standard normal (Marsaglia-Tsang).

    kn and wn are scaled for 32-bit signed values (2**31); 256 layers leave about 1.3 % of
    the draws to the slow path (128 layers: 2.6 %), which is where the time of a draw goes.
    """
    m1 = 2147483648.0
    dn = _ZIG_R
    tn = dn
    vn = 4.92867323399e-3  # area of each layer
    kn = np.zeros(_LAYERS, np.int64)
    wn = np.zeros(_LAYERS, np.float64)
    fn = np.zeros(_LAYERS, np.float64)
    q = vn / math.exp(-0.5 * dn * dn)
    kn[0] = int((dn / q) * m1)
    kn[1] = 0
    wn[0] = q / m1
    wn[_LAYERS - 1] = dn / m1
    fn[0] = 1.0
    fn[_LAYERS - 1] = math.exp(-0.5 * dn * dn)
    for i in range(_LAYERS - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(vn / dn + math.exp(-0.5 * dn * dn)))
        kn[i + 1] = int((dn / tn) * m1)
        tn = dn
        fn[i] = math.exp(-0.5 * dn * dn)
        wn[i] = dn / m1
    return kn, wn, fn


_KN, _WN, _FN = _ziggurat_tables()
# The same ziggurat on 24-bit values (sign + 23 bits) for the half-word draws of fill_normals32.
_KN24 = _KN >> 8
_WN24 = (_WN * 256.0).astype(np.float32)
_HALF = np.uint64(0xFFFFFFFF)
_S8 = np.uint64(8)
_OFFSET24 = 1 << 23


@njit(cache=True)
def mix(z: np.uint64) -> np.uint64:
    """SplitMix64 finaliser: a bijective scramble of a 64-bit word."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True)
def stream(key: np.uint64, index: np.uint64) -> np.uint64:
    """Initial state of the independent stream number ``index`` under ``key``."""
    return mix(key ^ mix((index + np.uint64(1)) * _GOLDEN))


@njit(cache=True)
def next_u64(s: np.uint64) -> tuple[np.uint64, np.uint64]:
    """Advance state ``s``; return (new state, 64 random bits).

    States are passed by value, never in arrays, so that kernels keep them in registers
    (and numba inserts no reference counting around the rare slow path of the ziggurat).
    """
    s = np.uint64(s) + _GOLDEN  # coerce: a state that crossed into Python may come back as int64
    return s, mix(s)


@njit(cache=True)
def next_uniform(s: np.uint64) -> tuple[np.uint64, float]:
    """Advance ``s``; return (new state, uniform deviate in [0, 1) with 53 random bits)."""
    s, r = next_u64(s)
    return s, float(r >> _S11) * _TO_UNIT


@njit(cache=True)
def _normal_tail(s: np.uint64, hz: int, iz: int) -> tuple[np.uint64, float]:
    """Slow path of the ziggurat (about 1.3 % of the draws): the wedges and the tail."""
    while True:
        x = hz * _WN[iz]
        if iz == 0:
            while True:
                s, u1 = next_uniform(s)
                s, u2 = next_uniform(s)
                xt = -math.log(1.0 - u1) / _ZIG_R
                yt = -math.log(1.0 - u2)
                if yt + yt >= xt * xt:
                    break
            return s, (_ZIG_R + xt if hz > 0 else -_ZIG_R - xt)
        s, u = next_uniform(s)
        if _FN[iz] + u * (_FN[iz - 1] - _FN[iz]) < math.exp(-0.5 * x * x):
            return s, x
        s, r = next_u64(s)
        iz = int(r & _MASK8)
        hz = np.int64(r >> _S32) - 2147483648
        if abs(hz) < _KN[iz]:
            return s, hz * _WN[iz]


@njit(cache=True)
def next_normal(s: np.uint64) -> tuple[np.uint64, float]:
    """Advance ``s``; return (new state, standard normal deviate)."""
    s, r = next_u64(s)
    iz = int(r & _MASK8)
    hz = np.int64(r >> _S32) - 2147483648
    if abs(hz) < _KN[iz]:
        return s, hz * _WN[iz]
    return _normal_tail(s, hz, iz)


@njit(cache=True)
def fill_normals(s: np.uint64, out: np.ndarray, n: int, scratch: np.ndarray) -> np.uint64:
    """Fill ``out[:n]`` with standard normal deviates from stream ``s``; return the new state.

    The same ziggurat as :func:`next_normal`, run in two passes over the block: first the
    fast path for every slot at once (branch-free, so it vectorises; the stream is a counter,
    so slot t uses draw t), then the rare slots outside the rectangles finish the algorithm
    exactly with fresh draws. ``scratch`` (uint64, >= n) keeps the first-pass words.
    """
    for t in range(n):
        r = mix(s + np.uint64(t + 1) * _GOLDEN)
        scratch[t] = r
        iz = int(r & _MASK8)
        hz = np.int64(r >> _S32) - 2147483648
        out[t] = hz * _WN[iz]
    s = s + np.uint64(n) * _GOLDEN
    for t in range(n):
        r = scratch[t]
        iz = int(r & _MASK8)
        hz = np.int64(r >> _S32) - 2147483648
        if abs(hz) >= _KN[iz]:
            s, out[t] = _normal_tail(s, hz, iz)
    return s


@njit(cache=True)
def fill_normals32(s: np.uint64, out: np.ndarray, n: int, scratch: np.ndarray) -> np.uint64:
    """Fill ``out[:n]`` (float32) with standard normal deviates, two per 64-bit draw.

    The ziggurat of :func:`fill_normals` with 23-bit resolution, ample for float32: each
    half-word gives a layer index (8 bits) and a signed 24-bit value, the low halves filling
    ``out[:m]`` and the high halves ``out[m:2m]`` (m = ceil(n / 2)) so both stores stay
    contiguous and the pass vectorises. The rare draws outside the rectangles finish exactly
    as in :func:`next_normal`. ``out`` and ``scratch`` (uint64) need room for 2m and m values.
    """
    m = (n + 1) // 2
    for t in range(m):
        r = mix(s + np.uint64(t + 1) * _GOLDEN)
        scratch[t] = r
        lo = r & _HALF
        hi = r >> _S32
        out[t] = np.float32(np.int64(lo >> _S8) - _OFFSET24) * _WN24[int(lo & _MASK8)]
        out[m + t] = np.float32(np.int64(hi >> _S8) - _OFFSET24) * _WN24[int(hi & _MASK8)]
    s = s + np.uint64(m) * _GOLDEN
    for t in range(m):
        r = scratch[t]
        for half in range(2):
            word = (r >> _S32) if half == 1 else (r & _HALF)
            iz = int(word & _MASK8)
            hz = np.int64(word >> _S8) - _OFFSET24
            if abs(hz) >= _KN24[iz]:
                s, value = _normal_tail(s, hz << 8, iz)
                out[t + half * m] = value
    return s


def seed_key(*words: int) -> np.uint64:
    """A 64-bit key from integers (seed, purpose, ...), for deriving streams in Python."""
    z = np.uint64(0x6A09E667F3BCC909)
    with np.errstate(over="ignore"):
        for w in words:
            z = np.uint64(_mix_py(int(z) ^ (int(w) & 0xFFFFFFFFFFFFFFFF)))
    return z


def _mix_py(z: int) -> int:
    """Pure-Python SplitMix64 step (used only to derive keys)."""
    mask = 0xFFFFFFFFFFFFFFFF
    z = (z + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)
