"""Counter-based random numbers for the numba kernels.

Every random draw in aimcsim comes from a SplitMix64 stream whose state is a plain
``uint64`` owned by the caller (a tile keeps its states in small arrays). A stream is
derived from a key with :func:`stream`, so parallel kernels give each crossbar row its own
stream keyed by (call counter, row): results are bit-identical whatever the thread count.

Normal deviates use the Marsaglia-Tsang ziggurat with the layer index and the value taken
from disjoint bits: one SplitMix64 step per float64 draw (:func:`next_normal`, 256 layers),
half a step per float32 draw (:func:`fill_normals32`, 1024 layers). That matters because a
pulsed update draws one cycle-to-cycle noise sample per coincidence, and every analog read
one output-noise sample per output.
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


def _ziggurat_tables(layers: int, r: float, v: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tables kn, wn, fn of a ziggurat with ``layers`` layers for the standard normal.

    Marsaglia and Tsang's construction: ``r`` is where the tail starts and ``v`` the area of
    each layer (both fixed by ``layers``). kn and wn are scaled for 32-bit signed values
    (2**31). More layers send fewer draws to the slow path: 256 layers about 1.5 %, 1024
    layers about 0.4 %; the slow path (an exp, a fresh uniform) is where a draw's time goes.
    """
    m1 = 2147483648.0
    dn = r
    tn = dn
    kn = np.zeros(layers, np.int64)
    wn = np.zeros(layers, np.float64)
    fn = np.zeros(layers, np.float64)
    q = v / math.exp(-0.5 * dn * dn)
    kn[0] = int((dn / q) * m1)
    kn[1] = 0
    wn[0] = q / m1
    wn[layers - 1] = dn / m1
    fn[0] = 1.0
    fn[layers - 1] = math.exp(-0.5 * dn * dn)
    for i in range(layers - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(v / dn + math.exp(-0.5 * dn * dn)))
        kn[i + 1] = int((dn / tn) * m1)
        tn = dn
        fn[i] = math.exp(-0.5 * dn * dn)
        wn[i] = dn / m1
    return kn, wn, fn


# 256 layers for the 64-bit draws (8-bit layer index, 32-bit value).
_ZIG_R = 3.6541528853610088  # start of the tail
_KN, _WN, _FN = _ziggurat_tables(256, _ZIG_R, 4.92867323399e-3)
# 1024 layers for the 32-bit half-word draws of fill_normals32: a 10-bit layer index and a
# signed 22-bit value (21 bits of resolution, ample for float32 noise). r and v solve the
# construction for 1024 layers (the top layer's area equals v).
_ZIG_R10 = 4.038849846109505
_KN10, _WN10, _FN10 = _ziggurat_tables(1024, _ZIG_R10, 0.0012263246463530852)
_KN22 = (_KN10 >> 10).astype(np.int32)
_WN22 = (_WN10 * 1024.0).astype(np.float32)
_HALF = np.uint64(0xFFFFFFFF)
_S10 = np.uint64(10)
_MASK10 = np.uint64(1023)
_OFFSET22 = 1 << 21


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
def _normal_tail(s: np.uint64, hz: int, iz: int, kn: np.ndarray, wn: np.ndarray, fn: np.ndarray,
                 r: float) -> tuple[np.uint64, float]:
    """Slow path of a ziggurat (tables kn, wn, fn; tail from r): the wedges and the tail.

    ``hz`` is the rejected value scaled to 32 bits and ``iz`` its layer; a retry draws a
    fresh 64-bit word (layer from its low bits, value from its high 32 bits).
    """
    mask = np.uint64(kn.shape[0] - 1)
    while True:
        x = hz * wn[iz]
        if iz == 0:
            while True:
                s, u1 = next_uniform(s)
                s, u2 = next_uniform(s)
                xt = -math.log(1.0 - u1) / r
                yt = -math.log(1.0 - u2)
                if yt + yt >= xt * xt:
                    break
            return s, (r + xt if hz > 0 else -r - xt)
        s, u = next_uniform(s)
        if fn[iz] + u * (fn[iz - 1] - fn[iz]) < math.exp(-0.5 * x * x):
            return s, x
        s, w = next_u64(s)
        iz = int(w & mask)
        hz = np.int64(w >> _S32) - 2147483648
        if abs(hz) < kn[iz]:
            return s, hz * wn[iz]


@njit(cache=True)
def next_normal(s: np.uint64) -> tuple[np.uint64, float]:
    """Advance ``s``; return (new state, standard normal deviate)."""
    s, r = next_u64(s)
    iz = int(r & _MASK8)
    hz = np.int64(r >> _S32) - 2147483648
    if abs(hz) < _KN[iz]:
        return s, hz * _WN[iz]
    return _normal_tail(s, hz, iz, _KN, _WN, _FN, _ZIG_R)


@njit(cache=True)
def normals32_scratch(n: int) -> int:
    """Length of the uint64 ``scratch`` that :func:`fill_normals32` needs for ``n`` draws."""
    m = (n + 1) // 2
    return m + (m + 7) // 8


@njit(cache=True)
def fill_normals32(s: np.uint64, out: np.ndarray, n: int, scratch: np.ndarray) -> np.uint64:
    """Fill ``out[:n]`` (float32) with standard normal deviates, two per 64-bit draw.

    Each 32-bit half-word is one draw of a 1024-layer ziggurat: a layer index (10 bits) and a
    signed 22-bit value; the low halves fill ``out[:m]`` and the high halves ``out[m:2m]``
    (m = ceil(n / 2)), so both stores stay contiguous and the first pass vectorises. That
    pass also marks (one byte per word, after the words in ``scratch``) the words with a
    half outside its rectangle, about 0.9 % of them; the second pass reads the marks eight
    at a time and finishes only the marked halves, exactly, on the slow path. ``out`` needs
    room for 2m values and ``scratch`` (uint64) for :func:`normals32_scratch` (n).
    """
    m = (n + 1) // 2
    words = scratch[:m]
    packed = scratch[m:m + (m + 7) // 8]
    packed[-1:] = 0  # the marks past m in the last group stay zero
    marks = packed.view(np.uint8)
    for t in range(m):
        r = mix(s + np.uint64(t + 1) * _GOLDEN)
        words[t] = r
        lo = r & _HALF
        hi = r >> _S32
        i_lo = int(lo & _MASK10)
        i_hi = int(hi & _MASK10)
        v_lo = np.int32(np.int64(lo >> _S10) - _OFFSET22)
        v_hi = np.int32(np.int64(hi >> _S10) - _OFFSET22)
        out[t] = np.float32(v_lo) * _WN22[i_lo]
        out[m + t] = np.float32(v_hi) * _WN22[i_hi]
        marks[t] = np.uint8((abs(v_lo) >= _KN22[i_lo]) | (abs(v_hi) >= _KN22[i_hi]))
    s = s + np.uint64(m) * _GOLDEN
    for k in range(packed.shape[0]):
        if packed[k] == np.uint64(0):
            continue
        for t in range(8 * k, min(8 * k + 8, m)):
            if marks[t] == 0:
                continue
            r = words[t]
            for half in range(2):
                word = (r >> _S32) if half == 1 else (r & _HALF)
                iz = int(word & _MASK10)
                hz = np.int64(word >> _S10) - _OFFSET22
                if abs(hz) >= _KN22[iz]:
                    s, value = _normal_tail(s, hz << 10, iz, _KN10, _WN10, _FN10, _ZIG_R10)
                    out[t + half * m] = value
    return s


def seed_key(*words: int) -> np.uint64:
    """A 64-bit key from integers (seed, purpose, ...), for deriving streams in Python."""
    z = np.uint64(0x6A09E667F3BCC909)
    with np.errstate(over="ignore"):
        for w in words:
            z = np.uint64(_mix_py(int(z) ^ (int(w) & 0xFFFFFFFFFFFFFFFF)))
    return z


def call_key(key: np.uint64, counter: int) -> np.uint64:
    """The key of call number ``counter`` under ``key``: :func:`mix` (key ^ counter), computed in
    Python (a tile derives one per update; a numba call would cost more than the arithmetic)."""
    mask = 0xFFFFFFFFFFFFFFFF
    z = (int(key) ^ int(counter)) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return np.uint64(z ^ (z >> 31))


def _mix_py(z: int) -> int:
    """Pure-Python SplitMix64 step (used only to derive keys)."""
    mask = 0xFFFFFFFFFFFFFFFF
    z = (z + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)
