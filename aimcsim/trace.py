"""Clock-cycle tracer and what it measures.

The tracer keeps one :class:`TraceRow` per op and transfer: (stage, accelerator, op, item,
start, end, version), times in cycles, version = the changes the stage's weights (what its
forwards read) had received when the op started: one per update, and for a compound crossbar
one per update that moves what reads see and one per transfer that does; the op codes and
what they mean come from the op registry (:mod:`aimcsim.ops`). A link transfer's row names
the sending stage and its accelerator. Every pipeline statistic is computed from these rows
alone, so a trace read back from disk gives the same numbers as the live run:

- utilization of an accelerator (and of a stage): the cycles of its busy ops (F, B, I, W, U,
  T) over the run's cycles; an accelerator holding several stages adds theirs up;
- bubble fraction: 1 - mean utilization of the accelerators;
- staleness of an item at a stage: version at its B (or I, the input-gradient backward) minus
  version at its F (no formula: it is whatever the event order produced);
- PyTorch pipelining action strings (``2F0``) per accelerator and Chrome/Perfetto trace events.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pandas as pd

from .ops import BACKWARD, FORWARD, INPUT_GRAD, OPS, TRANSFER, WEIGHT_GRAD, busy_ops


class TraceRow(NamedTuple):
    """One op or transfer as the trace records it (the columns of ``trace.csv``, in order).

    Links, accelerators and the tracer all build and read this one type; a new column is one
    new field here (with a default, so existing producers keep working).
    """

    stage: int
    accelerator: int  # the accelerator that holds the stage
    op: str      # an op code of the registry
    item: int    # the micro-batch
    start: int   # cycles
    end: int
    version: int  # updates the stage's weights had received when the op started
    energy_pj: float = 0.0  # what the op cost (a run with an energy preset writes this column)


ALL_COLUMNS = list(TraceRow._fields)
COLUMNS = ALL_COLUMNS[:-1]  # without energy: the columns of a run that accounts no energy


def columns(energy: bool) -> list[str]:
    """The trace columns of a run that does (or does not) account energy."""
    return ALL_COLUMNS if energy else COLUMNS


ENERGY = ALL_COLUMNS.index("energy_pj")  # a row's energy, by position (rows are plain tuples on the hot path)


def _thread_event(accelerator: int) -> dict:
    return {"name": "thread_name", "ph": "M", "pid": 0, "tid": int(accelerator),
            "args": {"name": f"accelerator {accelerator}"}}


def _span_event(row: tuple, us_per_cycle: float, energy: bool) -> dict:
    """One op as a Perfetto span on its accelerator's track, named as PyTorch names actions (``2F0``)."""
    stage, accelerator, op, item, start, end, version = row[:ENERGY]
    kind = OPS.get(op)
    args = {"stage": int(stage), "item": int(item), "version": int(version)}
    if energy:
        args["energy_pj"] = float(row[ENERGY])
    return {"name": f"{stage}{op}{item}", "cat": kind.name if kind else op, "ph": "X", "pid": 0,
            "tid": int(accelerator), "ts": start * us_per_cycle, "dur": (end - start) * us_per_cycle, "args": args}


class Tracer:
    """Collects trace rows and keeps the run's statistics.

    ``record(row)`` is the hot path: one list append per op and transfer, a C call, because a
    pipeline run records millions of rows between kernels that leave the interpreter's caches
    cold. :meth:`digest` folds the rows recorded since its last call into utilization,
    staleness and the end cycle; the engine calls it as the run goes (``digest_due``) and at
    the end. Without a sink the rows stay in memory (``frame()`` returns them); with a
    :class:`TraceSink` every digest streams them to disk and drops them, so a run of millions
    of ops needs bounded memory. Either way the statistics equal what the full trace gives.
    """

    def __init__(self, stages: int, sink: "TraceSink | None" = None, chunk_rows: int = 100_000,
                 energy: bool = False, placement: list[int] | None = None) -> None:
        self.stages = stages
        self.placement = list(range(stages)) if placement is None else list(placement)  # stage -> accelerator
        self.accelerators = max(self.placement) + 1 if self.placement else 0
        self.sink = sink
        self.energy = energy  # rows carry their energy; the tracer adds it up
        self.energy_pj = 0.0  # of the rows digested so far, in row order
        self.chunk_rows = chunk_rows
        self.rows: list[TraceRow] = []
        self.record = self.rows.append
        self.busy = [0] * stages  # busy cycles per stage
        self.max_staleness = [0] * stages
        self.transfers = [0] * stages  # T ops (a compound crossbar's transfers) per stage
        self.end = 0
        self.n_rows = 0
        self._digested = 0  # rows at the head of ``rows`` already folded in
        self._forward_version: dict[tuple[int, int], int] = {}
        self._busy_ops = frozenset(busy_ops())
        self._backwards = frozenset((BACKWARD, INPUT_GRAD))

    def digest_due(self) -> bool:
        return len(self.rows) - self._digested >= self.chunk_rows

    def digest(self) -> None:
        """Fold the new rows into the statistics; with a sink, write them out and drop them."""
        rows, busy, stale, forward_version = self.rows, self.busy, self.max_staleness, self._forward_version
        transfers = self.transfers
        end = self.end
        compute, backwards = self._busy_ops, self._backwards
        new = rows[self._digested:]
        if self.energy:
            energy = self.energy_pj
            for row in new:
                energy += row[ENERGY]
            self.energy_pj = energy
        for stage, _, op, item, start, stop, version, *_ in new:
            if stop > end:
                end = stop
            if op in compute:
                busy[stage] += stop - start
                if op == FORWARD:
                    forward_version[(stage, item)] = version
                elif op in backwards:
                    gap = version - forward_version.pop((stage, item), version)
                    if gap > stale[stage]:
                        stale[stage] = gap
                elif op == TRANSFER:
                    transfers[stage] += 1
        self.end = end
        self.n_rows += len(rows) - self._digested
        if self.sink is not None:
            if rows:
                self.sink.write(rows)
            rows.clear()  # in place: ``record`` stays bound to this list
        self._digested = len(rows)

    def utilization(self) -> list[float]:
        """Busy share of every stage."""
        return [b / self.end if self.end else 0.0 for b in self.busy]

    def accelerator_utilization(self) -> list[float]:
        """Busy share of every accelerator (the sum of its stages')."""
        busy = [0] * self.accelerators
        for stage, acc in enumerate(self.placement):
            busy[acc] += self.busy[stage]
        return [b / self.end if self.end else 0.0 for b in busy]

    @property
    def accelerator_staleness(self) -> list[int]:
        """The largest staleness of any stage on each accelerator."""
        stale = [0] * self.accelerators
        for stage, acc in enumerate(self.placement):
            stale[acc] = max(stale[acc], self.max_staleness[stage])
        return stale

    def energy_so_far(self) -> float:
        """Energy of every row recorded so far (digested or not), added in row order."""
        energy = self.energy_pj
        for row in self.rows[self._digested:]:
            energy += row[ENERGY]
        return energy

    def frame(self) -> pd.DataFrame:
        """The rows kept in memory (all of them when there is no sink)."""
        cols = columns(self.energy)
        df = pd.DataFrame([row[:len(cols)] for row in self.rows], columns=cols)
        return df.astype({"stage": "int64", "accelerator": "int64", "item": "int64", "start": "int64", "end": "int64", "version": "int64"})


PERFETTO_FORMATS = ("json", "gz", "none")  # trace.json, trace.json.gz (Perfetto opens both), or none


class TraceSink:
    """Streams trace rows to ``trace.csv`` and the Chrome/Perfetto trace through temporary files.

    ``perfetto`` chooses the Perfetto file: ``json`` (``trace.json``), ``gz`` (``trace.json.gz``,
    about a tenth of the size) or ``none``. ``close()`` renames the files into place;
    ``abort()`` removes them, so a file is either complete or absent.
    """

    def __init__(self, directory, clock_ghz: float = 1.0, perfetto: str = "json", energy: bool = False) -> None:
        import gzip  # noqa: PLC0415
        from pathlib import Path  # noqa: PLC0415

        if perfetto not in PERFETTO_FORMATS:
            raise ValueError(f"perfetto: must be one of {', '.join(PERFETTO_FORMATS)}, got {perfetto!r}")
        self.directory = Path(directory)
        self.us_per_cycle = 1e-3 / clock_ghz
        self.csv_path = self.directory / "trace.csv"
        self._csv_tmp = self.directory / ".trace.csv.partial"
        self.energy = energy
        self._width = len(columns(energy))
        self._csv = open(self._csv_tmp, "w")
        self._csv.write(",".join(columns(energy)) + "\n")
        self._json = None
        if perfetto != "none":
            name = "trace.json" if perfetto == "json" else "trace.json.gz"
            self.json_path = self.directory / name
            self._json_tmp = self.directory / f".{name}.partial"
            self._json = (open(self._json_tmp, "w") if perfetto == "json"
                          else gzip.open(self._json_tmp, "wt", compresslevel=6))
            self._json.write('{"displayTimeUnit": "ns", "traceEvents": [')
        self._first = True
        self._accelerators: set[int] = set()

    def write(self, rows: list[tuple]) -> None:
        width = self._width
        self._csv.write("".join(",".join(map(str, r[:width])) + "\n" for r in rows))
        if self._json is None:
            return
        events = []
        for row in rows:
            if row[1] not in self._accelerators:
                self._accelerators.add(row[1])
                events.append(json.dumps(_thread_event(row[1])))
            events.append(json.dumps(_span_event(row, self.us_per_cycle, self.energy)))
        if events:
            self._json.write(("" if self._first else ",") + ",".join(events))
            self._first = False

    def _files(self) -> list:
        files = [(self._csv, self._csv_tmp, self.csv_path)]
        if self._json is not None:
            files.append((self._json, self._json_tmp, self.json_path))
        return files

    def close(self) -> None:
        import os  # noqa: PLC0415

        if self._json is not None:
            self._json.write("]}")
        for fh, tmp, path in self._files():
            fh.close()
            os.replace(tmp, path)

    def abort(self) -> None:
        for fh, tmp, _ in self._files():
            fh.close()
            if tmp.exists():
                tmp.unlink()


def read_trace(path) -> pd.DataFrame:
    """A run directory's ``trace.csv``; a trace written before the accelerator column existed
    (one stage per accelerator) gets it from the stage."""
    trace = pd.read_csv(path)
    if "accelerator" not in trace.columns and "stage" in trace.columns:
        trace.insert(1, "accelerator", trace["stage"])
    return trace


def total_cycles(trace: pd.DataFrame) -> int:
    return int(trace["end"].max()) if len(trace) else 0


def utilization(trace: pd.DataFrame, stages: int, cycles: int | None = None, by: str = "stage") -> list[float]:
    """Busy share of every stage (``by="accelerator"``: of every accelerator, ``stages`` then
    counting accelerators): the cycles of its busy ops (F, B, I, W, U, T) over the run's cycles."""
    cycles = total_cycles(trace) if cycles is None else cycles
    compute = trace[trace["op"].isin(busy_ops())]
    busy = (compute["end"] - compute["start"]).groupby(compute[by]).sum()
    return [float(busy.get(k, 0)) / cycles if cycles else 0.0 for k in range(stages)]


def bubble_fraction(util: list[float]) -> float:
    return float(1.0 - np.mean(util)) if util else 0.0


def staleness(trace: pd.DataFrame, stages: int) -> pd.DataFrame:
    """Per (stage, item): version at its B or I (the backward reads) minus version at its F."""
    f = trace[trace["op"] == FORWARD][["stage", "item", "version"]]
    b = trace[trace["op"].isin((BACKWARD, INPUT_GRAD))][["stage", "item", "version"]]
    m = f.merge(b, on=["stage", "item"], suffixes=("_f", "_b"))
    m["staleness"] = m["version_b"] - m["version_f"]
    return m[["stage", "item", "staleness"]]


def max_staleness(trace: pd.DataFrame, stages: int) -> list[int]:
    s = staleness(trace, stages).groupby("stage")["staleness"].max()
    return [int(s.get(k, 0)) for k in range(stages)]


ACTION_OPS = (FORWARD, BACKWARD, INPUT_GRAD, WEIGHT_GRAD)  # the ops a PyTorch action list names


def action_strings(trace: pd.DataFrame) -> dict[int, list[str]]:
    """Per accelerator, its F, B, I and W ops in execution order as PyTorch pipelining actions
    (``2F0``: stage 2 forwards micro-batch 0), what ``_dump_csv`` writes per rank minus idle steps."""
    ops = trace[trace["op"].isin(ACTION_OPS)].sort_values(["accelerator", "start", "end"], kind="stable")
    out: dict[int, list[str]] = {}
    for acc, stage, op, item in zip(ops["accelerator"], ops["stage"], ops["op"], ops["item"]):
        out.setdefault(int(acc), []).append(f"{stage}{op}{item}")
    return out


def to_chrome_trace(trace: pd.DataFrame, clock_ghz: float = 1.0) -> dict:
    """Chrome/Perfetto trace (open in ui.perfetto.dev): one track per accelerator, times in us."""
    us_per_cycle = 1e-3 / clock_ghz
    energy = "energy_pj" in trace.columns
    events = [_thread_event(acc) for acc in sorted(trace["accelerator"].unique())]
    events += [_span_event(row, us_per_cycle, energy) for row in trace[columns(energy)].itertuples(index=False)]
    return {"traceEvents": events, "displayTimeUnit": "ns"}


def write_chrome_trace(trace: pd.DataFrame, path, clock_ghz: float = 1.0) -> None:
    with open(path, "w") as fh:
        json.dump(to_chrome_trace(trace, clock_ghz), fh)
