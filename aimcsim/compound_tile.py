"""Compound crossbars: two-array training algorithms behind the crossbar protocol.

:class:`TransferTile` holds a fast array A and a slow array C (two
:class:`~aimcsim.tile.AnalogTile`), and :class:`MixedPrecisionTile` one analog array and a
digital accumulator chi. Both are crossbars like any other: layers, split layers and
convolutions take them unchanged. Their ``update`` does what aihwkit's compound devices do
within one update call, vector by vector: pulse A (or accumulate chi), and every
``transfer_every`` vectors run a **transfer** (read columns of A, write onto C; or write rows
of chi onto the array). The update's hardware work is reported in ``last_report`` (op U), the
transfers' in ``last_transfer`` (op T, None when none ran), so the accelerator can time and
charge them as the separate hardware operations they are. Reads see W = gamma_A A + gamma_C C.

The semantics follow aihwkit's CPU code (``rpu_transfer_device.cpp``,
``rpu_buffered_transfer_device.cpp``, ``rpu_chopped_transfer_device.cpp``,
``rpu_dynamic_transfer_device.cpp``, ``rpu_mixedprec_device.cpp``); the field meanings are in
:mod:`aimcsim.compounds`. Every random draw (transfer-read noise, choppers, random selection,
resets, stochastic rounding) comes from the tile's own seeded streams.
"""

from __future__ import annotations

import math

import numpy as np

from . import compound_kernels as ck
from . import kernels
from .compounds import (BufferedTransferCompound, ChoppedTransferCompound, DynamicTransferCompound,
                        MixedPrecisionCompound, TransferCompound, parse_device)
from .devices import IdealDevice
from .errors import ConfigError, parse_model
from .ops import TRANSFER, UPDATE, OpReport, chain_reports
from .params import UpdateParameters
from .rng import seed_key, stream
from .tile import AnalogTile, ReadPath, check_tile_args, update_rows


def _setup(tile, out_size: object, in_size: object, device: object, update: object, seed: object,
           kind: type, what: str) -> None:
    """The checked tile arguments every compound tile keeps: sizes, seed, its device config (of
    class ``kind``) and the layer's update settings."""
    check_tile_args(out_size, in_size, seed)
    cfg = parse_device(device, "device")
    if not isinstance(cfg, kind):
        raise ConfigError(f"device.type: {type(tile).__name__} takes {what}, got {cfg.type!r}")
    tile.out_size, tile.in_size, tile.seed = int(out_size), int(in_size), int(seed)
    tile.device = cfg
    tile.update_params = parse_model(UpdateParameters, update, "update")


def _array_seed(seed: int, which: int) -> int:
    return int(seed_key(seed, 0xC0, which)) >> 1


def _granularity(device) -> float:
    """A unit device's pulse granularity (its dw_min; 0 for an ideal device)."""
    return 0.0 if isinstance(device, IdealDevice) else float(device.dw_min)


class TransferTile(ReadPath):
    """A weight held on two arrays, A (fast, pulsed by the SGD update) and C (slow, written by
    transfers), as aihwkit's transfer compounds: Tiki-Taka, TTv2, c-TTv2 and AGAD.

    ``device`` is a transfer compound config (:mod:`aimcsim.compounds`); ``update`` the layer's
    update settings (A's pulses); ``forward_io`` / ``backward_io`` the layer's reads of W.
    """

    def __init__(self, out_size: int, in_size: int, device: object = None, update: object = None,
                 forward_io: object = None, backward_io: object = None, seed: int = 0) -> None:
        _setup(self, out_size, in_size, device, update, seed, TransferCompound, "a transfer compound")
        cfg = self.device
        self._init_reads(forward_io, backward_io)
        fast, slow = cfg.unit_cell_devices
        self.fast = AnalogTile(out_size, in_size, device=fast, update=self.update_params,
                               forward_io={"perfect": True}, backward_io={"perfect": True}, seed=_array_seed(seed, 0))
        self.slow = AnalogTile(out_size, in_size, device=slow, update=cfg.transfer_update,
                               forward_io={"perfect": True}, backward_io={"perfect": True}, seed=_array_seed(seed, 1))
        self.gamma_fast, self.gamma_slow = cfg.weights_gamma
        self._buffered = isinstance(cfg, BufferedTransferCompound)
        self._chopped = isinstance(cfg, ChoppedTransferCompound)
        self._dynamic = isinstance(cfg, DynamicTransferCompound)
        # transfer geometry: one-hot reads of columns (forward) or rows (transposed)
        self._columns = cfg.transfer_columns
        self._n_read = self.in_size if self._columns else self.out_size   # one-hot vectors per sweep
        self._n_out = self.out_size if self._columns else self.in_size    # length of one read
        self._reads_per_transfer = min(cfg.n_reads_per_transfer, self._n_read)
        self._tio = cfg.transfer_forward.as_array()
        self._tio_perfect = cfg.transfer_forward.perfect
        # pulse granularities: A's pulse count uses the mean of both arrays' (aihwkit VectorRPUDevice)
        g_fast, g_slow = _granularity(fast), _granularity(slow)
        pulsed = [g for g in (g_fast, g_slow) if g > 0]
        self._update_granularity = sum(pulsed) / len(pulsed) if pulsed else 0.0
        self._g_fast, self._g_slow = g_fast, g_slow
        # the tile's own streams
        self._transfer_state = np.array([stream(seed_key(self.seed, 0xF5), np.uint64(0))], dtype=np.uint64)
        self._rng = np.random.default_rng([self.seed, 0xF6])
        # digital state of the buffered family, choppers, counters
        shape = (self._n_read, self._n_out)
        self.buffer = np.zeros(shape, np.float32) if self._buffered or self._chopped else None
        self._in_signs = np.ones(self._n_read, np.float32)
        self._out_signs = np.ones(self._n_out, np.float32)
        if self._dynamic:
            self._running_mean = np.zeros(shape, np.float32)
            self._past_mean = np.zeros(shape, np.float32)
            self._switched = np.zeros(self._n_read, bool)
        self._m_x = self._m_d = 0.0  # auto_scale's running maxima
        self._count_lr = 0.0  # A's pulse-count rate of the latest vector (c-TTv2's correct_gradient_magnitudes)
        self._steps = np.zeros(self._n_out, np.float32)
        self._read_onehot = np.zeros((1, self.in_size if self._columns else self.out_size), np.float32)
        self._fully_hidden = self.gamma_fast == 0.0 and self.gamma_slow == 1.0
        self._weights = self.slow._weights if self._fully_hidden else np.zeros((self.out_size, self.in_size), np.float32)
        self.update_changes_weights = self.gamma_fast != 0.0
        self.last_report: OpReport | None = None
        self.last_transfer: OpReport | None = None
        self.transfer_changed_weights = False
        self.set_weights(np.zeros((self.out_size, self.in_size), np.float32))  # also starts the counters
        self._kernel = self._kernel_arguments()

    # ---------------------------------------------------------------- weights
    def _reset_counters(self) -> None:
        self._vectors = 0       # vectors updated since the weights were set (aihwkit current_update_idx_)
        self._next_read = 0     # the next column (row) to transfer
        self._sweeps = 0        # full sweeps over the columns (aihwkit transfer_counter_)

    def get_weights(self) -> np.ndarray:
        """A copy of W = gamma_A A + gamma_C C, what the reads see."""
        return self._weights.copy()

    def set_weights(self, weights: object) -> None:
        """Program W: A is zeroed and C holds W / gamma_C (each clipped to its devices' bounds, as
        aihwkit's ``TransferRPUDevice::onSetWeights``); the transfer counters restart."""
        w = np.asarray(weights, dtype=np.float32)
        if w.shape != (self.out_size, self.in_size):
            raise ConfigError(f"weights: expected shape {(self.out_size, self.in_size)}, got {np.shape(weights)}")
        self.fast.set_weights(np.zeros_like(w))
        self.slow.set_weights(w / np.float32(self.gamma_slow))
        self._reset_counters()
        self._combine()

    def arrays(self) -> dict[str, np.ndarray]:
        """Copies of the hidden state: the fast array A, the slow array C and (TTv2 family) the
        buffer H (one row per transferred column), and (c-TTv2, AGAD) the choppers' signs: one
        per transferred column (``in_chopper``) and per entry of a read (``out_chopper``)."""
        out = {"A": self.fast.get_weights(), "C": self.slow.get_weights()}
        if self.buffer is not None:
            out["H"] = self.buffer.copy()
        if self._chopped:
            out["in_chopper"] = self._in_signs.copy()
            out["out_chopper"] = self._out_signs.copy()
        return out

    def _combine(self) -> None:
        """W from the arrays' apparent weights (and the choppers' signs on A)."""
        if self._fully_hidden:
            return
        a = self.fast._weights
        if self._chopped and self.gamma_fast != 0.0:
            rows, cols = (self._out_signs, self._in_signs) if self._columns else (self._in_signs, self._out_signs)
            a = a * rows[:, None] * cols[None, :]
        np.multiply(a, np.float32(self.gamma_fast), out=self._weights)
        self._weights += np.float32(self.gamma_slow) * self.slow._weights

    # ----------------------------------------------------------------- update
    def _transfer_every(self, rows: int) -> int:
        """Vectors between transfers (aihwkit ``getTransferEvery``)."""
        te = self.device.transfer_every
        if self.device.units_in_mbatch:
            return max(int(math.ceil(te * rows)), 0)
        return max(int(math.floor(te + 0.5)), 0)

    def _fast_lr(self, lr: float, x: np.ndarray | None = None, d: np.ndarray | None = None, rows: int = 1) -> float:
        """A's pulse-count learning rate (aihwkit ``getPulseCountLearningRate``); with c-TTv2's
        ``auto_scale`` the running maxima first take this vector's (x, d)."""
        cfg = self.device
        if self._chopped and cfg.auto_scale:
            self._m_x = self._running_max(self._m_x, float(np.max(np.abs(x))), rows)
            self._m_d = self._running_max(self._m_d, float(np.max(np.abs(d))), rows)
            if cfg.fast_lr > 0:
                rate = cfg.fast_lr * self.update_params.desired_bl * self._g_fast
                if self._m_x > 0 and self._m_d > 0:
                    rate /= self._m_x * self._m_d
                return rate * lr if cfg.scale_fast_lr else rate
        if cfg.fast_lr > 0:
            return cfg.fast_lr * lr if cfg.scale_fast_lr else cfg.fast_lr
        return lr

    def _running_max(self, m: float, value: float, rows: int) -> float:
        if m <= 0:
            return value
        if value <= 0:
            return m
        tau = (1.0 - self.device.auto_momentum) / rows
        return (1.0 - tau) * m + tau * value

    def update(self, x: object, d: object, lr: float) -> None:
        """SGD rows (x, d) pulsed onto A, vector by vector, with a transfer after every
        ``transfer_every``-th vector; then each array's once-per-update device step. One
        compiled call does it all where the options allow (:meth:`_kernel_arguments`); the
        Python orchestration below is the reference it reproduces bit for bit."""
        xs, ds = update_rows(x, d, lr, self.in_size, self.out_size)
        lr = float(lr)
        if self._kernel is not None and kernels.update_threads(max(len(xs), self._reads_per_transfer),
                                                               self._size) == 1:
            self._update_in_kernel(xs, ds, lr)
            return
        rows = xs.shape[0]
        every = self._transfer_every(rows)
        per_vector = self._chopped and self.device.auto_scale  # the rate changes with every vector
        fired: list[OpReport] = []
        transfers: list[OpReport] = []
        self.transfer_changed_weights = False
        start = 0
        while start < rows:
            stop = rows if every <= 0 else min(rows, start + every - self._vectors % every)
            step = 1 if per_vector else stop - start
            for lo in range(start, stop, step):
                hi = lo + step
                rate = self._fast_lr(lr, xs[lo], ds[lo], rows) if per_vector else self._fast_lr(lr)
                self._count_lr = rate
                self._fire_fast(xs[lo:hi], ds[lo:hi], rate)
                fired.append(self.fast.last_report)
            self._vectors += stop - start
            if every > 0 and self._vectors % every == 0:
                report = self._transfer(lr)
                if report is not None:
                    transfers.append(report)
            start = stop
        self.fast.device_step()
        self.slow.device_step()
        self._combine()
        self.last_report = chain_reports(UPDATE, fired) if fired else OpReport(UPDATE, 0)
        self.last_transfer = chain_reports(TRANSFER, transfers) if transfers else None

    def _kernel_arguments(self) -> tuple | None:
        """The fixed arguments of :func:`~aimcsim.compound_kernels.transfer_update`, or None
        where the Python orchestration must run: an option draws from the tile's numpy Generator
        in a way the kernel cannot replay (random selection, resets, random out-choppers,
        AGAD's random in-choppers), c-TTv2's ``auto_scale`` changes A's rate per vector, an
        array fires no pulse trains (ideal device, pulse_type none or expected), transfer
        reads are perfect (a matrix product, not the IO chain), or the arrays are large enough
        for their reads and updates to run on all threads (the kernel runs on one). An update
        of so many vectors that it plans them on all threads takes the Python path too."""
        cfg = self.device
        self._size = self.out_size * self.in_size
        if (cfg.random_selection or cfg.with_reset_prob > 0 or cfg.transfer_forward.perfect
                or (self._chopped and (cfg.auto_scale or cfg.out_chop_prob > 0))
                or (self._dynamic and cfg.in_chop_random)):
            return None
        if self._size >= kernels.PARALLEL_MIN_SIZE:  # the Python path shares these arrays' work among threads
            return None
        arrays = []
        for tile in (self.fast, self.slow):
            up = tile.update_params
            if isinstance(tile.device, IdealDevice) or up.pulse_type in ("none", "expected"):
                return None
            pop = tile.population
            dw_min = self._update_granularity if tile is self.fast and self._update_granularity else pop.dw_min
            pulses = np.array([dw_min, up.desired_bl, up.fixed_bl, up.update_bl_management,
                               up.update_management or up.update_bl_management, up.um_grad_scale,
                               up.pulse_type == "deterministic_implicit"], np.float64)
            arrays.append((tile._state, pop.block, pop.model, pop.shared, tile._weights, tile._reference,
                           float(pop.write_noise), bool(pop.apparent), tile._update_key, pulses))
        self._device_steps = any(t.population.decay is not None or t.population.diffusion is not None
                                 for t in (self.fast, self.slow))
        kind = (ck.DYNAMIC if self._dynamic else ck.CHOPPED if self._chopped else ck.BUFFERED if self._buffered
                else ck.TIKI_TAKA)
        options = np.zeros(ck.N_OPTIONS, np.float64)
        options[ck.O_N_READ], options[ck.O_READS] = self._n_read, self._reads_per_transfer
        options[ck.O_COLUMNS] = self._columns
        options[ck.O_GAMMA_FAST], options[ck.O_GAMMA_SLOW] = self.gamma_fast, self.gamma_slow
        options[ck.O_SKIP_COMBINE] = self._fully_hidden or self._device_steps
        options[ck.O_G_FAST] = self._g_fast
        if self._buffered or self._chopped:
            options[ck.O_MAX_STEPS] = cfg.transfer_update.desired_bl
            options[ck.O_MOMENTUM], options[ck.O_FORGET] = cfg.momentum, cfg.forget_buffer
            self._write_rate = cfg.step * self._g_slow
        if self._buffered:
            options[ck.O_THRESHOLD] = cfg.thres_scale * self._g_slow
        if self._chopped:
            options[ck.O_KEEP_BUFFER] = not cfg.no_buffer
            options[ck.O_CHOP_PROB], options[ck.O_CHOP_RANDOM] = cfg.in_chop_prob, cfg.in_chop_random
            if cfg.in_chop_prob > 0:
                options[ck.O_PERIOD] = max(int(math.ceil(1.0 / cfg.in_chop_prob)), 2)
        if self._dynamic:
            options[ck.O_SAMPLE_MOMENTUM] = min(cfg.tail_weightening / options[ck.O_PERIOD], 1.0)
            options[ck.O_CAP] = cfg.transfer_update.desired_bl * cfg.buffer_cap
            options[ck.O_CORRECT_ACCUMULATION] = cfg.experimental_correct_accumulation
        unused_rows = np.zeros((1, 1), np.float32)
        digital = (self.buffer if self.buffer is not None else unused_rows,
                   self._in_signs, self._out_signs,
                   self._running_mean if self._dynamic else unused_rows,
                   self._past_mean if self._dynamic else unused_rows,
                   self._switched if self._dynamic else np.zeros(1, bool))
        self._counters = np.zeros(6, np.int64)
        self._stats = np.zeros(ck.N_STATS, np.int64)
        self._no_uniforms = np.zeros(0, np.float64)
        return (kind, options, self._counters, *arrays[0], *arrays[1], self._tio, self._transfer_state, *digital)

    def _update_in_kernel(self, xs: np.ndarray, ds: np.ndarray, lr: float) -> None:
        """:meth:`update` as one :func:`~aimcsim.compound_kernels.transfer_update` call: the
        rates and the counters go in, the counters and the reports' counts come out."""
        rows = xs.shape[0]
        every = self._transfer_every(rows)
        rate = self._fast_lr(lr)
        self._count_lr = rate
        transfer_rate = self._transfer_rate(lr)
        buffer_rate = self._lr_scale(transfer_rate) if self._chopped and transfer_rate != 0.0 else transfer_rate
        write_rate = self._write_rate if (self._buffered or self._chopped) else transfer_rate
        kernel = self._kernel
        kernel[1][ck.O_EVERY] = every
        counters = self._counters
        counters[ck.C_VECTORS], counters[ck.C_NEXT_READ], counters[ck.C_SWEEPS] = (
            self._vectors, self._next_read, self._sweeps)
        counters[ck.C_FAST_CALLS], counters[ck.C_SLOW_CALLS] = self.fast._update_calls, self.slow._update_calls
        counters[ck.C_UNIFORM] = 0
        uniforms = self._no_uniforms
        if self._chopped and not self._dynamic and self.device.in_chop_random and self.device.in_chop_prob > 0:
            transfers = (self._vectors + rows) // every - self._vectors // every
            if transfers and transfer_rate != 0.0:  # one draw per column read, as _chopped_step's
                uniforms = self._rng.random(transfers * self._reads_per_transfer)
        stats = self._stats
        ck.transfer_update(xs, ds, rate, transfer_rate, buffer_rate, write_rate, *kernel, uniforms, self._weights,
                           stats)
        self._vectors, self._next_read, self._sweeps, self.fast._update_calls, self.slow._update_calls = (
            counters[:5].tolist())
        s = stats.tolist()
        if self._device_steps:
            self.fast.device_step()
            self.slow.device_step()
            self._combine()
        self.transfer_changed_weights = bool(s[ck.S_CHANGED])
        lines = self.out_size + self.in_size
        self.last_report = OpReport(UPDATE, s[ck.S_U_VECTORS], pulse_slots=s[ck.S_U_SLOTS], max_bl=s[ck.S_U_MAX_BL],
                                    coincidences=s[ck.S_U_COINCIDENCES], line_slots=s[ck.S_U_SLOTS] * lines)
        if not s[ck.S_T_EVENTS]:
            self.last_transfer = None
            return
        passes = s[ck.S_T_PASSES]
        self.last_transfer = OpReport(
            TRANSFER, s[ck.S_T_VECTORS], passes=passes, pulse_slots=s[ck.S_T_SLOTS], max_bl=s[ck.S_T_MAX_BL],
            coincidences=s[ck.S_T_COINCIDENCES], dac=passes * self._n_read, adc=passes * self._n_out,
            cells=passes * self.out_size * self.in_size, line_slots=s[ck.S_T_SLOTS] * lines,
            digital=s[ck.S_T_WRITES])

    def _fire_fast(self, xs: np.ndarray, ds: np.ndarray, rate: float) -> None:
        """A's pulses for rows (xs, ds) at ``rate``, through the choppers' signs (c-TTv2)."""
        if self._chopped:
            x_signs, d_signs = (self._in_signs, self._out_signs) if self._columns else (self._out_signs, self._in_signs)
            xs = np.ascontiguousarray(xs * x_signs)
            ds = np.ascontiguousarray(ds * d_signs)
        self.fast.fire(xs, ds, rate, self._update_granularity or None)

    # --------------------------------------------------------------- transfer
    def _transfer_rate(self, lr: float) -> float:
        """The transfer's learning rate (aihwkit ``getTransferLR``; the buffered family scales it
        by gamma_A / gamma_C when both are positive)."""
        rate = self.device.transfer_lr * (lr if self.device.scale_transfer_lr else 1.0)
        if self._buffered or self._chopped:
            if self.gamma_fast > 0 and self.gamma_slow > 0:
                rate *= self.gamma_fast / self.gamma_slow
        return rate

    def _transfer(self, lr: float) -> OpReport | None:
        """One transfer event: ``n_reads_per_transfer`` consecutive columns (rows), wrapping at
        the edge, from the next one (or a random one). Returns its report (None: rate 0)."""
        cfg = self.device
        first = self._next_read
        if cfg.random_selection:
            first = min(max(int(math.floor(self._rng.random() * self._n_read)), 0), self._n_read - 1)
        count = self._reads_per_transfer
        self._next_read = (first + count) % self._n_read
        rate = self._transfer_rate(lr)
        if rate == 0.0:
            return None
        head = min(count, self._n_read - first)
        passes, writes = self._transfer_block(first, head, rate)
        if count > head:
            more, later = self._transfer_block(0, count - head, rate)
            passes += more
            writes = later if writes is None else chain_reports(UPDATE, [writes, later])
        read_width = self.in_size if self._columns else self.out_size
        digital = count * self._n_out if (self._buffered or self._chopped) else 0  # the buffer's element updates
        w = writes if writes is not None else OpReport(UPDATE, 0)
        return OpReport(TRANSFER, w.vectors, passes=passes, pulse_slots=w.pulse_slots, max_bl=w.max_bl,
                        coincidences=w.coincidences, dac=passes * read_width, adc=passes * self._n_out,
                        cells=passes * self.out_size * self.in_size, line_slots=w.line_slots, digital=digital)

    def _read_fast(self, index: int) -> tuple[np.ndarray, int]:
        """Column ``index`` of A (row, if transferring rows) through the transfer IO."""
        onehot = self._read_onehot
        onehot[0, index] = 1.0
        out, passes = self.fast.read_array(onehot, not self._columns, self._tio, self._tio_perfect,
                                           self._transfer_state)
        onehot[0, index] = 0.0
        return out[0], passes

    def _write_slow(self, indices: list[int], values: list[np.ndarray], rate: float) -> OpReport:
        """Pulse C with one-hot vectors at ``indices`` against ``values`` (one row each) at ``rate``:
        columns mode writes C[:, i] -= rate * v; rows mode C[i, :]."""
        onehot = np.zeros((len(indices), self._n_read), np.float32)
        onehot[np.arange(len(indices)), indices] = 1.0
        rows = values[0][None, :] if len(values) == 1 else np.stack(values)
        xs, ds = (onehot, rows) if self._columns else (rows, onehot)
        self.slow.fire(xs, ds, rate)
        self.transfer_changed_weights = True
        return self.slow.last_report

    def _transfer_block(self, start: int, length: int, rate: float) -> tuple[int, OpReport | None]:
        """Read ``length`` columns from ``start`` and write them (or the pulses their buffers
        fire) onto C, as the compound's readAndUpdate does: (read passes, the write's report)."""
        passes = 0
        written: list[int] = []
        values: list[np.ndarray] = []
        for index in range(start, start + length):
            read, n = self._read_fast(index)
            passes += n
            if not self._buffered and not self._chopped:  # Tiki-Taka: the read itself is written
                if self.device.with_reset_prob > 0 and self._rng.random() < self.device.with_reset_prob:
                    self.fast.reset_columns(np.arange(start, start + length), self._rng)
                written.append(index)
                values.append(-read)
                continue
            steps = self._steps
            if self._dynamic:
                fires = self._agad_step(index, read, rate, steps)
            elif self._chopped:
                fires = self._chopped_step(index, read, rate, steps)
            else:
                fires = ck.buffer_transfer(self.buffer[index], read, rate, self._out_signs,
                                           self.device.thres_scale * self._g_slow,
                                           self.device.transfer_update.desired_bl, self.device.momentum,
                                           self.device.forget_buffer, True, steps)
            if fires:
                written.append(index)
                values.append(steps.copy())
        if not written:
            return passes, None
        write_rate = rate if not (self._buffered or self._chopped) else self.device.step * self._g_slow
        return passes, self._write_slow(written, values, write_rate)

    def _lr_scale(self, rate: float) -> float:
        """c-TTv2's buffer rate (aihwkit ``getTransferLRScale`` with ``getBufferGranularity``)."""
        cfg = self.device
        granularity = cfg.buffer_granularity
        if cfg.auto_granularity > 0:
            granularity *= self._g_fast * cfg.auto_granularity / (self._n_read * abs(cfg.transfer_every))
        else:
            granularity *= self._g_fast
        if cfg.correct_gradient_magnitudes:
            granularity *= self._g_slow / self._g_fast
            return abs(rate) / self._count_lr / granularity if self._count_lr else 0.0
        return abs(rate) / granularity

    def _chopped_step(self, index: int, read: np.ndarray, rate: float, steps: np.ndarray) -> int:
        cfg = self.device
        signs = self._out_signs * self._in_signs[index]
        fires = ck.buffer_transfer(self.buffer[index], read, self._lr_scale(rate), signs, 1.0,
                                   cfg.transfer_update.desired_bl, cfg.momentum, cfg.forget_buffer,
                                   not cfg.no_buffer, steps)
        if cfg.in_chop_prob > 0:
            if cfg.in_chop_random:
                flip = self._rng.random() < cfg.in_chop_prob
            else:
                period = max(int(math.ceil(1.0 / cfg.in_chop_prob)), 2)
                flip = (self._sweeps % period) + 1 == period
            if flip:
                self._flip_in(index)
        if index == self._n_read - 1:
            if cfg.out_chop_prob > 0:
                flips = self._rng.random(self._n_out) < cfg.out_chop_prob
                self._out_signs[flips] *= -1.0
                if flips.any() and self.gamma_fast != 0.0:
                    self.transfer_changed_weights = True
            self._sweeps += 1
        return fires

    def _flip_in(self, index: int) -> None:
        self._in_signs[index] *= -1.0
        if self.gamma_fast != 0.0:
            self.transfer_changed_weights = True

    def _agad_step(self, index: int, read: np.ndarray, rate: float, steps: np.ndarray) -> int:
        cfg = self.device
        period = max(int(math.ceil(1.0 / cfg.in_chop_prob)), 2)
        sample = self._sweeps % period + 1
        switched = bool(self._switched[index])
        self._switched[index] = False
        scale = self._lr_scale(rate)
        if cfg.experimental_correct_accumulation:
            scale /= min(sample, 1.0 / self._g_fast)
        signs = self._out_signs * self._in_signs[index]
        fires = ck.agad_transfer(self.buffer[index], self._running_mean[index], self._past_mean[index], read,
                                 scale, signs, switched, min(cfg.tail_weightening / period, 1.0),
                                 cfg.transfer_update.desired_bl, cfg.momentum, cfg.forget_buffer,
                                 cfg.transfer_update.desired_bl * cfg.buffer_cap, steps)
        if self._sweeps <= period:
            fires = 0  # no write before the first chopper periods are over (aihwkit)
        flip = sample == period or (cfg.in_chop_random and self._rng.random() < cfg.in_chop_prob)
        if flip:
            self._flip_in(index)
            self._switched[index] = True
        if index == self._n_read - 1:
            self._sweeps += 1
        return fires

    def __repr__(self) -> str:
        fast, slow = (u.type for u in self.device.unit_cell_devices)
        return f"TransferTile({self.out_size}, {self.in_size}, {self.device.type}: {fast} -> {slow}, seed={self.seed})"


class MixedPrecisionTile:
    """One analog array trained through a digital accumulator chi (aihwkit's mixed precision).

    Reads are the array's; ``update`` adds lr d x^T into chi and every ``transfer_every``
    mini-batches writes rows of chi onto the array as whole pulses (op T).
    """

    def __init__(self, out_size: int, in_size: int, device: object = None, update: object = None,
                 forward_io: object = None, backward_io: object = None, seed: int = 0) -> None:
        _setup(self, out_size, in_size, device, update, seed, MixedPrecisionCompound, "mixed_precision_compound")
        cfg = self.device
        writes = self.update_params.model_copy(update={"update_management": True, "update_bl_management": True})
        self.array = AnalogTile(out_size, in_size, device=cfg.device, update=writes, forward_io=forward_io,
                                backward_io=backward_io, seed=seed)
        self.forward_io, self.backward_io = self.array.forward_io, self.array.backward_io
        self.granularity = cfg.granularity if cfg.granularity > 0 else _granularity(cfg.device)
        self.chi = np.zeros((self.out_size, self.in_size), np.float32)
        self._round_state = np.array([stream(seed_key(self.seed, 0xF7), np.uint64(0))], dtype=np.uint64)
        self._rng = np.random.default_rng([self.seed, 0xF8])
        self.update_changes_weights = False  # an update only moves chi
        self.last_report: OpReport | None = None
        self.last_transfer: OpReport | None = None
        self.transfer_changed_weights = False
        self._vectors = self._next_row = 0
        self._rows_per_transfer = (self.out_size if cfg.n_rows_per_transfer < 0
                                   else min(cfg.n_rows_per_transfer, self.out_size))
        self._kernel = self._kernel_arguments()

    def _kernel_arguments(self) -> tuple | None:
        """The array's fixed arguments of :func:`~aimcsim.compound_kernels.mixed_precision_update`,
        or None where the Python orchestration must run: random rows (a numpy Generator's
        draws), an array that fires no pulse trains, or one large enough to share its work among
        threads (the kernel runs on one)."""
        cfg, array = self.device, self.array
        up, pop = array.update_params, array.population
        if ((cfg.random_row and self._rows_per_transfer < self.out_size) or isinstance(array.device, IdealDevice)
                or up.pulse_type in ("none", "expected") or array._weights.size >= kernels.PARALLEL_MIN_SIZE):
            return None
        self._counters = np.zeros(3, np.int64)
        self._stats = np.zeros(6, np.int64)
        pulses = np.array([pop.dw_min, up.desired_bl, up.fixed_bl, up.update_bl_management,
                           up.update_management or up.update_bl_management, up.um_grad_scale,
                           up.pulse_type == "deterministic_implicit"], np.float64)
        return (self._counters, array._state, pop.block, pop.model, pop.shared, array._weights, array._reference,
                float(pop.write_noise), bool(pop.apparent), array._update_key, pulses)

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = self.array.forward(x)
        self.last_report = self.array.last_report
        return out

    def backward(self, d: np.ndarray) -> np.ndarray:
        out = self.array.backward(d)
        self.last_report = self.array.last_report
        return out

    def backward_with(self, d: np.ndarray, weights: np.ndarray) -> np.ndarray:
        out = self.array.backward_with(d, weights)
        self.last_report = self.array.last_report
        return out

    def evaluation_read(self, values: np.ndarray, transposed: bool = False) -> np.ndarray:
        return self.array.evaluation_read(values, transposed)

    def get_weights(self) -> np.ndarray:
        return self.array.get_weights()

    def set_weights(self, weights: object) -> None:
        """Program the array; chi and the counters restart (aihwkit ``onSetWeights``)."""
        self.array.set_weights(weights)
        self.chi[...] = 0.0
        self._vectors = self._next_row = 0

    def update(self, x: object, d: object, lr: float) -> None:
        """chi += lr d x^T vector by vector; after every ``transfer_every`` x rows vectors
        (counted from the second), a row transfer onto the array."""
        xs, ds = update_rows(x, d, lr, self.in_size, self.out_size)
        cfg = self.device
        rows = xs.shape[0]
        every = cfg.transfer_every * rows
        if self._kernel is not None and kernels.update_threads(self._rows_per_transfer, self.array._weights.size) == 1:
            self._update_in_kernel(xs, ds, float(lr), every)
            return
        transfers = []
        self.transfer_changed_weights = False
        start = 0
        while start < rows:
            # aihwkit transfers after the vector whose 0-based index is a positive multiple of every
            due = -(-max(self._vectors, 1) // every) * every
            stop = min(rows, start + due - self._vectors + 1)
            ck.chi_accumulate(self.chi, xs[start:stop], ds[start:stop], float(lr), cfg.n_x_bins, cfg.n_d_bins,
                              cfg.stoc_round_x, cfg.stoc_round_d, self._round_state)
            self._vectors += stop - start
            if self._vectors - 1 == due:
                transfers.append(self._transfer())
            start = stop
        self.array.device_step()
        self.last_report = OpReport(UPDATE, rows, digital=rows * self.out_size * self.in_size)
        self.last_transfer = chain_reports(TRANSFER, transfers) if transfers else None

    def _update_in_kernel(self, xs: np.ndarray, ds: np.ndarray, lr: float, every: int) -> None:
        """:meth:`update` as one :func:`~aimcsim.compound_kernels.mixed_precision_update` call."""
        cfg = self.device
        counters = self._counters
        counters[ck.M_VECTORS], counters[ck.M_NEXT_ROW], counters[ck.M_CALLS] = (
            self._vectors, self._next_row, self.array._update_calls)
        ck.mixed_precision_update(xs, ds, lr, every, self._rows_per_transfer, cfg.n_x_bins, cfg.n_d_bins,
                                  cfg.stoc_round_x, cfg.stoc_round_d, self._round_state, self.chi, self.granularity,
                                  self.granularity * cfg.transfer_lr, *self._kernel, self._stats)
        self._vectors, self._next_row, self.array._update_calls = counters.tolist()
        self.array.device_step()
        rows = xs.shape[0]
        self.last_report = OpReport(UPDATE, rows, digital=rows * self.out_size * self.in_size)
        vectors, slots, max_bl, fired, transfers, digital = self._stats.tolist()
        self.transfer_changed_weights = transfers > 0 and cfg.transfer_lr != 0.0
        self.last_transfer = None if not transfers else OpReport(
            TRANSFER, vectors, pulse_slots=slots, max_bl=max_bl, coincidences=fired,
            line_slots=slots * (self.out_size + self.in_size), digital=digital)

    def _transfer(self) -> OpReport:
        cfg = self.device
        count = self._rows_per_transfer
        first = self._next_row
        if cfg.random_row and count < self.out_size:
            first = min(max(int(math.floor(self._rng.random() * self.out_size)), 0), self.out_size - 1)
        rows = (first + np.arange(count)) % self.out_size
        self._next_row = int((first + count) % self.out_size)
        counts = np.empty((count, self.in_size), np.float32)
        ck.chi_to_pulses(self.chi, rows, self.granularity, counts)
        digital = count * self.in_size
        if cfg.transfer_lr == 0.0:
            return OpReport(TRANSFER, 0, digital=digital)
        onehot = np.zeros((count, self.out_size), np.float32)
        onehot[np.arange(count), rows] = 1.0
        self.array.fire(counts, onehot, self.granularity * cfg.transfer_lr)
        self.transfer_changed_weights = True
        return self.array.last_report._replace(op=TRANSFER, digital=digital)

    def __repr__(self) -> str:
        return f"MixedPrecisionTile({self.out_size}, {self.in_size}, {self.device.device.type}, seed={self.seed})"
