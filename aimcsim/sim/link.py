"""Links between accelerators: activations go forward, errors go backward.

A :class:`Link` is one direction of the connection between two accelerators. It carries one
transfer at a time, first come first served, whatever the transfer is: with several stages
per accelerator (interleaved and V-shaped placements) one direction can carry activations of
one stage pair and errors of another. A transfer of n values takes what the cost model
charges for it (latency + n * bits_per_element / bandwidth cycles) and is traced as op ``TF``
(activations) or ``TB`` (errors) on the sending stage and accelerator. A :class:`Route` is
what a stage posts through: a link, the op it traces, and the receiving stage's inputs.
Between two stages on the same accelerator there is no link: :func:`local_post` hands the
result over at no cost.

Because an accelerator computes an op's result at the op's start and its ops run one at a
time, the time a transfer arrives is known as soon as the op that produces it starts: it
leaves when the op ends, or when the link has finished the transfers queued before it. The
sender therefore posts the payload with its arrival cycle at once (:meth:`Route.post`), and
the receiver takes in what has arrived whenever it decides (:meth:`Link.collect`). A
transfer costs no simulation event, and a receiver deciding at cycle t sees exactly the
inputs that arrived at or before t, whatever order SimPy processes the events of cycle t in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from ..cost import CostModel
from ..ops import LinkReport
from ..trace import TraceRow

#: how a stage hands on a result: (item, payload, cycle it leaves, version) -> its trace row, if any
Post = Callable[[int, np.ndarray, int, int], "TraceRow | None"]


class Link:
    """One direction of the connection between two accelerators."""

    def __init__(self, sender, receiver, cost: CostModel) -> None:
        self.sender = sender
        self.receiver = receiver
        self.cost = cost.cost
        self.queue: deque[tuple[int, int, np.ndarray, dict]] = deque()  # (arrival, item, payload, inputs)
        self.busy_until = 0  # cycle at which the link finishes the transfers posted so far
        self.free = cost.link_is_free() and not cost.accounts_energy  # zero cycles, nothing to charge

    def collect(self, now: int) -> None:
        """Hand the receiving stages every payload that has arrived by cycle ``now``."""
        queue = self.queue
        while queue and queue[0][0] <= now:
            _, item, payload, ready = queue.popleft()
            ready[item] = payload

    def next_arrival(self) -> int | None:
        """Arrival cycle of the oldest payload not yet collected, None when there is none."""
        return self.queue[0][0] if self.queue else None


class Route:
    """A stage's results over a link to one receiving stage: ``op`` (TF or TB) from stage ``stage``."""

    __slots__ = ("link", "op", "stage", "ready")

    def __init__(self, link: Link, op: str, stage: int, ready: dict) -> None:
        self.link = link
        self.op = op
        self.stage = stage
        self.ready = ready  # the receiving stage's ready_forward or ready_backward

    def post(self, item: int, payload: np.ndarray, leaves: int, version: int) -> TraceRow:
        """Queue ``payload``, which leaves the sender at cycle ``leaves``; returns its trace row.

        Posts come in the order the sender's ops start, so arrival cycles never decrease
        along the queue.
        """
        link = self.link
        energy = 0.0
        if link.free:
            start = end = leaves
        else:
            cycles, energy = link.cost(self.op, (LinkReport(payload.size),))
            start = max(leaves, link.busy_until)
            end = link.busy_until = start + cycles
        link.queue.append((end, item, payload, self.ready))
        if link.receiver.waiting:
            link.receiver.expect(end)
        return TraceRow(self.stage, link.sender.index, self.op, item, start, end, version, energy)


def local_post(ready: dict) -> Post:
    """Hand results to a stage on the same accelerator: free, untraced, there by the time the
    accelerator decides again."""
    def post(item: int, payload: np.ndarray, leaves: int, version: int) -> None:
        ready[item] = payload
    return post
