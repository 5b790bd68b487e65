"""An accelerator: a SimPy process that owns the crossbars of its stages and runs their ops one at a time.

An accelerator holds one stage, or several (interleaved and V-shaped placements); each
stage is a :class:`StagePort` with its own inputs, weight version and connections. The
process decides its next op among those whose inputs have arrived, performs the op's
numerics on the stage's crossbars at the op's start (a forward reads whatever the crossbars
hold at that moment; an update runs the transfers of compound crossbars with it, and they
follow it as an op of their own, T), posts the results on at once with the cycle they arrive
(activations to the next stage, errors to the previous one, the loss gradient to the own
backward on the last stage; over a link to another accelerator, see :mod:`.link`, or free
of cost to a stage on the same accelerator) and holds the accelerator for the op's cycles,
as the cost model prices them.
A decision at cycle t sees every input that arrived at or before t, like hardware that
samples its inputs once per cycle, so the event order, and with it the staleness, does not
depend on how SimPy orders the events of one cycle.

Everything goes through SimPy's public API: an op holds the accelerator with a ``Timeout``;
an accelerator with nothing to do sleeps until the earliest input it knows of (a
``Timeout``) or, knowing of none, on a plain event. A link that posts an input arriving
sooner than that creates the wake-up ``Timeout`` at once and interrupts the sleeper, which
then waits for it: the wake-up is scheduled when the input is posted, as the hardware would
see it, so a run's event order is fixed by the ops alone.

Connections are explicit (desmod's shape): links in, the data feed's inputs on the first
stage, the loss on the last, a probe that hears about every stage's applied samples, and the run control
to report a failure to. Nothing here calls back into the engine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simpy

from ..cost import Cost, CostModel
from ..errors import ConfigError
from ..network import LossHead, Stage
from ..ops import BACKWARD, FORWARD, INPUT_GRAD, TRANSFER, UPDATE, WEIGHT_GRAD
from ..trace import TraceRow
from .control import RunControl, SampleProbe
from .link import Link, Post


class NonFiniteLoss(Exception):
    """The last stage's loss of a micro-batch is NaN or inf (the run then stops as diverged)."""


class StagePort:
    """One stage as its accelerator runs it: the inputs that arrived for it, its weights'
    version, and where its results go (``send_forward``: activations to the next stage, None
    on the last stage, whose loss gradient goes to its own backward; ``send_backward``: errors
    to the stage before, None on the first)."""

    __slots__ = ("stage", "index", "accelerator", "first", "ready_forward", "ready_backward", "version",
                 "inputs", "loss", "applied", "send_forward", "send_backward")

    def __init__(self, stage: Stage, accelerator: int) -> None:
        self.stage = stage
        self.index = stage.index
        self.accelerator = accelerator
        self.first = stage.index == 0  # its inputs come from the data feed
        self.ready_forward: dict[int, np.ndarray] = {}
        self.ready_backward: dict[int, np.ndarray] = {}
        self.version = 0  # changes applied to this stage's weights (what its forwards read)
        self.inputs: Callable[[int], np.ndarray] | None = None  # first stage: the data feed
        self.loss: LossHead | None = None  # last stage: loss and its gradient
        self.applied: SampleProbe | None = None  # told of every update the stage applies
        self.send_forward: Post | None = None
        self.send_backward: Post | None = None


class Accelerator:
    """Accelerator ``index``, holding the stages of ``ports`` (in stage order)."""

    def __init__(self, env: simpy.Environment, index: int, ports: list[StagePort], schedule, cost: CostModel,
                 record: Callable, control: RunControl, counter: list[int], lr: float,
                 reduction: str = "mean") -> None:
        self.env = env
        self.index = index
        self.ports = ports
        self.cost = cost.cost
        self.record = record  # the tracer's hot path: append one trace row
        self.control = control
        self.counter = counter  # SimPy events that resumed a process, for the summary
        self.lr = lr
        self.reduction = reduction  # how an update combines the micro-batches it holds (Stage.update)
        # what a W does: fire its pairs at once (immediate), or hand them to the flush's U
        self.immediate = schedule.update == "immediate"
        self.policy = schedule.policy(self)
        self.inbound: tuple[Link, ...] = ()  # the links towards this accelerator
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
        numerics = {FORWARD: self._forward, BACKWARD: self._backward, INPUT_GRAD: self._input_grad,
                    UPDATE: self._update,
                    WEIGHT_GRAD: self._weight_update if self.immediate else self._weight_commit}
        applies = (UPDATE, WEIGHT_GRAD) if self.immediate else (UPDATE,)  # ops that change weights
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
            op, port, item = choice
            version = port.version
            try:
                (cycles, energy), result = numerics[op](port, item)
            except (ConfigError, NonFiniteLoss):  # inside a run only non-finite values reach a tile's checks
                self.control.diverged(item)
                return
            end = now + cycles
            # post on: activations forward (the last stage: the loss gradient to its own backward),
            # errors back
            transfer = None
            if op == FORWARD:
                if port.send_forward is None:
                    port.ready_backward[item] = result
                else:
                    transfer = port.send_forward(item, result, end, version)
            elif (op == BACKWARD or op == INPUT_GRAD) and port.send_backward is not None:
                transfer = port.send_backward(item, result, end, version)
            if cycles:
                yield env.timeout(cycles)
                counter[0] += 1
            record(TraceRow(port.index, index, op, item, now, end, version, energy))
            if transfer is not None:
                record(transfer)
            if op in applies:
                stage = port.stage
                if stage.update_changes_weights:
                    port.version += 1
                port.applied.publish(port.index, result, end)
                if stage.last_transfers:  # a compound's transfers: their own op, right after
                    end = yield from self._transfers(port, item, end)
            now = end

    def _transfers(self, port: StagePort, item: int, start: int):
        """Hold the accelerator for the transfers the update just ran (op T, numerics already
        done with the update's) and record them; returns the cycle they end."""
        stage = port.stage
        cycles, energy = self.cost(TRANSFER, stage.last_transfers)
        end = start + cycles
        if cycles:
            yield self.env.timeout(cycles)
            self.counter[0] += 1
        self.record(TraceRow(port.index, self.index, TRANSFER, item, start, end, port.version, energy))
        if stage.transfers_changed_weights:
            port.version += 1
        return end

    # ------------------------------------------------------------- numerics
    # Each returns (its Cost: cycles and energy, what the op passes on: the payload to post,
    # or the samples an update applied). Activations and errors are not scanned here: a non-finite value fails
    # the finiteness check of the tile that reads it next (a ``ConfigError``); the last stage
    # checks its loss.
    def _forward(self, port: StagePort, item: int) -> tuple[Cost, np.ndarray]:
        x = port.inputs(item) if port.inputs is not None else port.ready_forward.pop(item)
        out, reports = port.stage.forward(item, x)
        cost = self.cost(FORWARD, reports)
        if port.loss is None:
            return cost, out
        grad = port.loss(item, out)
        if grad is None:
            raise NonFiniteLoss(item)
        return cost, grad

    def _backward(self, port: StagePort, item: int) -> tuple[Cost, np.ndarray]:
        error, reports = port.stage.backward(item, port.ready_backward.pop(item))
        return self.cost(BACKWARD, reports), error

    def _input_grad(self, port: StagePort, item: int) -> tuple[Cost, np.ndarray]:
        """The transposed reads alone; the item's pairs wait for its W."""
        error, reports = port.stage.backward(item, port.ready_backward.pop(item), commit=False)
        return self.cost(INPUT_GRAD, reports), error

    def _update(self, port: StagePort, item: int, op: str = UPDATE) -> tuple[Cost, int]:
        """Apply the stored pairs; hands on how many samples they were."""
        rows = port.stage.pending_rows
        reports = port.stage.update(self.lr, self.reduction)
        return self.cost(op, reports), rows

    def _weight_update(self, port: StagePort, item: int) -> tuple[Cost, int]:
        """``update: immediate``: W fires the item's pairs as pulses at once."""
        port.stage.commit(item)
        return self._update(port, item, WEIGHT_GRAD)

    def _weight_commit(self, port: StagePort, item: int) -> tuple[Cost, None]:
        """``update: flush``: W hands the item's pairs to the mini-batch's U (digital
        bookkeeping in the periphery: no cycles, no energy)."""
        port.stage.commit(item)
        return NO_COST, None


NO_COST = Cost(0, 0.0)
