"""aihwkit's device presets and RPU-config presets, by aihwkit class name.

A **device preset** is a device model with fitted parameters: ``device: {preset:
CapacitorPresetDevice, dw_min: 0.004}`` is the Capacitor fit with one field overridden. An
**RPU-config preset** fills the ``device``, ``update`` and ``io`` sections at once, as
aihwkit's ``SingleRPUConfig`` presets do (``rpu_preset: EcRamPreset`` at the top of a
config); explicit keys in those sections override it field by field.

The numbers are facts copied from aihwkit's sources (``src/aihwkit/simulator/presets/
devices.py``, ``configs.py`` and ``utils.py``; mirrored source 1.1.0 + 34 commits, which is
what could be read here: 1.2.0 ships as an sdist only): each preset lists just the fields
its aihwkit class sets, the model's defaults (aihwkit's too) fill the rest. The two-array
presets (Tiki-Taka, TTv2, c-TTv2, AGAD, mixed precision) fill a compound device
(:mod:`aimcsim.compounds`) whose two unit devices are the family's device preset; explicit
``device`` keys override the compound's fields. Presets whose physics aimcsim does not model
yet are listed, and refused with the reason, instead of being silently approximated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class DevicePreset:
    """A fitted device model: aihwkit class name, model type, the fields the preset sets."""

    name: str
    type: str
    fields: dict
    models: str  # what it models, one line
    missing: str | None = None  # physics aimcsim lacks for it (then it is refused)


@dataclass(frozen=True)
class RPUPreset:
    """A whole tile configuration: a device preset with aihwkit's preset IO and update, and for
    the two-array algorithms the compound (``compound``: its type and the fields the preset sets;
    both unit devices are the device preset, with ``unit_fields`` on top)."""

    name: str
    device: str | None  # device preset name
    models: str
    forward: dict = field(default_factory=lambda: dict(PRESET_IO))
    backward: dict = field(default_factory=lambda: dict(PRESET_IO))
    update: dict = field(default_factory=lambda: dict(PRESET_UPDATE))
    missing: str | None = None
    compound: dict | None = None
    unit_fields: dict = field(default_factory=dict)

    def device_section(self) -> dict:
        """The ``device`` mapping the preset fills in."""
        unit = DEVICE_PRESETS[self.device]
        device = {"type": unit.type, **unit.fields, **self.unit_fields}
        if self.compound is None:
            return device
        if self.compound["type"] == "mixed_precision_compound":
            return {**self.compound, "device": device}
        return {**self.compound, "unit_cell_devices": [dict(device), dict(device)]}


# aihwkit presets/utils.py PresetIOParameters: 7-bit DAC, 9-bit ADC, output bound 20,
# output noise 0.1, noise and bound management on (forward and backward alike)
PRESET_IO = {"bound_management": "iterative", "noise_management": "abs_max", "inp_res": 1.0 / (2**7 - 2),
             "out_bound": 20.0, "out_noise": 0.1, "out_res": 1.0 / (2**9 - 2)}
# aihwkit presets/utils.py PresetUpdateParameters
PRESET_UPDATE = {"desired_bl": 31, "pulse_type": "stochastic_compressed", "update_bl_management": True,
                 "update_management": True}

_DEVICES = [
    DevicePreset("ReRamESPresetDevice", "exp_step", {
        "dw_min": 0.00135, "up_down": 0.259359, "w_max": 1.0, "w_min": -1.0, "a": -0.5, "b": -0.5,
        "gamma_up": 5.0, "gamma_down": 5.0, "A_up": -1.18445, "A_down": -0.081404, "dw_min_dtod": 0.2,
        "up_down_dtod": 0.05, "w_max_dtod": 0.3, "w_min_dtod": 0.3, "dw_min_std": 5.0, "write_noise_std": 75.0},
        "ReRAM, exponential step with write noise, fit to Gong et al., Nat. Commun. 2018"),
    DevicePreset("ReRamSBPresetDevice", "soft_bounds_reference", {
        "dw_min": 0.002, "up_down": 0.0, "w_max": 1.25, "w_min": -0.75, "mult_noise": False, "dw_min_dtod": 0.3,
        "up_down_dtod": 0.01, "w_max_dtod": 0.3 / 1.25, "w_min_dtod": 0.3 / 0.75, "dw_min_std": 3.75,
        "write_noise_std": 56},
        "ReRAM, soft bounds read against a reference, with write noise, loose fit to Gong et al., "
        "Nat. Commun. 2018"),
    DevicePreset("CapacitorPresetDevice", "linear_step", {
        "dw_min": 0.005, "up_down": 0.0, "w_max": 1.0, "w_min": -1.0, "mult_noise": False, "gamma_up": 0.05,
        "gamma_down": 0.05, "dw_min_dtod": 0.1, "up_down_dtod": 0.06, "w_max_dtod": 0.07, "w_min_dtod": 0.07,
        "gamma_up_dtod": 0.01, "gamma_down_dtod": 0.01, "dw_min_std": 0.3, "mean_bound_reference": True,
        "lifetime": 1.0e6, "lifetime_dtod": 0.3},
        "capacitor, linear step with leakage (lifetime), fit to Li et al., VLSI 2018"),
    DevicePreset("EcRamPresetDevice", "linear_step", {
        "dw_min": 0.002, "up_down": 0.0, "w_max": 1.1724, "w_min": -0.8276, "mult_noise": True,
        "gamma_up": 0.1153, "gamma_down": 0.5085, "dw_min_dtod": 0.1, "up_down_dtod": 0.01, "w_max_dtod": 0.05,
        "w_min_dtod": 0.05, "gamma_up_dtod": 0.05, "gamma_down_dtod": 0.05, "dw_min_std": 0.3,
        "mean_bound_reference": True},
        "Li-based ECRAM, linear step fit to Tang et al., IEDM 2018"),
    DevicePreset("EcRamMOPresetDevice", "linear_step", {
        "dw_min": 2.8214e-4, "up_down": 0.0, "w_max": 1.1714, "w_min": -0.8286, "mult_noise": True,
        "gamma_up": 0.4152, "gamma_down": 0.7342, "dw_min_dtod": 0.1, "up_down_dtod": 0.01, "w_max_dtod": 0.05,
        "w_min_dtod": 0.05, "gamma_up_dtod": 0.05, "gamma_down_dtod": 0.05, "dw_min_std": 2.0,
        "mean_bound_reference": True},
        "metal-oxide ECRAM, linear step, data of Kim et al., IEDM 2019"),
    DevicePreset("IdealizedPresetDevice", "constant_step", {
        "dw_min": 0.0002, "dw_min_dtod": 0.3, "dw_min_std": 0.3, "up_down": 0.0, "up_down_dtod": 0.0,
        "w_max": 1.0, "w_min": -1.0, "w_max_dtod": 0.3, "w_min_dtod": 0.3},
        "idealized symmetric device with 10,000 states (Gokmen & Vlasov 2016 variations)"),
    DevicePreset("GokmenVlasovPresetDevice", "constant_step", {
        "dw_min": 0.0016, "dw_min_dtod": 0.3, "dw_min_std": 0.3, "up_down": 0.0, "up_down_dtod": 0.01,
        "w_max": 1.0, "w_min": -1.0, "w_max_dtod": 0.3, "w_min_dtod": 0.3},
        "constant step with the specifications of Gokmen & Vlasov, Front. Neurosci. 2016"),
    DevicePreset("PCMPresetDevice", "exp_step", {
        "dw_min": 0.01, "up_down": 0.0, "w_max": 2.0, "w_min": 0.0, "a": -1.0, "b": 0.0, "gamma_up": 2.5,
        "gamma_down": 2.5, "A_up": -27.235, "A_down": -2.235, "dw_min_dtod": 0.2, "up_down_dtod": 0.05,
        "w_max_dtod": 0.1, "w_min_dtod": 0.0, "dw_min_std": 0.6, "dw_min_std_add": 0.042,
        "dw_min_std_slope": 0.108, "reset": 0.01, "reset_dtod": 0.02},
        "uni-directional GST phase-change memory, Nandakumar et al., Front. Neurosci. 2020 (aihwkit uses it "
        "in a one-sided unit-cell pair)"),
]
DEVICE_PRESETS: dict[str, DevicePreset] = {p.name: p for p in _DEVICES}

_FAMILIES = [("ReRamES", "ReRamESPresetDevice"), ("ReRamSB", "ReRamSBPresetDevice"),
             ("Capacitor", "CapacitorPresetDevice"), ("EcRam", "EcRamPresetDevice"),
             ("EcRamMO", "EcRamMOPresetDevice"), ("Idealized", "IdealizedPresetDevice")]
_ALGORITHMS = [("{}Preset", "analog SGD on one array"), ("TikiTaka{}Preset", "Tiki-Taka (transfer compound)"),
               ("TTv2{}Preset", "TTv2 (chopped transfer compound without choppers, as aihwkit's)"),
               ("ChoppedTTv2{}Preset", "c-TTv2 (chopped transfer compound)"),
               ("AGAD{}Preset", "AGAD (dynamic transfer compound)"),
               ("MixedPrecision{}Preset", "mixed precision (digital accumulator)")]
# aihwkit presets/configs.py: the transfer read has no noise or bound management; TTv2, c-TTv2 and
# AGAD write single pulses without update management
_TRANSFER_IO = {**PRESET_IO, "noise_management": "none", "bound_management": "none"}
_ONE_PULSE = {**PRESET_UPDATE, "desired_bl": 1, "update_bl_management": False, "update_management": False}
# per family, aihwkit's settings: fast_lr, auto_granularity, in_chop_prob (c-TTv2), the SGD update's
# desired_bl (TTv2, c-TTv2); AGAD: fast_lr, auto_granularity, tail_weightening, in_chop_prob, desired_bl
_TTV2 = {"ReRamES": (0.5, 1000, 31), "ReRamSB": (0.5, 1000, 31), "Capacitor": (0.1, 1000, 31),
         "EcRam": (0.1, 500, 100), "EcRamMO": (0.1, 500, 100), "Idealized": (0.1, 500, 100)}
_CTTV2 = {"ReRamES": (0.5, 1000, 0.01, 31), "ReRamSB": (0.5, 1000, 0.01, 31), "Capacitor": (0.1, 1000, 0.01, 31),
          "EcRam": (1.0, 500, 0.01, 100), "EcRamMO": (0.1, 500, 0.001, 100), "Idealized": (0.1, 500, 0.001, 100)}
_AGAD = {"ReRamES": (0.5, 1000, 5.0, 0.02, 31), "ReRamSB": (0.5, 1000, 5.0, 0.02, 31),
         "Capacitor": (0.1, 1000, 20.0, 0.01, 31), "EcRam": (0.1, 750, 50.0, 0.005, 31),
         "EcRamMO": (0.1, 500, 50.0, 0.005, 100), "Idealized": (0.1, 500, 50.0, 0.005, 100)}


def _algorithm(pattern: str, family: str) -> tuple[dict | None, dict, str | None]:
    """(compound fields, SGD update, what is missing) of one aihwkit preset class."""
    if pattern == "{}Preset":
        return None, dict(PRESET_UPDATE), None
    if pattern == "MixedPrecision{}Preset":
        return {"type": "mixed_precision_compound"}, dict(PRESET_UPDATE), None
    if pattern == "TikiTaka{}Preset":
        return ({"type": "transfer_compound", "transfer_forward": dict(_TRANSFER_IO),
                 "transfer_update": dict(PRESET_UPDATE), "transfer_every": 1.0, "units_in_mbatch": True},
                dict(PRESET_UPDATE), None)
    chopped = {"transfer_forward": dict(_TRANSFER_IO), "transfer_update": dict(_ONE_PULSE),
               "units_in_mbatch": False, "auto_scale": True}
    if pattern == "TTv2{}Preset":
        fast_lr, granularity, bl = _TTV2[family]
        fields = {"type": "chopped_transfer_compound", **chopped, "in_chop_prob": 0.0, "fast_lr": fast_lr,
                  "auto_granularity": granularity}
    elif pattern == "ChoppedTTv2{}Preset":
        fast_lr, granularity, chop, bl = _CTTV2[family]
        fields = {"type": "chopped_transfer_compound", **chopped, "in_chop_prob": chop, "fast_lr": fast_lr,
                  "auto_granularity": granularity}
    else:
        fast_lr, granularity, tail, chop, bl = _AGAD[family]
        fields = {"type": "dynamic_transfer_compound", **chopped, "fast_lr": fast_lr, "auto_granularity": granularity,
                  "tail_weightening": tail, "in_chop_prob": chop}
    return fields, {**PRESET_UPDATE, "desired_bl": bl}, None


def _rpu_presets() -> dict[str, RPUPreset]:
    presets = {}
    for family, device in _FAMILIES:
        for pattern, algorithm in _ALGORITHMS:
            name = pattern.format(family)
            compound, update, missing = _algorithm(pattern, family)
            # aihwkit's transfer presets on ReRamSB read each device against its symmetry point
            units = ({"subtract_symmetry_point": True} if family == "ReRamSB" and compound is not None
                     and compound["type"] != "mixed_precision_compound" else {})
            presets[name] = RPUPreset(name, device, f"{algorithm}, {DEVICE_PRESETS[device].models}", update=update,
                                      missing=missing or DEVICE_PRESETS[device].missing, compound=compound,
                                      unit_fields=units)
    presets["GokmenVlasovPreset"] = RPUPreset("GokmenVlasovPreset", "GokmenVlasovPresetDevice",
                                              f"analog SGD on one array, {DEVICE_PRESETS['GokmenVlasovPresetDevice'].models}")
    presets["MixedPrecisionGokmenVlasovPreset"] = RPUPreset(
        "MixedPrecisionGokmenVlasovPreset", "GokmenVlasovPresetDevice",
        f"mixed precision (digital accumulator), {DEVICE_PRESETS['GokmenVlasovPresetDevice'].models}",
        compound={"type": "mixed_precision_compound"})
    return presets


RPU_PRESETS: dict[str, RPUPreset] = _rpu_presets()


def _lookup(table: dict, name: object, prefix: str, what: str):
    """``table[name]``, or a one-line error naming close matches, or what the preset still needs."""
    preset = table.get(name) if isinstance(name, str) else None
    if preset is None:
        raise ConfigError(f"{prefix}: unknown {what} {name!r}{did_you_mean(name, table)}; 'aimcsim presets' lists them")
    if preset.missing:
        raise ConfigError(f"{prefix}: {name} needs what aimcsim does not have yet: {preset.missing}")
    return preset


def device_preset(name: object, prefix: str = "device.preset") -> DevicePreset:
    """The device preset ``name`` (a one-line error for an unknown one, or one aimcsim cannot run)."""
    return _lookup(DEVICE_PRESETS, name, prefix, "device preset")


def resolve_device(value: dict, prefix: str = "device") -> dict:
    """A device mapping with ``preset`` replaced by the preset's fields (explicit keys win).

    A ``type`` that differs from the preset's model is refused: the preset fixes the model.
    """
    if "preset" not in value:
        return value
    rest = {k: v for k, v in value.items() if k != "preset"}
    preset = device_preset(value["preset"], f"{prefix}.preset")
    if rest.get("type", preset.type) != preset.type:
        raise ConfigError(f"{prefix}.type: {rest['type']!r} conflicts with {prefix}.preset {preset.name}, a "
                          f"{preset.type} device; drop one of them")
    return {"type": preset.type, **preset.fields, **rest}


def apply_rpu_preset(data: dict) -> dict:
    """A config mapping with ``rpu_preset`` filling ``device``, ``update`` and ``io`` under the
    user's own keys (which override field by field); a conflicting device model is refused."""
    name = data.get("rpu_preset")
    if name is None:
        return data
    preset = _lookup(RPU_PRESETS, name, "rpu_preset", "preset")
    for section in ("device", "update", "io"):
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise ConfigError(f"{section}: expected a mapping of settings, got {type(data[section]).__name__}")
    device = preset.device_section()
    user_device = dict(data.get("device") or {})
    unit = DEVICE_PRESETS[preset.device]
    if "preset" in user_device and (preset.compound is not None or user_device["preset"] != unit.name):
        raise ConfigError(f"device.preset: {user_device['preset']} conflicts with rpu_preset {name}, whose device "
                          f"is {unit.name}{' in a ' + device['type'] if preset.compound else ''}; drop one of them")
    if user_device.get("type", device["type"]) != device["type"]:
        what = f"a {device['type']}" if preset.compound else f"a {unit.type} ({unit.name})"
        raise ConfigError(f"device.type: {user_device['type']!r} conflicts with rpu_preset {name}, whose device is "
                          f"{what}; drop one of them")
    user_device.pop("preset", None)
    io = dict(data.get("io") or {})
    for key in ("forward", "backward"):
        if io.get(key) is not None and not isinstance(io[key], dict):
            raise ConfigError(f"io.{key}: expected a mapping of settings, got {type(io[key]).__name__}")
    return {**data,
            "device": {**device, **user_device},
            "update": {**preset.update, **(data.get("update") or {})},
            "io": {**io, "forward": {**preset.forward, **(io.get("forward") or {})},
                   "backward": {**preset.backward, **(io.get("backward") or {})}}}


def listing() -> list[str]:
    """One line per preset: its name, what it models, and whether aimcsim can run it."""
    lines = ["device presets (device: {preset: NAME, ...overrides}):"]
    for p in DEVICE_PRESETS.values():
        status = f"  [not yet: {p.missing}]" if p.missing else ""
        lines.append(f"  {p.name:28s} {p.type:22s} {p.models}{status}")
    lines.append("RPU-config presets (rpu_preset: NAME; fills device, update and io):")
    for p in RPU_PRESETS.values():
        status = f"  [not yet: {p.missing}]" if p.missing else ""
        lines.append(f"  {p.name:28s} {p.models}{status}")
    return lines
