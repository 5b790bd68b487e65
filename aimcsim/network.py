"""Networks of analog fully connected layers, their digital periphery, and stage partitions.

A layer (a :class:`Block`) is one crossbar holding [W | b] (the bias is the last column,
driven by a constant input 1, as aihwkit's analog bias; built by
:func:`~aimcsim.crossbar.make_crossbar` from the device config) followed by a digital
activation; the last layer feeds the loss (:class:`LossHead`). Everything between tiles
(activations, loss and its gradient) runs in the accelerator's periphery, in float32.

A :class:`Stage` is a contiguous run of layers with the per-item state the pipeline needs:
``forward`` keeps each micro-batch's layer inputs until its ``backward``; ``backward``
returns the (x, delta) pairs of the rank-one updates and the error for the stage before.
Weights only change through ``update``; stages never exchange weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from .crossbar import Crossbar, make_crossbar
from .errors import ConfigError
from .kernels import all_finite
from .layers import Cache, col2im, im2col
from .ops import OpReport

ACTIVATIONS = ("sigmoid", "tanh", "relu")
LOSSES = ("cross_entropy", "mse")


def activate(name: str, z: np.ndarray) -> np.ndarray:
    """Digital activation of pre-activations ``z``."""
    if name == "sigmoid":
        return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)
    if name == "tanh":
        return np.tanh(z)
    return np.maximum(z, 0)


def activation_grad(name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Derivative of the activation at ``z`` (``a`` = activation(z), reused where cheaper)."""
    if name == "sigmoid":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a * a
    return (z > 0).astype(np.float32)


def loss_and_grad(name: str, outputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row loss and its gradient with respect to the network outputs.

    cross_entropy: softmax cross-entropy with integer class ``targets``;
    mse: 0.5 * ||outputs - targets||^2 with target vectors.
    """
    if name == "cross_entropy":
        z = outputs - outputs.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        rows = np.arange(len(targets))
        loss = -np.log(np.maximum(p[rows, targets], 1e-30))
        grad = p.copy()
        grad[rows, targets] -= 1
        return loss, grad.astype(np.float32)
    diff = outputs - targets
    return 0.5 * np.sum(diff * diff, axis=1), diff.astype(np.float32)


class LossHead:
    """The loss at the end of the last stage: per-sample loss of a micro-batch and its gradient
    with respect to the network outputs, against the targets of that micro-batch.

    ``targets(item)`` is the connection to the data feed; ``last`` keeps the latest
    micro-batch's per-sample losses (for progress output).
    """

    def __init__(self, name: str, targets) -> None:
        self.name = name
        self.targets = targets
        self.last: np.ndarray | None = None

    def __call__(self, item: int, outputs: np.ndarray) -> np.ndarray | None:
        """The loss gradient for micro-batch ``item``, or None when the loss is not finite."""
        loss, grad = loss_and_grad(self.name, outputs.astype(np.float64), self.targets(item))
        if not all_finite(loss):
            return None
        self.last = loss
        return grad


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((x.shape[0], 1), dtype=np.float32)], axis=1)


@dataclass
class Block:
    """One analog layer (dense or convolution) and the digital operations that follow it.

    ``forward``/``backward`` take the layer's read functions, so the same code runs the
    analog tiles (training) and exact digital reads of their weights (evaluation).
    """

    grid: Crossbar                  # the layer's weights [W | b] on analog tiles
    kind: str                       # "dense" or "conv"
    activation: str                 # "linear" = none
    in_shape: tuple | None = None   # (channels, height, width) of a convolution's input
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    pool: str | None = None         # "max" | "avg"
    pool_size: int = 2
    flatten: bool = False

    def forward(self, a: np.ndarray, read) -> tuple[np.ndarray, Cache]:
        if self.kind == "dense":
            rows = _with_bias(a)
            z = read(rows)
            y = z if self.activation == "linear" else activate(self.activation, z)
            return y, Cache(rows, z, None)
        n = a.shape[0]
        if a.ndim == 2:  # flat rows from the data set or a previous stage
            a = a.reshape(n, *self.in_shape)
        patches, oh, ow = im2col(a, self.kernel, self.kernel, self.stride, self.padding)
        rows = _with_bias(patches)
        z = read(rows).reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
        y = z if self.activation == "linear" else activate(self.activation, z)
        pooled = _pool(y, self.pool, self.pool_size) if self.pool else (y, None)
        y, argmax = pooled
        shape = y.shape
        if self.flatten:
            y = y.reshape(n, -1)
        return np.ascontiguousarray(y, dtype=np.float32), Cache(rows, z, (a.shape, shape, argmax, oh, ow))

    def backward(self, g: np.ndarray, cache: Cache, read_t, need_input: bool):
        """(gradient wrt the block's input or None, update rows x, update rows delta)."""
        if self.kind == "dense":
            delta = g if self.activation == "linear" else (
                g * activation_grad(self.activation, cache.z, activate(self.activation, cache.z)))
            delta = delta.astype(np.float32)
            g_in = read_t(delta)[:, :-1] if need_input else None
            return g_in, cache.x, delta
        in_shape, pooled_shape, argmax, oh, ow = cache.extra
        n = in_shape[0]
        g = g.reshape(pooled_shape)
        if self.pool:
            g = _unpool(g, self.pool, self.pool_size, argmax, (n, pooled_shape[1], oh, ow))
        if self.activation != "linear":
            g = g * activation_grad(self.activation, cache.z, activate(self.activation, cache.z))
        delta = np.ascontiguousarray(g.transpose(0, 2, 3, 1).reshape(n * oh * ow, -1), dtype=np.float32)
        g_in = None
        if need_input:
            cols = read_t(delta)[:, :-1]
            g_in = col2im(cols, in_shape, self.kernel, self.kernel, self.stride, self.padding)
        return g_in, cache.x, delta


def _pool(y: np.ndarray, kind: str, size: int):
    n, c, h, w = y.shape
    oh, ow = h // size, w // size
    blocks = y[:, :, :oh * size, :ow * size].reshape(n, c, oh, size, ow, size).transpose(0, 1, 2, 4, 3, 5)
    blocks = blocks.reshape(n, c, oh, ow, size * size)
    if kind == "avg":
        return blocks.mean(axis=-1).astype(np.float32), None
    arg = blocks.argmax(axis=-1)
    return np.take_along_axis(blocks, arg[..., None], axis=-1)[..., 0], arg


def _unpool(g: np.ndarray, kind: str, size: int, arg, shape) -> np.ndarray:
    n, c, h, w = shape
    oh, ow = g.shape[2], g.shape[3]
    if kind == "avg":
        spread = np.repeat(g[..., None], size * size, axis=-1) / (size * size)
    else:
        spread = np.zeros((n, c, oh, ow, size * size), dtype=np.float32)
        np.put_along_axis(spread, arg[..., None], g[..., None], axis=-1)
    spread = spread.reshape(n, c, oh, ow, size, size).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh * size, ow * size)
    out = np.zeros(shape, dtype=np.float32)
    out[:, :, :oh * size, :ow * size] = spread
    return out


class Stage:
    """Blocks ``first..last`` of a network, as placed on one accelerator."""

    def __init__(self, index: int, blocks: list[Block], is_last: bool) -> None:
        self.index = index
        self.layers = blocks
        self.is_last = is_last  # its outputs feed the loss (the accelerator's LossHead)
        self._contexts: dict[int, list[Cache]] = {}
        # (xs, deltas, samples) per item: ``_held`` from an input-gradient backward until its
        # weight part commits them; ``_pending`` committed, waiting for the next update
        self._held: dict[int, tuple[list[np.ndarray], list[np.ndarray], int]] = {}
        self._pending: dict[int, tuple[list[np.ndarray], list[np.ndarray], int]] = {}
        self.pending_rows = 0  # samples whose (x, delta) pairs wait for the next update
        # what the last update did beyond its own reports: the transfers its compound crossbars
        # ran (one report per layer that transferred) and whether those moved what forwards see
        self.last_transfers: list[OpReport] = []
        self.transfers_changed_weights = False
        self.update_changes_weights = any(block.grid.update_changes_weights for block in blocks)
        # weight stashing (the async_stash reference): a backward reads the weights its forward read
        self.stash_weights = False
        self._stashed: dict[int, list[np.ndarray]] = {}

    def forward(self, item: int, x: np.ndarray) -> tuple[np.ndarray, list[OpReport]]:
        """Forward reads through the stage; keeps what ``backward`` of ``item`` needs."""
        caches, reports = [], []
        a = x
        for block in self.layers:
            a, cache = block.forward(a, block.grid.forward)
            reports.append(block.grid.last_report)
            caches.append(cache)
        self._contexts[item] = caches
        if self.stash_weights:
            self._stashed[item] = [block.grid.get_weights() for block in self.layers]
        return a, reports

    def backward(self, item: int, grad_out: np.ndarray, commit: bool = True) -> tuple[np.ndarray, list[OpReport]]:
        """Backward (transposed) reads through the stage for ``item``.

        ``grad_out`` is dLoss/d(output of this stage) (for the last stage, the loss gradient
        wrt the outputs). Stores the update pairs and returns the error for the stage before;
        with ``commit`` (a full backward, B) they wait for the next update at once, without
        (an input-gradient backward, I) until :meth:`commit` (its W).
        With ``stash_weights`` the transposed reads use the weights the item's forward read.
        """
        caches = self._contexts.pop(item)
        stashed = self._stashed.pop(item) if self.stash_weights else None
        reports, xs, deltas = [], [], []
        g = grad_out
        for k in range(len(self.layers) - 1, -1, -1):
            block = self.layers[k]
            need = k > 0 or self.index > 0
            read = block.grid.backward if stashed is None else partial(block.grid.backward_with, weights=stashed[k])
            g, x_rows, delta = block.backward(g, caches[k], read, need)
            if need:
                reports.append(block.grid.last_report)
            xs.append(x_rows)
            deltas.append(delta)
        self._held[item] = (xs[::-1], deltas[::-1], grad_out.shape[0])
        if commit:
            self.commit(item)
        return g, reports

    def commit(self, item: int) -> None:
        """The weight part of ``item``'s backward: its pairs wait for the next update."""
        pairs = self._pending[item] = self._held.pop(item)
        self.pending_rows += pairs[2]

    def update(self, lr: float, reduction: str = "mean") -> list[OpReport]:
        """Apply every committed (x, delta) pair as sequential rank-one updates, in item order
        (whatever order the backwards ran in, a flush does the same arithmetic).

        ``reduction`` says how the micro-batches held combine: ``mean`` divides ``lr`` by the
        samples applied, so the step follows the gradient of the mean loss over all of them
        (mini-batch SGD); ``sum`` divides it by the samples per micro-batch only, so every
        micro-batch gets the step a lone micro-batch would (a convolution sums its patches
        per sample either way). An update holding one micro-batch is the same under both.
        Compound crossbars may run transfers within it: ``last_transfers`` holds their reports.
        """
        samples = self.pending_rows
        if reduction == "sum":
            samples = samples / len(self._pending)
        reports, transfers = [], []
        changed = False
        pending = self._pending
        held = list(pending.values()) if len(pending) == 1 else [pending[item] for item in sorted(pending)]
        for k, block in enumerate(self.layers):
            xs = np.concatenate([p[0][k] for p in held])
            ds = np.concatenate([p[1][k] for p in held])
            block.grid.update(xs, ds, lr / samples)
            reports.append(block.grid.last_report)
            if block.grid.last_transfer is not None:
                transfers.append(block.grid.last_transfer)
                changed = changed or block.grid.transfer_changed_weights
        self.last_transfers = transfers
        self.transfers_changed_weights = changed
        self._pending.clear()
        self.pending_rows = 0
        return reports


class Network:
    """Analog blocks; initial weights depend only on the seed and the layer sizes."""

    def __init__(self, specs: list[dict], loss: str, device: object, update: object, forward_io: object,
                 backward_io: object, seed: int, init_scale: float = 1.0, tile_size: int = 512) -> None:
        self.loss = loss
        self.layers: list[Block] = []
        init_rng = np.random.default_rng([seed, 0x1A])
        for k, spec in enumerate(specs):
            n_out, n_in = spec["out"], spec["in"]
            grid = make_crossbar(n_out, n_in + 1, tile_size, _layer_seed(seed, k), device=device, update=update,
                                 forward_io=forward_io, backward_io=backward_io)
            bound = init_scale / np.sqrt(n_in + 1)
            grid.set_weights(init_rng.uniform(-bound, bound, (n_out, n_in + 1)))
            self.layers.append(Block(grid, spec.get("kind", "dense"), spec["activation"],
                                     in_shape=spec.get("in_shape"), kernel=spec.get("kernel", 1), stride=spec.get("stride", 1),
                                     padding=spec.get("padding", 0), pool=spec.get("pool"),
                                     pool_size=spec.get("pool_size", 2), flatten=spec.get("flatten", False)))

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def weights(self) -> list[np.ndarray]:
        """The weights [W | b] each layer's forward sees, one (out, in + 1) array per layer."""
        return [block.grid.get_weights() for block in self.layers]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Program every layer with its array of ``weights`` (as :meth:`weights` returns them)."""
        if len(weights) != len(self.layers):
            raise ConfigError(f"weights: {len(weights)} arrays for a network of {len(self.layers)} layers")
        for k, (w, block) in enumerate(zip(weights, self.layers)):
            if np.shape(w) != (block.grid.out_size, block.grid.in_size):
                raise ConfigError(f"weights: layer{k} is {np.shape(w)}, the layer is "
                                  f"({block.grid.out_size}, {block.grid.in_size})")
            block.grid.set_weights(np.asarray(w, dtype=np.float32))

    def stages(self, partition: list[int]) -> list[Stage]:
        """Cut the layers into stages of ``partition[k]`` contiguous layers each."""
        if sum(partition) != self.n_layers or any(p < 1 for p in partition):
            raise ConfigError(f"pipeline.partition: {partition} must be positive layer counts summing "
                              f"to the {self.n_layers} layers")
        stages, start = [], 0
        for k, count in enumerate(partition):
            stages.append(Stage(k, self.layers[start:start + count], k == len(partition) - 1))
            start += count
        return stages

    def evaluate(self, x: np.ndarray, y: np.ndarray, with_grad: bool = False, batch: int = 1024,
                 reads: str = "exact") -> dict:
        """Loss, accuracy and optionally squared full-gradient norm of the current weights.

        ``reads``: ``exact`` reads the weights digitally; ``analog`` runs the forward reads
        through the tiles' IO chain (noise, DAC/ADC, bound management) from each tile's
        evaluation stream. Either way evaluation is outside simulated time: it costs no
        cycles and draws from no training stream. The gradient norm (the theory's metric,
        ``with_grad``) is defined on exact reads only.
        """
        if with_grad and reads != "exact":
            raise ValueError("with_grad: the gradient norm is computed with exact reads")
        weights = self.weights()
        total_loss, correct, grads = 0.0, 0, [np.zeros_like(w, dtype=np.float64) for w in weights]
        for start in range(0, len(x), batch):
            xb, yb = x[start:start + batch].astype(np.float32), y[start:start + batch]
            a, caches = xb, []
            with np.errstate(all="ignore"):
                for w, block in zip(weights, self.layers):
                    read = block.grid.evaluation_read if reads == "analog" else (lambda rows, w=w: rows @ w.T)
                    a, cache = block.forward(a, read)
                    caches.append(cache)
                loss, grad = loss_and_grad(self.loss, a.astype(np.float64), yb)
                total_loss += float(np.sum(loss))
                if self.loss == "cross_entropy":
                    correct += int(np.sum(np.argmax(a, axis=1) == yb))
                if with_grad:
                    g = (grad / len(x)).astype(np.float32)
                    for k in range(len(weights) - 1, -1, -1):
                        g, x_rows, delta = self.layers[k].backward(g, caches[k], lambda d, w=weights[k]: d @ w, k > 0)
                        grads[k] += delta.astype(np.float64).T @ x_rows.astype(np.float64)
        out = {"loss": total_loss / len(x)}
        if self.loss == "cross_entropy":
            out["accuracy"] = correct / len(x)
        if with_grad:
            out["grad_norm_sq"] = float(sum(np.sum(gk * gk) for gk in grads))
        return out


def mlp_specs(sizes: list[int], activation: str) -> list[dict]:
    """Dense blocks of an MLP with layer widths ``sizes`` (input first); the output layer is linear."""
    return [{"kind": "dense", "in": n_in, "out": n_out, "activation": "linear" if k == len(sizes) - 2 else activation}
            for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))]


def specs_from_layers(layers: list[dict], image_shape: tuple | None, n_inputs: int, n_outputs: int) -> list[dict]:
    """Analog blocks from a layer list (conv, pool, flatten, linear, activation), with costs.

    Each conv or linear layer starts a block; activation, pool and flatten attach to the block
    before them. The output layer must have as many units as the data set has outputs.
    """
    specs: list[dict] = []
    shape: tuple = tuple(image_shape) if image_shape else (n_inputs,)
    for i, entry in enumerate(layers):
        where = f"model.layers[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(f"{where}: expected one of {{conv: ...}}, {{pool: ...}}, {{flatten: {{}}}}, "
                              f"{{linear: ...}}, {{activation: NAME}}")
        (kind, opts), = entry.items()
        opts = opts if isinstance(opts, dict) else ({} if opts is None else {"name": opts})
        last = specs[-1] if specs else None
        if kind == "conv":
            if len(shape) != 3:
                raise ConfigError(f"{where}.conv: needs image input; the data set or a flatten before it gives vectors")
            c, h, w = shape
            k, stride, pad = opts.get("kernel", 3), opts.get("stride", 1), opts.get("padding", 0)
            channels = opts.get("channels")
            for key, value in (("channels", channels), ("kernel", k), ("stride", stride)):
                if not isinstance(value, int) or value < 1:
                    raise ConfigError(f"{where}.conv.{key}: must be a positive integer, got {value!r}")
            if not isinstance(pad, int) or pad < 0:
                raise ConfigError(f"{where}.conv.padding: must be a non-negative integer, got {pad!r}")
            oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
            if oh < 1 or ow < 1:
                raise ConfigError(f"{where}.conv.kernel: {k} does not fit the {h}x{w} input with padding {pad}")
            specs.append({"kind": "conv", "in": c * k * k, "out": channels, "activation": "linear", "kernel": k,
                          "stride": stride, "padding": pad, "in_shape": (c, h, w), "patches": oh * ow})
            shape = (channels, oh, ow)
        elif kind == "linear":
            if len(shape) == 3 and last is None:  # the first layer reads the image as its flat vector
                shape = (shape[0] * shape[1] * shape[2],)
            if len(shape) != 1:
                raise ConfigError(f"{where}.linear: needs vector input; add {{flatten: {{}}}} after the convolutions")
            units = opts.get("units")
            if units is None and i == len(layers) - 1:
                units = n_outputs
            if not isinstance(units, int) or units < 1:
                raise ConfigError(f"{where}.linear.units: must be a positive integer, got {units!r}")
            specs.append({"kind": "dense", "in": shape[0], "out": units, "activation": "linear", "patches": 1})
            shape = (units,)
        elif kind == "activation":
            name = opts.get("name")
            if last is None or name not in ACTIVATIONS:
                raise ConfigError(f"{where}.activation: must follow a conv or linear layer and be one of "
                                  f"{', '.join(ACTIVATIONS)}, got {name!r}")
            last["activation"] = name
        elif kind == "pool":
            size, how = opts.get("size", 2), opts.get("kind", "max")
            if last is None or last["kind"] != "conv" or len(shape) != 3 or last.get("pool"):
                raise ConfigError(f"{where}.pool: must follow a conv layer (and its activation)")
            if how not in ("max", "avg") or not isinstance(size, int) or size < 1 or size > min(shape[1:]):
                raise ConfigError(f"{where}.pool: kind max|avg and size 1..{min(shape[1:])}, got {how!r}, {size!r}")
            last["pool"], last["pool_size"] = how, size
            shape = (shape[0], shape[1] // size, shape[2] // size)
        elif kind == "flatten":
            if len(shape) != 3:
                raise ConfigError(f"{where}.flatten: its input is already a vector (flatten follows a conv layer, "
                                  f"or comes first on image data)")
            if last is not None:
                last["flatten"] = True
            shape = (shape[0] * shape[1] * shape[2],)  # first: the image's flat vector, which the data already is
        else:
            raise ConfigError(f"{where}: unknown layer '{kind}'; allowed: conv, pool, flatten, linear, activation")
    if not specs or specs[-1]["kind"] != "dense" or len(shape) != 1:
        raise ConfigError("model.layers: must end with a linear output layer")
    if specs[-1]["out"] != n_outputs:
        raise ConfigError(f"model.layers[-1].linear.units: the output layer needs {n_outputs} units for this data set, "
                          f"got {specs[-1]['out']}")
    if specs[-1]["activation"] != "linear":
        raise ConfigError("model.layers: the output layer takes no activation (the loss applies softmax)")
    return specs


def layer_costs(specs: list[dict]) -> list[float]:
    """Cost of each block for balancing: weights times patches (vectors per sample)."""
    return [float(s["in"] + 1) * s["out"] * s.get("patches", 1) for s in specs]


def _layer_seed(seed: int, layer: int) -> int:
    return int(seed) * 1000 + layer + 1


def balanced_partition(costs: list[float], stages: int) -> list[int]:
    """Split layers with ``costs`` into ``stages`` contiguous groups minimising the largest sum."""
    n = len(costs)
    if stages > n:
        raise ConfigError(f"pipeline.stages: {stages} stages need at least as many layers (the model has {n})")
    prefix = np.concatenate([[0.0], np.cumsum(costs)])
    best = np.full((stages + 1, n + 1), np.inf)
    cut = np.zeros((stages + 1, n + 1), dtype=int)
    best[0, 0] = 0.0
    for s in range(1, stages + 1):
        for end in range(s, n + 1):
            for start in range(s - 1, end):
                value = max(best[s - 1, start], prefix[end] - prefix[start])
                if value < best[s, end]:
                    best[s, end], cut[s, end] = value, start
    sizes, end = [], n
    for s in range(stages, 0, -1):
        start = cut[s, end]
        sizes.append(int(end - start))
        end = int(start)
    return sizes[::-1]
