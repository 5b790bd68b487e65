"""AnalogTile: one crossbar's state and the three operations the hardware can do.

A tile holds float32 weights (out_size x in_size), its drawn device population and the
seeded random streams of its reads and updates. ``forward`` (y = W x), ``backward``
(z = W^T d) and ``update`` (W <- W - lr d x^T, realised as pulses) are the only ways to
touch the weights, as on a real crossbar; each records in ``last_report`` what the hardware
did (vectors, bound-management passes, pulse-train lengths, coincidences), because the
timing model charges clock cycles from exactly these quantities.
"""

from __future__ import annotations

import numpy as np
from . import kernels
from .aligned import aligned_zeros
from .devices import IDEAL, P_WMAX, P_WMIN, IdealDevice, parse_unit_device, populate
from .errors import ConfigError, parse_model
from .ops import BACKWARD, FORWARD, UPDATE, OpReport
from .params import IOParameters, UpdateParameters, parse_backward_io
from .rng import call_key, seed_key, stream


_FLOAT32 = np.dtype(np.float32)
_UNIT_STRIDE = (4,)


def _as_matrix(value: object, width: int, name: str) -> tuple[np.ndarray, bool]:
    """(rows as a C-contiguous float32 matrix, whether the input was a single vector)."""
    arr = np.asarray(value, dtype=np.float32)
    single = arr.ndim == 1
    if single:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ConfigError(f"{name}: expected shape ({width},) or (batch, {width}), got {np.shape(value)}")
    return np.ascontiguousarray(arr), single


def check_tile_args(out_size: object, in_size: object, seed: object) -> None:
    """One-line errors for tile sizes that are not positive integers or a negative seed."""
    for name, size in (("out_size", out_size), ("in_size", in_size)):
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"{name}: must be a positive integer, got {size!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed: must be a non-negative integer, got {seed!r}")


def update_rows(x: object, d: object, lr: object, in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The checked rows of an update call: (xs, ds) as C-contiguous finite float32 batches of
    equal length, and a finite lr >= 0; anything else is a one-line error."""
    xs, _ = _as_matrix(x, in_size, "x")
    ds, _ = _as_matrix(d, out_size, "d")
    if xs.shape[0] != ds.shape[0]:
        raise ConfigError(f"d: batch of {ds.shape[0]} rows does not match x's {xs.shape[0]}")
    if not isinstance(lr, (int, float, np.floating)) or not np.isfinite(lr) or lr < 0:
        raise ConfigError(f"lr: must be a finite number >= 0, got {lr!r}")
    for name, rows in (("x", xs), ("d", ds)):
        if not kernels.all_finite(rows):
            raise ConfigError(f"{name}: must be finite (found NaN or inf)")
    return xs, ds


class ReadPath:
    """The IO chain of a crossbar's reads, on whatever array ``_weights`` holds.

    A one-array tile reads its devices' (apparent) weights; a compound tile reads the weights
    its arrays combine to. Subclasses set ``in_size``, ``out_size``, ``seed`` and ``_weights``
    and call :meth:`_init_reads`; the reads then draw their noise from the crossbar's own stream.
    """

    in_size: int
    out_size: int
    seed: int
    _weights: np.ndarray
    last_report: OpReport | None

    def _init_reads(self, forward_io: object, backward_io: object) -> None:
        self.forward_io: IOParameters = parse_model(IOParameters, forward_io, "io.forward")
        self.backward_io: IOParameters = parse_backward_io(backward_io, "io.backward")
        self._fwd = self.forward_io.as_array()
        self._bwd = self.backward_io.as_array()
        self._read_state = np.array([stream(seed_key(self.seed, 0xF0), np.uint64(0))], dtype=np.uint64)
        self._eval_state: np.ndarray | None = None  # evaluation reads' stream, made on first use

    # ------------------------------------------------------------------ reads
    def _read(self, transposed: bool, values: object, io: np.ndarray, perfect: bool,
              width: int, name: str, op: str, state: np.ndarray | None = None,
              weights: np.ndarray | None = None) -> np.ndarray:
        """A read through the IO chain; ``state``: draw its noise from this stream instead of
        the training reads' (an evaluation read), and leave ``last_report`` alone; ``weights``:
        read these instead of the array's (a stashed copy, see :meth:`backward_with`)."""
        w = self._weights if weights is None else weights
        if (type(values) is np.ndarray and values.dtype is _FLOAT32 and values.shape == (width,)
                and values.strides == _UNIT_STRIDE):
            rows, single = values[None], True  # the hot path: one contiguous float32 vector
        else:
            rows, single = _as_matrix(values, width, name)
        out, passes = self._read_rows(w, rows, transposed, io, perfect, self._read_state if state is None else state,
                                      name)
        if state is not None:
            return out[0] if single else out
        self.last_report = self.read_report(op, rows.shape[0], passes, transposed)
        return out[0] if single else out

    def read_report(self, op: str, vectors: int, passes: int, transposed: bool) -> OpReport:
        """What a read of ``vectors`` rows in ``passes`` analog passes did: a conversion per driven
        and per sensed line and every cross-point per pass, one periphery operation per output."""
        width, n_out = (self.out_size, self.in_size) if transposed else (self.in_size, self.out_size)
        return OpReport(op, vectors, passes, dac=passes * width, adc=passes * n_out, cells=passes * self._weights.size,
                        digital=vectors * n_out)

    def _read_rows(self, w: np.ndarray, rows: np.ndarray, transposed: bool, io: np.ndarray, perfect: bool,
                   state: np.ndarray, name: str) -> tuple[np.ndarray, int]:
        """(rows read through ``w`` (transposed: w^T) with the IO settings ``io``, exactly if
        ``perfect``, noise from ``state``; analog passes). Non-finite inputs are refused."""
        if perfect:
            if not kernels.all_finite(rows):
                raise ConfigError(f"{name}: must be finite (found NaN or inf)")
            with np.errstate(over="ignore", invalid="ignore"):  # divergence is the caller's to detect
                out = rows @ w if transposed else rows @ w.T
            return out, rows.shape[0]
        out = np.empty((rows.shape[0], self.in_size if transposed else self.out_size), np.float32)
        passes = kernels.analog_read(w, rows, transposed, io, state, out)
        if passes == kernels.NONFINITE:
            raise ConfigError(f"{name}: must be finite (found NaN or inf)")
        return out, passes

    def read_array(self, rows: np.ndarray, transposed: bool, io: np.ndarray, perfect: bool,
                   state: np.ndarray) -> tuple[np.ndarray, int]:
        """(rows read from this crossbar's weights through the IO settings ``io`` (packed by
        ``IOParameters.as_array``; ``perfect``: exactly), analog passes): a read that is not one
        of the layer's (a compound's transfer read), drawing its noise from ``state``."""
        return self._read_rows(self._weights, rows, transposed, io, perfect, state, "values")

    def forward(self, x: object) -> np.ndarray:
        """Forward read y = W x of one vector (in_size,) or a batch of rows (n, in_size)."""
        return self._read(False, x, self._fwd, self.forward_io.perfect, self.in_size, "x", FORWARD)

    def backward(self, d: object) -> np.ndarray:
        """Transposed read z = W^T d of one vector (out_size,) or a batch of rows (n, out_size)."""
        return self._read(True, d, self._bwd, self.backward_io.perfect, self.out_size, "d", BACKWARD)

    def backward_with(self, d: object, weights: np.ndarray) -> np.ndarray:
        """The transposed read z = weights^T d through this crossbar's backward IO chain and
        training stream, with ``weights`` (a copy of what an earlier forward read) in place of
        the array's: the weight-stashing reference (``async_stash``), which a crossbar cannot
        do, since its weights have moved on."""
        return self._read(True, d, self._bwd, self.backward_io.perfect, self.out_size, "d", BACKWARD,
                          weights=np.ascontiguousarray(weights, dtype=np.float32))

    def evaluation_read(self, values: object, transposed: bool = False) -> np.ndarray:
        """A forward (or transposed) read through the same IO chain as training's, drawing its
        noise from the tile's evaluation stream: training's streams and reports are untouched,
        so evaluating with analog reads never changes a training run."""
        if self._eval_state is None:
            self._eval_state = np.array([stream(seed_key(self.seed, 0xE7), np.uint64(0))], dtype=np.uint64)
        if transposed:
            return self._read(True, values, self._bwd, self.backward_io.perfect, self.out_size, "d", BACKWARD,
                              self._eval_state)
        return self._read(False, values, self._fwd, self.forward_io.perfect, self.in_size, "x", FORWARD,
                          self._eval_state)


class AnalogTile(ReadPath):
    """A crossbar of resistive devices with forward, backward and pulsed update.

    Parameters take the same mappings as the YAML sections ``device``, ``update`` and
    ``io.forward`` / ``io.backward`` (or the typed objects built from them). The backward
    read defaults to no bound management, as in aihwkit.
    """

    def __init__(self, out_size: int, in_size: int, device: object = None, update: object = None,
                 forward_io: object = None, backward_io: object = None, seed: int = 0) -> None:
        check_tile_args(out_size, in_size, seed)
        self.out_size = int(out_size)
        self.in_size = int(in_size)
        self.seed = int(seed)
        self.device = parse_unit_device(device, "device")
        self.update_params: UpdateParameters = parse_model(UpdateParameters, update, "update")
        self._init_reads(forward_io, backward_io)

        population_rng = np.random.default_rng([self.seed, 0xD7])
        self.population = populate(self.device, (self.out_size, self.in_size), population_rng)
        self._update_key = seed_key(self.seed, 0xF1)
        self._diffusion_key = seed_key(self.seed, 0xF3)
        self._diffusion_calls = 0
        self._update_calls = 0
        # what reads see; the device states are the same array unless reads see something else
        # (a reference subtracted, write noise added: the "apparent" weights of aihwkit)
        self._weights = aligned_zeros((self.out_size, self.in_size), np.float32)
        pop = self.population
        self._state = aligned_zeros((self.out_size, self.in_size), np.float32) if pop.apparent else self._weights
        self._reference = pop.reference if pop.reference is not None else np.zeros((0, 0), np.float32)
        self._write_noise_key = seed_key(self.seed, 0xF4)
        self._write_noise_calls = 0
        self._clip_to_bounds()
        self._refresh_apparent(on_set=True)
        self.last_report: OpReport | None = None
        self.last_transfer: OpReport | None = None  # a one-array tile never transfers
        self.transfer_changed_weights = False
        self.update_changes_weights = True  # every update moves what the reads see
        self._reset_bias_drawn: np.ndarray | None = None

    # ---------------------------------------------------------------- weights
    def get_weights(self) -> np.ndarray:
        """A copy of the weights the reads see, shape (out_size, in_size)."""
        return self._weights.copy()

    def set_weights(self, weights: object) -> None:
        """Program the weights the reads see (the device states are these plus any reference);
        states beyond a device's own bounds are clipped to them."""
        w = np.asarray(weights, dtype=np.float32)
        if w.shape != self._weights.shape:
            raise ConfigError(f"weights: expected shape {self._weights.shape}, got {np.shape(weights)}")
        if not kernels.all_finite(w):
            raise ConfigError("weights: must be finite (found NaN or inf)")
        self._state[...] = w
        if self.population.reference is not None:
            self._state += self.population.reference
        self._clip_to_bounds()
        self._refresh_apparent(on_set=True)

    def _clip_to_bounds(self) -> None:
        if self.population.model != IDEAL:
            block = self.population.block
            np.clip(self._state, block[P_WMIN], block[P_WMAX], out=self._state)

    def _refresh_apparent(self, on_set: bool = False) -> None:
        """Every device's apparent weight anew: after programming (unless the device turns the
        noise off there), decay or diffusion, and after an update without pulses (``expected``,
        ``none``), which cannot say which devices it touched."""
        pop = self.population
        if not pop.apparent:
            return
        noise = pop.write_noise
        if on_set and not getattr(self.device, "apply_write_noise_on_set", True):
            noise = 0.0
        self._write_noise_calls += 1
        key = call_key(self._write_noise_key, self._write_noise_calls)
        kernels.refresh_apparent(self._state, self._weights, self._reference, noise, key)

    # ----------------------------------------------------------------- update
    def update(self, x: object, d: object, lr: float) -> None:
        """Rank-one update W <- W - lr d x^T as the configured pulses (rows applied in order)."""
        xs, ds = update_rows(x, d, lr, self.in_size, self.out_size)
        self.fire(xs, ds, float(lr))
        self.device_step()

    def fire(self, xs: np.ndarray, ds: np.ndarray, lr: float, granularity: float | None = None) -> None:
        """The pulses of the updates (xs, ds) alone, without the once-per-update device step
        (:meth:`device_step`): what a compound tile fires on one of its arrays. Rows must be
        C-contiguous finite float32 (as :func:`update_rows` makes them); ``granularity``
        replaces the device's dw_min in the pulse count (aihwkit's weight granularity)."""
        up = self.update_params
        pop = self.population
        n = xs.shape[0]
        dw_min = pop.dw_min if granularity is None else float(granularity)
        if up.pulse_type == "none" or isinstance(self.device, IdealDevice):
            kernels.float_update(self._state, xs, ds, lr)
            self.last_report = OpReport(UPDATE, n)
            self._refresh_apparent()
        elif up.pulse_type == "expected":
            kernels.expected_update(self._state, pop.block, pop.model, pop.shared, xs, ds, lr, dw_min)
            self.last_report = OpReport(UPDATE, n)
            self._refresh_apparent()
        else:
            key = call_key(self._update_key, self._update_calls)
            self._update_calls += 1
            slots, max_bl, fired = kernels.pulsed_update(
                self._state, pop.block, pop.model, pop.shared, xs, ds, lr, dw_min,
                up.desired_bl, up.fixed_bl, up.update_bl_management,
                up.update_management or up.update_bl_management, up.um_grad_scale,
                up.pulse_type == "deterministic_implicit", key, self._weights, self._reference,
                pop.write_noise, pop.apparent, kernels.update_threads(n, self._state.size))
            self.last_report = OpReport(UPDATE, n, pulse_slots=int(slots), max_bl=int(max_bl),
                                        coincidences=int(fired),
                                        line_slots=int(slots) * (self.out_size + self.in_size))

    def reset_columns(self, columns: np.ndarray, rng: np.random.Generator) -> None:
        """Reset every device of ``columns`` to its reset bias plus ``reset_std`` noise, clipped to
        its bounds (aihwkit ``PulsedRPUDevice::resetCols``; an ideal device resets to 0)."""
        if isinstance(self.device, IdealDevice):
            self._state[:, columns] = 0.0
        else:
            values = self._reset_bias()[:, columns] + self.device.reset_std * rng.standard_normal(
                (self.out_size, len(columns)))
            block = self.population.block
            self._state[:, columns] = np.clip(values, block[P_WMIN][:, columns], block[P_WMAX][:, columns])
        self._refresh_apparent()

    def _reset_bias(self) -> np.ndarray:
        """Each device's reset bias: the population's (drawn with lifetime), else drawn once here."""
        if self.population.reset_bias is not None:
            return self.population.reset_bias
        if self._reset_bias_drawn is None:
            d = self.device
            rng = np.random.default_rng([self.seed, 0xD9])
            self._reset_bias_drawn = (d.reset + d.reset_dtod * rng.standard_normal(self._state.shape)).astype(np.float32)
        return self._reset_bias_drawn

    def device_step(self) -> None:
        """What a device does once per update call (a mini-batch, as aihwkit's post-update
        step): decay toward its reset bias (``lifetime``), then diffusion; then, if reads see
        apparent weights, every device's anew (aihwkit's applyUpdateWriteNoise)."""
        pop = self.population
        if pop.decay is not None:
            kernels.decay_weights(self._state, pop.decay, pop.reset_bias, pop.block)
        if pop.diffusion is not None:
            self._diffusion_calls += 1
            key = call_key(self._diffusion_key, self._diffusion_calls)
            kernels.diffuse_weights(self._state, pop.diffusion, pop.block, key)
        if pop.decay is not None or pop.diffusion is not None:
            self._refresh_apparent()

    def __repr__(self) -> str:
        return (f"AnalogTile({self.out_size}, {self.in_size}, device={self.device.type!r}, "
                f"pulse_type={self.update_params.pulse_type!r}, seed={self.seed})")
