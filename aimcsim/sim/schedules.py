"""Schedules: the rule by which an accelerator picks its next op among those whose inputs arrived.

A schedule gives each accelerator its own **policy**, which sees what the accelerator could
do now (``ready_forward``: items whose activations arrived, any next item for the first
stage; ``ready_backward``: items whose error arrived) and answers ``take()`` with
('F' | 'B' | 'U', item), committing to it, or None (wait for the next arrival);
``finished()`` says whether the stage has nothing left to do. A policy holds only its own
stage's state, so one call decides each op.

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

    def plan(self, stage: int) -> Iterator[tuple[str, int]]:
        """Stage ``stage``'s actions for the whole run, in order."""
        for start in range(0, self.n_items, self.group):
            m = min(self.group, self.n_items - start)
            for op, i in self._order(stage, self.stages, m):
                yield op, start + i
            if self.name != "sequential":
                yield "U", start + m - 1  # flush: apply the mini-batch's stored pairs

    def policy(self, acc) -> StaticPolicy:
        return StaticPolicy(acc, self.plan(acc.index))


class StaticPolicy:
    """One stage's walk through its fixed action list: the next action, once its input is there."""

    __slots__ = ("_plan", "_next", "_first", "_ready_forward", "_ready_backward")

    def __init__(self, acc, plan: Iterator[tuple[str, int]]) -> None:
        self._plan = plan
        self._next = next(plan, None)
        self._first = acc.index == 0
        self._ready_forward = acc.ready_forward
        self._ready_backward = acc.ready_backward

    def take(self) -> tuple[str, int] | None:
        action = self._next
        if action is None:
            return None
        op, item = action
        if op == "F":
            if not (self._first or item in self._ready_forward):
                return None
        elif op == "B" and item not in self._ready_backward:
            return None
        self._next = next(self._plan, None)
        return action

    def finished(self) -> bool:
        return self._next is None


class AsyncSchedule:
    """Asynchronous 1F1B without weight stashing (the paper's Analog-SGD-AP)."""

    name = "async"

    def __init__(self, stages: int, n_items: int) -> None:
        self.stages = stages
        self.n_items = n_items

    def policy(self, acc) -> AsyncPolicy:
        return AsyncPolicy(acc, self.stages - acc.index, self.n_items)


class AsyncPolicy:
    """One stage's async rule: U right after its B; else the oldest ready B; else the next F
    while fewer than ``limit`` micro-batches are in flight (forwarded, not yet backwarded)."""

    __slots__ = ("_limit", "_n_items", "_first", "_ready_forward", "_ready_backward",
                 "_next_forward", "_in_flight", "_update_due")

    def __init__(self, acc, limit: int, n_items: int) -> None:
        self._limit = limit
        self._n_items = n_items
        self._first = acc.index == 0
        self._ready_forward = acc.ready_forward
        self._ready_backward = acc.ready_backward
        self._next_forward = 0
        self._in_flight = 0
        self._update_due: int | None = None

    def take(self) -> tuple[str, int] | None:
        due = self._update_due
        if due is not None:
            self._update_due = None
            return "U", due
        if self._ready_backward:
            item = min(self._ready_backward)
            self._update_due = item
            self._in_flight -= 1
            return "B", item
        item = self._next_forward
        if (item < self._n_items and self._in_flight < self._limit
                and (self._first or item in self._ready_forward)):
            self._next_forward = item + 1
            self._in_flight += 1
            return "F", item
        return None

    def finished(self) -> bool:
        return self._next_forward >= self._n_items and not self._in_flight and self._update_due is None


def make_schedule(name: str, stages: int, microbatches: int, n_items: int):
    if name == "async":
        return AsyncSchedule(stages, n_items)
    return StaticSchedule(name, stages, microbatches, n_items)
