"""simulate(config) -> Result, and the run directory it can write.

A run directory holds ``config.yaml`` (fully resolved), ``summary.json``, ``metrics.csv``
(one row per evaluation), ``trace.csv`` (one row per op and transfer, times in cycles),
``weights.npz`` (the final weights, one array per layer) and, unless turned off,
``trace.json`` or ``trace.json.gz`` (Chrome/Perfetto). Each file is written to a temporary
name and renamed, so it appears complete or not at all.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import trace as tr
from .config import Config, load_config
from .errors import ConfigError
from .sim.engine import Engine
from .sim.schedules import SCHEDULES, effective_update

METRIC_COLUMNS = ["samples", "cycles", "time_ns", "train_loss", "test_loss", "test_accuracy", "grad_norm_sq"]


class Result:
    """What a run produced: ``summary`` (dict), ``metrics`` and ``trace`` (DataFrames).

    A run that streamed its trace to a run directory reads ``trace`` back from ``trace.csv``
    when first asked for it.
    """

    def __init__(self, summary: dict, metrics: pd.DataFrame, trace: pd.DataFrame | None, config: Config,
                 trace_path: Path | None = None, weights: list[np.ndarray] | None = None) -> None:
        self.summary = summary
        self.metrics = metrics
        self.config = config
        self._trace = trace
        self._trace_path = trace_path
        self._weights = weights

    @property
    def trace(self) -> pd.DataFrame:
        if self._trace is None:
            self._trace = tr.read_trace(self._trace_path)
        return self._trace

    def weights(self) -> list[np.ndarray]:
        """The weights [W | b] each layer's forward sees at the end, one (out, in + 1) array per
        layer (``weights.npz``'s layer0, layer1, ...). ``Network.set_weights`` loads them back."""
        return [w.copy() for w in self._weights]

    def action_strings(self) -> dict[int, list[str]]:
        """Per accelerator, its F, B, I and W in execution order as PyTorch pipelining actions
        (``2F0``): a schedule's action list without its idle steps."""
        return tr.action_strings(self.trace)


def partition_rule(partition: list[int] | str) -> str:
    """How a run's partition was chosen: given (a list), weights (also ``balanced``) or time."""
    if isinstance(partition, list):
        return "given"
    return "weights" if partition == "balanced" else partition


def summarize(engine: Engine, wall: float) -> dict:
    """summary.json of a finished run: outcome, pipeline, samples and cycles, complexities, statistics."""
    cfg = engine.config
    tracer, control, evaluator = engine.tracer, engine.control, engine.evaluator
    cycles = tracer.end
    util = tracer.utilization()
    acc_util = tracer.accelerator_utilization()
    last = evaluator.metrics[-1] if evaluator.metrics else {}
    return {
        "status": control.status,
        "message": control.message,
        "schedule": cfg.pipeline.schedule,
        "stages": len(engine.stages),
        "partition": engine.partition,
        "partition_rule": partition_rule(cfg.pipeline.partition),
        "predicted_cycles_per_sample": engine.plan.predicted["cycles_per_sample"] if engine.plan else None,
        "stage_options": ({str(k): {"partition": o["partition"], "cycles_per_sample": o["cycles_per_sample"],
                                    "energy_pj_per_sample": o["energy_pj_per_sample"]}
                           for k, o in engine.stage_options.items()} if engine.stage_options else None),
        "cycles_per_sample": cycles / engine.samples if engine.samples else None,
        "accelerators": engine.n_accelerators,
        "placement": list(engine.placement),
        "update": effective_update(cfg.pipeline.schedule, cfg.pipeline.update),
        "microbatches": cfg.pipeline.microbatches if SCHEDULES[cfg.pipeline.schedule].minibatches else None,
        "microbatch_size": cfg.pipeline.microbatch_size,
        "samples": engine.samples,
        "cycles": cycles,
        "time_ns": cycles / engine.timing.clock_ghz,
        "final_train_loss": last.get("train_loss"),
        "final_test_loss": last.get("test_loss"),
        "final_test_accuracy": last.get("test_accuracy"),
        "target_metric": cfg.train.target.metric if cfg.train.target else None,
        "target_value": cfg.train.target.value if cfg.train.target else None,
        "sample_complexity": evaluator.sample_complexity,
        "cycle_complexity": evaluator.cycle_complexity,
        "utilization": util,
        "accelerator_utilization": acc_util,
        "bubble_fraction": tr.bubble_fraction(acc_util),
        "staleness": list(tracer.max_staleness),
        "accelerator_staleness": list(tracer.accelerator_staleness),
        "transfers": list(tracer.transfers),
        "diverged_at_sample": control.diverged_at,
        "trace_rows": tracer.n_rows,
        "events": engine.event_counter[0],
        "wall_seconds": wall,
        **energy_summary(engine),
    }


def energy_summary(engine: Engine) -> dict:
    """summary.json's energy fields (none without an energy preset): the run's energy (every
    op and static power over the whole run), per trained sample, to the target, and by part."""
    if not engine.energy.enabled:
        return {}
    cycles = engine.tracer.end
    static = engine.cost.static_pj(cycles, engine.n_accelerators)
    total = engine.tracer.energy_pj + static
    return {
        "energy_preset": engine.energy.preset,
        "energy_pj": total,
        "energy_per_sample_pj": total / engine.samples if engine.samples else None,
        "energy_complexity_pj": engine.evaluator.energy_complexity,
        "energy_by_op": {**engine.cost.energy_by_part, "static": static},
    }


def simulate(config: Config | dict | str | os.PathLike, out: str | os.PathLike | None = None,
             progress=None, perfetto: str = "json") -> Result:
    """Run one simulation; with ``out``, stream the trace to and write the run directory there.

    ``progress(samples, cycles, loss)`` is called as samples are trained. ``perfetto``: the
    run directory's Chrome/Perfetto trace as ``json`` (trace.json), ``gz`` (trace.json.gz) or
    ``none``. If the run is interrupted (KeyboardInterrupt) or fails, no partial file is left
    behind. A config with a ``sweep`` section is refused: :func:`aimcsim.sweep` runs it.
    """
    t0 = time.perf_counter()
    cfg = config if isinstance(config, Config) else load_config(config)
    if cfg.sweep is not None:
        raise ConfigError("sweep: this config defines a sweep, which a single run would ignore; run it with "
                          "'aimcsim sweep' (aimcsim.sweep), or drop the section (--set sweep=null) to run its "
                          "base point")
    if perfetto not in tr.PERFETTO_FORMATS:
        raise ConfigError(f"--perfetto: must be one of {', '.join(tr.PERFETTO_FORMATS)}, got {perfetto!r}")
    directory = check_out_dir(Path(out), "out") if out is not None else None
    created = directory is not None and not directory.exists()
    sink = None
    try:
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            sink = tr.TraceSink(directory, cfg.timing_model().clock_ghz, perfetto, cfg.energy_model().enabled)
        engine = Engine(cfg, progress=progress, sink=sink)
        engine.run()  # ends with a last tracer digest: every row is written or in memory
        columns = METRIC_COLUMNS + (["energy_pj"] if engine.energy.enabled else [])
        metrics = pd.DataFrame(engine.metrics, columns=columns)
        summary = summarize(engine, time.perf_counter() - t0)
        weights = engine.network.weights()
        if sink is None:
            return Result(summary, metrics, engine.tracer.frame(), cfg, weights=weights)
        sink.close()
        sink = None
        result = Result(summary, metrics, None, cfg, directory / "trace.csv", weights)
        write_run_files(result, directory)
        return result
    except BaseException:
        if sink is not None:
            sink.abort()
        if created and directory.exists() and not any(directory.iterdir()):
            directory.rmdir()
        raise


def check_out_dir(out: Path, flag: str = "--out") -> Path:
    """Refuse, before anything runs, an output directory that cannot be one: an existing file,
    a path under a file, or a folder this user cannot write."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag}: '{out}' is a file, not a directory; give a directory path")
    ancestor = out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{flag}: '{out}' cannot be created: '{ancestor}' is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag}: '{out}' cannot be written: no write permission in '{ancestor}'")
    return out


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


def save_weights(weights: list[np.ndarray], path: str | os.PathLike) -> None:
    """``weights.npz``: one array per layer, named layer0, layer1, ... (written atomically)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{f"layer{k}": w for k, w in enumerate(weights)})
    _atomic_write(Path(path), write)


def load_weights(path: str | os.PathLike) -> list[np.ndarray]:
    """The per-layer arrays of a ``weights.npz``, in layer order."""
    with np.load(path) as data:
        names = sorted(data.files, key=lambda n: int(n.removeprefix("layer")))
        return [data[n] for n in names]


def write_run_files(result: Result, out: str | os.PathLike) -> Path:
    """config.yaml, metrics.csv, summary.json and weights.npz (the streamed trace files are already there)."""
    directory = Path(out)
    if result._weights is not None:
        save_weights(result._weights, directory / "weights.npz")
    _atomic_write(directory / "config.yaml",
                  lambda p: p.write_text(yaml.safe_dump(result.config.resolved(), sort_keys=False)))
    _atomic_write(directory / "metrics.csv", lambda p: result.metrics.to_csv(p, index=False))
    _atomic_write(directory / "summary.json",
                  lambda p: p.write_text(json.dumps(result.summary, indent=2, default=_json_default)))
    return directory
