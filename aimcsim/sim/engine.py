"""The engine builds one run from a validated config and drives SimPy until the run ends.

It builds: the data set and its feed, the network cut into stages, one accelerator per stage
with the cost model and its schedule's policy, the links between neighbours, the tracer, the
evaluator and the run control; then it connects them explicitly (the feed's inputs to the
first stage, the loss to the last, the first stage's applied samples to the evaluator,
progress output and trace streaming) and steps SimPy until every policy has finished or the
run control asks to stop. Nothing it builds calls back into it.

A run ends with status ``ok``; ``diverged`` when a loss or a value a tile reads became
non-finite; ``deadlock`` when no event is left while some stage still waits for an input
that no one will send (a schedule error), with a message naming the waiting stages.
"""

from __future__ import annotations

import math
import time

import numpy as np
import simpy
from simpy.core import EmptySchedule

from ..config import Config
from ..cost import CostModel
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..ops import SEND_ACTIVATIONS, SEND_ERRORS
from ..network import LossHead, Network, balanced_partition, layer_costs, mlp_specs, specs_from_layers
from ..trace import Tracer
from .accelerator import Accelerator
from .control import RunControl, SampleProbe
from .evaluation import Evaluator
from .feed import DataFeed
from .link import Link
from .schedules import SCHEDULES, make_schedule


def planned_items(config: Config, n_train: int) -> int:
    """Micro-batches a run trains: epochs of the data, whole mini-batches for synchronous schedules."""
    p = config.pipeline
    items = max(int(math.floor(config.train.epochs * n_train)) // p.microbatch_size, 1)
    if SCHEDULES[p.schedule].synchronous and items >= p.microbatches:
        items -= items % p.microbatches
    return items


class Engine:
    """One simulation run of a validated :class:`~aimcsim.config.Config`."""

    def __init__(self, config: Config, data: Dataset | None = None, progress=None, sink=None) -> None:
        self.config = cfg = config
        self.data = data if data is not None else load_dataset(cfg.data, cfg.seed)
        if cfg.model.loss == "cross_entropy" and self.data.y_train.dtype.kind == "f":
            raise ConfigError("model.loss: cross_entropy needs class labels; use mse for a regression data set")
        self.timing = cfg.timing_model()
        self.energy = cfg.energy_model()
        self.cost = CostModel(self.timing, self.energy)
        if cfg.model.layers is not None:
            specs = specs_from_layers(cfg.model.layers, self.data.image_shape, self.data.n_inputs,
                                      self.data.n_outputs)
        else:
            specs = mlp_specs([self.data.n_inputs, *cfg.model.hidden, self.data.n_outputs], cfg.model.activation)
        self.network = Network(specs, cfg.model.loss, device=cfg.device_params(), update=cfg.update_params(),
                               forward_io=cfg.forward_io(), backward_io=cfg.backward_io(), seed=cfg.seed,
                               init_scale=cfg.model.init_scale, tile_size=cfg.model.tile_size)
        p = cfg.pipeline
        if len(specs) < p.stages:
            raise ConfigError(f"pipeline.stages: {p.stages} stages need at least as many analog layers "
                              f"(the model has {len(specs)})")
        if isinstance(p.partition, list):
            self.partition = list(p.partition)
        else:
            self.partition = balanced_partition(layer_costs(specs), p.stages)
        self.stages = self.network.stages(self.partition)
        self.n_items = planned_items(cfg, len(self.data.x_train))
        self.feed = DataFeed(self.data, p.microbatch_size, self.n_items, cfg.seed)
        self.event_counter = [0]
        self.tracer = Tracer(len(self.stages), sink, energy=self.energy.enabled)
        self.control = RunControl(p.microbatch_size)
        self.probe = SampleProbe()
        self.evaluator = Evaluator(self.network, self.data, cfg.train, self.timing.clock_ghz, self.control,
                                   self.energy_at if self.energy.enabled else None)
        self.progress = progress
        self.accelerators: list[Accelerator] = []
        self.wall_run = 0.0

    def _build(self, env: simpy.Environment) -> list[Accelerator]:
        """Accelerators and links, connected to the feed, the loss and the observers."""
        cfg = self.config
        schedule = make_schedule(cfg.pipeline.schedule, len(self.stages), cfg.pipeline.microbatches, self.n_items)
        for stage in self.stages:
            stage.stash_weights = SCHEDULES[cfg.pipeline.schedule].stash
        accs = [Accelerator(env, stage, schedule, self.cost, self.tracer.record, self.control, self.event_counter,
                            cfg.train.lr, cfg.train.minibatch_reduction) for stage in self.stages]
        for a, b in zip(accs[:-1], accs[1:]):
            a.next_link = Link(a, b, SEND_ACTIVATIONS, self.cost)
            b.prev_link = Link(b, a, SEND_ERRORS, self.cost)
            a.inbound += (b.prev_link,)
            b.inbound += (a.next_link,)
        accs[0].inputs = self.feed.inputs
        accs[0].applied = self.probe
        loss = accs[-1].loss = LossHead(cfg.model.loss, self.feed.targets)
        tracer = self.tracer
        self.probe.subscribe(lambda samples, cycle: tracer.digest() if tracer.digest_due() else None)
        if self.progress is not None:
            progress = self.progress
            self.probe.subscribe(lambda samples, cycle: progress(
                samples, cycle, None if loss.last is None else float(np.mean(loss.last))))
        self.probe.subscribe(self.evaluator.observe)
        return accs

    def run(self) -> None:
        """Simulate until every stage has finished its work or the run control stops the run."""
        env = self.env = simpy.Environment()
        self.accelerators = accs = self._build(env)
        control = self.control
        self.evaluator.evaluate(0, 0)
        for acc in accs:
            acc.start()
        t0 = time.perf_counter()
        step = env.step
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is detected, not warned about
            try:
                while not control.stopped:
                    step()
            except EmptySchedule:
                waiting = [f"stage {a.index} waits for {a.policy.waiting_for()}" for a in accs
                           if not a.policy.finished()]
                if waiting:
                    control.stop("deadlock", f"deadlock at cycle {int(env.now)}: {'; '.join(waiting)}; "
                                             f"no input is on its way")
        self.tracer.digest()
        self.wall_run = time.perf_counter() - t0
        metrics = self.evaluator.metrics
        if control.status == "ok" and (not metrics or metrics[-1]["samples"] != self.probe.samples):
            self.evaluator.evaluate(self.probe.samples, int(env.now))

    def energy_at(self, cycle: int) -> float:
        """The run's energy up to ``cycle``: every op recorded so far, and static power of every
        accelerator over the cycles so far."""
        return self.tracer.energy_so_far() + self.cost.static_pj(cycle, len(self.stages))

    # what a run produced, for the summary
    @property
    def samples(self) -> int:
        """Samples whose update the first stage has applied."""
        return self.probe.samples

    @property
    def metrics(self) -> list[dict]:
        return self.evaluator.metrics
