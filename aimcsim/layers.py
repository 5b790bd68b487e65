"""Analog layers mapped onto tiles, and the digital operations between them.

An analog layer holds a weight matrix [W | b] (out x in+1, the bias driven by a constant 1)
on one tile, or on a grid of tiles when it is larger than ``tile_size`` in either dimension
(aihwkit's mapping): tile (r, c) holds rows r*T.. and columns c*T..; a read drives every
tile of the grid at once and the periphery adds the column blocks' partial outputs, so the
timing charges a read once per vector (tiles work in parallel) plus the digital sum.

A convolution is the same layer applied to patches: the kernel is an (out_channels x
in_channels*kh*kw) crossbar, each output pixel is one analog read of its input patch, the
backward one transposed read per patch, and the update one rank-one update per patch
(aihwkit's semantics for convolutions). Pooling, activations and flattening are digital.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tile import AnalogTile, OpReport


def combine_reports(op: str, reports: list[OpReport], blocks_summed: int = 1) -> OpReport:
    """One layer op from its tiles' reports: tiles work in parallel, so the slowest counts.

    ``blocks_summed`` tiles contribute to each output, so the periphery adds
    ``blocks_summed - 1`` partial outputs per vector.
    """
    vectors = max(r.vectors for r in reports)
    return OpReport(op, vectors, passes=max(r.passes for r in reports),
                    pulse_slots=max(r.pulse_slots for r in reports), max_bl=max(r.max_bl for r in reports),
                    coincidences=sum(r.coincidences for r in reports),
                    partial_sums=vectors * (blocks_summed - 1))


class TileGrid:
    """A weight matrix (out x in) on ceil(out/T) x ceil(in/T) tiles of at most T x T."""

    def __init__(self, out_size: int, in_size: int, tile_size: int, seed: int, **tile_kwargs) -> None:
        self.out_size, self.in_size, self.tile_size = out_size, in_size, tile_size
        self.row_edges = list(range(0, out_size, tile_size)) + [out_size]
        self.col_edges = list(range(0, in_size, tile_size)) + [in_size]
        single = len(self.row_edges) == 2 and len(self.col_edges) == 2
        self.tiles = [[AnalogTile(r1 - r0, c1 - c0, seed=seed if single else seed * 131 + 7 * ri + ci + 1,
                                  **tile_kwargs)
                       for ci, (c0, c1) in enumerate(zip(self.col_edges[:-1], self.col_edges[1:]))]
                      for ri, (r0, r1) in enumerate(zip(self.row_edges[:-1], self.row_edges[1:]))]
        self.last_report: OpReport | None = None

    @property
    def n_tiles(self) -> int:
        return sum(len(row) for row in self.tiles)

    def _cols(self, ci: int) -> slice:
        return slice(self.col_edges[ci], self.col_edges[ci + 1])

    def _rows(self, ri: int) -> slice:
        return slice(self.row_edges[ri], self.row_edges[ri + 1])

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._read(x, transposed=False)

    def backward(self, d: np.ndarray) -> np.ndarray:
        return self._read(d, transposed=True)

    def _read(self, values: np.ndarray, transposed: bool) -> np.ndarray:
        """Every tile reads its slice of ``values``; partial outputs of a split layer add up.

        Forward: tile (ri, ci) reads input columns ci into output rows ri; transposed, the
        other way round. Partial sums are counted along the dimension that is split.
        """
        out = np.zeros((values.shape[0], self.in_size if transposed else self.out_size), dtype=np.float32)
        reports = []
        for ri, row in enumerate(self.tiles):
            for ci, tile in enumerate(row):
                if transposed:
                    source, target, read = self._rows(ri), self._cols(ci), tile.backward
                else:
                    source, target, read = self._cols(ci), self._rows(ri), tile.forward
                out[:, target] += read(np.ascontiguousarray(values[:, source]))
                reports.append(tile.last_report)
        edges = self.row_edges if transposed else self.col_edges
        self.last_report = combine_reports("B" if transposed else "F", reports, len(edges) - 1)
        return out

    def update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        reports = []
        for ri, row in enumerate(self.tiles):
            for ci, tile in enumerate(row):
                tile.update(np.ascontiguousarray(x[:, self._cols(ci)]), np.ascontiguousarray(d[:, self._rows(ri)]), lr)
                reports.append(tile.last_report)
        self.last_report = combine_reports("U", reports)

    def get_weights(self) -> np.ndarray:
        return np.block([[t.get_weights() for t in row] for row in self.tiles])

    def set_weights(self, w: np.ndarray) -> None:
        for ri, row in enumerate(self.tiles):
            for ci, tile in enumerate(row):
                tile.set_weights(w[self._rows(ri), self._cols(ci)])


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


def col2im(cols: np.ndarray, shape: tuple[int, int, int, int], kh: int, kw: int, stride: int,
           padding: int) -> np.ndarray:
    """Adjoint of :func:`im2col`: add patch gradients back onto the image gradient."""
    n, c, h, w = shape
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (w + 2 * padding - kw) // stride + 1
    grad = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=np.float32)
    patches = cols.reshape(n, oh, ow, c, kh, kw)
    for i in range(kh):
        for j in range(kw):
            grad[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += patches[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return grad[:, :, padding:padding + h, padding:padding + w] if padding else grad


@dataclass
class Cache:
    """What a layer keeps from forward for its backward."""

    x: np.ndarray | None = None
    z: np.ndarray | None = None
    extra: object = None
