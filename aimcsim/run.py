"""simulate(config) -> Result, and the run directory it can write.

A run directory holds ``config.yaml`` (fully resolved), ``summary.json``, ``metrics.csv``
(one row per evaluation), ``trace.csv`` (one row per op and transfer, times in cycles) and
``trace.json`` (Chrome/Perfetto). Each file is written to a temporary name and renamed, so
it appears complete or not at all.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import trace as tr
from .config import Config, load_config
from .sim.engine import Engine

METRIC_COLUMNS = ["samples", "cycles", "time_ns", "train_loss", "test_loss", "test_accuracy", "grad_norm_sq"]


@dataclass
class Result:
    """What a run produced: ``summary`` (dict), ``metrics`` and ``trace`` (DataFrames)."""

    summary: dict
    metrics: pd.DataFrame
    trace: pd.DataFrame
    config: Config

    def action_strings(self) -> dict[int, list[str]]:
        """Per stage, F and B in execution order as PyTorch pipelining actions (``2F0``)."""
        return tr.action_strings(self.trace)


def summarize(engine: Engine, trace: pd.DataFrame, wall: float) -> dict:
    cfg = engine.config
    k = len(engine.stages)
    cycles = tr.total_cycles(trace)
    util = tr.utilization(trace, k, cycles)
    last = engine.metrics[-1] if engine.metrics else {}
    return {
        "status": engine.status,
        "message": engine.message,
        "schedule": cfg.pipeline.schedule,
        "stages": k,
        "partition": engine.partition,
        "microbatches": cfg.pipeline.microbatches,
        "microbatch_size": cfg.pipeline.microbatch_size,
        "samples": engine.samples,
        "cycles": cycles,
        "time_ns": cycles / engine.timing.clock_ghz,
        "final_train_loss": last.get("train_loss"),
        "final_test_loss": last.get("test_loss"),
        "final_test_accuracy": last.get("test_accuracy"),
        "target_metric": cfg.train.target.metric if cfg.train.target else None,
        "target_value": cfg.train.target.value if cfg.train.target else None,
        "sample_complexity": engine.sample_complexity,
        "cycle_complexity": engine.cycle_complexity,
        "utilization": util,
        "bubble_fraction": tr.bubble_fraction(util),
        "staleness": tr.max_staleness(trace, k),
        "diverged_at_sample": engine.diverged_at,
        "events": engine.event_counter[0],
        "wall_seconds": wall,
    }


def simulate(config: Config | dict | str | os.PathLike, out: str | os.PathLike | None = None) -> Result:
    """Run one simulation; with ``out``, also write its run directory there."""
    t0 = time.perf_counter()
    cfg = config if isinstance(config, Config) else load_config(config)
    engine = Engine(cfg)
    engine.run()
    trace = engine.tracer.frame()
    metrics = pd.DataFrame(engine.metrics, columns=METRIC_COLUMNS)
    summary = summarize(engine, trace, time.perf_counter() - t0)
    result = Result(summary, metrics, trace, cfg)
    if out is not None:
        write_run_dir(result, out, engine.timing.clock_ghz)
    return result


def _json_default(value: object) -> object:
    """numpy scalars and arrays as plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary name and rename: the file is complete or absent."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_run_dir(result: Result, out: str | os.PathLike, clock_ghz: float = 1.0) -> Path:
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / "config.yaml",
                  lambda p: p.write_text(yaml.safe_dump(result.config.resolved(), sort_keys=False)))
    _atomic_write(directory / "metrics.csv", lambda p: result.metrics.to_csv(p, index=False))
    _atomic_write(directory / "trace.csv", lambda p: result.trace.to_csv(p, index=False))
    _atomic_write(directory / "trace.json", lambda p: tr.write_chrome_trace(result.trace, p, clock_ghz))
    _atomic_write(directory / "summary.json", lambda p: p.write_text(json.dumps(result.summary, indent=2, default=_json_default)))
    return directory
