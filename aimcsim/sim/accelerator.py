"""An accelerator: a SimPy process that owns one stage's tiles and runs F, B and U one at a time.

The process decides its next op among those whose inputs have arrived, performs the op's
numerics on its own tiles at the op's start (a forward reads whatever the crossbars hold at
that moment), posts the results on at once with the cycle they arrive (activations to the
next stage, errors to the previous one, the loss gradient to itself on the last stage; see
:mod:`.link`) and holds the accelerator for the op's cycles. A decision at cycle t sees every
input that arrived at or before t, like hardware that samples its inputs once per cycle, so
the event order, and with it the staleness, does not depend on how SimPy orders the events
of one cycle. A process with nothing to do waits for its next arrival (:class:`Wake`).
"""

from __future__ import annotations

import numpy as np
import simpy
from simpy.events import Event

from ..errors import ConfigError
from ..kernels import all_finite
from ..network import Stage, loss_and_grad
from .link import Link


class _Resume(Event):
    """An event that resumes an accelerator and carries no value: marked as succeeded from
    the start (SimPy's own fields), so scheduling it is all it takes to fire it."""

    def __init__(self, env: simpy.Environment) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None


class Wake(_Resume):
    """Resumes a waiting accelerator at the cycle its next input arrives (:meth:`fire_at`)."""

    def __init__(self, env: simpy.Environment) -> None:
        super().__init__(env)
        self.at: int | None = None  # the cycle it is scheduled for; None while unscheduled

    def fire_at(self, cycle: int) -> None:
        self.at = cycle
        self.env.schedule(self, delay=cycle - self.env.now)


class OpDone(_Resume):
    """Resumes a working accelerator when its op ends: one per accelerator, rescheduled for
    every op (:meth:`after`) instead of a new ``Timeout`` each time. Together with the clock
    kept by the process, that saved 1.4 % of a run's wall time: one object fewer to build
    between kernels that leave the caches cold."""

    def after(self, cycles: int) -> OpDone:
        self.callbacks = []
        self.env.schedule(self, delay=cycles)
        return self


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
        self.wake: Wake | None = None  # what the process waits on; None while it works
        # fixed cycles per op (the ideal preset), or None: charged from the tiles' reports
        self._forward_cycles = timing.forward_cycles
        self._backward_cycles = timing.backward_cycles
        self._update_cycles = timing.update_cycles

    # ------------------------------------------------------------------ inputs
    def expect(self, arrival: int) -> None:
        """An input will arrive at cycle ``arrival``: if the process waits, have it resume then.

        Links call it only while ``wake`` is set (a check cheaper than the call)."""
        wake = self.wake
        if wake is None:
            return
        if wake.at is None:
            wake.fire_at(arrival)
        elif arrival < wake.at:  # sooner than the arrival it waits for: move the waiter over
            sooner = Wake(self.env)
            sooner.callbacks, wake.callbacks = wake.callbacks, []
            sooner.fire_at(arrival)
            self.wake = sooner

    # ----------------------------------------------------------------- process
    def run(self):
        """The process: take in arrivals, decide, compute and post at the op's start, hold.

        Kept lean (one policy call per decision, one numerics call per op, one reused event
        per op and none for transfers, the clock tracked locally, trace rows appended by a C
        call): a pipeline runs millions of ops, and the kernels between them leave the
        interpreter's caches cold, so every Python step here costs several times what it
        costs in a micro-benchmark.
        """
        env = self.env
        counter = self.engine.event_counter
        policy = self.policy
        take = policy.take
        record = self.tracer.record
        index = self.index
        inbound = self.inbound
        numerics = {"F": self._forward, "B": self._backward, "U": self._update}
        op_done = OpDone(env).after
        now = env.now  # kept here: the process knows when it resumes
        while True:
            for link in inbound:
                if link.queue:
                    link.collect(now)
            choice = take()
            if choice is None:
                if policy.finished():
                    return
                wake = self.wake = Wake(env)
                arrivals = [t for t in (link.next_arrival() for link in inbound) if t is not None]
                if arrivals:
                    wake.fire_at(min(arrivals))
                yield wake
                counter[0] += 1
                self.wake = None
                now = env.now
                continue
            op, item = choice
            version = self.version
            try:
                cycles, result = numerics[op](item)
            except ConfigError as exc:  # inside a run only non-finite values reach a tile's checks
                raise Diverged(item) from exc
            end = now + cycles
            # post on: activations forward, errors back, the loss gradient to the own backward
            transfer = None
            if op == "F":
                if self.next_link is None:
                    self.ready_backward[item] = result
                else:
                    transfer = self.next_link.post(item, result, end, version)
            elif op == "B" and self.prev_link is not None:
                transfer = self.prev_link.post(item, result, end, version)
            if cycles:
                yield op_done(cycles)
                counter[0] += 1
            record((index, op, item, now, end, version))
            if transfer is not None:
                record(transfer)
            if op == "U":
                self.version += 1
                if index == 0:
                    self.engine.samples_applied(result)
            now = end

    # ------------------------------------------------------------- numerics
    # Each returns (cycles, what the op passes on: the payload to post, or the samples an
    # update applied). Activations and errors are not scanned here: a non-finite value fails
    # the finiteness check of the tile that reads it next (a ``ConfigError``, turned into
    # ``Diverged``); the last stage checks its loss.
    def _forward(self, item: int) -> tuple[int, np.ndarray]:
        x = self.engine.inputs(item) if self.index == 0 else self.ready_forward.pop(item)
        out, reports = self.stage.forward(item, x)
        cycles = self._forward_cycles
        if cycles is None:
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
        cycles = self._backward_cycles
        if cycles is None:
            cycles = self.timing.backward(reports)
        return cycles, error

    def _update(self, item: int) -> tuple[int, int]:
        """Apply the stored pairs; hands on how many samples they were."""
        rows = self.stage.pending_rows
        reports = self.stage.update(self.engine.lr)
        cycles = self._update_cycles
        if cycles is None:
            cycles = self.timing.update(reports)
        return cycles, rows
