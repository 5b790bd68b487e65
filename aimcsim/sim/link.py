"""Links between neighbouring accelerators: activations go forward, errors go backward.

A link direction carries one transfer at a time (a SimPy resource); a transfer of n values
takes latency + n * bits_per_element / bandwidth cycles (``TimingModel.transfer``) and is
traced as op 'TF' (activations) or 'TB' (errors) on the sending stage. A link whose every
transfer takes zero cycles delivers at once, with no events.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simpy


class Link:
    """One direction of the connection between two accelerators."""

    def __init__(self, env: simpy.Environment, sender, receiver, op: str, cycles: Callable[[int], int],
                 tracer, counter: list[int]) -> None:
        self.env = env
        self.sender = sender
        self.receiver = receiver
        self.op = op
        self.cycles = cycles
        self.tracer = tracer
        self.counter = counter
        self.deliver = receiver.deliver_forward if op == "TF" else receiver.deliver_backward
        self.channel = simpy.Resource(env, capacity=1)
        self.in_flight = 0  # transfers sent and not yet delivered
        self.free = cycles(1) == 0 and cycles(2**40) == 0  # zero cycles for any size

    def send(self, item: int, payload: np.ndarray, version: int) -> None:
        duration = 0 if self.free else self.cycles(payload.size)
        if duration == 0:  # deliver now, no events
            now = self.env.now
            self.tracer.record((self.sender.index, self.op, item, now, now, version))
            self.deliver(item, payload)
            return
        self.in_flight += 1
        self.env.process(self._transfer(item, payload, duration, version))

    def _transfer(self, item, payload, duration, version):
        with self.channel.request() as slot:
            yield slot
            start = self.env.now
            yield self.env.timeout(duration)
            self.counter[0] += 2
        self.tracer.record((self.sender.index, self.op, item, start, self.env.now, version))
        self.in_flight -= 1
        self.deliver(item, payload)
