"""Resistive device models: parameters, device-to-device population, pulse response.

A device model says how one cross-point's weight moves when a single voltage-pulse
coincidence fires on it (one *pulse*), up (raising w) or down. Names, defaults and sign
conventions follow aihwkit's ``configs/devices.py`` and the ``update_once`` functions of its
C++ simulator (``rpu_*_device.cpp``), so a user's aihwkit device configuration ports over.

Each model is a typed parameter group; :func:`populate` draws the device-to-device
variation of a whole crossbar once from a seeded generator (bounds, step sizes, slopes or
exponents per cross-point), and :func:`pulse` / :func:`linear_pulse` / :func:`step_size` are
the numba response functions: the one copy of the physics, called once per coincidence by the
update kernels and by :func:`response_curve` alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal, Union

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .aligned import aligned_zeros
from .errors import ConfigError, did_you_mean, from_validation_error
from .presets import resolve_device
from .rng import next_normal, seed_key, stream

# Model codes used by the kernels.
IDEAL, CONSTANT_STEP, LINEAR_STEP, EXP_STEP, POW_STEP, PIECEWISE_STEP, SOFT_BOUNDS = 0, 1, 2, 3, 4, 5, 6

# Rows of the per-cross-point parameter block ``DeviceArrays.block`` (shape (6, out, in)).
P_WMAX, P_WMIN, P_SCALE_UP, P_SCALE_DOWN, P_SHAPE_UP, P_SHAPE_DOWN = range(6)

# Entries of the tile-wide parameter vector ``DeviceArrays.shared``.
G_STD, G_MULT_NOISE, G_ES_A_UP, G_ES_A_DOWN, G_ES_GAMMA_UP, G_ES_GAMMA_DOWN, G_ES_A, G_ES_B, \
    G_STD_ADD, G_STD_SLOPE, G_N_NODES, G_NODES = range(12)

_UNMODELLED_DEVICE = {  # write_noise_std: a field of the models whose aihwkit update implements it
    "write_noise_std": 0.0, "diffusion": 0.0, "diffusion_dtod": 0.0, "lifetime": 0.0,
    "lifetime_dtod": 0.0, "corrupt_devices_prob": 0.0, "perfect_bias": False,
    "reverse_up": False, "reverse_down": False, "construction_seed": 0,
}
# aihwkit settings that only its explicit reset calls read (aimcsim makes none); a pulsed
# device's reset / reset_dtod are fields (the target of lifetime decay).
_IGNORED_DEVICE = {"reset", "reset_dtod", "apply_write_noise_on_set",
                   "corrupt_devices_range", "reverse_offset"}


class _Device(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _unmodelled(cls, values: object) -> object:
        if not isinstance(values, dict):
            return values
        out = {}
        for key, value in values.items():
            if key in _UNMODELLED_DEVICE and key not in cls.model_fields:
                if value != _UNMODELLED_DEVICE[key]:
                    raise ValueError(f"{key} is an aihwkit device setting that aimcsim does not "
                                     f"model; only {_UNMODELLED_DEVICE[key]!r} is accepted")
                continue
            if key in _IGNORED_DEVICE and key not in cls.model_fields:
                continue  # only used by aihwkit's explicit reset calls, which aimcsim never makes
            out[key] = value
        return out


    def unused_keys(self, pulse_type: str = "stochastic_compressed", resets: bool = False) -> dict[str, str]:
        """The device settings nothing reads under this update pulse type (``resets``: a
        compound resets columns of this array) -> why; aihwkit's reset-call settings included."""
        return {key: "has no effect: only aihwkit's explicit reset calls read it, and aimcsim makes none"
                for key in _IGNORED_DEVICE if key not in type(self).model_fields}


class IdealDevice(_Device):
    """Floating-point weights: the update is exactly W - lr d x^T, no bounds."""

    type: Literal["ideal"] = "ideal"


class PulsedDevice(_Device):
    """Parameters shared by every pulsed model (aihwkit ``PulsedDevice``)."""

    dw_min: float = Field(0.001, gt=0, description="mean weight change of one pulse")
    dw_min_dtod: float = Field(0.3, ge=0, description="device-to-device spread of dw_min (relative)")
    dw_min_std: float = Field(0.3, ge=0, description="cycle-to-cycle spread of each pulse (relative)")
    up_down: float = Field(0.0, description="systematic up/down step asymmetry (relative)")
    up_down_dtod: float = Field(0.01, ge=0, description="device-to-device up/down asymmetry")
    w_max: float = Field(0.6, ge=0, description="mean upper bound")
    w_max_dtod: float = Field(0.3, ge=0, description="device-to-device spread of w_max (relative)")
    w_min: float = Field(-0.6, le=0, description="mean lower bound")
    w_min_dtod: float = Field(0.3, ge=0, description="device-to-device spread of w_min (relative)")
    enforce_consistency: bool = Field(True, description="force positive steps and w_min <= 0 <= w_max")
    lifetime: float = Field(0.0, ge=0, description=(
        "decay toward the reset bias, once per update call (a mini-batch): w <- (w - b)(1 - 1/lifetime) + b; "
        "0: none (aihwkit PulsedDevice.lifetime, in mini-batches)"))
    lifetime_dtod: float = Field(0.0, ge=0, description="device-to-device spread of lifetime (relative)")
    reset: float = Field(0.0, description="reset bias b: where decay leads (aihwkit PulsedDevice.reset)")
    reset_dtod: float = Field(0.0, ge=0, description="device-to-device spread of the reset bias (additive)")
    reset_std: float = Field(0.01, ge=0, description=(
        "cycle-to-cycle spread of a reset (a transfer compound's with_reset_prob): w <- b + reset_std xi"))
    diffusion: float = Field(0.0, ge=0, description=(
        "random walk once per update call: w <- w + rate xi, rate = |diffusion (1 + diffusion_dtod xi')|"))
    diffusion_dtod: float = Field(0.0, ge=0, description="device-to-device spread of the diffusion rate")

    def unused_keys(self, pulse_type: str = "stochastic_compressed", resets: bool = False) -> dict[str, str]:
        unused = super().unused_keys(pulse_type, resets)
        if self.lifetime == 0:
            unused["lifetime_dtod"] = "has no effect: lifetime is 0 (no decay)"
            if not resets:
                for key in ("reset", "reset_dtod"):
                    unused[key] = "has no effect: lifetime is 0 (no decay) and no transfer resets the devices"
        if not resets:
            unused["reset_std"] = "has no effect: no transfer resets the devices (a compound's with_reset_prob)"
        if self.diffusion == 0:
            unused["diffusion_dtod"] = "has no effect: diffusion is 0"
        if getattr(self, "write_noise_std", None) == 0:
            unused["apply_write_noise_on_set"] = "has no effect: write_noise_std is 0"
        if pulse_type == "expected":
            unused["dw_min_std"] = "has no effect: pulse_type expected follows the mean step (no cycle-to-cycle noise)"
        return unused

    @model_validator(mode="after")
    def _bounds(self) -> "PulsedDevice":
        if self.w_min > self.w_max:
            raise ValueError(f"w_min ({self.w_min}) must not exceed w_max ({self.w_max})")
        if self.w_min == self.w_max:
            raise ValueError(f"w_max: w_max and w_min are both {self.w_max}: the device has no range to hold a weight")
        return self


class _WriteNoise(BaseModel):
    """Write noise, for the models whose aihwkit update implements it (not constant step)."""

    write_noise_std: float = Field(0.0, ge=0, description=(
        "apparent-weight noise in units of dw_min: reads see w + write_noise_std * dw_min * xi, redrawn for "
        "every device an update touches (and for all after decay or diffusion); updates act on w"))
    apply_write_noise_on_set: bool = Field(True, description="draw the write noise when weights are programmed")


class ConstantStepDevice(PulsedDevice):
    """Constant step up to hard bounds."""

    type: Literal["constant_step"] = "constant_step"


class LinearStepDevice(_WriteNoise, PulsedDevice):
    """Step size changing linearly with the weight (aihwkit ``LinearStepDevice``)."""

    type: Literal["linear_step"] = "linear_step"
    gamma_up: float = Field(0.0, description="relative decrease of the up step at w_max")
    gamma_down: float = Field(0.0, description="relative decrease of the down step at w_min")
    gamma_up_dtod: float = Field(0.05, ge=0)
    gamma_down_dtod: float = Field(0.05, ge=0)
    allow_increasing: bool = False
    mean_bound_reference: bool = True
    mult_noise: bool = True


class SoftBoundsDevice(_WriteNoise, PulsedDevice):
    """Soft bounds: the step shrinks linearly to zero at each device's own bound."""

    type: Literal["soft_bounds"] = "soft_bounds"
    mult_noise: bool = True


class SoftBoundsReferenceDevice(_WriteNoise, PulsedDevice):
    """Soft bounds read differentially against a fixed reference r: reads see w - r
    (aihwkit ``SoftBoundsReferenceDevice``); the reference can hold each device's symmetry point."""

    type: Literal["soft_bounds_reference"] = "soft_bounds_reference"
    mult_noise: bool = False
    reference_mean: float = Field(0.0, description="added to every device's reference r")
    reference_std: float = Field(0.0, ge=0, description="device-to-device spread of r (normal, additive)")
    subtract_symmetry_point: bool = Field(False, description=(
        "add each device's symmetry point (up - down) / (up / w_max - down / w_min) to r (and to its reset bias)"))
    slope_up_dtod: float = Field(0.0, ge=0, description="device-to-device spread of the up slope (moves w_max)")
    slope_down_dtod: float = Field(0.0, ge=0, description="device-to-device spread of the down slope (moves w_min)")


class ExpStepDevice(_WriteNoise, PulsedDevice):
    """Exponential step (CMOS-like), aihwkit ``ExpStepDevice``."""

    type: Literal["exp_step"] = "exp_step"
    A_up: float = 0.00081
    A_down: float = 0.36833
    gamma_up: float = 12.44625
    gamma_down: float = 12.78785
    a: float = 0.244
    b: float = 0.2425
    dw_min_std_add: float = Field(0.0, ge=0)
    dw_min_std_slope: float = Field(0.0, ge=0)


class PowStepDevice(_WriteNoise, PulsedDevice):
    """Power-law step (Fusi & Abbott), aihwkit ``PowStepDevice``."""

    type: Literal["pow_step"] = "pow_step"
    pow_gamma: float = Field(1.0, gt=0)
    pow_gamma_dtod: float = Field(0.1, ge=0)
    pow_up_down: float = 0.0
    pow_up_down_dtod: float = Field(0.0, ge=0)


class PiecewiseStepDevice(_WriteNoise, PulsedDevice):
    """Step size interpolated between nodes spread evenly over [w_min, w_max]."""

    type: Literal["piecewise_step"] = "piecewise_step"
    piecewise_up: list[float] = Field(default_factory=lambda: [1.0], min_length=1, max_length=64)
    piecewise_down: list[float] = Field(default_factory=lambda: [1.0], min_length=1, max_length=64)

    @model_validator(mode="after")
    def _same_length(self) -> "PiecewiseStepDevice":
        if len(self.piecewise_up) != len(self.piecewise_down):
            raise ValueError("piecewise_up and piecewise_down need the same number of nodes")
        return self


DeviceParameters = Annotated[
    Union[IdealDevice, ConstantStepDevice, LinearStepDevice, SoftBoundsDevice, SoftBoundsReferenceDevice,
          ExpStepDevice, PowStepDevice, PiecewiseStepDevice],
    Field(discriminator="type"),
]
DEVICE_TYPES = {m.model_fields["type"].default: m for m in (
    IdealDevice, ConstantStepDevice, LinearStepDevice, SoftBoundsDevice, SoftBoundsReferenceDevice, ExpStepDevice,
    PowStepDevice, PiecewiseStepDevice)}
_ADAPTER = TypeAdapter(DeviceParameters)


def parse_unit_device(value: object, prefix: str = "device") -> BaseModel:
    """Validate a unit (one-array) device mapping (``{type: soft_bounds, dw_min: ...}`` or ``{preset:
    EcRamPresetDevice, ...}``, see :mod:`aimcsim.presets`) or model instance."""
    if isinstance(value, tuple(DEVICE_TYPES.values())):
        return value
    if value is None:
        value = {"type": "soft_bounds"}
    if not isinstance(value, dict):
        raise ConfigError(f"{prefix}: expected a mapping with a 'type' key, got {type(value).__name__}")
    value = resolve_device(value, prefix)  # {preset: NAME, ...}: the preset's fields under the explicit ones
    kind = value.get("type", "soft_bounds")
    if kind not in DEVICE_TYPES:
        raise ConfigError(f"{prefix}.type: unknown device type {kind!r}{did_you_mean(kind, DEVICE_TYPES)}; "
                          f"allowed: {', '.join(DEVICE_TYPES)}")
    model = DEVICE_TYPES[kind]
    try:
        return model.model_validate({**value, "type": kind})
    except ValidationError as exc:
        raise from_validation_error(exc, prefix, model) from None


@dataclass(frozen=True)
class DeviceArrays:
    """A crossbar's drawn device population, in the layout the kernels read.

    ``block[P_*]`` holds per-cross-point float32 arrays (bounds, up/down scales, and the
    shape parameter of the model: linear slopes or power exponents; soft bounds derive their
    slopes from the bounds, so the update streams two arrays less); ``shared`` the
    tile-wide float64 parameters; ``model`` the model code; ``dw_min`` the nominal step.
    """

    model: int
    block: np.ndarray
    shared: np.ndarray
    dw_min: float
    decay: np.ndarray | None = None       # per cross-point decay factor 1 - 1/lifetime (lifetime > 0)
    reset_bias: np.ndarray | None = None  # per cross-point target of the decay
    diffusion: np.ndarray | None = None   # per cross-point diffusion rate (diffusion > 0)
    reference: np.ndarray | None = None   # per cross-point reference r of a differential read (w - r)
    write_noise: float = 0.0              # std of the apparent-weight noise (write_noise_std x dw_min)

    @property
    def apparent(self) -> bool:
        """Reads see something other than the device states (write noise or a reference)."""
        return self.reference is not None or self.write_noise > 0.0


def populate(device: BaseModel, shape: tuple[int, int], rng: np.random.Generator) -> DeviceArrays:
    """Draw each cross-point's parameters once (device-to-device variation), as aihwkit does."""
    out_size, in_size = shape
    block = aligned_zeros((6, out_size, in_size), np.float32)
    shared = np.zeros(G_NODES + 2 * 64, dtype=np.float64)
    if isinstance(device, IdealDevice):
        block[P_WMAX] = np.inf
        block[P_WMIN] = -np.inf
        return DeviceArrays(IDEAL, block, shared, 0.0)

    d = device
    gauss = lambda: rng.standard_normal(shape)  # noqa: E731 - one fresh draw per cross-point
    w_max = d.w_max * (1.0 + d.w_max_dtod * gauss())
    w_min = d.w_min * (1.0 + d.w_min_dtod * gauss())
    gain = 1.0 + d.dw_min_dtod * gauss()
    r = d.up_down_dtod * gauss()
    up_bias = 0.0 if d.up_down > 0 else d.up_down
    down_bias = -d.up_down if d.up_down > 0 else 0.0
    scale_up = (up_bias + gain + r) * d.dw_min
    scale_down = (down_bias + gain - r) * d.dw_min
    if d.enforce_consistency:
        scale_up, scale_down = np.abs(scale_up), np.abs(scale_down)
        swap = w_min > w_max
        w_max, w_min = np.where(swap, w_min, w_max), np.where(swap, w_max, w_min)
        w_max, w_min = np.abs(w_max), -np.abs(w_min)
    else:
        crossed = w_min > w_max
        mid = 0.5 * (w_max + w_min)
        w_max, w_min = np.where(crossed, mid, w_max), np.where(crossed, mid, w_min)

    shape_up = np.zeros(shape)
    shape_down = np.zeros(shape)
    model = CONSTANT_STEP
    shared[G_STD] = d.dw_min_std
    reference = None
    symmetry_point = 0.0
    if isinstance(d, (SoftBoundsDevice, SoftBoundsReferenceDevice)):
        # aihwkit's soft bounds: linear step with gamma = 1 referenced to each device's own
        # bounds, i.e. step_up = scale_up (1 - w / w_max), step_down = scale_down (1 - w / w_min).
        model = SOFT_BOUNDS
        shared[G_MULT_NOISE] = 1.0 if d.mult_noise else 0.0
        if isinstance(d, SoftBoundsReferenceDevice):  # rpu_softbounds_reference_device.cpp populate
            consistent = (w_max > 0) & (w_min < 0)
            if d.slope_up_dtod > 0 or d.slope_down_dtod > 0:  # a slope spread moves the bound
                w_max = np.where(consistent, w_max / np.abs(1.0 + d.slope_up_dtod * gauss()), w_max)
                w_min = np.where(consistent, w_min / np.abs(1.0 + d.slope_down_dtod * gauss()), w_min)
            reference = d.reference_mean + d.reference_std * gauss()
            if d.subtract_symmetry_point:
                with np.errstate(divide="ignore", invalid="ignore"):
                    sp = (scale_up - scale_down) / (scale_up / w_max - scale_down / w_min)
                symmetry_point = np.where(consistent, sp, 0.0)
                reference = reference + symmetry_point
    elif isinstance(d, LinearStepDevice):
        model = LINEAR_STEP
        gam_up = d.gamma_up + d.gamma_up_dtod * gauss()
        gam_down = d.gamma_down + d.gamma_down_dtod * gauss()
        if not d.allow_increasing:
            gam_up, gam_down = np.abs(gam_up), np.abs(gam_down)
        ref_up = np.full(shape, d.w_max) if d.mean_bound_reference else w_max
        ref_down = np.full(shape, d.w_min) if d.mean_bound_reference else w_min
        with np.errstate(divide="ignore", invalid="ignore"):
            shape_up = np.where(ref_up != 0, -gam_up * scale_up / ref_up, 0.0)
            shape_down = np.where(ref_down != 0, -gam_down * scale_down / ref_down, 0.0)
        shared[G_MULT_NOISE] = 1.0 if d.mult_noise else 0.0
    elif isinstance(d, ExpStepDevice):
        model = EXP_STEP
        shared[G_ES_A_UP:G_ES_B + 1] = [d.A_up, d.A_down, d.gamma_up, d.gamma_down, d.a, d.b]
        shared[G_STD_ADD] = d.dw_min_std_add
        shared[G_STD_SLOPE] = d.dw_min_std_slope
    elif isinstance(d, PowStepDevice):
        model = POW_STEP
        g_gain = 1.0 + d.pow_gamma_dtod * gauss()
        g_r = d.pow_up_down_dtod * gauss()
        g_up_bias = 0.0 if d.pow_up_down > 0 else d.pow_up_down
        g_down_bias = -d.pow_up_down if d.pow_up_down > 0 else 0.0
        shape_up = (g_up_bias + g_gain + g_r) * d.pow_gamma
        shape_down = (g_down_bias + g_gain - g_r) * d.pow_gamma
        if d.enforce_consistency:
            shape_up, shape_down = np.abs(shape_up), np.abs(shape_down)
    elif isinstance(d, PiecewiseStepDevice):
        model = PIECEWISE_STEP
        n = len(d.piecewise_up)
        shared[G_N_NODES] = n
        shared[G_NODES:G_NODES + n] = d.piecewise_up
        shared[G_NODES + 64:G_NODES + 64 + n] = d.piecewise_down

    for row, values in ((P_WMAX, w_max), (P_WMIN, w_min), (P_SCALE_UP, scale_up),
                        (P_SCALE_DOWN, scale_down), (P_SHAPE_UP, shape_up), (P_SHAPE_DOWN, shape_down)):
        block[row] = values
    # drawn last and only when on, so that populations without them are unchanged
    decay = reset_bias = diffusion = None
    if d.lifetime > 0:  # aihwkit: lifetime_ij = lifetime (1 + dtod xi); factor 1 - 1/lifetime_ij, 0 when <= 1
        life = d.lifetime * (1.0 + d.lifetime_dtod * gauss())
        decay = np.where(life > 1.0, 1.0 - 1.0 / np.where(life > 1.0, life, 1.0), 0.0).astype(np.float32)
        reset_bias = (d.reset + d.reset_dtod * gauss() + symmetry_point).astype(np.float32)
    if d.diffusion > 0:
        diffusion = np.abs(d.diffusion * (1.0 + d.diffusion_dtod * gauss())).astype(np.float32)
    write_noise = float(getattr(d, "write_noise_std", 0.0)) * d.dw_min
    return DeviceArrays(model, block, shared, float(d.dw_min), decay, reset_bias, diffusion,
                        None if reference is None else reference.astype(np.float32), write_noise)


@njit(cache=True, inline="always")
def direction_params(block: np.ndarray, model: int, i: int, j: int, up: bool) -> tuple[float, float]:
    """(scale, shape) of cross-point (i, j) for a pulse in direction ``up``; reads only what the model uses."""
    if up:
        scale = block[P_SCALE_UP, i, j]
        if model == LINEAR_STEP or model == POW_STEP:
            return scale, block[P_SHAPE_UP, i, j]
    else:
        scale = block[P_SCALE_DOWN, i, j]
        if model == LINEAR_STEP or model == POW_STEP:
            return scale, block[P_SHAPE_DOWN, i, j]
    return scale, 0.0


@njit(cache=True, inline="always")
def linear_slope(model: int, up: bool, wmax: float, wmin: float, scale: float, shape: float) -> float:
    """Slope of the step against w for the linear family (step = slope * w + scale).

    Soft bounds: -scale / bound, so the step reaches zero at each device's own bound (aihwkit's
    soft bounds are a linear step with gamma 1 referenced to the device's bounds); linear
    step: the drawn slope ``shape``; constant step: 0. Same type as ``scale``.
    """
    if model == SOFT_BOUNDS:
        bound = wmax if up else wmin
        return -scale / bound if bound != 0.0 else scale - scale
    if model == LINEAR_STEP:
        return shape
    return scale - scale


@njit(cache=True, inline="always")
def linear_pulse(w, up: bool, slope, scale, std, mult: bool, xi, wmin, wmax):
    """Weight after one pulse of the linear family: step slope * w + scale with multiplicative
    (step * (1 + std xi)) or additive (step + scale std xi) cycle-to-cycle noise, clipped to
    the device's bounds. The update kernels fire every linear-family pulse through this, in
    float32, as aihwkit's CPU simulator."""
    one = np.float32(1.0)
    base = slope * w + scale
    dw = base * (one + std * xi) if mult else base + scale * std * xi
    w = w + dw if up else w - dw
    return min(max(w, wmin), wmax)


@njit(cache=True, inline="always")
def step_size(model: int, w: float, up: bool, wmax: float, wmin: float, scale: float, shape: float,
              shared: np.ndarray) -> float:
    """Magnitude of the noise-free weight change of one pulse at weight ``w`` in direction ``up``.

    ``scale`` and ``shape`` are the cross-point's parameters for that direction
    (see :func:`direction_params`).
    """
    if model == SOFT_BOUNDS or model == LINEAR_STEP or model == CONSTANT_STEP:
        return linear_slope(model, up, wmax, wmin, scale, shape) * w + scale
    if model == EXP_STEP:
        span = wmax - wmin
        if span <= 0.0:
            return 0.0
        z = 2.0 * w / span * shared[G_ES_A] + shared[G_ES_B]
        if up:
            return max(1.0 - shared[G_ES_A_UP] * math.exp(shared[G_ES_GAMMA_UP] * z), 0.0) * scale
        return max(1.0 - shared[G_ES_A_DOWN] * math.exp(-shared[G_ES_GAMMA_DOWN] * z), 0.0) * scale
    if model == POW_STEP:
        span = wmax - wmin
        if span == 0.0:
            return 0.0
        if up:
            return scale * max((wmax - w) / span, 0.0) ** shape
        return scale * max((w - wmin) / span, 0.0) ** shape
    if model == PIECEWISE_STEP:
        n = int(shared[G_N_NODES])
        off = G_NODES if up else G_NODES + 64
        if n <= 1 or wmax <= wmin:
            return shared[off] * scale
        sections = n - 1
        ws = max((w - wmin) / (wmax - wmin) * sections, 0.0)
        k = min(int(math.floor(ws)), sections - 1)
        t = min(ws - k, 1.0)
        return scale * ((1.0 - t) * shared[off + k] + t * shared[off + k + 1])
    return 0.0


@njit(cache=True, inline="always")
def pulse(model: int, w: float, up: bool, wmax: float, wmin: float, scale: float, shape: float,
          shared: np.ndarray, xi: float) -> float:
    """Weight after one pulse with cycle-to-cycle noise ``xi`` (a standard normal draw), clipped.

    The linear family goes through :func:`linear_pulse` in float32, exactly as the update
    kernels fire it; the other models through :func:`step_size`.
    """
    std = shared[G_STD]
    if model == SOFT_BOUNDS or model == LINEAR_STEP or model == CONSTANT_STEP:
        f32 = np.float32
        mult = shared[G_MULT_NOISE] > 0.0 or model == CONSTANT_STEP
        slope = linear_slope(model, up, f32(wmax), f32(wmin), f32(scale), f32(shape))
        return linear_pulse(f32(w), up, slope, f32(scale), f32(std), mult, f32(xi), f32(wmin), f32(wmax))
    dw = step_size(model, w, up, wmax, wmin, scale, shape, shared)
    if model == EXP_STEP and (shared[G_STD_ADD] > 0.0 or shared[G_STD_SLOPE] > 0.0):
        dw = dw + std * (abs(dw) + shared[G_STD_ADD] + shared[G_STD_SLOPE] * abs(w)) * xi
    else:
        dw = dw * (1.0 + std * xi)
    w = w + dw if up else w - dw
    return min(max(w, wmin), wmax)


@njit(cache=True, fastmath={"contract"})  # the update kernels' flags: the same arithmetic, bit for bit
def _pulse_sequence(block: np.ndarray, model: int, shared: np.ndarray, directions: np.ndarray,
                    state: np.uint64) -> np.ndarray:
    """Weights after each pulse of ``directions`` for every device of a (1, n) population."""
    n = block.shape[2]
    out = np.empty((directions.shape[0], n), dtype=np.float64)
    noisy = shared[G_STD] > 0.0
    for j in range(n):
        w = np.float32(0.0)
        w = min(max(w, block[P_WMIN, 0, j]), block[P_WMAX, 0, j])
        for t in range(directions.shape[0]):
            xi = 0.0
            if noisy:
                state, xi = next_normal(state)
            up = directions[t] > 0
            scale, shape = direction_params(block, model, 0, j, up)
            w = np.float32(pulse(model, w, up, block[P_WMAX, 0, j], block[P_WMIN, 0, j], scale, shape,
                                 shared, xi))
            out[t, j] = w
    return out


def response_curve(device: object, directions: object, n_traces: int = 1, seed: int = 0) -> np.ndarray:
    """Weight after each single pulse, starting at 0, for ``n_traces`` devices of the model.

    ``directions`` holds +1 for a pulse that raises w and -1 for one that lowers it. Each
    trace is a different device drawn with the model's device-to-device variation; the
    cycle-to-cycle noise follows ``dw_min_std``. Returns an array (len(directions), n_traces).
    """
    params = parse_unit_device(device)
    if isinstance(params, IdealDevice):
        raise ConfigError("device.type: 'ideal' has no pulse response (its update is floating point)")
    if not isinstance(n_traces, (int, np.integer)) or n_traces < 1:
        raise ConfigError(f"n_traces: must be a positive integer, got {n_traces!r}")
    dirs = np.asarray(directions)
    if dirs.ndim != 1 or not np.all(np.isin(dirs, (-1, 1))):
        raise ConfigError("directions: must be a 1-D sequence of +1 (up) and -1 (down) pulses")
    rng = np.random.default_rng([int(seed), 0xD7])
    arrays = populate(params, (1, int(n_traces)), rng)
    state = np.uint64(stream(seed_key(int(seed), 0xD8), np.uint64(0)))
    return _pulse_sequence(arrays.block, arrays.model, arrays.shared, dirs.astype(np.int8), state)


def plot_response(device: object, n_pulses: int = 1000, n_traces: int = 3, seed: int = 0, ax=None):
    """Draw the up-then-down pulse response of a device model (the first curve to look at)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 - plotting is optional at import time

    directions = np.concatenate([np.ones(n_pulses, np.int8), -np.ones(n_pulses, np.int8)])
    curve = response_curve(device, directions, n_traces=n_traces, seed=seed)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(directions) + 1), curve, lw=1)
    ax.axvline(n_pulses, color="0.6", ls=":", lw=1)
    name = parse_unit_device(device).type
    ax.set(xlabel="pulse number (up, then down)", ylabel="weight", title=f"{name} response")
    return ax
