"""Schedules: the rule by which an accelerator picks its next op among those whose inputs arrived.

A schedule places the stages on accelerators (``placement``: stage -> accelerator) and gives
each accelerator its own **policy**, which sees the inputs that arrived for each of its stages
(``port.ready_forward``: items whose activations arrived, any next item for the first stage;
``port.ready_backward``: items whose error arrived) and answers ``take()`` with
(op code, stage port, item), committing to it, or None (wait for the next arrival);
``finished()`` says whether the accelerator has nothing left to do, and ``waiting_for()``
what it waits for (to name a deadlock). A policy holds only its own accelerator's state, so
one call decides each op. Schedules are registered by name in :data:`SCHEDULES`.

List schedules (:class:`ListSchedule`) walk fixed per-accelerator action orders, one
mini-batch of M micro-batches after another: the built-ins of :mod:`.orders` and PyTorch
action lists read by :mod:`.actions`. ``pipeline.update`` says what their weight parts do:
``flush`` keeps every micro-batch's (x, delta) pairs (a B commits them, a W commits an I's)
and ends the mini-batch with one U per stage that applies them all (PyTorch's optimizer step;
synchronous), ``immediate`` fires them as pulses at once (a W is the pulsed update; a B is
followed by its U), the analog-native variant. ``sequential`` is the 1-micro-batch order
with immediate updates.

``async`` is dynamic: prefer a ready B, else an F while fewer than K - k micro-batches
(0-indexed stage k) are in flight; U right after every B. ``async_stash`` is the same order
with PipeDream's weight stashing: a backward reads the weights its forward read (a digital
reference; a crossbar cannot keep old weights).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from ..ops import BACKWARD, FORWARD, INPUT_GRAD, UPDATE
from . import orders
from .actions import ActionList, Rows

Action = tuple  # (op code, stage port, item): what a policy's take() answers
UPDATE_MODES = ("flush", "immediate")


@dataclass(frozen=True)
class ScheduleSpec:
    """What a schedule is built from: the validated pipeline settings of one run."""

    stages: int
    microbatches: int
    n_items: int
    update: str = "flush"  # list schedules: flush | immediate
    virtual_stages: int = 1
    actions: ActionList | None = None  # schedule ``actions``: the list read from pipeline.actions


class ListSchedule:
    """Fixed per-accelerator action orders per mini-batch of ``group`` micro-batches, repeated.

    ``rows(m)`` gives every accelerator's order for a mini-batch of m micro-batches (the last
    one of a run may be shorter when the order can be built for fewer). With ``flush`` each
    accelerator ends a mini-batch with one U per stage it holds; with ``immediate`` a B is
    followed by its U and a W is the update itself.
    """

    def __init__(self, rows: Callable[[int], Rows], placement: list[int], group: int, n_items: int,
                 update: str) -> None:
        self.placement = list(placement)
        self.accelerators = max(self.placement) + 1
        self.group = group
        self.n_items = n_items
        self.update = update
        self._rows = lru_cache(maxsize=2)(rows)

    def plan(self, acc) -> Iterator[Action]:
        """Accelerator ``acc``'s actions for the whole run, in order."""
        ports = {port.index: port for port in acc.ports}
        immediate = self.update == "immediate"
        for start in range(0, self.n_items, self.group):
            m = min(self.group, self.n_items - start)
            for op, stage, i in self._rows(m)[acc.index]:
                port = ports[stage]
                yield op, port, start + i
                if immediate and op == BACKWARD:
                    yield UPDATE, port, start + i
            if not immediate:
                for port in acc.ports:  # flush: apply the mini-batch's stored pairs
                    yield UPDATE, port, start + m - 1

    def policy(self, acc) -> ListPolicy:
        return ListPolicy(self.plan(acc))


class ListPolicy:
    """One accelerator's walk through its action order: the next action, once its input is there."""

    __slots__ = ("_plan", "_next")

    def __init__(self, plan: Iterator[Action]) -> None:
        self._plan = plan
        self._next = next(plan, None)

    def take(self) -> Action | None:
        action = self._next
        if action is None:
            return None
        op, port, item = action
        if op == FORWARD:
            if not (port.first or item in port.ready_forward):
                return None
        elif (op == BACKWARD or op == INPUT_GRAD) and item not in port.ready_backward:
            return None
        self._next = next(self._plan, None)
        return action

    def finished(self) -> bool:
        return self._next is None

    def waiting_for(self) -> str:
        """The next action of the order as PyTorch names it (``1F3``), whose input has not arrived."""
        if self._next is None:
            return "nothing"
        op, port, item = self._next
        return f"{port.index}{op}{item}"


class AsyncSchedule:
    """Asynchronous 1F1B without weight stashing (the paper's Analog-SGD-AP); one stage per accelerator."""

    update = "immediate"

    def __init__(self, stages: int, n_items: int) -> None:
        self.stages = stages
        self.n_items = n_items
        self.placement = list(range(stages))
        self.accelerators = stages

    def policy(self, acc) -> AsyncPolicy:
        (port,) = acc.ports
        return AsyncPolicy(port, self.stages - port.index, self.n_items)


class AsyncPolicy:
    """One stage's async rule: U right after its B; else the oldest ready B; else the next F
    while fewer than ``limit`` micro-batches are in flight (forwarded, not yet backwarded)."""

    __slots__ = ("_port", "_limit", "_n_items", "_first", "_ready_forward", "_ready_backward",
                 "_next_forward", "_in_flight", "_update_due")

    def __init__(self, port, limit: int, n_items: int) -> None:
        self._port = port
        self._limit = limit
        self._n_items = n_items
        self._first = port.first
        self._ready_forward = port.ready_forward
        self._ready_backward = port.ready_backward
        self._next_forward = 0
        self._in_flight = 0
        self._update_due: int | None = None

    def take(self) -> Action | None:
        due = self._update_due
        if due is not None:
            self._update_due = None
            return UPDATE, self._port, due
        if self._ready_backward:
            item = min(self._ready_backward)
            self._update_due = item
            self._in_flight -= 1
            return BACKWARD, self._port, item
        item = self._next_forward
        if (item < self._n_items and self._in_flight < self._limit
                and (self._first or item in self._ready_forward)):
            self._next_forward = item + 1
            self._in_flight += 1
            return FORWARD, self._port, item
        return None

    def finished(self) -> bool:
        return self._next_forward >= self._n_items and not self._in_flight and self._update_due is None

    def waiting_for(self) -> str:
        """The errors of its micro-batches in flight, or the next forward's activations."""
        if self._in_flight:
            return f"{BACKWARD} of {self._in_flight} micro-batch(es) in flight"
        return f"{self._port.index}{FORWARD}{self._next_forward}"


def _single(rows: Callable[[int, int], Rows]) -> Callable[[ScheduleSpec], ListSchedule]:
    """A one-stage-per-accelerator order as a list schedule (pipeline.update applies)."""
    return lambda s: ListSchedule(lambda m: rows(s.stages, m), list(range(s.stages)), s.microbatches,
                                  s.n_items, s.update)


def _interleaved(zero_bubble: bool) -> Callable[[ScheduleSpec], ListSchedule]:
    return lambda s: ListSchedule(lambda m: orders.interleaved_rows(s.stages, m, s.virtual_stages, zero_bubble),
                                  orders.round_robin(s.stages, s.virtual_stages), s.microbatches, s.n_items,
                                  s.update)


def _from_list(s: ScheduleSpec) -> ListSchedule:
    rows = [list(row) for row in s.actions.rows]
    return ListSchedule(lambda m: rows, list(s.actions.placement), s.actions.microbatches, s.n_items, s.update)


@dataclass(frozen=True)
class ScheduleKind:
    """A registered schedule.

    ``update``: its fixed update rule (``immediate``: after every backward), or None when
    ``pipeline.update`` chooses (flush, the default, makes it synchronous). ``virtual_stages``:
    stages per accelerator by default, None when it holds one (the key is then refused);
    ``virtual_choices``: the values allowed (None: any positive count). ``partial_minibatch``:
    the order can be built for a shorter last mini-batch (else a run trains whole ones).
    """

    build: Callable[[ScheduleSpec], object]
    update: str | None = None
    stash: bool = False  # a backward reads the weights its forward read (a digital reference)
    virtual_stages: int | None = None
    virtual_choices: tuple[int, ...] | None = None
    partial_minibatch: bool = True
    from_file: bool = False  # stages, micro-batches and placement come from pipeline.actions
    minibatches: bool = True  # M shapes the order (False: micro-batches follow each other, no flush)


SCHEDULES: dict[str, ScheduleKind] = {
    "sequential": ScheduleKind(_single(orders.sequential_rows), update="immediate", minibatches=False),
    "gpipe": ScheduleKind(_single(orders.gpipe_rows)),
    "1f1b": ScheduleKind(_single(orders.one_f_one_b_rows)),
    "async": ScheduleKind(lambda s: AsyncSchedule(s.stages, s.n_items), update="immediate", minibatches=False),
    # PipeDream's weight stashing on the async order: impossible on a crossbar (its weights have
    # moved on by the backward), kept as the reference that separates delay from mismatch
    "async_stash": ScheduleKind(lambda s: AsyncSchedule(s.stages, s.n_items), update="immediate", stash=True,
                                minibatches=False),
    "interleaved_1f1b": ScheduleKind(_interleaved(False), virtual_stages=2, partial_minibatch=False),
    "interleaved_zero_bubble": ScheduleKind(_interleaved(True), virtual_stages=2, partial_minibatch=False),
    "zbv_zero_bubble": ScheduleKind(lambda s: ListSchedule(lambda m: orders.zbv_rows(s.stages, m),
                                                           orders.v_shape(s.stages), s.microbatches, s.n_items,
                                                           s.update),
                                    virtual_stages=2, virtual_choices=(2,), partial_minibatch=False),
    "actions": ScheduleKind(_from_list, partial_minibatch=False, from_file=True),
}


def effective_update(name: str, update: str | None) -> str:
    """The update rule a run of schedule ``name`` follows (``pipeline.update`` or its fixed rule)."""
    kind = SCHEDULES[name]
    return kind.update or update or "flush"


def is_synchronous(name: str, update: str | None) -> bool:
    """Whether the schedule flushes: mini-batches of M micro-batches, each ending with one update per stage."""
    return SCHEDULES[name].update is None and effective_update(name, update) == "flush"


def make_schedule(name: str, spec: ScheduleSpec):
    """The registered schedule ``name`` for the run ``spec`` describes."""
    return SCHEDULES[name].build(spec)
