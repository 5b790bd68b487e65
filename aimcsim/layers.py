"""The digital side of analog layers: convolution patches and what a layer keeps for its backward.

A convolution runs as AIMC hardware runs it: the kernel is an (out_channels x
in_channels*kh*kw) crossbar (see :mod:`aimcsim.crossbar`), each output pixel is one analog
read of its input patch, the backward one transposed read per patch, and the update one
rank-one update per patch (aihwkit's semantics for convolutions). :func:`im2col` cuts images
into those patches and :func:`col2im` adds patch gradients back. Pooling, activations and
flattening are digital (:mod:`aimcsim.network`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
