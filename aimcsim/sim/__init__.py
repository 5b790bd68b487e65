"""The discrete-event pipeline: accelerators (SimPy processes), links, schedules, engine.

``Engine`` and ``make_schedule`` are imported on first use, so that the config layer can
read the schedule registry (:mod:`.schedules`) without importing the engine, which imports
the config.
"""

from __future__ import annotations

__all__ = ["Engine", "make_schedule"]


def __getattr__(name: str):
    if name == "Engine":
        from .engine import Engine  # noqa: PLC0415

        return Engine
    if name == "make_schedule":
        from .schedules import make_schedule  # noqa: PLC0415

        return make_schedule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
