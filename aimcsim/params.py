"""Typed parameter groups of a tile's reads and updates, with aihwkit's names and defaults.

``IOParameters`` mirrors ``aihwkit.simulator.parameters.io.IOParameters`` (the DAC -> array
-> noise -> ADC chain of one analog read) and ``UpdateParameters`` mirrors aihwkit's
``UpdateParameters`` (how a rank-one update is turned into pulse trains). Users' aihwkit
settings therefore carry over by name. aihwkit parameters that aimcsim does not model are
rejected with a clear message instead of being silently ignored.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import parse_model

#: aihwkit IO settings that aimcsim does not model; accepted only at their neutral value.
_UNMODELLED_IO = {
    "inp_asymmetry": 0.0, "out_asymmetry": 0.0, "w_noise": 0.0, "ir_drop": 0.0,
    "out_nonlinearity": 0.0, "out_noise_std": 0.0, "r_series": 0.0, "v_offset_std": 0.0,
    "inp_sto_round": False, "out_sto_round": False,
}
_UNMODELLED_UPDATE = {"res": 0.0, "sto_round": False, "x_res_implicit": 0.0,
                      "d_res_implicit": 0.0, "d_sparsity": False}


def _reject_unmodelled(values: object, table: dict, group: str) -> object:
    if isinstance(values, dict):
        for key, neutral in table.items():
            if key in values:
                if values[key] != neutral:
                    raise ValueError(
                        f"{key} is an aihwkit {group} setting that aimcsim does not model; "
                        f"only {neutral!r} is accepted")
                values = {k: v for k, v in values.items() if k != key}
    return values


class IOParameters(BaseModel):
    """One analog read: input noise management, DAC, array, output noise, ADC, bound management.

    Resolutions follow aihwkit: a value in (0, 1] is the bin width as a fraction of the full
    range 2*bound, a value > 1 is a number of steps, 0 turns quantisation off.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    perfect: bool = Field(False, alias="is_perfect", description="exact floating-point read")
    inp_bound: float = Field(1.0, gt=0, description="DAC clipping bound of the (scaled) input")
    inp_res: float = Field(1 / (2**7 - 2), ge=0, description="DAC resolution (7 bit)")
    inp_noise: float = Field(0.0, ge=0, description="std of Gaussian noise on each DAC value")
    out_bound: float = Field(12.0, gt=0, description="ADC saturation bound")
    out_res: float = Field(1 / (2**9 - 2), ge=0, description="ADC resolution (9 bit)")
    out_noise: float = Field(0.06, ge=0, description="std of additive output noise, before the ADC")
    out_scale: float = Field(1.0, gt=0, description="digital scale of the result")
    noise_management: Literal["abs_max", "max", "constant", "none"] = Field(
        "abs_max", description="input scaling before the DAC")
    nm_thres: float = Field(0.0, ge=0, description="upper limit of the noise-management scale (0: none)")
    bound_management: Literal["iterative", "none"] = Field(
        "iterative", description="repeat the read with halved input while outputs saturate")
    max_bm_factor: int = Field(1000, ge=1, description="largest input reduction of bound management")
    max_bm_res: float = Field(0.25, gt=0, description="stop reducing when reduction > max_bm_res/inp_res")
    bm_test_negative_bound: bool = Field(True, description="negative saturation also triggers a pass")

    @model_validator(mode="before")
    @classmethod
    def _unmodelled(cls, values: object) -> object:
        values = _reject_unmodelled(values, _UNMODELLED_IO, "IO")
        if isinstance(values, dict):
            for key in ("noise_management", "bound_management"):
                if isinstance(values.get(key), str):
                    values = {**values, key: values[key].lower()}
        return values

    @model_validator(mode="after")
    def _consistent(self) -> "IOParameters":
        if self.noise_management != "none" and self.inp_bound != 1.0:
            raise ValueError("noise management expects inp_bound == 1.0 (as in aihwkit)")
        return self

    def unused_keys(self) -> dict[str, str]:
        """The IO settings a read of these settings does not use -> why."""
        if self.perfect:
            return {key: "has no effect: perfect: true reads exactly (no DAC, noise, ADC or management)"
                    for key in type(self).model_fields if key != "perfect"}
        unused = {}
        if self.noise_management == "none":
            unused["nm_thres"] = "has no effect: noise_management is none"
        if self.bound_management == "none":
            for key in ("max_bm_factor", "max_bm_res", "bm_test_negative_bound"):
                unused[key] = "has no effect: bound_management is none"
        return unused

    def as_array(self) -> np.ndarray:
        """The settings packed for the read kernel (see ``kernels.IO_*`` indices)."""
        def absolute(res: float, bound: float) -> float:
            r = 1.0 / res if res > 1.0 else res
            return r * 2.0 * bound
        nm = {"none": 0, "abs_max": 1, "max": 2, "constant": 3}[self.noise_management]
        return np.array([
            self.inp_bound, absolute(self.inp_res, self.inp_bound), self.inp_noise,
            self.out_bound, absolute(self.out_res, self.out_bound), self.out_noise,
            self.out_scale, nm, self.nm_thres, 1.0 if self.bound_management == "iterative" else 0.0,
            self.max_bm_factor, self.max_bm_res, 1.0 if self.bm_test_negative_bound else 0.0,
        ], dtype=np.float64)


class UpdateParameters(BaseModel):
    """How a rank-one update W <- W - lr d x^T is realised on the crossbar."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    pulse_type: Literal["stochastic_compressed", "deterministic_implicit", "expected", "none"] = Field(
        "stochastic_compressed",
        description="stochastic pulse trains, deterministic pulse counts, the expected device "
                    "response (the theory's model), or exact floating point")
    desired_bl: int = Field(31, ge=1, description="(maximal) pulse-train length BL (any length, as aihwkit)")
    fixed_bl: bool = Field(True, description="without update-BL management, always use desired_bl")
    update_bl_management: bool = Field(
        True, description="BL = min(ceil(lr*max|x|*max|d|/dw_min), desired_bl)")
    update_management: bool = Field(
        True, description="balance the pulse probabilities of x and d by their maxima")
    um_grad_scale: float = Field(1.0, gt=0, description="weight of d in update management")

    def unused_keys(self, floating: bool = False) -> dict[str, str]:
        """The update settings these settings (and a device that updates in floating point:
        ``floating``) do not use -> why."""
        if floating:
            return {key: "has no effect: the device (ideal) updates in floating point, without pulses"
                    for key in type(self).model_fields}
        if self.pulse_type in ("expected", "none"):
            return {key: f"has no effect: pulse_type {self.pulse_type} fires no pulse trains"
                    for key in PULSE_TRAIN_KEYS}
        unused = {}
        if self.update_bl_management:
            why = "has no effect: update_bl_management is on, which sets BL and manages the update itself"
            unused["fixed_bl"] = why
            unused["update_management"] = why
        elif not self.update_management:
            unused["um_grad_scale"] = "has no effect: update_management and update_bl_management are off"
        return unused

    @model_validator(mode="before")
    @classmethod
    def _unmodelled(cls, values: object) -> object:
        values = _reject_unmodelled(values, _UNMODELLED_UPDATE, "update")
        if isinstance(values, dict) and isinstance(values.get("pulse_type"), str):
            values = {**values, "pulse_type": values["pulse_type"].lower()}
        return values


#: the update settings only pulse trains read
PULSE_TRAIN_KEYS = ("desired_bl", "fixed_bl", "update_bl_management", "update_management", "um_grad_scale")


def parse_backward_io(value: object, prefix: str = "io.backward") -> IOParameters:
    """The backward read's IO parameters: aihwkit's, except that bound management defaults to
    ``none`` (aihwkit's backward default) unless the caller set it, for a mapping and a typed
    object alike. The one place that default is decided."""
    if isinstance(value, BaseModel) and not isinstance(value, IOParameters):
        value = value.model_dump()
    if isinstance(value, IOParameters):
        if "bound_management" in value.model_fields_set:
            return value
        return value.model_copy(update={"bound_management": "none"})
    if value is None:
        value = {}
    if isinstance(value, dict) and "bound_management" not in value:
        value = {**value, "bound_management": "none"}
    return parse_model(IOParameters, value, prefix)
