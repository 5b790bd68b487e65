"""aihwkit's weight mapping: a layer's weights spread over the conductance range, scaled back in digital.

aihwkit's ``MappingParameter(weight_scaling_omega=w)`` (``simulator/tiles/periphery.py``:
``apply_weight_scaling``, ``post_forward``, ``pre_backward``, ``pre_update``) programs a
layer's logical weights W (the analog bias column included) as W / alpha, with
alpha = max |W| / omega over the whole matrix, or per output row with
``weight_scaling_columnwise`` (aihwkit's "columns" are the outputs), so the largest weight sits
at omega in the device's units. alpha is a digital output scale fixed when the weights are
set (never learned): a forward read is alpha * (W/alpha) x, a transposed read reads
(W/alpha)^T (alpha d), and an update pulses d / alpha into the array so that the logical
weights move by -lr d x^T as without mapping. ``weight_scaling_lr_compensation`` moves the
mean of 1/alpha from d into the learning rate instead (the same product). Learned output
scales (``learn_out_scaling``, ``out_scaling_columnwise``) are digital parameters trained by
the optimizer, which aimcsim does not model: they are refused by name, and so is
``digital_bias: true`` (aihwkit's default; aimcsim's biases are the crossbar's last column,
aihwkit's ``digital_bias: false``).

:class:`MappedCrossbar` wraps any crossbar (:class:`~aimcsim.crossbar.Crossbar`) with these
scales; everything else (reports, transfers, tiles) is the wrapped crossbar's. With
``weight_scaling_omega: 0`` (aihwkit's default) there is no mapping and no wrapper.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .applicability import Unused


class MappingConfig(BaseModel):
    """The ``mapping`` section: aihwkit's MappingParameter names, defaults and semantics."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    weight_scaling_omega: float = Field(
        0.0, ge=0, description="map each layer's largest |weight| to this value in device units, with a digital "
                               "output scale (0: no mapping)")
    weight_scaling_columnwise: bool = Field(False, description="one scale per output (row of W) instead of per layer")
    weight_scaling_lr_compensation: bool = Field(
        False, description="divide the learning rate by the mean scale instead of each gradient row by its scale")
    digital_bias: bool = Field(False, description="biases on the crossbar (its last column) as aimcsim models "
                                                 "them; must be false")
    learn_out_scaling: bool = Field(False, description="learned digital output scales: not modelled, must be false")
    out_scaling_columnwise: bool = Field(False, description="learned scales per output: not modelled, must be false")

    @field_validator("digital_bias")
    @classmethod
    def _analog_bias(cls, value: bool) -> bool:
        if value:
            raise ValueError("aimcsim keeps each analog layer's bias on its crossbar, as the last "
                             "column (aihwkit's digital_bias: false); allowed: false")
        return value

    @field_validator("learn_out_scaling", "out_scaling_columnwise")
    @classmethod
    def _not_modelled(cls, value: bool) -> bool:
        if value:
            raise ValueError("learned digital output scales are not modelled (aimcsim trains analog weights and "
                             "digital norm parameters only); allowed: false")
        return value

    @property
    def enabled(self) -> bool:
        return self.weight_scaling_omega > 0

    def unused_keys(self) -> Unused:
        """The keys no mapping reads (omega 0: there is none; fixed scales only)."""
        unused: Unused = {}
        if not self.enabled:
            why = "weight_scaling_omega is 0: weights are not mapped"
            unused["weight_scaling_columnwise"] = why
            unused["weight_scaling_lr_compensation"] = why
        unused["out_scaling_columnwise"] = "learn_out_scaling is false (the only value allowed)"
        return unused


class MappedCrossbar:
    """A crossbar whose array holds W / alpha, read and updated as the logical W (see the module doc)."""

    def __init__(self, inner, mapping: MappingConfig) -> None:
        self.inner = inner
        self.mapping = mapping
        self.out_size, self.in_size = inner.out_size, inner.in_size
        self.alpha = np.ones(self.out_size, dtype=np.float32)  # the digital output scales
        self._lr_scale = 1.0

    def __getattr__(self, name: str):  # reports, transfers, tiles: the wrapped crossbar's
        if name == "inner":  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.inner, name)

    def set_weights(self, weights: np.ndarray) -> None:
        """Program the logical weights: new scales from their maximum, the array holds W / alpha."""
        w = np.asarray(weights, dtype=np.float32)
        peak = np.abs(w).max(axis=1) if self.mapping.weight_scaling_columnwise else np.full(len(w), np.abs(w).max())
        alpha = (peak / np.float32(self.mapping.weight_scaling_omega)).astype(np.float32)
        alpha[alpha == 0] = 1.0
        self.alpha = alpha
        self._lr_scale = 1.0 / float(np.mean(alpha)) if self.mapping.weight_scaling_lr_compensation else 1.0
        self.inner.set_weights(w / alpha[:, None])

    def get_weights(self) -> np.ndarray:
        """The logical weights the layer computes with: alpha times the array's."""
        return self.inner.get_weights() * self.alpha[:, None]

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.inner.forward(x) * self.alpha

    def backward(self, d: np.ndarray) -> np.ndarray:
        return self.inner.backward(d * self.alpha)

    def evaluation_read(self, values: np.ndarray, transposed: bool = False) -> np.ndarray:
        if transposed:
            return self.inner.evaluation_read(values * self.alpha, True)
        return self.inner.evaluation_read(values) * self.alpha

    def backward_with(self, d: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """A transposed read of stashed logical ``weights`` (mapped with today's scales)."""
        return self.inner.backward_with(d * self.alpha, weights / self.alpha[:, None])

    def update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        """-lr d x^T on the logical weights: d / alpha pulsed into the array."""
        scale = (self.alpha * np.float32(self._lr_scale)).astype(np.float32)
        self.inner.update(x, np.ascontiguousarray(d / scale, dtype=d.dtype), lr * self._lr_scale)


def mapped(crossbar, mapping: MappingConfig | None):
    """``crossbar`` with the mapping's output scales (itself when there is no mapping)."""
    if mapping is None or not mapping.enabled:
        return crossbar
    return MappedCrossbar(crossbar, mapping)
