"""The ``aimcsim`` command line.

    aimcsim run CONFIG [--set KEY=VALUE]... [--out DIR] [--quiet] [--perfetto json|gz|none]
    aimcsim validate CONFIG [--set KEY=VALUE]...
    aimcsim sweep CONFIG --grid KEY=V1,V2,... [--grid ...] [--out DIR] [--workers N] [--scheduler ADDRESS]
                  [--perfetto none|json|gz]
    aimcsim plot RUN_DIR | SWEEP_DIR [--out DIR] [--cycles N]
    aimcsim presets

Exit status: 0 on success; 2 on invalid input (one line on stderr naming the key path and
what is allowed); 1 when a run fails (e.g. diverges), its summary still written; 130 when
interrupted (no partial file is left behind).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import ConfigError
from .ops import busy_ops
from .run import check_out_dir
from .trace import PERFETTO_FORMATS

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130

EPILOG = """examples:
  aimcsim run configs/quickstart.yaml
  aimcsim run configs/quickstart.yaml --set pipeline.stages=2 --set train.lr=0.01 --out runs/k2
  aimcsim validate configs/quickstart.yaml --set pipeline.schedule=gpipe
  aimcsim sweep configs/depth_sweep.yaml --out runs/depth
  aimcsim sweep configs/quickstart.yaml --grid pipeline.stages=1,2,3 --grid seed=0,1 --workers 2
  aimcsim plot runs/k2
  aimcsim plan configs/rf25_async.yaml --set pipeline.partition=time
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit status 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        raise ConfigError(f"{self.prog}: {message}")


def _progress_bar(quiet: bool, total: int | None):
    """A tqdm bar over samples (stderr), silent when not a terminal or with --quiet."""
    if quiet or not sys.stderr.isatty():
        return None, None
    import shutil  # noqa: PLC0415

    from tqdm import tqdm  # noqa: PLC0415

    # shutil falls back to 80x24 where a terminal reports a zero size (tqdm would then draw nothing)
    size = shutil.get_terminal_size()
    bar = tqdm(total=total, unit="sample", delay=2.0, ncols=size.columns, nrows=size.lines,
               file=sys.stderr, mininterval=0.5)

    def update(samples: int, cycles: int, loss: float | None) -> None:
        bar.set_postfix_str(f"cycles={cycles:,} loss={loss:.4f}" if loss is not None else f"cycles={cycles:,}",
                            refresh=False)
        bar.update(samples - bar.n)
    return bar, update


def _default_out(config_path: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(config_path).stem}-{stamp}"


def cmd_run(args: argparse.Namespace) -> int:
    from . import load_config, simulate  # noqa: PLC0415
    from .data import load_dataset  # noqa: PLC0415
    from .sim.feed import planned_items  # noqa: PLC0415

    config = load_config(args.config, args.set)
    n_train = len(load_dataset(config.data, config.seed).x_train)  # check the data before creating anything
    out = check_out_dir(Path(args.out) if args.out else _default_out(args.config))
    if out.exists() and (out / "summary.json").exists():
        raise ConfigError(f"--out: '{out}' already holds a run (summary.json); choose another directory")
    total = None if config.train.stop_at_target else planned_items(config, n_train) * config.pipeline.microbatch_size
    bar, update = _progress_bar(args.quiet, total)
    try:
        result = simulate(config, out=out, progress=update, perfetto=args.perfetto)
    finally:
        if bar is not None:
            bar.close()
    s = result.summary
    if not args.quiet:
        _print_summary(s, out)
    return EXIT_OK if s["status"] == "ok" else EXIT_FAILED


def _fmt(value, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def _print_summary(s: dict, out: Path) -> None:
    util = " ".join(f"{u:.3f}" for u in s["accelerator_utilization"])
    stale = " ".join(str(v) for v in s["staleness"])
    several = s["accelerators"] != s["stages"]  # some accelerator holds several stages
    placed = (f" on {s['accelerators']} accelerators (stage -> accelerator {' '.join(map(str, s['placement']))})"
              if several else "")
    target = f"{s['target_metric']} {'>=' if s['target_metric'] == 'test_accuracy' else '<='} {s['target_value']}"
    lines = [
        f"status            {s['status']}" + (f" ({s['message']})" if s["message"] else ""),
        f"schedule          {s['schedule']}, K={s['stages']} stages {s['partition']} ({s['partition_rule']} "
        f"cut){placed}, "
        + (f"M={s['microbatches']}, " if s["microbatches"] is not None else "no mini-batches, ")
        + f"micro-batch size {s['microbatch_size']}, update {s['update']}",
        f"trained           {s['samples']:,} samples in {s['cycles']:,} cycles ({s['time_ns'] / 1e3:,.1f} us)"
        + (f"; {s['cycles_per_sample']:,.1f} cycles per sample, the planner predicted "
           f"{s['predicted_cycles_per_sample']:,.1f}" if s.get("predicted_cycles_per_sample") else ""),
        f"final             train loss {_fmt(s['final_train_loss'])}, test loss {_fmt(s['final_test_loss'])}, "
        f"test accuracy {_fmt(s['final_test_accuracy'], '.3f')}",
    ]
    if s["target_metric"]:
        lines.append(f"target            {target}: sample complexity {_fmt(s['sample_complexity'], ',')}, "
                     f"cycle complexity {_fmt(s['cycle_complexity'], ',')}")
    if "energy_pj" in s:
        parts = ", ".join(f"{part} {value / s['energy_pj']:.0%}" for part, value in s["energy_by_op"].items() if value)
        to_target = "n/a" if s["energy_complexity_pj"] is None else f"{s['energy_complexity_pj'] / 1e6:,.3f} µJ"
        per_sample = "n/a" if s["energy_per_sample_pj"] is None else f"{s['energy_per_sample_pj'] / 1e3:,.2f} nJ"
        lines += [f"energy            {s['energy_pj'] / 1e6:,.3f} µJ ({s['energy_preset']}), {per_sample} per sample, "
                  f"to target {to_target}",
                  f"energy by op      {parts}"]
    lines += [
        f"utilization       {util} (bubble fraction {s['bubble_fraction']:.3f})"
        + (" per accelerator; per stage " + " ".join(f"{u:.3f}" for u in s["utilization"]) if several else ""),
        f"max staleness     {stale}" + (" per stage" if several else ""),
    ]
    if any(s.get("transfers", ())):  # a compound device's transfers (op T) per stage
        lines.append(f"transfers         {' '.join(f'{n:,}' for n in s['transfers'])}")
    lines += [
        f"simulated         {s['events']:,} events in {s['wall_seconds']:.1f} s",
        f"run directory     {out}",
    ]
    print("\n".join(lines))


def cmd_validate(args: argparse.Namespace) -> int:
    import yaml  # noqa: PLC0415

    from . import load_config  # noqa: PLC0415

    config = load_config(args.config, args.set)
    if config.sweep is not None:  # a sweep's keys are checked per sweep: each must apply at some point
        from .sweep import Grid  # noqa: PLC0415

        grid = Grid(load_config(args.config, args.set, unused="keep"))
        print(f"# sweep of {len(grid.todo)} points; its base point resolved:")
        for line in grid.notes():
            print(line, file=sys.stderr)
    print(yaml.safe_dump(config.resolved(), sort_keys=False), end="")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    """Where to cut and how fast each schedule will run, without training."""
    from . import load_config  # noqa: PLC0415
    from .data import load_dataset  # noqa: PLC0415
    from .planner import plan_report  # noqa: PLC0415
    from .run import _atomic_write  # noqa: PLC0415

    config = load_config(args.config, args.set)
    if config.sweep is not None:
        raise ConfigError("sweep: aimcsim plan plans one point; remove the sweep section or plan a point with --set")
    report = plan_report(config, load_dataset(config.data, config.seed))
    if args.json:
        _atomic_write(Path(args.json), lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    print("\n".join(plan_lines(report, config)))
    return EXIT_OK


def plan_lines(r: dict, config) -> list[str]:
    """``aimcsim plan``'s table (cycles per sample; the bottleneck's share is 1)."""
    timing = config.timing_model().preset
    lines = []
    if r["stage_options"]:
        paces = ", ".join(f"K={k}: {o['cycles_per_sample']:,.1f}" for k, o in r["stage_options"].items())
        lines.append(f"stages: auto      K={len(r['partition'])} ({config.pipeline.partition} rule); predicted "
                     f"cycles per sample of {r['schedule']} by K: {paces}")
    lines += [f"partition         {r['partition_rule']} {r['partition']} for K={len(r['partition'])} stages "
             f"(weights cut {r['weights_partition']}: {r['weights_bottleneck_cycles_per_sample']:,.1f}; time cut "
             f"{r['time_partition']}: {r['time_bottleneck_cycles_per_sample']:,.1f} cycles per sample at its "
             f"slowest resource)",
             f"probe             {r['probe_microbatches']} micro-batches of {r['microbatch_size']} on a copy of the "
             f"network; timing {timing}; cycles per sample below",
             f"{'stage':>5s}  {'F':>8s} {'B':>8s} {'U':>8s} {'T':>8s} {'link>':>8s} {'<link':>8s} {'busy':>9s} "
             f"{'share':>6s}  layers"]
    for s in r["stages"]:
        names = s["layers"][0] + (f"..{s['layers'][-1]}" if len(s["layers"]) > 1 else "")
        lines.append(f"{s['stage']:>5d}  {s['forward']:8.1f} {s['backward']:8.1f} {s['update']:8.1f} "
                     f"{s['transfer']:8.1f} {s['link_forward']:8.1f} {s['link_backward']:8.1f} {s['busy']:9.1f} "
                     f"{s['share_of_bottleneck']:6.2f}  {names}")
    lines.append(f"bottleneck        {r['bottleneck_cycles_per_sample']:,.1f} cycles per sample (the pace of a "
                 f"pipeline without flushes)")
    if r["energy_pj_per_sample"]:
        e = r["energy_pj_per_sample"]
        lines.append(f"energy cut        {r['energy_partition']}: {e['energy'] / 1e3:,.2f} nJ per sample (time cut "
                     f"{e['time'] / 1e3:,.2f}, weights cut {e['weights'] / 1e3:,.2f}; ops, links and static power "
                     f"at each cut's pace)")
    lines.append(f"{'schedule':24s} {'cycles/sample':>14s} {'bubble':>7s} {'energy/sample':>14s}")
    for name, p in r["schedules"].items():
        mark = " *" if name == r["schedule"] else ""
        if "error" in p:
            lines.append(f"{name + mark:24s} n/a: {p['error']}")
            continue
        energy = "" if p["energy_pj_per_sample"] is None else f"{p['energy_pj_per_sample'] / 1e3:11,.2f} nJ"
        lines.append(f"{name + mark:24s} {p['cycles_per_sample']:14,.1f} {p['bubble_fraction']:7.3f} {energy:>14s}")
    lines.append("* the config's schedule; predictions replay the probe's ops through each schedule's own event loop")
    if r["note"]:
        lines.append(f"note              {r['note']}")
    return lines


def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import listing  # noqa: PLC0415

    print("\n".join(listing()))
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import parse_grid, sweep  # noqa: PLC0415

    grid = parse_grid(args.grid) if args.grid else None
    out = check_out_dir(Path(args.out) if args.out else Path("runs") / f"{Path(args.config).stem}-sweep")
    table = sweep(args.config, grid, out=out, workers=args.workers, scheduler=args.scheduler,
                  overrides=args.set, quiet=args.quiet, perfetto=args.perfetto)
    failed = int((table["status"] != "ok").sum())
    if not args.quiet:
        print(f"{len(table)} points, {failed} not ok; results: {out / 'results.csv'}")
    return EXIT_OK if failed == 0 else EXIT_FAILED


def cmd_plot(args: argparse.Namespace) -> int:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import pandas as pd  # noqa: PLC0415

    from . import trace as tr  # noqa: PLC0415
    from .plots import energy_breakdown, timeline, training_curves  # noqa: PLC0415

    run_dir = Path(args.run_dir)
    if args.cycles is not None and args.cycles < 1:
        raise ConfigError(f"--cycles: the timeline window must be at least 1 cycle, got {args.cycles}")
    if args.out:
        check_out_dir(Path(args.out))
    if (run_dir / "results.csv").is_file():
        return _plot_sweep(run_dir, Path(args.out) if args.out else run_dir)
    needed = ["summary.json", "metrics.csv", "trace.csv"]
    missing = [n for n in needed if not (run_dir / n).is_file()]
    if not run_dir.is_dir() or missing:
        raise ConfigError(f"RUN_DIR: '{run_dir}' is not a run directory (missing {', '.join(missing) or 'folder'})")
    out = Path(args.out) if args.out else run_dir
    out.mkdir(parents=True, exist_ok=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = pd.read_csv(run_dir / "metrics.csv")
    trace = tr.read_trace(run_dir / "trace.csv")
    written = []
    end = args.cycles or min(int(trace["end"].max()), _window(trace))
    ax = timeline(trace, end=end)
    accelerators = summary.get("accelerators", summary["stages"])
    placed = f" on {accelerators} accelerators" if accelerators != summary["stages"] else ""
    ax.set_title(f"{summary['schedule']}, K={summary['stages']}{placed}: first {end:,} cycles")
    ax.figure.tight_layout()
    ax.figure.savefig(out / "timeline.png", dpi=120, bbox_inches="tight")
    written.append(out / "timeline.png")
    fig = training_curves(metrics, summary.get("target_metric"), summary.get("target_value"),
                          title=f"{summary['schedule']}, K={summary['stages']}")
    fig.savefig(out / "curves.png", dpi=120)
    written.append(out / "curves.png")
    if "energy_by_op" in summary:
        fig = energy_breakdown(summary, metrics)
        fig.savefig(out / "energy.png", dpi=120)
        written.append(out / "energy.png")
    for path in written:
        print(path)
    return EXIT_OK


def _plot_sweep(sweep_dir: Path, out: Path) -> int:
    import pandas as pd  # noqa: PLC0415

    from .plots import sweep_axes, sweep_plot  # noqa: PLC0415

    results = pd.read_csv(sweep_dir / "results.csv")
    x, by = sweep_axes(results)
    if x is None:
        raise ConfigError(f"SWEEP_DIR: '{sweep_dir}' varies no key but the seed; there is nothing to plot against "
                          f"(its results.csv has one row per seed)")
    out.mkdir(parents=True, exist_ok=True)
    fig = sweep_plot(results, x=x, by=by)
    fig.savefig(out / "sweep.png", dpi=120, bbox_inches="tight")
    print(out / "sweep.png")
    return EXIT_OK


def _window(trace) -> int:
    """About 40 ops of the first accelerator: enough to see the pattern, few enough to read."""
    ops = trace[trace["op"].isin(busy_ops())]
    if ops.empty:
        return 1
    first = ops[ops["accelerator"] == 0].sort_values("start")
    return int(first["end"].iloc[min(len(first) - 1, 40)]) + 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aimcsim", description="Simulate pipeline training on analog in-memory accelerators.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser("run", help="run one simulation and write its run directory",
                         description="Run one simulation from a YAML config and write config.yaml, summary.json, "
                                     "metrics.csv, trace.csv and trace.json to the run directory.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("config", metavar="CONFIG", help="YAML config file (see configs/)")
    run.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                     help="override a config key with a dotted path, e.g. --set pipeline.stages=8 (repeatable)")
    run.add_argument("--out", metavar="DIR", help="run directory (default: runs/<config name>-<time>)")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stdout")
    run.add_argument("--perfetto", choices=PERFETTO_FORMATS, default="json",
                     help="the Chrome/Perfetto trace: trace.json (default), trace.json.gz, or none")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check a config and print it fully resolved",
                         description="Validate a config (and overrides) without running it; print every setting, "
                                     "defaults included, as YAML.")
    val.add_argument("config", metavar="CONFIG", help="YAML config file")
    val.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="override a config key")
    val.set_defaults(func=cmd_validate)

    pl = sub.add_parser("plan", help="predict where to cut the network and each schedule's pace, without training",
                        description="Probe a copy of the network on a few micro-batches, choose the partition the "
                                    "config asks for (partition: time cuts for the least slowest stage or link), and "
                                    "print each stage's predicted F/B/U/T and link time per sample, its share of the "
                                    "bottleneck, and every schedule's predicted cycles, bubble fraction and energy "
                                    "per sample on that cut.")
    pl.add_argument("config", metavar="CONFIG", help="YAML config file")
    pl.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="override a config key")
    pl.add_argument("--json", metavar="PATH", help="also write the plan as JSON")
    pl.set_defaults(func=cmd_plan)

    pr = sub.add_parser("presets", help="list aihwkit's device and RPU-config presets",
                        description="List the device presets (device: {preset: NAME}) and RPU-config presets "
                                    "(rpu_preset: NAME), one line each with what it models; 'aimcsim validate' "
                                    "shows a config with a preset fully resolved.")
    pr.set_defaults(func=cmd_presets)

    sw = sub.add_parser("sweep", help="run a grid of overrides, locally or on a Dask cluster",
                        description="Run the cartesian product of --grid values (or the config's sweep: {grid: ...}) "
                                    "as independent points: one run directory each plus results.csv. Re-running "
                                    "into the same directory skips finished points.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("config", metavar="CONFIG", help="YAML config file")
    sw.add_argument("--grid", metavar="KEY=V1,V2,...", action="append", default=[],
                    help="a grid axis, e.g. --grid pipeline.stages=1,2,4,8 --grid seed=0,1,2 (repeatable)")
    sw.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="override a config key")
    sw.add_argument("--out", metavar="DIR", help="sweep directory (default: runs/<config name>-sweep)")
    sw.add_argument("--workers", type=int, help="local processes (default: the number of cores; 1 = serial)")
    sw.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786")
    sw.add_argument("--quiet", action="store_true", help="no progress lines")
    sw.add_argument("--perfetto", choices=PERFETTO_FORMATS, default="none",
                    help="each point's Chrome/Perfetto trace: none (default; trace.csv has the rows), json or gz")
    sw.set_defaults(func=cmd_sweep)

    plot = sub.add_parser("plot", help="draw a run's timeline and curves, or a sweep's complexities, as PNG",
                          description="For a run directory: timeline.png (accelerators as rows, F/B/U and transfers "
                                      "colored, bubbles white), curves.png (loss and accuracy against samples and "
                                      "cycles) and, with an energy preset, energy.png (energy by op, and against "
                                      "samples). For a sweep directory: sweep.png (sample, cycle and energy "
                                      "complexity and final accuracy against pipeline depth, one line per schedule).")
    plot.add_argument("run_dir", metavar="RUN_DIR", help="a run or sweep directory")
    plot.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: RUN_DIR)")
    plot.add_argument("--cycles", type=int, help="timeline window in cycles (default: about 40 ops)")
    plot.set_defaults(func=cmd_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted: no partial file was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. piped into head: the reader left, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
