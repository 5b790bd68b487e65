"""The cost model: what every op costs in clock cycles (and energy), from what the hardware reported.

An op's cost comes from its reports (vectors, bound-management passes, realised pulse-train
lengths, elements moved), never from a formula about the schedule, so bound management and
update-BL management show up in the timeline as they happen. The op registry
(:mod:`aimcsim.ops`) says which rule prices each op kind (a read, an update, a link
transfer); :meth:`CostModel.cost` is the one place that charges anything. Energy is 0 until
an energy model fills it in.

Timing presets:
  ``ideal``  the paper's abstract clock: every F and B of a stage takes 1 cycle per
             micro-batch, U takes 0 cycles, links are free.
  ``rf25``   measured-hardware constants (Wu et al. 2025, "Analog In-memory Training on
             General Non-ideal Resistive Elements", Table 3): 40 ns per analog read of one
             vector, 5 ns per pulse slot plus 5.9 ns per vector for an update, 1 GHz clock.
             Links stay free unless set.
Every constant can be overridden (``timing: {preset: rf25, read_ns: 30}``); a constant that
no op is charged with under the chosen settings (``read_ns`` while F and B have fixed
cycles) is refused, so a setting never silently does nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import ConfigError, parse_model
from .ops import OPS, LinkReport, OpReport

PRESETS: dict[str, dict] = {
    "ideal": {"forward_cycles": 1, "backward_cycles": 1, "update_cycles": 0},
    "rf25": {"forward_cycles": None, "backward_cycles": None, "update_cycles": None},
}

READ_TIME_KEYS = ("read_ns", "digital_ns", "digital_sum_ns")
UPDATE_TIME_KEYS = ("pulse_slot_ns", "update_vector_ns")


class TimingModel(BaseModel):
    """Clock-cycle constants. ``*_cycles`` set: a fixed cost per stage op; None: charged from reports."""

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

    def unused_keys(self) -> dict[str, str]:
        """Constants no op is charged with under these settings -> why."""
        unused = {}
        if self.forward_cycles is not None and self.backward_cycles is not None:
            for key in READ_TIME_KEYS:
                unused[key] = "forward_cycles and backward_cycles are fixed"
        if self.update_cycles is not None:
            for key in UPDATE_TIME_KEYS:
                unused[key] = "update_cycles is fixed"
        if math.isinf(self.link_bits_per_cycle):
            unused["bits_per_element"] = "link_bits_per_cycle is unlimited"
        return unused

    def applicable(self) -> dict:
        """The settings that take effect, as plain data (what ``config.yaml`` lists)."""
        unused = self.unused_keys()
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in unused}


def parse_timing(value: object, prefix: str = "timing") -> TimingModel:
    """Validate a timing section; a constant the settings never charge is refused, naming it."""
    timing = parse_model(TimingModel, value, prefix)
    unused = timing.unused_keys()
    for key in sorted(timing.model_fields_set & set(unused)):
        raise ConfigError(f"{prefix}.{key}: has no effect under preset '{timing.preset}' ({unused[key]}); "
                          f"use preset rf25 or set the fixed cycles to null to charge it")
    return timing


class Cost(NamedTuple):
    """What one op costs: whole clock cycles and energy in pJ."""

    cycles: int
    energy_pj: float = 0.0


Rule = Callable[[Sequence], Cost]


class CostModel:
    """Prices every op kind of the registry from its reports: ``cost(op, reports) -> Cost``.

    A fixed per-op cost (``forward_cycles`` ...) is resolved once here, so callers never
    keep a copy of it; a new op kind is priced by the rule its registry entry names.
    """

    def __init__(self, timing: TimingModel) -> None:
        self.timing = timing
        self._rules: dict[str, Rule] = {}
        for code, kind in OPS.items():
            fixed = getattr(timing, kind.fixed_key) if kind.fixed_key else None
            if fixed is not None:
                self._rules[code] = lambda reports, c=Cost(int(fixed)): c
            else:
                self._rules[code] = getattr(self, f"_{kind.charge}")

    def cost(self, op: str, reports: Sequence[OpReport] | Sequence[LinkReport]) -> Cost:
        """Cycles and energy of one ``op`` that did what ``reports`` say."""
        return self._rules[op](reports)

    def link_is_free(self) -> bool:
        """True when a transfer of any size takes zero cycles."""
        t = self.timing
        return t.link_latency_cycles == 0 and math.isinf(t.link_bits_per_cycle)

    def _cycles(self, ns: float) -> int:
        return int(math.ceil(ns * self.timing.clock_ghz - 1e-9))

    def _read(self, reports: Sequence[OpReport]) -> Cost:
        """A stage's F or B: every bound-management pass, periphery and partial-sum work of its reads."""
        t = self.timing
        ns = sum(r.passes * t.read_ns + r.vectors * t.digital_ns + r.partial_sums * t.digital_sum_ns
                 for r in reports)
        return Cost(self._cycles(ns))

    def _update(self, reports: Sequence[OpReport]) -> Cost:
        """A stage's U: pulse slots and per-vector cost of each tile update."""
        t = self.timing
        ns = sum(r.pulse_slots * t.pulse_slot_ns + r.vectors * t.update_vector_ns for r in reports)
        return Cost(self._cycles(ns))

    def _link(self, reports: Sequence[LinkReport]) -> Cost:
        """Latency plus serialisation of the elements moved between neighbouring accelerators."""
        t = self.timing
        elements = sum(r.elements for r in reports)
        if math.isinf(t.link_bits_per_cycle):
            return Cost(t.link_latency_cycles)
        return Cost(t.link_latency_cycles + int(math.ceil(elements * t.bits_per_element / t.link_bits_per_cycle)))
