"""Built-in schedules as per-accelerator action orders, with PyTorch's exact per-rank orders.

Each generator answers, for one mini-batch of ``m`` micro-batches, every accelerator's
actions in order (:data:`~aimcsim.sim.actions.Rows`: ``(op, stage, micro-batch)``) and
where the stages sit (stage -> accelerator). Idle steps are not part of an order: an
accelerator waits for its next action's input, so the event order places the bubbles.

- ``sequential``, ``gpipe``, ``1f1b``: one stage per accelerator, as ``ScheduleGPipe`` and
  ``Schedule1F1B``.
- ``interleaved_1f1b`` (Narayanan et al. 2021) and ``interleaved_zero_bubble`` (ZB1P, Qi et
  al. 2024): V stages per accelerator, stage s on accelerator s mod R (R = K / V), the orders
  of PyTorch 2.13's ``ScheduleInterleaved1F1B`` and ``ScheduleInterleavedZeroBubble``
  (written from their definition: warm-up forwards, then forward/backward pairs that step
  through the local stages in rounds of micro-batches, then the cool-down backwards; the
  zero-bubble variant splits every backward into I and W and lets rank r keep r pairs
  before its first W).
- ``zbv_zero_bubble`` (Qi et al. 2024, section 6): two stages per accelerator in a V, rank r
  holding stages r and 2R - 1 - r, PyTorch's ``ScheduleZBVZeroBubble`` order.

``tests/test_schedule_lists.py`` checks every generator against the lists torch 2.13 wrote
(``configs/schedules/*.csv``).
"""

from __future__ import annotations

from collections import defaultdict

from ..errors import ConfigError
from ..ops import BACKWARD, FORWARD, INPUT_GRAD, WEIGHT_GRAD
from .actions import Rows, Step


def sequential_rows(stages: int, m: int) -> Rows:
    """One micro-batch at a time: each stage's F then B of every micro-batch (updates follow each B)."""
    return [[step for i in range(m) for step in ((FORWARD, k, i), (BACKWARD, k, i))] for k in range(stages)]


def gpipe_rows(stages: int, m: int) -> Rows:
    """All forwards, then all backwards (PyTorch ScheduleGPipe)."""
    return [[(FORWARD, k, i) for i in range(m)] + [(BACKWARD, k, i) for i in range(m)] for k in range(stages)]


def one_f_one_b_rows(stages: int, m: int) -> Rows:
    """PipeDream-Flush as PyTorch Schedule1F1B: min(M, K - k) warm-up forwards, then B/F pairs."""
    rows = []
    for k in range(stages):
        warmup = min(m, stages - k)
        row = [(FORWARD, k, i) for i in range(warmup)]
        f = warmup
        for b in range(m):
            row.append((BACKWARD, k, b))
            if f < m:
                row.append((FORWARD, k, f))
                f += 1
        rows.append(row)
    return rows


INTERLEAVED = ("interleaved_1f1b", "interleaved_zero_bubble")


def check_microbatches(name: str, ranks: int, m: int) -> None:
    """An interleaved schedule runs M micro-batches in rounds of max(1, M // accelerators)
    (PyTorch's flexible rounds): M must be a multiple of their count."""
    rounds = max(1, m // ranks)
    if name in INTERLEAVED and m % rounds:
        raise ConfigError(f"pipeline.microbatches: {name} on {ranks} accelerators needs a multiple of "
                          f"{rounds} micro-batches (rounds of max(1, M // accelerators)), got {m}")


def _rounds(ranks: int, m: int, name: str) -> int:
    """Micro-batches per round of an interleaved schedule."""
    check_microbatches(name, ranks, m)
    return m // max(1, m // ranks)


def _interleaved_rank(rank: int, ranks: int, local: int, m: int, per_round: int, zero_bubble: bool) -> list[Step]:
    """One rank's order: warm-up forwards, steady forward/backward pairs, cool-down backwards
    (zero bubble: backwards as I, each followed by a W once ``rank`` of them are held)."""
    total = local * m  # forwards (and backwards) this rank runs
    factor = 1 if zero_bubble else 2
    warmup = min((local - 1) * per_round + factor * (ranks - 1 - rank), total)
    backward_op = INPUT_GRAD if zero_bubble else BACKWARD

    def forward_stage(j: int) -> int:
        return ((j // per_round) % local) * ranks + rank

    def backward_stage(j: int) -> int:
        return (local - 1 - ((j - warmup) // per_round) % local) * ranks + rank

    next_mb: dict[tuple[str, int], int] = defaultdict(int)

    def action(op: str, stage: int) -> Step:
        mb = next_mb[(op, stage)]
        next_mb[(op, stage)] = mb + 1
        return op, stage, mb

    order: list[Step] = []
    backwards: list[int] = []  # the op index of every backward so far, for the W that follows it
    weights = 0

    def backward(j: int) -> None:
        nonlocal weights
        order.append(action(backward_op, backward_stage(j)))
        backwards.append(j)
        if zero_bubble and j - warmup >= rank:
            order.append(action(WEIGHT_GRAD, backward_stage(backwards[weights])))
            weights += 1

    for j in range(warmup):
        order.append(action(FORWARD, forward_stage(j)))
    for j in range(warmup, total):
        order.append(action(FORWARD, forward_stage(j)))
        backward(j)
    for j in range(total, total + warmup):
        backward(j)
    while zero_bubble and weights < len(backwards):
        order.append(action(WEIGHT_GRAD, backward_stage(backwards[weights])))
        weights += 1
    return order


def interleaved_rows(stages: int, m: int, virtual: int, zero_bubble: bool) -> Rows:
    """Interleaved 1F1B (``zero_bubble``: ZB1P) with ``virtual`` stages per accelerator."""
    ranks = stages // virtual
    name = "interleaved_zero_bubble" if zero_bubble else "interleaved_1f1b"
    per_round = _rounds(ranks, m, name)
    return [_interleaved_rank(r, ranks, virtual, m, per_round, zero_bubble) for r in range(ranks)]


def round_robin(stages: int, virtual: int) -> list[int]:
    """Stage s on accelerator s mod (stages / virtual), PyTorch's interleaved placement."""
    ranks = stages // virtual
    return [s % ranks for s in range(stages)]


def v_shape(stages: int) -> list[int]:
    """Rank r holds stages r and 2R - 1 - r (PyTorch's "v" stage-to-rank mapping)."""
    ranks = stages // 2
    return [s if s < ranks else stages - 1 - s for s in range(stages)]


def zbv_rows(stages: int, m: int) -> Rows:
    """PyTorch's ZBV zero-bubble order: two stages per accelerator in a V, backwards split into I and W."""
    ranks = stages // 2
    n = max(2 * ranks - 1, m)  # PyTorch fills the V with at least 2R - 1 micro-batches, then drops the extra
    rows = []
    for rank in range(ranks):
        down, up = rank, stages - 1 - rank  # the rank's stage on the way down, and on the way back up
        count = defaultdict(int)
        order: list[Step] = []

        def add(op: str, stage: int, counter: str) -> None:
            order.append((op, stage, count[counter]))
            count[counter] += 1

        for _ in range(2 * (ranks - rank) - 1):
            add(FORWARD, down, "f0")
        for _ in range(rank):
            add(FORWARD, up, "f1")
            add(FORWARD, down, "f0")
        for _ in range(ranks - rank):
            add(FORWARD, up, "f1")
            order.append((INPUT_GRAD, up, count["b1"]))
            add(WEIGHT_GRAD, up, "b1")
        while count["f1"] < count["f0"] or count["f0"] < n:
            if count["f0"] < n:
                add(FORWARD, down, "f0")
            order.append((INPUT_GRAD, down, count["b0"]))
            add(WEIGHT_GRAD, down, "b0")
            add(FORWARD, up, "f1")
            order.append((INPUT_GRAD, up, count["b1"]))
            add(WEIGHT_GRAD, up, "b1")
        count["w0"], count["w1"] = count["b0"], count["b1"]
        for _ in range(rank):
            add(INPUT_GRAD, down, "b0")
            add(INPUT_GRAD, up, "b1")
        for _ in range(ranks - rank):
            add(INPUT_GRAD, down, "b0")
            add(WEIGHT_GRAD, down, "w0")
        while count["w1"] < count["b1"]:
            add(WEIGHT_GRAD, up, "w1")
        while count["w0"] < count["b0"]:
            add(WEIGHT_GRAD, down, "w0")
        rows.append([step for step in order if step[2] < m])
    return rows
