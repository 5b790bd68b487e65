"""The cost model: what every op costs in clock cycles (and energy), from what the hardware reported.

An op's cost comes from its reports (vectors, bound-management passes, realised pulse-train
lengths, elements moved), never from a formula about the schedule, so bound management and
update-BL management show up in the timeline as they happen. The op registry
(:mod:`aimcsim.ops`) says which rule prices each op kind (a read, an update, a link
transfer); :meth:`CostModel.cost` is the one place that charges anything. Energy is 0 until
an energy model fills it in.

Timing presets:
  ``ideal``  the paper's abstract clock: every F and B of a stage takes 1 cycle per
             micro-batch, U and T (a compound's transfers) take 0 cycles, links are free.
  ``rf25``   measured-hardware constants (Wu et al. 2025, "Analog In-memory Training on
             General Non-ideal Resistive Elements", Table 3): 40 ns per analog read of one
             vector, 5 ns per pulse slot plus 5.9 ns per vector for an update, 1 GHz clock;
             a transfer is charged as its column reads plus its pulsed writes.
             Links stay free unless set.
Every constant can be overridden (``timing: {preset: rf25, read_ns: 30}``); a constant that
no op is charged with under the chosen settings (``read_ns`` while F and B have fixed
cycles) is refused, so a setting never silently does nothing.

Energy presets (:class:`EnergyModel`; every figure's source is in its field description and
the README's energy table):
  ``none``     no energy is accounted (the default; outputs carry no energy columns).
  ``isaac32``  component figures of ISAAC-class hardware at 32 nm: per DAC and ADC
               conversion, per cross-point read, per pulse slot on a line, per device pulse,
               per digital periphery operation, per link bit, and static power per accelerator.
Component figures only: a lumped per-MVM energy (which already holds the converters) is
never added to them, so nothing is counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import parse_model
from .ops import OPS, LinkReport, OpReport

READ_TIME_KEYS = ("read_ns", "digital_ns", "digital_sum_ns")
UPDATE_TIME_KEYS = ("pulse_slot_ns", "update_vector_ns")

PRESETS: dict[str, dict] = {
    "ideal": {"forward_cycles": 1, "backward_cycles": 1, "update_cycles": 0, "transfer_cycles": 0},
    "rf25": {"forward_cycles": None, "backward_cycles": None, "update_cycles": None, "transfer_cycles": None},
}


def with_preset(values: object, presets: dict[str, dict], default: str) -> object:
    """A section's settings on top of its preset's (an unknown preset is left for validation to name)."""
    if isinstance(values, dict) and values.get("preset", default) in presets:
        return {**presets[values.get("preset", default)], **values}
    return values


class TimingModel(BaseModel):
    """Clock-cycle constants. ``*_cycles`` set: a fixed cost per stage op; None: charged from reports."""

    model_config = ConfigDict(extra="forbid")

    preset: Literal["ideal", "rf25"] = "ideal"
    clock_ghz: float = Field(1.0, gt=0, description="clock frequency; cycles = ns * clock_ghz")
    forward_cycles: int | None = Field(None, ge=0, description="fixed cycles of a stage's F op")
    backward_cycles: int | None = Field(None, ge=0, description="fixed cycles of a stage's B op")
    update_cycles: int | None = Field(None, ge=0, description="fixed cycles of a stage's U op")
    transfer_cycles: int | None = Field(None, ge=0, description=(
        "fixed cycles of a stage's T op (a compound crossbar's transfers); None: its column reads at read_ns "
        "per pass, its writes at pulse_slot_ns per slot plus update_vector_ns per vector"))
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
        return with_preset(values, PRESETS, "ideal")

    @field_validator("clock_ghz", "read_ns", "pulse_slot_ns", "update_vector_ns", "digital_ns", "digital_sum_ns")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number (only link_bits_per_cycle may be .inf: unlimited)")
        return value

    def unused_keys(self, link_bits_used: bool = False, transfers: bool = True, pulses: bool = True) -> dict[str, str]:
        """Constants no op is charged with under these settings -> why (``link_bits_used``: the
        energy model charges the bits a link moves, so ``bits_per_element`` applies;
        ``transfers``: the device runs transfers (op T); ``pulses``: updates fire pulse trains)."""
        unused = {}
        preset = f"has no effect under preset '{self.preset}'"
        hint = "; use preset rf25 or set the fixed cycles to null to charge it"
        transfer_fixed = self.transfer_cycles is not None or not transfers
        if self.forward_cycles is not None and self.backward_cycles is not None:
            for key in READ_TIME_KEYS:
                if transfer_fixed or key != "read_ns":
                    unused[key] = f"{preset} (forward_cycles and backward_cycles are fixed){hint}"
        if self.update_cycles is not None and transfer_fixed:
            for key in UPDATE_TIME_KEYS:
                unused[key] = f"{preset} (update_cycles and transfer_cycles are fixed){hint}"
        elif not pulses and "pulse_slot_ns" not in unused:
            unused["pulse_slot_ns"] = "has no effect: the updates fire no pulse trains (update.pulse_type or device)"
        if not transfers:
            unused["transfer_cycles"] = "has no effect: a single-array device runs no transfers (op T)"
        if math.isinf(self.link_bits_per_cycle) and not link_bits_used:
            unused["bits_per_element"] = ("has no effect: link_bits_per_cycle is unlimited and no energy is "
                                          "accounted")
        return unused


def parse_timing(value: object, prefix: str = "timing") -> TimingModel:
    """Validate a timing section (the keys it leaves unread are refused by the config's one check)."""
    return parse_model(TimingModel, value, prefix)


ENERGY_PRESETS: dict[str, dict] = {
    "none": {},
    "isaac32": {"dac_pj": 0.41667, "adc_pj": 1.6667, "cell_read_fj": 2.34, "pulse_slot_pj": 0.41667,
                "device_pulse_pj": 8.0, "digital_pj": 0.265, "link_pj_per_bit": 0.203, "static_mw": 3.3},
}
#: the parts of a run's energy that summary.json's energy_by_op reports
ENERGY_PARTS = ("F", "B", "U", "transfers", "links", "digital", "static")


class EnergyModel(BaseModel):
    """Energy constants (pJ unless the name says otherwise), with the isaac32 figures' sources."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    preset: Literal["none", "isaac32"] = "none"
    dac_pj: float = Field(0.0, ge=0, description=(
        "one DAC conversion: one driven line per bound-management pass. isaac32: 0.417 pJ, ISAAC's 1-bit DAC "
        "(4 mW for 8x128 DACs at 1.2 GS/s x 128/100 utilisation; Accelergy hwcomponents-library isaac.py)"))
    adc_pj: float = Field(0.0, ge=0, description=(
        "one ADC conversion: one sensed line per pass. isaac32: 1.667 pJ, ISAAC's 8-bit 1.2 GS/s SAR ADC "
        "(16 mW / (8 x 1.2e9); Accelergy hwcomponents-library isaac.py)"))
    cell_read_fj: float = Field(0.0, ge=0, description=(
        "one cross-point of the array in one read pass, fJ. isaac32: 2.34 fJ, PUMA's ISAAC-derived "
        "128x128 crossbar: 0.3 mW for 128 ns over 16,384 cells (puma-simulator include/constants.py)"))
    pulse_slot_pj: float = Field(0.0, ge=0, description=(
        "one pulse slot driven on one row or column line of an update. isaac32: 0.417 pJ, a 1-bit line "
        "driver taken as ISAAC's 1-bit DAC"))
    device_pulse_pj: float = Field(0.0, ge=0, description=(
        "one device pulse (a coincidence). isaac32: 8 pJ, an upper bound from NeuroSim V2.1's default write "
        "pulse: (4 V)^2 / 100 kOhm x 50 ns"))
    digital_pj: float = Field(0.0, ge=0, description=(
        "one periphery operation: an activation, its derivative or a loss element, or one partial-output "
        "addition. isaac32: 0.265 pJ, PUMA's vector ALU (0.373 mW x 32/45 at 1 ns; puma-simulator "
        "include/constants.py alu_pow_others_dyn)"))
    link_pj_per_bit: float = Field(0.0, ge=0, description=(
        "one bit moved between accelerators. isaac32: 0.203 pJ, ISAAC's chip-to-chip link (26 pJ per 128 "
        "bits; Accelergy hwcomponents-library isaac.py); its on-chip router is 0.081 pJ/bit"))
    static_mw: float = Field(0.0, ge=0, description=(
        "static power of one accelerator, charged over the whole run, busy or idle, mW (1 mW x 1 ns = 1 pJ). "
        "isaac32: 3.3 mW, PUMA's leakage of one core's worth: 8 ADCs x 0.2 mW, 1,024 DACs x 0.39 uW, "
        "ALU 0.19 mW, eDRAM 0.46 mW, crossbar in/out buffers 16 x 0.04 mW (puma-simulator include/constants.py)"))

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, values: object) -> object:
        return with_preset(values, ENERGY_PRESETS, "none")

    @property
    def enabled(self) -> bool:
        return self.preset != "none"

    def unused_keys(self, pulses: bool = True) -> dict[str, str]:
        """Figures nothing is charged with -> why (``pulses``: updates fire pulse trains)."""
        if not self.enabled:
            return {key: ("has no effect under preset 'none' (no energy is accounted); set energy.preset: isaac32 "
                          "and override its figures") for key in ENERGY_KEYS}
        if not pulses:
            return {key: "has no effect: the updates fire no pulses (update.pulse_type or device)"
                    for key in ("pulse_slot_pj", "device_pulse_pj")}
        return {}


ENERGY_KEYS = tuple(k for k in EnergyModel.model_fields if k != "preset")  # the constants


def parse_energy(value: object, prefix: str = "energy") -> EnergyModel:
    """Validate an energy section (the figures it leaves unread are refused by the config's one check)."""
    return parse_model(EnergyModel, value, prefix)


class Cost(NamedTuple):
    """What one op costs: whole clock cycles and energy in pJ."""

    cycles: int
    energy_pj: float = 0.0


Rule = Callable[[Sequence], Cost]


class CostModel:
    """Prices every op kind of the registry from its reports: ``cost(op, reports) -> Cost``.

    A fixed per-op cost (``forward_cycles`` ...) is resolved once here, so callers never
    keep a copy of it; a new op kind is priced by the rule its registry entry names. With an
    energy model, ``energy_by_part`` adds up what every priced op cost, by part (F, B and U
    without their digital periphery, links, digital); static energy is a function of the
    run's length (:meth:`static_pj`).
    """

    def __init__(self, timing: TimingModel, energy: EnergyModel | None = None) -> None:
        self.timing = timing
        self.energy = energy if energy is not None else EnergyModel()
        self.accounts_energy = self.energy.enabled
        self.energy_by_part = {part: 0.0 for part in ENERGY_PARTS if part != "static"}
        self._rules: dict[str, Rule] = {}
        self._parts: dict[str, str] = {}
        for code, kind in OPS.items():
            self._parts[code] = kind.part or code
            self.energy_by_part.setdefault(self._parts[code], 0.0)
            fixed = getattr(timing, kind.fixed_key) if kind.fixed_key else None
            rule = getattr(self, f"_{kind.charge}")
            if fixed is None:
                self._rules[code] = partial(rule, code)
            elif not self.accounts_energy:
                self._rules[code] = lambda reports, c=Cost(int(fixed)): c
            else:
                self._rules[code] = partial(self._with_fixed_cycles, int(fixed), rule, code)

    @staticmethod
    def _with_fixed_cycles(cycles: int, rule: Callable, op: str, reports: Sequence) -> Cost:
        """A fixed per-op cycle count, with the energy of what the op did."""
        return Cost(cycles, rule(op, reports).energy_pj)

    def cost(self, op: str, reports: Sequence[OpReport] | Sequence[LinkReport]) -> Cost:
        """Cycles and energy of one ``op`` that did what ``reports`` say."""
        return self._rules[op](reports)

    def link_is_free(self) -> bool:
        """True when a transfer of any size takes zero cycles."""
        t = self.timing
        return t.link_latency_cycles == 0 and math.isinf(t.link_bits_per_cycle)

    def static_pj(self, cycles: int, accelerators: int) -> float:
        """Static energy of ``accelerators`` powered for ``cycles`` (busy or idle)."""
        return self.energy.static_mw * accelerators * (cycles / self.timing.clock_ghz)

    def _cycles(self, ns: float) -> int:
        return int(math.ceil(ns * self.timing.clock_ghz - 1e-9))

    def _charge(self, op: str, analog_pj: float, digital_pj: float = 0.0) -> float:
        """Book an op's energy under its part (and its periphery under digital); returns the total."""
        parts = self.energy_by_part
        parts[self._parts[op]] += analog_pj
        parts["digital"] += digital_pj
        return analog_pj + digital_pj

    def _read(self, op: str, reports: Sequence[OpReport]) -> Cost:
        """A stage's F or B: every bound-management pass, periphery and partial-sum work of its reads;
        energy: conversions, cross-points read and periphery operations."""
        t = self.timing
        ns = sum(r.passes * t.read_ns + r.vectors * t.digital_ns + r.partial_sums * t.digital_sum_ns
                 for r in reports)
        if not self.accounts_energy:
            return Cost(self._cycles(ns))
        analog = sum(self._conversions_pj(r) for r in reports)
        digital = sum(r.digital for r in reports) * self.energy.digital_pj
        return Cost(self._cycles(ns), self._charge(op, analog, digital))

    def _conversions_pj(self, r: OpReport) -> float:
        """The analog part of a report's reads: DAC and ADC conversions and cross-points read."""
        e = self.energy
        return r.dac * e.dac_pj + r.adc * e.adc_pj + r.cells * e.cell_read_fj * 1e-3

    def _pulses_pj(self, r: OpReport) -> float:
        """A report's pulsing: the slots driven on the lines and the device pulses fired."""
        e = self.energy
        return r.line_slots * e.pulse_slot_pj + r.coincidences * e.device_pulse_pj

    def _update(self, op: str, reports: Sequence[OpReport]) -> Cost:
        """A stage's U: pulse slots and per-vector cost of each tile update; energy: the pulse
        slots driven on the lines and the device pulses fired."""
        t = self.timing
        ns = sum(r.pulse_slots * t.pulse_slot_ns + r.vectors * t.update_vector_ns for r in reports)
        if not self.accounts_energy:
            return Cost(self._cycles(ns))
        pulses = sum(self._pulses_pj(r) for r in reports)
        digital = sum(r.digital for r in reports) * self.energy.digital_pj  # a mixed-precision accumulator's work
        return Cost(self._cycles(ns), self._charge(op, pulses, digital))

    def _transfer(self, op: str, reports: Sequence[OpReport]) -> Cost:
        """A stage's T (compound crossbars' transfers): its column reads as reads (read_ns per
        pass) and its writes onto the slow array as updates; energy: the reads' conversions and
        cells, the writes' pulses, the buffer's digital work. All of it goes to ``transfers``."""
        t = self.timing
        ns = sum(r.passes * t.read_ns + r.pulse_slots * t.pulse_slot_ns + r.vectors * t.update_vector_ns
                 for r in reports)
        if not self.accounts_energy:
            return Cost(self._cycles(ns))
        digital_pj = self.energy.digital_pj
        energy = sum(self._conversions_pj(r) + self._pulses_pj(r) + r.digital * digital_pj for r in reports)
        return Cost(self._cycles(ns), self._charge(op, energy))

    def _link(self, op: str, reports: Sequence[LinkReport]) -> Cost:
        """Latency plus serialisation of the elements moved between neighbouring accelerators;
        energy: the bits moved."""
        t = self.timing
        elements = sum(r.elements for r in reports)
        if math.isinf(t.link_bits_per_cycle):
            cycles = t.link_latency_cycles
        else:
            cycles = t.link_latency_cycles + int(math.ceil(elements * t.bits_per_element / t.link_bits_per_cycle))
        if not self.accounts_energy:
            return Cost(cycles)
        return Cost(cycles, self._charge(op, elements * t.bits_per_element * self.energy.link_pj_per_bit))
