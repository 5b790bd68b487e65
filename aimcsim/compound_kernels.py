"""numba kernels of the compound devices' digital side: transfer buffers and the mixed-precision chi.

A transfer of the TTv2 family reads one column of the fast array A and adds it into a
digital buffer row H; where H crosses its threshold the kernel turns it into whole pulse
counts for the slow array C and keeps the remainder (:func:`buffer_transfer`; AGAD's variant
with running means is :func:`agad_transfer`). Mixed precision accumulates the outer products
in a digital matrix chi (:func:`chi_accumulate`) and turns rows of it into pulse counts
(:func:`chi_to_pulses`). Arithmetic is float32, as aihwkit's CPU code; random draws come from
the caller's stream state. The analog reads and pulsed writes these feed are the tiles'
(:mod:`aimcsim.kernels`).

:func:`transfer_update` is a whole update call of a transfer compound in one compiled call:
A's pulses, the transfers between them (column reads, buffer steps, choppers, C's writes) and
the combined weights, in the order and from the streams that ``TransferTile``'s Python
orchestration uses, so that both give the same bits (the tile takes it when no option draws
from a numpy Generator it cannot replay); :func:`mixed_precision_update` likewise for mixed
precision.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .kernels import one_pass_read, small_pulsed_update
from .rng import mix, next_uniform


@njit(cache=True, inline="always")
def _clamped_trunc(v: np.float32, limit: np.float32) -> np.float32:
    return np.float32(min(max(np.float32(math.trunc(v)), -limit), limit))


@njit(cache=True)
def buffer_transfer(buffer_row: np.ndarray, read: np.ndarray, rate: float, signs: np.ndarray, threshold: float,
                    max_steps: int, momentum: float, forget: bool, keep_buffer: bool, steps: np.ndarray) -> int:
    """H += rate * signs * read (H from 0 if not ``keep_buffer``); where n = trunc(H / threshold),
    limited to +-max_steps, is nonzero: ``steps`` = -n (the write's d, so that C grows by n
    pulses) and H becomes momentum * H (``forget``) or H - (1 - momentum) n threshold.
    Returns how many entries fire (aihwkit's buffered and chopped transfers)."""
    f32 = np.float32
    rate32, thr, limit, mom = f32(rate), f32(threshold), f32(max_steps), f32(momentum)
    keep = f32(1.0) - mom
    fired = 0
    for j in range(read.shape[0]):
        omega = buffer_row[j] if keep_buffer else f32(0.0)
        omega += read[j] * rate32 * signs[j]
        n = _clamped_trunc(omega / thr, limit)
        if n != 0:
            if forget:
                omega *= mom
            else:
                omega -= keep * n * thr
            fired += 1
        buffer_row[j] = omega
        steps[j] = -n
    return fired


@njit(cache=True)
def agad_transfer(buffer_row: np.ndarray, mean_row: np.ndarray, past_row: np.ndarray, read: np.ndarray,
                  rate: float, signs: np.ndarray, switched: bool, sample_momentum: float, max_steps: int,
                  momentum: float, forget: bool, cap: float, steps: np.ndarray) -> int:
    """AGAD's buffer step (aihwkit ``DynamicTransferRPUDevice::readAndUpdate``): if the column's
    chopper switched since its last read, its past mean becomes the running mean; H += rate *
    signs * (read - past mean); where |H| >= 1, n = trunc(H) (+-max_steps) pulses, H keeps
    momentum * H or H - (1 - momentum) n (bounded by +-cap when cap > 0); then the running mean
    takes the raw read with weight ``sample_momentum``. Returns how many entries fire."""
    f32 = np.float32
    rate32, limit, mom, cap32, sm = f32(rate), f32(max_steps), f32(momentum), f32(cap), f32(sample_momentum)
    keep = f32(1.0) - mom
    fired = 0
    for j in range(read.shape[0]):
        val = read[j]
        omega = buffer_row[j]
        mu_past = past_row[j]
        if switched:
            mu_past = mean_row[j]
            past_row[j] = mu_past
        omega += (val - mu_past) * signs[j] * rate32
        n = f32(0.0)
        if abs(omega) >= f32(1.0):
            n = _clamped_trunc(omega, limit)
            if forget:
                omega *= mom
            else:
                omega -= keep * n
                if cap32 > 0:
                    omega = min(max(omega, -cap32), cap32)
            fired += 1
        buffer_row[j] = omega
        steps[j] = -n
        mean_row[j] = mean_row[j] * (f32(1.0) - sm) + val * sm
    return fired


@njit(cache=True, inline="always")
def _round_half_away(v: float) -> float:
    return math.copysign(math.floor(abs(v) + 0.5), v)


@njit(cache=True)
def _quantize(values: np.ndarray, bins: int, stochastic: bool, state: np.uint64, out: np.ndarray) -> np.uint64:
    """``values`` on ``bins`` levels symmetric about 0, scaled by their absolute maximum (aihwkit's
    dynamic quantisation; stochastic rounding adds U - 0.5 before rounding); 0 bins: unchanged."""
    if bins <= 0:
        out[:] = values
        return state
    half = np.float32(bins // 2)
    amax = np.float32(0.0)
    for v in values:
        amax = max(amax, abs(v))
    width = amax / half
    if width == 0:
        width = np.float32(1.0)
    for j in range(values.shape[0]):
        shift = 0.0
        if stochastic:
            state, u = next_uniform(state)
            shift = u - 0.5
        q = _round_half_away(values[j] / width + shift)
        out[j] = np.float32(min(max(q, -half), half)) * width
    return state


@njit(cache=True)
def chi_accumulate(chi: np.ndarray, xs: np.ndarray, ds: np.ndarray, lr: float, n_x_bins: int, n_d_bins: int,
                   stoc_x: bool, stoc_d: bool, rng_state: np.ndarray) -> None:
    """chi += lr d x^T for every row of (xs, ds), in order, x and d quantised first when their
    bins are set (mixed precision's digital outer product, float32)."""
    n_out, n_in = chi.shape
    qx = np.empty(n_in, np.float32)
    qd = np.empty(n_out, np.float32)
    state = rng_state[0]
    lr32 = np.float32(lr)
    for b in range(xs.shape[0]):
        state = _quantize(xs[b], n_x_bins, stoc_x, state, qx)
        state = _quantize(ds[b], n_d_bins, stoc_d, state, qd)
        for i in range(n_out):
            scaled = lr32 * qd[i]
            if scaled == 0:
                continue
            row = chi[i]
            for j in range(n_in):
                row[j] += scaled * qx[j]
    rng_state[0] = state


@njit(cache=True)
def chi_to_pulses(chi: np.ndarray, rows: np.ndarray, granularity: float, counts: np.ndarray) -> None:
    """For each chi row in ``rows``: counts[k] = trunc(chi[row] / eps), and chi[row] keeps
    chi - counts eps (what mixed precision writes and what it holds back)."""
    eps = np.float32(granularity)
    for k in range(rows.shape[0]):
        row = chi[rows[k]]
        for j in range(row.shape[0]):
            n = np.float32(math.trunc(row[j] / eps))
            counts[k, j] = n
            row[j] = row[j] - n * eps


# kinds of transfer compound (TransferTile._kind)
TIKI_TAKA, BUFFERED, CHOPPED, DYNAMIC = 0, 1, 2, 3
# TransferTile's counters, kept in one int64 array that the kernel advances
C_VECTORS, C_NEXT_READ, C_SWEEPS, C_FAST_CALLS, C_SLOW_CALLS, C_UNIFORM = range(6)
# an array's pulse settings (transfer_update's ``fast_pulses`` / ``slow_pulses``)
U_DW_MIN, U_DESIRED_BL, U_FIXED_BL, U_BL_MANAGEMENT, U_MANAGEMENT, U_GRAD_SCALE, U_DETERMINISTIC = range(7)
# the compound's settings (``options``)
(O_EVERY, O_N_READ, O_READS, O_COLUMNS, O_THRESHOLD, O_MAX_STEPS, O_MOMENTUM, O_FORGET, O_KEEP_BUFFER,
 O_CHOP_PROB, O_CHOP_RANDOM, O_PERIOD, O_SAMPLE_MOMENTUM, O_CAP, O_CORRECT_ACCUMULATION, O_G_FAST, O_GAMMA_FAST,
 O_GAMMA_SLOW, O_SKIP_COMBINE) = range(19)
N_OPTIONS = 19
# what the call reports (``stats``): A's pulses (op U), the transfers (op T), and flags
# (an array's write fills four in a row: vectors, slots, max BL, pulses; see _fire)
(S_U_VECTORS, S_U_SLOTS, S_U_MAX_BL, S_U_COINCIDENCES, S_T_VECTORS, S_T_SLOTS, S_T_MAX_BL, S_T_COINCIDENCES,
 S_T_EVENTS, S_T_PASSES, S_T_WRITES, S_CHANGED) = range(12)
N_STATS = 12


@njit(cache=True)
def _fire(state, block, model, shared, apparent, reference, write_noise, viewed, key, calls, pulses, xs, ds,
          lr, stats, first):
    """One pulsed update of an array (``AnalogTile.fire``): its call key from the array's call
    counter; the counts go to ``stats`` from index ``first`` (vectors, slots, max BL, pulses)."""
    slots, max_bl, fired = small_pulsed_update(
        state, block, model, shared, xs, ds, lr, pulses[U_DW_MIN], int(pulses[U_DESIRED_BL]),
        pulses[U_FIXED_BL] != 0, pulses[U_BL_MANAGEMENT] != 0, pulses[U_MANAGEMENT] != 0, pulses[U_GRAD_SCALE],
        pulses[U_DETERMINISTIC] != 0, mix(key ^ np.uint64(calls)), apparent, reference, write_noise, viewed)
    stats[first] += xs.shape[0]
    stats[first + 1] += slots
    stats[first + 2] = max(stats[first + 2], max_bl)
    stats[first + 3] += fired


@njit(cache=True)
def transfer_update(xs, ds, fast_rate, transfer_rate, buffer_rate, write_rate, kind, options, counters,
                    fast_state, fast_block, fast_model, fast_shared, fast_apparent, fast_reference, fast_noise,
                    fast_viewed, fast_key, fast_pulses,
                    slow_state, slow_block, slow_model, slow_shared, slow_apparent, slow_reference, slow_noise,
                    slow_viewed, slow_key, slow_pulses,
                    transfer_io, transfer_state, buffer, in_signs, out_signs, running_mean, past_mean, switched,
                    uniforms, weights, stats) -> None:
    """One update call of a transfer compound (``TransferTile.update`` without the options that
    draw from numpy Generators): rows (xs, ds) pulse A at ``fast_rate`` (through the choppers'
    signs), one ``pulsed_update`` per run of vectors between transfers; after every
    ``every``-th vector a transfer reads the next columns (rows) of A through ``transfer_io``
    (noise from ``transfer_state``), steps the buffers (``buffer_rate``: the buffer's rate;
    Tiki-Taka writes -read at ``transfer_rate``) and fires C at ``write_rate``. c-TTv2's random
    in-chopper flips take ``uniforms`` in order. Then W = gamma_A (signs) A + gamma_C C into
    ``weights``. ``counters`` advance in place; ``stats`` receive the reports' counts. One
    thread throughout (``small_pulsed_update``, ``one_pass_read``): the tile takes this call
    only for crossbars and vector counts that its Python orchestration would run on one thread
    too."""
    f32 = np.float32
    stats[:] = 0
    rows, n_in = xs.shape
    n_out = ds.shape[1]
    every = int(options[O_EVERY])
    n_read = int(options[O_N_READ])
    columns = options[O_COLUMNS] != 0
    n_len = n_out if columns else n_in  # length of one transfer read
    chopped = kind == CHOPPED or kind == DYNAMIC
    buffered = kind != TIKI_TAKA
    x_signs, d_signs = (in_signs, out_signs) if columns else (out_signs, in_signs)
    onehot = np.zeros(n_read, dtype=np.float32)
    line = np.empty(n_len, dtype=np.float32)
    steps = np.empty(n_len, dtype=np.float32)
    reads = int(options[O_READS])
    indices = np.empty(reads, dtype=np.int64)
    values = np.empty((reads, n_len), dtype=np.float32)
    period = int(options[O_PERIOD])
    start = 0
    while start < rows:
        vectors = counters[C_VECTORS]
        stop = rows if every <= 0 else min(rows, start + every - vectors % every)
        xs_run = xs[start:stop]
        ds_run = ds[start:stop]
        if chopped:
            xs_run = xs_run * x_signs
            ds_run = ds_run * d_signs
        _fire(fast_state, fast_block, fast_model, fast_shared, fast_apparent, fast_reference, fast_noise,
              fast_viewed, fast_key, counters[C_FAST_CALLS], fast_pulses, xs_run, ds_run, fast_rate, stats,
              S_U_VECTORS)
        counters[C_FAST_CALLS] += 1
        counters[C_VECTORS] = vectors + stop - start
        start = stop
        if every <= 0 or counters[C_VECTORS] % every != 0:
            continue
        first = counters[C_NEXT_READ]
        counters[C_NEXT_READ] = (first + reads) % n_read
        if transfer_rate == 0.0:
            continue
        stats[S_T_EVENTS] += 1
        written = 0
        for r in range(reads):
            index = (first + r) % n_read
            if index == 0 and r > 0 and written > 0:  # the wrap ends a block: its writes fire first
                _write(slow_state, slow_block, slow_model, slow_shared, slow_apparent, slow_reference, slow_noise,
                       slow_viewed, slow_key, counters, slow_pulses, indices[:written], values[:written],
                       n_read, columns, write_rate, stats)
                written = 0
            onehot[index] = 1.0
            stats[S_T_PASSES] += one_pass_read(fast_apparent, onehot, not columns, transfer_io, transfer_state,
                                               line)  # 1: a one-hot input is finite
            onehot[index] = 0.0
            fires = 1
            if kind == TIKI_TAKA:
                for j in range(n_len):
                    steps[j] = -line[j]
            elif kind == BUFFERED:
                fires = buffer_transfer(buffer[index], line, buffer_rate, out_signs, options[O_THRESHOLD],
                                        int(options[O_MAX_STEPS]), options[O_MOMENTUM], options[O_FORGET] != 0,
                                        True, steps)
            elif kind == CHOPPED:
                signs = out_signs * in_signs[index]
                fires = buffer_transfer(buffer[index], line, buffer_rate, signs, 1.0, int(options[O_MAX_STEPS]),
                                        options[O_MOMENTUM], options[O_FORGET] != 0, options[O_KEEP_BUFFER] != 0,
                                        steps)
                if options[O_CHOP_PROB] > 0:
                    if options[O_CHOP_RANDOM] != 0:
                        flip = uniforms[counters[C_UNIFORM]] < options[O_CHOP_PROB]
                        counters[C_UNIFORM] += 1
                    else:
                        flip = (counters[C_SWEEPS] % period) + 1 == period
                    if flip:
                        in_signs[index] = -in_signs[index]
                        if options[O_GAMMA_FAST] != 0.0:
                            stats[S_CHANGED] = 1
                if index == n_read - 1:
                    counters[C_SWEEPS] += 1
            else:  # DYNAMIC
                sample = counters[C_SWEEPS] % period + 1
                was_switched = switched[index]
                switched[index] = False
                scale = buffer_rate
                if options[O_CORRECT_ACCUMULATION] != 0:
                    scale /= min(float(sample), 1.0 / options[O_G_FAST])
                signs = out_signs * in_signs[index]
                fires = agad_transfer(buffer[index], running_mean[index], past_mean[index], line, scale, signs,
                                      was_switched, options[O_SAMPLE_MOMENTUM], int(options[O_MAX_STEPS]),
                                      options[O_MOMENTUM], options[O_FORGET] != 0, options[O_CAP], steps)
                if counters[C_SWEEPS] <= period:
                    fires = 0
                if sample == period:
                    in_signs[index] = -in_signs[index]
                    if options[O_GAMMA_FAST] != 0.0:
                        stats[S_CHANGED] = 1
                    switched[index] = True
                if index == n_read - 1:
                    counters[C_SWEEPS] += 1
            if fires:
                indices[written] = index
                values[written] = steps
                written += 1
        if buffered:
            stats[S_T_WRITES] += reads * n_len
        if written:
            _write(slow_state, slow_block, slow_model, slow_shared, slow_apparent, slow_reference, slow_noise,
                   slow_viewed, slow_key, counters, slow_pulses, indices[:written], values[:written], n_read,
                   columns, write_rate, stats)
    if options[O_SKIP_COMBINE] != 0:  # W is C itself, or the arrays' device steps come first
        return
    g_fast, g_slow = f32(options[O_GAMMA_FAST]), f32(options[O_GAMMA_SLOW])
    signed = chopped and options[O_GAMMA_FAST] != 0.0
    row_signs, col_signs = (out_signs, in_signs) if columns else (in_signs, out_signs)
    for i in range(weights.shape[0]):
        for j in range(weights.shape[1]):
            a = fast_apparent[i, j]
            if signed:
                a = a * row_signs[i] * col_signs[j]
            weights[i, j] = a * g_fast + slow_apparent[i, j] * g_slow


@njit(cache=True)
def _write(state, block, model, shared, apparent, reference, write_noise, viewed, key, counters, pulses, indices,
           values, n_read, columns, rate, stats) -> None:
    """C's write of one transfer block: one-hot vectors at ``indices`` against the rows of
    ``values`` (columns mode: C[:, i] moves by -rate v; rows mode: C[i, :])."""
    onehot = np.zeros((indices.shape[0], n_read), dtype=np.float32)
    for k in range(indices.shape[0]):
        onehot[k, indices[k]] = 1.0
    rows = np.ascontiguousarray(values)
    if columns:
        _fire(state, block, model, shared, apparent, reference, write_noise, viewed, key, counters[C_SLOW_CALLS],
              pulses, onehot, rows, rate, stats, S_T_VECTORS)
    else:
        _fire(state, block, model, shared, apparent, reference, write_noise, viewed, key, counters[C_SLOW_CALLS],
              pulses, rows, onehot, rate, stats, S_T_VECTORS)
    counters[C_SLOW_CALLS] += 1
    stats[S_CHANGED] = 1


# MixedPrecisionTile's counters (one int64 array that the kernel advances)
M_VECTORS, M_NEXT_ROW, M_CALLS = range(3)


@njit(cache=True)
def mixed_precision_update(xs, ds, lr, every, count, n_x_bins, n_d_bins, stoc_x, stoc_d, round_state, chi,
                           granularity, write_rate, counters, state, block, model, shared, apparent, reference,
                           write_noise, viewed, key, pulses, stats) -> None:
    """One update call of mixed precision (``MixedPrecisionTile.update`` without ``random_row``):
    chi += lr d x^T vector by vector; after the vector whose 0-based count is a positive
    multiple of ``every``, ``count`` rows of chi from the next one (wrapping) become whole
    pulses of ``granularity`` fired at ``write_rate`` on the array. ``stats`` receive the
    transfers' counts (vectors, slots, max BL, pulses, then the transfers and chi's row
    elements read); 0 in the first: none ran."""
    stats[:] = 0
    rows = xs.shape[0]
    n_out, n_in = chi.shape
    indices = np.empty(count, dtype=np.int64)
    counts = np.empty((count, n_in), dtype=np.float32)
    onehot = np.zeros((count, n_out), dtype=np.float32)
    start = 0
    while start < rows:
        vectors = counters[M_VECTORS]
        due = -(-max(vectors, 1) // every) * every
        stop = min(rows, start + due - vectors + 1)
        chi_accumulate(chi, xs[start:stop], ds[start:stop], lr, n_x_bins, n_d_bins, stoc_x, stoc_d, round_state)
        counters[M_VECTORS] = vectors + stop - start
        start = stop
        if counters[M_VECTORS] - 1 != due:
            continue
        first = counters[M_NEXT_ROW]
        for k in range(count):
            indices[k] = (first + k) % n_out
        counters[M_NEXT_ROW] = (first + count) % n_out
        chi_to_pulses(chi, indices, granularity, counts)
        stats[4] += 1
        stats[5] += count * n_in
        if write_rate == 0.0:
            continue
        for k in range(count):
            onehot[k, indices[k]] = 1.0
        _fire(state, block, model, shared, apparent, reference, write_noise, viewed, key, counters[M_CALLS], pulses,
              counts, onehot, write_rate, stats, 0)
        counters[M_CALLS] += 1
        for k in range(count):
            onehot[k, indices[k]] = 0.0
