"""The data feed: training micro-batches (items), numbered in the order the data is drawn.

The order depends only on the seed and the data set, never on the pipeline, so runs that
differ only in schedule or depth see the same samples in the same order. The first stage
reads an item's inputs from the feed, the last stage's loss its targets.
"""

from __future__ import annotations

import math

import numpy as np

from ..data import Dataset
from ..errors import ConfigError
from .schedules import SCHEDULES, is_synchronous


def planned_items(config, n_train: int) -> int:
    """Micro-batches a run trains: epochs of the data; whole mini-batches for synchronous schedules
    (a shorter run trains one shorter mini-batch) and for orders that cannot be built for fewer."""
    p = config.pipeline
    if p.microbatch_size > n_train:
        raise ConfigError(f"pipeline.microbatch_size: {p.microbatch_size} samples per micro-batch, but the training "
                          f"set has only {n_train}")
    samples = int(math.floor(config.train.epochs * n_train))
    if samples < p.microbatch_size:
        raise ConfigError(f"train.epochs: {config.train.epochs} epochs of {n_train} samples are {samples} samples, "
                          f"fewer than one micro-batch of {p.microbatch_size}; train longer")
    items = samples // p.microbatch_size
    if not SCHEDULES[p.schedule].partial_minibatch:
        if items < p.microbatches:
            raise ConfigError(f"train.epochs: the run trains {items} micro-batches, fewer than one mini-batch "
                              f"of {p.microbatches} of schedule {p.schedule}; train longer or use fewer "
                              f"micro-batches")
        items -= items % p.microbatches
    elif is_synchronous(p.schedule, p.update) and items >= p.microbatches:
        items -= items % p.microbatches
    return items


class DataFeed:
    """``n_items`` micro-batches of ``microbatch_size`` samples, epochs reshuffled by the seed.

    Each epoch's order is drawn when the run first reaches it, from one generator in epoch
    order, so memory does not grow with ``epochs`` (a run may stop at its target long before
    the last) and the order equals drawing every epoch up front. Items in flight span at most
    a few epochs; the permutations of the last ``KEEP`` epochs stay at hand, and an older one
    is drawn anew from its generator state, kept per epoch (a few hundred bytes each).
    """

    KEEP = 4

    def __init__(self, data: Dataset, microbatch_size: int, n_items: int, seed: int) -> None:
        self.data = data
        self.microbatch_size = microbatch_size
        self.n_items = n_items
        self.n_train = len(data.x_train)
        self._rng = np.random.default_rng([seed, 0x0DE])
        self._states: list[dict] = []  # generator state at the start of each epoch drawn so far
        self._orders: dict[int, np.ndarray] = {}

    def _epoch(self, epoch: int) -> np.ndarray:
        """The permutation of training rows that epoch ``epoch`` follows."""
        order = self._orders.get(epoch)
        if order is not None:
            return order
        while len(self._states) <= epoch:  # draw the epochs up to this one, in order
            self._states.append(self._rng.bit_generator.state)
            self._rng.permutation(self.n_train)
        rng = np.random.default_rng()
        rng.bit_generator.state = self._states[epoch]
        order = self._orders[epoch] = rng.permutation(self.n_train)
        for old in [e for e in self._orders if e < epoch - self.KEEP]:
            del self._orders[old]
        return order

    def rows(self, item: int) -> np.ndarray:
        m = self.microbatch_size
        start, stop = item * m, (item + 1) * m
        first, last = start // self.n_train, (stop - 1) // self.n_train
        if first == last:
            offset = first * self.n_train
            return self._epoch(first)[start - offset:stop - offset]
        parts = [self._epoch(e) for e in range(first, last + 1)]  # a micro-batch across an epoch boundary
        offset = first * self.n_train
        return np.concatenate(parts)[start - offset:stop - offset]

    def inputs(self, item: int) -> np.ndarray:
        """The input rows of micro-batch ``item``."""
        return self.data.x_train[self.rows(item)]

    def targets(self, item: int) -> np.ndarray:
        """The labels (or target vectors) of micro-batch ``item``."""
        return self.data.y_train[self.rows(item)]
