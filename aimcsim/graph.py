"""A network as a graph of typed layers: from the ``model`` config to checked layers.

``model.layers`` lists layers in order (see :mod:`aimcsim.layers` for the kinds); each reads
the previous layer's output unless its ``input`` names other layers (``input: NAME`` or a
list), and ``add`` also reads the layers its ``inputs`` name. Every layer may have a
``name`` (default ``KIND_INDEX``); ``input`` means the data. The list order is the
topological order: a layer reads only layers before it. ``model.hidden`` is the MLP written
as a list, ``model.preset`` a named network, and the ``basic_block`` macro a residual block:

- ``{basic_block: {channels: C, stride: s, norm: batch}}``: conv 3x3 (stride s) - norm - relu
  - conv 3x3 - norm, plus the shortcut (the block's input, or a 1x1 conv of stride s where
  the shape changes, as aihwkit's ResNet example), added, then relu;
- presets ``resnet8 | resnet20 | resnet32`` (He et al. 2016's CIFAR ResNets, 6n + 2 layers:
  a 3x3 conv of 16 channels, three groups of n basic blocks of 16, 32, 64 channels, the
  last two starting with stride 2, global average pooling, a linear output) and ``lenet5``
  (aihwkit's LeNet-5 example, ``examples/04_lenet5_training.py``: conv 16 5x5 - tanh - max
  pool - conv 32 5x5 - tanh - max pool - tanh - flatten - linear 128 - tanh - linear).

:func:`expand` turns a model section into plain layer entries (no shapes needed: the count of
analog layers is known before any data is read); :func:`build_layers` checks them against the
data's shape and returns the typed layers. Bad graphs are refused with one line naming the
layer: an unknown kind or input, a later layer as input (a cycle), shapes that do not fit,
a layer whose output nobody reads.
"""

from __future__ import annotations

from .errors import ConfigError, did_you_mean
from .layers import LAYER_KINDS, Layer

DATA = "input"  # the name of the network's input (the data)
MACROS = ("basic_block",)
#: one analog layer per entry of these kinds
ANALOG_KINDS = tuple(kind for kind, cls in LAYER_KINDS.items() if cls.analog)


def _kind_of(entry: object, where: str) -> tuple[str, object]:
    """(kind, options) of a layer entry: one key besides ``name`` and ``input``."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping like {{linear: {{units: 10}}}}, got {entry!r}")
    keys = [k for k in entry if k not in ("name", "input")]
    if len(keys) != 1:
        allowed = ", ".join([*LAYER_KINDS, *MACROS])
        raise ConfigError(f"{where}: expected one layer kind ({allowed}) plus name and input, got {sorted(entry)}")
    kind = keys[0]
    if kind not in LAYER_KINDS and kind not in MACROS:
        allowed = ", ".join([*LAYER_KINDS, *MACROS])
        raise ConfigError(f"{where}: unknown layer '{kind}'{did_you_mean(kind, [*LAYER_KINDS, *MACROS])}; "
                          f"allowed: {allowed}")
    return kind, entry[kind]


def _options(kind: str, raw: object, where: str) -> dict:
    if kind == "activation" and isinstance(raw, str):
        return {"name": raw}
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}.{kind}: expected a mapping of options, got {raw!r}")
    return dict(raw)


def basic_block(options: dict, name: str, source: str | None, where: str) -> list[dict]:
    """The entries of one residual basic block (see the module doc); the block's output is
    its final relu, named ``name``; its layers are ``name/conv1`` and so on."""
    allowed = ("channels", "stride", "norm", "shortcut")
    for key in options:
        if key not in allowed:
            raise ConfigError(f"{where}.basic_block.{key}: unknown option; allowed: {', '.join(allowed)}")
    channels, stride = options.get("channels"), options.get("stride", 1)
    norm = options.get("norm", "batch")
    for key, value in (("channels", channels), ("stride", stride)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}.basic_block.{key}: must be a positive integer, got {value!r}")
    shortcut = options.get("shortcut", "auto")
    if shortcut not in ("auto", "identity", "conv"):
        raise ConfigError(f"{where}.basic_block.shortcut: auto | identity | conv, got {shortcut!r}")
    norm_options = norm if isinstance(norm, dict) else {"kind": norm}
    first = {"conv": {"channels": channels, "kernel": 3, "stride": stride, "padding": 1}, "name": f"{name}/conv1"}
    if source is not None:
        first["input"] = source
    body = [first,
            {"norm": dict(norm_options), "name": f"{name}/norm1"},
            {"activation": "relu", "name": f"{name}/relu1"},
            {"conv": {"channels": channels, "kernel": 3, "padding": 1}, "name": f"{name}/conv2"},
            {"norm": dict(norm_options), "name": f"{name}/norm2"}]
    return [*body, {"_shortcut": {"from": source, "channels": channels, "stride": stride, "mode": shortcut},
                    "name": name}]


def _preset(name: str) -> list[dict]:
    if name == "lenet5":
        return [{"conv": {"channels": 16, "kernel": 5}}, {"activation": "tanh"}, {"pool": {"kind": "max", "size": 2}},
                {"conv": {"channels": 32, "kernel": 5}}, {"activation": "tanh"}, {"pool": {"kind": "max", "size": 2}},
                {"activation": "tanh"}, {"flatten": {}}, {"linear": {"units": 128}}, {"activation": "tanh"},
                {"linear": {}}]
    n = {"resnet8": 1, "resnet20": 3, "resnet32": 5}[name]
    layers: list[dict] = [{"conv": {"channels": 16, "kernel": 3, "padding": 1}, "name": "stem"},
                          {"norm": {"kind": "batch"}, "name": "stem/norm"}, {"activation": "relu", "name": "stem/relu"}]
    for group, channels in enumerate((16, 32, 64)):
        for block in range(n):
            stride = 2 if group > 0 and block == 0 else 1
            layers.append({"basic_block": {"channels": channels, "stride": stride}, "name": f"group{group + 1}.{block + 1}"})
    return [*layers, {"global_pool": {"kind": "avg"}, "name": "pool"}, {"linear": {}, "name": "fc"}]


def entries(model) -> list[dict]:
    """The layer list a model section describes (``layers``, a ``preset``, or ``hidden``)."""
    if getattr(model, "preset", None) is not None:
        return _preset(model.preset)
    if model.layers is not None:
        if not isinstance(model.layers, list) or not model.layers:
            raise ConfigError("model.layers: expected a non-empty list of layers")
        return list(model.layers)
    out: list[dict] = []
    for width in model.hidden:
        out += [{"linear": {"units": width}}, {"activation": model.activation}]
    return [*out, {"linear": {}}]


def expand(model) -> list[tuple[str, dict, str, tuple | None, str]]:
    """The model's layers with macros expanded: (kind, options, name, input names or None for
    the previous layer, where), before shapes are known."""
    out: list[tuple[str, dict, str, tuple | None, str]] = []
    names: set[str] = {DATA}
    channels: dict[str, int | None] = {DATA: None}  # what each layer gives, where known without the data
    previous = DATA
    for i, entry in enumerate(entries(model)):
        where = f"model.layers[{i}]"
        kind, raw = _kind_of(entry, where)
        name = entry.get("name", f"{kind}_{i}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: must be a non-empty string, got {name!r}")
        if name in names:
            raise ConfigError(f"{where}.name: '{name}' is taken (the data is '{DATA}'; names are unique)")
        source = entry.get("input")
        inputs = None if source is None else tuple([source] if isinstance(source, str) else source)
        if inputs is not None and (not inputs or not all(isinstance(n, str) for n in inputs)):
            raise ConfigError(f"{where}.input: a layer name or a list of them, got {source!r}")
        options = _options(kind, raw, where)
        if kind == "basic_block":
            if inputs is not None and len(inputs) != 1:
                raise ConfigError(f"{where}.input: a basic block reads one layer, got {list(inputs)}")
            source = inputs[0] if inputs else previous
            block = basic_block(options, name, source, where)
            for sub in block:
                sub_kind = next(k for k in sub if k not in ("name", "input"))
                sub_options = _options(sub_kind, sub[sub_kind], where)
                if sub_kind == "_shortcut":  # a 1x1 conv where the shape changes (the data's channels: unknown)
                    mode, stride = sub_options["mode"], sub_options["stride"]
                    changes = stride > 1 or channels.get(source) not in (None, sub_options["channels"])
                    sub_options["conv"] = mode == "conv" or (mode == "auto" and changes)
                sub_inputs = (sub["input"],) if "input" in sub else None
                out.append((sub_kind, sub_options, sub["name"], sub_inputs, where))
                names.add(sub["name"])
                channels[sub["name"]] = options.get("channels")
            previous = name
            continue
        if kind == "add":
            extra = options.pop("inputs", None)
            if not isinstance(extra, list) or not extra or not all(isinstance(n, str) for n in extra):
                raise ConfigError(f"{where}.add.inputs: a list of the layers to add, e.g. [a0], got {extra!r}")
            inputs = (inputs or (None,)) + tuple(extra)
        out.append((kind, options, name, inputs, where))
        names.add(name)
        first_input = (inputs[0] if inputs and inputs[0] is not None else previous)
        channels[name] = options.get("channels") if kind == "conv" else (
            options.get("units") if kind == "linear" else channels.get(first_input))
        previous = name
    return out


def analog_count(model) -> int:
    """How many analog layers (crossbars) the model has: what a partition counts."""
    return sum(1 for kind, options, *_ in expand(model)
               if kind in ANALOG_KINDS or (kind == "_shortcut" and options["conv"]))


def has_convolutions(model) -> bool:
    return any(kind == "conv" for kind, *_ in expand(model))


def has_batch_norm(model) -> bool:
    return any(kind == "norm" and options.get("kind", "batch") == "batch" for kind, options, *_ in expand(model))


def build_layers(model, image_shape: tuple | None, n_inputs: int, n_outputs: int) -> list[Layer]:
    """The typed layers of a model for data of this shape, checked (see the module doc)."""
    shapes: dict[str, tuple] = {DATA: tuple(image_shape) if image_shape else (n_inputs,)}
    order = [DATA]
    layers: list[Layer] = []
    read: set[str] = set()
    expanded = expand(model)
    for k, (kind, options, name, inputs, where) in enumerate(expanded):
        previous = order[-1]
        if kind == "_shortcut":  # the tail of a basic block: shortcut, add, relu
            source = options["from"]
            main = order[-1]
            conv = options["conv"]
            if not conv and tuple(shapes[source]) != tuple(shapes[main]):
                if options["mode"] == "identity":
                    raise ConfigError(f"{where}.basic_block.shortcut: identity, but the block changes the shape "
                                      f"{tuple(shapes[source])} -> {tuple(shapes[main])}; use auto or conv")
                conv = True  # the data's channels differ from the block's
            skip = source
            if conv:
                conv_name = f"{name}/shortcut"
                layer = _make("conv", {"channels": options["channels"], "kernel": 1, "stride": options["stride"]},
                              conv_name, (source,), shapes, where, read)
                layers.append(layer)
                shapes[conv_name] = layer.out_shape
                order.append(conv_name)
                skip = conv_name
            add = _make("add", {}, f"{name}/add", (main, skip), shapes, where, read)
            layers.append(add)
            shapes[add.name] = add.out_shape
            order.append(add.name)
            relu = _make("activation", {"name": "relu"}, name, (add.name,), shapes, where, read)
            layers.append(relu)
            shapes[name] = relu.out_shape
            order.append(name)
            continue
        resolved = tuple(previous if n is None else n for n in (inputs or (None,)))
        if kind == "linear" and k == len(expanded) - 1 and "units" not in options:
            options = {**options, "units": n_outputs}  # the output layer: as many units as the data has outputs
        first_linear_on_image = kind == "linear" and resolved == (DATA,) and len(shapes[DATA]) == 3
        if first_linear_on_image:  # a dense layer reads the image as its flat vector (the data already is one)
            shapes_for = {**shapes, DATA: (int(shapes[DATA][0] * shapes[DATA][1] * shapes[DATA][2]),)}
        else:
            shapes_for = shapes
        layer = _make(kind, options, name, resolved, shapes_for, where, read)
        layers.append(layer)
        shapes[name] = layer.out_shape
        order.append(name)
    _check_output(layers, n_outputs)
    unread = [layer for layer in layers[:-1] if layer.name not in read]
    if unread:
        raise ConfigError(f"{unread[0].where}: the output of layer '{unread[0].name}' is read by no later layer")
    return layers


def _make(kind: str, options: dict, name: str, inputs: tuple, shapes: dict, where: str, read: set) -> Layer:
    for source in inputs:
        if source not in shapes:
            raise ConfigError(f"{where}.input: '{source}' is not an earlier layer (a layer reads only layers "
                              f"before it: a later one would make a cycle){did_you_mean(source, shapes)}")
    cls = LAYER_KINDS[kind]
    if cls.n_inputs is not None and len(inputs) != cls.n_inputs:
        raise ConfigError(f"{where}.input: a {kind} layer reads {cls.n_inputs} layer, got {list(inputs)}")
    read.update(inputs)
    return cls(name, inputs, [shapes[s] for s in inputs], dict(options), f"{where}.{kind}")


def _check_output(layers: list[Layer], n_outputs: int) -> None:
    last = layers[-1]
    if last.kind == "activation" and len(layers) > 1 and layers[-2].kind == "linear":
        raise ConfigError("model.layers: the output layer takes no activation (the loss applies softmax)")
    if last.kind != "linear":
        raise ConfigError("model.layers: must end with a linear output layer")
    if last.units != n_outputs:
        raise ConfigError(f"model.layers[-1].linear.units: the output layer needs {n_outputs} units for this data "
                          f"set, got {last.units}")
