"""Schedules: the rule by which an accelerator picks its next op among those whose inputs arrived.

An accelerator exposes what it could do now (``ready_forward``: items whose activations
arrived, or any next item for the first stage; ``ready_backward``: items whose error arrived;
``in_flight``: items forwarded but not yet backwarded). A schedule answers ``choose(acc)``
with ('F' | 'B' | 'U', item) or None (wait for the next arrival).

Synchronous schedules follow a fixed per-stage action order within a mini-batch and end it
with one U that applies every stored (x, delta) pair (flush); the next mini-batch starts
after it. ``async`` is dynamic: prefer a ready B, else an F while fewer than K - k
micro-batches (0-indexed stage k) are in flight; U right after every B.
"""

from __future__ import annotations

from collections.abc import Iterator


def gpipe_order(stage: int, stages: int, m: int) -> list[tuple[str, int]]:
    """All forwards, then all backwards (PyTorch ScheduleGPipe)."""
    return [("F", i) for i in range(m)] + [("B", i) for i in range(m)]


def one_f_one_b_order(stage: int, stages: int, m: int) -> list[tuple[str, int]]:
    """PipeDream-Flush as PyTorch Schedule1F1B: min(M, K - k) warm-up forwards, then B/F pairs."""
    warmup = min(m, stages - stage)
    order = [("F", i) for i in range(warmup)]
    f, b = warmup, 0
    while b < m:
        order.append(("B", b))
        b += 1
        if f < m:
            order.append(("F", f))
            f += 1
    return order


def sequential_order(stage: int, stages: int, m: int) -> list[tuple[str, int]]:
    """One micro-batch at a time through every stage, updating after each backward."""
    order = []
    for i in range(m):
        order += [("F", i), ("B", i), ("U", i)]
    return order


class StaticSchedule:
    """A fixed per-stage action list per mini-batch of ``group`` micro-batches, repeated."""

    def __init__(self, name: str, stages: int, group: int, n_items: int) -> None:
        self.name = name
        self.stages = stages
        self.group = group
        self.n_items = n_items
        self._order = {"gpipe": gpipe_order, "1f1b": one_f_one_b_order, "sequential": sequential_order}[name]
        self._plans: dict[int, Iterator[tuple[str, int]]] = {}
        self._next: dict[int, tuple[str, int] | None] = {}

    def _plan(self, stage: int) -> Iterator[tuple[str, int]]:
        for start in range(0, self.n_items, self.group):
            m = min(self.group, self.n_items - start)
            for op, i in self._order(stage, self.stages, m):
                yield op, start + i
            if self.name != "sequential":
                yield "U", start + m - 1  # flush: apply the mini-batch's stored pairs

    def peek(self, stage: int) -> tuple[str, int] | None:
        if stage not in self._plans:
            self._plans[stage] = self._plan(stage)
            self._next[stage] = next(self._plans[stage], None)
        return self._next[stage]

    def choose(self, acc) -> tuple[str, int] | None:
        action = self.peek(acc.index)
        if action is None:
            return None
        op, item = action
        if op == "F" and not acc.forward_ready(item):
            return None
        if op == "B" and item not in acc.ready_backward:
            return None
        return action

    def done(self, acc, op: str, item: int) -> None:
        self._next[acc.index] = next(self._plans[acc.index], None)

    def finished(self, acc) -> bool:
        return self.peek(acc.index) is None


class AsyncSchedule:
    """Asynchronous 1F1B without weight stashing (the paper's Analog-SGD-AP)."""

    name = "async"

    def __init__(self, stages: int, n_items: int) -> None:
        self.stages = stages
        self.n_items = n_items
        self._update_due: dict[int, int | None] = {}
        self._next_forward: dict[int, int] = {}

    def choose(self, acc) -> tuple[str, int] | None:
        due = self._update_due.get(acc.index)
        if due is not None:
            return "U", due
        if acc.ready_backward:
            return "B", min(acc.ready_backward)
        item = self._next_forward.get(acc.index, 0)
        if item < self.n_items and len(acc.in_flight) < self.stages - acc.index and acc.forward_ready(item):
            return "F", item
        return None

    def done(self, acc, op: str, item: int) -> None:
        if op == "F":
            self._next_forward[acc.index] = item + 1
        elif op == "B":
            self._update_due[acc.index] = item
        else:
            self._update_due[acc.index] = None

    def finished(self, acc) -> bool:
        return (self._next_forward.get(acc.index, 0) >= self.n_items and not acc.in_flight
                and self._update_due.get(acc.index) is None)


def make_schedule(name: str, stages: int, microbatches: int, n_items: int):
    if name == "async":
        return AsyncSchedule(stages, n_items)
    return StaticSchedule(name, stages, microbatches, n_items)
