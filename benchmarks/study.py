"""The measured study: does asynchronous pipelining come almost for free, in samples, cycles and energy?

    python benchmarks/study.py [--quick] [--workers 2] [--scheduler tcp://HOST:PORT] [--out runs/study]
                               [--only epsilon depth update_time staleness lenet]

Runs every experiment as resumable sweeps (a finished point is not run again: rerun the same
command after an interruption), then writes the tables between the STUDY markers of
docs/results.md and the figures in docs/figures/. ``--quick`` is a smoke run (2 seeds, short
runs, a coarse grid) that writes its tables to runs/study-quick/results.md and its figures
to docs/figures/quick/ (neither committed), leaving docs/results.md alone.

The common setting (chosen because every device below trains on it, docs/results.md says how):
scikit-learn's 8x8 digits, an 8-layer tanh MLP (7 hidden layers of 32, init_scale 2, so that
K = 8 puts one layer on each accelerator), micro-batches of one sample, M = 8, lr = 0.02 for
every schedule and device with ``train.minibatch_reduction: sum`` (every sample gets the same
step whatever the schedule: the like-with-like convention; the depth experiment also shows
``mean``, aihwkit's mini-batch average, for GPipe), stochastic pulse trains of BL 31, noisy
reads, seeds 0-4. Every number is a mean with a 95 % t-interval over the seeds; a count says
how many seeds reached a target.

Experiments (the names ``--only`` takes):

- ``epsilon`` (claim a): samples until the running minimum of the full-batch squared gradient
  norm reaches epsilon, for epsilon on a geometric grid, for digital SGD (ideal device, exact
  reads), analog SGD on aihwkit's ConstantStepDevice (synchronous: sequential and GPipe;
  asynchronous at K = 2, 4, 8) and Tiki-Taka on aihwkit's default soft-bounds device; a
  log-log figure with fitted slopes.
- ``depth`` (claim b): K = 1, 2, 4, 8 for sequential (K = 1 and 8), gpipe and async, under
  ``ideal`` and ``rf25`` + ``isaac32``, for ConstantStepDevice, aihwkit's EcRamPresetDevice
  and Tiki-Taka: final accuracy, samples, cycles and energy to a target every one reaches.
- ``update_time``: at K = 4, ``timing.pulse_slot_ns`` swept under rf25: the async / GPipe cycle
  ratio against the update-to-read time ratio, and the crossover.
- ``staleness``: async against async_stash and sequential at K = 2, 4, 8.
- ``lenet``: the LeNet-style digits network under gpipe and async at K = 2 and 4 with Tiki-Taka.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

import aimcsim
from aimcsim.sweep import point_name
from doc_tables import write_between

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- BEGIN STUDY (written by benchmarks/study.py) -->", "<!-- END STUDY -->"

NETWORK = {"hidden": [32] * 7, "activation": "tanh", "loss": "cross_entropy", "init_scale": 2.0}
PERFECT_IO = {"forward": {"perfect": True}, "backward": {"perfect": True}}
TIKI_TAKA = {"type": "transfer_compound", "unit_cell_devices": [{"type": "soft_bounds"}, {"type": "soft_bounds"}],
             "gamma": 0.0, "transfer_every": 1.0}
DEVICES = {  # name -> (device section, io section)
    "digital": ({"type": "ideal"}, PERFECT_IO),
    "constant_step": ({"type": "constant_step"}, {}),
    "EcRamPresetDevice": ({"preset": "EcRamPresetDevice"}, {}),
    "tiki_taka": (TIKI_TAKA, {}),
}
TIMINGS = {"ideal": ({"preset": "ideal"}, {"preset": "none"}), "rf25": ({"preset": "rf25"}, {"preset": "isaac32"})}


def config(device: str, schedule: str = "async", stages: int = 1, timing: str = "ideal", epochs: float = 3,
           eval_every: int = 250, target: dict | None = None, reduction: str = "sum") -> dict:
    """One point of the study's common setting."""
    dev, io = DEVICES[device]
    timing_section, energy_section = TIMINGS[timing]
    return {
        "seed": 0, "data": {"name": "digits"}, "model": dict(NETWORK), "device": dev, "io": io,
        "update": {"pulse_type": "stochastic_compressed", "desired_bl": 31},
        "pipeline": {"schedule": schedule, "stages": stages, "microbatches": 8, "microbatch_size": 1},
        "timing": dict(timing_section), "energy": dict(energy_section),
        "train": {"lr": 0.02, "epochs": epochs, "eval_every": eval_every, "minibatch_reduction": reduction,
                  "target": target or {"metric": "test_accuracy", "value": 0.8}},
    }


@dataclass
class Sweep:
    """One resumable sweep of the study: a base config and a grid (seeds are added)."""

    name: str
    base: dict
    grid: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)  # extra columns for the results (device, variant, ...)


@dataclass
class Scale:
    """How big the study is: seeds, epochs and grids (the full study, or ``--quick``)."""

    seeds: int
    epochs: float
    depth_stages: tuple[int, ...]
    pulse_slots: tuple[float, ...]
    lenet_epochs: float
    eps_every: int


FULL = Scale(seeds=5, epochs=3, depth_stages=(1, 2, 4, 8), pulse_slots=(0.5, 1, 2, 5, 10, 20, 50),
             lenet_epochs=2, eps_every=100)
QUICK = Scale(seeds=2, epochs=0.4, depth_stages=(1, 4), pulse_slots=(1, 10), lenet_epochs=0.1, eps_every=100)


# ----------------------------------------------------------------------------- experiments
def epsilon_sweeps(s: Scale) -> list[Sweep]:
    target = {"metric": "grad_norm_sq", "value": 1e-9}  # never met: the runs go the whole budget
    out = []
    variants = [("digital", "sequential", 1), ("constant_step", "sequential", 1), ("constant_step", "gpipe", 4),
                ("constant_step", "async", 2), ("constant_step", "async", 4), ("constant_step", "async", 8),
                ("tiki_taka", "sequential", 1), ("tiki_taka", "async", 4)]
    for device, schedule, k in variants:
        base = config(device, schedule, k, epochs=s.epochs, eval_every=s.eps_every, target=target)
        out.append(Sweep(f"epsilon/{device}-{schedule}-k{k}", base, {},
                         {"device": device, "schedule": schedule, "K": k}))
    return out


def depth_sweeps(s: Scale) -> list[Sweep]:
    out = []
    for device in ("constant_step", "EcRamPresetDevice", "tiki_taka"):
        for timing in TIMINGS:
            for schedule in ("gpipe", "async", "sequential"):
                stages = [k for k in s.depth_stages if schedule != "sequential" or k in (1, max(s.depth_stages))]
                base = config(device, schedule, timing=timing, epochs=s.epochs)
                out.append(Sweep(f"depth/{device}-{timing}-{schedule}", base, {"pipeline.stages": stages},
                                 {"device": device, "timing": timing, "schedule": schedule, "reduction": "sum"}))
    # the alternative convention: GPipe averaging its M micro-batches (aihwkit's mini-batch SGD)
    base = config("constant_step", "gpipe", timing="ideal", epochs=s.epochs, reduction="mean")
    out.append(Sweep("depth/constant_step-ideal-gpipe-mean", base, {"pipeline.stages": list(s.depth_stages)},
                     {"device": "constant_step", "timing": "ideal", "schedule": "gpipe", "reduction": "mean"}))
    return out


def update_time_sweeps(s: Scale) -> list[Sweep]:
    out = []
    for schedule in ("gpipe", "async"):
        base = config("constant_step", schedule, 4, timing="rf25", epochs=min(s.epochs, 1))
        out.append(Sweep(f"update_time/{schedule}", base, {"timing.pulse_slot_ns": list(s.pulse_slots)},
                         {"schedule": schedule}))
    return out


def staleness_sweeps(s: Scale) -> list[Sweep]:
    out = []
    for schedule in ("async", "async_stash"):
        base = config("constant_step", schedule, epochs=s.epochs)
        out.append(Sweep(f"staleness/{schedule}", base, {"pipeline.stages": [2, 4, 8]}, {"schedule": schedule}))
    out.append(Sweep("staleness/sequential", config("constant_step", "sequential", 1, epochs=s.epochs), {},
                     {"schedule": "sequential"}))
    return out


def lenet_sweeps(s: Scale) -> list[Sweep]:
    cfg = yaml.safe_load((ROOT / "configs" / "lenet_digits.yaml").read_text())
    cfg["device"] = {**TIKI_TAKA, "unit_cell_devices": [{"type": "soft_bounds", "w_max": 6.0, "w_min": -6.0}] * 2}
    cfg["train"].update({"epochs": s.lenet_epochs, "minibatch_reduction": "sum"})
    cfg["pipeline"]["microbatches"] = 8
    out = []
    for schedule in ("gpipe", "async"):
        base = {**cfg, "pipeline": {**cfg["pipeline"], "schedule": schedule}}
        out.append(Sweep(f"lenet/{schedule}", base, {"pipeline.stages": [2, 4]}, {"schedule": schedule}))
    return out


EXPERIMENTS = {"epsilon": epsilon_sweeps, "depth": depth_sweeps, "update_time": update_time_sweeps,
               "staleness": staleness_sweeps, "lenet": lenet_sweeps}


def run(sweeps: list[Sweep], seeds: int, out: Path, workers: int, scheduler: str | None) -> pd.DataFrame:
    """Every sweep (resumable), its results with the sweep's labels and a ``point`` directory column."""
    frames = []
    for sw in sweeps:
        grid = {**sw.grid, "seed": list(range(seeds))}
        table = aimcsim.sweep(sw.base, grid, out=out / sw.name, workers=workers, scheduler=scheduler, quiet=True)
        table["point"] = [str(out / sw.name / point_name({k: _plain(row[k]) for k in grid}))
                          for _, row in table.iterrows()]
        for key, value in sw.labels.items():
            table[key] = value
        table["sweep"] = sw.name
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def _plain(value):
    """A results-table value as the sweep's grid spelled it (numpy scalars to Python, 4.0 to 4)."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


# --------------------------------------------------------------------------------- statistics
def mean_ci(values) -> tuple[float, float, int]:
    """Mean, half-width of its 95 % t-interval, and how many values there were (NaN: not reached)."""
    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    if len(v) == 1:
        return float(v[0]), math.nan, 1
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))), len(v)


def fmt(values, spec: str, total: int | None = None) -> str:
    """'mean ± half-width' (with 'n/total' when not every seed has a value), or 'not reached'."""
    mean, half, n = mean_ci(values)
    total = len(values) if total is None else total
    if n == 0:
        return f"not reached (0/{total})"
    text = format(mean, spec) + ("" if math.isnan(half) else f" ± {format(half, spec)}")
    return text + (f" ({n}/{total})" if n < total else "")


# ----------------------------------------------------------------------------------- reports
def epsilon_report(r: pd.DataFrame, figures: Path) -> list[str]:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    curves = {}
    for _, row in r.iterrows():
        m = pd.read_csv(Path(row["point"]) / "metrics.csv")
        running = m["grad_norm_sq"].cummin().to_numpy()
        curves.setdefault(row["sweep"], []).append((m["samples"].to_numpy(), running))
    floor = [min(c[1].min() for c in runs) for runs in curves.values()]
    start = min(c[1][0] for runs in curves.values() for c in runs)  # every run starts above the grid
    lo = float(np.median(floor))
    eps = np.geomspace(start / 2, max(lo, start / 200), 8)  # a geometric grid over the range the runs cover
    lines = ["### Claim (a): samples until min ‖∇f‖² ≤ ε", "",
             "Samples until the running minimum of the full-batch squared gradient norm (evaluated every "
             f"{int(np.diff(next(iter(curves.values()))[0][0])[0])} samples) first reaches ε; mean ± 95 % interval over the seeds that reach it (count when not all do). "
             "Slope: least-squares fit of log(samples) on log(1/ε) over the reached points, ± 95 % interval.", "",
             "| variant | " + " | ".join(f"ε = {e:.3g}" for e in eps) + " | slope |",
             "|---|" + "---|" * (len(eps) + 1)]
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, runs in curves.items():
        reach = np.array([[s[np.argmax(c <= e)] if (c <= e).any() else np.nan for e in eps] for s, c in runs])
        cells = [fmt(list(reach[:, j]), ",.0f") for j in range(len(eps))]
        x = np.log(1 / np.repeat(eps[None, :], len(runs), 0)).ravel()
        y = np.log(reach).ravel()
        ok = np.isfinite(y)
        slope = "n/a"
        if ok.sum() >= 3 and len(set(x[ok])) >= 2:
            fit = stats.linregress(x[ok], y[ok])
            slope = f"{fit.slope:.2f} ± {stats.t.ppf(0.975, ok.sum() - 2) * fit.stderr:.2f}"
        lines.append(f"| {name.split('/')[1]} | " + " | ".join(cells) + f" | {slope} |")
        means = np.array([mean_ci(list(reach[:, j]))[0] for j in range(len(eps))])
        ax.plot(1 / eps, means, marker="o", label=name.split("/")[1])
    ax.set(xscale="log", xlabel="1 / ε", ylabel="samples until min ‖∇f‖² ≤ ε",
           title="claim (a): iterations to an ε-stationary point")
    if any(np.isfinite(line.get_ydata()).any() for line in ax.get_lines()):
        ax.set_yscale("log")  # (a smoke run may reach no epsilon)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figures / "epsilon.png", dpi=120)
    plt.close(fig)
    return [*lines, "", "![epsilon](figures/epsilon.png)", ""]


def depth_report(r: pd.DataFrame, figures: Path) -> list[str]:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    lines = ["### Claim (b): pipeline depth", "",
             "Target: test accuracy ≥ 0.8. Mean ± 95 % interval over seeds.", ""]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for device, d in r.groupby("device", sort=False):
        lines += [f"#### {device}", "",
                  "| timing | schedule | K | final test accuracy | samples to target | cycles to target | "
                  "energy to target (µJ) |", "|---|---|---|---|---|---|---|"]
        for (timing, schedule, reduction), g in d.groupby(["timing", "schedule", "reduction"], sort=False):
            for k, p in g.groupby("pipeline.stages"):
                energy = p["energy_complexity_pj"] / 1e6 if timing == "rf25" else None
                label = schedule + (" (mean)" if reduction == "mean" else "")
                lines.append(f"| {timing} | {label} | {k} | {fmt(list(p['final_test_accuracy']), '.3f')} | "
                             f"{fmt(list(p['sample_complexity']), ',.0f')} | {fmt(list(p['cycle_complexity']), ',.0f')} | "
                             f"{'—' if energy is None else fmt(list(energy), ',.2f')} |")
        lines.append("")
    rf = r[(r["timing"] == "rf25") & (r["reduction"] == "sum")]
    for ax, (device, d) in zip(axes, rf.groupby("device", sort=False)):
        for schedule, g in d.groupby("schedule", sort=False):
            ks = sorted(g["pipeline.stages"].unique())
            means = [mean_ci(list(g[g["pipeline.stages"] == k]["cycle_complexity"]))[0] for k in ks]
            ax.plot(ks, means, marker="o", label=schedule)
        ax.set(xscale="log", xlabel="K (accelerators)", ylabel="cycles to test accuracy 0.8", title=f"{device}, rf25")
        if any(line.get_ydata().size and np.nanmax(line.get_ydata()) > 0 for line in ax.get_lines()):
            ax.set_yscale("log")  # (a smoke run may reach no target)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figures / "depth.png", dpi=120)
    plt.close(fig)
    return [*lines, "![depth](figures/depth.png)", ""]


def update_time_report(r: pd.DataFrame, figures: Path) -> list[str]:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    r = r.assign(per_sample=r["cycles"] / r["samples"])
    by = r.groupby(["timing.pulse_slot_ns", "schedule"])["per_sample"].mean().unstack()
    ratio = by["async"] / by["gpipe"]
    read_ns = 40.0  # rf25's analog read of one vector
    update_over_read = (31 * by.index.to_numpy() + 5.9) / read_ns  # one vector's update (BL 31) over one read
    lines = ["### When does the update's time eat the gain? (K = 4, rf25)", "",
             "| pulse_slot_ns | update / read time | gpipe cycles per sample | async cycles per sample | async / gpipe |",
             "|---|---|---|---|---|"]
    for (slot, row), u in zip(by.iterrows(), update_over_read):
        lines.append(f"| {slot:g} | {u:.1f} | {row['gpipe']:,.0f} | {row['async']:,.0f} | {row['async'] / row['gpipe']:.2f} |")
    cross = update_over_read[np.argmax(ratio.to_numpy() >= 1)] if (ratio >= 1).any() else None
    lines += ["", "Crossover (async no faster than GPipe): " +
              (f"at an update / read time ratio of about {cross:.1f}." if cross is not None else
               "not within the swept range: async stays faster."), ""]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(update_over_read, ratio.to_numpy(), marker="o")
    ax.axhline(1, color="grey", ls="--")
    ax.set(xscale="log", xlabel="update time / read time (one vector)", ylabel="async / gpipe cycles per sample",
           title="K = 4, rf25")
    fig.tight_layout()
    fig.savefig(figures / "update_time.png", dpi=120)
    plt.close(fig)
    return [*lines, "![update time](figures/update_time.png)", ""]


def staleness_report(r: pd.DataFrame, figures: Path) -> list[str]:
    lines = ["### What staleness costs, separated (ConstantStepDevice, ideal timing)", "",
             "| schedule | K | final test accuracy | final train loss | samples to target | max staleness |",
             "|---|---|---|---|---|---|"]
    for (schedule, k), p in r.groupby(["schedule", "pipeline.stages"], sort=False, dropna=False):
        stale = max(max(json.loads(s)) if isinstance(s, str) else max(s) for s in p["staleness"])
        k = 1 if (isinstance(k, float) and math.isnan(k)) else int(k)
        lines.append(f"| {schedule} | {k} | {fmt(list(p['final_test_accuracy']), '.3f')} | "
                     f"{fmt(list(p['final_train_loss']), '.3f')} | {fmt(list(p['sample_complexity']), ',.0f')} | "
                     f"{stale} |")
    return [*lines, ""]


def lenet_report(r: pd.DataFrame, figures: Path) -> list[str]:
    lines = ["### A convolutional network (LeNet-style digits, Tiki-Taka, rf25)", "",
             "| schedule | K | final test accuracy | samples to target | cycles to target |", "|---|---|---|---|---|"]
    for (schedule, k), p in r.groupby(["schedule", "pipeline.stages"], sort=False):
        lines.append(f"| {schedule} | {k} | {fmt(list(p['final_test_accuracy']), '.3f')} | "
                     f"{fmt(list(p['sample_complexity']), ',.0f')} | {fmt(list(p['cycle_complexity']), ',.0f')} |")
    return [*lines, ""]


REPORTS = {"epsilon": epsilon_report, "depth": depth_report, "update_time": update_time_report,
           "staleness": staleness_report, "lenet": lenet_report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 seeds, short runs, coarse grids")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler", default=None, help="a Dask scheduler address instead of the local pool")
    parser.add_argument("--out", default=None, help="runs directory (default runs/study, or runs/study-quick)")
    parser.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), default=list(EXPERIMENTS))
    args = parser.parse_args()
    scale = QUICK if args.quick else FULL
    out = Path(args.out or ("runs/study-quick" if args.quick else "runs/study"))
    figures = ROOT / "docs" / "figures" / ("quick" if args.quick else "")
    figures.mkdir(parents=True, exist_ok=True)
    sections, t0 = [], time.perf_counter()
    n_points = 0
    for name in args.only:
        t1 = time.perf_counter()
        results = run(EXPERIMENTS[name](scale), scale.seeds, out, args.workers, args.scheduler)
        n_points += len(results)
        results.to_csv(out / f"{name}.csv", index=False)
        sections += REPORTS[name](results, figures)
        print(f"{name}: {len(results)} points in {time.perf_counter() - t1:.0f} s", flush=True)
    wall = time.perf_counter() - t0
    header = (f"{n_points} runs, {scale.seeds} seeds each, in {wall / 60:.1f} min on {args.workers} workers "
              f"({n_points / (wall / 60):.1f} points per minute; a rerun of finished points costs nothing).")
    print(header)
    doc = out / "results.md" if args.quick else ROOT / "docs" / "results.md"
    print(f"wrote {write_between(doc, BEGIN, END, chr(10).join([header, '', *sections]))}")


if __name__ == "__main__":
    main()
