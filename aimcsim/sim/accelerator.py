"""An accelerator: a SimPy process that owns one stage's tiles and runs F, B and U one at a time.

The process waits until its schedule names an op whose inputs have arrived, performs the
op's numerics on its own tiles at the op's start (a forward reads whatever the crossbars
hold at that moment), holds the accelerator for the op's cycles, and then hands the results
on: activations to the next stage, errors to the previous one, the loss gradient to itself
(last stage). Decisions at a clock cycle are taken after every arrival of that cycle
(:class:`Settle`, yielded only while a neighbour's op or a transfer towards this
accelerator still ends in the current cycle), so the event order, and with it the
staleness, is that of hardware that samples its inputs once per cycle.
"""

from __future__ import annotations

import numpy as np
import simpy
from simpy.events import Event

from ..errors import ConfigError
from ..kernels import all_finite
from ..network import Stage, loss_and_grad


class Settle(Event):
    """Fires at the current time after all other events of that time (lowest priority)."""

    def __init__(self, env: simpy.Environment) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None
        env.schedule(self, priority=2)


class Diverged(Exception):
    """A non-finite loss or activation: the run stops with status 'diverged'."""


class Accelerator:
    """Stage ``stage.index`` of the pipeline."""

    def __init__(self, env: simpy.Environment, stage: Stage, schedule, timing, tracer, engine) -> None:
        self.env = env
        self.stage = stage
        self.index = stage.index
        self.schedule = schedule
        self.timing = timing
        self.tracer = tracer
        self.engine = engine
        self.ready_forward: dict[int, np.ndarray] = {}
        self.ready_backward: dict[int, np.ndarray] = {}
        self.in_flight: set[int] = set()
        self.version = 0
        self.next_link = None  # Link to stage k + 1 (activations)
        self.prev_link = None  # Link to stage k - 1 (errors)
        self.next_acc: Accelerator | None = None
        self.prev_acc: Accelerator | None = None
        self.finishing_at = -1  # cycle at which the op in progress ends; -1 when none is
        self._wake: Event | None = None

    # ------------------------------------------------------------------ inputs
    def forward_ready(self, item: int) -> bool:
        return self.index == 0 or item in self.ready_forward

    def deliver_forward(self, item: int, activations: np.ndarray) -> None:
        self.ready_forward[item] = activations
        self._poke()

    def deliver_backward(self, item: int, error: np.ndarray) -> None:
        self.ready_backward[item] = error
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _arrivals_pending(self) -> bool:
        """Whether an input may still arrive in the current cycle (then decide after it)."""
        now = self.env.now
        prev, nxt = self.prev_acc, self.next_acc
        return ((prev is not None and (prev.finishing_at == now or prev.next_link.in_flight > 0))
                or (nxt is not None and (nxt.finishing_at == now or nxt.prev_link.in_flight > 0)))

    # ----------------------------------------------------------------- process
    def run(self):
        env = self.env
        counter = self.engine.event_counter
        schedule = self.schedule
        choose, done, record = schedule.choose, schedule.done, self.tracer.record
        index = self.index
        while True:
            if env.peek() == env.now and self._arrivals_pending():
                yield Settle(env)
                counter[0] += 1
            choice = choose(self)
            if choice is None:
                if schedule.finished(self):
                    return
                self._wake = env.event()
                yield self._wake
                counter[0] += 1
                self._wake = None
                continue
            op, item = choice
            start, version = env.now, self.version
            try:
                cycles, result = self._execute(op, item)
            except ConfigError as exc:  # inside a run only non-finite values reach a tile's checks
                raise Diverged(item) from exc
            if cycles:
                self.finishing_at = start + cycles
                yield env.timeout(cycles)
                counter[0] += 1
            record(index, op, item, start, start + cycles, version)
            done(self, op, item)
            self._hand_off(op, item, result, version)
            self.finishing_at = -1

    def _execute(self, op: str, item: int) -> tuple[int, object]:
        """Numerics of one op now; returns (cycles, what to hand on when it completes).

        Activations and errors are not scanned here: a non-finite value fails the finiteness
        check of the tile that reads it next (a ``ConfigError``, turned into ``Diverged``),
        and the last stage checks its loss.
        """
        stage = self.stage
        if op == "F":
            x = self.engine.inputs(item) if self.index == 0 else self.ready_forward.pop(item)
            out, reports = stage.forward(item, x)
            self.in_flight.add(item)
            cycles = self.timing.forward(reports)
            if stage.is_last:
                loss, grad = loss_and_grad(stage.loss, out.astype(np.float64), self.engine.targets(item))
                if not all_finite(loss):
                    raise Diverged(item)
                self.engine.record_loss(loss)
                return cycles, grad
            return cycles, out
        if op == "B":
            error, reports = stage.backward(item, self.ready_backward.pop(item))
            self.in_flight.discard(item)
            return self.timing.backward(reports), error
        rows = stage.pending_rows  # U: apply the stored pairs
        reports = stage.update(self.engine.lr)
        return self.timing.update(reports), rows

    def _hand_off(self, op: str, item: int, result, version: int) -> None:
        """When an op completes: send activations on, errors back, the loss gradient to the
        own backward (last stage); after an update, count the new weight version."""
        if op == "F":
            if self.stage.is_last:
                self.deliver_backward(item, result)
            else:
                self.next_link.send(item, result, self.next_acc.deliver_forward, version)
        elif op == "B":
            if self.index > 0:
                self.prev_link.send(item, result, self.prev_acc.deliver_backward, version)
        else:
            self.version += 1
            if self.index == 0:
                self.engine.samples_applied(result)
