"""Numba kernels: the analog read with its IO chain and the four update realisations.

Kernels are pure functions on arrays. Random streams come in as uint64 keys or states and
go out as new states, so every draw is reproducible from the owning tile's seed; crossbar
rows processed in parallel each get their own stream, so results do not depend on the
number of threads. Weights are float32 (the precision of aihwkit's CPU simulator).

Read (forward y = W x, backward z = W^T d, ``analog_read`` with ``transposed``):
    noise management (scale the input by max|x|), DAC (quantise to ``inp_res``, clip at
    ``inp_bound``, optional input noise), the array (a matrix-vector product), additive
    output noise ``out_noise``, ADC (quantise to ``out_res``, clip at ``out_bound``), and
    iterative bound management (halve the input and read again while any output saturates),
    in float32 as aihwkit. Returns the bound-management passes, which the cost model
    charges. Crossbars of at least ``PARALLEL_MIN_SIZE`` cross-points read on every thread,
    their rows in ``ROW_BLOCKS`` fixed blocks.

Update (W <- W - lr d x^T in expectation, rows of a batch applied one after the other):
    ``pulsed_update``    stochastic pulse trains of length BL (or deterministic pulse counts)
                         with aihwkit's update and update-BL management; one device pulse,
                         with one cycle-to-cycle noise draw, per coincidence.
    ``expected_update``  W <- W + dW * q(W) / dw_min with q the device's noise-free step in
                         the direction of dW (= W + dW F(W) - |dW| G(W)).
    ``float_update``     exact floating point.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from .devices import (CONSTANT_STEP, G_MULT_NOISE, G_STD, LINEAR_STEP, P_SCALE_DOWN, P_SCALE_UP,
                      P_SHAPE_DOWN, P_SHAPE_UP, P_WMAX, P_WMIN, SOFT_BOUNDS, direction_params, linear_pulse,
                      linear_slope, pulse, step_size)
from .rng import fill_normals32, mix, next_normal, next_uniform, normals32_scratch, stream

# Layout of the IO parameter vector (``params.IOParameters.as_array``).
(IO_INP_BOUND, IO_INP_RES, IO_INP_NOISE, IO_OUT_BOUND, IO_OUT_RES, IO_OUT_NOISE, IO_OUT_SCALE,
 IO_NM, IO_NM_THRES, IO_BM, IO_MAX_BM_FACTOR, IO_MAX_BM_RES, IO_BM_NEG) = range(13)

NONFINITE = -1  # status returned when an input holds NaN or inf
# Crossbars with fewer cross-points run single-threaded kernels. Measured in a 4-stage
# pipeline of one tile per stage (benchmarks/bench_pipeline.py's plain loop, one and two
# threads alternating): two threads cost 30-65 % more time at 200-300 wide, break even at
# 362 and save 30 % at 512. Below that, waking the second core and moving a tile's rows
# between the cores' caches costs more than the second core saves.
PARALLEL_MIN_SIZE = 131072
# Parallel kernels split a crossbar's rows into this many fixed blocks (the last ones may be
# short), whatever the number of threads: every block is computed the same way and block
# results combine in block order, so results are bit-identical for any thread count, and up
# to ROW_BLOCKS cores share the work.
ROW_BLOCKS = 16
# Slots of a pulse train held in one word; longer trains (aihwkit allows any desired_bl) take
# several words per element and a path of their own (:func:`_fire_long_vector`).
MASK_SLOTS = 64
# An update call of many vectors on a small crossbar (a convolution's patches) plans this many
# vectors at a time on all threads before firing them: bounded memory, and each pass long
# enough that starting the threads costs little.
PLAN_CHUNK = 256


_ABS_BITS = np.uint32(0x7FFFFFFF)
_INF_BITS = np.uint32(0x7F800000)


@njit(cache=True)
def _abs_max_bits(x: np.ndarray) -> np.uint32:
    """max |x| of a float32 vector as its bit pattern (monotonic in |x| for finite values).

    An integer max vectorises where a float max with NaN semantics does not; a result of at
    least ``_INF_BITS`` means x holds NaN or inf.
    """
    m = np.uint32(0)
    for v in x.view(np.uint32):
        m = max(m, v & _ABS_BITS)
    return m


@njit(cache=True)
def _noise_scale(x: np.ndarray, kind: int, thres: float, abs_max: float) -> float:
    """Input scale of noise management: 1 for none, else max|x|, max x or a constant."""
    if kind == 0:
        return 1.0
    if kind == 3:
        return thres if thres > 0.0 else 1.0
    s = abs_max
    if kind == 2:
        s = -np.inf
        for v in x:
            if v > s:
                s = v
    return min(s, thres) if thres > 0.0 else s


@njit(cache=True, inline="always")
def _to_grid(v: np.float32, res: np.float32, inv_res: np.float32) -> np.float32:
    """Nearest multiple of ``res`` (half away from zero, as aihwkit); branch-free, so loops
    calling it vectorise."""
    return math.copysign(math.floor(abs(v) * inv_res + np.float32(0.5)) * res, v)


@njit(cache=True)
def _dac(x: np.ndarray, scale: np.float32, res: np.float32, inv_res: np.float32, bound: np.float32,
         noise_std: np.float32, noise: np.ndarray, out: np.ndarray) -> None:
    """out = clip(quantise(x * scale), +-bound) + noise_std * noise; res <= 0: no quantisation.

    Branch-free, so it vectorises.
    """
    if res > 0.0:
        for j in range(x.shape[0]):
            out[j] = min(max(_to_grid(x[j] * scale, res, inv_res), -bound), bound)
    else:
        for j in range(x.shape[0]):
            out[j] = min(max(x[j] * scale, -bound), bound)
    if noise_std > 0.0:
        for j in range(x.shape[0]):
            out[j] += noise_std * noise[j]


@njit(cache=True)
def _adc(y: np.ndarray, noise_std: np.float32, noise: np.ndarray, res: np.float32, inv_res: np.float32,
         bound: np.float32) -> tuple[int, int]:
    """y = clip(quantise(y + noise_std * noise), +-bound) in place; returns the outputs beyond
    +bound and below -bound (before clipping), which drive bound management."""
    above = 0
    below = 0
    for i in range(y.shape[0]):
        v = y[i] + noise_std * noise[i]
        if res > 0.0:
            v = _to_grid(v, res, inv_res)
        above += 1 if v > bound else 0
        below += 1 if v < -bound else 0
        y[i] = min(max(v, -bound), bound)
    return above, below


@njit(fastmath=True, cache=True)
def _rows_forward(weights: np.ndarray, x: np.ndarray, y: np.ndarray, lo: int, hi: int) -> None:
    """y[i] = W[i] . x for rows lo..hi-1, four rows at a time (W read once, in order)."""
    m = weights.shape[1]
    i = lo
    while i + 4 <= hi:
        s0 = np.float32(0.0)
        s1 = np.float32(0.0)
        s2 = np.float32(0.0)
        s3 = np.float32(0.0)
        for j in range(m):
            xj = x[j]
            s0 += weights[i, j] * xj
            s1 += weights[i + 1, j] * xj
            s2 += weights[i + 2, j] * xj
            s3 += weights[i + 3, j] * xj
        y[i] = s0
        y[i + 1] = s1
        y[i + 2] = s2
        y[i + 3] = s3
        i += 4
    while i < hi:
        s = np.float32(0.0)
        for j in range(m):
            s += weights[i, j] * x[j]
        y[i] = s
        i += 1


@njit(cache=True)
def _block_bounds(n: int, block: int) -> tuple[int, int]:
    """Rows of block ``block`` of ``ROW_BLOCKS`` equal blocks of n rows."""
    per_block = (n + ROW_BLOCKS - 1) // ROW_BLOCKS
    return min(n, block * per_block), min(n, (block + 1) * per_block)


@njit(fastmath=True, parallel=True, cache=True)
def matvec(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """y = W x, the rows in ``ROW_BLOCKS`` fixed blocks shared by the threads."""
    n = weights.shape[0]
    for c in prange(ROW_BLOCKS):
        lo, hi = _block_bounds(n, c)
        _rows_forward(weights, x, y, lo, hi)


@njit(fastmath=True, cache=True)
def _rows_transposed(weights: np.ndarray, d: np.ndarray, lo: int, hi: int, acc: np.ndarray) -> None:
    """acc = sum over rows i in lo..hi-1 of d_i W_i, eight rows at a time (rows read in order)."""
    m = weights.shape[1]
    acc[:] = 0.0
    i = lo
    while i + 8 <= hi:
        d0, d1, d2, d3 = d[i], d[i + 1], d[i + 2], d[i + 3]
        d4, d5, d6, d7 = d[i + 4], d[i + 5], d[i + 6], d[i + 7]
        r0, r1, r2, r3 = weights[i], weights[i + 1], weights[i + 2], weights[i + 3]
        r4, r5, r6, r7 = weights[i + 4], weights[i + 5], weights[i + 6], weights[i + 7]
        for j in range(m):
            acc[j] += ((d0 * r0[j] + d1 * r1[j]) + (d2 * r2[j] + d3 * r3[j])) + (
                (d4 * r4[j] + d5 * r5[j]) + (d6 * r6[j] + d7 * r7[j]))
        i += 8
    while i < hi:
        di = d[i]
        r0 = weights[i]
        for j in range(m):
            acc[j] += di * r0[j]
        i += 1


@njit(parallel=True, cache=True)
def matvec_transposed(weights: np.ndarray, d: np.ndarray, z: np.ndarray) -> None:
    """z = W^T d: each of ``ROW_BLOCKS`` fixed row blocks sums its rows, then the blocks add in order.

    The blocks are the rows each thread also reads in ``matvec`` and fires in an update, so
    W stays in the caches of the core that last touched it (splitting by columns instead made
    every read after an update fetch half of W from the other core). The block sums add in a
    fixed order, so the result does not depend on the number of threads.
    """
    n, m = weights.shape
    partial = np.empty((ROW_BLOCKS, m), dtype=np.float32)
    for c in prange(ROW_BLOCKS):
        lo, hi = _block_bounds(n, c)
        _rows_transposed(weights, d, lo, hi, partial[c])
    for j in range(m):
        total = partial[0, j]
        for c in range(1, ROW_BLOCKS):
            total += partial[c, j]
        z[j] = total


@njit(cache=True)
def analog_read(weights: np.ndarray, inputs: np.ndarray, transposed: bool, io: np.ndarray,
                rng_state: np.ndarray, outputs: np.ndarray) -> int:
    """Read every row of ``inputs`` through W (or W^T when ``transposed``) into ``outputs``.

    ``outputs`` is (n, out) float32, written in full; ``rng_state`` a one-element uint64
    array, advanced in place. Returns the total bound-management passes, or ``NONFINITE`` if
    an input holds NaN or inf (nothing is read then). The caller allocates the outputs
    because returning a new array from a kernel costs more than the IO chain of a read. The
    IO arithmetic is float32, as aihwkit's.
    """
    n_vec, n_in = inputs.shape
    n_out = weights.shape[1] if transposed else weights.shape[0]
    abs_max = np.empty(n_vec, dtype=np.float32)
    bits = np.empty(1, dtype=np.uint32)
    for b in range(n_vec):
        bits[0] = _abs_max_bits(inputs[b])
        if bits[0] >= _INF_BITS:
            return NONFINITE
        abs_max[b] = bits.view(np.float32)[0]
    state = rng_state[0]
    buffer = np.empty(n_in, dtype=np.float32)
    y = np.empty(n_out, dtype=np.float32)
    longest = max(n_out, n_in)
    noise = np.zeros(longest + 1, dtype=np.float32)  # fill_normals32 writes an even count
    scratch = np.empty(normals32_scratch(longest), dtype=np.uint64)
    f32 = np.float32
    inp_bound, inp_res, inp_noise = f32(io[IO_INP_BOUND]), f32(io[IO_INP_RES]), f32(io[IO_INP_NOISE])
    inv_inp_res = f32(1.0 / io[IO_INP_RES]) if io[IO_INP_RES] > 0.0 else f32(0.0)
    out_bound, out_res, out_noise = f32(io[IO_OUT_BOUND]), f32(io[IO_OUT_RES]), f32(io[IO_OUT_NOISE])
    inv_out_res = f32(1.0 / io[IO_OUT_RES]) if io[IO_OUT_RES] > 0.0 else f32(0.0)
    nm = int(io[IO_NM])
    bm = io[IO_BM] > 0.0
    negative_fails = io[IO_BM_NEG] > 0.0
    threaded = weights.size >= PARALLEL_MIN_SIZE
    passes = 0
    for b in range(n_vec):
        x = inputs[b]
        nm_scale = _noise_scale(x, nm, io[IO_NM_THRES], float(abs_max[b]))
        if nm != 0 and nm_scale <= 0.0 and inp_noise <= 0.0:
            passes += 1  # an all-zero input reads zeros
            outputs[b, :] = 0.0
            continue
        reduction = 0.5
        while True:
            reduction *= 2.0
            scale = 1.0 / reduction
            if nm != 0 and nm_scale > 0.0:
                scale /= nm_scale
            if inp_noise > 0.0:
                state = fill_normals32(state, noise, n_in, scratch)
            _dac(x, f32(scale), inp_res, inv_inp_res, inp_bound, inp_noise, noise, buffer)
            if not threaded:  # small crossbars: a thread launch would cost more than the read
                y[:] = np.dot(buffer, weights) if transposed else np.dot(weights, buffer)
            elif transposed:
                matvec_transposed(weights, buffer, y)
            else:
                matvec(weights, buffer, y)
            if out_noise > 0.0:
                state = fill_normals32(state, noise, n_out, scratch)
            above, below = _adc(y, out_noise, noise, out_res, inv_out_res, out_bound)
            passes += 1
            saturated = above > 0 or (negative_fails and below > 0)
            if not bm or not saturated or reduction > io[IO_MAX_BM_FACTOR] or (
                    io[IO_INP_RES] > 0.0 and reduction > io[IO_MAX_BM_RES] / io[IO_INP_RES]):
                break
        factor = f32(io[IO_OUT_SCALE] / scale)
        for i in range(n_out):
            outputs[b, i] = y[i] * factor
    rng_state[0] = state
    return passes


@njit(cache=True)
def one_pass_read(weights: np.ndarray, x: np.ndarray, transposed: bool, io: np.ndarray, rng_state: np.ndarray,
                  out: np.ndarray) -> int:
    """:func:`analog_read` of one vector through IO without noise or bound management (a
    compound's transfer read: one pass, the same arithmetic and draws) on a crossbar below
    ``PARALLEL_MIN_SIZE``, for other compiled functions (see :func:`small_pulsed_update`).
    Returns 1, or ``NONFINITE`` if ``x`` holds NaN or inf."""
    n_in = x.shape[0]
    n_out = out.shape[0]
    if _abs_max_bits(x) >= _INF_BITS:
        return NONFINITE
    f32 = np.float32
    longest = max(n_out, n_in)
    noise = np.zeros(longest + 1, dtype=np.float32)
    scratch = np.empty(normals32_scratch(longest), dtype=np.uint64)
    buffer = np.empty(n_in, dtype=np.float32)
    inp_res, inp_noise, out_noise = f32(io[IO_INP_RES]), f32(io[IO_INP_NOISE]), f32(io[IO_OUT_NOISE])
    inv_inp_res = f32(1.0 / io[IO_INP_RES]) if io[IO_INP_RES] > 0.0 else f32(0.0)
    out_res = f32(io[IO_OUT_RES])
    inv_out_res = f32(1.0 / io[IO_OUT_RES]) if io[IO_OUT_RES] > 0.0 else f32(0.0)
    state = rng_state[0]
    if inp_noise > 0.0:
        state = fill_normals32(state, noise, n_in, scratch)
    _dac(x, f32(1.0), inp_res, inv_inp_res, f32(io[IO_INP_BOUND]), inp_noise, noise, buffer)
    y = np.dot(buffer, weights) if transposed else np.dot(weights, buffer)
    if out_noise > 0.0:
        state = fill_normals32(state, noise, n_out, scratch)
    _adc(y, out_noise, noise, out_res, inv_out_res, f32(io[IO_OUT_BOUND]))
    factor = f32(io[IO_OUT_SCALE])  # analog_read's out_scale / scale, with scale 1 (no management)
    for i in range(n_out):
        out[i] = y[i] * factor
    rng_state[0] = state
    return 1


@njit(cache=True)
def all_finite(a: np.ndarray) -> bool:
    """True if no element of ``a`` is NaN or inf."""
    for v in a.ravel():
        if not np.isfinite(v):
            return False
    return True


@njit(cache=True)
def _popcount(v: np.uint64) -> int:
    """Number of set bits (LLVM turns this idiom into one popcnt instruction)."""
    v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((v * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True)
def update_management(lr: float, x_amax: float, d_amax: float, dw_min: float, desired_bl: int,
                      fixed_bl: bool, bl_management: bool, management: bool, grad_scale: float):
    """Pulse-train length BL and probability scales (A for d, B for x), as aihwkit computes them."""
    if lr <= 0.0:
        return 0, 0.0, 0.0
    if fixed_bl or bl_management:
        bl = desired_bl
        a = math.sqrt(lr / (dw_min * bl))
        b = a
    elif dw_min * desired_bl < lr:
        a = 1.0
        b = 1.0
        bl = max(int(math.ceil(lr / dw_min)), 1)
    else:
        bl = desired_bl
        a = math.sqrt(lr / (dw_min * bl))
        b = a
    if management or bl_management:
        if x_amax == 0.0 or d_amax == 0.0:
            return 0, 1.0, 1.0
        x_val = x_amax
        d_val = grad_scale * d_amax
        k_val = lr * x_val * d_val / dw_min
        if bl_management:
            bl = min(int(math.ceil(k_val)), desired_bl)
            a = math.sqrt(lr / (dw_min * bl))
            b = a
        if k_val > desired_bl:
            d_val *= desired_bl / k_val
        a *= math.sqrt(x_val / d_val)
        b *= math.sqrt(d_val / x_val)
    return bl, a, b


@njit(cache=True)
def _abs_max(v: np.ndarray) -> float:
    m = 0.0
    for e in v:
        if abs(e) > m:
            m = abs(e)
    return m


@njit(cache=True)
def _stochastic_trains(values: np.ndarray, prob_scale: float, bl: int, state: np.uint64,
                       masks: np.ndarray) -> np.uint64:
    """Bit masks of Bernoulli pulse trains: slot t of element j fires with p = min(|v_j| s, 1)."""
    for j in range(values.shape[0]):
        p = min(abs(values[j]) * prob_scale, 1.0)
        m = np.uint64(0)
        if p > 0.0:
            for t in range(bl):
                state, u = next_uniform(state)
                if u < p:
                    m |= np.uint64(1) << np.uint64(t)
        masks[j] = m
    return state


@njit(cache=True)
def _counting_sort(keys: np.ndarray, n_keys: int, order: np.ndarray) -> None:
    """order = the stable argsort of ``keys`` (all below ``n_keys``), in O(len + n_keys)."""
    first = np.zeros(n_keys + 1, dtype=np.int64)
    for k in keys:
        first[int(k) + 1] += 1
    for v in range(n_keys):
        first[v + 1] += first[v]
    for j in range(keys.shape[0]):
        v = int(keys[j])
        order[first[v]] = j
        first[v] += 1


@njit(cache=True)
def _group_columns(x: np.ndarray, masks: np.ndarray, bl: int, order: np.ndarray, starts: np.ndarray,
                   group_mask: np.ndarray, group_up_if_d_pos: np.ndarray) -> int:
    """Group the columns that fire by (pulse-train mask, sign of x); returns the group count.

    Columns of group g are ``order[starts[g]:starts[g + 1]]``. Every column of a group sees
    the same coincidence count and direction on a given row, so the per-row work is one
    popcount per group and the inner loop runs without unpredictable branches. Columns are
    sorted stably by key; short trains (keys < 2**13) use a counting sort.
    """
    n = x.shape[0]
    keys = np.empty(n, dtype=np.uint64)
    for j in range(n):
        keys[j] = (masks[j] << np.uint64(1)) | np.uint64(1 if x[j] < 0.0 else 0)
    if bl <= 12:
        _counting_sort(keys, 1 << (bl + 1), order)
    else:
        order[:] = np.argsort(keys, kind="mergesort")
    groups = 0
    k = 0
    while k < n:
        first = order[k]
        if masks[first] == np.uint64(0):
            k += 1
            continue
        starts[groups] = k
        group_mask[groups] = masks[first]
        group_up_if_d_pos[groups] = x[first] < 0.0  # dW = -lr d x > 0 when the signs differ
        end = k
        while end < n and keys[order[end]] == keys[first]:
            end += 1
        groups += 1
        starts[groups] = end
        k = end
    return groups


@njit(cache=True, inline="always")
def _fire_linear(w_row, wmax_row, wmin_row, scale_row, shape_row, order, k0, k1, n, up, model,
                 std, mult, noise, q):
    """Fire ``n`` pulses on columns order[k0:k1] of one row for the linear family.

    Covers constant step, linear step (stored slope) and soft bounds (slope from each device's
    own bound) through the device module's :func:`~aimcsim.devices.linear_pulse`. The rows'
    planes come in as 1-D slices and indices are unsigned, so the loop has no model dispatch
    and no negative-index fix-ups: that keeps a pulse at a few nanoseconds. Float32
    arithmetic, as aihwkit's CPU simulator.
    """
    zero = np.float32(0.0)
    for k in range(np.uint64(k0), np.uint64(k1)):
        j = np.uint64(order[k])
        w = w_row[j]
        wmax = wmax_row[j]
        wmin = wmin_row[j]
        scale = scale_row[j]
        slope = linear_slope(model, up, wmax, wmin, scale, shape_row[j] if model == LINEAR_STEP else zero)
        for _ in range(n):
            w = linear_pulse(w, up, slope, scale, std, mult, noise[q], wmin, wmax)
            q += np.uint64(1)
        w_row[j] = w
    return q


@njit(cache=True, inline="always")
def _fire_generic(weights, block, order, k0, k1, i, n, up, model, shared, noise, q):
    """Fire ``n`` pulses on columns order[k0:k1] of row i for any model (exp, pow, piecewise)."""
    for k in range(k0, k1):
        j = order[k]
        w = weights[i, j]
        wmax = block[P_WMAX, i, j]
        wmin = block[P_WMIN, i, j]
        scale, shape = direction_params(block, model, i, j, up)
        for _ in range(n):
            w = pulse(model, w, up, wmax, wmin, scale, shape, shared, noise[q])
            q += np.uint64(1)
        weights[i, j] = w
    return q


@njit(cache=True)
def _new_plan(n_out: int, n_in: int):
    """Work arrays of one update call: pulse trains or counts, and the column groups."""
    return (np.zeros(n_in, dtype=np.uint64), np.zeros(n_out, dtype=np.uint64),  # x, d masks
            np.zeros(n_in, dtype=np.float64), np.zeros(n_out, dtype=np.float64),  # x, d probabilities
            np.empty(n_in, dtype=np.int64), np.empty(n_in + 1, dtype=np.int64),  # order, starts
            np.empty(n_in, dtype=np.uint64), np.empty(n_in, dtype=np.bool_))  # group mask, up


@njit(cache=True)
def _plan_vector(x: np.ndarray, d: np.ndarray, bl: int, a_scale: float, b_scale: float,
                 deterministic: bool, sub_key: np.uint64, plan) -> int:
    """Draw the pulse trains of one (x, d) pair (or its pulse counts) and group the columns.

    Returns the number of column groups; columns of group g are order[starts[g]:starts[g+1]].
    """
    x_masks, d_masks, x_prob, d_prob, order, starts, group_mask, group_up = plan
    n_out = d.shape[0]
    if not deterministic:
        _stochastic_trains(x, b_scale, bl, stream(sub_key, np.uint64(n_out)), x_masks)
        _stochastic_trains(d, a_scale, bl, stream(sub_key, np.uint64(n_out + 1)), d_masks)
        return _group_columns(x, x_masks, bl, order, starts, group_mask, group_up)
    groups = 0  # one group per firing column; the count is computed per (i, j)
    starts[0] = 0
    for j in range(x.shape[0]):
        x_prob[j] = min(abs(x[j]) * b_scale, 1.0)
        if x_prob[j] > 0.0:
            order[groups] = j
            group_up[groups] = x[j] < 0.0
            groups += 1
            starts[groups] = groups
    for i in range(n_out):
        d_prob[i] = min(abs(d[i]) * a_scale, 1.0) * bl
    return groups


# Divisions are guarded, so no Python zero-division checks; "contract" lets a multiply and an
# add fuse into one FMA (deterministic: the same code runs on every thread).
@njit(cache=True)
def _new_work(n_in: int, bl: int, noisy: bool):
    """Work arrays of the firing of rows (one set per thread): the pulse count of each column
    group and room for a row's cycle-to-cycle noise (zeros without noise) at trains of up to
    ``bl`` slots, and the write-noise draws of a row's touched devices."""
    room = n_in * bl + 1  # fill_normals32 writes an even count
    return (np.empty(max(n_in, 1), dtype=np.int64),
            np.empty(room, dtype=np.float32) if noisy else np.zeros(room, dtype=np.float32),
            np.empty(normals32_scratch(n_in * bl) if noisy else 0, dtype=np.uint64),
            np.zeros(n_in + 1, dtype=np.float32), np.empty(normals32_scratch(n_in), dtype=np.uint64))


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _fire_rows(lo: int, hi: int, weights: np.ndarray, device, d: np.ndarray, bl: int, groups: int,
               deterministic: bool, sub_key: np.uint64, plan, work) -> int:
    """Fire the coincidences of rows lo..hi-1 of one planned vector; returns how many fired.

    Row i draws its cycle-to-cycle noise from its own stream (sub_key, i), so the result does
    not depend on how rows are split between threads. ``work`` is :func:`_new_work`'s, for
    trains of at least ``bl`` slots.
    """
    block, model, shared = device
    x_masks, d_masks, x_prob, d_prob, order, starts, group_mask, group_up = plan
    counts, noise, scratch = work[0], work[1], work[2]
    noisy = shared[G_STD] > 0.0
    std = np.float32(shared[G_STD])
    mult = shared[G_MULT_NOISE] > 0.0 or model == CONSTANT_STEP
    linear_family = model == SOFT_BOUNDS or model == LINEAR_STEP or model == CONSTANT_STEP
    fired = 0
    for i in range(lo, hi):
        if deterministic:
            if d_prob[i] == 0.0:
                continue
        elif d_masks[i] == np.uint64(0):
            continue
        total = 0
        for g in range(groups):
            if deterministic:
                counts[g] = int(math.floor(d_prob[i] * x_prob[order[starts[g]]] + 0.5))
            else:
                counts[g] = _popcount(d_masks[i] & group_mask[g])
            total += counts[g] * (starts[g + 1] - starts[g])
        if noisy:  # one cycle-to-cycle draw per coincidence
            fill_normals32(stream(sub_key, np.uint64(i)), noise, total, scratch)
        d_positive = d[i] > 0.0
        q = np.uint64(0)
        w_row = weights[i]
        for g in range(groups):
            n = counts[g]
            if n == 0:
                continue
            up = group_up[g] == d_positive
            if linear_family:
                q = _fire_linear(w_row, block[P_WMAX, i], block[P_WMIN, i],
                                 block[P_SCALE_UP if up else P_SCALE_DOWN, i],
                                 block[P_SHAPE_UP if up else P_SHAPE_DOWN, i], order, starts[g],
                                 starts[g + 1], n, up, model, std, mult, noise, q)
            else:
                q = _fire_generic(weights, block, order, starts[g], starts[g + 1], i, n, up,
                                  model, shared, noise, q)
        fired += total
    return fired


@njit(cache=True)
def _refresh_touched(lo, hi, weights, apparent, reference, write_noise, groups, deterministic, sub_key, plan,
                     work) -> None:
    """Apparent weights of the devices one planned vector fired on in rows lo..hi-1: w - r
    (+ write_noise xi), row i drawing from its own stream (sub_key, n_out + 2 + i), as
    aihwkit's update_once of the models with write noise. A pass of its own after the firing,
    so the firing loop is compiled exactly as without apparent weights."""
    x_masks, d_masks, x_prob, d_prob, order, starts, group_mask, group_up = plan
    counts, written, scratch = work[0], work[3], work[4]
    n_out = weights.shape[0]
    for i in range(lo, hi):
        touched = 0
        for g in range(groups):  # the pulse counts _fire_rows fired (computed as it does)
            if deterministic:
                counts[g] = int(math.floor(d_prob[i] * x_prob[order[starts[g]]] + 0.5))
            else:
                counts[g] = _popcount(d_masks[i] & group_mask[g])
            if counts[g] > 0:
                touched += starts[g + 1] - starts[g]
        if touched == 0:
            continue
        if write_noise > 0.0:
            fill_normals32(stream(sub_key, np.uint64(n_out + 2 + i)), written, touched, scratch)
        p = 0
        for g in range(groups):
            if counts[g] == 0:
                continue
            for k in range(starts[g], starts[g + 1]):
                j = order[k]
                v = weights[i, j]
                if reference.shape[0] > 0:
                    v -= reference[i, j]
                if write_noise > 0.0:
                    v += np.float32(write_noise) * written[p]
                    p += 1
                apparent[i, j] = v


@njit(cache=True)
def refresh_apparent(weights: np.ndarray, apparent: np.ndarray, reference: np.ndarray, write_noise: float,
                     key: np.uint64) -> None:
    """Every device's apparent weight w - r + write_noise xi (aihwkit's applyUpdateWriteNoise, after
    decay, diffusion or programming), row i drawing from its own stream (key, i)."""
    n_out, n_in = weights.shape
    noise = np.zeros(n_in + 1, dtype=np.float32)
    scratch = np.empty(normals32_scratch(n_in), dtype=np.uint64)
    for i in range(n_out):
        if write_noise > 0.0:
            fill_normals32(stream(key, np.uint64(i)), noise, n_in, scratch)
        for j in range(n_in):
            v = weights[i, j]
            if reference.shape[0] > 0:
                v -= reference[i, j]
            if write_noise > 0.0:
                v += np.float32(write_noise) * noise[j]
            apparent[i, j] = v


@njit(parallel=True, cache=True)
def _fire_rows_threaded(weights: np.ndarray, device, d: np.ndarray, bl: int, groups: int,
                        deterministic: bool, sub_key: np.uint64, plan) -> int:
    """:func:`_fire_rows` over all rows, in ``ROW_BLOCKS`` fixed blocks shared by the threads
    (each row draws from its own stream, so the split never changes a result)."""
    n_out, n_in = weights.shape
    noisy = device[2][G_STD] > 0.0
    fired = 0
    for c in prange(ROW_BLOCKS):
        lo, hi = _block_bounds(n_out, c)
        fired += _fire_rows(lo, hi, weights, device, d, bl, groups, deterministic, sub_key, plan,
                            _new_work(n_in, bl, noisy))
    return fired


@njit(cache=True)
def _stochastic_long_trains(values: np.ndarray, prob_scale: float, bl: int, state: np.uint64,
                            masks: np.ndarray) -> np.uint64:
    """:func:`_stochastic_trains` for trains longer than one word: slot t of element j is bit
    t % 64 of word t // 64 of ``masks[j]`` (as many words as the train needs)."""
    for j in range(values.shape[0]):
        p = min(abs(values[j]) * prob_scale, 1.0)
        for w in range(masks.shape[1]):
            masks[j, w] = np.uint64(0)
        if p > 0.0:
            for t in range(bl):
                state, u = next_uniform(state)
                masks[j, t >> 6] |= np.uint64(u < p) << np.uint64(t & 63)
    return state


@njit(cache=True)
def _long_counts(d_row: np.ndarray, x_masks: np.ndarray, firing: np.ndarray, n_firing: int,
                 counts: np.ndarray) -> int:
    """Coincidences of one row's multi-word train with every firing column's; returns their sum."""
    total = 0
    for k in range(n_firing):
        x_row = x_masks[firing[k]]
        c = 0
        for w in range(d_row.shape[0]):
            c += _popcount(d_row[w] & x_row[w])
        counts[k] = c
        total += c
    return total


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _fire_long_vector(weights, device, x, d, bl, a_scale, b_scale, sub_key, apparent, reference, write_noise,
                      viewed) -> int:
    """One stochastic (x, d) pair whose trains are longer than 64 slots: multi-word trains, and
    each firing column fires its own coincidence count (no grouping). Row i draws its
    cycle-to-cycle noise from (sub_key, i) and its write noise from (sub_key, n_out + 2 + i),
    as the short path does; returns the pulses fired. Its per-row firing mirrors
    :func:`_fire_rows` (a device family added there goes here too): a shared inlined helper
    measured 4-5 % slower on the short path's conv updates, so the twin stays."""
    block, model, shared = device
    n_out, n_in = weights.shape
    words = (bl + 63) // 64
    x_masks = np.empty((n_in, words), dtype=np.uint64)
    d_masks = np.empty((n_out, words), dtype=np.uint64)
    _stochastic_long_trains(x, b_scale, bl, stream(sub_key, np.uint64(n_out)), x_masks)
    _stochastic_long_trains(d, a_scale, bl, stream(sub_key, np.uint64(n_out + 1)), d_masks)
    firing = np.empty(n_in, dtype=np.int64)
    up_if_d_pos = np.empty(n_in, dtype=np.bool_)
    n_firing = 0
    for j in range(n_in):
        fires = False
        for w in range(words):
            fires = fires or x_masks[j, w] != np.uint64(0)
        if fires:
            firing[n_firing] = j
            up_if_d_pos[n_firing] = x[j] < 0.0  # dW = -lr d x > 0 when the signs differ
            n_firing += 1
    counts = np.empty(max(n_firing, 1), dtype=np.int64)
    noisy = shared[G_STD] > 0.0
    std = np.float32(shared[G_STD])
    mult = shared[G_MULT_NOISE] > 0.0 or model == CONSTANT_STEP
    linear_family = model == SOFT_BOUNDS or model == LINEAR_STEP or model == CONSTANT_STEP
    room = n_in * bl + 1  # fill_normals32 writes an even count
    noise = np.empty(room, dtype=np.float32) if noisy else np.zeros(room, dtype=np.float32)
    scratch = np.empty(normals32_scratch(n_in * bl) if noisy else 0, dtype=np.uint64)
    written = np.zeros(n_in + 1, dtype=np.float32)
    written_scratch = np.empty(normals32_scratch(n_in), dtype=np.uint64)
    fired = 0
    for i in range(n_out):
        total = _long_counts(d_masks[i], x_masks, firing, n_firing, counts)
        if total == 0:
            continue
        if noisy:
            fill_normals32(stream(sub_key, np.uint64(i)), noise, total, scratch)
        d_positive = d[i] > 0.0
        q = np.uint64(0)
        w_row = weights[i]
        for k in range(n_firing):
            n = counts[k]
            if n == 0:
                continue
            up = up_if_d_pos[k] == d_positive
            if linear_family:
                q = _fire_linear(w_row, block[P_WMAX, i], block[P_WMIN, i],
                                 block[P_SCALE_UP if up else P_SCALE_DOWN, i],
                                 block[P_SHAPE_UP if up else P_SHAPE_DOWN, i], firing, k, k + 1, n, up, model,
                                 std, mult, noise, q)
            else:
                q = _fire_generic(weights, block, firing, k, k + 1, i, n, up, model, shared, noise, q)
        fired += total
        if viewed:  # the apparent weights of the devices this row fired on
            touched = 0
            for k in range(n_firing):
                if counts[k] > 0:
                    touched += 1
            if write_noise > 0.0:
                fill_normals32(stream(sub_key, np.uint64(n_out + 2 + i)), written, touched, written_scratch)
            p = 0
            for k in range(n_firing):
                if counts[k] == 0:
                    continue
                j = firing[k]
                v = weights[i, j]
                if reference.shape[0] > 0:
                    v -= reference[i, j]
                if write_noise > 0.0:
                    v += np.float32(write_noise) * written[p]
                    p += 1
                apparent[i, j] = v
    return fired


def update_threads(n_vec: int, cross_points: int) -> int:
    """The ``threads`` argument of :func:`pulsed_update`: numba's thread count where the call
    plans its vectors on all threads (many vectors on a small crossbar), else 1 (asking numba
    costs about a microsecond, which a small per-sample update notices)."""
    if n_vec > 1 and cross_points < PARALLEL_MIN_SIZE <= n_vec * cross_points:
        return numba.get_num_threads()
    return 1


@njit(cache=True)
def _vector_management(xs: np.ndarray, ds: np.ndarray, lr: float, dw_min: float, desired_bl: int, fixed_bl: bool,
                       bl_management: bool, management: bool, grad_scale: float):
    """Each vector's train length BL and probability scales A (for d) and B (for x)."""
    n_vec = xs.shape[0]
    bls = np.empty(n_vec, dtype=np.int64)
    scales = np.empty((n_vec, 2), dtype=np.float64)
    for b in range(n_vec):
        bls[b], scales[b, 0], scales[b, 1] = update_management(
            lr, _abs_max(xs[b]), _abs_max(ds[b]), dw_min, desired_bl, fixed_bl, bl_management, management,
            grad_scale)
    return bls, scales


@njit(cache=True)
def _train_totals(bls: np.ndarray) -> tuple[int, int]:
    """(pulse slots summed over the vectors that fire, the longest train) of an update's BLs."""
    slots = 0
    longest = 0
    for bl in bls:
        if bl > 0:
            slots += bl
            longest = max(longest, bl)
    return slots, longest


@njit(cache=True)
def _new_plans(n_vec: int, n_out: int, n_in: int):
    """The plans of ``n_vec`` vectors at once (row b of each array is vector b's)."""
    return (np.zeros((n_vec, n_in), dtype=np.uint64), np.zeros((n_vec, n_out), dtype=np.uint64),
            np.zeros((n_vec, 0), dtype=np.float64), np.zeros((n_vec, 0), dtype=np.float64),
            np.empty((n_vec, n_in), dtype=np.int64), np.empty((n_vec, n_in + 1), dtype=np.int64),
            np.empty((n_vec, n_in), dtype=np.uint64), np.empty((n_vec, n_in), dtype=np.bool_))


@njit(cache=True, inline="always")
def _plan_of(plans, b: int):
    """Vector b's plan, as views into :func:`_new_plans`'s arrays."""
    return (plans[0][b], plans[1][b], plans[2][b], plans[3][b], plans[4][b], plans[5][b], plans[6][b],
            plans[7][b])


@njit(parallel=True, cache=True)
def _fire_vectors_threaded(weights, device, xs, ds, first, bls, scales, key, apparent, reference, write_noise,
                           viewed, plans, groups, threads) -> int:
    """Vectors first .. first + len(groups) - 1 of a call on all threads, in two passes: each
    vector's trains are drawn and grouped on its own (from its own streams), then each row
    block fires its rows for every vector in order. A row's devices see the vectors in order
    and draw from the streams of (vector, row), so the result equals the sequential loop's
    however the rows are split: one block per thread (``threads``), because fixed small blocks
    would repeat each vector's per-block setup, which costs more than firing a few rows."""
    n_out, n_in = weights.shape
    n = groups.shape[0]
    for v in prange(n):
        b = first + v
        if bls[b] > 0:
            groups[v] = _plan_vector(xs[b], ds[b], bls[b], scales[b, 0], scales[b, 1], False,
                                     stream(key, np.uint64(b)), _plan_of(plans, v))
    noisy = device[2][G_STD] > 0.0
    longest = max(1, np.max(bls[first:first + n]))
    blocks = max(1, min(threads, n_out))  # rows are independent: any split gives the same result
    per_block = (n_out + blocks - 1) // blocks
    fired = np.zeros(blocks, dtype=np.int64)
    for c in prange(blocks):
        lo, hi = c * per_block, min(n_out, (c + 1) * per_block)
        if lo >= hi:
            continue
        work = _new_work(n_in, longest, noisy)
        for v in range(n):
            b = first + v
            if bls[b] <= 0:
                continue
            sub_key = stream(key, np.uint64(b))
            plan = _plan_of(plans, v)
            fired[c] += _fire_rows(lo, hi, weights, device, ds[b], bls[b], groups[v], False, sub_key, plan, work)
            if viewed:
                _refresh_touched(lo, hi, weights, apparent, reference, write_noise, groups[v], False, sub_key, plan,
                                 work)
    return int(fired.sum())


@njit(cache=True)
def pulsed_update(weights: np.ndarray, block: np.ndarray, model: int, shared: np.ndarray,
                  xs: np.ndarray, ds: np.ndarray, lr: float, dw_min: float, desired_bl: int,
                  fixed_bl: bool, bl_management: bool, management: bool, grad_scale: float,
                  deterministic: bool, key: np.uint64, apparent: np.ndarray, reference: np.ndarray,
                  write_noise: float, viewed: bool, threads: int = 1):
    """Apply rows of (xs, ds) as sequential pulsed rank-one updates, in place.

    Stochastic: x_j and d_i become Bernoulli pulse trains of BL slots with probabilities
    B|x_j| and A|d_i| (update management); cross-point (i, j) fires once per slot where both
    trains pulse. Trains of up to 64 slots are one word per element and columns with equal
    trains fire as a group; longer ones take as many words as they need. Deterministic
    implicit: it fires round(BL * A|d_i| * B|x_j|) times.
    Crossbars of at least ``PARALLEL_MIN_SIZE`` cross-points fire their rows on all threads.
    With ``threads`` > 1 (:func:`update_threads`: many vectors on a smaller crossbar, as a
    convolution's patches) the call plans ``PLAN_CHUNK`` vectors at a time on all threads and
    fires them in ``threads`` row blocks; the result is the same for any ``threads``.
    ``weights`` are the device states; with ``viewed`` the touched devices' ``apparent`` weights
    (what reads see: w - reference + write noise) are refreshed too (an empty ``reference``: none).
    Returns (pulse slots summed over vectors, largest BL, coincidences = device pulses fired).
    """
    n_out, n_in = weights.shape
    n_vec = xs.shape[0]
    device = (block, model, shared)
    bls, scales = _vector_management(xs, ds, lr, dw_min, desired_bl, fixed_bl, bl_management, management,
                                     grad_scale)
    slots, max_bl = _train_totals(bls)
    if max_bl == 0:
        return slots, max_bl, 0
    fired = 0
    if not deterministic and max_bl <= MASK_SLOTS and threads > 1:
        chunk = min(n_vec, PLAN_CHUNK)
        plans = _new_plans(chunk, n_out, n_in)
        groups = np.zeros(chunk, dtype=np.int64)
        for first in range(0, n_vec, chunk):
            n = min(chunk, n_vec - first)
            fired += _fire_vectors_threaded(weights, device, xs, ds, first, bls, scales, key, apparent, reference,
                                            write_noise, viewed, plans, groups[:n], threads)
        return slots, max_bl, fired
    if weights.size < PARALLEL_MIN_SIZE:
        return slots, max_bl, _fire_in_order(weights, device, xs, ds, bls, scales, max_bl, deterministic, key,
                                             apparent, reference, write_noise, viewed)
    plan = _new_plan(n_out, n_in)
    work = _new_work(n_in, max_bl if deterministic else min(max_bl, MASK_SLOTS), shared[G_STD] > 0.0)
    # _fire_in_order's loop with each vector's rows on all threads (kept apart: _fire_in_order must
    # reach no parallel function, see small_pulsed_update)
    for b in range(n_vec):
        bl = bls[b]
        if bl <= 0:
            continue
        x = xs[b]
        d = ds[b]
        sub_key = stream(key, np.uint64(b))
        if bl > MASK_SLOTS and not deterministic:  # trains longer than one word
            fired += _fire_long_vector(weights, device, x, d, bl, scales[b, 0], scales[b, 1], sub_key, apparent,
                                       reference, write_noise, viewed)
            continue
        groups = _plan_vector(x, d, bl, scales[b, 0], scales[b, 1], deterministic, sub_key, plan)
        fired += _fire_rows_threaded(weights, device, d, bl, groups, deterministic, sub_key, plan)
        if viewed:
            _refresh_touched(0, n_out, weights, apparent, reference, write_noise, groups, deterministic, sub_key,
                             plan, work)
    return slots, max_bl, fired


@njit(cache=True)
def _fire_in_order(weights, device, xs, ds, bls, scales, max_bl, deterministic, key, apparent, reference,
                   write_noise, viewed) -> int:
    """The vectors of :func:`pulsed_update`, one after the other on one thread (BL and
    scales already managed); returns the device pulses fired."""
    n_out, n_in = weights.shape
    plan = _new_plan(n_out, n_in)
    work = _new_work(n_in, max_bl if deterministic else min(max_bl, MASK_SLOTS), device[2][G_STD] > 0.0)
    fired = 0
    for b in range(xs.shape[0]):
        bl = bls[b]
        if bl <= 0:
            continue
        x = xs[b]
        d = ds[b]
        sub_key = stream(key, np.uint64(b))
        if bl > MASK_SLOTS and not deterministic:  # trains longer than one word
            fired += _fire_long_vector(weights, device, x, d, bl, scales[b, 0], scales[b, 1], sub_key, apparent,
                                       reference, write_noise, viewed)
            continue
        groups = _plan_vector(x, d, bl, scales[b, 0], scales[b, 1], deterministic, sub_key, plan)
        fired += _fire_rows(0, n_out, weights, device, d, bl, groups, deterministic, sub_key, plan, work)
        if viewed:
            _refresh_touched(0, n_out, weights, apparent, reference, write_noise, groups, deterministic, sub_key,
                             plan, work)
    return fired


@njit(cache=True)
def small_pulsed_update(weights: np.ndarray, block: np.ndarray, model: int, shared: np.ndarray,
                        xs: np.ndarray, ds: np.ndarray, lr: float, dw_min: float, desired_bl: int,
                        fixed_bl: bool, bl_management: bool, management: bool, grad_scale: float,
                        deterministic: bool, key: np.uint64, apparent: np.ndarray, reference: np.ndarray,
                        write_noise: float, viewed: bool):
    """:func:`pulsed_update` of a crossbar below ``PARALLEL_MIN_SIZE`` with ``threads`` = 1
    (the same result), for other compiled functions: it calls no ``parallel`` function, as a
    cached function whose call graph holds one can crash when loaded from numba's cache
    (numba issues 8578 and 10128)."""
    bls, scales = _vector_management(xs, ds, lr, dw_min, desired_bl, fixed_bl, bl_management, management,
                                     grad_scale)
    slots, max_bl = _train_totals(bls)
    if max_bl == 0:
        return slots, max_bl, 0
    return slots, max_bl, _fire_in_order(weights, (block, model, shared), xs, ds, bls, scales, max_bl,
                                         deterministic, key, apparent, reference, write_noise, viewed)


@njit(parallel=True, cache=True)
def expected_update(weights: np.ndarray, block: np.ndarray, model: int, shared: np.ndarray,
                    xs: np.ndarray, ds: np.ndarray, lr: float, dw_min: float) -> None:
    """W <- clip(W + dW q(W)/dw_min) per row, dW = -lr d x^T, q the noise-free step toward dW."""
    n_out, n_in = weights.shape
    for b in range(xs.shape[0]):
        x = xs[b]
        d = ds[b]
        for i in prange(n_out):
            for j in range(n_in):
                dw = -lr * d[i] * x[j]
                if dw == 0.0:
                    continue
                w = weights[i, j]
                up = dw > 0.0
                wmax = block[P_WMAX, i, j]
                wmin = block[P_WMIN, i, j]
                scale, shape = direction_params(block, model, i, j, up)
                q = step_size(model, w, up, wmax, wmin, scale, shape, shared) / dw_min
                weights[i, j] = min(max(w + dw * q, wmin), wmax)


@njit(cache=True)
def decay_weights(weights: np.ndarray, factor: np.ndarray, bias: np.ndarray, block: np.ndarray) -> None:
    """w <- clip((w - b) * factor + b) per cross-point: a device's decay toward its reset bias."""
    n_out, n_in = weights.shape
    for i in range(n_out):
        for j in range(n_in):
            w = (weights[i, j] - bias[i, j]) * factor[i, j] + bias[i, j]
            weights[i, j] = min(max(w, block[P_WMIN, i, j]), block[P_WMAX, i, j])


@njit(cache=True)
def diffuse_weights(weights: np.ndarray, rate: np.ndarray, block: np.ndarray, key: np.uint64) -> None:
    """w <- clip(w + rate * xi) per cross-point, row i drawing from its own stream (key, i)."""
    n_out, n_in = weights.shape
    for i in range(n_out):
        state = stream(key, np.uint64(i))
        for j in range(n_in):
            state, xi = next_normal(state)
            w = weights[i, j] + rate[i, j] * np.float32(xi)
            weights[i, j] = min(max(w, block[P_WMIN, i, j]), block[P_WMAX, i, j])


@njit(cache=True)
def float_update(weights: np.ndarray, xs: np.ndarray, ds: np.ndarray, lr: float) -> None:
    """W <- W - lr d x^T in float32, rows one after the other (no bounds, no pulses)."""
    lr32 = np.float32(lr)
    n_out, n_in = weights.shape
    for b in range(xs.shape[0]):
        for i in range(n_out):
            di = ds[b, i]
            for j in range(n_in):
                weights[i, j] = weights[i, j] - lr32 * (di * xs[b, j])


__all__ = ["analog_read", "all_finite", "pulsed_update", "expected_update", "float_update", "decay_weights",
           "diffuse_weights", "refresh_apparent",
           "update_management", "NONFINITE", "mix"]
