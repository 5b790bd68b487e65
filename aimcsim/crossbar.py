"""The crossbar protocol, the factory that builds crossbars from a device config, and TileGrid.

A **crossbar** is anything that holds weights and does the hardware's operations: a forward
read, a transposed read, an in-place pulsed update, programming and reading back its
weights, and a report of what each operation did (``last_report``, an
:class:`~aimcsim.ops.OpReport` that the cost model prices). :class:`Crossbar` states that
interface; :class:`~aimcsim.tile.AnalogTile` (one array), the compound tiles of
:mod:`aimcsim.compound_tile` (two arrays, or an array and a digital accumulator) and
:class:`TileGrid` (a layer split over several tiles) implement it. A compound's ``update`` may
run transfers; it reports them in ``last_transfer`` (op T) apart from the update itself.

Layers never name a tile class: they call :func:`make_crossbar`, which builds a
:class:`TileGrid` whose tiles come from :data:`TILE_KINDS`, a registry keyed by the device
config's ``type``. A new kind of crossbar is one class plus one :func:`register_tile_kind`
call; split layers, convolutions and every schedule then take it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

import numpy as np

from .compound_tile import MixedPrecisionTile, TransferTile
from .compounds import TRANSFER_TYPES, parse_device
from .devices import DEVICE_TYPES
from .errors import ConfigError
from .ops import BACKWARD, FORWARD, TRANSFER, UPDATE, OpReport
from .rng import seed_key
from .tile import AnalogTile


@runtime_checkable
class Crossbar(Protocol):
    """What the rest of the simulator may do with weights held in analog arrays.

    Vectors come as one row or a batch of rows; ``update`` follows aihwkit's sign,
    E[dW] = -lr d x^T, rows applied in order. Every operation leaves ``last_report``; an
    update also leaves ``last_transfer``, the report of the transfers it ran (None: none; a
    kind that never transfers may leave the three transfer attributes out).
    ``update_changes_weights`` says whether an update moves what the reads see (a compound
    whose reads see only its slow array: no), ``transfer_changed_weights`` whether the last
    update's transfers did; the tracer's weight version counts exactly those changes.
    """

    out_size: int
    in_size: int
    last_report: OpReport | None
    last_transfer: OpReport | None
    update_changes_weights: bool
    transfer_changed_weights: bool

    def forward(self, x: np.ndarray) -> np.ndarray: ...

    def backward(self, d: np.ndarray) -> np.ndarray: ...

    def update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None: ...

    def evaluation_read(self, values: np.ndarray, transposed: bool = False) -> np.ndarray: ...

    def backward_with(self, d: np.ndarray, weights: np.ndarray) -> np.ndarray: ...

    def get_weights(self) -> np.ndarray: ...

    def set_weights(self, weights: np.ndarray) -> None: ...


TileFactory = Callable[..., Crossbar]
#: device ``type`` -> the class (or factory) of one tile with that device:
#: called as ``factory(out_size, in_size, device=..., update=..., forward_io=..., backward_io=..., seed=...)``.
TILE_KINDS: dict[str, TileFactory] = {}


def register_tile_kind(device_types: Iterable[str], factory: TileFactory) -> None:
    """Make ``factory`` build the tiles of every device type in ``device_types``."""
    for kind in device_types:
        TILE_KINDS[kind] = factory


register_tile_kind(DEVICE_TYPES, AnalogTile)
register_tile_kind(TRANSFER_TYPES, TransferTile)
register_tile_kind(["mixed_precision_compound"], MixedPrecisionTile)


def make_tile(out_size: int, in_size: int, device: object = None, seed: int = 0, **params) -> Crossbar:
    """One tile of the kind the device config names (``device.type``)."""
    device = parse_device(device, "device")
    factory = TILE_KINDS.get(device.type)
    if factory is None:
        raise ConfigError(f"device.type: no crossbar kind is registered for {device.type!r}; "
                          f"registered: {', '.join(sorted(TILE_KINDS))}")
    return factory(out_size, in_size, device=device, seed=seed, **params)


def make_crossbar(out_size: int, in_size: int, tile_size: int, seed: int, **params) -> TileGrid:
    """The crossbar of one layer: a grid of tiles of at most ``tile_size`` square, built by
    :func:`make_tile` from ``params`` (device, update, forward_io, backward_io)."""
    return TileGrid(out_size, in_size, tile_size, seed, **params)


def tile_seed(layer_seed: int, row: int, col: int, single: bool) -> int:
    """The seed of tile (row, col) of a layer: the layer's own for an unsplit layer, else a
    63-bit hash of (layer seed, row, col), so no two tiles of any grid share random streams."""
    if single:
        return int(layer_seed)
    return int(seed_key(layer_seed, 0x711E, row, col)) >> 1


def combine_reports(op: str, reports: list[OpReport], blocks_summed: int = 1, width: int = 0) -> OpReport:
    """One layer op from its tiles' reports: tiles work in parallel, so for time the slowest
    counts; conversions, cells, pulses and line slots add up over the tiles.

    ``blocks_summed`` tiles contribute to each of the ``width`` outputs, so the periphery adds
    ``blocks_summed - 1`` partial outputs per vector; its digital work is one operation per
    layer output (activation, derivative or loss element) plus one per partial-output addition.
    Without a ``width`` (updates, transfers) the digital work is what the tiles report.
    """
    if len(reports) == 1 and blocks_summed == 1:  # one tile: its report is the layer's
        r = reports[0]
        if r.op == op and r.partial_sums == 0 and (not width or r.digital == r.vectors * width):
            return r
    vectors = max(r.vectors for r in reports)
    return OpReport(op, vectors, passes=max(r.passes for r in reports),
                    pulse_slots=max(r.pulse_slots for r in reports), max_bl=max(r.max_bl for r in reports),
                    coincidences=sum(r.coincidences for r in reports),
                    partial_sums=vectors * (blocks_summed - 1),
                    dac=sum(r.dac for r in reports), adc=sum(r.adc for r in reports),
                    cells=sum(r.cells for r in reports), line_slots=sum(r.line_slots for r in reports),
                    digital=vectors * width * blocks_summed if width else sum(r.digital for r in reports))


class TileGrid:
    """A weight matrix (out x in) on ceil(out/T) x ceil(in/T) tiles of at most T x T.

    Tile (r, c) holds rows r*T.. and columns c*T.. (aihwkit's mapping); a read drives every
    tile at once and the periphery adds the column blocks' partial outputs.
    """

    def __init__(self, out_size: int, in_size: int, tile_size: int, seed: int, **tile_params) -> None:
        self.out_size, self.in_size, self.tile_size = out_size, in_size, tile_size
        self.row_edges = list(range(0, out_size, tile_size)) + [out_size]
        self.col_edges = list(range(0, in_size, tile_size)) + [in_size]
        single = len(self.row_edges) == 2 and len(self.col_edges) == 2
        self._single = single  # one tile holds the layer: reads and updates go straight to it
        self.tiles = [[make_tile(r1 - r0, c1 - c0, seed=tile_seed(seed, ri, ci, single), **tile_params)
                       for ci, (c0, c1) in enumerate(zip(self.col_edges[:-1], self.col_edges[1:]))]
                      for ri, (r0, r1) in enumerate(zip(self.row_edges[:-1], self.row_edges[1:]))]
        self.last_report: OpReport | None = None
        self.last_transfer: OpReport | None = None
        self.update_changes_weights = any(getattr(t, "update_changes_weights", True) for row in self.tiles for t in row)
        self.transfer_changed_weights = False

    @property
    def n_tiles(self) -> int:
        return sum(len(row) for row in self.tiles)

    def _cols(self, ci: int) -> slice:
        return slice(self.col_edges[ci], self.col_edges[ci + 1])

    def _rows(self, ri: int) -> slice:
        return slice(self.row_edges[ri], self.row_edges[ri + 1])

    def forward(self, x: np.ndarray) -> np.ndarray:
        """y = W x for a batch of rows (n, in_size)."""
        return self._read(x, transposed=False)

    def backward(self, d: np.ndarray) -> np.ndarray:
        """z = W^T d for a batch of rows (n, out_size)."""
        return self._read(d, transposed=True)

    def evaluation_read(self, values: np.ndarray, transposed: bool = False) -> np.ndarray:
        """Every tile's evaluation read (its own noise stream; no reports), partial outputs added."""
        return self._read(values, transposed, evaluation=True)

    def backward_with(self, d: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """z = weights^T d through every tile's backward IO chain, each tile reading its block of
        ``weights`` (a stashed copy of the (out, in) matrix) instead of its own."""
        return self._read(d, True, stash=weights)

    def _read(self, values: np.ndarray, transposed: bool, evaluation: bool = False,
              stash: np.ndarray | None = None) -> np.ndarray:
        """Every tile reads its slice of ``values``; partial outputs of a split layer add up.

        Forward: tile (ri, ci) reads input columns ci into output rows ri; transposed, the
        other way round. Partial sums are counted along the dimension that is split.
        """
        if self._single:
            tile = self.tiles[0][0]
            if evaluation:
                return tile.evaluation_read(values, transposed)
            if stash is not None:
                out = tile.backward_with(values, stash)
            else:
                out = (tile.backward if transposed else tile.forward)(values)
            self.last_report = combine_reports(BACKWARD if transposed else FORWARD, [tile.last_report], 1,
                                               self.in_size if transposed else self.out_size)
            return out
        out = np.zeros((values.shape[0], self.in_size if transposed else self.out_size), dtype=np.float32)
        reports = []
        for ri, row in enumerate(self.tiles):
            for ci, tile in enumerate(row):
                source, target = (self._rows(ri), self._cols(ci)) if transposed else (self._cols(ci), self._rows(ri))
                block = np.ascontiguousarray(values[:, source])
                if evaluation:
                    out[:, target] += tile.evaluation_read(block, transposed)
                elif stash is not None:
                    out[:, target] += tile.backward_with(block, stash[self._rows(ri), self._cols(ci)])
                    reports.append(tile.last_report)
                else:
                    out[:, target] += (tile.backward if transposed else tile.forward)(block)
                    reports.append(tile.last_report)
        if evaluation:
            return out
        edges = self.row_edges if transposed else self.col_edges
        self.last_report = combine_reports(BACKWARD if transposed else FORWARD, reports, len(edges) - 1,
                                           self.in_size if transposed else self.out_size)
        return out

    def update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        """Each tile applies its block of the rank-one updates of the rows (x, d), and runs the
        transfers that come due (the tiles work in parallel)."""
        if self._single:  # one tile holds the layer: its reports are the layer's
            tile = self.tiles[0][0]
            tile.update(x, d, lr)
            self.last_report = combine_reports(UPDATE, [tile.last_report])
            transfer = getattr(tile, "last_transfer", None)
            self.last_transfer = None if transfer is None else combine_reports(TRANSFER, [transfer])
            self.transfer_changed_weights = transfer is not None and tile.transfer_changed_weights
            return
        reports, transfers = [], []
        changed = False
        for ri, row in enumerate(self.tiles):
            for ci, tile in enumerate(row):
                tile.update(np.ascontiguousarray(x[:, self._cols(ci)]), np.ascontiguousarray(d[:, self._rows(ri)]), lr)
                reports.append(tile.last_report)
                if getattr(tile, "last_transfer", None) is not None:
                    transfers.append(tile.last_transfer)
                    changed = changed or tile.transfer_changed_weights
        self.last_report = combine_reports(UPDATE, reports)
        self.last_transfer = combine_reports(TRANSFER, transfers) if transfers else None
        self.transfer_changed_weights = changed

    def get_weights(self) -> np.ndarray:
        """The whole (out_size, in_size) matrix, assembled from the tiles."""
        return np.block([[t.get_weights() for t in row] for row in self.tiles])

    def set_weights(self, w: np.ndarray) -> None:
        """Program every tile with its block of ``w`` (clipped to each device's bounds)."""
        for ri, row in enumerate(self.tiles):
            for ci, tile in enumerate(row):
                tile.set_weights(w[self._rows(ri), self._cols(ci)])
