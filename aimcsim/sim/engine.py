"""The engine builds one run from a validated config and drives SimPy until the run ends.

It builds: the data set and its feed, the network cut into stages, the schedule (which
places the stages on accelerators), the accelerators with the cost model and their
policies, the links between accelerators that hold neighbouring stages, the tracer, the
evaluator and the run control; then it connects them explicitly (the feed's inputs to the
first stage, the loss to the last, every stage's applied samples to the evaluator,
progress output and trace streaming) and steps SimPy until every policy has finished or the
run control asks to stop. Nothing it builds calls back into it.

A run ends with status ``ok``; ``diverged`` when a loss or a value a tile reads became
non-finite; ``deadlock`` when no event is left while some accelerator still waits for an input
that no one will send (a schedule error), with a message naming the waiting accelerators.
"""

from __future__ import annotations

import time

import numpy as np
import simpy
from simpy.core import EmptySchedule

from ..config import Config
from ..cost import CostModel
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..ops import SEND_ACTIVATIONS, SEND_ERRORS
from ..network import LossHead, build_network
from ..planner import Plan, Replay, choose_partition, choose_stages, replay_loss, replay_stages
from ..trace import Tracer
from .accelerator import Accelerator, StagePort
from .control import RunControl, SampleProbe
from .evaluation import Evaluator
from .feed import DataFeed, planned_items
from .link import Link, Route, local_post
from .schedules import SCHEDULES, ScheduleSpec, effective_update, make_schedule


class Engine:
    """One simulation run of a validated :class:`~aimcsim.config.Config`."""

    def __init__(self, config: Config, data: Dataset | None = None, progress=None, sink=None,
                 replay: Replay | None = None) -> None:
        self.config = cfg = config
        self.data = data if data is not None else load_dataset(cfg.data, cfg.seed)
        self.stage_options: dict[int, dict] | None = None  # stages: auto: every count's prediction
        if replay is None and cfg.pipeline._auto:
            cfg, self.stage_options = choose_stages(cfg, self.data)
            self.config = cfg
        if cfg.model.loss == "cross_entropy" and self.data.y_train.dtype.kind == "f":
            raise ConfigError("model.loss: cross_entropy needs class labels; use mse for a regression data set")
        self.timing = cfg.timing_model()
        self.energy = cfg.energy_model()
        self.cost = CostModel(self.timing, self.energy)
        p = cfg.pipeline
        self.plan: Plan | None = None  # what the planner predicted for a planned partition
        if replay is None:
            self.network = build_network(cfg, self.data)
            if self.network.n_layers < p.stages:
                raise ConfigError(f"pipeline.stages: {p.stages} stages need at least as many analog layers "
                                  f"(the model has {self.network.n_layers})")
            self.partition, self.plan = choose_partition(cfg, self.data, self.network)
            self.stages = self.network.stages(self.partition)
            self.n_items = planned_items(cfg, len(self.data.x_train))
        else:  # a prediction: stages that replay the planner's probe, no arithmetic
            self.network = None
            self.partition = list(replay.partition)
            self.stages = replay_stages(replay.units, self.partition, p.microbatch_size)
            self.n_items = min(replay.items, planned_items(cfg, len(self.data.x_train)))
        self.replay = replay
        self.schedule = make_schedule(p.schedule, ScheduleSpec(
            len(self.stages), p.microbatches, self.n_items, effective_update(p.schedule, p.update),
            p.virtual_stages or 1, cfg.action_list()))
        self.placement = self.schedule.placement  # stage -> accelerator
        self.n_accelerators = self.schedule.accelerators
        self.feed = DataFeed(self.data, p.microbatch_size, self.n_items, cfg.seed)
        self.event_counter = [0]
        self.tracer = Tracer(len(self.stages), sink, energy=self.energy.enabled, placement=self.placement)
        self.control = RunControl(p.microbatch_size)
        self.probe = SampleProbe(len(self.stages))
        self.evaluator = None if replay else Evaluator(self.network, self.data, cfg.train, self.timing.clock_ghz,
                                                       self.control, self.energy_at if self.energy.enabled else None)
        self.progress = progress
        self.accelerators: list[Accelerator] = []
        self.wall_run = 0.0

    def _build(self, env: simpy.Environment) -> list[Accelerator]:
        """Accelerators and links, connected to the feed, the loss and the observers."""
        cfg = self.config
        schedule = self.schedule
        stash = SCHEDULES[cfg.pipeline.schedule].stash
        ports = [StagePort(stage, self.placement[stage.index]) for stage in self.stages]
        for stage in self.stages:
            stage.stash_weights = stash
        accs = [Accelerator(env, a, [p for p in ports if p.accelerator == a], schedule, self.cost,
                            self.tracer.record, self.control, self.event_counter, cfg.train.lr,
                            cfg.train.minibatch_reduction) for a in range(self.n_accelerators)]
        links: dict[tuple[int, int], Link] = {}  # one per direction between two accelerators

        def route(sender: StagePort, receiver: StagePort, op: str, ready: dict):
            if sender.accelerator == receiver.accelerator:
                return local_post(ready)
            key = (sender.accelerator, receiver.accelerator)
            if key not in links:
                links[key] = link = Link(accs[key[0]], accs[key[1]], self.cost)
                accs[key[1]].inbound += (link,)
            return Route(links[key], op, sender.index, ready).post

        for p, q in zip(ports[:-1], ports[1:]):
            p.send_forward = route(p, q, SEND_ACTIVATIONS, q.ready_forward)
            q.send_backward = route(q, p, SEND_ERRORS, p.ready_backward)
        ports[0].inputs = self.feed.inputs
        for port in ports:
            port.applied = self.probe
        loss = ports[-1].loss = LossHead(cfg.model.loss, self.feed.targets) if self.replay is None else replay_loss
        tracer = self.tracer
        self.probe.subscribe(lambda samples, cycle: tracer.digest() if tracer.digest_due() else None)
        if self.progress is not None:
            progress = self.progress
            self.probe.subscribe(lambda samples, cycle: progress(
                samples, cycle, None if loss.last is None else float(np.mean(loss.last))))
        if self.evaluator is not None:
            self.probe.subscribe(self.evaluator.observe)
        return accs

    def run(self) -> None:
        """Simulate until every stage has finished its work or the run control stops the run."""
        env = self.env = simpy.Environment()
        self.accelerators = accs = self._build(env)
        control = self.control
        if self.evaluator is not None:
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
                waiting = [f"accelerator {a.index} waits for {a.policy.waiting_for()}" for a in accs
                           if not a.policy.finished()]
                if waiting:
                    control.stop("deadlock", f"deadlock at cycle {int(env.now)}: {'; '.join(waiting)}; "
                                             f"no input is on its way")
        self.tracer.digest()
        self.wall_run = time.perf_counter() - t0
        if self.evaluator is None:
            return
        metrics = self.evaluator.metrics
        if control.status == "ok" and (not metrics or metrics[-1]["samples"] != self.probe.samples):
            self.evaluator.evaluate(self.probe.samples, int(env.now))

    def energy_at(self, cycle: int) -> float:
        """The run's energy up to ``cycle``: every op recorded so far, and static power of every
        accelerator over the cycles so far."""
        return self.tracer.energy_so_far() + self.cost.static_pj(cycle, self.n_accelerators)

    # what a run produced, for the summary
    @property
    def samples(self) -> int:
        """Samples whose update every stage has applied."""
        return self.probe.samples

    @property
    def metrics(self) -> list[dict]:
        return self.evaluator.metrics
