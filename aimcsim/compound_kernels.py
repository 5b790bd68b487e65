"""numba kernels of the compound devices' digital side: transfer buffers and the mixed-precision chi.

A transfer of the TTv2 family reads one column of the fast array A and adds it into a
digital buffer row H; where H crosses its threshold the kernel turns it into whole pulse
counts for the slow array C and keeps the remainder (:func:`buffer_transfer`; AGAD's variant
with running means is :func:`agad_transfer`). Mixed precision accumulates the outer products
in a digital matrix chi (:func:`chi_accumulate`) and turns rows of it into pulse counts
(:func:`chi_to_pulses`). Arithmetic is float32, as aihwkit's CPU code; random draws come from
the caller's stream state. The analog reads and pulsed writes these feed are the tiles'
(:mod:`aimcsim.kernels`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .rng import next_uniform


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
