"""Compound devices: two arrays per weight, with aihwkit's names, fields and defaults.

A compound device is a training algorithm built into the crossbar. The transfer family
(aihwkit ``TransferCompound`` and its subclasses, ``configs/compounds.py``) holds a fast array
A, which the SGD update pulses, and a slow array C, which periodic **transfers** fill: a
transfer reads one-hot columns (or rows) of A through its own IO chain and writes what it read
onto C as a pulsed update; reads see W = gamma_A A + gamma_C C.

- ``transfer_compound``: Tiki-Taka (Gokmen & Haensch 2020): the read is written to C at once.
- ``buffered_transfer_compound``: TTv2 (Gokmen 2021): reads accumulate in a digital buffer H
  that fires whole pulses on C when it crosses a threshold.
- ``chopped_transfer_compound``: c-TTv2 (Rasch et al. 2024): TTv2 plus random sign choppers
  on A's inputs and outputs, undone at read-out, which cancel A's drift and bias.
- ``dynamic_transfer_compound``: AGAD (Rasch et al. 2024): c-TTv2 whose buffer integrates
  the difference between A's read and the running mean of the previous chopper period.

``mixed_precision_compound`` (Nandakumar et al. 2020) holds one analog array and a digital
matrix chi that accumulates lr d x^T; rows of chi are written as whole pulses once they
exceed the device granularity.

Each config class below states its aihwkit defaults (they differ between classes) and where
aimcsim follows aihwkit's CPU code rather than its documentation. Field checks give one-line
errors naming the key; :func:`parse_device` is the one entry point for any device mapping,
unit or compound.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .devices import DEVICE_TYPES, IdealDevice, parse_unit_device
from .errors import ConfigError, did_you_mean, from_validation_error, parse_model
from .params import IOParameters, UpdateParameters

#: aihwkit's transfer_update default of the buffered, chopped and dynamic compounds
ONE_PULSE_UPDATE = {"desired_bl": 1, "update_bl_management": False, "update_management": False}
#: a transfer read has neither noise nor bound management (aihwkit turns both off)
TRANSFER_IO = {"noise_management": "none", "bound_management": "none"}


class _Compound(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TransferCompound(_Compound):
    """Tiki-Taka (aihwkit ``TransferCompound``): the SGD update pulses A only; every
    ``transfer_every`` updates, ``n_reads_per_transfer`` one-hot columns of A (rows if
    ``transfer_columns`` is false) are read through ``transfer_forward`` and written onto C with
    ``transfer_update`` at learning rate ``transfer_lr`` (times the SGD rate if
    ``scale_transfer_lr``); columns are taken in order, wrapping at the edge.

    Two unit devices exactly ([A, C]); aihwkit's longer chains are not modelled. aihwkit's CPU
    code counts updates per vector and, with ``units_in_mbatch``, transfers every
    ceil(transfer_every x rows of the update) vectors; the pulse granularity of A's update is
    the mean dw_min of A and C (``VectorRPUDevice::populate`` overrides the fast device's value
    that the documentation names). aihwkit's ``transfer_every: 0`` (never transfer) and negative
    values (automatic) are not accepted; more reads per transfer than columns read every column
    once (aihwkit clamps them too). Ideal unit devices are an aimcsim extension (aihwkit
    takes pulsed devices only): their updates and transfer writes are exact.
    """

    type: Literal["transfer_compound"] = "transfer_compound"
    unit_cell_devices: list[Any] = Field(description="[A, C]: the fast array's device, then the slow array's")
    gamma: float = Field(0.0, description="weight of A in what reads see: W = gamma A + C")
    gamma_vec: list[float] = Field(default_factory=list, description="[gamma_A, gamma_C]; replaces gamma if given")
    transfer_every: float = Field(1.0, gt=0, description="updates between transfers (see units_in_mbatch)")
    units_in_mbatch: bool = Field(True, description="transfer_every counts mini-batches (update calls), not vectors")
    n_reads_per_transfer: int = Field(1, ge=1, description="consecutive columns (rows) read per transfer")
    transfer_columns: bool = Field(True, description="read columns of A (forward reads); false: rows (transposed)")
    with_reset_prob: float = Field(0.0, ge=0, le=1, description=(
        "after a column's read, reset A's columns of that transfer with this probability (columns only)"))
    random_selection: bool = Field(False, description="start each transfer at a random column instead of the next")
    fast_lr: float = Field(1.0, ge=0, description="learning rate of A's update (0: the SGD rate)")
    transfer_lr: float = Field(1.0, ge=0, description="learning rate of the transfer write onto C")
    scale_transfer_lr: bool = Field(True, description="multiply transfer_lr by the SGD learning rate")
    scale_fast_lr: bool = Field(True, description="multiply fast_lr by the SGD learning rate")
    transfer_forward: IOParameters = Field(default_factory=lambda: IOParameters(**TRANSFER_IO),
                                           description="IO chain of the transfer read")
    transfer_update: UpdateParameters = Field(default_factory=UpdateParameters,
                                              description="pulses of the transfer write onto C")

    @model_validator(mode="after")
    def _check(self) -> "TransferCompound":
        if self.gamma_vec:
            if len(self.gamma_vec) != 2:
                raise ValueError(f"gamma_vec: needs one weight per unit device (2), got {len(self.gamma_vec)}")
            if self.gamma_vec[1] == 0:
                raise ValueError("gamma_vec: the last device (C) must contribute to the weights (nonzero)")
        if not self.units_in_mbatch and self.transfer_every < 0.5:
            raise ValueError(f"transfer_every: counts vectors here (units_in_mbatch: false) and {self.transfer_every} "
                             f"rounds to 0, so no transfer would ever run; use at least 0.5")
        if self.with_reset_prob > 0 and not self.transfer_columns:
            raise ValueError("with_reset_prob: resets need column transfers (transfer_columns: true), as in aihwkit")
        for key in ("noise_management", "bound_management"):
            if getattr(self.transfer_forward, key) != "none":
                raise ValueError(f"transfer_forward.{key}: a transfer read has none (aihwkit turns it off); "
                                 f"only 'none' is accepted")
        return self

    @property
    def weights_gamma(self) -> tuple[float, float]:
        """(gamma_A, gamma_C) of W = gamma_A A + gamma_C C (aihwkit's gamma_vec)."""
        return (self.gamma_vec[0], self.gamma_vec[1]) if self.gamma_vec else (self.gamma, 1.0)


class BufferedTransferCompound(TransferCompound):
    """TTv2 (aihwkit ``BufferedTransferCompound``): a transfer adds the read of A, times the
    transfer rate, into a digital buffer H; where |H| reaches thr = thres_scale x dw_min(C),
    n = trunc(H / thr) (at most desired_bl of ``transfer_update``) pulses of ``step`` x dw_min(C)
    are fired on C, and H keeps ``momentum`` x H (``forget_buffer``) or H - (1 - momentum) n thr.
    The transfer rate is scaled by gamma_A / gamma_C when both are positive (aihwkit's code).
    """

    type: Literal["buffered_transfer_compound"] = "buffered_transfer_compound"
    thres_scale: float = Field(1.0, gt=0, description="buffer threshold in units of C's dw_min")
    step: float = Field(1.0, gt=0, description="size of one transfer pulse in units of C's dw_min")
    momentum: float = Field(0.1, ge=0, le=1, description="share of the buffer kept after a transfer")
    forget_buffer: bool = Field(True, description="after pulses, keep momentum x H (else subtract what was fired)")
    transfer_update: UpdateParameters = Field(default_factory=lambda: UpdateParameters(**ONE_PULSE_UPDATE),
                                              description="pulses of the transfer write onto C")


class ChoppedTransferCompound(TransferCompound):
    """c-TTv2 (aihwkit ``ChoppedTransferCompound``): A's update is written through sign choppers
    on its inputs (columns) and outputs (rows); a transfer reads one column (sequentially, one
    per transfer), undoes the signs, and adds it times lr_scale into the buffer H, which fires
    trunc(H) pulses (at most desired_bl) of ``step`` x dw_min(C) where |H| >= 1.

    lr_scale = transfer rate / g with g = buffer_granularity x dw_min(A) (x auto_granularity /
    (columns x transfer_every) when ``auto_granularity`` > 0); with
    ``correct_gradient_magnitudes`` g is scaled by dw_min(C) / dw_min(A) and lr_scale divided by
    A's pulse-count rate. After the read of column i its in-chopper flips with probability
    ``in_chop_prob`` (``in_chop_random``; else regularly every ceil(1 / in_chop_prob) sweeps);
    after each full sweep every out-chopper flips with ``out_chop_prob``. ``auto_scale`` sets
    A's rate to fast_lr x desired_bl x dw_min(A) / (m_x m_d), running means of max|x| and max|d|.
    Reads see W = gamma_A (signs) A + gamma_C C. aihwkit's C++ header says buffer_granularity
    is not scaled by the weight granularity; its code scales it by dw_min(A), as aimcsim does.
    """

    type: Literal["chopped_transfer_compound"] = "chopped_transfer_compound"
    in_chop_prob: float = Field(0.1, ge=0, le=1, description="flip probability of a column's in-chopper per read")
    in_chop_random: bool = Field(True, description="flip at random (else regularly every ceil(1/in_chop_prob) sweeps)")
    out_chop_prob: float = Field(0.0, ge=0, le=1, description="flip probability of each out-chopper per sweep")
    buffer_granularity: float = Field(1.0, gt=0, description="buffer threshold in units of A's dw_min")
    auto_granularity: float = Field(0.0, ge=0, description="scale the threshold by this / (columns x transfer_every)")
    step: float = Field(1.0, gt=0, description="size of one transfer pulse in units of C's dw_min")
    momentum: float = Field(0.0, ge=0, le=1, description="share of the buffer kept after a transfer")
    forget_buffer: bool = Field(True, description="after pulses, keep momentum x H (else subtract what was fired)")
    no_buffer: bool = Field(False, description="no digital buffer: each read is thresholded alone (TTv1-like)")
    units_in_mbatch: bool = Field(False, description="transfer_every counts mini-batches (update calls), not vectors")
    auto_scale: bool = Field(False, description="scale A's rate by running maxima of |x| and |d|")
    auto_momentum: float = Field(0.99, ge=0, lt=1, description="momentum of auto_scale's running maxima")
    correct_gradient_magnitudes: bool = Field(False, description="divide the transfer rate by A's rate")
    scale_fast_lr: bool = Field(False, description="multiply fast_lr by the SGD learning rate")
    transfer_update: UpdateParameters = Field(default_factory=lambda: UpdateParameters(**ONE_PULSE_UPDATE),
                                              description="pulses of the transfer write onto C")

    @model_validator(mode="after")
    def _chopped(self) -> "ChoppedTransferCompound":
        for key, allowed in (("n_reads_per_transfer", 1), ("random_selection", False), ("with_reset_prob", 0.0)):
            if getattr(self, key) != allowed:
                raise ValueError(f"{key}: the chopped transfer reads one column per transfer in order; only "
                                 f"{allowed!r} is accepted (as in aihwkit)")
        return self


class DynamicTransferCompound(ChoppedTransferCompound):
    """AGAD (aihwkit ``DynamicTransferCompound``): the buffer integrates (read - mu_past), signs
    undone, where mu_past is the running mean of the column's reads at the end of its previous
    chopper period (a running mean with weight min(tail_weightening / n, 1), n = ceil(1 /
    in_chop_prob) reads per period); in-choppers flip regularly every n reads of their column
    (or also at random with ``in_chop_random``); C is written only after the first n sweeps.
    ``buffer_cap`` (x desired_bl) bounds H when ``forget_buffer`` is false (0: no bound).
    """

    type: Literal["dynamic_transfer_compound"] = "dynamic_transfer_compound"
    in_chop_prob: float = Field(0.1, gt=0, le=1, description="1 / reads per chopper period (regular switching)")
    in_chop_random: bool = Field(False, description="also flip at random with in_chop_prob")
    tail_weightening: float = Field(5.0, gt=0, description="weight of a period's late reads in its running mean")
    buffer_cap: float = Field(0.0, ge=0, description="bound of |H| in units of desired_bl (forget_buffer false)")
    experimental_correct_accumulation: bool = Field(False, description=(
        "divide the buffer's increment by the reads so far in the period (aihwkit's experimental option)"))

    @model_validator(mode="after")
    def _dynamic(self) -> "DynamicTransferCompound":
        if self.auto_momentum <= 0:
            raise ValueError("auto_momentum: must be in (0, 1) for the dynamic transfer (as in aihwkit)")
        if self.out_chop_prob != 0:
            raise ValueError("out_chop_prob: the dynamic transfer never flips its out-choppers (aihwkit's code); "
                             "only 0 is accepted")
        return self


class MixedPrecisionCompound(_Compound):
    """Mixed precision (aihwkit ``MixedPrecisionCompound``): a digital chi accumulates lr d x^T
    (inputs optionally quantised to n_x_bins / n_d_bins levels of their absolute maximum); every
    transfer_every updates (counted after the first) ``n_rows_per_transfer`` rows of chi (all:
    -1) fire trunc(chi / eps) pulses of transfer_lr x eps each on the analog array, eps =
    ``granularity`` or the device's dw_min, and keep chi - n eps. The row writes use the layer's
    update settings with update and BL management on (as aihwkit). aihwkit's CPU code writes the
    quantised d into the wrong slot when only one of n_x_bins, n_d_bins is set; aimcsim
    quantises as documented. ``device`` defaults to soft bounds (aihwkit's default, an empty
    vector unit cell, cannot train).
    """

    type: Literal["mixed_precision_compound"] = "mixed_precision_compound"
    device: Any = Field(default_factory=lambda: parse_unit_device(None), description="the analog array's device")
    transfer_every: int = Field(1, ge=1, description="mini-batches between transfers")
    n_rows_per_transfer: int = Field(-1, description="rows of chi written per transfer; -1: all")
    random_row: bool = Field(False, description="start each transfer at a random row instead of the next")
    granularity: float = Field(0.0, ge=0, description="pulse size eps; 0: the device's dw_min")
    transfer_lr: float = Field(1.0, ge=0, description="scale of the writes onto the analog array")
    n_x_bins: int = Field(0, ge=0, description="quantisation levels of x before the outer product (0: none)")
    n_d_bins: int = Field(0, ge=0, description="quantisation levels of d before the outer product (0: none)")
    stoc_round_x: bool = Field(True, description="stochastic rounding of the quantised x")
    stoc_round_d: bool = Field(True, description="stochastic rounding of the quantised d")

    @model_validator(mode="after")
    def _check(self) -> "MixedPrecisionCompound":
        if self.n_rows_per_transfer == 0 or self.n_rows_per_transfer < -1:
            raise ValueError(f"n_rows_per_transfer: a positive row count or -1 (all rows), got {self.n_rows_per_transfer}")
        for key in ("n_x_bins", "n_d_bins"):
            if getattr(self, key) == 1:
                raise ValueError(f"{key}: 0 (no quantisation) or at least 2 levels, got 1")
        if isinstance(self.device, IdealDevice) and self.granularity <= 0:
            raise ValueError("granularity: an ideal device has no dw_min; set the pulse size (as aihwkit asks)")
        return self


TRANSFER_TYPES: dict[str, type[TransferCompound]] = {m.model_fields["type"].default: m for m in (
    TransferCompound, BufferedTransferCompound, ChoppedTransferCompound, DynamicTransferCompound)}
COMPOUND_TYPES: dict[str, type[BaseModel]] = {**TRANSFER_TYPES, "mixed_precision_compound": MixedPrecisionCompound}
CompoundDevice = Annotated[Union[tuple(COMPOUND_TYPES.values())], Field(discriminator="type")]
ALL_DEVICE_TYPES = (*DEVICE_TYPES, *COMPOUND_TYPES)


def _unit(value: object, prefix: str, needs_granularity: str | None) -> BaseModel:
    """A unit device inside a compound (a compound there is refused, as aihwkit does)."""
    if isinstance(value, dict) and value.get("type") in COMPOUND_TYPES:
        raise ConfigError(f"{prefix}.type: {value['type']!r} is a compound device; a compound takes unit "
                          f"devices here ({', '.join(DEVICE_TYPES)})")
    device = parse_unit_device(value, prefix)
    if needs_granularity and isinstance(device, IdealDevice):
        raise ConfigError(f"{prefix}.type: 'ideal' has no pulse granularity, which {needs_granularity} needs; use a "
                          f"pulsed device (e.g. constant_step with dw_min_std: 0)")
    return device


def parse_compound(value: dict, prefix: str = "device") -> BaseModel:
    """Validate a compound device mapping: its unit devices, transfer IO and update, then its fields."""
    kind = value["type"]
    model = COMPOUND_TYPES[kind]
    data = dict(value)
    if model is MixedPrecisionCompound:
        if "device" in data:
            data["device"] = _unit(data["device"], f"{prefix}.device", None)
    else:
        units = data.get("unit_cell_devices")
        if not isinstance(units, list) or len(units) != 2:
            got = f"{len(units)} devices" if isinstance(units, list) else repr(units)
            raise ConfigError(f"{prefix}.unit_cell_devices: {kind} takes a list of exactly 2 unit devices [A, C], "
                              f"got {got}")
        needs = None if model is TransferCompound else kind
        data["unit_cell_devices"] = [_unit(u, f"{prefix}.unit_cell_devices[{i}]", needs) for i, u in enumerate(units)]
        defaults = model.model_fields
        for key, cls, base in (("transfer_forward", IOParameters, TRANSFER_IO),
                               ("transfer_update", UpdateParameters, None)):
            if key in data and not isinstance(data[key], cls):
                if data[key] is not None and not isinstance(data[key], dict):
                    raise ConfigError(f"{prefix}.{key}: expected a mapping of settings, got {type(data[key]).__name__}")
                start = base if base is not None else defaults[key].default_factory().model_dump()
                data[key] = parse_model(cls, {**start, **(data[key] or {})}, f"{prefix}.{key}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = str(from_validation_error(exc, prefix, model))
    # a whole-model check names its key first ("device: gamma_vec: ..."): put it on the path
    head, _, rest = error.partition(": ")
    key, sep, message = rest.partition(": ")
    if head == prefix and sep and re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", key):
        error = f"{prefix}.{key}: {message}"
    raise ConfigError(error)


def has_transfers(device: BaseModel) -> bool:
    """Whether the device runs transfers (op T): every compound does."""
    return isinstance(device, tuple(COMPOUND_TYPES.values()))


def learning_rate_acts_alone(device: BaseModel) -> bool:
    """Whether the learning rate acts apart from its product with the gradient (lr d): in a
    transfer compound whose transfers scale with it (``scale_transfer_lr``) or whose fast
    array updates at a fixed rate (``fast_lr`` > 0 without ``scale_fast_lr``)."""
    if not has_transfers(device) or isinstance(device, MixedPrecisionCompound):
        return False
    return bool(device.scale_transfer_lr or (device.fast_lr > 0 and not device.scale_fast_lr))


def _units(device: BaseModel) -> list[BaseModel]:
    if isinstance(device, MixedPrecisionCompound):
        return [device.device]
    return list(getattr(device, "unit_cell_devices", [device]))


def floating_updates(device: BaseModel) -> bool:
    """Whether every array of the device updates in floating point (ideal devices): no pulses."""
    return all(isinstance(u, IdealDevice) for u in _units(device))


def fires_pulses(device: BaseModel, update: UpdateParameters) -> bool:
    """Whether the run's updates (or a compound's transfers) fire pulses on some array."""
    if floating_updates(device):
        return False
    return has_transfers(device) or update.pulse_type not in ("expected", "none")


def device_unused_keys(device: BaseModel, update: UpdateParameters) -> dict[str, str]:
    """The device settings nothing reads under these update settings -> why (a compound's with
    their path inside it)."""
    if isinstance(device, MixedPrecisionCompound):
        return {f"device.{k}": why for k, why in device.device.unused_keys(update.pulse_type).items()}
    if has_transfers(device):
        resets = device.with_reset_prob > 0  # a transfer resets the columns of A it read
        unused = {f"unit_cell_devices.{i}.{k}": why for i, unit in enumerate(device.unit_cell_devices)
                  for k, why in unit.unused_keys(update.pulse_type, resets and i == 0).items()}
        unused |= {f"transfer_forward.{k}": why for k, why in device.transfer_forward.unused_keys().items()}
        unused["transfer_forward.inp_res"] = ("has no effect: a transfer reads one-hot vectors, and every DAC "
                                              "resolution represents 1 (the input bound) exactly")
        slow_floating = isinstance(device.unit_cell_devices[1], IdealDevice)
        unused |= {f"transfer_update.{k}": why
                   for k, why in device.transfer_update.unused_keys(floating=slow_floating).items()}
        return unused
    return device.unused_keys(update.pulse_type)


def parse_device(value: object, prefix: str = "device") -> BaseModel:
    """Validate any device mapping or model instance: a unit device (``{type: soft_bounds, ...}``,
    ``{preset: NAME, ...}``) or a compound (``{type: transfer_compound, unit_cell_devices: [...]}``)."""
    if isinstance(value, tuple(COMPOUND_TYPES.values())):
        return value
    if isinstance(value, dict) and value.get("type") in COMPOUND_TYPES:
        return parse_compound(value, prefix)
    if isinstance(value, dict) and "type" in value and value["type"] not in DEVICE_TYPES:
        kind = value["type"]
        raise ConfigError(f"{prefix}.type: unknown device type {kind!r}{did_you_mean(kind, ALL_DEVICE_TYPES)}; "
                          f"allowed: {', '.join(ALL_DEVICE_TYPES)}")
    return parse_unit_device(value, prefix)
