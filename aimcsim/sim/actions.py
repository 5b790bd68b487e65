"""PyTorch pipeline action lists: read, checked, and turned into per-accelerator action orders.

The format is the one PyTorch writes with ``PipelineScheduleMulti._dump_csv`` (and
``_schedule_visualizer.get_schedule_ops`` returns): a CSV with one row per rank
(accelerator), one cell per step. A cell is empty (an idle step) or an action
``{stage}{type}{microbatch}``: type ``F`` forward, ``B`` full backward, ``I`` input-gradient
backward (the transposed reads), ``W`` its weight part (the update). PyTorch's communication
and data-parallel actions (``SEND_F``, ``RECV_F``, ``SEND_B``, ``RECV_B``, ``UNSHARD``,
``RESHARD``, ``REDUCE_GRAD``) are accepted and ignored: links model communication. A
``(a;b)OVERLAP_F_B`` cell (DualPipeV) runs its actions one after the other, as one
accelerator runs one op at a time. Anything else is refused, naming the cell.

The stage indices define the stages; the row that holds a stage's actions is its accelerator.
The list describes one mini-batch of M micro-batches (M = the largest index + 1).

:func:`check_orders` is the one validator, for lists read from a file and for the built-in
generators alike: every stage on one row, every (stage, micro-batch) with one F and either one
B or one I followed by one W, a backward after its forward and a weight part after its input
gradient, and no deadlock: a dependency walk runs every row as far as the inputs of its next
action allow (an F needs the previous stage's F; a B or I the next stage's B or I, or on the
last stage its own F; a W its I) and refuses the list if some row can never go on.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..ops import BACKWARD, FORWARD, INPUT_GRAD, WEIGHT_GRAD

ACTION_TYPES = (FORWARD, BACKWARD, INPUT_GRAD, WEIGHT_GRAD)
IGNORED_TYPES = ("SEND_F", "RECV_F", "SEND_B", "RECV_B", "UNSHARD", "RESHARD", "REDUCE_GRAD")
_ACTION = re.compile(rf"(\d+)({'|'.join(ACTION_TYPES)})(\d+)")
_IGNORED = re.compile(rf"(\d+)({'|'.join(IGNORED_TYPES)})(\d*)")
_OVERLAP = re.compile(r"\((.*)\)OVERLAP_F_B")

Step = tuple[str, int, int]  # (op code, stage, micro-batch) of one action in a list
_NEEDS = {BACKWARD: FORWARD, INPUT_GRAD: FORWARD, WEIGHT_GRAD: INPUT_GRAD}  # what must come first in its row
Rows = list[list[Step]]      # per accelerator, its actions in order


@dataclass(frozen=True)
class ActionList:
    """A checked action list: per accelerator its actions in order, and what they define."""

    rows: tuple[tuple[Step, ...], ...]
    stages: int
    microbatches: int
    placement: tuple[int, ...]  # stage -> the accelerator (row) that holds it

    @property
    def accelerators(self) -> int:
        return len(self.rows)


class _Located:
    """Row and step of every action, for messages that name the cell."""

    def __init__(self, where: str) -> None:
        self.where = where  # "pipeline.actions: FILE" or the schedule's name
        self.steps: list[list[int]] = []  # per row, the step (cell column) of each action

    def error(self, row: int, index: int | None, rows: Rows, message: str) -> ConfigError:
        if index is None:
            return ConfigError(f"{self.where}: row {row}: {message}")
        return ConfigError(f"{self.where}: row {row}, step {self.steps[row][index]}: "
                           f"'{_name(rows[row][index])}' {message}")


def _name(step: Step) -> str:
    op, stage, mb = step
    return f"{stage}{op}{mb}"


def parse_cell(text: str) -> list[Step] | None:
    """The compute actions of one cell ([] for an idle or communication cell), None if malformed."""
    text = text.strip()
    if not text or _IGNORED.fullmatch(text):
        return []
    overlap = _OVERLAP.fullmatch(text)
    parts = overlap.group(1).split(";") if overlap else [text]
    steps = []
    for part in parts:
        match = _ACTION.fullmatch(part.strip())
        if match is None:
            return None
        steps.append((match.group(2), int(match.group(1)), int(match.group(3))))
    return steps


def read_action_list(path: str | Path, key: str = "pipeline.actions") -> ActionList:
    """Read and check a ``_dump_csv`` action list; a bad file or cell raises a one-line ConfigError."""
    path = Path(path)
    where = f"{key}: {path}"
    if not path.is_file():
        raise ConfigError(f"{key}: no such file '{path}' (a PyTorch _dump_csv action list, e.g. "
                          f"configs/schedules/gpipe_k4_m8.csv)")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            table = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{where}: not a CSV action list ({exc})") from None
    while table and not any(cell.strip() for cell in table[-1]):
        table.pop()  # trailing blank lines
    located = _Located(where)
    rows: Rows = []
    for r, cells in enumerate(table):
        row, steps = [], []
        for t, cell in enumerate(cells):
            parsed = parse_cell(cell)
            if parsed is None:
                raise ConfigError(f"{where}: row {r}, step {t}: '{cell.strip()}' is not an action "
                                  f"({{stage}}{{F|B|I|W}}{{microbatch}}, e.g. 0F1, or one of PyTorch's "
                                  f"communication actions, which are ignored)")
            row += parsed
            steps += [t] * len(parsed)
        rows.append(row)
        located.steps.append(steps)
    return check_orders(rows, located)


def check_orders(rows: Rows, located: _Located | str) -> ActionList:
    """Check per-accelerator action orders (see the module docstring); returns them as an ActionList."""
    if isinstance(located, str):
        located = _Located(located)
        located.steps = [list(range(len(row))) for row in rows]
    if not any(rows):
        raise ConfigError(f"{located.where}: has no actions")
    placement: dict[int, int] = {}
    first_step: dict[int, int] = {}
    for r, row in enumerate(rows):
        if not row:
            raise located.error(r, None, rows, "has no actions (an accelerator needs at least one stage)")
        for i, (_, stage, _) in enumerate(row):
            if placement.setdefault(stage, r) != r:
                held = placement[stage]
                raise located.error(r, i, rows, f"puts stage {stage} on a second accelerator (row {held}, "
                                                f"step {located.steps[held][first_step[stage]]}, holds it)")
            first_step.setdefault(stage, i)
    stages = max(placement) + 1
    for stage in range(stages):
        if stage not in placement:
            raise ConfigError(f"{located.where}: stage {stage} has no actions (the rows hold stages "
                              f"{', '.join(map(str, sorted(placement)))})")
    microbatches = 1 + max(mb for row in rows for _, _, mb in row)
    _check_each_microbatch(rows, located, stages, microbatches, placement)
    _check_no_deadlock(rows, located, stages)
    return ActionList(tuple(tuple(row) for row in rows), stages, microbatches,
                      tuple(placement[s] for s in range(stages)))


def _check_each_microbatch(rows: Rows, located: _Located, stages: int, microbatches: int,
                           placement: dict[int, int]) -> None:
    """One F, and one B or an I then a W, per (stage, micro-batch); a backward after its forward."""
    seen: dict[Step, int] = {}  # action -> its index in its row
    for r, row in enumerate(rows):
        for i, step in enumerate(row):
            op, stage, mb = step
            if step in seen:
                raise located.error(r, i, rows, f"repeats an action (step {located.steps[r][seen[step]]})")
            seen[step] = i
            needs = _NEEDS.get(op)
            if needs is not None and (needs, stage, mb) not in seen:
                later = f" (it comes at step {_step_of(rows, located, r, (needs, stage, mb))})" \
                    if (needs, stage, mb) in row else ""
                what = "forward" if needs == FORWARD else "input-gradient backward"
                raise located.error(r, i, rows, f"comes before its {what} {stage}{needs}{mb}{later}")
            if op in (BACKWARD, INPUT_GRAD):
                other = INPUT_GRAD if op == BACKWARD else BACKWARD
                if (other, stage, mb) in seen:
                    raise located.error(r, i, rows, f"is a second backward of micro-batch {mb} "
                                                    f"({stage}{other}{mb} came first)")
    for stage in range(stages):
        r = placement[stage]
        for mb in range(microbatches):
            if (FORWARD, stage, mb) not in seen:
                raise located.error(r, None, rows, f"stage {stage} has no forward of micro-batch {mb} "
                                                   f"({stage}F{mb})")
            if (BACKWARD, stage, mb) not in seen and (INPUT_GRAD, stage, mb) not in seen:
                raise located.error(r, None, rows, f"stage {stage} has no backward of micro-batch {mb} "
                                                   f"({stage}B{mb}, or {stage}I{mb} and {stage}W{mb})")
            if (INPUT_GRAD, stage, mb) in seen and (WEIGHT_GRAD, stage, mb) not in seen:
                raise located.error(r, seen[(INPUT_GRAD, stage, mb)], rows,
                                    f"has no weight part {stage}W{mb} (its update)")


def _step_of(rows: Rows, located: _Located, r: int, step: Step) -> int:
    return located.steps[r][rows[r].index(step)]


def _inputs(step: Step, stages: int) -> tuple[Step, ...]:
    """The actions whose results ``step`` needs; ``("backward", s, m)`` is stage s's B or I of m."""
    op, stage, mb = step
    if op == FORWARD:
        return () if stage == 0 else ((FORWARD, stage - 1, mb),)
    if op in (BACKWARD, INPUT_GRAD):
        if stage == stages - 1:
            return ((FORWARD, stage, mb),)
        return ((FORWARD, stage, mb), ("backward", stage + 1, mb))
    return ((INPUT_GRAD, stage, mb),)


def _check_no_deadlock(rows: Rows, located: _Located, stages: int) -> None:
    """Run every row as far as its inputs allow; refuse the list if some row is stuck for good."""
    done: set[Step] = set()
    position = [0] * len(rows)
    moved = True
    while moved:
        moved = False
        for r, row in enumerate(rows):
            while position[r] < len(row) and all(need in done for need in _inputs(row[position[r]], stages)):
                op, stage, mb = row[position[r]]
                done.add((op, stage, mb))
                if op in (BACKWARD, INPUT_GRAD):
                    done.add(("backward", stage, mb))  # what the stage before waits for
                position[r] += 1
                moved = True
    for r, row in enumerate(rows):
        if position[r] < len(row):
            step = row[position[r]]
            missing = next(need for need in _inputs(step, stages) if need not in done)
            op, stage, mb = missing
            wanted = f"{stage}B{mb} or {stage}I{mb}" if op == "backward" else f"{stage}{op}{mb}"
            raise located.error(r, position[r], rows, f"waits for {wanted}, which cannot run before it "
                                                      f"(the list deadlocks)")
