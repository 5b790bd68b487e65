"""Networks of analog fully connected layers, their digital periphery, and stage partitions.

A layer is one :class:`~aimcsim.tile.AnalogTile` holding [W | b] (the bias is the last
column, driven by a constant input 1, as aihwkit's analog bias) followed by a digital
activation; the last layer feeds the loss. Everything between tiles (activations, loss and
its gradient) runs in the accelerator's periphery, in float32.

A :class:`Stage` is a contiguous run of layers with the per-item state the pipeline needs:
``forward`` keeps each micro-batch's layer inputs until its ``backward``; ``backward``
returns the (x, delta) pairs of the rank-one updates and the error for the stage before.
Weights only change through ``update``; stages never exchange weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError
from .tile import AnalogTile, OpReport

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


@dataclass
class Layer:
    """One analog fully connected layer: tile [W | b] and the activation after it."""

    tile: AnalogTile
    activation: str  # "linear" for the last layer

    @property
    def in_size(self) -> int:
        return self.tile.in_size - 1


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((x.shape[0], 1), dtype=np.float32)], axis=1)


@dataclass
class _Context:
    inputs: list[np.ndarray] = field(default_factory=list)   # layer inputs with bias column
    pre: list[np.ndarray] = field(default_factory=list)      # pre-activations
    post: list[np.ndarray] = field(default_factory=list)     # activations


class Stage:
    """Layers ``first..last`` of a network, as placed on one accelerator."""

    def __init__(self, index: int, layers: list[Layer], is_last: bool, loss: str) -> None:
        self.index = index
        self.layers = layers
        self.is_last = is_last
        self.loss = loss
        self._contexts: dict[int, _Context] = {}
        self._pending: list[tuple[list[np.ndarray], list[np.ndarray]]] = []

    def forward(self, item: int, x: np.ndarray) -> tuple[np.ndarray, list[OpReport]]:
        """Forward reads through the stage; keeps what ``backward`` of ``item`` needs."""
        ctx = _Context()
        reports = []
        a = x
        for layer in self.layers:
            xin = _with_bias(a)
            z = layer.tile.forward(xin)
            reports.append(layer.tile.last_report)
            a = z if layer.activation == "linear" else activate(layer.activation, z)
            ctx.inputs.append(xin)
            ctx.pre.append(z)
            ctx.post.append(a)
        self._contexts[item] = ctx
        return a, reports

    def backward(self, item: int, grad_out: np.ndarray) -> tuple[np.ndarray, list[OpReport]]:
        """Backward (transposed) reads through the stage for ``item``.

        ``grad_out`` is dLoss/d(output of this stage's last layer) after its activation
        (for the last stage, the loss gradient wrt the outputs). Stores the update pairs
        and returns the error for the previous stage.
        """
        ctx = self._contexts.pop(item)
        reports = []
        xs, deltas = [], []
        g = grad_out
        for k in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[k]
            if layer.activation == "linear":
                delta = g
            else:
                delta = (g * activation_grad(layer.activation, ctx.pre[k], ctx.post[k])).astype(np.float32)
            xs.append(ctx.inputs[k])
            deltas.append(delta)
            if k > 0 or self.index > 0:
                g = layer.tile.backward(delta)[:, :-1]
                reports.append(layer.tile.last_report)
        self._pending.append((xs[::-1], deltas[::-1]))
        return g, reports

    def update(self, lr: float) -> list[OpReport]:
        """Apply every stored (x, delta) pair as sequential rank-one updates, in arrival order.

        ``lr`` is divided by the number of rows applied, so one update step follows the
        gradient of the mean loss over them.
        """
        rows = self.pending_rows
        reports = []
        for k, layer in enumerate(self.layers):
            xs = np.concatenate([p[0][k] for p in self._pending])
            ds = np.concatenate([p[1][k] for p in self._pending])
            layer.tile.update(xs, ds, lr / rows)
            reports.append(layer.tile.last_report)
        self._pending.clear()
        return reports

    @property
    def pending_rows(self) -> int:
        """Samples whose (x, delta) pairs wait for the next update."""
        return sum(p[0][0].shape[0] for p in self._pending)


class Network:
    """An MLP of analog layers; initial weights depend only on the seed and the layer sizes."""

    def __init__(self, sizes: list[int], activation: str, loss: str, device: object, update: object,
                 forward_io: object, backward_io: object, seed: int, init_scale: float = 1.0) -> None:
        self.sizes = list(sizes)
        self.loss = loss
        self.layers: list[Layer] = []
        init_rng = np.random.default_rng([seed, 0x1A])
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            tile = AnalogTile(n_out, n_in + 1, device=device, update=update, forward_io=forward_io,
                              backward_io=backward_io, seed=_layer_seed(seed, k))
            bound = init_scale / np.sqrt(n_in + 1)
            tile.set_weights(init_rng.uniform(-bound, bound, (n_out, n_in + 1)))
            act = "linear" if k == len(sizes) - 2 else activation
            self.layers.append(Layer(tile, act))

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def weights(self) -> list[np.ndarray]:
        return [layer.tile.get_weights() for layer in self.layers]

    def stages(self, partition: list[int]) -> list[Stage]:
        """Cut the layers into stages of ``partition[k]`` contiguous layers each."""
        if sum(partition) != self.n_layers or any(p < 1 for p in partition):
            raise ConfigError(f"pipeline.partition: {partition} must be positive layer counts summing "
                              f"to the {self.n_layers} layers")
        stages, start = [], 0
        for k, count in enumerate(partition):
            stages.append(Stage(k, self.layers[start:start + count], k == len(partition) - 1, self.loss))
            start += count
        return stages

    def evaluate(self, x: np.ndarray, y: np.ndarray, with_grad: bool = False) -> dict:
        """Exact (digital) loss, accuracy and optionally squared full-gradient norm of the current weights.

        Evaluation reads the weights without the analog IO chain and outside simulated time,
        so it neither costs cycles nor consumes the tiles' noise streams.
        """
        weights = self.weights()
        acts, pres = [x.astype(np.float32)], []
        a = acts[0]
        for w, layer in zip(weights, self.layers):
            z = _with_bias(a) @ w.T
            pres.append(z)
            a = z if layer.activation == "linear" else activate(layer.activation, z)
            acts.append(a)
        with np.errstate(all="ignore"):
            loss, grad = loss_and_grad(self.loss, a.astype(np.float64), y)
        out = {"loss": float(np.mean(loss))}
        if self.loss == "cross_entropy":
            out["accuracy"] = float(np.mean(np.argmax(a, axis=1) == y))
        if with_grad:
            g = grad / len(x)
            total = 0.0
            for k in range(len(weights) - 1, -1, -1):
                layer = self.layers[k]
                delta = g if layer.activation == "linear" else g * activation_grad(layer.activation, pres[k], acts[k + 1])
                total += float(np.sum((delta.T @ _with_bias(acts[k])) ** 2))
                g = delta @ weights[k][:, :-1]
            out["grad_norm_sq"] = total
        return out


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
