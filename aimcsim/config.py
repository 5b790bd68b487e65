"""Run configuration: YAML (or a dict) -> validated, typed config, with dotted overrides.

Sections and keys are those of the design card (``seed``, ``data``, ``model``, ``device``,
``update``, ``io``, ``pipeline``, ``timing``, ``energy``, ``train``). Unknown keys, wrong types, values
out of range and inconsistent settings are rejected before anything runs, with a one-line
:class:`~aimcsim.errors.ConfigError` that names the key path.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from .applicability import ALIASES, Unused, check_given, drop_unused, given_keys, prefixed, reason
from .cost import EnergyModel, TimingModel, parse_energy, parse_timing
from .data import DEFAULT_PATHS, check_data_files, data_shape, train_size
from .compounds import (device_unused_keys, fires_pulses, floating_updates, has_transfers,
                        learning_rate_acts_alone, parse_device)
from .errors import ConfigError, did_you_mean, from_validation_error, parse_model
from .mapping import MappingConfig
from .graph import analog_count, build_layers, has_batch_norm, has_convolutions
from .params import IOParameters, UpdateParameters, parse_backward_io
from .planner import PARTITION_RULES
from .presets import apply_rpu_preset
from .sim.actions import ActionList, read_action_list
from .sim.feed import planned_items
from .sim.orders import check_microbatches
from .sim.schedules import SCHEDULES, UPDATE_MODES, effective_update, is_synchronous

TARGET_METRICS = ("train_loss", "test_loss", "test_accuracy", "grad_norm_sq")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DataConfig(_Section):
    name: Literal["digits", "synthetic", "mnist", "fashion_mnist", "cifar10"] = "digits"
    path: str | None = Field(None, description="folder with the data files (mnist, fashion_mnist, cifar10); "
                                               "fashion_mnist's default: /usr/share/datasets/fashion-mnist "
                                               "(Debian's dataset-fashion-mnist)")

    @model_validator(mode="after")
    def _default_path(self) -> "DataConfig":
        if self.path is None and self.name in DEFAULT_PATHS:
            self.path = DEFAULT_PATHS[self.name]  # a default, not the user's choice
            self.model_fields_set.discard("path")
        return self
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of digits/synthetic held out for testing")
    max_train: int | None = Field(None, ge=1, description="use at most this many training samples")
    max_test: int | None = Field(None, ge=1, description=(
        "evaluate on at most this many test samples (the first): a subset that keeps in-run evaluations cheap"))
    n_samples: int = Field(2000, ge=10, description="synthetic: number of samples")
    n_features: int = Field(16, ge=1, description="synthetic: input width")
    n_classes: int = Field(4, ge=2, description="synthetic classification: number of classes")
    task: Literal["classification", "regression"] = Field("classification", description="synthetic task")
    noise: float = Field(0.0, ge=0, description="synthetic: label noise (regression: output noise std)")

    def unused_keys(self) -> Unused:
        """The keys this data set does not read."""
        unused = {}
        if self.name != "synthetic":
            for key in SYNTHETIC_KEYS:
                unused[key] = f"only data set synthetic reads it (data.name is {self.name})"
        elif self.task == "regression":
            unused["n_classes"] = "a regression task has one output (data.task is regression)"
        if self.name in ("digits", "synthetic"):
            unused["path"] = f"data set {self.name} is generated or bundled, not read from files"
        else:
            unused["test_fraction"] = f"data set {self.name} comes with its own test set"
        return unused


SYNTHETIC_KEYS = ("n_samples", "n_features", "n_classes", "task", "noise")


class ModelConfig(_Section):
    hidden: list[int] = Field(default_factory=lambda: [32, 32], description="widths of the hidden layers")
    layers: list | None = Field(None, description="a graph of typed layers (aimcsim.graph): linear, conv, "
                                                  "activation, pool, global_pool, flatten, norm, add, the "
                                                  "basic_block macro; replaces hidden/activation")
    preset: Literal["resnet8", "resnet20", "resnet32", "lenet5"] | None = Field(
        None, description="a named network: He et al.'s CIFAR ResNets (6n + 2 layers), aihwkit's LeNet-5")
    tile_size: int = Field(512, ge=2, description="largest crossbar; bigger layers are split over several tiles")
    activation: Literal["sigmoid", "tanh", "relu"] = "sigmoid"
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    init_scale: float = Field(1.0, gt=0, description="initial weights ~ U(+-init_scale / sqrt(fan_in))")

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, values: object) -> object:
        """``hidden: null`` or ``activation: null`` (e.g. ``--set model.hidden=null`` beside a layer
        list) takes the default."""
        if isinstance(values, dict):
            values = {k: v for k, v in values.items() if not (k in ("hidden", "activation") and v is None)}
        return values

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(h < 1 for h in v):
            raise ValueError("hidden layer widths must be positive integers")
        return v

    @model_validator(mode="after")
    def _one_network(self) -> "ModelConfig":
        if self.preset is not None and self.layers is not None:
            raise ValueError("model.preset: a preset is a whole network; give it or model.layers, not both")
        return self

    def unused_keys(self) -> Unused:
        """With a layer list or a preset, the layers say it all: hidden and activation are not read."""
        if self.layers is None and self.preset is None:
            return {}
        given = "model.layers" if self.layers is not None else f"model.preset {self.preset}"
        why = f"{given} describes the network (its activation layers included); drop one of them"
        return {"hidden": why, "activation": why}


class IOConfig(_Section):
    forward: dict = Field(default_factory=dict)
    backward: dict = Field(default_factory=dict)


class PipelineConfig(_Section):
    schedule: str = Field("async", description="a registered schedule: " + ", ".join(SCHEDULES))
    stages: int | Literal["auto"] = Field(
        3, description="number of stages K (pieces of the network), one per accelerator unless virtual_stages "
                       "places several; schedule actions: from the file; auto: the planner picks K up to "
                       "max_stages (partition time or energy)")
    max_stages: int = Field(8, ge=1, description="stages: auto: the most stages the planner considers")
    microbatches: int = Field(4, ge=1, description="micro-batches M per mini-batch (synchronous and list "
                                                   "schedules); schedule actions: from the file")
    microbatch_size: int = Field(1, ge=1, description="samples per micro-batch")
    partition: list[int] | str = Field("balanced", description="weights (alias balanced: weights times patches "
                                                                "per stage), time (the planner's: the slowest "
                                                                "stage or link is least), or analog layers per "
                                                                "stage, e.g. [1, 2]")
    virtual_stages: int | None = Field(None, ge=1, description="stages per accelerator (interleaved_1f1b, "
                                                               "interleaved_zero_bubble: default 2; zbv_zero_bubble: 2)")
    update: Literal["flush", "immediate"] | None = Field(
        None, description="what a list schedule's weight parts do: flush (one update per stage after each "
                          "mini-batch, the default) or immediate (pulses at once)")
    actions: str | None = Field(None, description="schedule actions: a PyTorch _dump_csv action list (CSV)")
    _action_list: ActionList | None = PrivateAttr(None)  # the list as validated, read once
    _auto: bool = PrivateAttr(False)  # stages: auto (stages then holds the most the planner may use)

    @field_validator("stages", mode="before")
    @classmethod
    def _count_or_auto(cls, v: object) -> object:
        if v == "auto":
            return v
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError("must be a positive stage count or auto")
        return v

    @model_validator(mode="before")
    @classmethod
    def _null_is_derived(cls, values: object) -> object:
        """``stages: null`` or ``microbatches: null`` (e.g. ``--set pipeline.stages=null``) leaves
        the value to the schedule: an action list's, or the default."""
        if isinstance(values, dict):
            values = {k: v for k, v in values.items() if not (k in ("stages", "microbatches") and v is None)}
        return values

    def unused_keys(self) -> Unused:
        """The pipeline keys the schedule does not read."""
        kind = SCHEDULES[self.schedule]
        unused = {}
        if not kind.minibatches:
            unused["microbatches"] = (f"schedule {self.schedule} has no mini-batches; micro-batches follow each "
                                      f"other without a flush")
        if kind.update is not None:
            lists = ", ".join(name for name, k in SCHEDULES.items() if k.update is None)
            unused["update"] = (f"schedule {self.schedule} updates after every backward by definition; update "
                                f"({' | '.join(UPDATE_MODES)}) applies to {lists}")
        if kind.from_file:
            unused["virtual_stages"] = "with schedule actions the rows of the list place the stages; leave it out"
        elif kind.virtual_stages is None:
            several = ", ".join(name for name, k in SCHEDULES.items() if k.virtual_stages)
            unused["virtual_stages"] = (f"schedule {self.schedule} holds one stage per accelerator; {several} "
                                        f"place several")
        if not kind.from_file:
            unused["actions"] = f"only schedule actions reads an action list (schedule is {self.schedule})"
        if self.stages == 1:
            unused["partition"] = "one stage holds every layer; there is nothing to partition"
        if not self._auto:
            unused["max_stages"] = "stages is a number; max_stages bounds the planner's choice under stages: auto"
        return unused

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        if v not in SCHEDULES:
            raise ValueError(f"must be one of {', '.join(SCHEDULES)}{did_you_mean(v, SCHEDULES)}")
        return v

    @field_validator("partition")
    @classmethod
    def _partition(cls, v: list[int] | str) -> list[int] | str:
        if isinstance(v, str) and v not in PARTITION_RULES:
            raise ValueError(f"must be one of {', '.join(PARTITION_RULES)} or a list of analog layers per stage")
        return v


class TargetConfig(_Section):
    metric: Literal["train_loss", "test_loss", "test_accuracy", "grad_norm_sq"] = "train_loss"
    value: float = 0.3

    @field_validator("value")
    @classmethod
    def _in_range(cls, value: float, info: ValidationInfo) -> float:
        metric = info.data.get("metric", "train_loss")
        if metric == "test_accuracy" and not 0.0 <= value <= 1.0:
            raise ValueError("a test_accuracy target is a fraction in [0, 1]")
        if metric != "test_accuracy" and not value >= 0.0:
            raise ValueError(f"a {metric} target must be >= 0 (it is met from below)")
        return value


class TrainConfig(_Section):
    lr: float = Field(0.05, gt=0)
    epochs: float = Field(5, gt=0, description="passes over the training data (fractions allowed)")
    eval_every: int = Field(500, ge=1, description="evaluate every this many samples")
    eval_train_samples: int = Field(10_000, ge=1, description=(
        "the train loss and gradient norm of an evaluation are measured on at most this many training "
        "samples (the first): a full-gradient pass of a large network over many samples costs more than training"))
    target: TargetConfig | None = Field(default_factory=TargetConfig)
    stop_at_target: bool = Field(False, description="end the run at the first evaluation meeting the target")
    eval_reads: Literal["exact", "analog"] = Field(
        "exact", description="evaluation reads: exact, or analog through the tiles' IO chain (noise, DAC/ADC, "
                             "bound management) from an evaluation stream of their own")
    minibatch_reduction: Literal["mean", "sum"] = Field(
        "mean", description="how a synchronous flush combines its M micro-batches: mean (mini-batch SGD, "
                            "lr / M per micro-batch, as aihwkit) or sum (lr per micro-batch: every sample "
                            "gets the step it gets under sequential and async)")

    def unused_keys(self, pipeline: PipelineConfig) -> Unused:
        """The training keys the pipeline and target leave unread."""
        unused = {}
        if not is_synchronous(pipeline.schedule, pipeline.update):
            unused["minibatch_reduction"] = (
                f"schedule {pipeline.schedule} (update {effective_update(pipeline.schedule, pipeline.update)}) "
                f"updates after every micro-batch; only a synchronous flush (update: flush) combines micro-batches")
        elif pipeline.microbatches == 1:
            unused["minibatch_reduction"] = "one micro-batch per mini-batch: mean and sum are the same step"
        if self.target is None:
            unused["stop_at_target"] = "train.target is null: there is no target to stop at"
        return unused


class Config(_Section):
    seed: int = Field(0, ge=0)
    rpu_preset: str | None = Field(None, description="an aihwkit RPU-config preset filling device, update and io "
                                                     "(aimcsim presets lists them); explicit keys override it")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    device: dict = Field(default_factory=lambda: {"type": "soft_bounds"})
    update: dict = Field(default_factory=dict)
    io: IOConfig = Field(default_factory=IOConfig)
    mapping: MappingConfig = Field(default_factory=MappingConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    timing: dict = Field(default_factory=dict)
    energy: dict = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sweep: dict | None = Field(None, description="optional sweep grid (see aimcsim sweep)")

    _given: list[str] = PrivateAttr(default_factory=list)  # the keys the user wrote (dotted paths)

    @model_validator(mode="after")
    def _consistent(self) -> "Config":
        layers = self.analog_layers()
        p = self.pipeline
        if p.stages == "auto":
            _auto_stages(p, layers)
        _resolve_pipeline(self.pipeline)
        if layers == 0:
            raise ValueError("model.layers: must end with a linear output layer (the network has no analog layer)")
        if p.stages > layers:
            if SCHEDULES[p.schedule].from_file:
                source = f" (from the action list {p.actions})"
            elif "stages" in p.model_fields_set:
                source = ""
            else:
                source = " (the default; set pipeline.stages)"
            raise ValueError(f"pipeline.stages: {p.stages} stages{source} need at least as many layers "
                             f"(the model has {layers} analog layers)")
        if isinstance(p.partition, list) and p.stages > 1:
            if len(p.partition) != p.stages:
                raise ValueError(f"pipeline.partition: {len(p.partition)} entries for {p.stages} stages")
            if any(c < 1 for c in p.partition) or sum(p.partition) != layers:
                raise ValueError(f"pipeline.partition: {p.partition} must be positive layer counts "
                                 f"summing to the model's {layers} layers")
        if p.partition == "energy" and not self.energy_model().enabled:
            raise ValueError("pipeline.partition: energy needs an energy model to minimise; set energy.preset "
                             "(isaac32) or use partition time")
        if p.microbatch_size == 1 and has_batch_norm(self.model):
            raise ValueError("pipeline.microbatch_size: batch norm normalises with the micro-batch's statistics, "
                             "and a micro-batch of 1 sample has none; use a larger micro-batch or norm kind "
                             "layer | group")
        if self.data.name in ("mnist", "fashion_mnist", "cifar10") and not self.data.path:
            raise ValueError(f"data.path: required for data set '{self.data.name}' (a folder with its files)")
        if self.train.target is not None:
            if self.train.target.metric == "test_accuracy" and self.model.loss != "cross_entropy":
                raise ValueError("train.target.metric: test_accuracy needs model.loss: cross_entropy")
        return self

    def analog_layers(self) -> int:
        """The network's analog layers (crossbars), what a partition counts."""
        return analog_count(self.model)

    def unused_keys(self) -> Unused:
        """Every key (dotted path) that nothing reads under these settings -> why: what each
        section says of its own keys, given the others (see :mod:`aimcsim.applicability`)."""
        device = self.device_params()
        update = self.update_params()
        energy = self.energy_model()
        unused: Unused = {}
        unused |= prefixed("data", self.data.unused_keys())
        unused |= prefixed("model", self.model.unused_keys())
        unused |= prefixed("pipeline", self.pipeline.unused_keys())
        if self.pipeline.stages == self.analog_layers() > 1 and not self.pipeline._auto:
            unused["pipeline.partition"] = (f"each of the {self.pipeline.stages} stages holds one of the "
                                            f"{self.analog_layers()} analog layers; there is one partition")
        unused |= prefixed("train", self.train.unused_keys(self.pipeline))
        unused |= prefixed("update", update.unused_keys(floating=floating_updates(device)))
        unused |= prefixed("io.forward", self.forward_io().unused_keys())
        unused |= prefixed("io.backward", self.backward_io().unused_keys())
        unused |= prefixed("device", device_unused_keys(device, update))
        unused |= prefixed("mapping", self.mapping.unused_keys())
        if self.mapping.enabled and not learning_rate_acts_alone(device):
            unused["mapping.weight_scaling_lr_compensation"] = (
                "has no effect: moving the scales' mean from the gradient into the learning rate leaves their "
                "product, all this device's update reads; only a transfer compound whose transfers follow the "
                "learning rate (scale_transfer_lr) or whose fast array has a fixed rate reads it")
        unused |= prefixed("timing", self.timing_model().unused_keys(energy.enabled, transfers=has_transfers(device),
                                                                     pulses=fires_pulses(device, update)))
        unused |= prefixed("energy", energy.unused_keys(pulses=fires_pulses(device, update)))
        if self.rows_per_update() == 1 and "units_in_mbatch" in type(device).model_fields:
            unused["device.units_in_mbatch"] = ("has no effect: every update call holds one vector (micro-batch "
                                                "size 1, no convolution, no flush of several micro-batches), so "
                                                "counting calls or vectors is the same")
        if self.accelerators() == 1:
            why = "has no effect: every stage is on one accelerator, so nothing travels on a link"
            for key in ("timing.link_latency_cycles", "timing.link_bits_per_cycle", "timing.bits_per_element",
                        "energy.link_pj_per_bit"):
                unused.setdefault(key, why)
        return unused

    def rows_per_update(self) -> int | None:
        """Vectors in one update call when that is fixed by the settings: 1 for one-sample
        micro-batches of a network without convolutions, updated per micro-batch (else None)."""
        p = self.pipeline
        convolutions = has_convolutions(self.model)
        flushes = is_synchronous(p.schedule, p.update) and p.microbatches > 1
        return 1 if p.microbatch_size == 1 and not convolutions and not flushes else None

    def accelerators(self) -> int:
        """How many accelerators hold the stages (an action list's rows, stages / virtual stages)."""
        listed = self.action_list()
        if listed is not None:
            return listed.accelerators
        return self.pipeline.stages // (self.pipeline.virtual_stages or 1)

    def given_unused(self) -> Unused:
        """The keys the user gave that nothing reads -> why."""
        unused = self.unused_keys()
        return {key: why for key in self._given if (why := reason(key, unused)) is not None}

    def action_list(self) -> ActionList | None:
        """Schedule ``actions``: the checked action list of ``pipeline.actions``, as validated (else None)."""
        return self.pipeline._action_list

    # typed views of the free-form aihwkit sections, validated on load
    def device_params(self) -> BaseModel:
        return parse_device(self.device, "device")

    def update_params(self) -> UpdateParameters:
        return parse_model(UpdateParameters, self.update, "update")

    def forward_io(self) -> IOParameters:
        return parse_model(IOParameters, self.io.forward, "io.forward")

    def backward_io(self) -> IOParameters:
        return parse_backward_io(self.io.backward, "io.backward")

    def timing_model(self) -> TimingModel:
        return parse_timing(self.timing, "timing")

    def energy_model(self) -> EnergyModel:
        return parse_energy(self.energy, "energy")

    def resolved(self) -> dict:
        """The fully resolved configuration (every default filled in) as plain data."""
        out = self.model_dump(mode="json")
        out["device"] = self.device_params().model_dump(mode="json")
        out["update"] = self.update_params().model_dump(mode="json")
        out["io"] = {"forward": self.forward_io().model_dump(mode="json"),
                     "backward": self.backward_io().model_dump(mode="json")}
        energy = self.energy_model()
        out["timing"] = self.timing_model().model_dump(mode="json")
        out["energy"] = energy.model_dump(mode="json")
        if out.get("sweep") is None:
            out.pop("sweep", None)
        if out.get("rpu_preset") is None:
            out.pop("rpu_preset", None)
        if self.pipeline._auto:
            out["pipeline"]["stages"] = "auto"
        return drop_unused(out, self.unused_keys())


def _auto_stages(p: PipelineConfig, layers: int) -> None:
    """``stages: auto``: check it can be planned, and hold the most stages the planner may use
    (at most max_stages and the analog layers, a multiple of the stages per accelerator)."""
    if p.partition not in ("time", "energy"):
        raise ValueError("pipeline.stages: auto picks the stage count by the planner's prediction; set "
                         "pipeline.partition: time or energy")
    kind = SCHEDULES[p.schedule]
    if kind.from_file:
        raise ValueError("pipeline.stages: auto cannot be used with schedule actions (the action list fixes it)")
    step = (p.virtual_stages or kind.virtual_stages or 1) if kind.virtual_stages else 1
    most = min(p.max_stages, layers) // step * step
    if most < 1:
        raise ValueError(f"pipeline.max_stages: {p.max_stages} leaves no stage count for {step} stages per "
                         f"accelerator")
    p.stages = most
    p._auto = True


def _derive(p: PipelineConfig, key: str, value: object) -> None:
    """Fill in a pipeline value the schedule defines, leaving it unset (not the user's choice), so a
    config dumped with ``exclude_unset`` and loaded with another schedule or list derives it anew."""
    given = key in p.model_fields_set
    setattr(p, key, value)
    if not given:
        p.model_fields_set.discard(key)


def _resolve_pipeline(p: PipelineConfig) -> None:
    """Check the schedule's own keys and fill in what it defines: stages and micro-batches from an
    action list, the stages per accelerator of an interleaved schedule."""
    kind = SCHEDULES[p.schedule]
    given = p.model_fields_set
    if kind.from_file:
        if p.actions is None:
            raise ValueError("pipeline.actions: schedule actions needs the path of a PyTorch _dump_csv action list, "
                             "e.g. configs/schedules/zbv_zero_bubble_k4_m8.csv")
        listed = p._action_list = read_action_list(p.actions)
        for key, value in (("stages", listed.stages), ("microbatches", listed.microbatches)):
            if key in given and getattr(p, key) != value:
                raise ValueError(f"pipeline.{key}: {getattr(p, key)}, but the action list {p.actions} defines "
                                 f"{value}; leave it out")
            _derive(p, key, value)
        return
    if kind.virtual_stages is None:
        return
    v = p.virtual_stages if p.virtual_stages is not None else kind.virtual_stages
    if kind.virtual_choices is not None and v not in kind.virtual_choices:
        raise ValueError(f"pipeline.virtual_stages: {p.schedule} places exactly "
                         f"{' or '.join(map(str, kind.virtual_choices))} stages per accelerator, got {v}")
    if p.stages % v:
        raise ValueError(f"pipeline.stages: {p.stages} stages do not divide into {v} per accelerator "
                         f"(pipeline.virtual_stages)")
    _derive(p, "virtual_stages", v)
    check_microbatches(p.schedule, p.stages // v, p.microbatches)


def _parse_value(text: str) -> object:
    """An override value: YAML scalar or list syntax (``8``, ``0.1``, ``[16, 16]``, ``async``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply dotted ``KEY=VALUE`` overrides (``pipeline.stages=8``) to a config mapping."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. pipeline.stages=8")
        key, _, text = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set {item}: empty key")
        node = data
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise ConfigError(f"{key}: '{part}' is not a section")
            node = node[part]
        node[parts[-1]] = _parse_value(text)
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 - yaml's API
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"config: '{key}' is given twice in one mapping at line {key_node.start_mark.line + 1} "
                                  f"of {self.name}; YAML would silently keep only the last")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict:
    """A config file's mapping; an empty file, invalid YAML or a repeated key is one ConfigError."""
    if not path.is_file():
        raise ConfigError(f"config: no such file '{path}'")
    text = path.read_text()
    try:
        loader = _UniqueKeyLoader(text)
        loader.name = str(path)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config: '{path}' is not valid YAML{where}") from None
    if data is None:
        raise ConfigError(f"config: '{path}' is empty (no settings); write {{}} in it to take every default")
    if not isinstance(data, dict):
        raise ConfigError(f"config: '{path}' must hold a mapping of sections")
    return data


def _remove(data: dict, key: str) -> dict:
    """``data`` without the dotted ``key`` (aliases of its last part included)."""
    data = copy.deepcopy(data)
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    for name in [parts[-1], *(alias for alias, target in ALIASES.items() if target == parts[-1])]:
        node.pop(name, None)
    return data


def _validate(data: dict, given: list[str]) -> Config:
    try:
        config = Config.model_validate(apply_rpu_preset(data))
    except ValidationError as exc:
        raise from_validation_error(exc, "", Config) from None
    config._given = given
    # validate the free-form aihwkit sections and the data files now, not when the run starts
    config.device_params()
    config.update_params()
    config.forward_io()
    config.backward_io()
    config.energy_model()
    config.timing_model()
    return config


UNUSED_MODES = ("refuse", "drop", "keep")


def load_config(path_or_dict: str | Path | dict | Config, overrides: list[str] | tuple[str, ...] = (),
                unused: Literal["refuse", "drop", "keep"] = "refuse") -> Config:
    """Load and validate a configuration from a YAML file, a mapping or a Config, then apply overrides.

    ``unused``: what happens to a key given where nothing reads it (:meth:`Config.unused_keys`):
    ``refuse`` (an :class:`~aimcsim.errors.UnusedKeyError` naming it and why), ``drop`` (the
    config holds only what applies: a sweep's points, whose keys are checked per sweep) or
    ``keep`` (a sweep's base, which its points read). A config with a ``sweep`` section is
    checked per sweep, by :func:`aimcsim.sweep` (``aimcsim validate`` does it too), not here.
    A relative ``pipeline.actions`` in a file is read from the file's folder.
    """
    if unused not in UNUSED_MODES:
        raise ConfigError(f"unused: must be one of {', '.join(UNUSED_MODES)}, got {unused!r}")
    given: list[str] | None = None
    if isinstance(path_or_dict, Config):
        data = path_or_dict.model_dump(mode="json", exclude_unset=True)  # what the schedule derived is derived anew
        given = list(path_or_dict._given)  # its preset-filled sections are not the user's keys
    elif isinstance(path_or_dict, dict):
        data = path_or_dict
    else:
        path = Path(path_or_dict)
        data = _relative_to(read_yaml(path), path.parent)
    data = apply_overrides(data, overrides)
    if given is None:
        given = given_keys(data)
    else:  # an override adds its keys, and a null one hands its key back to the default
        for item in overrides:
            key = item.partition("=")[0].strip()
            given = [k for k in given if k != key and not k.startswith(key + ".")]
        given += [k for k in given_keys(apply_overrides({}, overrides)) if k not in given]
    config = _validate(data, given)
    found = config.given_unused() if unused != "keep" else {}
    if found and unused == "refuse" and config.sweep is None:
        check_given(given, found)
    elif found:
        for key in found:
            data = _remove(data, key)
        config = _validate(data, [k for k in given if k not in found])
    check_data_files(config.data)
    build_layers(config.model, *data_shape(config.data))  # the network against the data's shape, as the run builds it
    planned_items(config, train_size(config.data, config.seed))  # the run's length, as the run counts it
    return config


def _relative_to(data: dict, folder: Path) -> dict:
    """A file's relative ``pipeline.actions`` read from the file's folder (as the file names it)."""
    pipeline = data.get("pipeline")
    actions = pipeline.get("actions") if isinstance(pipeline, dict) else None
    if isinstance(actions, str) and not Path(actions).is_absolute():
        return {**data, "pipeline": {**pipeline, "actions": str((folder / actions).resolve())}}
    return data
