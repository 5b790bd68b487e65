"""How a run is steered and observed without anyone calling back into the engine.

:class:`RunControl` is the one place a run's outcome is decided: an accelerator that meets
a non-finite value, or the evaluator that sees the target met (``stop_at_target``) or a
non-finite loss, asks it to stop; the engine's event loop checks it between SimPy steps and
ends the run there. The first request wins. :class:`SampleProbe` is the connection from the
stages' updates to whoever wants to know that samples have been applied (the evaluator, the
progress bar, the tracer's streaming): accelerators publish, subscribers observe, and they
run outside simulated time.
"""

from __future__ import annotations

from collections.abc import Callable


class RunControl:
    """A run's status and message, and whether it should stop now."""

    def __init__(self, microbatch_size: int) -> None:
        self.microbatch_size = microbatch_size
        self.status = "ok"
        self.message = ""
        self.stopped = False
        self.diverged_at: int | None = None  # the sample at which values became non-finite

    def stop(self, status: str, message: str) -> None:
        """End the run after the current SimPy step with ``status`` (the first request wins)."""
        if not self.stopped:
            self.stopped = True
            self.status = status
            self.message = message

    def diverged(self, item: int | None = None, samples: int | None = None) -> None:
        """Values became non-finite in micro-batch ``item`` (or at evaluation after ``samples``)."""
        if self.stopped:
            return
        at = item * self.microbatch_size if item is not None else samples
        self.diverged_at = at
        self.stop("diverged", f"loss became non-finite at sample {at}")


class SampleProbe:
    """Applied samples, heard by every subscriber: a sample counts once every stage has applied
    its update. In the schedules where the first stage updates last (sequential, gpipe, 1f1b,
    async) that is the first stage's update; in interleaved and V-shaped flushes it is whichever
    stage updates last, so an evaluation never sees a mini-batch half applied."""

    def __init__(self, stages: int = 1) -> None:
        self.samples = 0
        self._per_stage = [0] * stages
        self._listeners: list[Callable[[int, int], None]] = []

    def subscribe(self, listener: Callable[[int, int], None]) -> None:
        """Call ``listener(samples so far, cycle)`` after every applied update."""
        self._listeners.append(listener)

    def publish(self, stage: int, rows: int, cycle: int) -> None:
        """Stage ``stage`` applied the updates of ``rows`` samples by ``cycle``."""
        per_stage = self._per_stage
        before = per_stage[stage]
        per_stage[stage] = before + rows
        if before != self.samples:  # the stage was ahead of the slowest: nothing new is applied everywhere
            return
        applied = min(per_stage)
        if applied > self.samples:
            self.samples = applied
            for listener in self._listeners:
                listener(applied, cycle)
