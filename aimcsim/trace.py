"""Clock-cycle tracer and what it measures.

The tracer keeps one row per op and transfer: (stage, op, item, start, end, version), times
in cycles, version = updates the stage's weights had received when the op started. Every
pipeline statistic is computed from these rows alone, so a trace read back from disk gives
the same numbers as the live run:

- utilization of a stage: its F, B and U cycles over the run's cycles (computation density);
- bubble fraction: 1 - mean utilization;
- staleness of an item at a stage: version at its B minus version at its F (no formula:
  it is whatever the event order produced);
- PyTorch pipelining action strings (``2F0``) and Chrome/Perfetto trace events.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

COLUMNS = ["stage", "op", "item", "start", "end", "version"]
COMPUTE_OPS = ("F", "B", "U")


class Tracer:
    """Collects trace rows in memory (a list of tuples, turned into a DataFrame on demand)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, int, int, int, int]] = []

    def record(self, stage: int, op: str, item: int, start: int, end: int, version: int) -> None:
        self.rows.append((stage, op, item, int(start), int(end), version))

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=COLUMNS)
        return df.astype({"stage": "int64", "item": "int64", "start": "int64", "end": "int64", "version": "int64"})


def total_cycles(trace: pd.DataFrame) -> int:
    return int(trace["end"].max()) if len(trace) else 0


def utilization(trace: pd.DataFrame, stages: int, cycles: int | None = None) -> list[float]:
    """Busy share of every stage: F + B + U cycles over the run's cycles."""
    cycles = total_cycles(trace) if cycles is None else cycles
    compute = trace[trace["op"].isin(COMPUTE_OPS)]
    busy = (compute["end"] - compute["start"]).groupby(compute["stage"]).sum()
    return [float(busy.get(k, 0)) / cycles if cycles else 0.0 for k in range(stages)]


def bubble_fraction(util: list[float]) -> float:
    return float(1.0 - np.mean(util)) if util else 0.0


def staleness(trace: pd.DataFrame, stages: int) -> pd.DataFrame:
    """Per (stage, item): version at B minus version at F."""
    f = trace[trace["op"] == "F"][["stage", "item", "version"]]
    b = trace[trace["op"] == "B"][["stage", "item", "version"]]
    m = f.merge(b, on=["stage", "item"], suffixes=("_f", "_b"))
    m["staleness"] = m["version_b"] - m["version_f"]
    return m[["stage", "item", "staleness"]]


def max_staleness(trace: pd.DataFrame, stages: int) -> list[int]:
    s = staleness(trace, stages).groupby("stage")["staleness"].max()
    return [int(s.get(k, 0)) for k in range(stages)]


def action_strings(trace: pd.DataFrame) -> dict[int, list[str]]:
    """Per stage, its F and B ops in execution order as PyTorch pipelining actions (``2F0``)."""
    ops = trace[trace["op"].isin(("F", "B"))].sort_values(["stage", "start", "end"], kind="stable")
    out: dict[int, list[str]] = {}
    for stage, op, item in zip(ops["stage"], ops["op"], ops["item"]):
        out.setdefault(int(stage), []).append(f"{stage}{op}{item}")
    return out


_NAMES = {"F": "forward", "B": "backward", "U": "update", "TF": "send activations", "TB": "send errors"}


def to_chrome_trace(trace: pd.DataFrame, clock_ghz: float = 1.0) -> dict:
    """Chrome/Perfetto trace (open in ui.perfetto.dev): one track per stage, times in us."""
    us_per_cycle = 1e-3 / clock_ghz
    events = []
    for stage in sorted(trace["stage"].unique()):
        events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": int(stage),
                       "args": {"name": f"accelerator {stage}"}})
    for stage, op, item, start, end, version in trace[COLUMNS].itertuples(index=False):
        events.append({"name": f"{op}{item}", "cat": _NAMES.get(op, op), "ph": "X", "pid": 0,
                       "tid": int(stage), "ts": start * us_per_cycle, "dur": (end - start) * us_per_cycle,
                       "args": {"item": int(item), "version": int(version)}})
    return {"traceEvents": events, "displayTimeUnit": "ns"}


def write_chrome_trace(trace: pd.DataFrame, path, clock_ghz: float = 1.0) -> None:
    with open(path, "w") as fh:
        json.dump(to_chrome_trace(trace, clock_ghz), fh)
