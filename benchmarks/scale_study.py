"""The study at scale: the paper's question on real Fashion-MNIST, LeNet-5 and ResNet-8, planned cuts.

    python benchmarks/scale_study.py [--quick] [--workers 2] [--scheduler tcp://HOST:PORT] [--out runs/scale]
                                     [--only depth planner skips norm]

The second part of docs/results.md (the first, benchmarks/study.py on 8x8 digits, stays as it
is). Every experiment is a resumable sweep (rerun the same command after an interruption:
finished points are not run again); the tables go between the SCALE markers of
docs/results.md and the figures to docs/figures/scale_*.png. ``--quick`` is a smoke run (2
seeds, a few hundred samples, K up to 4) that writes runs/scale-quick/results.md and
docs/figures/quick/ instead.

The common setting (``NETWORKS``, ``ALGORITHMS``; docs/results.md says why): Fashion-MNIST
(Debian's dataset-fashion-mnist), the first ``max_train`` training images in the data set's
order, shuffled per epoch by the seed; test accuracy on the first ``TEST_SAMPLES`` test images
(188-219 per class), evaluated every ``eval_every`` samples (the train loss on 500 training
images); micro-batches of 8 images (batch norm needs them), M = 8 micro-batches per
synchronous mini-batch with ``minibatch_reduction: sum`` (every sample gets the same step
under every schedule, as in part 1); ``rf25`` op times with ISAAC's link bandwidth and
``isaac32`` energy; the planner's time cut (``partition: time``) unless the experiment varies
it; stochastic pulse trains of BL 31; seeds 0-2. Analog SGD on aihwkit's IdealizedPresetDevice and Tiki-Taka on aihwkit's
EcRamPresetDevice (one transfer of 64 columns per micro-batch's update under every schedule),
each at the learning rate of its own scan (the ``tune`` sweeps, run first: seed 0, K = 1, the
rate with the best mean test accuracy over the last three evaluations; GPipe, which applies M
micro-batches per flush, at the rate of a second scan at K = 2 over that rate times 1/8 to 1).

Experiments (the names ``--only`` takes; ``tune`` always runs):

- ``depth``: LeNet-5 (K = 1, 2, 4: it has four analog layers) and ResNet-8 (K = 1, 2, 4, 8)
  under sequential (K = 1), gpipe, async and async_stash, both algorithms: final accuracy,
  samples, cycles and energy to a target every variant reaches, cycles per sample.
- ``planner``: ResNet-8, analog SGD, gpipe and async with ``partition: weights`` against the
  depth experiment's time cut: cycles per sample against the ideal clock's ratio, the speed-up
  over K = 1, the planner's prediction against the measurement.
- ``skips``: ResNet-8, async, K = 4: cuts between residual blocks against cuts inside them
  (skip tensors on the links): link time, link energy and the skip tensors' share of both.
- ``norm``: ResNet-8, analog SGD, with batch, group and layer norm, sequential and async at
  K = 4: does asynchrony cost the batch-normalized network more?
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

import aimcsim
from study import Sweep, fmt, mean_ci, publish, run, transfer_per_sample

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- BEGIN SCALE (written by benchmarks/scale_study.py) -->", "<!-- END SCALE -->"
MICROBATCHES = 8
MICROBATCH_SIZE = 8
# ISAAC's chip-to-chip HyperTransport link, 6.4 GB/s (Shafiee et al., ISCA 2016), at rf25's 1 ns
# cycle; rf25 alone leaves links free in time, and the skip tensors' cost is the question here
LINK_BITS_PER_CYCLE = 51.2
TEST_SAMPLES = 2000
SEEDS = 3
SCHEDULES = ("gpipe", "async", "async_stash")


def resnet8_layers(norm: dict) -> list[dict]:
    """ResNet-8 (the ``resnet8`` preset: a 3x3 stem, basic blocks of 16, 32 and 64 channels,
    global average pooling, a linear classifier) with ``norm`` in place of its batch norms."""
    return [{"conv": {"channels": 16, "kernel": 3, "padding": 1}, "name": "stem"},
            {"norm": dict(norm), "name": "stem/norm"}, {"activation": "relu", "name": "stem/relu"},
            *({"basic_block": {"channels": c, "stride": s, "norm": dict(norm)}, "name": f"group{g}.1"}
              for g, (c, s) in enumerate(((16, 1), (32, 2), (64, 2)), start=1)),
            {"global_pool": {"kind": "avg"}, "name": "pool"}, {"linear": {}, "name": "fc"}]


NORMS = {"batch": {"kind": "batch"}, "group": {"kind": "group", "groups": 4}, "layer": {"kind": "layer"}}
NETWORKS = {  # name -> (model section, training images, evaluation interval, stages, learning rates scanned)
    "lenet5": ({"preset": "lenet5", "loss": "cross_entropy"}, 10_000, 2_000, (1, 2, 4), {
        "analog SGD (Idealized)": (0.02, 0.05, 0.1, 0.2), "Tiki-Taka (EcRAM)": (0.02, 0.05, 0.1, 0.2)}),
    "resnet8": ({"layers": resnet8_layers(NORMS["batch"]), "loss": "cross_entropy"}, 5_000, 1_000, (1, 2, 4, 8), {
        "analog SGD (Idealized)": (0.02, 0.05, 0.1, 0.2), "Tiki-Taka (EcRAM)": (0.05, 0.1, 0.2, 0.5)}),
}
ANALOG_LAYERS = {"lenet5": 4, "resnet8": 10}
ECRAM = {"preset": "EcRamPresetDevice"}
ALGORITHMS = {  # name -> device section
    "analog SGD (Idealized)": {"preset": "IdealizedPresetDevice"},
    # a sweep over every column of the widest layer (577) every 9 micro-batches: with one column per
    # transfer (aihwkit's default) the slow array of a 513-column layer hears of a gradient every 4,000 samples
    "Tiki-Taka (EcRAM)": {"type": "transfer_compound", "unit_cell_devices": [ECRAM, ECRAM], "gamma": 0.0,
                          "transfer_every": 1.0, "n_reads_per_transfer": 64},
}
SGD = next(iter(ALGORITHMS))


def config(network: str, algorithm: str, lr: float, schedule: str = "sequential", stages: int = 1,
           quick: bool = False) -> dict:
    """One point of the common setting."""
    model, n_train, eval_every, _, _ = NETWORKS[network]
    if quick:
        n_train, eval_every = 400, 200
    device = transfer_per_sample(ALGORITHMS[algorithm], schedule, MICROBATCHES)
    cfg = {"seed": 0, "data": {"name": "fashion_mnist", "max_train": n_train,
                               "max_test": 500 if quick else TEST_SAMPLES},
           "model": json.loads(json.dumps(model)), "device": device,
           "update": {"pulse_type": "stochastic_compressed", "desired_bl": 31},
           "pipeline": {"schedule": schedule, "stages": stages, "microbatch_size": MICROBATCH_SIZE},
           "timing": {"preset": "rf25"}, "energy": {"preset": "isaac32"},
           "train": {"lr": lr, "epochs": 1, "eval_every": eval_every, "eval_train_samples": 500,
                     "target": None}}
    if 1 < stages < ANALOG_LAYERS[network]:  # (one layer per stage: the only cut)
        cfg["pipeline"]["partition"] = "time"
    if stages > 1:  # (one accelerator: no links)
        cfg["timing"]["link_bits_per_cycle"] = LINK_BITS_PER_CYCLE
    if schedule == "gpipe":
        cfg["pipeline"]["microbatches"] = MICROBATCHES
        cfg["train"]["minibatch_reduction"] = "sum"
    return cfg


# ----------------------------------------------------------------------------- experiments
def tune_sweeps(quick: bool) -> list[Sweep]:
    """Each algorithm's learning rate on each network: seed 0, K = 1, the rates of ``NETWORKS``."""
    out = []
    for network, (_, _, _, _, rates) in NETWORKS.items():
        for algorithm in ALGORITHMS:
            base = config(network, algorithm, rates[algorithm][0], quick=quick)
            out.append(Sweep(f"tune/{network}/{slug(algorithm)}", base, {"train.lr": list(rates[algorithm])},
                             {"network": network, "algorithm": algorithm}))
    return out


# GPipe applies a flush of M micro-batches at once (with reduction sum, each at the full rate), so the
# per-micro-batch rate of the first scan can be M times too large a step for it: GPipe gets a scan of
# its own, the chosen per-micro-batch rate times these factors (1/M makes a flush one micro-batch's step)
FLUSH_FACTORS = (1 / 8, 1 / 4, 1 / 2, 1)


def flush_tune_sweeps(rates: dict, quick: bool) -> list[Sweep]:
    """GPipe's rate per network and algorithm: seed 0, K = 2, the chosen rate times ``FLUSH_FACTORS``."""
    out = []
    for network in NETWORKS:
        for algorithm in ALGORITHMS:
            lr = rates[(network, algorithm)]
            base = config(network, algorithm, lr, "gpipe", 2, quick)
            out.append(Sweep(f"tune/{network}/{slug(algorithm)}/gpipe", base,
                             {"train.lr": [lr * f for f in FLUSH_FACTORS]},
                             {"network": network, "algorithm": algorithm, "schedule": "gpipe"}))
    return out


def rate_for(rates: dict, network: str, algorithm: str, schedule: str) -> float:
    """The tuned rate of a schedule: GPipe's own scan, else the per-micro-batch one."""
    return rates[(network, algorithm, "gpipe")] if schedule == "gpipe" else rates[(network, algorithm)]


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def late_accuracy(point: str) -> float:
    """Mean test accuracy of a run's last three evaluations: less noisy than the last one alone."""
    return float(pd.read_csv(Path(point) / "metrics.csv")["test_accuracy"].iloc[-3:].mean())


def tuned_rates(tune: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(network, algorithm) -> the scanned rate with the best late test accuracy."""
    tune = tune.assign(late=[late_accuracy(p) for p in tune["point"]])
    best = tune.loc[tune.groupby(["network", "algorithm"])["late"].idxmax()]
    return {(n, a): float(lr) for n, a, lr in zip(best["network"], best["algorithm"], best["train.lr"])}


def stages_of(network: str, quick: bool) -> tuple[int, ...]:
    stages = NETWORKS[network][3]
    return tuple(k for k in stages if k <= 4) if quick else stages


def depth_sweeps(rates: dict, quick: bool) -> list[Sweep]:
    out = []
    for network in NETWORKS:
        for algorithm in ALGORITHMS:
            labels = {"network": network, "algorithm": algorithm, "rule": "time"}
            out.append(Sweep(f"depth/{network}/{slug(algorithm)}/sequential",
                             config(network, algorithm, rates[(network, algorithm)], quick=quick), {},
                             {**labels, "schedule": "sequential"}))
            ks = [k for k in stages_of(network, quick) if k > 1]
            for schedule in SCHEDULES:
                lr = rate_for(rates, network, algorithm, schedule)
                out.append(Sweep(f"depth/{network}/{slug(algorithm)}/{schedule}",
                                 config(network, algorithm, lr, schedule, ks[0], quick), {"pipeline.stages": ks},
                                 {**labels, "schedule": schedule}))
    return out


def cut_of(network: str, stages: int, rule: str) -> list[int]:
    """The cut the rule gives (the time rule probes the network as a run would)."""
    from aimcsim.sim import Engine  # noqa: PLC0415

    cfg = config(network, SGD, 0.01, "async", stages, quick=True)
    cfg["pipeline"]["partition"] = rule
    return list(Engine(aimcsim.load_config(cfg)).partition)


def planner_sweeps(rates: dict, quick: bool) -> list[Sweep]:
    """The weights cut at every K where it differs from the time cut (else its runs would repeat
    the depth experiment's)."""
    ks = [k for k in stages_of("resnet8", quick) if k > 1 and cut_of("resnet8", k, "weights") != cut_of("resnet8", k, "time")]
    out = []
    for schedule in ("gpipe", "async"):
        base = config("resnet8", SGD, rate_for(rates, "resnet8", SGD, schedule), schedule, ks[0], quick)
        base["pipeline"]["partition"] = "weights"
        out.append(Sweep(f"planner/{schedule}", base, {"pipeline.stages": ks},
                         {"network": "resnet8", "algorithm": SGD, "schedule": schedule, "rule": "weights"}))
    return out


# ResNet-8's ten analog layers in order: stem | group1: conv1 conv2 | group2: conv1 conv2 shortcut |
# group3: conv1 conv2 shortcut | fc. Cuts after a block's last layer carry one tensor; cuts inside a
# block also carry the block's input to its addition (the skip tensor).
SKIP_CUTS = {"between blocks": [3, 3, 3, 1], "inside blocks": [2, 3, 3, 2]}
SKIP_SAMPLES = 1_024


def skip_sweeps(rates: dict, quick: bool) -> list[Sweep]:
    lr = rates[("resnet8", SGD)]
    out = []
    for name, cut in SKIP_CUTS.items():
        base = config("resnet8", SGD, lr, "async", 4, quick)
        base["pipeline"]["partition"] = list(cut)
        base["data"]["max_train"] = 256 if quick else SKIP_SAMPLES
        base["train"]["eval_every"] = base["data"]["max_train"]
        out.append(Sweep(f"skips/{slug(name)}", base, {}, {"cuts": name}))
    return out


def norm_sweeps(rates: dict, quick: bool) -> list[Sweep]:
    lr = rates[("resnet8", SGD)]
    out = []
    for norm, options in NORMS.items():
        if norm == "batch":
            continue  # the depth experiment's runs
        for schedule, k in (("sequential", 1), ("async", 4)):
            base = config("resnet8", SGD, lr, schedule, k, quick)
            base["model"]["layers"] = resnet8_layers(options)
            out.append(Sweep(f"norm/{norm}/{schedule}", base, {},
                             {"norm": norm, "schedule": schedule, "pipeline.stages": k}))
    return out


EXPERIMENTS = {"depth": depth_sweeps, "planner": planner_sweeps, "skips": skip_sweeps, "norm": norm_sweeps}


# --------------------------------------------------------------------------------- measures
def to_target(point: str, target: float) -> tuple[float, float, float]:
    """(samples, cycles, energy in µJ) at the run's first evaluation with test accuracy >= target
    (NaN if none)."""
    m = pd.read_csv(Path(point) / "metrics.csv")
    hit = m[m["test_accuracy"] >= target]
    if hit.empty:
        return math.nan, math.nan, math.nan
    row = hit.iloc[0]
    return float(row["samples"]), float(row["cycles"]), float(row.get("energy_pj", math.nan)) / 1e6


def common_target(runs: pd.DataFrame) -> float:
    """The highest test accuracy, in steps of 0.05, that at least two thirds of every variant's
    seeds reach at some evaluation: a target every schedule reaches (counts say where a seed does not)."""
    best = [pd.read_csv(Path(p) / "metrics.csv")["test_accuracy"].max() for p in runs["point"]]
    runs = runs.assign(best=best)
    share = lambda t: runs.groupby(["algorithm", "schedule", "pipeline.stages"], dropna=False)["best"].apply(  # noqa: E731
        lambda b: (b >= t).mean()).min()
    target = 0.05
    while target + 0.05 < 1 and share(round(target + 0.05, 2)) >= 2 / 3:
        target = round(target + 0.05, 2)
    return target


def with_targets(runs: pd.DataFrame, target: float) -> pd.DataFrame:
    values = [to_target(p, target) for p in runs["point"]]
    return runs.assign(samples_to=[v[0] for v in values], cycles_to=[v[1] for v in values],
                       energy_to=[v[2] for v in values])


def with_summary(runs: pd.DataFrame, keys: tuple[str, ...] = ("partition", "predicted_cycles_per_sample")) -> pd.DataFrame:
    """``runs`` with summary fields that results.csv does not carry (read from each point's summary.json)."""
    summaries = [json.loads((Path(p) / "summary.json").read_text()) for p in runs["point"]]
    return runs.assign(**{key: [str(s.get(key)) if key == "partition" else s.get(key) for s in summaries]
                          for key in keys})


def stages_column(runs: pd.DataFrame) -> pd.DataFrame:
    """K as an int column (a sweep without a stages grid has none)."""
    k = runs["pipeline.stages"] if "pipeline.stages" in runs else pd.Series(1, index=runs.index)
    return runs.assign(K=k.fillna(1).astype(int))


def ideal_ratio(k: int) -> float:
    """GPipe's cycles per sample over async's on the paper's clock: (M + K - 1) / M."""
    return (MICROBATCHES + k - 1) / MICROBATCHES


def per_sample(runs: pd.DataFrame) -> pd.Series:
    return runs["cycles"] / runs["samples"]


# ----------------------------------------------------------------------------------- reports
def _label_log_axes(ax) -> None:
    """Log axes whose range spans less than a decade: no unlabelled minor ticks on K, and
    plain numbers on every y tick (matplotlib labels only powers of ten otherwise)."""
    from matplotlib.ticker import NullLocator, ScalarFormatter  # noqa: PLC0415

    ax.xaxis.set_minor_locator(NullLocator())
    for formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        f = ScalarFormatter()
        f.set_scientific(False)
        formatter(f)


def depth_report(r: pd.DataFrame, figures: Path) -> list[str]:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    r = with_summary(stages_column(r))
    lines = ["### Depth and schedule", ""]
    fig, axes = plt.subplots(1, 2 * len(NETWORKS) // 2 * 2, figsize=(16, 4))
    panel = 0
    for network, g in r.groupby("network", sort=False):
        target = common_target(g)
        g = with_targets(g, target)
        lines += [f"#### {network}: target test accuracy {target:.2f}", "",
                  f"Mean ± 95 % interval over {g['seed'].nunique()} seeds (a count where not every seed reaches "
                  "the target); *K = 1 / this* and *gpipe / async* are ratios of the mean cycles per sample, the "
                  "ideal clock's (M + K − 1)/M in brackets.", "",
                  "| algorithm | schedule | K | cut | final test accuracy | samples to target | cycles to target "
                  "| energy to target (µJ) | cycles per sample | K = 1 / this | gpipe / async (ideal) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for algorithm, a in g.groupby("algorithm", sort=False):
            cps = a.assign(cps=per_sample(a)).groupby(["schedule", "K"])["cps"].mean()
            single = cps[("sequential", 1)]
            for (schedule, k), p in a.groupby(["schedule", "K"], sort=False):
                ratio = ""
                if schedule == "async" and ("gpipe", k) in cps:
                    ratio = f"{cps[('gpipe', k)] / cps[(schedule, k)]:.2f} ({ideal_ratio(k):.2f})"
                cut = p["partition"].iloc[0]
                lines.append(f"| {algorithm} | {schedule} | {k} | {cut} | {fmt(list(p['final_test_accuracy']), '.3f')} | "
                             f"{fmt(list(p['samples_to']), ',.0f')} | {fmt(list(p['cycles_to']), ',.3g')} | "
                             f"{fmt(list(p['energy_to']), ',.1f')} | {fmt(list(per_sample(p)), ',.0f')} | "
                             f"{single / cps[(schedule, k)]:.2f} | {ratio} |")
            ax = axes[panel]
            panel += 1
            for schedule, s in a.groupby("schedule", sort=False):
                ks = sorted(s["K"].unique())
                means = [mean_ci(list(s[s["K"] == k]["cycles_to"]))[0] / 1e6 for k in ks]
                ax.plot(ks, means, marker="o", label=schedule)
            ax.set(xscale="log", xlabel="K (accelerators)",
                   ylabel=f"million cycles to accuracy {target:.2f} (mean of seeds)",
                   title=f"{network}, {algorithm}", yscale="log")
            ax.set_xticks(sorted(a["K"].unique()), [str(k) for k in sorted(a["K"].unique())])
            _label_log_axes(ax)
            ax.legend(fontsize=8)
        lines.append("")
    fig.tight_layout()
    fig.savefig(figures / "scale_depth.png", dpi=120)
    plt.close(fig)
    return [*lines, f"![depth](figures/{figures.name + '/' if figures.name == 'quick' else ''}scale_depth.png)", ""]


def tune_report(tune: pd.DataFrame, flush: pd.DataFrame, figures: Path) -> list[str]:
    lines = ["### Learning rates (seed 0)", "",
             "Each algorithm trains each network at every scanned rate, per micro-batch (`sequential`, K = 1; "
             "`async` and `async_stash` take it too) and per GPipe flush (K = 2, the per-micro-batch rate times "
             "1/8 to 1); the study takes the rate with the best mean test accuracy over the run's last three "
             "evaluations.", "",
             "| network | algorithm | updates | lr | final test accuracy | last three evaluations | chosen |",
             "|---|---|---|---|---|---|---|"]
    for updates, r in (("per micro-batch", tune), ("per GPipe flush", flush)):
        rates = tuned_rates(r)
        for (network, algorithm), g in r.groupby(["network", "algorithm"], sort=False):
            for lr, acc, point in zip(g["train.lr"], g["final_test_accuracy"], g["point"]):
                chosen = "✓" if rates[(network, algorithm)] == lr else ""
                lines.append(f"| {network} | {algorithm} | {updates} | {lr:.4g} | {acc:.3f} | "
                             f"{late_accuracy(point):.3f} | {chosen} |")
    return [*lines, ""]


def planner_report(r: pd.DataFrame, depth: pd.DataFrame, figures: Path) -> list[str]:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    time_cut = with_summary(stages_column(depth[(depth["network"] == "resnet8") & (depth["algorithm"] == SGD)]))
    r = with_summary(stages_column(r))
    both = pd.concat([time_cut[time_cut["schedule"].isin(["gpipe", "async", "sequential"])], r], ignore_index=True)
    both = both.assign(cps=per_sample(both), error=both["predicted_cycles_per_sample"] / per_sample(both) - 1)
    single = both[both["schedule"] == "sequential"]["cps"].mean()
    lines = ["### The planner's effect (ResNet-8, analog SGD)", "",
             "Cycles per sample over whole runs (mean ± 95 % interval over the seeds); *K = 1 / this*: the speed-up over one "
             "accelerator; *gpipe / async*: measured, next to the ideal clock's (M + K − 1)/M; *predicted*: "
             "the planner's replay of its probe against the measurement.", "",
             "| partition | K | cut | gpipe | async | gpipe / async (ideal) | K = 1 / async | predicted (async) "
             "| final accuracy, gpipe / async |", "|---|---|---|---|---|---|---|---|---|"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for rule, g in both[both["schedule"] != "sequential"].groupby("rule", sort=False):
        for k, p in g.groupby("K"):
            m = p.groupby("schedule")["cps"].mean()
            a = p[p["schedule"] == "async"]
            cut = a["partition"].iloc[0]
            lines.append(f"| {rule} | {k} | {cut} | {fmt(list(p[p['schedule'] == 'gpipe']['cps']), ',.0f')} | {fmt(list(a['cps']), ',.0f')} | "
                         f"{m['gpipe'] / m['async']:.2f} ({ideal_ratio(k):.2f}) | {single / m['async']:.2f} | "
                         f"{a['predicted_cycles_per_sample'].mean():,.0f} ({a['error'].mean():+.1%}) | "
                         f"{fmt(list(p[p['schedule'] == 'gpipe']['final_test_accuracy']), '.3f')} / "
                         f"{fmt(list(a['final_test_accuracy']), '.3f')} |")
        for schedule, s in g.groupby("schedule"):
            ks = sorted(s["K"].unique())
            ax.plot(ks, [single / s[s["K"] == k]["cps"].mean() for k in ks], marker="o",
                    ls="-" if rule == "time" else "--", label=f"{schedule}, {rule} cut")
    ks = sorted(both["K"].unique())
    ax.plot(ks, ks, color="grey", ls=":", label="K (perfect)")
    ax.set(xscale="log", yscale="log", xlabel="K (accelerators)", ylabel="speed-up over K = 1 (cycles per sample)",
           title="ResNet-8, rf25")
    ax.set_xticks(ks, [str(k) for k in ks])
    _label_log_axes(ax)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figures / "scale_planner.png", dpi=120)
    plt.close(fig)
    return [*lines, "", f"![planner](figures/{'quick/' if figures.name == 'quick' else ''}scale_planner.png)", ""]


def link_measures(point: str) -> dict:
    """Per sample: link busy cycles (both directions), link energy, and their shares of the
    accelerators' busy cycles and of all energy; the elements each cut carries (main, skip)."""
    trace = pd.read_csv(Path(point) / "trace.csv", usecols=["op", "start", "end", "energy_pj"])
    summary = json.loads((Path(point) / "summary.json").read_text())
    samples = summary["samples"]
    busy = trace["end"] - trace["start"]
    links = trace["op"].isin(["TF", "TB"])
    return {"link cycles": busy[links].sum() / samples, "op cycles": busy[~links].sum() / samples,
            "link energy": trace["energy_pj"][links].sum() / samples / 1e3,
            "link share of energy": trace["energy_pj"][links].sum() / summary["energy_pj"]}


def cut_tensors(cut: list[int]) -> list[tuple[int, int]]:
    """(main, skip) elements per sample crossing each cut of ResNet-8 on Fashion-MNIST: the
    output of the layer before the cut, and every other tensor a later stage reads."""
    from aimcsim.sim import Engine  # noqa: PLC0415

    cfg = config("resnet8", SGD, 0.01, "async", len(cut), quick=True)
    cfg["pipeline"]["partition"] = list(cut)
    engine = Engine(aimcsim.load_config(cfg))
    shapes = {layer.name: layer.out_shape for stage in engine.stages for layer in stage.all_layers}
    out = []
    for stage in engine.stages[:-1]:
        sizes = {name: int(np.prod(shapes[name])) for name in stage.sends}
        main = sizes.pop(stage.all_layers[-1].name)
        out.append((main, sum(sizes.values())))
    return out


def skips_report(r: pd.DataFrame, figures: Path) -> list[str]:
    lines = ["### Skip tensors on the links (ResNet-8, async, K = 4, rf25 + isaac32)", "",
             f"Each run trains {int(r['samples'].iloc[0]):,} samples; per sample, mean ± 95 % interval over "
             "the seeds. Elements per cut: the activation and the skip tensors a later stage reads.", "",
             "| cuts | stages | elements per cut (activation + skip) | link cycles per sample | "
             "link energy per sample (nJ) | link share of energy | cycles per sample |", "|---|---|---|---|---|---|---|"]
    rows = {}
    for name, g in r.groupby("cuts", sort=False):
        cut = SKIP_CUTS[name]
        tensors = cut_tensors(cut)
        measures = pd.DataFrame([link_measures(p) for p in g["point"]])
        rows[name] = (tensors, measures)
        elements = ", ".join(f"{m:,}" + (f" + {s:,}" if s else "") for m, s in tensors)
        lines.append(f"| {name} | {cut} | {elements} | {fmt(list(measures['link cycles']), ',.0f')} | "
                     f"{fmt(list(measures['link energy']), '.2f')} | {fmt(list(measures['link share of energy'] * 100), '.2f')} % | "
                     f"{fmt(list(per_sample(g)), ',.0f')} |")
    tensors, _ = rows["inside blocks"]
    skip_share = sum(s for _, s in tensors) / sum(m + s for m, s in tensors)
    lines += ["", f"Inside blocks, the skip tensors are {skip_share:.0%} of the elements the links carry.", ""]
    return lines


def norm_report(r: pd.DataFrame, depth: pd.DataFrame, figures: Path) -> list[str]:
    batch = stages_column(depth[(depth["network"] == "resnet8") & (depth["algorithm"] == SGD)])
    batch = batch[((batch["schedule"] == "sequential") | ((batch["schedule"] == "async") & (batch["K"] == 4)))]
    both = pd.concat([batch.assign(norm="batch"), stages_column(r)], ignore_index=True)
    target = common_target(both.assign(algorithm=both["norm"]))
    both = with_targets(both, target)
    lines = ["### Batch statistics under asynchrony (ResNet-8, analog SGD)", "",
             f"Target: test accuracy {target:.2f}. *async − sequential*: the mean per-seed difference of final "
             "accuracy (same seed, same initial weights and data order) ± its 95 % interval.", "",
             "| norm | sequential, final accuracy | async K = 4, final accuracy | async − sequential | "
             "samples to target, sequential / async |", "|---|---|---|---|---|"]
    for norm, g in both.groupby("norm", sort=False):
        seq = g[g["schedule"] == "sequential"].sort_values("seed")
        asy = g[g["schedule"] == "async"].sort_values("seed")
        mean, half, _ = mean_ci(list(asy["final_test_accuracy"].to_numpy() - seq["final_test_accuracy"].to_numpy()))
        diff = f"{mean:+.3f}" + ("" if math.isnan(half) else f" ± {half:.3f}")
        lines.append(f"| {norm} | {fmt(list(seq['final_test_accuracy']), '.3f')} | "
                     f"{fmt(list(asy['final_test_accuracy']), '.3f')} | {diff} | "
                     f"{fmt(list(seq['samples_to']), ',.0f')} / {fmt(list(asy['samples_to']), ',.0f')} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 seeds, a few hundred samples, K <= 4")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler", default=None, help="a Dask scheduler address instead of the local pool")
    parser.add_argument("--out", default=None, help="runs directory (default runs/scale, or runs/scale-quick)")
    parser.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), default=list(EXPERIMENTS))
    args = parser.parse_args()
    seeds = 2 if args.quick else SEEDS
    out = Path(args.out or ("runs/scale-quick" if args.quick else "runs/scale"))
    figures = ROOT / "docs" / "figures" / ("quick" if args.quick else "")
    figures.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tune = run(tune_sweeps(args.quick), 1, out, args.workers, args.scheduler)
    rates = tuned_rates(tune)
    flush = run(flush_tune_sweeps(rates, args.quick), 1, out, args.workers, args.scheduler)
    rates.update({(n, a, "gpipe"): lr for (n, a), lr in tuned_rates(flush).items()})
    names = ["depth", *(n for n in args.only if n != "depth")]  # the planner and norm tables read depth's runs
    planned = {name: EXPERIMENTS[name](rates, args.quick) for name in names}
    results = run([sw for sweeps in planned.values() for sw in sweeps], seeds, out, args.workers, args.scheduler)
    parts = {name: results[results["sweep"].isin([sw.name for sw in sweeps])].reset_index(drop=True)
             for name, sweeps in planned.items()}
    for name, part in {"tune": tune, "tune_gpipe": flush, **parts}.items():
        part.to_csv(out / f"{name}.csv", index=False)
    sections = tune_report(tune, flush, figures) + depth_report(parts["depth"], figures)
    if "planner" in parts:
        sections += planner_report(parts["planner"], parts["depth"], figures)
    if "skips" in parts:
        sections += skips_report(parts["skips"], figures)
    if "norm" in parts:
        sections += norm_report(parts["norm"], parts["depth"], figures)
    wall = time.perf_counter() - t0
    everything = pd.concat([tune, flush, results], ignore_index=True)
    header = (f"{len(everything)} runs; their own run times sum to {everything['wall_seconds'].sum() / 60:.0f} "
              f"worker-minutes.")
    publish(header, sections, len(everything), wall, args.workers,
            out / "results.md" if args.quick else ROOT / "docs" / "results.md", BEGIN, END)


if __name__ == "__main__":
    main()
