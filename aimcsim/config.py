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

from .cost import EnergyModel, TimingModel, parse_energy, parse_timing
from .data import check_data_files
from .compounds import parse_device
from .errors import ConfigError, did_you_mean, from_validation_error, parse_model
from .params import IOParameters, UpdateParameters, parse_backward_io
from .presets import apply_rpu_preset
from .sim.actions import ActionList, read_action_list
from .sim.orders import check_microbatches
from .sim.schedules import SCHEDULES, UPDATE_MODES

TARGET_METRICS = ("train_loss", "test_loss", "test_accuracy", "grad_norm_sq")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    name: Literal["digits", "synthetic", "mnist", "fashion_mnist", "cifar10"] = "digits"
    path: str | None = Field(None, description="folder with the data files (mnist, fashion_mnist, cifar10)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of digits/synthetic held out for testing")
    max_train: int | None = Field(None, ge=1, description="use at most this many training samples")
    n_samples: int = Field(2000, ge=10, description="synthetic: number of samples")
    n_features: int = Field(16, ge=1, description="synthetic: input width")
    n_classes: int = Field(4, ge=2, description="synthetic classification: number of classes")
    task: Literal["classification", "regression"] = Field("classification", description="synthetic task")
    noise: float = Field(0.0, ge=0, description="synthetic: label noise (regression: output noise std)")


class ModelConfig(_Section):
    hidden: list[int] = Field(default_factory=lambda: [32, 32], description="widths of the hidden layers")
    layers: list | None = Field(None, description="layer list (conv, pool, flatten, linear, activation); "
                                                  "replaces hidden/activation")
    tile_size: int = Field(512, ge=2, description="largest crossbar; bigger layers are split over several tiles")
    activation: Literal["sigmoid", "tanh", "relu"] = "sigmoid"
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    init_scale: float = Field(1.0, gt=0, description="initial weights ~ U(+-init_scale / sqrt(fan_in))")

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(h < 1 for h in v):
            raise ValueError("hidden layer widths must be positive integers")
        return v


class IOConfig(_Section):
    forward: dict = Field(default_factory=dict)
    backward: dict = Field(default_factory=dict)


class PipelineConfig(_Section):
    schedule: str = Field("async", description="a registered schedule: " + ", ".join(SCHEDULES))
    stages: int = Field(3, ge=1, description="number of stages K (pieces of the network), one per accelerator "
                                             "unless virtual_stages places several; schedule actions: from the file")
    microbatches: int = Field(4, ge=1, description="micro-batches M per mini-batch (synchronous and list "
                                                   "schedules); schedule actions: from the file")
    microbatch_size: int = Field(1, ge=1, description="samples per micro-batch")
    partition: list[int] | str = Field("balanced", description="'balanced' or layers per stage, e.g. [1, 2]")
    virtual_stages: int | None = Field(None, ge=1, description="stages per accelerator (interleaved_1f1b, "
                                                               "interleaved_zero_bubble: default 2; zbv_zero_bubble: 2)")
    update: Literal["flush", "immediate"] | None = Field(
        None, description="what a list schedule's weight parts do: flush (one update per stage after each "
                          "mini-batch, the default) or immediate (pulses at once)")
    actions: str | None = Field(None, description="schedule actions: a PyTorch _dump_csv action list (CSV)")
    _action_list: ActionList | None = PrivateAttr(None)  # the list as validated, read once

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        if v not in SCHEDULES:
            raise ValueError(f"must be one of {', '.join(SCHEDULES)}{did_you_mean(v, SCHEDULES)}")
        return v

    @field_validator("partition")
    @classmethod
    def _partition(cls, v: list[int] | str) -> list[int] | str:
        if isinstance(v, str) and v != "balanced":
            raise ValueError("must be 'balanced' or a list of layer counts per stage")
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
    target: TargetConfig | None = Field(default_factory=TargetConfig)
    stop_at_target: bool = Field(False, description="end the run at the first evaluation meeting the target")
    eval_reads: Literal["exact", "analog"] = Field(
        "exact", description="evaluation reads: exact, or analog through the tiles' IO chain (noise, DAC/ADC, "
                             "bound management) from an evaluation stream of their own")
    minibatch_reduction: Literal["mean", "sum"] = Field(
        "mean", description="how a synchronous flush combines its M micro-batches: mean (mini-batch SGD, "
                            "lr / M per micro-batch, as aihwkit) or sum (lr per micro-batch: every sample "
                            "gets the step it gets under sequential and async)")


class Config(_Section):
    seed: int = Field(0, ge=0)
    rpu_preset: str | None = Field(None, description="an aihwkit RPU-config preset filling device, update and io "
                                                     "(aimcsim presets lists them); explicit keys override it")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    device: dict = Field(default_factory=lambda: {"type": "soft_bounds"})
    update: dict = Field(default_factory=dict)
    io: IOConfig = Field(default_factory=IOConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    timing: dict = Field(default_factory=dict)
    energy: dict = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sweep: dict | None = Field(None, description="optional sweep grid (see aimcsim sweep)")

    @model_validator(mode="after")
    def _consistent(self) -> "Config":
        _resolve_pipeline(self.pipeline)
        layer_list = self.model.layers is not None  # a layer list is checked when it is built
        layers = (sum(1 for e in self.model.layers if isinstance(e, dict) and set(e) & {"conv", "linear"})
                  if layer_list else len(self.model.hidden) + 1)
        p = self.pipeline
        if p.stages > layers and not layer_list:
            default = "" if "stages" in p.model_fields_set else " (the default; set pipeline.stages)"
            raise ValueError(f"pipeline.stages: {p.stages} stages{default} need at least as many layers "
                             f"(the model has {layers} analog layers)")
        if isinstance(p.partition, list):
            if len(p.partition) != p.stages:
                raise ValueError(f"pipeline.partition: {len(p.partition)} entries for {p.stages} stages")
            if any(c < 1 for c in p.partition) or sum(p.partition) != layers:
                raise ValueError(f"pipeline.partition: {p.partition} must be positive layer counts "
                                 f"summing to the model's {layers} layers")
        if self.data.name in ("mnist", "fashion_mnist", "cifar10") and not self.data.path:
            raise ValueError(f"data.path: required for data set '{self.data.name}' (a folder with its files)")
        if self.train.target is not None:
            if self.train.target.metric == "test_accuracy" and self.model.loss != "cross_entropy":
                raise ValueError("train.target.metric: test_accuracy needs model.loss: cross_entropy")
        return self

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
        return parse_timing(self.timing, "timing", link_bits_used=self.energy_model().enabled)

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
        out["timing"] = self.timing_model().applicable(link_bits_used=energy.enabled)
        out["energy"] = energy.applicable()
        if out.get("sweep") is None:
            out.pop("sweep", None)
        if out.get("rpu_preset") is None:
            out.pop("rpu_preset", None)
        return out


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
    lists = ", ".join(name for name, k in SCHEDULES.items() if k.update is None)
    if p.update is not None and kind.update is not None:
        raise ValueError(f"pipeline.update: schedule {p.schedule} updates after every backward by definition; "
                         f"update ({' | '.join(UPDATE_MODES)}) applies to {lists}")
    if kind.from_file:
        if p.actions is None:
            raise ValueError("pipeline.actions: schedule actions needs the path of a PyTorch _dump_csv action list, "
                             "e.g. configs/schedules/zbv_zero_bubble_k4_m8.csv")
        if p.virtual_stages is not None:
            raise ValueError("pipeline.virtual_stages: with schedule actions the rows of the list place the "
                             "stages; leave it out")
        listed = p._action_list = read_action_list(p.actions)
        for key, value in (("stages", listed.stages), ("microbatches", listed.microbatches)):
            if key in given and getattr(p, key) != value:
                raise ValueError(f"pipeline.{key}: {getattr(p, key)}, but the action list {p.actions} defines "
                                 f"{value}; leave it out")
            _derive(p, key, value)
        return
    if p.actions is not None:
        raise ValueError(f"pipeline.actions: only schedule actions reads an action list (schedule is {p.schedule})")
    if kind.virtual_stages is None:
        if p.virtual_stages is not None:
            several = ", ".join(name for name, k in SCHEDULES.items() if k.virtual_stages)
            raise ValueError(f"pipeline.virtual_stages: schedule {p.schedule} holds one stage per accelerator; "
                             f"{several} place several")
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


def load_config(path_or_dict: str | Path | dict | Config, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load and validate a configuration from a YAML file, a mapping or a Config, then apply overrides."""
    if isinstance(path_or_dict, Config):
        data = path_or_dict.model_dump(mode="json", exclude_unset=True)  # what the schedule derived is derived anew
    elif isinstance(path_or_dict, dict):
        data = path_or_dict
    else:
        path = Path(path_or_dict)
        if not path.is_file():
            raise ConfigError(f"config: no such file '{path}'")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config: '{path}' is not valid YAML{where}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config: '{path}' must hold a mapping of sections")
    data = apply_rpu_preset(apply_overrides(data, overrides))
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, "", Config) from None
    # validate the free-form aihwkit sections and the data files now, not when the run starts
    config.device_params()
    config.update_params()
    config.forward_io()
    config.backward_io()
    config.energy_model()
    config.timing_model()
    check_data_files(config.data)
    return config
