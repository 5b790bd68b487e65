"""The pipeline planner: where to cut a network, and the pace a schedule will run at, before training.

**Probe.** A copy of the run's network (same seed, same device population, the run's own data
feed, learning rate and update rule) runs a few micro-batches (:data:`PROBE_MICROBATCHES`),
one *unit* at a time: an analog layer with the digital layers that follow it, the piece a
partition counts. Every op reports what the hardware did (reads with their bound-management
passes, updates with their realised pulse-train lengths, a compound's transfers) and every
cut the tensors that would cross it (skip tensors included). Nothing of the run itself is
touched: its network, streams and results are the same whatever the partition rule.

**Cost of a stage.** A stage of units a..b-1 is priced by the run's own cost model
(:class:`~aimcsim.cost.CostModel`) on the concatenated reports of its units, micro-batch by
micro-batch, exactly as the simulation prices a stage op: F, B, U, T per micro-batch (their
mean over the probe), and the link it sends on (TF forward, TB back, each direction its own
resource). Where an op's cycles follow from shapes alone (reads without bound management,
fixed-cycle presets) the probe reproduces them exactly; where they depend on the data (bound
management repeats, the pulse-train length that update-BL management picks from
lr·max|x|·max|d|, transfers) it measures them on the probe's micro-batches, and the run's
later micro-batches differ from those: that is where a prediction is not exact.

**Partition.** ``time``: the contiguous partition into K stages whose slowest resource (a
stage's F + B + U + T, or one direction of a link) per micro-batch is least, by dynamic
programming over all contiguous partitions; ties (a fixed-cycle clock where every stage op
costs the same) go to the weight-balanced cut. ``energy``: the least predicted energy per
sample (ops, links, static power at the cut's pace) among cuts at most
:data:`ENERGY_PACE_SLACK` slower than the time cut. ``weights`` (alias ``balanced``):
weights times patches per stage, balanced.

**Prediction.** :func:`predict` runs the schedule's own event loop (the same accelerators,
links and policies as a run) on *replay stages* that do no arithmetic and report, for item
i, the probe's reports of micro-batch i mod P; the cycles it takes are the predicted
cycles. So every schedule — list schedules, ``async``, ``async_stash`` — is predicted by
the machinery that runs it, bubbles and link contention included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .cost import CostModel
from .data import Dataset
from .errors import ConfigError
from .ops import BACKWARD, FORWARD, SEND_ACTIVATIONS, SEND_ERRORS, TRANSFER, UPDATE, LinkReport, OpReport
from .sim.schedules import SCHEDULES, effective_update, is_synchronous
from .trace import bubble_fraction

#: micro-batches the probe runs (each op's mean is taken over them)
PROBE_MICROBATCHES = 8
#: micro-batches a prediction replays at most (the per-sample pace of a longer run is that of its first ones)
PREDICT_MAX_ITEMS = 512
#: partition rules (``pipeline.partition``), an explicit list of layer counts aside
PARTITION_RULES = ("weights", "balanced", "time", "energy")
#: ``energy``: how much slower than the time cut's pace an energy cut may be (the throughput bound)
ENERGY_PACE_SLACK = 0.10
#: ``stages: auto`` with ``partition: time``: the fewest stages whose predicted pace is within this of the fastest
AUTO_STAGES_SLACK = 0.05


@dataclass
class UnitProbe:
    """What one unit (an analog layer and the digital layers after it) did on each probe micro-batch."""

    name: str
    forward: list[list[OpReport]] = field(default_factory=list)
    backward: list[list[OpReport]] = field(default_factory=list)
    update: list[list[OpReport]] = field(default_factory=list)
    transfer: list[list[OpReport]] = field(default_factory=list)
    sends: list[int] = field(default_factory=list)  # elements crossing a cut after it (forward)
    returns: list[int] = field(default_factory=list)  # their gradient's elements (back across that cut)
    weights: float = 0.0  # weights times patches: what the weights partition balances


@dataclass
class StagePlan:
    """One stage's predicted busy time per micro-batch, in cycles (means over the probe)."""

    units: tuple[int, int]  # analog layers first..last + 1
    names: list[str]
    forward: float
    backward: float
    update: float
    transfer: float
    link_forward: float  # the link it sends activations on (0 on the last stage)
    link_backward: float  # the link its gradients come back on
    energy: float = 0.0  # pJ per micro-batch of its ops and of the link after it (no static energy)

    @property
    def busy(self) -> float:
        """What occupies its accelerator per micro-batch: F + B + U + T."""
        return self.forward + self.backward + self.update + self.transfer

    @property
    def bound(self) -> float:
        """The slowest of its accelerator and the two directions of the link after it."""
        return max(self.busy, self.link_forward, self.link_backward)


@dataclass
class Plan:
    """A partition and what the planner predicts for it."""

    rule: str
    partition: list[int]
    stages: list[StagePlan]
    microbatch_size: int
    predicted: dict | None = None  # the run's schedule on this partition (:func:`predict`)

    @property
    def bottleneck(self) -> float:
        """Cycles per micro-batch of the slowest resource: the pace of a pipeline without flushes."""
        return max(s.bound for s in self.stages)

    def single_layer_bound(self) -> str | None:
        """A note when one analog layer alone is slower than a fair share (total / K) and bounds the pace."""
        k = len(self.stages)
        total = sum(s.busy for s in self.stages)
        slowest = max(self.stages, key=lambda s: s.bound)
        mb = self.microbatch_size
        if k > 1 and slowest.units[1] - slowest.units[0] == 1 and slowest.busy > total / k * 1.05:
            return (f"layer {slowest.names[0]} alone sets the pace: {slowest.busy / mb:,.0f} cycles per sample, "
                    f"more than a fair share ({total / k / mb:,.0f} = total / {k}); no cut can balance it")
        return None


# ----------------------------------------------------------------------------- the probe
def probe(config, data: Dataset, network_factory, micro_batches: int = PROBE_MICROBATCHES) -> list[UnitProbe]:
    """Run ``micro_batches`` of the config's training on a fresh network (``network_factory()``),
    unit by unit, and keep every op's reports (see the module doc). Updates come as in the run:
    after every micro-batch, or, for a flushing schedule, once per mini-batch of M (then the
    probe runs whole mini-batches, and a mini-batch's update reports go to its first item)."""
    from .network import LossHead, layer_costs  # noqa: PLC0415 (the network imports the sim's helpers)
    from .sim.feed import DataFeed  # noqa: PLC0415

    p = config.pipeline
    network = network_factory()
    units = network.stages([1] * network.n_layers)
    weights = layer_costs(network.all_layers)
    group = update_group(config)
    n_items = max(1, micro_batches, group)
    n_items = -(-n_items // group) * group
    feed = DataFeed(data, p.microbatch_size, n_items, config.seed)
    loss = LossHead(config.model.loss, feed.targets)
    out = [UnitProbe(u.layers[0].name, weights=w) for u, w in zip(units, weights)]
    with np.errstate(over="ignore", invalid="ignore"):
        for item in range(n_items):
            x = feed.inputs(item)
            for u, unit in enumerate(units):
                x, reports = unit.forward(item, x)
                out[u].forward.append(reports)
                out[u].sends.append(int(x.size) if u < len(units) - 1 else 0)
            grad = loss(item, x)
            if grad is None:
                raise ConfigError("pipeline.partition: the planner's probe diverged (a non-finite loss on its "
                                  "first micro-batches); check train.lr and the device")
            for u in range(len(units) - 1, -1, -1):
                grad, reports = units[u].backward(item, grad)
                out[u].backward.append(reports)
                if u > 0:
                    out[u - 1].returns.append(int(grad.size))
            out[-1].returns.append(0)
            for u, unit in enumerate(units):
                out[u].update.append([])
                out[u].transfer.append([])
            if (item + 1) % group == 0:  # the update the run makes here, held by the group's first item
                first = item + 1 - group
                for u, unit in enumerate(units):
                    out[u].update[first] = unit.update(config.train.lr, config.train.minibatch_reduction)
                    out[u].transfer[first] = list(unit.last_transfers)
    return out


def update_group(config) -> int:
    """Micro-batches per update in the run: M for a schedule that flushes its mini-batches, else 1."""
    p = config.pipeline
    flushes = (is_synchronous(p.schedule, p.update) and SCHEDULES[p.schedule].minibatches
               and effective_update(p.schedule, p.update) == "flush")
    return p.microbatches if flushes else 1


# ----------------------------------------------------------------------------- stage costs
class StageCosts:
    """Predicted cycles of any contiguous group of units, from the probe and the cost model."""

    def __init__(self, units: list[UnitProbe], cost: CostModel) -> None:
        self.units = units
        self.cost = cost
        self.n_probe = len(units[0].forward)
        self._cache: dict[tuple[int, int], StagePlan] = {}

    def _mean(self, op: str, lists: list[list[list[OpReport]]]) -> tuple[float, float]:
        """Mean cycles and energy (pJ) of the op over the probe's micro-batches."""
        cycles, energy = [], []
        for i in range(self.n_probe):
            reports = [r for per_unit in lists for r in per_unit[i]]
            c = self.cost.cost(op, reports) if reports or op in (FORWARD, BACKWARD, UPDATE) else (0, 0.0)
            cycles.append(c[0])
            energy.append(c[1])
        return float(np.mean(cycles)), float(np.mean(energy))

    def _link(self, op: str, elements: list[int]) -> tuple[float, float]:
        if not any(elements):
            return 0.0, 0.0
        costs = [self.cost.cost(op, (LinkReport(n),)) for n in elements]
        return float(np.mean([c[0] for c in costs])), float(np.mean([c[1] for c in costs]))

    def stage(self, a: int, b: int) -> StagePlan:
        """Units a..b-1 as one stage."""
        key = (a, b)
        if key not in self._cache:
            us = self.units[a:b]
            last = b == len(self.units)
            ops = [self._mean(FORWARD, [u.forward for u in us]), self._mean(BACKWARD, [u.backward for u in us]),
                   self._mean(UPDATE, [u.update for u in us]), self._mean(TRANSFER, [u.transfer for u in us])]
            links = [(0.0, 0.0), (0.0, 0.0)] if last else [self._link(SEND_ACTIVATIONS, self.units[b - 1].sends),
                                                            self._link(SEND_ERRORS, self.units[b - 1].returns)]
            self._cache[key] = StagePlan((a, b), [u.name for u in us], *(c for c, _ in ops), *(c for c, _ in links),
                                         energy=sum(e for _, e in ops + links))
        return self._cache[key]

    def plan(self, partition: list[int], rule: str, microbatch_size: int) -> Plan:
        bounds = np.concatenate([[0], np.cumsum(partition)]).astype(int)
        return Plan(rule, list(partition), [self.stage(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])],
                    microbatch_size)


def _best_cut(n: int, stages: int, extend) -> list[int]:
    """The contiguous cut of n units into ``stages`` groups whose value is least, by dynamic
    programming: ``extend(value so far, start, end)`` is the value with units start..end-1 as
    the next group (None: not allowed); values compare as tuples."""
    if stages > n:
        raise ConfigError(f"pipeline.stages: {stages} stages need at least as many layers (the model has {n})")
    best: list[list[tuple | None]] = [[None] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = (0.0, 0.0)
    for s in range(1, stages + 1):
        for end in range(s, n - (stages - s) + 1):
            for start in range(s - 1, end):
                prev = best[s - 1][start]
                value = None if prev is None else extend(prev, start, end)
                if value is not None and (best[s][end] is None or value < best[s][end]):
                    best[s][end], cut[s][end] = value, start
    if best[stages][n] is None:
        raise ConfigError(f"pipeline.partition: no cut into {stages} stages meets the planner's bound")
    sizes, end = [], n
    for s in range(stages, 0, -1):
        start = cut[s][end]
        sizes.append(end - start)
        end = start
    return sizes[::-1]


def time_partition(costs: StageCosts, stages: int) -> list[int]:
    """The contiguous partition into ``stages`` groups whose slowest resource is least; ties
    broken by the weights each stage holds (the ``weights`` partition's objective)."""
    weights = np.concatenate([[0.0], np.cumsum([u.weights for u in costs.units])])
    return _best_cut(len(costs.units), stages, lambda prev, a, b: (
        max(prev[0], costs.stage(a, b).bound), max(prev[1], weights[b] - weights[a])))


def energy_per_microbatch(costs: StageCosts, plan: Plan) -> float:
    """Predicted pJ per micro-batch: every stage's ops and links, and static power of its
    accelerators over the pace (the bottleneck's cycles)."""
    static = costs.cost.static_pj(int(math.ceil(plan.bottleneck)), len(plan.stages))
    return sum(s.energy for s in plan.stages) + static


def energy_partition(costs: StageCosts, stages: int, microbatch_size: int,
                     slack: float = ENERGY_PACE_SLACK) -> list[int]:
    """The cut of least predicted energy per sample among those whose slowest resource is within
    ``slack`` of the time cut's: dynamic programming minimises the ops' and links' energy
    under that bound, then the time cut is kept if static power at its faster pace makes it
    cheaper."""
    fastest = time_partition(costs, stages)
    bound = costs.plan(fastest, "time", microbatch_size).bottleneck * (1.0 + slack)

    def extend(prev: tuple, a: int, b: int) -> tuple | None:
        here = costs.stage(a, b)
        return None if here.bound > bound else (prev[0] + here.energy, max(prev[1], here.bound))

    frugal = _best_cut(len(costs.units), stages, extend)
    totals = {tuple(c): energy_per_microbatch(costs, costs.plan(c, "energy", microbatch_size))
              for c in (frugal, fastest)}
    return list(min(totals, key=lambda c: (totals[c], c != tuple(frugal))))


# ----------------------------------------------------------------------------- prediction
class _Size:
    """A payload as a link sees it: its element count."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


class ReplayStage:
    """A stage that does no arithmetic: item i reports what the probe's units a..b-1 did on
    micro-batch i mod P (see :func:`predict`)."""

    def __init__(self, index: int, units: list[UnitProbe], before: UnitProbe | None, rows: int) -> None:
        self.index = index
        self.units = units
        self.before = before  # the unit before the stage: its ``returns`` are this stage's gradients back
        self.rows = rows
        self.n_probe = len(units[0].forward)
        self.update_changes_weights = True
        self.transfers_changed_weights = False
        self.stash_weights = False
        self.last_transfers: list[OpReport] = []
        self.pending_rows = 0
        self._held: dict[int, int] = {}
        self._pending: list[int] = []

    def forward(self, item: int, x) -> tuple[object, list[OpReport]]:
        i = item % self.n_probe
        return _Size(self.units[-1].sends[i]), [r for u in self.units for r in u.forward[i]]

    def backward(self, item: int, grad, commit: bool = True) -> tuple[object, list[OpReport]]:
        i = item % self.n_probe
        self._held[item] = i
        if commit:
            self.commit(item)
        back = _Size(self.before.returns[i]) if self.before is not None else None
        return back, [r for u in reversed(self.units) for r in u.backward[i]]

    def commit(self, item: int) -> None:
        self._pending.append(self._held.pop(item))
        self.pending_rows += self.rows

    def update(self, lr: float, reduction: str = "mean") -> list[OpReport]:
        pending, self._pending = self._pending, []
        self.pending_rows = 0
        self.last_transfers = [r for i in pending for u in self.units for r in u.transfer[i]]
        return [r for i in pending for u in self.units for r in u.update[i]]


def replay_stages(units: list[UnitProbe], partition: list[int], rows: int) -> list[ReplayStage]:
    """One replay stage per group of ``partition``."""
    bounds = np.concatenate([[0], np.cumsum(partition)]).astype(int)
    stages = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        stages.append(ReplayStage(k, units[a:b], units[a - 1] if a > 0 else None, rows))
    return stages


def replay_loss(item: int, outputs) -> object:
    """The last stage's loss in a replay: a gradient the stage's own backward takes."""
    return outputs


@dataclass
class Replay:
    """What an engine needs to predict instead of train: the probe, the partition, the micro-batches."""

    units: list[UnitProbe]
    partition: list[int]
    items: int = PREDICT_MAX_ITEMS


def predict(config, data: Dataset, units: list[UnitProbe], partition: list[int],
            items: int = PREDICT_MAX_ITEMS) -> dict:
    """Predicted cycles of the config's schedule on ``partition``: its event loop on replay
    stages over at most ``items`` micro-batches. Returns cycles, samples, cycles per sample,
    the accelerators' busy share and energy per sample (None without an energy model)."""
    from .sim.engine import Engine  # noqa: PLC0415 (the engine imports the planner)

    group = config.pipeline.microbatches if SCHEDULES[config.pipeline.schedule].minibatches else 1
    items = max(group, items // group * group)  # whole mini-batches
    engine = Engine(config, data, replay=Replay(units, list(partition), items))
    engine.run()
    if engine.control.status != "ok":
        raise ConfigError(f"pipeline: the prediction's replay did not finish ({engine.control.message})")
    cycles = int(engine.tracer.end)
    samples = engine.samples
    energy = (engine.energy_at(cycles) / samples) if engine.energy.enabled and samples else None
    return {"cycles": cycles, "samples": samples, "cycles_per_sample": cycles / samples if samples else math.nan,
            "bubble_fraction": bubble_fraction(engine.tracer.accelerator_utilization()),
            "energy_pj_per_sample": energy}


def plan_partition(config, data: Dataset, network_factory) -> tuple[Plan, list[UnitProbe], StageCosts]:
    """The planner's partition for the config's rule (``time``, or the weights one with its
    predicted costs), with the probe and stage costs it used."""
    from .network import balanced_partition  # noqa: PLC0415

    p = config.pipeline
    units = probe(config, data, network_factory)
    costs = StageCosts(units, CostModel(config.timing_model(), config.energy_model()))
    if isinstance(p.partition, list):
        partition, rule = list(p.partition), "given"
    elif p.partition == "time":
        partition, rule = time_partition(costs, p.stages), "time"
    elif p.partition == "energy":
        partition, rule = energy_partition(costs, p.stages, p.microbatch_size), "energy"
    else:
        partition, rule = balanced_partition([u.weights for u in units], p.stages), "weights"
    return costs.plan(partition, rule, p.microbatch_size), units, costs


def choose_partition(config, data: Dataset, network) -> tuple[list[int], Plan | None]:
    """The run's partition (an explicit list, the weights rule, or the planner's) and its plan
    with the predicted pace of the run's schedule. The probe trains a copy of ``network``'s
    config, so the run itself is untouched. Only the planner's rules need the probe: for the
    others a probe that fails (a non-finite loss on its first micro-batches) leaves the run
    without a prediction rather than refusing it."""
    from .network import balanced_partition, build_network, layer_costs  # noqa: PLC0415

    p = config.pipeline
    planned = p.partition in ("time", "energy") and p.stages > 1
    try:
        plan, units, _ = plan_partition(config, data, lambda: build_network(config, data))
        plan.predicted = predict(config, data, units, plan.partition)
    except ConfigError:
        if planned:
            raise
        return (list(p.partition) if isinstance(p.partition, list)
                else balanced_partition(layer_costs(network.all_layers), p.stages)), None
    return plan.partition, plan


# ----------------------------------------------------------------------------- aimcsim plan
def plan_report(config, data: Dataset) -> dict:
    """What ``aimcsim plan`` prints: the cut, each stage's predicted busy time per sample, and
    every schedule's predicted pace on that cut (a schedule the config cannot take: why)."""
    from .config import load_config  # noqa: PLC0415
    from .network import balanced_partition, build_network  # noqa: PLC0415

    options = None
    if config.pipeline._auto:
        config, options = choose_stages(config, data)
    p = config.pipeline
    mb = p.microbatch_size
    plan, units, costs = plan_partition(config, data, lambda: build_network(config, data))
    weights_cut = balanced_partition([u.weights for u in units], p.stages)
    time_cut = time_partition(costs, p.stages)
    energy = config.energy_model().enabled
    energy_cut = energy_partition(costs, p.stages, mb) if energy else None
    stages = []
    for k, s in enumerate(plan.stages):
        stages.append({"stage": k, "layers": s.names, "forward": s.forward / mb, "backward": s.backward / mb,
                       "update": s.update / mb, "transfer": s.transfer / mb, "link_forward": s.link_forward / mb,
                       "link_backward": s.link_backward / mb, "busy": s.busy / mb,
                       "share_of_bottleneck": s.bound / plan.bottleneck if plan.bottleneck else 1.0})
    resolved = config.resolved()
    schedules: dict[str, dict] = {}
    probes = {update_group(config): units}
    for name, kind in SCHEDULES.items():
        if kind.from_file:
            continue
        tree = {**resolved, "pipeline": {**resolved["pipeline"], "schedule": name, "partition": plan.partition}}
        tree["pipeline"].pop("actions", None)
        try:
            other = load_config(tree, unused="drop")
            group = update_group(other)
            if group not in probes:
                probes[group] = probe(other, data, lambda: build_network(other, data))
            schedules[name] = predict(other, data, probes[group], plan.partition)
        except ConfigError as exc:
            schedules[name] = {"error": str(exc)}
    return {"partition_rule": plan.rule, "partition": plan.partition, "weights_partition": weights_cut,
            "time_partition": time_cut, "stages": stages, "microbatch_size": mb,
            "bottleneck_cycles_per_sample": plan.bottleneck / mb,
            "weights_bottleneck_cycles_per_sample": costs.plan(weights_cut, "weights", mb).bottleneck / mb,
            "time_bottleneck_cycles_per_sample": costs.plan(time_cut, "time", mb).bottleneck / mb,
            "energy_partition": energy_cut,
            "energy_pj_per_sample": ({rule: energy_per_microbatch(costs, costs.plan(c, rule, mb)) / mb
                                      for rule, c in (("weights", weights_cut), ("time", time_cut),
                                                      ("energy", energy_cut))} if energy else None),
            "probe_microbatches": len(units[0].forward), "schedule": p.schedule, "schedules": schedules,
            "stage_options": ({k: {"partition": o["partition"], "cycles_per_sample": o["cycles_per_sample"],
                                   "energy_pj_per_sample": o["energy_pj_per_sample"]} for k, o in options.items()}
                              if options else None),
            "note": plan.single_layer_bound()}


def choose_stages(config, data: Dataset) -> tuple[object, dict[int, dict]]:
    """``stages: auto``: the config with the stage count the planner picks, and each count's
    prediction. With ``partition: time``, the fewest stages whose predicted cycles per sample
    (the config's schedule on its time cut) are within :data:`AUTO_STAGES_SLACK` of the
    fastest count's; with ``energy``, the count of least predicted energy per sample. Counts
    the schedule cannot take (stages per accelerator, micro-batches) are left out."""
    from .config import load_config  # noqa: PLC0415
    from .network import build_network  # noqa: PLC0415

    resolved = config.resolved()
    p = config.pipeline
    units = probe(config, data, lambda: build_network(config, data))
    costs = StageCosts(units, CostModel(config.timing_model(), config.energy_model()))
    options: dict[int, dict] = {}
    configs = {}
    for k in range(1, p.stages + 1):
        tree = {**resolved, "pipeline": {**resolved["pipeline"], "stages": k}}
        tree["pipeline"].pop("max_stages", None)
        try:
            candidate = load_config(tree, unused="drop")
        except ConfigError:
            continue
        if p.partition == "energy" and k > 1:
            cut = energy_partition(costs, k, p.microbatch_size)
        else:
            cut = time_partition(costs, k)
        options[k] = {"partition": cut, **predict(candidate, data, units, cut)}
        configs[k] = candidate
    if not options:
        raise ConfigError(f"pipeline.stages: auto found no stage count up to {p.stages} that schedule "
                          f"{p.schedule} can take")
    if p.partition == "energy":
        chosen = min(options, key=lambda k: (options[k]["energy_pj_per_sample"], k))
    else:
        fastest = min(o["cycles_per_sample"] for o in options.values())
        chosen = min(k for k, o in options.items() if o["cycles_per_sample"] <= fastest * (1 + AUTO_STAGES_SLACK))
    return configs[chosen], options
