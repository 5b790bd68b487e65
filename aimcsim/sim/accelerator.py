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
from .link import Link


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
        self.timing = timing
        self.tracer = tracer
        self.engine = engine
        self.ready_forward: dict[int, np.ndarray] = {}
        self.ready_backward: dict[int, np.ndarray] = {}
        self.policy = schedule.policy(self)
        self.version = 0
        self.next_link: Link | None = None  # to stage k + 1 (activations)
        self.prev_link: Link | None = None  # to stage k - 1 (errors)
        self.inbound: tuple[Link, ...] = ()  # the links towards this stage
        self.finishing_at = -1  # cycle at which the op in progress ends; -1 when none is
        self._wake: Event | None = None

    # ------------------------------------------------------------------ inputs
    def deliver_forward(self, item: int, activations: np.ndarray) -> None:
        self.ready_forward[item] = activations
        self._poke()

    def deliver_backward(self, item: int, error: np.ndarray) -> None:
        self.ready_backward[item] = error
        self._poke()

    def _poke(self) -> None:
        """Wake the process if it waits for an input."""
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _arrivals_pending(self, now: int) -> bool:
        """Whether an input may still arrive in this cycle: a neighbour's op or a transfer
        towards this accelerator ends now (then decide after it)."""
        for link in self.inbound:
            if link.in_flight > 0 or link.sender.finishing_at == now:
                return True
        return False

    # ----------------------------------------------------------------- process
    def run(self):
        """The process: decide, compute at the op's start, hold for its cycles, hand on.

        Kept lean (one policy call per decision, one numerics call per op, trace rows
        appended by a C call): a pipeline runs millions of ops, and the kernels between them
        leave the interpreter's caches cold, so every Python step here costs several times
        what it costs in a micro-benchmark.
        """
        env = self.env
        counter = self.engine.event_counter
        policy = self.policy
        take = policy.take
        record = self.tracer.record
        index = self.index
        numerics = {"F": self._forward, "B": self._backward, "U": self._update}
        while True:
            now = env.now
            if self._arrivals_pending(now) and env.peek() == now:
                yield Settle(env)
                counter[0] += 1
            choice = take()
            if choice is None:
                if policy.finished():
                    return
                self._wake = env.event()
                yield self._wake
                counter[0] += 1
                self._wake = None
                continue
            op, item = choice
            version = self.version
            try:
                cycles, result = numerics[op](item)
            except ConfigError as exc:  # inside a run only non-finite values reach a tile's checks
                raise Diverged(item) from exc
            if cycles:
                self.finishing_at = now + cycles
                yield env.timeout(cycles)
                counter[0] += 1
            record((index, op, item, now, now + cycles, version))
            # hand on: activations forward, errors back, the loss gradient to the own backward
            if op == "F":
                if self.next_link is None:
                    self.ready_backward[item] = result
                else:
                    self.next_link.send(item, result, version)
            elif op == "B":
                if self.prev_link is not None:
                    self.prev_link.send(item, result, version)
            else:
                self.version += 1
                if index == 0:
                    self.engine.samples_applied(result)
            self.finishing_at = -1

    # ------------------------------------------------------------- numerics
    # Each returns (cycles, what to hand on when the op completes). Activations and errors
    # are not scanned here: a non-finite value fails the finiteness check of the tile that
    # reads it next (a ``ConfigError``, turned into ``Diverged``); the last stage checks its loss.
    def _forward(self, item: int) -> tuple[int, np.ndarray]:
        x = self.engine.inputs(item) if self.index == 0 else self.ready_forward.pop(item)
        out, reports = self.stage.forward(item, x)
        cycles = self.timing.forward(reports)
        if not self.stage.is_last:
            return cycles, out
        loss, grad = loss_and_grad(self.stage.loss, out.astype(np.float64), self.engine.targets(item))
        if not all_finite(loss):
            raise Diverged(item)
        self.engine.record_loss(loss)
        return cycles, grad

    def _backward(self, item: int) -> tuple[int, np.ndarray]:
        error, reports = self.stage.backward(item, self.ready_backward.pop(item))
        return self.timing.backward(reports), error

    def _update(self, item: int) -> tuple[int, int]:
        """Apply the stored pairs; hands on how many samples they were."""
        rows = self.stage.pending_rows
        return self.timing.update(self.stage.update(self.engine.lr)), rows
