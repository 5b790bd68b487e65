"""Timing model: how many clock cycles an op or a transfer takes.

An op's cost comes from what the tiles report (vectors, bound-management passes, realised
pulse-train lengths), never from a formula about the schedule, so bound management and
update-BL management show up in the timeline as they happen.

Presets:
  ``ideal``  the paper's abstract clock: every F and B of a stage takes 1 cycle per
             micro-batch, U takes 0 cycles, links are free.
  ``rf25``   measured-hardware constants (Wu et al. 2025, "Analog In-memory Training on
             General Non-ideal Resistive Elements", Table 3): 40 ns per analog read of one
             vector, 5 ns per pulse slot plus 5.9 ns per vector for an update, 1 GHz clock.
             Links stay free unless set.
Every constant can be overridden (``timing: {preset: rf25, read_ns: 30}``).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .tile import OpReport

PRESETS: dict[str, dict] = {
    "ideal": {"forward_cycles": 1, "backward_cycles": 1, "update_cycles": 0},
    "rf25": {"forward_cycles": None, "backward_cycles": None, "update_cycles": None},
}


class TimingModel(BaseModel):
    """Clock-cycle costs. ``*_cycles`` set: a fixed cost per stage op; None: charged from reports."""

    model_config = ConfigDict(extra="forbid")

    preset: Literal["ideal", "rf25"] = "ideal"
    clock_ghz: float = Field(1.0, gt=0, description="clock frequency; cycles = ns * clock_ghz")
    forward_cycles: int | None = Field(None, ge=0, description="fixed cycles of a stage's F op")
    backward_cycles: int | None = Field(None, ge=0, description="fixed cycles of a stage's B op")
    update_cycles: int | None = Field(None, ge=0, description="fixed cycles of a stage's U op")
    read_ns: float = Field(40.0, ge=0, description="one analog read of one vector (per BM pass)")
    pulse_slot_ns: float = Field(5.0, ge=0, description="one slot of an update pulse train")
    update_vector_ns: float = Field(5.9, ge=0, description="fixed cost per vector of an update")
    digital_ns: float = Field(0.0, ge=0, description="periphery work per vector and layer")
    digital_sum_ns: float = Field(0.0, ge=0, description="adding one partial output of a layer split over tiles")
    link_latency_cycles: int = Field(0, ge=0, description="latency of a transfer between stages")
    link_bits_per_cycle: float = Field(math.inf, gt=0, description="link bandwidth")
    bits_per_element: int = Field(8, ge=1, description="bits per transferred activation or error")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, values: object) -> object:
        if isinstance(values, dict):
            preset = values.get("preset", "ideal")
            if preset in PRESETS:
                values = {**PRESETS[preset], **values}
        return values

    def _cycles(self, ns: float) -> int:
        return int(math.ceil(ns * self.clock_ghz - 1e-9))

    def read_cycles(self, reports: list[OpReport], fixed: int | None) -> int:
        """Cycles of a stage's F or B op made of the tile reads in ``reports``."""
        if fixed is not None:
            return fixed
        ns = sum(r.passes * self.read_ns + r.vectors * self.digital_ns + r.partial_sums * self.digital_sum_ns
                 for r in reports)
        return self._cycles(ns)

    def forward(self, reports: list[OpReport]) -> int:
        return self.read_cycles(reports, self.forward_cycles)

    def backward(self, reports: list[OpReport]) -> int:
        return self.read_cycles(reports, self.backward_cycles)

    def update(self, reports: list[OpReport]) -> int:
        """Cycles of a stage's U op: pulse slots and per-vector cost of each tile update."""
        if self.update_cycles is not None:
            return self.update_cycles
        ns = sum(r.pulse_slots * self.pulse_slot_ns + r.vectors * self.update_vector_ns for r in reports)
        return self._cycles(ns)

    def transfer(self, elements: int) -> int:
        """Cycles to move ``elements`` values between neighbouring accelerators."""
        if math.isinf(self.link_bits_per_cycle):
            return self.link_latency_cycles
        return self.link_latency_cycles + int(math.ceil(elements * self.bits_per_element / self.link_bits_per_cycle))
