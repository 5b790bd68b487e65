"""The search for settings that do nothing: every field of a resolved config, changed in turn.

For a shipped config under one schedule (a *case*), a short run is the base. Each leaf of the
resolved config (what ``config.yaml`` lists) is changed to other valid values in turn; a
change must be refused as inapplicable (:class:`aimcsim.errors.UnusedKeyError`) or change the
run's outputs (summary without its wall time, metrics, trace, final weights). A change that
is valid and changes nothing is a silent setting: the search reports it.

Some keys act only on data that reach them: bound management only when an output
saturates. ``CONTEXTS`` gives such a key the settings under which it must show its effect
(applied to the base run and the changed run alike); a key without an entry is tried in the
case as it is, so a new key is covered the day it is added.
"""

from __future__ import annotations

import copy
import fnmatch
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel

import aimcsim
from aimcsim.config import ModelConfig
from aimcsim.graph import analog_count
from aimcsim.errors import ConfigError, UnusedKeyError
from aimcsim.sim.schedules import SCHEDULES

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
#: a short run of every case: 32 samples, evaluated twice
SHORT = {"data.max_train": 32, "train.epochs": 1, "train.eval_every": 16}
ACTION_LIST = ROOT / "configs" / "schedules" / "gpipe_k4_m8.csv"  # 4 stages, 8 micro-batches

#: keys that only data reaching them can show: the settings under which they must act
CONTEXTS: dict[str, dict] = {
    "io.*.max_bm_factor": {"io.{io}.out_bound": 0.05, "io.{io}.bound_management": "iterative"},
    "io.*.max_bm_res": {"io.{io}.out_bound": 0.05, "io.{io}.bound_management": "iterative"},
    "io.*.bound_management": {"io.{io}.out_bound": 0.05},
    "io.*.bm_test_negative_bound": {"io.{io}.out_bound": 0.3, "io.{io}.bound_management": "iterative"},
    "train.stop_at_target": {"train.target.value": 0.0, "train.target.metric": "test_accuracy"},  # met at once
    # consistency is enforced only where a device-to-device draw crosses zero
    "device.enforce_consistency": {"device.dw_min_dtod": 3.0, "device.w_max_dtod": 3.0, "device.w_min_dtod": 3.0},
    # a Tiki-Taka A's small differences reach C only through unquantised transfer reads, and a
    # reset only shows when its column is transferred again: a longer run
    "device.unit_cell_devices.*.enforce_consistency": {
        "device.unit_cell_devices.{unit}.dw_min_dtod": 3.0, "device.unit_cell_devices.{unit}.w_max_dtod": 3.0,
        "device.unit_cell_devices.{unit}.w_min_dtod": 3.0},
    # multiplicative and additive pulse noise differ by w / w_max: tight bounds make them part
    "device.unit_cell_devices.0.mult_noise": {"device.transfer_forward.out_res": 0.0, "data.max_train": 200,
                                              "device.unit_cell_devices.0.w_max": 0.05,
                                              "device.unit_cell_devices.0.w_min": -0.05},
    "device.unit_cell_devices.0.*": {"device.transfer_forward.out_res": 0.0, "data.max_train": 200},
    "device.with_reset_prob": {"device.transfer_forward.out_res": 0.0, "data.max_train": 200},
    # the residual presets normalise over micro-batches: they need more than one sample each
    "model.preset": {"pipeline.microbatch_size": 2},
    # partial outputs are added only where a layer is split over tiles
    "timing.digital_sum_ns": {"model.tile_size": 16},
    # evaluations fall on (mini-)batch boundaries: the short run must hold several of them
    "train.eval_every": {"pipeline.microbatch_size": 2},
    # the mapping's options apply where weights are mapped; compensation where lr acts alone
    "mapping.weight_scaling_columnwise": {"mapping.weight_scaling_omega": 0.6},
    "mapping.weight_scaling_lr_compensation": {"mapping.weight_scaling_omega": 0.6},
    "energy.digital_pj": {"model.tile_size": 16},
}
#: leaves the search cannot vary, and why (any other leaf without a valid alternative fails the test)
NOT_SEARCHED = {
    "model.layers": "the network itself: a layer list that replaces hidden",
    "data.path": "a folder of files",
    "pipeline.actions": "a file: the action list",
    "data.name": "another data set needs its own files or a network of another input size",
    "io.forward.inp_bound": "noise management requires 1.0 (as aihwkit)",
    "io.backward.inp_bound": "noise management requires 1.0 (as aihwkit)",
    "model.loss": "a test_accuracy target needs cross_entropy",
    "train.target.metric": "other metrics need other target values",
    "model.layers.*.linear.units": "the output layer's width is the class count",
    "device.transfer_forward.noise_management": "a transfer read has none (aihwkit turns it off)",
    "device.transfer_forward.bound_management": "a transfer read has none (aihwkit turns it off)",
    "mapping.digital_bias": "only false is allowed: biases are crossbar columns",
    "mapping.learn_out_scaling": "only false is allowed: learned output scales are not modelled",
    "mapping.out_scaling_columnwise": "only false is allowed: learned output scales are not modelled",
}
#: leaves the search cannot vary under some schedules: (key pattern, schedule) -> why
NOT_SEARCHED_UNDER = {
    ("pipeline.stages", "actions"): "the action list sets it (another value is refused as a conflict)",
    ("pipeline.microbatches", "actions"): "the action list sets it (another value is refused as a conflict)",
    ("pipeline.virtual_stages", "zbv_zero_bubble"): "zbv_zero_bubble places exactly 2 stages per accelerator",
    ("pipeline.stages", "*zero_bubble"): "2 stages per accelerator: on a 3-layer network only 2 stages fit",
    ("pipeline.stages", "interleaved_1f1b"): "2 stages per accelerator: on a 3-layer network only 2 stages fit",
}
#: values of the layer lists' own settings (not pydantic fields yet)
LAYER_CHOICES = {"kind": ["max", "avg"]}


def _set(tree: dict, path: tuple, value: object) -> None:
    node = tree
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def leaves(tree: object, path: tuple = ()) -> list[tuple]:
    """Every leaf path of a resolved config (dicts and lists of dicts are walked)."""
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in leaves(v, path + (k,))]
    if isinstance(tree, list) and tree and all(isinstance(v, dict) for v in tree):
        return [p for i, v in enumerate(tree) for p in leaves(v, path + (i,))]
    return [path]


def _choices() -> dict[str, list]:
    """Field name -> the values a Literal field allows, from every typed section."""
    from aimcsim import compounds, config, cost, devices, params  # noqa: PLC0415

    found: dict[str, list] = {"schedule": list(SCHEDULES), "type": [], "preset": []}
    seen: set[type] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            for arg in [field.annotation, *typing.get_args(field.annotation)]:
                if typing.get_origin(arg) is typing.Literal:
                    found.setdefault(name, [])
                    found[name] += [v for v in typing.get_args(arg) if v not in found[name]]
                elif isinstance(arg, type) and issubclass(arg, BaseModel):
                    walk(arg)
    for module in (config, params, cost, devices, compounds):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel) and value is not BaseModel:
                walk(value)
    return found


CHOICES = _choices()


def candidates(path: tuple, value: object, tree: dict) -> list:
    """Other values to try for a leaf, most telling first (invalid ones are skipped)."""
    name = path[-1]
    if path == ("pipeline", "partition"):
        stages = tree["pipeline"]["stages"]
        layers = analog_count(ModelConfig(**tree["model"]))  # presets and basic blocks included
        if layers <= stages:
            return []
        return [[1] * (stages - 1) + [layers - stages + 1], [layers - stages + 1] + [1] * (stages - 1)]
    if isinstance(value, bool):
        return [not value]
    if isinstance(name, str) and name in CHOICES and (isinstance(value, str) or value is None):
        return [c for c in CHOICES[name] if c != value]
    if isinstance(name, str) and name in LAYER_CHOICES and isinstance(value, str):
        return [c for c in LAYER_CHOICES[name] if c != value]
    if name == "rpu_preset":
        from aimcsim.presets import RPU_PRESETS  # noqa: PLC0415
        return [n for n, p in RPU_PRESETS.items() if n != value and p.missing is None][:3]
    if isinstance(value, int):
        return [c for c in dict.fromkeys((value + 1, value - 1, value - 2, 3, 2 * value, 1, 0)) if c != value]
    if isinstance(value, float):
        return [c for c in (value * 0.25, value * 4, value + 0.5, 0.5, 0.0, -0.5, 0.05) if c != value]
    if value is None:
        return [8, 0.5, True, 3]
    if value == [] and name == "gamma_vec":
        return [[0.5, 1.0]]
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  for v in value):
        first = value[0]
        return [[first // 2 if isinstance(first, int) else first * 0.5] + value[1:], value + value[-1:],
                value[:-1]]
    return []  # free text (paths, names): not searched


@dataclass
class Finding:
    """One key tried in one case: refused, effective, a no-op, or not searched (and why)."""

    case: str
    key: str
    outcome: str  # refused | effective | no-op | skipped
    detail: str = ""


def outputs(config: aimcsim.config.Config) -> tuple:
    """What a run produces, for comparison (wall time left out)."""
    result = aimcsim.simulate(config)
    summary = {k: v for k, v in result.summary.items() if k != "wall_seconds"}
    return summary, result.metrics, result.trace, result.weights()


def same(a: tuple, b: tuple) -> bool:
    if a[0] != b[0] or not a[1].equals(b[1]) or not a[2].equals(b[2]):
        return False
    return all(np.array_equal(x, y) for x, y in zip(a[3], b[3]))


def case_overrides(path: Path, schedule: str, data_path: str | None) -> dict | None:
    """The overrides that put a shipped config under ``schedule`` (None: the network cannot take it)."""
    extra = [f"data.path={data_path}"] if data_path else []
    base = aimcsim.load_config(path, [f"{k}={v}" for k, v in SHORT.items()] + ["sweep=null"] + extra, unused="keep")
    layers = base.model.layers
    analog = (sum(1 for e in layers if isinstance(e, dict) and set(e) & {"conv", "linear"})
              if layers is not None else len(base.model.hidden) + 1)
    over = {**SHORT, "sweep": None, "pipeline.schedule": schedule, "pipeline.actions": None,
            "pipeline.update": None, "pipeline.virtual_stages": None}
    kind = SCHEDULES[schedule]
    if kind.from_file:
        if analog < 4:
            return None
        over.update({"pipeline.actions": str(ACTION_LIST), "pipeline.stages": None, "pipeline.microbatches": None})
    elif kind.virtual_stages:
        over["pipeline.stages"] = max(2, min(4, analog - analog % 2))
        over["pipeline.microbatches"] = 4
    else:
        over["pipeline.stages"] = min(base.pipeline.stages, analog)
    return over


def _apply(tree: dict, overrides: dict) -> dict:
    tree = copy.deepcopy(tree)
    for key, value in overrides.items():
        parts = tuple(key.split("."))
        node = tree
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value is None and parts[-1] in ("actions", "update", "virtual_stages", "stages", "microbatches"):
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return tree


def case_tree(path: Path, schedule: str, data_path: str | None) -> dict | None:
    """The resolved config of one case, as plain data (None: the network cannot take the schedule)."""
    over = case_overrides(path, schedule, data_path)
    if over is None:
        return None
    if data_path is not None:
        over["data.path"] = data_path
    extra = [f"data.path={data_path}"] if data_path else []
    raw = _apply(aimcsim.load_config(path, extra, unused="keep").model_dump(mode="json", exclude_unset=True), over)
    raw.pop("sweep", None)
    return aimcsim.load_config(raw, unused="drop").resolved()


def not_searched(key: str, schedule: str, tree: dict) -> str | None:
    """Why the search cannot vary ``key`` in a case of ``schedule`` (None: it must)."""
    if key == "device.type" and "rpu_preset" in tree:
        return "rpu_preset fixes the device type (another one is refused as a conflict)"
    for pattern, why in NOT_SEARCHED.items():
        if fnmatch.fnmatchcase(key, pattern):
            return why
    for (pattern, under), why in NOT_SEARCHED_UNDER.items():
        if fnmatch.fnmatchcase(schedule, under) and fnmatch.fnmatchcase(key, pattern):
            return why
    return None


def context_for(key: str) -> dict:
    for pattern, extra in CONTEXTS.items():
        if fnmatch.fnmatchcase(key, pattern):
            parts = key.split(".")
            io = parts[1] if key.startswith("io.") else ""
            unit = parts[2] if key.startswith("device.unit_cell_devices.") else ""
            return {k.format(io=io, unit=unit): v for k, v in extra.items()}
    return {}


def search(case: str, tree: dict, keys: list[str] | None = None, base_cache: dict | None = None) -> list[Finding]:
    """Try every leaf of ``tree`` (or those named in ``keys``); one Finding per key."""
    base_cache = {} if base_cache is None else base_cache
    findings = []
    for path in leaves(tree):
        key = ".".join(map(str, path))
        if keys is not None and key not in keys:
            continue
        extra = context_for(key)
        start = _apply(tree, extra) if extra else tree
        tried = 0
        outcome = None
        for value in candidates(path, _get(start, path), start):
            changed = _fresh_section(start, path)  # the base run stays the case as it is
            _set(changed, path, value)
            try:
                config = aimcsim.load_config(changed)
            except UnusedKeyError as exc:
                outcome = Finding(case, key, "refused", str(exc))
                break
            except ConfigError:
                continue  # not a valid value here: try the next
            label = repr(sorted(extra.items()))
            if label not in base_cache:
                base_cache[label] = outputs(aimcsim.load_config(start))
            try:
                result = outputs(config)
            except ConfigError as exc:  # refused when the run starts (e.g. data too short)
                if isinstance(exc, UnusedKeyError):
                    outcome = Finding(case, key, "refused", str(exc))
                    break
                continue
            tried += 1
            if not same(base_cache[label], result):
                outcome = Finding(case, key, "effective", f"{value!r}")
                break
            if tried >= 6:
                break
        why = not_searched(key, case.split("/")[-1], tree)
        if outcome is None and why:
            outcome = Finding(case, key, "skipped", why)
        elif outcome is None:
            outcome = (Finding(case, key, "no-op", f"tried {tried} values") if tried
                       else Finding(case, key, "no-value", "no other valid value"))
        findings.append(outcome)
    return findings


def _fresh_section(tree: dict, path: tuple) -> dict:
    """Before a preset or a device type changes, drop what it fills (a resolved config lists
    every constant, which would override the new preset or not fit the new type)."""
    tree = copy.deepcopy(tree)
    if path[-1] == "preset" and path[0] in ("timing", "energy"):
        tree[path[0]] = {"preset": tree[path[0]]["preset"]}
    elif path == ("rpu_preset",):
        for section in ("device", "update", "io"):
            tree.pop(section, None)
    elif path == ("model", "preset"):  # a preset is the whole network
        for key in ("layers", "hidden", "activation"):
            tree["model"].pop(key, None)
    elif path[-1] == "type" and path[0] == "device":
        node = _get(tree, path[:-1])
        for key in [k for k in node if k != "type"]:
            del node[key]
    return tree


def _get(tree: dict, path: tuple) -> object:
    node = tree
    for part in path:
        node = node[part]
    return node


#: shipped configs too large to search under every schedule: their own schedule only, and why
OWN_SCHEDULE_ONLY = {"resnet_aihwkit_example18": "43 crossbars: seconds per run; the others cover the schedules",
                     "resnet20_cifar10": "22 crossbars: seconds per run; resnet8_fashion covers the schedules"}


def case_names() -> list[str]:
    """``config/schedule`` for every shipped config and schedule (see :data:`OWN_SCHEDULE_ONLY`)."""
    names = []
    for path in CONFIGS:
        own = (yaml.safe_load(path.read_text()).get("pipeline") or {}).get("schedule", "async")
        names += [f"{path.stem}/{s}" for s in SCHEDULES if path.stem not in OWN_SCHEDULE_ONLY or s == own]
    return names


def case(name: str, data_paths: dict | str | None) -> dict | None:
    """The resolved config of a named case (None: the network cannot take the schedule);
    ``data_paths``: data set name -> a folder of small files of its format, for the configs
    that read files (a string: the IDX folder for MNIST-format data)."""
    stem, schedule = name.split("/")
    path = ROOT / "configs" / f"{stem}.yaml"
    if isinstance(data_paths, str):
        data_paths = {"mnist": data_paths, "fashion_mnist": data_paths}
    wanted = (yaml.safe_load(path.read_text()).get("data") or {}).get("name", "digits")
    return case_tree(path, schedule, (data_paths or {}).get(wanted))
