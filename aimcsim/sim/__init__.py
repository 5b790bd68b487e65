"""The discrete-event pipeline: accelerators (SimPy processes), links, schedules, engine."""

from .engine import Engine
from .schedules import make_schedule

__all__ = ["Engine", "make_schedule"]
