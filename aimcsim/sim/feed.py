"""The data feed: training micro-batches (items), numbered in the order the data is drawn.

The order depends only on the seed and the data set, never on the pipeline, so runs that
differ only in schedule or depth see the same samples in the same order. The first stage
reads an item's inputs from the feed, the last stage's loss its targets.
"""

from __future__ import annotations

import math

import numpy as np

from ..data import Dataset


class DataFeed:
    """``n_items`` micro-batches of ``microbatch_size`` samples, epochs reshuffled by the seed."""

    def __init__(self, data: Dataset, microbatch_size: int, n_items: int, seed: int) -> None:
        self.data = data
        self.microbatch_size = microbatch_size
        self.n_items = n_items
        n_train = len(data.x_train)
        epochs_needed = math.ceil(n_items * microbatch_size / n_train)
        rng = np.random.default_rng([seed, 0x0DE])
        self.order = np.concatenate([rng.permutation(n_train) for _ in range(epochs_needed)])

    def _rows(self, item: int) -> np.ndarray:
        m = self.microbatch_size
        return self.order[item * m:(item + 1) * m]

    def inputs(self, item: int) -> np.ndarray:
        """The input rows of micro-batch ``item``."""
        return self.data.x_train[self._rows(item)]

    def targets(self, item: int) -> np.ndarray:
        """The labels (or target vectors) of micro-batch ``item``."""
        return self.data.y_train[self._rows(item)]
