"""Sweeps: a grid of config overrides run as independent points, locally or on a Dask cluster.

A grid maps dotted keys to value lists (``{"pipeline.stages": [1, 2, 4], "seed": [0, 1]}``);
its points are the cartesian product, each a run directory named from its overrides under
the sweep directory, plus ``results.csv`` (one row per point: the overridden keys, then the
run's summary fields). Points run serially (``workers=1``), on a local process pool
(default: one process per core) or, given a scheduler address, as tasks on a Dask
distributed cluster, whose workers must see the sweep directory (a shared file system).

Sweeps are resumable: a point whose run directory holds ``summary.json`` is finished and
skipped; anything else is (re)run. A finished point whose ``config.yaml`` disagrees with what
the point asks for now (the base config was edited) is refused with the first differing key,
never silently reused. Every file is written atomically, so an interrupted sweep
loses no finished point and leaves no half-written result. A point that fails is recorded
with its status and message and the sweep goes on.
"""

from __future__ import annotations

import ast
import itertools
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import pandas as pd

from .applicability import check_sweep
from .config import Config, load_config
from .errors import ConfigError
from .run import check_out_dir
from .sim.schedules import is_synchronous
from .trace import PERFETTO_FORMATS

SUMMARY_COLUMNS = ["status", "message", "schedule", "stages", "accelerators", "update", "microbatches",
                   "microbatch_size", "samples",
                   "cycles", "time_ns", "final_train_loss", "final_test_loss", "final_test_accuracy",
                   "target_metric", "target_value", "sample_complexity", "cycle_complexity", "bubble_fraction",
                   "utilization", "accelerator_utilization", "staleness", "transfers", "diverged_at_sample", "events",
                   "wall_seconds"]
ENERGY_COLUMNS = ["energy_pj", "energy_per_sample_pj", "energy_complexity_pj", "energy_by_op"]  # with an energy preset


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["pipeline.stages=1,2,4", "seed=0,1"]`` -> {"pipeline.stages": [1, 2, 4], "seed": [0, 1]}."""
    import yaml  # noqa: PLC0415

    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ConfigError(f"--grid {item}: expected KEY=V1,V2,... e.g. pipeline.stages=1,2,4")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice")
        grid[key] = [yaml.safe_load(v.strip()) for v in values.split(",")]
    return grid


def points(grid: dict[str, list]) -> list[dict]:
    """Cartesian product of the grid, in a stable order (keys as given, values as listed)."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def point_name(overrides: dict) -> str:
    """A directory name from the overrides: ``pipeline.schedule=async,pipeline.stages=4,seed=0``."""
    parts = []
    for key, value in overrides.items():
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        parts.append(f"{key}={text}")
    name = ",".join(parts) or "base"
    return "".join(c if c.isalnum() or c in "._=,-+[]" else "_" for c in name)


def _set_list(overrides: dict) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]


def run_point(base: dict, overrides: dict, directory: str, perfetto: str = "none") -> dict:
    """Run one point into ``directory`` (top level, so process pools and Dask can ship it)."""
    from .run import simulate  # noqa: PLC0415

    path = Path(directory)
    if (path / "summary.json").is_file():
        return json.loads((path / "summary.json").read_text())
    if path.exists():
        shutil.rmtree(path)  # an unfinished earlier attempt
    try:
        config = load_config(base, _set_list(overrides), unused="drop")  # the sweep checked its keys
        return simulate(config, out=path, perfetto=perfetto).summary
    except Exception as exc:  # noqa: BLE001 - a failing point is recorded, the sweep goes on
        return {"status": "error", "message": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def unequal_steps_note(configs: list[Config]) -> str | None:
    """A note when a sweep compares synchronous schedules that average their M micro-batches
    (``train.minibatch_reduction: mean``) with per-micro-batch updates: per sample, the
    synchronous points then take a step M times smaller, so the sweep does not compare like with like."""
    mean_sync = sorted({c.pipeline.schedule for c in configs if is_synchronous(c.pipeline.schedule, c.pipeline.update)
                        and c.train.minibatch_reduction == "mean" and c.pipeline.microbatches > 1})
    per_item = sorted({c.pipeline.schedule for c in configs
                       if not is_synchronous(c.pipeline.schedule, c.pipeline.update)})
    if not mean_sync or not per_item:
        return None
    return (f"note: {', '.join(mean_sync)} with train.minibatch_reduction: mean give each sample 1/M of the step "
            f"{', '.join(per_item)} give it; set train.minibatch_reduction: sum (or scale their lr by M) to "
            f"compare like with like")


def first_difference(stored: object, wanted: object, key: str = "") -> str | None:
    """The first dotted key whose value differs between two resolved configs (keys only one side
    has are skipped: a field added or removed by a newer aimcsim is not a different experiment)."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        for k in stored:
            if k in wanted:
                found = first_difference(stored[k], wanted[k], f"{key}.{k}" if key else str(k))
                if found:
                    return found
        return None
    if isinstance(stored, list) and isinstance(wanted, list) and len(stored) == len(wanted):
        for i, (a, b) in enumerate(zip(stored, wanted)):
            found = first_difference(a, b, f"{key}[{i}]")
            if found:
                return found
        return None
    return None if stored == wanted else f"{key}: {stored!r} there, {wanted!r} now"


def _check_finished(path: Path, config: Config) -> None:
    """Refuse to reuse a finished point that was run with another config."""
    import yaml  # noqa: PLC0415

    stored_path = path / "config.yaml"
    if not stored_path.is_file():
        return
    difference = first_difference(yaml.safe_load(stored_path.read_text()), config.resolved())
    if difference:
        raise ConfigError(f"sweep point {path} was run with a different config ({difference}); "
                          f"remove that directory to rerun it, or sweep into a new --out")


GUARD_HELP = ('put the call under  if __name__ == "__main__":  (a local pool starts fresh processes that '
              'import your script again; unguarded, each would start the sweep anew), or use workers=1')


def _has_main_guard(source: str) -> bool:
    """Whether a script's top level has an ``if __name__ == "__main__":`` block."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = [n for n in (node.test.left, *node.test.comparators)]
            if (any(isinstance(n, ast.Name) and n.id == "__name__" for n in names)
                    and any(isinstance(n, ast.Constant) and n.value == "__main__" for n in names)):
                return True
    return False


def check_main_guard() -> None:
    """Refuse to start a local process pool from a script without a ``__main__`` guard (each
    worker would import the script and run the sweep again: pages of tracebacks), and from a
    worker that is importing such a script."""
    main = sys.modules.get("__main__")
    if multiprocessing.parent_process() is not None and getattr(main, "__name__", "") == "__mp_main__":
        raise ConfigError(f"sweep: started while a worker process imported the script; {GUARD_HELP}")
    path = getattr(main, "__file__", None)
    if not path or not str(path).endswith(".py") or not os.path.isfile(path):
        return  # interactive, python -c, a notebook: workers do not import a script
    try:
        source = Path(path).read_text(encoding="utf-8")
        guarded = _has_main_guard(source)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return
    if not guarded:
        raise ConfigError(f"sweep: the script {path} has no  if __name__ == \"__main__\":  guard; {GUARD_HELP}")


def _init_worker(threads: int) -> None:
    import numba  # noqa: PLC0415

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def warm_up() -> None:
    """Compile (or load) every numba kernel once in this process, so workers find the cache."""
    from .run import simulate  # noqa: PLC0415

    tiny = {"data": {"name": "synthetic", "n_samples": 20, "n_features": 3, "n_classes": 2},
            "model": {"hidden": [3]}, "pipeline": {"stages": 1},
            "train": {"epochs": 0.5, "eval_every": 1000, "target": None}}
    for update in ({"pulse_type": "stochastic_compressed"}, {"pulse_type": "expected"}, {"pulse_type": "none"}):
        simulate({**tiny, "update": update})


class _Progress:
    """One line per finished point: done / running / failed, elapsed and estimated remaining."""

    def __init__(self, total: int, skipped: int, quiet: bool) -> None:
        self.total, self.done, self.failed = total, skipped, 0
        self.started = time.perf_counter()
        self.fresh = 0
        self.quiet = quiet

    def finished(self, name: str, status: str, running: int) -> None:
        self.done += 1
        self.fresh += 1
        if status != "ok":
            self.failed += 1
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.started
        left = (self.total - self.done) * elapsed / self.fresh
        print(f"[{self.done}/{self.total} done, {running} running, {self.failed} failed] "
              f"{elapsed:.0f} s elapsed, ~{left:.0f} s left: {name} {status}", file=sys.stderr, flush=True)


def _results_row(overrides: dict, name: str, summary: dict) -> dict:
    row = {"point": name, **overrides}
    for key in SUMMARY_COLUMNS + [k for k in ENERGY_COLUMNS if k in summary]:
        value = summary.get(key)
        row[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
    util = summary.get("utilization")
    stale = summary.get("staleness")
    row["utilization_mean"] = sum(util) / len(util) if util else None
    row["staleness_max"] = max(stale) if stale else None
    return row


def _write_results(rows: list[dict], directory: Path) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    tmp = directory / ".results.csv.partial"
    try:
        table.to_csv(tmp, index=False)
        os.replace(tmp, directory / "results.csv")
    finally:
        if tmp.exists():
            tmp.unlink()
    return table


def sweep(config: str | os.PathLike | dict | Config, grid: dict[str, list] | None = None,
          out: str | os.PathLike = "sweep", workers: int | None = None, scheduler: str | None = None,
          overrides: list[str] | tuple[str, ...] = (), quiet: bool = True,
          on_point: Callable[[str, dict], None] | None = None, perfetto: str = "none") -> pd.DataFrame:
    """Run every point of ``grid`` (or the config's ``sweep.grid``); return the results table.

    ``workers``: processes of the local pool (default: the number of cores; 1 runs serially
    in this process). ``scheduler``: a Dask scheduler address (``tcp://host:port``) to run
    the points on that cluster instead. ``perfetto``: each point's Chrome/Perfetto trace as
    ``json``, ``gz`` or ``none`` (the default: they are megabytes each; ``trace.csv`` has
    the same rows).
    """
    cfg = load_config(config, overrides, unused="keep")  # its keys are checked per sweep
    section = cfg.sweep or {}
    if workers is None:
        workers = section.get("workers")
    if scheduler is None:
        scheduler = section.get("scheduler")
    return sweeps([(cfg, grid, out)], workers=workers, scheduler=scheduler, quiet=quiet, on_point=on_point,
                  perfetto=perfetto)[0]


class Grid:
    """A sweep's base config and points, validated: every point's config, and the given keys
    some points ignore (a given key no point reads is refused: the no-silent-settings rule per
    sweep, not per point)."""

    def __init__(self, config: str | os.PathLike | dict | Config, grid: dict[str, list] | None = None) -> None:
        loaded = load_config(config, unused="keep")  # its keys are checked per sweep, below
        base = loaded.model_dump(mode="json", exclude_unset=True)  # derived values stay per point
        section = base.pop("sweep", None) or {}
        grid = grid if grid is not None else section.get("grid")
        if not grid:
            raise ConfigError("sweep.grid: no grid given (use --grid KEY=V1,V2 or a sweep: {grid: ...} section)")
        if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
            raise ConfigError("sweep.grid: must map dotted keys to non-empty lists of values")
        self.base = base
        self.todo = points(grid)
        self.configs = [load_config(base, _set_list(p), unused="drop") for p in self.todo]  # validate every point
        self.names = [point_name(p) for p in self.todo]
        given = [k for k in loaded._given if not k.startswith("sweep.")] + list(grid)
        #: key -> the points that ignore it
        self.ignored = check_sweep(given, [c.unused_keys() for c in self.configs], self.names)

    def notes(self) -> list[str]:
        """One line per given key that some points ignore, naming them."""
        lines = []
        total = len(self.todo)
        for key, names in self.ignored.items():
            shown = ", ".join(names[:4]) + (f", ... ({len(names) - 4} more)" if len(names) > 4 else "")
            lines.append(f"note: {key} applies at {total - len(names)} of {total} points; ignored at {shown}")
        return lines


class _Plan(Grid):
    """One sweep of a batch: its grid, directory and the summaries found or run so far."""

    def __init__(self, config: str | os.PathLike | dict | Config, grid: dict[str, list] | None,
                 out: str | os.PathLike) -> None:
        super().__init__(config, grid)
        self.directory = Path(out)
        self.results: dict[str, dict] = {}
        for name, point_config in zip(self.names, self.configs):
            summary_path = self.directory / name / "summary.json"
            if summary_path.is_file():
                _check_finished(self.directory / name, point_config)
                self.results[name] = json.loads(summary_path.read_text())

    def pending(self) -> list[tuple[dict, str]]:
        return [(p, n) for p, n in zip(self.todo, self.names) if n not in self.results]

    def write(self) -> pd.DataFrame:
        rows = [_results_row(p, n, self.results[n]) for p, n in zip(self.todo, self.names) if n in self.results]
        return _write_results(rows, self.directory)


def sweeps(jobs: list[tuple[str | os.PathLike | dict | Config, dict[str, list] | None, str | os.PathLike]],
           workers: int | None = None, scheduler: str | None = None, quiet: bool = True,
           on_point: Callable[[str, dict], None] | None = None, perfetto: str = "none") -> list[pd.DataFrame]:
    """Several sweeps, each ``(config, grid, out)``, run as one batch: their pending points share
    one local pool (or Dask cluster), so a study of many small sweeps keeps every worker busy
    and starts its processes once. Returns each sweep's results table, in order; each sweep
    directory gets its own ``results.csv``, and each is resumable as with :func:`sweep`."""
    if perfetto not in PERFETTO_FORMATS:
        raise ConfigError(f"--perfetto: must be one of {', '.join(PERFETTO_FORMATS)}, got {perfetto!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers: must be a positive integer, got {workers!r}")
    for _, _, out in jobs:
        check_out_dir(Path(out), "out")
    plans = [_Plan(config, grid, out) for config, grid, out in jobs]
    directories = [plan.directory.resolve() for plan in plans]
    if len(set(directories)) < len(directories):
        raise ConfigError("sweeps: two sweeps of one batch write the same directory; give each its own out")
    if not quiet:
        for plan in plans:
            for line in plan.notes():
                print(line, file=sys.stderr)
        note = unequal_steps_note([c for plan in plans for c in plan.configs])
        if note:
            print(note, file=sys.stderr)
    workers = workers or os.cpu_count() or 1
    pending = [(i, p, name) for i, plan in enumerate(plans) for p, name in plan.pending()]
    if pending and not scheduler and workers > 1:
        check_main_guard()  # before any directory is made
    progress = _Progress(sum(len(plan.todo) for plan in plans), sum(len(plan.results) for plan in plans), quiet)
    for plan in plans:
        plan.directory.mkdir(parents=True, exist_ok=True)

    def record(item: tuple[int, dict, str], summary: dict, running: int) -> None:
        i, _, name = item
        plans[i].results[name] = summary
        plans[i].write()
        label = name if len(plans) == 1 else f"{plans[i].directory}/{name}"
        progress.finished(label, summary.get("status", "error"), running)
        if on_point is not None:
            on_point(name, summary)

    tasks = [(item, plans[item[0]].base, item[1], str(plans[item[0]].directory.resolve() / item[2]))
             for item in pending]
    if tasks:
        if scheduler:
            _run_dask(scheduler, tasks, record, perfetto)
        elif workers == 1:
            for item, base, p, path in tasks:
                record(item, run_point(base, p, path, perfetto), 0)
        else:
            warm_up()
            # spawn, not fork: the kernels' thread pool (OpenMP) must not be forked; each worker
            # gets its share of the cores for numba's threads (results do not depend on it)
            threads = max(1, (os.cpu_count() or 1) // workers)
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(threads,))
            try:
                futures = {pool.submit(run_point, base, p, path, perfetto): item for item, base, p, path in tasks}
                waiting = set(futures)
                while waiting:
                    finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        record(futures[fut], fut.result(), min(workers, len(waiting)))
            except KeyboardInterrupt:
                # Ctrl-C: points not started are cancelled (the running ones get the terminal's
                # interrupt too); every finished point is kept in results.csv
                pool.shutdown(wait=False, cancel_futures=True)
                for plan in plans:
                    if plan.results:
                        plan.write()
                raise
            pool.shutdown()
    return [plan.write() for plan in plans]


def _run_dask(address: str, tasks: list, record, perfetto: str) -> None:
    try:
        from distributed import Client, as_completed  # noqa: PLC0415
    except ImportError:
        raise ConfigError("--scheduler: needs dask[distributed] (pip install 'aimcsim[dask]')") from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"--scheduler: cannot reach a Dask scheduler at {address} ({exc})") from None
    try:
        warm_up()  # fills the kernel cache for workers on this machine
        client.run(warm_up)  # and each worker compiles or loads the kernels once, not once per point
        futures = {client.submit(run_point, base, p, path, perfetto, pure=False,
                                 key=f"aimcsim-{item[2]}-{time.time_ns()}", retries=2): item
                   for item, base, p, path in tasks}
        remaining = len(futures)
        for fut in as_completed(futures):
            remaining -= 1
            try:
                summary = fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. every worker holding it died
                summary = {"status": "error", "message": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            record(futures[fut], summary, remaining)
    finally:
        client.close()
