"""Op kinds as data: every operation an accelerator or a link performs, in one registry.

An op kind is a trace code (``F``), a readable name, whether it occupies its accelerator
(``busy``: counted in utilization), the cost rule that prices it (``charge``: a read, an
update or a link transfer; see :mod:`aimcsim.cost`), the part of the energy breakdown its
energy belongs to, and the color the timeline draws it in.
Schedules, accelerators, links, the tracer, the cost model and the plots all read this
table instead of spelling op names, so a new op (a compound tile's transfer, an
input-gradient-only backward) is one :func:`register` call plus the component that
performs it.

Each op's hardware work is described by reports: :class:`OpReport` for what a crossbar did
(vectors, bound-management passes, pulse slots, coincidences), :class:`LinkReport` for what a
link moved. The cost model turns reports into cycles and energy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

Charge = Literal["read", "update", "transfer", "link"]


@dataclass(frozen=True)
class OpKind:
    """One kind of op: its trace code, what it is, whether it occupies its accelerator, how
    it is charged and how it is drawn."""

    code: str        # the trace's op column, e.g. "F"
    name: str        # e.g. "forward"
    busy: bool       # occupies its accelerator (utilization); link transfers do not
    charge: Charge   # the cost rule that prices it (aimcsim.cost)
    color: str       # timeline color
    fixed_key: str | None = None  # timing key of a fixed per-op cost (e.g. "forward_cycles"), if any
    part: str | None = None  # the energy_by_op part its energy goes to (aimcsim.cost.ENERGY_PARTS); default: code


OPS: dict[str, OpKind] = {}


def register(kind: OpKind) -> str:
    """Add an op kind to the registry (codes are unique); returns its code."""
    if kind.code in OPS:
        raise ValueError(f"op kind {kind.code!r} is already registered")
    OPS[kind.code] = kind
    return kind.code


FORWARD = register(OpKind("F", "forward", True, "read", "#4C72B0", "forward_cycles"))
BACKWARD = register(OpKind("B", "backward", True, "read", "#DD8452", "backward_cycles"))
#: the input-gradient part of a backward (PyTorch's ``I``): the transposed reads alone; the
#: item's (x, delta) pairs wait for its W
INPUT_GRAD = register(OpKind("I", "input-gradient backward", True, "read", "#C44E52", "backward_cycles", part="B"))
UPDATE = register(OpKind("U", "update", True, "update", "#55A868", "update_cycles"))
#: the weight part of a backward (PyTorch's ``W``): on a crossbar, the pulsed update of one
#: item's pairs (``pipeline.update: immediate``), or handing them to the flush's U (``flush``)
WEIGHT_GRAD = register(OpKind("W", "weight-gradient backward", True, "update", "#64B5CD", "update_cycles", part="U"))
#: a compound crossbar's transfer: reads of its fast array written onto its slow array
TRANSFER = register(OpKind("T", "transfer", True, "transfer", "#8172B3", "transfer_cycles", part="transfers"))
SEND_ACTIVATIONS = register(OpKind("TF", "send activations", False, "link", "#B0C4DE", part="links"))
SEND_ERRORS = register(OpKind("TB", "send errors", False, "link", "#F5CBA7", part="links"))


def busy_ops() -> tuple[str, ...]:
    """Codes of the ops that occupy an accelerator (its utilization counts them)."""
    return tuple(code for code, kind in OPS.items() if kind.busy)


class OpReport(NamedTuple):
    """What one crossbar operation did in hardware terms.

    op: the op code; vectors: rows processed (a transfer: rows written); passes: analog reads
    including repeats of bound management (reads, a transfer's column reads); pulse_slots:
    sum over vectors of the realised BL;
    max_bl: the longest pulse train; coincidences: device pulses fired (updates only);
    partial_sums: vectors times the extra tiles whose outputs the periphery adds (split layers).
    For energy: dac / adc: conversions (one per driven / sensed line per pass); cells:
    cross-points read (per pass); line_slots: pulse slots driven on row and column lines
    (BL x lines per vector); digital: periphery element operations (an activation, its
    derivative or a loss element per output, every partial-output addition, a transfer
    buffer's or a mixed-precision accumulator's element updates).
    A named tuple: every tile operation makes one, so it must be cheap to build.
    """

    op: str
    vectors: int
    passes: int = 0
    pulse_slots: int = 0
    max_bl: int = 0
    coincidences: int = 0
    partial_sums: int = 0  # digital additions of partial outputs (a layer split over tiles)
    dac: int = 0
    adc: int = 0
    cells: int = 0
    line_slots: int = 0
    digital: int = 0


class LinkReport(NamedTuple):
    """What one link transfer moved: ``elements`` activations or errors."""

    elements: int


def chain_reports(op: str, reports: list[OpReport]) -> OpReport:
    """One report for operations that one crossbar did one after another (a compound tile's
    several updates or transfers within one update call): every count adds up, the longest
    pulse train is the longest of any."""
    if len(reports) == 1 and reports[0].op == op:
        return reports[0]
    return OpReport(op, *(max(values) if name == "max_bl" else sum(values)
                          for name, values in zip(OpReport._fields[1:], zip(*(r[1:] for r in reports)))))
