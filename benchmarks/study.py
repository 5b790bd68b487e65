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
``mean``, aihwkit's mini-batch average, for GPipe), Tiki-Taka transferring once per sample's
update under every schedule (``transfer_every: 1/M`` on a GPipe flush; the depth experiment
also shows aihwkit's once per update call), stochastic pulse trains of BL 31, noisy reads,
seeds 0-4. Every number is a mean with a 95 % t-interval over the seeds; a count says how
many seeds reached a target. All points run as one batch on one pool (or Dask cluster).

Experiments (the names ``--only`` takes):

- ``epsilon`` (claim a): samples until the full-batch squared gradient norm first reaches
  epsilon, for epsilon on a geometric grid over a decade, with the step tied to the target
  (lr = 0.04 epsilon, as the theorem picks it) and the run stopped there; for digital SGD
  (ideal device, exact reads), analog SGD on aihwkit's ConstantStepDevice (synchronous:
  sequential; asynchronous at K = 2, 4, 8) and Tiki-Taka on aihwkit's default soft-bounds
  device; a log-log figure with fitted slopes.
- ``depth`` (claim b): K = 1, 2, 4, 8 for sequential (K = 1 and 8), gpipe and async, under
  ``ideal`` and ``rf25`` + ``isaac32``, for ConstantStepDevice, aihwkit's EcRamPresetDevice
  and Tiki-Taka: final accuracy, samples, cycles and energy to a target every one reaches.
- ``update_time``: at K = 4, ``timing.pulse_slot_ns`` swept under rf25: the async / GPipe cycle
  ratio against the update-to-read time ratio (measured in the traces), and the crossover.
- ``staleness``: async against async_stash and sequential at K = 2, 4, 8.
- ``lenet``: the LeNet-style digits network under gpipe and async at K = 2 and 4 with Tiki-Taka
  (and sequential as the reference).
"""

from __future__ import annotations

import argparse
import itertools
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
from aimcsim.sim.schedules import SCHEDULES, is_synchronous
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
    "soft_bounds": ({"type": "soft_bounds"}, {}),
    "tiki_taka": (TIKI_TAKA, {}),
}
MICROBATCHES = 8
TIMINGS = {"ideal": ({"preset": "ideal"}, {"preset": "none"}), "rf25": ({"preset": "rf25"}, {"preset": "isaac32"})}


def transfer_per_sample(device: dict, schedule: str, microbatches: int) -> dict:
    """A Tiki-Taka device that transfers once per sample's update under every schedule.

    aihwkit's ``units_in_mbatch: true`` counts ``transfer_every`` in update calls: a per-sample
    schedule makes one call per sample, a GPipe flush one call for its M micro-batches, which
    would transfer M times less often per sample. ``transfer_every: 1/M`` on the flush restores
    one transfer per sample's rows (for a convolution too, whose sample has many rows)."""
    if device.get("type") != "transfer_compound" or schedule != "gpipe":
        return device
    return {**device, "transfer_every": device["transfer_every"] / microbatches}


def config(device: str, schedule: str = "async", stages: int = 1, timing: str = "ideal", epochs: float = 3,
           eval_every: int = 250, target: dict | None = None, reduction: str = "sum") -> dict:
    """One point of the study's common setting."""
    dev, io = DEVICES[device]
    dev = transfer_per_sample(dev, schedule, MICROBATCHES)
    timing_section, energy_section = TIMINGS[timing]
    cfg = {
        "seed": 0, "data": {"name": "digits"}, "model": dict(NETWORK), "device": dev, "io": io,
        "pipeline": {"schedule": schedule, "stages": stages, "microbatch_size": 1},
        "timing": dict(timing_section), "energy": dict(energy_section),
        "train": {"lr": 0.02, "epochs": epochs, "eval_every": eval_every,
                  "target": target or {"metric": "test_accuracy", "value": 0.8}},
    }
    return with_schedule_keys(cfg, schedule, reduction)


def with_schedule_keys(cfg: dict, schedule: str, reduction: str = "sum") -> dict:
    """The keys only some settings read, where they apply (aimcsim refuses a key nothing reads):
    M micro-batches and their reduction for a synchronous flush, pulse trains for a pulsed device."""
    cfg = {**cfg, "pipeline": dict(cfg["pipeline"]), "train": dict(cfg["train"])}
    if SCHEDULES[schedule].minibatches:
        cfg["pipeline"]["microbatches"] = MICROBATCHES
    if is_synchronous(schedule, cfg["pipeline"].get("update")):
        cfg["train"]["minibatch_reduction"] = reduction
    if cfg["device"].get("type") != "ideal":
        cfg["update"] = {"pulse_type": "stochastic_compressed", "desired_bl": 31}
    return cfg


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
    epsilons: tuple[float, ...]
    eps_epochs: float  # the budget of an epsilon run (it stops when it meets its epsilon)


FULL = Scale(seeds=5, epochs=3, depth_stages=(1, 2, 4, 8), pulse_slots=(0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 200),
             lenet_epochs=2, epsilons=tuple(float(e) for e in np.geomspace(0.5, 0.05, 5)), eps_epochs=40)
QUICK = Scale(seeds=2, epochs=0.4, depth_stages=(1, 4), pulse_slots=(1, 10), lenet_epochs=0.1,
              epsilons=(0.5, 0.35), eps_epochs=2)

# claim (a): digital SGD, synchronous analog SGD (sequential: per-sample steps, as GPipe with M = 1),
# asynchronous analog SGD at K = 2, 4, 8 on ConstantStepDevice, Tiki-Taka on aihwkit's default soft
# bounds, and analog SGD on those soft bounds (where the asymmetry floor stops it)
EPS_VARIANTS = [("digital", "sequential", 1), ("constant_step", "sequential", 1), ("constant_step", "async", 2),
                ("constant_step", "async", 4), ("constant_step", "async", 8), ("tiki_taka", "sequential", 1),
                ("soft_bounds", "sequential", 1)]
EPS_LR = 0.04  # lr = EPS_LR x epsilon (0.02 at epsilon 0.5, the depth experiment's rate)


# ----------------------------------------------------------------------------- experiments
def epsilon_sweeps(s: Scale) -> list[Sweep]:
    """One sweep per (variant, epsilon): the step tied to the target (lr = EPS_LR x epsilon, the
    theorem's choice of step for an epsilon-stationary point) and the run stopped when it is met."""
    out = []
    for eps, (device, schedule, k) in itertools.product(sorted(s.epsilons), EPS_VARIANTS):
        target = {"metric": "grad_norm_sq", "value": eps}
        base = config(device, schedule, k, epochs=s.eps_epochs, eval_every=eps_eval_every(eps), target=target)
        base["train"].update({"lr": EPS_LR * eps, "stop_at_target": True})
        out.append(Sweep(f"epsilon/{device}-{schedule}-k{k}/eps={eps:.3g}", base, {},
                         {"device": device, "schedule": schedule, "K": k, "eps": eps}))
    return out


def eps_eval_every(eps: float) -> int:
    """Evaluate often enough that samples-to-epsilon carries a few per cent of grid error (the
    expected count grows about as 1/epsilon^1.2 to 1/epsilon^1.5 from ~1,500 samples at epsilon 0.5)."""
    return int(max(25, 25 * round(1500 * (0.5 / eps) ** 1.2 / 40 / 25)))


def depth_sweeps(s: Scale) -> list[Sweep]:
    out = []
    for device in ("constant_step", "EcRamPresetDevice", "tiki_taka"):
        for timing in TIMINGS:
            for schedule in ("gpipe", "async", "sequential"):
                stages = [k for k in s.depth_stages if schedule != "sequential" or k in (1, max(s.depth_stages))]
                base = config(device, schedule, timing=timing, epochs=s.epochs)
                out.append(Sweep(f"depth/{device}-{timing}-{schedule}", base, {"pipeline.stages": stages},
                                 {"device": device, "timing": timing, "schedule": schedule, "variant": ""}))
    # the alternatives: GPipe averaging its M micro-batches (aihwkit's mini-batch SGD, 1/M of the step
    # per sample), and GPipe with Tiki-Taka transferring once per update call (aihwkit's default)
    base = config("constant_step", "gpipe", timing="ideal", epochs=s.epochs, reduction="mean")
    out.append(Sweep("depth/constant_step-ideal-gpipe-mean", base, {"pipeline.stages": list(s.depth_stages)},
                     {"device": "constant_step", "timing": "ideal", "schedule": "gpipe", "variant": "mean"}))
    base = config("tiki_taka", "gpipe", timing="ideal", epochs=s.epochs)
    base["device"] = {**base["device"], "transfer_every": TIKI_TAKA["transfer_every"]}  # aihwkit's default
    out.append(Sweep("depth/tiki_taka-ideal-gpipe-per_call", base, {"pipeline.stages": list(s.depth_stages)},
                     {"device": "tiki_taka", "timing": "ideal", "schedule": "gpipe", "variant": "per call"}))
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
    cfg["train"].update({"epochs": s.lenet_epochs})
    out = []
    for schedule, stages in (("sequential", [1]), ("gpipe", [2, 4]), ("async", [2, 4])):
        base = with_schedule_keys({**cfg, "pipeline": {**cfg["pipeline"], "schedule": schedule},
                                   "device": transfer_per_sample(cfg["device"], schedule, MICROBATCHES)}, schedule)
        out.append(Sweep(f"lenet/{schedule}", base, {"pipeline.stages": stages}, {"schedule": schedule}))
    return out


EXPERIMENTS = {"epsilon": epsilon_sweeps, "depth": depth_sweeps, "update_time": update_time_sweeps,
               "staleness": staleness_sweeps, "lenet": lenet_sweeps}


def run(sweeps: list[Sweep], seeds: int, out: Path, workers: int, scheduler: str | None) -> pd.DataFrame:
    """Every sweep as one resumable batch (one pool: no worker idles between sweeps), the results
    with the sweep's labels, a ``sweep`` name and a ``point`` directory column."""
    grids = [{**sw.grid, "seed": list(range(seeds))} for sw in sweeps]
    tables = aimcsim.sweeps([(sw.base, grid, out / sw.name) for sw, grid in zip(sweeps, grids)],
                            workers=workers, scheduler=scheduler, quiet=False)
    frames = []
    for sw, table in zip(sweeps, tables):
        table["point"] = [str(out / sw.name / name) for name in table["point"]]  # the run directory
        for key, value in sw.labels.items():
            table[key] = value
        table["sweep"] = sw.name
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


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
def variant_name(device: str, schedule: str, k: int) -> str:
    return f"{device}, {schedule}" + (f", K = {k}" if k > 1 else "")


def epsilon_report(r: pd.DataFrame, figures: Path) -> list[str]:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    r = r.assign(variant=[variant_name(d, s, int(k)) for d, s, k in zip(r["device"], r["schedule"], r["K"])])
    order = [variant_name(*v) for v in EPS_VARIANTS]
    variants = sorted(r["variant"].unique(), key=lambda v: order.index(v) if v in order else len(order))
    eps = sorted(r["eps"].unique(), reverse=True)
    budget = yaml.safe_load((Path(r["point"].iloc[0]) / "config.yaml").read_text())["train"]["epochs"]
    lines = ["### Claim (a): samples until ‖∇f‖² ≤ ε", "",
             f"lr = {EPS_LR:g} · ε, each run stopped at the first evaluation where the full-batch squared gradient "
             f"norm is ≤ ε (budget {budget:g} epochs). Samples: mean ± 95 % interval over the seeds that reach ε "
             "(a count when not all do). Slope: least-squares fit of log(samples) on log(1/ε) over every "
             "reaching seed, ± its 95 % interval (the worst-case bound O(ε⁻²) has slope 2). Lowest ‖∇f‖²: "
             "the smallest value the runs for the smallest ε saw (where they stop short of ε, the floor).", "",
             "| variant | " + " | ".join(f"ε = {e:.3g}" for e in eps) + " | slope | lowest ‖∇f‖² |",
             "|---|" + "---|" * (len(eps) + 2)]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for variant in variants:
        g = r[r["variant"] == variant]
        cells, means, halves = [], [], []
        for e in eps:
            p = g[g["eps"] == e]
            cells.append(fmt(list(p["sample_complexity"]), ",.0f", total=len(p)))
            mean, half, _ = mean_ci(list(p["sample_complexity"]))
            means.append(mean)
            halves.append(0.0 if math.isnan(half) else half)
        ok = g["sample_complexity"].notna()
        x, y = np.log(1 / g["eps"][ok].to_numpy(float)), np.log(g["sample_complexity"][ok].to_numpy(float))
        slope = "n/a"
        if len(set(x)) >= 3:  # a slope needs at least three epsilons reached
            fit = stats.linregress(x, y)
            slope = f"{fit.slope:.2f} ± {stats.t.ppf(0.975, len(y) - 2) * fit.stderr:.2f}"
        smallest = g[g["eps"] == eps[-1]]["point"]
        lowest = [pd.read_csv(Path(p) / "metrics.csv")["grad_norm_sq"].min() for p in smallest]
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {slope} | {fmt(lowest, '.3f')} |")
        means, halves = np.array(means), np.array(halves)
        lower = np.minimum(halves, 0.5 * means)  # a log axis cannot show an interval reaching zero
        line = ax.errorbar(1 / np.array(eps), means, yerr=[lower, halves], marker="o", capsize=3,
                           label=variant + ("" if slope == "n/a" else f" (slope {slope})"))
        stopped = [1 / e for e in eps if g[g["eps"] == e]["sample_complexity"].isna().any()]
        if stopped:  # a floor (or the budget) stops some seeds: mark where
            top = float(g["samples"].max())
            ax.plot(stopped, [top] * len(stopped), "x", color=line[0].get_color(), ms=10, mew=2)
    if r["sample_complexity"].notna().any():
        ax.set_yscale("log")  # (a smoke run may reach no epsilon)
        first = r[(r["variant"] == variants[0]) & (r["eps"] == eps[0])]["sample_complexity"]
        x0, y0 = 1 / eps[0], float(np.nanmean(first)) if first.notna().any() else 1.0
        xs = np.array([1 / eps[0], 1 / eps[-1]])
        ax.plot(xs, y0 * (xs / x0) ** 2, ls="--", color="grey", label="slope 2 (the bound's ε⁻²)")
    ax.set(xscale="log", xlabel="1 / ε", ylabel="samples until ‖∇f‖² ≤ ε",
           title="claim (a): samples to an ε-stationary point (× at the budget: some seeds never reach ε)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figures / "epsilon.png", dpi=120)
    plt.close(fig)
    return [*lines, "", "![epsilon](figures/epsilon.png)", ""]


def throughput_table(r: pd.DataFrame) -> list[str]:
    """Cycles and energy per trained sample over whole runs under rf25, and the speed-ups of async."""
    rf = r[(r["timing"] == "rf25") & (r["variant"] == "")]
    rf = rf.assign(per_sample=rf["cycles"] / rf["samples"], nj=rf["energy_per_sample_pj"] / 1e3)
    mean = rf.groupby(["device", "schedule", "pipeline.stages"])[["per_sample", "nj"]].mean()
    lines = ["#### Throughput under rf25", "",
             "Cycles per trained sample over the whole run (mean over seeds), the speed-up of async over GPipe "
             "next to the ideal clock's (M + K − 1)/M, over the K = 1 run next to K, and the energy per sample.", "",
             "| device | K | sequential | gpipe | async | gpipe / async | (M+K−1)/M | K = 1 / async | "
             "energy per sample, gpipe / async (nJ) |", "|---|---|---|---|---|---|---|---|---|"]
    for device in rf["device"].unique():
        single = mean.loc[(device, "async", 1), "per_sample"]
        for k in sorted(rf[rf["device"] == device]["pipeline.stages"].unique()):
            row = {s: mean.loc[(device, s, k)] if (device, s, k) in mean.index else None
                   for s in ("sequential", "gpipe", "async")}
            seq = "—" if row["sequential"] is None else f"{row['sequential']['per_sample']:,.0f}"
            g, a = row["gpipe"], row["async"]
            lines.append(f"| {device} | {int(k)} | {seq} | {g['per_sample']:,.0f} | {a['per_sample']:,.0f} | "
                         f"{g['per_sample'] / a['per_sample']:.2f} | {(MICROBATCHES + k - 1) / MICROBATCHES:.2f} | "
                         f"{single / a['per_sample']:.2f} | {g['nj']:.1f} / {a['nj']:.1f} |")
    return [*lines, ""]


VARIANT_LABELS = {"mean": "mean: lr/M per sample", "per call": "transfer once per update call"}


def depth_report(r: pd.DataFrame, figures: Path) -> list[str]:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    lines = ["### Claim (b): pipeline depth", "",
             "Target: test accuracy ≥ 0.8. Mean ± 95 % interval over seeds.", ""]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for device, d in r.groupby("device", sort=False):
        lines += [f"#### {device}", "",
                  "| timing | schedule | K | final test accuracy | samples to target | cycles to target | "
                  "energy to target (µJ) |", "|---|---|---|---|---|---|---|"]
        for (timing, schedule, variant), g in d.groupby(["timing", "schedule", "variant"], sort=False):
            for k, p in g.groupby("pipeline.stages"):
                energy = p["energy_complexity_pj"] / 1e6 if timing == "rf25" else None
                label = schedule + (f" ({VARIANT_LABELS[variant]})" if variant else "")
                lines.append(f"| {timing} | {label} | {int(k)} | {fmt(list(p['final_test_accuracy']), '.3f')} | "
                             f"{fmt(list(p['sample_complexity']), ',.0f')} | {fmt(list(p['cycle_complexity']), ',.0f')} | "
                             f"{'—' if energy is None else fmt(list(energy), ',.2f')} |")
        lines.append("")
    lines += throughput_table(r)
    rf = r[(r["timing"] == "rf25") & (r["variant"] == "")]
    for ax, (device, d) in zip(axes, rf.groupby("device", sort=False)):
        for schedule, g in d.groupby("schedule", sort=False):
            ks = sorted(g["pipeline.stages"].unique())
            means = [mean_ci(list(g[g["pipeline.stages"] == k]["cycle_complexity"]))[0] for k in ks]
            ax.plot(ks, means, marker="o", label=schedule)
        ax.set(xscale="log", xlabel="K (accelerators)", ylabel="cycles to test accuracy 0.8", title=f"{device}, rf25")
        ks = sorted(d["pipeline.stages"].unique())
        ax.set_xticks(ks, [str(int(k)) for k in ks])
        ax.minorticks_off()
        if any(np.isfinite(line.get_ydata()).any() for line in ax.get_lines()):
            ax.set_yscale("log")  # (a smoke run may reach no target)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figures / "depth.png", dpi=120)
    plt.close(fig)
    return [*lines, "![depth](figures/depth.png)", ""]


def op_time_ratio(r: pd.DataFrame, slot: float) -> float:
    """Mean U duration over mean F duration in one async point's trace at this pulse slot."""
    row = r[(r["timing.pulse_slot_ns"] == slot) & (r["schedule"] == "async")].iloc[0]
    trace = pd.read_csv(Path(row["point"]) / "trace.csv", usecols=["op", "start", "end"])
    duration = (trace["end"] - trace["start"]).groupby(trace["op"]).mean()
    return float(duration["U"] / duration["F"])


def update_time_report(r: pd.DataFrame, figures: Path) -> list[str]:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    r = r.assign(per_sample=r["cycles"] / r["samples"])
    by = r.groupby(["timing.pulse_slot_ns", "schedule"])["per_sample"].mean().unstack()
    ratio = by["async"] / by["gpipe"]
    update_over_read = np.array([op_time_ratio(r, slot) for slot in by.index])  # measured in the traces
    lines = ["### When does the update's time eat the gain? (K = 4, rf25)", "",
             "Update / read time: the mean duration of a U over that of an F in the seed-0 async run's trace "
             "(a U's pulse train is as long as its stochastic pulse count needs, at most BL slots).", "",
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
    ax.axhline(1, color="grey", ls="--", label="no gain")
    ax.axhline(MICROBATCHES / (MICROBATCHES + 3), color="grey", ls=":", label="ideal clock, M / (M + K − 1)")
    ax.set(xscale="log", xlabel="update time / read time (mean U / mean F in the trace)",
           ylabel="async / gpipe cycles per sample", title="K = 4, rf25")
    ax.legend(fontsize=8)
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
             f"Target: {r['target_metric'].iloc[0].replace('_', ' ')} ≥ {r['target_value'].iloc[0]:g}.", "",
             "| schedule | K | final test accuracy | samples to target | cycles to target |", "|---|---|---|---|---|"]
    for (schedule, k), p in r.groupby(["schedule", "pipeline.stages"], sort=False):
        lines.append(f"| {schedule} | {int(k)} | {fmt(list(p['final_test_accuracy']), '.3f')} | "
                     f"{fmt(list(p['sample_complexity']), ',.0f')} | {fmt(list(p['cycle_complexity']), ',.0f')} |")
    return [*lines, ""]


REPORTS = {"epsilon": epsilon_report, "depth": depth_report, "update_time": update_time_report,
           "staleness": staleness_report, "lenet": lenet_report}


def publish(header: str, sections: list[str], runs: int, wall: float, workers: int, doc: Path,
            begin: str, end: str) -> None:
    """Say how long this invocation took, and write ``header`` and ``sections`` between the
    ``begin`` / ``end`` markers of ``doc`` (a study's tables)."""
    print(f"{header} This invocation took {wall / 60:.1f} min on {workers} workers "
          f"({runs / (wall / 60):.1f} points per minute; finished points were not run again).")
    print(f"wrote {write_between(doc, begin, end, chr(10).join([header, '', *sections]))}")


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
    t0 = time.perf_counter()
    planned = {name: EXPERIMENTS[name](scale) for name in args.only}
    results = run([sw for sweeps in planned.values() for sw in sweeps], scale.seeds, out, args.workers,
                  args.scheduler)
    sections = []
    for name, sweeps in planned.items():
        part = results[results["sweep"].isin([sw.name for sw in sweeps])].reset_index(drop=True)
        part.to_csv(out / f"{name}.csv", index=False)
        sections += REPORTS[name](part, figures)
    wall = time.perf_counter() - t0
    compute = results["wall_seconds"].sum() / 60
    header = (f"{len(results)} runs, {scale.seeds} seeds each; their own run times sum to {compute:.0f} "
              f"worker-minutes.")
    publish(header, sections, len(results), wall, args.workers,
            out / "results.md" if args.quick else ROOT / "docs" / "results.md", BEGIN, END)


if __name__ == "__main__":
    main()
