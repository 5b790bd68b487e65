"""The engine: builds accelerators and links for a config, feeds data, evaluates, runs SimPy.

Training data flows as micro-batches (items) numbered in the order the data is drawn; the
order, the split and the initial weights depend only on the seed and the network, never on
the pipeline, so runs that differ only in schedule or depth start from the same state.
Samples count as trained when the first stage has applied their update; every
``eval_every`` samples the engine evaluates the network outside simulated time.
"""

from __future__ import annotations

import math
import time

import numpy as np
import simpy

from ..config import Config
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..network import Network, balanced_partition, layer_costs, mlp_specs, specs_from_layers
from ..trace import Tracer
from .accelerator import Accelerator, Diverged
from .link import Link
from .schedules import make_schedule

EVAL_MAX_TRAIN = 10_000  # train loss is measured on at most this many training samples


def planned_items(config: Config, n_train: int) -> int:
    """Micro-batches a run trains: epochs of the data, whole mini-batches for synchronous schedules."""
    p = config.pipeline
    items = max(int(math.floor(config.train.epochs * n_train)) // p.microbatch_size, 1)
    if p.schedule in ("gpipe", "1f1b") and items >= p.microbatches:
        items -= items % p.microbatches
    return items


class TargetReached(Exception):
    """Raised to end a run early when ``train.stop_at_target`` is set."""


class Engine:
    """One simulation run of a validated :class:`~aimcsim.config.Config`."""

    def __init__(self, config: Config, data: Dataset | None = None, progress=None, sink=None) -> None:
        self.config = config
        cfg = config
        self.data = data if data is not None else load_dataset(cfg.data, cfg.seed)
        if cfg.model.loss == "cross_entropy" and self.data.y_train.dtype.kind == "f":
            raise ConfigError("model.loss: cross_entropy needs class labels; use mse for a regression data set")
        self.timing = cfg.timing_model()
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
        self.lr = cfg.train.lr
        self.m = p.microbatch_size
        n_train = len(self.data.x_train)
        self.n_items = planned_items(cfg, n_train)
        epochs_needed = math.ceil(self.n_items * self.m / n_train)
        rng = np.random.default_rng([cfg.seed, 0x0DE])
        self.order = np.concatenate([rng.permutation(n_train) for _ in range(epochs_needed)])
        self.event_counter = [0]
        self.tracer = Tracer(len(self.stages), sink)
        self.metrics: list[dict] = []
        self.samples = 0
        self.next_eval = cfg.train.eval_every
        self.sample_complexity: int | None = None
        self.cycle_complexity: int | None = None
        self.status = "ok"
        self.message = ""
        self.diverged_at: int | None = None
        self.progress = progress
        self._last_loss: np.ndarray | None = None  # per-sample losses of the latest micro-batch
        n_eval = min(EVAL_MAX_TRAIN, n_train)
        self._eval_train = (self.data.x_train[:n_eval], self.data.y_train[:n_eval])

    # ------------------------------------------------------------- data feed
    def _rows(self, item: int) -> np.ndarray:
        return self.order[item * self.m:(item + 1) * self.m]

    def inputs(self, item: int) -> np.ndarray:
        return self.data.x_train[self._rows(item)]

    def targets(self, item: int) -> np.ndarray:
        return self.data.y_train[self._rows(item)]

    def record_loss(self, loss: np.ndarray) -> None:
        """Keep the latest micro-batch's losses; averaged only when progress is shown."""
        self._last_loss = loss

    # ------------------------------------------------------------ evaluation
    def samples_applied(self, rows: int) -> None:
        self.samples += rows
        if self.tracer.digest_due():
            self.tracer.digest()
        if self.progress is not None:
            last = None if self._last_loss is None else float(np.mean(self._last_loss))
            self.progress(self.samples, self.env.now, last)
        if self.samples >= self.next_eval:
            while self.next_eval <= self.samples:
                self.next_eval += self.config.train.eval_every
            self.evaluate()

    def evaluate(self) -> dict:
        cycles = int(self.env.now) if hasattr(self, "env") else 0
        with_grad = True
        train = self.network.evaluate(*self._eval_train, with_grad=with_grad)
        test = self.network.evaluate(self.data.x_test, self.data.y_test)
        row = {"samples": self.samples, "cycles": cycles, "time_ns": cycles / self.timing.clock_ghz,
               "train_loss": train["loss"], "test_loss": test["loss"],
               "test_accuracy": test.get("accuracy", float("nan")), "grad_norm_sq": train["grad_norm_sq"]}
        self.metrics.append(row)
        if not all(math.isfinite(row[k]) for k in ("train_loss", "test_loss")):
            raise Diverged(-1)
        target = self.config.train.target
        if target is not None and self.sample_complexity is None:
            value = row[target.metric]
            met = value >= target.value if target.metric == "test_accuracy" else value <= target.value
            if met:
                self.sample_complexity, self.cycle_complexity = self.samples, cycles
                if self.config.train.stop_at_target:
                    raise TargetReached()
        return row

    # ------------------------------------------------------------------- run
    def run(self) -> None:
        env = self.env = simpy.Environment()
        schedule = make_schedule(self.config.pipeline.schedule, len(self.stages),
                                 self.config.pipeline.microbatches, self.n_items)
        accs = [Accelerator(env, stage, schedule, self.timing, self.tracer, self) for stage in self.stages]
        for a, b in zip(accs[:-1], accs[1:]):
            a.next_link = Link(a, b, "TF", self.timing.transfer)
            b.prev_link = Link(b, a, "TB", self.timing.transfer)
            a.inbound += (b.prev_link,)
            b.inbound += (a.next_link,)
        self.accelerators = accs
        self.evaluate()
        for acc in accs:
            env.process(acc.run())
        t0 = time.perf_counter()
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # divergence is detected, not warned about
                env.run()
        except Diverged as exc:
            self.status = "diverged"
            item = exc.args[0] if exc.args else -1
            self.diverged_at = self.samples if item < 0 else item * self.m
            self.message = f"loss became non-finite at sample {self.diverged_at}"
        except TargetReached:
            self.message = "stopped at target"
        self.tracer.digest()
        self.wall_run = time.perf_counter() - t0
        if self.status == "ok" and (not self.metrics or self.metrics[-1]["samples"] != self.samples):
            try:
                self.evaluate()
            except (Diverged, TargetReached):
                pass
