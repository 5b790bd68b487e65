"""Links between neighbouring accelerators: activations go forward, errors go backward.

A link direction carries one transfer at a time, first come first served; a transfer of n
values takes what the cost model charges for it (latency + n * bits_per_element /
bandwidth cycles) and is traced as op ``TF`` (activations) or ``TB`` (errors) on the
sending stage.

Because a stage computes an op's result at the op's start and its ops run one at a time,
the time a transfer arrives is known as soon as the op that produces it starts: it leaves
when the op ends, or when the link has finished the transfers queued before it. The sender
therefore posts the payload with its arrival cycle at once (:meth:`Link.post`), and the
receiver takes in what has arrived whenever it decides (:meth:`Link.collect`). A transfer
costs no simulation event, and a receiver deciding at cycle t sees exactly the inputs that
arrived at or before t, whatever order SimPy processes the events of cycle t in.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ..cost import CostModel
from ..ops import SEND_ACTIVATIONS, LinkReport
from ..trace import TraceRow


class Link:
    """One direction of the connection between two accelerators."""

    def __init__(self, sender, receiver, op: str, cost: CostModel) -> None:
        self.sender = sender
        self.receiver = receiver
        self.op = op
        self.cost = cost.cost
        self.ready = receiver.ready_forward if op == SEND_ACTIVATIONS else receiver.ready_backward
        self.queue: deque[tuple[int, int, np.ndarray]] = deque()  # (arrival cycle, item, payload)
        self.busy_until = 0  # cycle at which the link finishes the transfers posted so far
        self.free = cost.link_is_free()  # zero cycles for any size
        self.accounts_energy = cost.accounts_energy

    def post(self, item: int, payload: np.ndarray, leaves: int, version: int) -> TraceRow:
        """Queue ``payload``, which leaves the sender at cycle ``leaves``; returns its trace row.

        Posts come in the order the sender's ops start, so arrival cycles never decrease
        along the queue.
        """
        energy = 0.0
        if self.free and not self.accounts_energy:
            start = end = leaves
        else:
            cycles, energy = self.cost(self.op, (LinkReport(payload.size),))
            start = max(leaves, self.busy_until)
            end = self.busy_until = start + cycles
        self.queue.append((end, item, payload))
        if self.receiver.waiting:
            self.receiver.expect(end)
        return TraceRow(self.sender.index, self.op, item, start, end, version, energy)

    def collect(self, now: int) -> None:
        """Hand the receiver every payload that has arrived by cycle ``now``."""
        queue, ready = self.queue, self.ready
        while queue and queue[0][0] <= now:
            _, item, payload = queue.popleft()
            ready[item] = payload

    def next_arrival(self) -> int | None:
        """Arrival cycle of the oldest payload not yet collected, None when there is none."""
        return self.queue[0][0] if self.queue else None
