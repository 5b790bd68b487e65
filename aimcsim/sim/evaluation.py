"""Evaluation: the network's loss, accuracy and gradient norm every ``eval_every`` applied samples.

The evaluator observes the samples every stage has applied (a
:class:`~aimcsim.sim.control.SampleProbe` subscriber) and evaluates outside simulated time:
it reads the weights exactly (or, with ``train.eval_reads: analog``, through the tiles' IO
chain from each tile's evaluation stream), costs no cycles and draws from no training
stream, so evaluating more or less often, or with analog reads, never changes training.
It keeps the metrics rows, reads the sample, cycle and (with an energy model) energy
complexity at the first evaluation that meets the target, and asks the run control to stop
on a non-finite loss or, with ``stop_at_target``, at the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..config import TrainConfig
from ..data import Dataset
from ..network import Network
from .control import RunControl


def target_met(metric: str, value: float, threshold: float) -> bool:
    """Accuracy targets are met from above, losses and gradient norms from below."""
    return value >= threshold if metric == "test_accuracy" else value <= threshold


class Evaluator:
    """Metrics rows and the complexities to the target of one run."""

    def __init__(self, network: Network, data: Dataset, train: TrainConfig, clock_ghz: float,
                 control: RunControl, energy_at: Callable[[int], float] | None = None) -> None:
        self.network = network
        self.energy_at = energy_at  # cumulative energy (pJ) of the run up to a cycle, when accounted
        self.data = data
        self.train = train
        self.clock_ghz = clock_ghz
        self.control = control
        n_eval = min(train.eval_train_samples, len(data.x_train))
        self._eval_train = (data.x_train[:n_eval], data.y_train[:n_eval])
        self.metrics: list[dict] = []
        self.samples = 0  # applied samples at the latest observation
        self.next_eval = train.eval_every
        self.sample_complexity: int | None = None
        self.cycle_complexity: int | None = None
        self.energy_complexity: float | None = None

    def observe(self, samples: int, cycle: int) -> None:
        """``samples`` have been applied by ``cycle``: evaluate when an ``eval_every`` boundary passed."""
        self.samples = samples
        if samples >= self.next_eval and not self.control.stopped:
            while self.next_eval <= samples:
                self.next_eval += self.train.eval_every
            self.evaluate(samples, cycle)

    def evaluate(self, samples: int, cycle: int) -> dict:
        """One metrics row at ``samples`` applied samples and ``cycle``; checks divergence and target."""
        reads = self.train.eval_reads
        train = self.network.evaluate(*self._eval_train, with_grad=True)  # the gradient norm: exact reads
        if reads != "exact":
            train = {**self.network.evaluate(*self._eval_train, reads=reads), "grad_norm_sq": train["grad_norm_sq"]}
        test = self.network.evaluate(self.data.x_test, self.data.y_test, reads=reads)
        row = {"samples": samples, "cycles": cycle, "time_ns": cycle / self.clock_ghz,
               "train_loss": train["loss"], "test_loss": test["loss"],
               "test_accuracy": test.get("accuracy", float("nan")), "grad_norm_sq": train["grad_norm_sq"]}
        if self.energy_at is not None:
            row["energy_pj"] = self.energy_at(cycle)
        self.metrics.append(row)
        if not all(math.isfinite(row[k]) for k in ("train_loss", "test_loss")):
            self.control.diverged(samples=samples)
            return row
        target = self.train.target
        if target is not None and self.sample_complexity is None and target_met(
                target.metric, row[target.metric], target.value):
            self.sample_complexity, self.cycle_complexity = samples, cycle
            self.energy_complexity = row.get("energy_pj")
            if self.train.stop_at_target:
                self.control.stop("ok", "stopped at target")
        return row
