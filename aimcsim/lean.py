"""The lean path of a stage: a chain of one-tile dense layers and activations, read op by op
with the kernels called directly.

A small network spends its time in the Python around its ops, not in them (a digits sample
is about 10^4 multiply-adds): the general path of :class:`aimcsim.network.Stage` walks a
layer graph, a tile grid and a tile's checks for every read. A stage whose layers are a plain
chain (``linear`` layers on one tile each, a one-array tile or a two-array compound, without
a weight mapping and with IO chains that are not ``perfect``, and ``activation`` layers)
takes this path: the same kernels, the same arithmetic in the same order and the same
reports (so results, traces and energies are bit-identical to the general path's), with the
walking done once, when the stage is built. The activations stay numpy's: numba's tanh
differs from numpy's in the last bit for about a third of normally distributed float32
inputs (35 % of 10^8 at scales 0.1 to 24), so a kernel that included them would change every
result.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .errors import ConfigError
from .layers import Activation, Cache, Layer, Linear, activate, activation_grad
from .ops import BACKWARD, FORWARD, OpReport
from .compound_tile import TransferTile
from .crossbar import TileGrid
from .tile import AnalogTile, ReadPath


def _lean_tile(layer: Layer) -> ReadPath | None:
    """The one tile of a linear layer that the lean path can read directly (a one-array tile or
    a two-array compound, both reading through :class:`~aimcsim.tile.ReadPath`), else None."""
    grid = layer.grid
    if type(grid) is not TileGrid or not grid._single:
        return None
    tile = grid.tiles[0][0]
    if type(tile) not in (AnalogTile, TransferTile) or tile.forward_io.perfect or tile.backward_io.perfect:
        return None
    return tile


class LeanChain:
    """Forward and backward of a stage that is a chain of one-tile linear layers and
    activations; :meth:`of` says whether a stage is one."""

    def __init__(self, layers: list[Layer], tiles: list[ReadPath | None], input_needs_grad: bool) -> None:
        self.layers = layers
        self.tiles = tiles
        self.input_needs_grad = input_needs_grad  # the stage's input is not the data
        self.linear = [(layer, tile) for layer, tile in zip(layers, tiles) if tile is not None]
        # layers whose update the lean path fires itself (one-array tiles; compounds' updates,
        # with their transfers, take the crossbar's own path)
        self.direct_update = [type(tile) is AnalogTile for _, tile in self.linear]

    @classmethod
    def of(cls, layers: list[Layer], receives: list[str], sends: list[str], fixed: set[str]) -> LeanChain | None:
        """The lean path of a stage with these layers, or None where it needs the general one."""
        if len(receives) != 1 or len(sends) != 1 or not layers or sends[0] != layers[-1].name:
            return None
        previous = receives[0]
        tiles: list[ReadPath | None] = []
        for layer in layers:
            if tuple(layer.inputs) != (previous,) or layer.name in fixed:
                return None
            if type(layer) is Linear:
                tile = _lean_tile(layer)
                if tile is None:
                    return None
                tiles.append(tile)
            elif type(layer) is Activation and type(layer).report is Layer.report:  # its work is in the reads'
                tiles.append(None)
            else:
                return None
            previous = layer.name
        return cls(layers, tiles, receives[0] not in fixed)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list, list[OpReport]]:
        """(the stage's output, each layer's context, the reads' reports) for the rows ``x``."""
        contexts: list = []
        reports: list[OpReport] = []
        a = x
        for layer, tile in zip(self.layers, self.tiles):
            if tile is None:
                contexts.append(a)
                a = activate(layer.function, a)
                continue
            n, width = a.shape
            rows = np.empty((n, width + 1), dtype=np.float32)  # the inputs and the bias input 1
            rows[:, :width] = a
            rows[:, width] = 1.0
            out, passes = tile._read_rows(tile._weights, rows, False, tile._fwd, False, tile._read_state, "x")
            report = tile.read_report(FORWARD, n, passes, False)
            tile.last_report = layer.grid.last_report = report
            reports.append(report)
            contexts.append(Cache(rows, None, None))
            a = out
        return np.ascontiguousarray(a), contexts, reports

    def backward(self, grad: np.ndarray, contexts: list) -> tuple[np.ndarray | None, list, list, list[OpReport]]:
        """(the gradient of the stage's input or None for the data, each linear layer's input rows
        and deltas in layer order, the transposed reads' reports) from the output gradient."""
        g = grad
        xs: list = []
        deltas: list = []
        reports: list[OpReport] = []
        last = len(self.layers) - 1
        for k in range(last, -1, -1):
            layer, tile, ctx = self.layers[k], self.tiles[k], contexts[k]
            if tile is None:
                g = g * activation_grad(layer.function, ctx, activate(layer.function, ctx))
                continue
            delta = g.astype(g.dtype)
            xs.append(ctx.x)
            deltas.append(delta)
            if k == 0 and not self.input_needs_grad:
                g = None
                continue
            rows = np.ascontiguousarray(delta, dtype=np.float32)
            out, passes = tile._read_rows(tile._weights, rows, True, tile._bwd, False, tile._read_state, "d")
            report = tile.read_report(BACKWARD, rows.shape[0], passes, True)
            tile.last_report = layer.grid.last_report = report
            reports.append(report)
            g = out[:, :-1]
        xs.reverse()
        deltas.reverse()
        return g, xs, deltas, reports

    def update(self, k: int, xs: np.ndarray, ds: np.ndarray, lr: float) -> OpReport:
        """Linear layer k's (in layer order; ``direct_update[k]``) update with the rows (xs, ds)
        (float32, as the lean forward and backward made them): the tile's pulses and its
        once-per-update device step, as :meth:`AnalogTile.update` without re-checking the
        shapes it was built for."""
        layer, tile = self.linear[k]
        if not kernels.all_finite(xs):
            raise ConfigError("x: must be finite (found NaN or inf)")
        if not kernels.all_finite(ds):
            raise ConfigError("d: must be finite (found NaN or inf)")
        tile.fire(np.ascontiguousarray(xs, dtype=np.float32), np.ascontiguousarray(ds, dtype=np.float32), float(lr))
        tile.device_step()
        layer.grid.last_report = tile.last_report
        return tile.last_report
