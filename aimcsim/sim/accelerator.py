"""An accelerator: a SimPy process that owns one stage's crossbars and runs its ops one at a time.

The process decides its next op among those whose inputs have arrived, performs the op's
numerics on its own crossbars at the op's start (a forward reads whatever the crossbars hold
at that moment; an update runs the transfers of compound crossbars with it, and they follow
it as an op of their own, T), posts the results on at once with the cycle they arrive (activations to the
next stage, errors to the previous one, the loss gradient to itself on the last stage; see
:mod:`.link`) and holds the accelerator for the op's cycles, as the cost model prices them.
A decision at cycle t sees every input that arrived at or before t, like hardware that
samples its inputs once per cycle, so the event order, and with it the staleness, does not
depend on how SimPy orders the events of one cycle.

Everything goes through SimPy's public API: an op holds the accelerator with a ``Timeout``;
an accelerator with nothing to do sleeps until the earliest input it knows of (a
``Timeout``) or, knowing of none, on a plain event. A link that posts an input arriving
sooner than that creates the wake-up ``Timeout`` at once and interrupts the sleeper, which
then waits for it: the wake-up is scheduled when the input is posted, as the hardware would
see it, so a run's event order is fixed by the ops alone.

Connections are explicit (desmod's shape): links in and out, the data feed's inputs on the
first stage, the loss on the last, a probe that hears about applied samples, and the run
control to report a failure to. Nothing here calls back into the engine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simpy

from ..cost import Cost, CostModel
from ..errors import ConfigError
from ..network import LossHead, Stage
from ..ops import BACKWARD, FORWARD, TRANSFER, UPDATE
from ..trace import TraceRow
from .control import RunControl, SampleProbe
from .link import Link


class NonFiniteLoss(Exception):
    """The last stage's loss of a micro-batch is NaN or inf (the run then stops as diverged)."""


class Accelerator:
    """Stage ``stage.index`` of the pipeline on its own accelerator."""

    def __init__(self, env: simpy.Environment, stage: Stage, schedule, cost: CostModel, record: Callable,
                 control: RunControl, counter: list[int], lr: float, reduction: str = "mean") -> None:
        self.env = env
        self.stage = stage
        self.index = stage.index
        self.cost = cost.cost
        self.record = record  # the tracer's hot path: append one trace row
        self.control = control
        self.counter = counter  # SimPy events that resumed a process, for the summary
        self.lr = lr
        self.reduction = reduction  # how an update combines the micro-batches it holds (Stage.update)
        self.ready_forward: dict[int, np.ndarray] = {}
        self.ready_backward: dict[int, np.ndarray] = {}
        self.policy = schedule.policy(self)
        self.version = 0  # updates applied to this stage's weights
        self.inputs: Callable[[int], np.ndarray] | None = None  # first stage: the data feed
        self.loss: LossHead | None = None  # last stage: loss and its gradient
        self.applied: SampleProbe | None = None  # first stage: told of every applied update
        self.next_link: Link | None = None  # to stage k + 1 (activations)
        self.prev_link: Link | None = None  # to stage k - 1 (errors)
        self.inbound: tuple[Link, ...] = ()  # the links towards this stage
        self.process: simpy.Process | None = None
        self.waiting = False  # asleep with nothing to do; links then call :meth:`expect`
        self._alarm: simpy.Timeout | None = None  # the wake-up for the earliest known arrival
        self._alarm_at: int | None = None
        self._redirect = False  # an interrupt is on its way to make the sleeper take ``_alarm``

    def start(self) -> simpy.Process:
        self.process = self.env.process(self.run())
        return self.process

    # ------------------------------------------------------------------ inputs
    def expect(self, arrival: int) -> None:
        """An input will arrive at cycle ``arrival`` while the process sleeps: if that is sooner
        than its wake-up, schedule a wake-up for it now and interrupt the sleeper to take it."""
        if self._alarm_at is not None and arrival >= self._alarm_at:
            return
        env = self.env
        self._alarm_at = arrival
        self._alarm = env.timeout(arrival - env.now)
        if not self._redirect:
            self._redirect = True
            self.process.interrupt()

    def _sleep(self, now: int):
        """Wait for the earliest input on its way (or for one to be posted); resume at its arrival."""
        arrivals = [t for t in (link.next_arrival() for link in self.inbound) if t is not None]
        if arrivals:
            self._alarm_at = min(arrivals)
            target = self._alarm = self.env.timeout(self._alarm_at - now)
        else:
            target = self.env.event()  # nothing known yet: a post will redirect us
        self.waiting = True
        while True:
            try:
                yield target
                break
            except simpy.Interrupt:  # a sooner arrival was posted: wait for its wake-up instead
                self.counter[0] += 1
                self._redirect = False
                target = self._alarm
        self.counter[0] += 1
        self.waiting = False
        self._alarm = self._alarm_at = None

    # ----------------------------------------------------------------- process
    def run(self):
        """The process: take in arrivals, decide, compute and post at the op's start, hold.

        Kept lean (one policy call per decision, one numerics call per op, one event per op
        and none for transfers, the clock tracked locally): a pipeline runs millions of ops,
        and the kernels between them leave the interpreter's caches cold.
        """
        env = self.env
        counter = self.counter
        policy = self.policy
        take = policy.take
        record = self.record
        index = self.index
        inbound = self.inbound
        numerics = {FORWARD: self._forward, BACKWARD: self._backward, UPDATE: self._update}
        now = env.now  # kept here: the process knows when it resumes
        while True:
            for link in inbound:
                if link.queue:
                    link.collect(now)
            choice = take()
            if choice is None:
                if policy.finished():
                    return
                yield from self._sleep(now)
                now = env.now
                continue
            op, item = choice
            version = self.version
            try:
                (cycles, energy), result = numerics[op](item)
            except (ConfigError, NonFiniteLoss):  # inside a run only non-finite values reach a tile's checks
                self.control.diverged(item)
                return
            end = now + cycles
            # post on: activations forward, errors back, the loss gradient to the own backward
            transfer = None
            if op == FORWARD:
                if self.next_link is None:
                    self.ready_backward[item] = result
                else:
                    transfer = self.next_link.post(item, result, end, version)
            elif op == BACKWARD and self.prev_link is not None:
                transfer = self.prev_link.post(item, result, end, version)
            if cycles:
                yield env.timeout(cycles)
                counter[0] += 1
            record(TraceRow(index, op, item, now, end, version, energy))
            if transfer is not None:
                record(transfer)
            if op == UPDATE:
                if self.stage.update_changes_weights:
                    self.version += 1
                if self.applied is not None:
                    self.applied.publish(result, end)
                if self.stage.last_transfers:  # a compound's transfers: their own op, right after
                    end = yield from self._transfers(item, end)
            now = end

    def _transfers(self, item: int, start: int):
        """Hold the accelerator for the transfers the update just ran (op T, numerics already
        done with the update's) and record them; returns the cycle they end."""
        stage = self.stage
        cycles, energy = self.cost(TRANSFER, stage.last_transfers)
        end = start + cycles
        if cycles:
            yield self.env.timeout(cycles)
            self.counter[0] += 1
        self.record(TraceRow(self.index, TRANSFER, item, start, end, self.version, energy))
        if stage.transfers_changed_weights:
            self.version += 1
        return end

    # ------------------------------------------------------------- numerics
    # Each returns (its Cost: cycles and energy, what the op passes on: the payload to post,
    # or the samples an update applied). Activations and errors are not scanned here: a non-finite value fails
    # the finiteness check of the tile that reads it next (a ``ConfigError``); the last stage
    # checks its loss.
    def _forward(self, item: int) -> tuple[Cost, np.ndarray]:
        x = self.inputs(item) if self.inputs is not None else self.ready_forward.pop(item)
        out, reports = self.stage.forward(item, x)
        cost = self.cost(FORWARD, reports)
        if self.loss is None:
            return cost, out
        grad = self.loss(item, out)
        if grad is None:
            raise NonFiniteLoss(item)
        return cost, grad

    def _backward(self, item: int) -> tuple[Cost, np.ndarray]:
        error, reports = self.stage.backward(item, self.ready_backward.pop(item))
        return self.cost(BACKWARD, reports), error

    def _update(self, item: int) -> tuple[Cost, int]:
        """Apply the stored pairs; hands on how many samples they were."""
        rows = self.stage.pending_rows
        reports = self.stage.update(self.lr, self.reduction)
        return self.cost(UPDATE, reports), rows
