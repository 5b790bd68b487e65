"""Layer kinds: the analog crossbar layers and the digital periphery layers between them.

A network (:mod:`aimcsim.graph`) is a list of typed layers in topological order; each reads
the output of the layer before it, or of the layers its ``input`` names. A layer kind is one
class here, registered in :data:`LAYER_KINDS` under its config key, with:

- ``__init__(name, inputs, in_shapes, options, where)``: check the options (one-line
  ``ConfigError`` naming ``where``) and compute ``out_shape`` (per sample: ``(C, H, W)`` or
  ``(F,)``);
- ``forward(xs, read, training) -> (y, ctx)``: the layer's output and what its backward needs
  (``read``: an analog layer's read of rows, the tiles' or, in evaluation, exact);
- ``backward(g, ctx, read_t, need) -> (input gradients, update)``: a gradient per input (None
  where ``need`` says nobody wants it: the data), and what the layer's update needs (an
  analog layer's (x, delta) rows, a digital layer's parameter gradients, or None);
- ``report(op, ctx)``: the digital periphery work of a forward or backward (an ``OpReport``
  for the cost model, or None where the work is counted elsewhere).

**Analog** layers (``linear``, ``conv``) are crossbars holding [W | b], the bias driven by a
constant 1 (aihwkit's analog bias); a convolution runs as AIMC hardware runs it: each output
pixel is one analog read of its input patch (:func:`im2col`), the backward one transposed read
per patch, the update one rank-one update per patch. Their reads report themselves (the
tiles' ``last_report``, which counts one activation per output too). **Digital** layers
(``activation``, ``pool``, ``global_pool``, ``flatten``, ``norm``, ``add``) run in the
accelerator's periphery in float32; ``norm`` has learnable digital parameters (gamma, beta),
updated with the stage's crossbars.

Every layer keeps the dtype it is given (float32 in a run; float64 in the tests' finite
differences).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .errors import ConfigError
from .ops import OpReport

ACTIVATIONS = ("sigmoid", "tanh", "relu")
NORM_KINDS = ("batch", "layer", "group")
#: batch norm's running statistics, as PyTorch's BatchNorm defaults
BN_MOMENTUM, NORM_EPS = 0.1, 1e-5


# ----------------------------------------------------------------------------- helpers
def im2col(x: np.ndarray, kh: int, kw: int, stride: int, padding: int) -> tuple[np.ndarray, int, int]:
    """Patches of images x (n, c, h, w) as rows (n * oh * ow, c * kh * kw), and (oh, ow)."""
    n, c, h, w = x.shape
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (w + 2 * padding - kw) // stride + 1
    strides = x.strides
    view = np.lib.stride_tricks.as_strided(
        x, shape=(n, oh, ow, c, kh, kw),
        strides=(strides[0], strides[2] * stride, strides[3] * stride, strides[1], strides[2], strides[3]))
    return view.reshape(n * oh * ow, c * kh * kw), oh, ow


def im2col_bias(x: np.ndarray, k: int, stride: int, padding: int) -> tuple[np.ndarray, int, int]:
    """:func:`im2col`'s rows with a last column of ones (the bias input), built in place: one
    strided copy per kernel offset, not a copy of a 6-d view and a concatenation (the same
    values, two to three times faster)."""
    n, c, h, w = x.shape
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (h + 2 * padding - k) // stride + 1
    ow = (w + 2 * padding - k) // stride + 1
    out = np.empty((n, oh, ow, c * k * k + 1), dtype=x.dtype)
    patches = out[..., :-1].reshape(n, oh, ow, c, k, k)  # a view: the last axis is split in place
    channels_last = x.transpose(0, 2, 3, 1)
    for i in range(k):
        for j in range(k):
            patches[:, :, :, :, i, j] = channels_last[:, i:i + stride * oh:stride, j:j + stride * ow:stride, :]
    out[..., -1] = 1
    return out.reshape(n * oh * ow, -1), oh, ow


def col2im(cols: np.ndarray, shape: tuple[int, int, int, int], kh: int, kw: int, stride: int,
           padding: int) -> np.ndarray:
    """Adjoint of :func:`im2col`: add patch gradients back onto the image gradient."""
    n, c, h, w = shape
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (w + 2 * padding - kw) // stride + 1
    grad = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    patches = cols.reshape(n, oh, ow, c, kh, kw)
    for i in range(kh):
        for j in range(kw):
            grad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += patches[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return grad[:, :, padding:padding + h, padding:padding + w] if padding else grad


def activate(name: str, z: np.ndarray) -> np.ndarray:
    """Digital activation of pre-activations ``z``."""
    if name == "sigmoid":
        return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(z.dtype)
    if name == "tanh":
        return np.tanh(z)
    return np.maximum(z, 0)


def activation_grad(name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Derivative of the activation at ``z`` (``a`` = activation(z), reused where cheaper)."""
    if name == "sigmoid":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a * a
    return (z > 0).astype(z.dtype)


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((x.shape[0], 1), dtype=x.dtype)], axis=1)


def _pool(y: np.ndarray, kind: str, size: int):
    n, c, h, w = y.shape
    oh, ow = h // size, w // size
    blocks = y[:, :, :oh * size, :ow * size].reshape(n, c, oh, size, ow, size).transpose(0, 1, 2, 4, 3, 5)
    blocks = blocks.reshape(n, c, oh, ow, size * size)
    if kind == "avg":
        return blocks.mean(axis=-1).astype(y.dtype), None
    arg = blocks.argmax(axis=-1)
    return np.take_along_axis(blocks, arg[..., None], axis=-1)[..., 0], arg


def _unpool(g: np.ndarray, kind: str, size: int, arg, shape) -> np.ndarray:
    n, c, h, w = shape
    oh, ow = g.shape[2], g.shape[3]
    if kind == "avg":
        spread = np.repeat(g[..., None], size * size, axis=-1) / (size * size)
    else:
        spread = np.zeros((n, c, oh, ow, size * size), dtype=g.dtype)
        np.put_along_axis(spread, arg[..., None], g[..., None], axis=-1)
    spread = spread.reshape(n, c, oh, ow, size, size).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh * size, ow * size)
    out = np.zeros(shape, dtype=g.dtype)
    out[:, :, :oh * size, :ow * size] = spread
    return out


@dataclass
class Cache:
    """What an analog layer keeps from forward for its backward: its input rows, its
    pre-activations and, for a convolution, the input shape and output size."""

    x: np.ndarray | None = None
    z: np.ndarray | None = None
    extra: object = None


def _int(options: dict, key: str, default: int | None, where: str, low: int = 1) -> int:
    value = options.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(f"{where}.{key}: must be {what}, got {value!r}")
    return value


def _only(options: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in options:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown option; allowed: {', '.join(allowed) or 'none'}")


def _image(shape: tuple, where: str, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ConfigError(f"{where}: needs image input (channels, height, width) for {what}; its input is a "
                          f"vector of {shape[0]}")
    return shape


# ----------------------------------------------------------------------------- the base
class Layer:
    """A layer of a network: its name, the layers it reads, its shapes; see the module doc."""

    kind: ClassVar[str]
    analog: ClassVar[bool] = False
    n_inputs: ClassVar[int | None] = 1  # None: any number (add)

    def __init__(self, name: str, inputs: tuple[str, ...], in_shapes: list[tuple], options: dict, where: str) -> None:
        self.name = name
        self.inputs = inputs
        self.in_shapes = in_shapes
        self.where = where
        self.out_shape: tuple = in_shapes[0]
        self.params: list[np.ndarray] = []  # learnable digital parameters (updated with the stage)

    def forward(self, xs: list[np.ndarray], read: Callable | None, training: bool) -> tuple[np.ndarray, object]:
        raise NotImplementedError

    def backward(self, g: np.ndarray, ctx: object, read_t: Callable | None,
                 need: list[bool]) -> tuple[list[np.ndarray | None], object]:
        raise NotImplementedError

    def report(self, op: str, ctx: object) -> OpReport | None:
        """The periphery work of a forward or backward (None: counted elsewhere or nothing)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, inputs={list(self.inputs)}, out_shape={self.out_shape})"


LAYER_KINDS: dict[str, type[Layer]] = {}


def register_layer_kind(cls: type[Layer]) -> type[Layer]:
    """Register a layer kind under its config key (``cls.kind``); usable as a class decorator."""
    LAYER_KINDS[cls.kind] = cls
    return cls


# ----------------------------------------------------------------------------- analog layers
@register_layer_kind
class Linear(Layer):
    """A fully connected analog layer: one crossbar (``units`` x inputs + 1), one read per row."""

    kind = "linear"
    analog = True

    def __init__(self, name, inputs, in_shapes, options, where):
        super().__init__(name, inputs, in_shapes, options, where)
        _only(options, ("units",), where)
        shape = in_shapes[0]
        if len(shape) != 1:
            raise ConfigError(f"{where}: needs vector input; add {{flatten: {{}}}} or {{global_pool: {{}}}} "
                              f"after the convolutions")
        self.units = _int(options, "units", None, where)
        self.n_in = shape[0]
        self.out_shape = (self.units,)
        self.patches = 1
        self.grid = None  # the crossbar, built by the Network

    def forward(self, xs, read, training):
        rows = _with_bias(xs[0])
        z = read(rows)
        return z, Cache(rows, None, None)

    def backward(self, g, ctx, read_t, need):
        delta = g.astype(g.dtype)
        g_in = read_t(delta)[:, :-1] if need[0] else None
        return [g_in], (ctx.x, delta)


@register_layer_kind
class Conv(Layer):
    """A convolution on a crossbar (``channels`` x in_channels * kernel^2 + 1): one analog read
    per output pixel's patch, one transposed read and one rank-one update per patch."""

    kind = "conv"
    analog = True

    def __init__(self, name, inputs, in_shapes, options, where):
        super().__init__(name, inputs, in_shapes, options, where)
        _only(options, ("channels", "kernel", "stride", "padding"), where)
        c, h, w = _image(in_shapes[0], where, "a convolution")
        self.channels = _int(options, "channels", None, where)
        self.kernel = _int(options, "kernel", 3, where)
        self.stride = _int(options, "stride", 1, where)
        self.padding = _int(options, "padding", 0, where, low=0)
        oh = (h + 2 * self.padding - self.kernel) // self.stride + 1
        ow = (w + 2 * self.padding - self.kernel) // self.stride + 1
        if oh < 1 or ow < 1:
            raise ConfigError(f"{where}.kernel: {self.kernel} does not fit the {h}x{w} input with padding "
                              f"{self.padding}")
        self.in_image = (c, h, w)
        self.n_in = c * self.kernel * self.kernel
        self.units = self.channels
        self.out_shape = (self.channels, oh, ow)
        self.patches = oh * ow
        self.grid = None

    def forward(self, xs, read, training):
        a = xs[0]
        n = a.shape[0]
        if a.ndim == 2:  # flat rows from the data set or a previous stage
            a = a.reshape(n, *self.in_image)
        rows, oh, ow = im2col_bias(a, self.kernel, self.stride, self.padding)
        z = read(rows).reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
        return z, Cache(rows, None, (a.shape, oh, ow))

    def backward(self, g, ctx, read_t, need):
        in_shape, oh, ow = ctx.extra
        n = in_shape[0]
        delta = np.ascontiguousarray(g.transpose(0, 2, 3, 1).reshape(n * oh * ow, -1), dtype=g.dtype)
        g_in = None
        if need[0]:
            cols = read_t(delta)[:, :-1]
            g_in = col2im(cols, in_shape, self.kernel, self.kernel, self.stride, self.padding)
        return [g_in], (ctx.x, delta)


# ----------------------------------------------------------------------------- digital layers
@register_layer_kind
class Activation(Layer):
    """An elementwise activation (``{activation: relu}``); its work is counted in the read of
    the analog layer before it (one operation per output)."""

    kind = "activation"

    def __init__(self, name, inputs, in_shapes, options, where):
        super().__init__(name, inputs, in_shapes, options, where)
        _only(options, ("name",), where)
        self.function = options.get("name")
        if self.function not in ACTIVATIONS:
            raise ConfigError(f"{where}: must be one of {', '.join(ACTIVATIONS)}, got {self.function!r}")

    def forward(self, xs, read, training):
        z = xs[0]
        return activate(self.function, z), z

    def backward(self, g, ctx, read_t, need):
        z = ctx
        return [g * activation_grad(self.function, z, activate(self.function, z))], None


@register_layer_kind
class Pool(Layer):
    """Max or average pooling over size x size windows of an image (``{pool: {kind: max, size: 2}}``)."""

    kind = "pool"

    def __init__(self, name, inputs, in_shapes, options, where):
        super().__init__(name, inputs, in_shapes, options, where)
        _only(options, ("kind", "size"), where)
        c, h, w = _image(in_shapes[0], where, "pooling")
        self.how, self.size = options.get("kind", "max"), options.get("size", 2)
        if self.how not in ("max", "avg") or not isinstance(self.size, int) or not 1 <= self.size <= min(h, w):
            raise ConfigError(f"{where}: kind max|avg and size 1..{min(h, w)}, got {self.how!r}, {self.size!r}")
        self.out_shape = (c, h // self.size, w // self.size)

    def forward(self, xs, read, training):
        y, arg = _pool(xs[0], self.how, self.size)
        return y, (xs[0].shape, arg)

    def backward(self, g, ctx, read_t, need):
        shape, arg = ctx
        return [_unpool(g, self.how, self.size, arg, shape)], None


@register_layer_kind
class GlobalPool(Layer):
    """The average over each channel's whole image (``{global_pool: {kind: avg}}``): (C, H, W) -> (C,)."""

    kind = "global_pool"

    def __init__(self, name, inputs, in_shapes, options, where):
        super().__init__(name, inputs, in_shapes, options, where)
        _only(options, ("kind",), where)
        c, _, _ = _image(in_shapes[0], where, "global pooling")
        if options.get("kind", "avg") != "avg":
            raise ConfigError(f"{where}.kind: only avg (global average pooling), got {options.get('kind')!r}")
        self.out_shape = (c,)

    def forward(self, xs, read, training):
        x = xs[0]
        return x.mean(axis=(2, 3)).astype(x.dtype), x.shape

    def backward(self, g, ctx, read_t, need):
        n, c, h, w = ctx
        return [np.broadcast_to((g / (h * w))[:, :, None, None], ctx).astype(g.dtype)], None

    def report(self, op, ctx):
        return OpReport(op, 0, digital=int(np.prod(ctx)))


@register_layer_kind
class Flatten(Layer):
    """An image as one vector (C * H * W); first in a network, the image's flat vector (which the data already is)."""

    kind = "flatten"

    def __init__(self, name, inputs, in_shapes, options, where):
        super().__init__(name, inputs, in_shapes, options, where)
        _only(options, (), where)
        shape = in_shapes[0]
        if len(shape) != 3:
            raise ConfigError(f"{where}: its input is already a vector (flatten follows a conv layer, or comes "
                              f"first on image data)")
        self.out_shape = (shape[0] * shape[1] * shape[2],)

    def forward(self, xs, read, training):
        x = xs[0]
        return np.ascontiguousarray(x.reshape(x.shape[0], -1)), x.shape

    def backward(self, g, ctx, read_t, need):
        return [g.reshape(ctx) if len(ctx) == 4 else g], None


@register_layer_kind
class Norm(Layer):
    """Normalization with a learnable per-channel scale and shift (digital, as in the hardware):
    ``batch`` over the micro-batch (and the image) per channel, with running statistics for
    evaluation (PyTorch's momentum 0.1 and eps 1e-5); ``layer`` over each sample's channels
    (and image); ``group`` over each sample's ``groups`` groups of channels. A batch needs more
    than one value per channel: a micro-batch of one vector has no batch statistics."""

    kind = "norm"

    def __init__(self, name, inputs, in_shapes, options, where):
        super().__init__(name, inputs, in_shapes, options, where)
        _only(options, ("kind", "groups"), where)
        self.how = options.get("kind", "batch")
        if self.how not in NORM_KINDS:
            raise ConfigError(f"{where}.kind: must be one of {', '.join(NORM_KINDS)}, got {self.how!r}")
        shape = in_shapes[0]
        channels = shape[0]
        if self.how == "group":
            self.groups = _int(options, "groups", None, where)
            if channels % self.groups:
                raise ConfigError(f"{where}.groups: {self.groups} groups do not divide {channels} channels")
        else:
            if "groups" in options:
                raise ConfigError(f"{where}.groups: only kind group has groups (kind is {self.how})")
            self.groups = 1
        self.image = len(shape) == 3
        self.channels = channels
        self.gamma = np.ones(channels, dtype=np.float32)
        self.beta = np.zeros(channels, dtype=np.float32)
        self.params = [self.gamma, self.beta]
        self.running_mean = np.zeros(channels, dtype=np.float32)
        self.running_var = np.ones(channels, dtype=np.float32)

    def _per_channel(self, v: np.ndarray) -> np.ndarray:
        return v.reshape(1, -1, 1, 1) if self.image else v.reshape(1, -1)

    def _grouped(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        """x as (n, groups, rest) with the axes to normalise over: the layer and group kinds."""
        n = x.shape[0]
        return x.reshape(n, self.groups, -1), (2,)

    def forward(self, xs, read, training):
        x = xs[0]
        if self.how == "batch":
            axes = (0, 2, 3) if self.image else (0,)
            if training:
                count = x.size // self.channels
                mean = x.mean(axis=axes)
                var = x.var(axis=axes)
                m = BN_MOMENTUM
                self.running_mean[:] = (1 - m) * self.running_mean + m * mean
                self.running_var[:] = (1 - m) * self.running_var + m * var * (count / max(count - 1, 1))
            else:
                mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)
            inv = (1.0 / np.sqrt(var + NORM_EPS)).astype(x.dtype)
            xhat = (x - self._per_channel(mean.astype(x.dtype))) * self._per_channel(inv)
            ctx = (xhat, inv, training)
        else:
            grouped, axes = self._grouped(x)
            mean = grouped.mean(axis=axes, keepdims=True)
            var = grouped.var(axis=axes, keepdims=True)
            inv = (1.0 / np.sqrt(var + NORM_EPS)).astype(x.dtype)
            xhat = ((grouped - mean) * inv).reshape(x.shape)
            ctx = (xhat, inv, True)
        y = xhat * self._per_channel(self.gamma.astype(x.dtype)) + self._per_channel(self.beta.astype(x.dtype))
        return y, ctx

    def backward(self, g, ctx, read_t, need):
        xhat, inv, normalised_here = ctx
        axes = (0, 2, 3) if self.image else (0,)
        dgamma = (g * xhat).sum(axis=axes)
        dbeta = g.sum(axis=axes)
        dxhat = g * self._per_channel(self.gamma.astype(g.dtype))
        if self.how == "batch":
            if not normalised_here:  # running statistics: an affine map
                return [dxhat * self._per_channel(inv)], (dgamma, dbeta)
            mean_d = dxhat.mean(axis=axes, keepdims=True)
            mean_dx = (dxhat * xhat).mean(axis=axes, keepdims=True)
            dx = (dxhat - mean_d - xhat * mean_dx) * self._per_channel(inv)
        else:
            n = g.shape[0]
            d, xh = dxhat.reshape(n, self.groups, -1), xhat.reshape(n, self.groups, -1)
            dx = ((d - d.mean(axis=2, keepdims=True) - xh * (d * xh).mean(axis=2, keepdims=True)) * inv).reshape(g.shape)
        return [dx.astype(g.dtype)], (dgamma, dbeta)

    def report(self, op, ctx):
        return OpReport(op, 0, digital=int(ctx[0].size) * 4)  # centre, scale, multiply, shift per value


@register_layer_kind
class Add(Layer):
    """The elementwise sum of its inputs (a residual connection): ``{add: {inputs: [NAME]}}``
    adds the previous layer's output (or ``input``'s) and the named layers'."""

    kind = "add"
    n_inputs = None

    def __init__(self, name, inputs, in_shapes, options, where):
        super().__init__(name, inputs, in_shapes, options, where)
        if len(inputs) < 2:
            raise ConfigError(f"{where}.inputs: an add needs at least one layer besides its input to add")
        for other, shape in zip(inputs[1:], in_shapes[1:]):
            if tuple(shape) != tuple(in_shapes[0]):
                raise ConfigError(f"{where}: shapes differ: {inputs[0]} gives {tuple(in_shapes[0])}, {other} gives "
                                  f"{tuple(shape)}")

    def forward(self, xs, read, training):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y, y.size

    def backward(self, g, ctx, read_t, need):
        return [g if n else None for n in need], None

    def report(self, op, ctx):
        return OpReport(op, 0, digital=int(ctx) * (len(self.inputs) - 1)) if op != "B" else None
