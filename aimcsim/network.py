"""Networks of typed layers on analog tiles, their stages, and the loss.

A :class:`Network` holds the layers of a graph (:mod:`aimcsim.graph`, kinds in
:mod:`aimcsim.layers`) in topological order; each analog layer is a crossbar holding [W | b]
(built by :func:`~aimcsim.crossbar.make_crossbar` from the device config), digital layers run
in the accelerator's periphery. The last layer feeds the loss (:class:`LossHead`).

A :class:`Stage` is a contiguous run of the layers with the per-item state the pipeline
needs: ``forward`` takes what crosses the cut before it (the activation, and every tensor a
later layer of the stage or beyond still reads: a skip connection's) and keeps each
micro-batch's contexts until its ``backward``; ``backward`` returns the gradients of what
crossed in, and keeps the (x, delta) pairs of the rank-one updates (and the gradients of
digital parameters) for ``update``. Weights only change through ``update``; stages never
exchange weights. The partition counts analog layers; a digital layer goes with the analog
layer it follows.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from .crossbar import make_crossbar
from .errors import ConfigError
from .graph import DATA, build_layers
from .kernels import all_finite
from .layers import Layer
from .lean import LeanChain
from .mapping import MappingConfig, mapped
from .ops import UPDATE, OpReport

LOSSES = ("cross_entropy", "mse")


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


class Tensors(tuple):
    """Several tensors crossing a cut together (an activation and the skip tensors a later stage
    reads), in a fixed order; ``size`` counts their elements, as a link charges them."""

    __slots__ = ()

    @property
    def size(self) -> int:
        return sum(t.size for t in self)


def _pack(arrays: list[np.ndarray]):
    return arrays[0] if len(arrays) == 1 else Tensors(arrays)


def _unpack(payload) -> list[np.ndarray]:
    return list(payload) if isinstance(payload, Tensors) else [payload]


def run_forward(layers: list[Layer], tensors: dict, reads: dict, training: bool, keep: bool = True) -> list:
    """Run ``layers`` on ``tensors`` (name -> array, filled with every layer's output);
    ``reads`` maps an analog layer's name to its read. Returns each layer's context; with
    ``keep`` false (an evaluation without gradient) none, and a tensor is dropped after its
    last reader, so memory holds a few layers' tensors, not all of them."""
    contexts = []
    last_reader = {} if keep else {name: i for i, layer in enumerate(layers) for name in layer.inputs}
    for i, layer in enumerate(layers):
        y, ctx = layer.forward([tensors[n] for n in layer.inputs], reads.get(layer.name), training)
        tensors[layer.name] = y
        if keep:
            contexts.append(ctx)
            continue
        for name in layer.inputs:
            if last_reader.get(name) == i:
                del tensors[name]
    return contexts


def constants(layers: list[Layer]) -> set[str]:
    """The tensors that depend on nothing trainable: the data, and what parameter-free digital
    layers make of them alone (a flatten of the data). Nobody needs their gradients."""
    fixed = {DATA}
    for layer in layers:
        if not layer.analog and not layer.params and all(name in fixed for name in layer.inputs):
            fixed.add(layer.name)
    return fixed


def run_backward(layers: list[Layer], contexts: list, grads: dict, reads_t: dict,
                 on_read: Callable[[Layer], None] | None = None, fixed: set[str] = frozenset({DATA})) -> dict:
    """Backward through ``layers`` (reversed) from ``grads`` (name -> gradient of what they
    gave, summed over readers); returns each layer's update (analog: (x rows, delta); digital
    parameters: their gradients) by name. ``grads`` ends holding the gradients of what the
    layers read from outside them, except of ``fixed`` tensors (:func:`constants`: nobody
    needs them). ``on_read(layer)`` is called after an analog layer's transposed read."""
    updates = {}
    for layer, ctx in zip(reversed(layers), reversed(contexts)):
        if layer.name in fixed:
            continue
        g = grads.pop(layer.name)
        need = [name not in fixed for name in layer.inputs]
        grads_in, update = layer.backward(g, ctx, reads_t.get(layer.name), need)
        if layer.analog and need[0] and on_read is not None:
            on_read(layer)
        if update is not None:
            updates[layer.name] = update
        for name, gi in zip(layer.inputs, grads_in):
            if gi is not None:
                grads[name] = grads[name] + gi if name in grads else gi
    return updates


class Stage:
    """Layers ``first..last`` of a network, as placed on one accelerator.

    ``receives``: the names of the tensors crossing the cut before it (the data on the first
    stage); ``sends``: those crossing the cut after it, in order (the network's output on the
    last stage).
    """

    def __init__(self, index: int, layers: list[Layer], receives: list[str], sends: list[str], is_last: bool,
                 fixed: set[str] = frozenset({DATA})) -> None:
        self.index = index
        self.fixed = fixed  # tensors whose gradients nobody needs (the data, ...)
        self.all_layers = layers
        self.layers = [layer for layer in layers if layer.analog]  # the crossbars, in order
        self.digital_params = [layer for layer in layers if layer.params]
        self.receives, self.sends = receives, sends
        self.is_last = is_last  # its outputs feed the loss (the accelerator's LossHead)
        self._contexts: dict[int, list] = {}
        # (xs, deltas, samples, parameter gradients) per item: ``_held`` from an input-gradient
        # backward until its weight part commits them; ``_pending`` committed, waiting for the next update
        self._held: dict[int, tuple] = {}
        self._pending: dict[int, tuple] = {}
        self.pending_rows = 0  # samples whose (x, delta) pairs wait for the next update
        # what the last update did beyond its own reports: the transfers its compound crossbars
        # ran (one report per layer that transferred) and whether those moved what forwards see
        self.last_transfers: list[OpReport] = []
        self.transfers_changed_weights = False
        self.update_changes_weights = any(layer.grid.update_changes_weights for layer in self.layers)
        # weight stashing (the async_stash reference): a backward reads the weights its forward read
        self.stash_weights = False
        self._stashed: dict[int, list[np.ndarray]] = {}
        self._reads = {layer.name: layer.grid.forward for layer in self.layers}
        self._reads_t = {layer.name: layer.grid.backward for layer in self.layers}
        # a chain of one-tile dense layers and activations reads op by op without the graph walk
        self._lean = LeanChain.of(layers, receives, sends, fixed)

    def forward(self, item: int, x) -> tuple[object, list[OpReport]]:
        """Forward reads through the stage; keeps what ``backward`` of ``item`` needs."""
        if self._lean is not None and not self.stash_weights:
            out, self._contexts[item], reports = self._lean.forward(x)
            return out, reports
        tensors = dict(zip(self.receives, _unpack(x)))
        contexts = run_forward(self.all_layers, tensors, self._reads, True)
        self._contexts[item] = contexts
        reports = []
        for layer, ctx in zip(self.all_layers, contexts):
            report = layer.grid.last_report if layer.analog else layer.report("F", ctx)
            if report is not None:
                reports.append(report)
        if self.stash_weights:
            self._stashed[item] = [layer.grid.get_weights() for layer in self.layers]
        return _pack([np.ascontiguousarray(tensors[name]) for name in self.sends]), reports

    def backward(self, item: int, grad_out, commit: bool = True) -> tuple[object, list[OpReport]]:
        """Backward (transposed) reads through the stage for ``item``.

        ``grad_out`` is dLoss/d(what the stage sent) (for the last stage, the loss gradient
        wrt the outputs). Stores the update pairs and returns the gradients of what the stage
        received (None on the first stage: nobody needs the data's); with ``commit`` (a full
        backward, B) they wait for the next update at once, without (an input-gradient
        backward, I) until :meth:`commit` (its W).
        With ``stash_weights`` the transposed reads use the weights the item's forward read.
        """
        contexts = self._contexts.pop(item)
        if self._lean is not None and not self.stash_weights:
            back, xs, deltas, reports = self._lean.backward(grad_out, contexts)
            self._held[item] = (xs, deltas, grad_out.shape[0], [])
            if commit:
                self.commit(item)
            return back, reports
        reads_t = self._reads_t
        if self.stash_weights:
            stashed = self._stashed.pop(item)
            reads_t = {layer.name: partial(layer.grid.backward_with, weights=w) for layer, w in zip(self.layers, stashed)}
        grads = dict(zip([name for name in self.sends if name not in self.fixed], _unpack(grad_out)))
        reports: list[OpReport] = []
        digital = [(layer, ctx) for layer, ctx in zip(self.all_layers, contexts) if not layer.analog]
        updates = run_backward(self.all_layers, contexts, grads, reads_t,
                               lambda layer: reports.append(layer.grid.last_report), self.fixed)
        for layer, ctx in reversed(digital):
            report = layer.report("B", ctx)
            if report is not None:
                reports.append(report)
        xs = [updates[layer.name][0] for layer in self.layers]
        deltas = [updates[layer.name][1] for layer in self.layers]
        params = [updates[layer.name] for layer in self.digital_params]
        samples = _unpack(grad_out)[0].shape[0]
        self._held[item] = (xs, deltas, samples, params)
        if commit:
            self.commit(item)
        back = [grads[name] for name in self.receives if name not in self.fixed]  # nobody needs the data's
        return (_pack(back) if back else None), reports

    def commit(self, item: int) -> None:
        """The weight part of ``item``'s backward: its pairs wait for the next update."""
        pairs = self._pending[item] = self._held.pop(item)
        self.pending_rows += pairs[2]

    def update(self, lr: float, reduction: str = "mean") -> list[OpReport]:
        """Apply every committed (x, delta) pair as sequential rank-one updates, in item order
        (whatever order the backwards ran in, a flush does the same arithmetic), and step the
        digital parameters (a norm's scale and shift) by their summed gradients.

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
        for k, layer in enumerate(self.layers):
            if len(held) == 1:
                xs, ds = held[0][0][k], held[0][1][k]
            else:
                xs = np.concatenate([p[0][k] for p in held])
                ds = np.concatenate([p[1][k] for p in held])
            if self._lean is not None and self._lean.direct_update[k]:
                reports.append(self._lean.update(k, xs, ds, lr / samples))
                continue
            layer.grid.update(xs, ds, lr / samples)
            reports.append(layer.grid.last_report)
            if layer.grid.last_transfer is not None:
                transfers.append(layer.grid.last_transfer)
                changed = changed or layer.grid.transfer_changed_weights
        for k, layer in enumerate(self.digital_params):
            for j, param in enumerate(layer.params):
                grad = held[0][3][k][j].astype(np.float64)
                for p in held[1:]:
                    grad = grad + p[3][k][j]
                param -= (lr / samples * grad).astype(param.dtype)
            reports.append(OpReport(UPDATE, 0, digital=sum(p.size for p in layer.params)))
        self.last_transfers = transfers
        self.transfers_changed_weights = changed
        self._pending.clear()
        self.pending_rows = 0
        return reports


def build_network(config, data) -> "Network":
    """The network a config describes, for a data set's shapes (its weights depend only on the
    seed and the layer sizes)."""
    layers = build_layers(config.model, data.image_shape, data.n_inputs, data.n_outputs)
    return Network(layers, config.model.loss, device=config.device_params(), update=config.update_params(),
                   forward_io=config.forward_io(), backward_io=config.backward_io(), seed=config.seed,
                   init_scale=config.model.init_scale, tile_size=config.model.tile_size, mapping=config.mapping)


class Network:
    """Typed layers (:mod:`aimcsim.layers`) with a crossbar per analog layer; initial weights
    depend only on the seed and the layer sizes."""

    def __init__(self, layers: list[Layer], loss: str, device: object, update: object, forward_io: object,
                 backward_io: object, seed: int, init_scale: float = 1.0, tile_size: int = 512,
                 mapping: MappingConfig | None = None) -> None:
        self.loss = loss
        self.all_layers = layers
        self.layers: list[Layer] = [layer for layer in layers if layer.analog]  # the crossbars, in order
        init_rng = np.random.default_rng([seed, 0x1A])
        for k, layer in enumerate(self.layers):
            n_out, n_in = layer.units, layer.n_in
            grid = mapped(make_crossbar(n_out, n_in + 1, tile_size, _layer_seed(seed, k), device=device,
                                        update=update, forward_io=forward_io, backward_io=backward_io), mapping)
            bound = init_scale / np.sqrt(n_in + 1)
            grid.set_weights(init_rng.uniform(-bound, bound, (n_out, n_in + 1)))
            layer.grid = grid

    @property
    def n_layers(self) -> int:
        """Analog layers (what a partition counts)."""
        return len(self.layers)

    def weights(self) -> list[np.ndarray]:
        """The weights [W | b] each analog layer's forward sees, one (out, in + 1) array per layer."""
        return [layer.grid.get_weights() for layer in self.layers]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Program every analog layer with its array of ``weights`` (as :meth:`weights` returns them)."""
        if len(weights) != len(self.layers):
            raise ConfigError(f"weights: {len(weights)} arrays for a network of {len(self.layers)} layers")
        for k, (w, layer) in enumerate(zip(weights, self.layers)):
            if np.shape(w) != (layer.grid.out_size, layer.grid.in_size):
                raise ConfigError(f"weights: layer{k} is {np.shape(w)}, the layer is "
                                  f"({layer.grid.out_size}, {layer.grid.in_size})")
            layer.grid.set_weights(np.asarray(w, dtype=np.float32))

    def stages(self, partition: list[int]) -> list[Stage]:
        """Cut the layers into stages of ``partition[k]`` contiguous analog layers each (with
        the digital layers that follow them; those before the first analog layer go first)."""
        if sum(partition) != self.n_layers or any(p < 1 for p in partition):
            raise ConfigError(f"pipeline.partition: {partition} must be positive layer counts summing "
                              f"to the {self.n_layers} layers")
        analog_at = [i for i, layer in enumerate(self.all_layers) if layer.analog]
        bounds, count = [0], 0
        for size in partition[:-1]:
            count += size
            bounds.append(analog_at[count])
        bounds.append(len(self.all_layers))
        readers: dict[str, int] = {}  # name -> index of its last reader
        for i, layer in enumerate(self.all_layers):
            for name in layer.inputs:
                readers[name] = i
        out_name = self.all_layers[-1].name
        fixed = constants(self.all_layers)
        stages = []
        for k in range(len(partition)):
            lo, hi = bounds[k], bounds[k + 1]
            before = [DATA] + [layer.name for layer in self.all_layers[:lo]]
            receives = [name for name in before if readers.get(name, -1) >= lo] if k > 0 else [DATA]
            upto = before + [layer.name for layer in self.all_layers[lo:hi]]
            sends = ([name for name in upto if readers.get(name, -1) >= hi]
                     if k < len(partition) - 1 else [out_name])
            stages.append(Stage(k, self.all_layers[lo:hi], receives, sends, k == len(partition) - 1, fixed))
        return stages

    def evaluate(self, x: np.ndarray, y: np.ndarray, with_grad: bool = False, batch: int | None = None,
                 reads: str = "exact") -> dict:
        """Loss, accuracy and optionally squared full-gradient norm of the current weights.

        ``reads``: ``exact`` reads the weights digitally; ``analog`` runs the forward reads
        through the tiles' IO chain (noise, DAC/ADC, bound management) from each tile's
        evaluation stream. Either way evaluation is outside simulated time: it costs no
        cycles and draws from no training stream, and a norm uses its running statistics.
        The gradient norm (the theory's metric, ``with_grad``) is defined on exact reads only.
        The data are taken in chunks of ``batch`` samples (default: as many as keep the
        chunk's tensors within :data:`EVAL_BYTES`).
        """
        if with_grad and reads != "exact":
            raise ValueError("with_grad: the gradient norm is computed with exact reads")
        weights = self.weights()
        batch = batch or self.eval_batch(with_grad)
        exact = {layer.name: (lambda rows, w=w: rows @ w.T) for layer, w in zip(self.layers, weights)}
        exact_t = {layer.name: (lambda d, w=w: d @ w) for layer, w in zip(self.layers, weights)}
        analog = {layer.name: layer.grid.evaluation_read for layer in self.layers}
        total_loss, correct, grads = 0.0, 0, [np.zeros_like(w, dtype=np.float64) for w in weights]
        out_name = self.all_layers[-1].name
        for start in range(0, len(x), batch):
            xb, yb = x[start:start + batch].astype(np.float32), y[start:start + batch]
            tensors = {DATA: xb}
            with np.errstate(all="ignore"):
                contexts = run_forward(self.all_layers, tensors, analog if reads == "analog" else exact, False,
                                       keep=with_grad)
                a = tensors[out_name]
                loss, grad = loss_and_grad(self.loss, a.astype(np.float64), yb)
                total_loss += float(np.sum(loss))
                if self.loss == "cross_entropy":
                    correct += int(np.sum(np.argmax(a, axis=1) == yb))
                if with_grad:
                    g = {out_name: (grad / len(x)).astype(np.float32)}
                    updates = run_backward(self.all_layers, contexts, g, exact_t, fixed=constants(self.all_layers))
                    for k, layer in enumerate(self.layers):
                        x_rows, delta = updates[layer.name]
                        grads[k] += delta.astype(np.float64).T @ x_rows.astype(np.float64)
        out = {"loss": total_loss / len(x)}
        if self.loss == "cross_entropy":
            out["accuracy"] = correct / len(x)
        if with_grad:
            out["grad_norm_sq"] = float(sum(np.sum(gk * gk) for gk in grads))
        return out

    def eval_batch(self, with_grad: bool) -> int:
        """Samples per evaluation chunk: at most 1024, and few enough that the chunk's tensors
        (every layer's output and a convolution's patch rows; all of them kept for the
        gradient) stay within :data:`EVAL_BYTES`."""
        sizes = []
        for layer in self.all_layers:
            elements = int(np.prod(layer.out_shape))
            if layer.analog:
                elements += layer.patches * (layer.n_in + 1) * (2 if with_grad else 1)
            sizes.append(elements * 4)
        per_sample = sum(sizes) if with_grad else 2 * max(sizes)
        return int(max(1, min(1024, EVAL_BYTES // max(per_sample, 1))))


#: the memory an evaluation chunk may hold (bytes)
EVAL_BYTES = 64 * 2**20


def layer_costs(layers: list[Layer]) -> list[float]:
    """Cost of each analog layer for balancing: weights times patches (vectors per sample)."""
    return [float(layer.n_in + 1) * layer.units * layer.patches for layer in layers if layer.analog]


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
