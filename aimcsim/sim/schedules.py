"""Schedules: the rule by which an accelerator picks its next op among those whose inputs arrived.

A schedule gives each accelerator its own **policy**, which sees what the accelerator could
do now (``ready_forward``: items whose activations arrived, any next item for the first
stage; ``ready_backward``: items whose error arrived) and answers ``take()`` with
(op code, item), committing to it, or None (wait for the next arrival); ``finished()``
says whether the stage has nothing left to do, and ``waiting_for()`` what it waits for (to
name the stages of a deadlock). A policy holds only its own stage's state, so one call
decides each op. Schedules are registered by name in :data:`SCHEDULES`.

Synchronous schedules follow a fixed per-stage action order within a mini-batch and end it
with one U that applies every stored (x, delta) pair (flush); the next mini-batch starts
after it. ``async`` is dynamic: prefer a ready B, else an F while fewer than K - k
micro-batches (0-indexed stage k) are in flight; U right after every B. ``async_stash`` is
the same order with PipeDream's weight stashing: a backward reads the weights its forward
read (a digital reference; a crossbar cannot keep old weights).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..ops import BACKWARD, FORWARD, UPDATE

Action = tuple[str, int]  # (op code, item)


def gpipe_order(stage: int, stages: int, m: int) -> list[Action]:
    """All forwards, then all backwards (PyTorch ScheduleGPipe)."""
    return [(FORWARD, i) for i in range(m)] + [(BACKWARD, i) for i in range(m)]


def one_f_one_b_order(stage: int, stages: int, m: int) -> list[Action]:
    """PipeDream-Flush as PyTorch Schedule1F1B: min(M, K - k) warm-up forwards, then B/F pairs."""
    warmup = min(m, stages - stage)
    order = [(FORWARD, i) for i in range(warmup)]
    f, b = warmup, 0
    while b < m:
        order.append((BACKWARD, b))
        b += 1
        if f < m:
            order.append((FORWARD, f))
            f += 1
    return order


def sequential_order(stage: int, stages: int, m: int) -> list[Action]:
    """One micro-batch at a time through every stage, updating after each backward."""
    order = []
    for i in range(m):
        order += [(FORWARD, i), (BACKWARD, i), (UPDATE, i)]
    return order


Order = Callable[[int, int, int], list[Action]]  # (stage, stages, micro-batches) -> actions


class StaticSchedule:
    """A fixed per-stage action list per mini-batch of ``group`` micro-batches, repeated;
    with ``flush``, each mini-batch ends with one U that applies its stored pairs."""

    def __init__(self, order: Order, flush: bool, stages: int, group: int, n_items: int) -> None:
        self.stages = stages
        self.group = group
        self.n_items = n_items
        self._order = order
        self._flush = flush

    def plan(self, stage: int) -> Iterator[Action]:
        """Stage ``stage``'s actions for the whole run, in order."""
        for start in range(0, self.n_items, self.group):
            m = min(self.group, self.n_items - start)
            for op, i in self._order(stage, self.stages, m):
                yield op, start + i
            if self._flush:
                yield UPDATE, start + m - 1  # flush: apply the mini-batch's stored pairs

    def policy(self, acc) -> StaticPolicy:
        return StaticPolicy(acc, self.plan(acc.index))


class StaticPolicy:
    """One stage's walk through its fixed action list: the next action, once its input is there."""

    __slots__ = ("_plan", "_next", "_first", "_ready_forward", "_ready_backward")

    def __init__(self, acc, plan: Iterator[Action]) -> None:
        self._plan = plan
        self._next = next(plan, None)
        self._first = acc.index == 0
        self._ready_forward = acc.ready_forward
        self._ready_backward = acc.ready_backward

    def take(self) -> Action | None:
        action = self._next
        if action is None:
            return None
        op, item = action
        if op == FORWARD:
            if not (self._first or item in self._ready_forward):
                return None
        elif op == BACKWARD and item not in self._ready_backward:
            return None
        self._next = next(self._plan, None)
        return action

    def finished(self) -> bool:
        return self._next is None

    def waiting_for(self) -> str:
        """The next action of the list (``F3``), whose input has not arrived."""
        return "nothing" if self._next is None else f"{self._next[0]}{self._next[1]}"


class AsyncSchedule:
    """Asynchronous 1F1B without weight stashing (the paper's Analog-SGD-AP)."""

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

    def take(self) -> Action | None:
        due = self._update_due
        if due is not None:
            self._update_due = None
            return UPDATE, due
        if self._ready_backward:
            item = min(self._ready_backward)
            self._update_due = item
            self._in_flight -= 1
            return BACKWARD, item
        item = self._next_forward
        if (item < self._n_items and self._in_flight < self._limit
                and (self._first or item in self._ready_forward)):
            self._next_forward = item + 1
            self._in_flight += 1
            return FORWARD, item
        return None

    def finished(self) -> bool:
        return self._next_forward >= self._n_items and not self._in_flight and self._update_due is None

    def waiting_for(self) -> str:
        """The errors of its micro-batches in flight, or the next forward's activations."""
        if self._in_flight:
            return f"{BACKWARD} of {self._in_flight} micro-batch(es) in flight"
        return f"{FORWARD}{self._next_forward}"


@dataclass(frozen=True)
class ScheduleKind:
    """A registered schedule: how to build it and whether it flushes (synchronous mini-batches
    of M micro-batches, each ending with one update per stage)."""

    build: Callable[[int, int, int], object]  # (stages, microbatches, n_items) -> schedule
    synchronous: bool
    stash: bool = False  # a backward reads the weights its forward read (a digital reference)


SCHEDULES: dict[str, ScheduleKind] = {
    "sequential": ScheduleKind(lambda k, m, n: StaticSchedule(sequential_order, False, k, m, n), False),
    "gpipe": ScheduleKind(lambda k, m, n: StaticSchedule(gpipe_order, True, k, m, n), True),
    "1f1b": ScheduleKind(lambda k, m, n: StaticSchedule(one_f_one_b_order, True, k, m, n), True),
    "async": ScheduleKind(lambda k, m, n: AsyncSchedule(k, n), False),
    # PipeDream's weight stashing on the async order: impossible on a crossbar (its weights have
    # moved on by the backward), kept as the reference that separates delay from mismatch
    "async_stash": ScheduleKind(lambda k, m, n: AsyncSchedule(k, n), False, stash=True),
}


def make_schedule(name: str, stages: int, microbatches: int, n_items: int):
    """The registered schedule ``name`` for ``stages`` stages and a run of ``n_items`` micro-batches."""
    return SCHEDULES[name].build(stages, microbatches, n_items)
