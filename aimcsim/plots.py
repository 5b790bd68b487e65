"""Plots: pipeline timeline (Gantt), training curves, energy breakdown, sweeps, device response.

Plotting is kept apart from simulation; matplotlib is imported only when a plot is made.
"""

from __future__ import annotations

import textwrap

import pandas as pd

from .devices import plot_response  # noqa: F401 - re-exported: the device response plot
from .ops import OPS


def timeline(trace: pd.DataFrame, start: int = 0, end: int | None = None, ax=None, labels: bool = True):
    """Gantt chart of a trace: one row per accelerator, its ops (F, B, I, W, U, T) and transfers
    colored, bubbles white.

    Transfers are drawn as thin bars under their sending accelerator's row. ``start``/``end``
    (cycles) select a window; item numbers are written into wide enough boxes (as PyTorch
    names actions, ``1F0``, when an accelerator holds several stages). Colors and names come
    from the op registry; the legend lists the ops the trace has.

    Returns the matplotlib axes.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.patches import Patch  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    end = int(trace["end"].max()) if end is None else end
    window = trace[(trace["end"] > start) & (trace["start"] < end)]
    accelerators = int(trace["accelerator"].max()) + 1 if len(trace) else 1
    several = len(trace) and trace["stage"].nunique() > accelerators  # some accelerator holds several stages
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 0.6 * accelerators + 1.2))
    span = max(end - start, 1)
    # a label is written only where it fits its box: the box's width against the text's
    box_width = ax.get_window_extent().width or ax.figure.get_figwidth() * ax.figure.dpi * 0.8
    char = 7 * 0.6 * ax.figure.dpi / 72  # a character of a 7-point label, in pixels
    for op, kind in OPS.items():
        rows = window[(window["op"] == op) & (window["end"] > window["start"])]  # a 0-cycle row draws nothing
        if rows.empty:
            continue
        color = kind.color
        transfer = not kind.busy
        height, offset = (0.15, 0.42) if transfer else (0.7, 0.0)
        y = rows["accelerator"].to_numpy() + offset
        ax.barh(y, (rows["end"] - rows["start"]).to_numpy(), left=rows["start"].to_numpy(), height=height,
                color=color, edgecolor="white" if not transfer else color, linewidth=0.5)
        if labels and not transfer:
            for s, e, item, acc, st in zip(rows["start"], rows["end"], rows["item"], rows["accelerator"],
                                           rows["stage"]):
                name = f"{st}{op}{item}" if several else f"{op}{item}"
                if (min(e, end) - max(s, start)) / span * box_width > (len(name) + 1) * char:
                    ax.text((max(s, start) + min(e, end)) / 2, acc, name, ha="center", va="center", fontsize=7,
                            color="white")
    ax.set_xlim(start, end)
    ax.set_ylim(accelerators - 0.5, -0.5)
    ax.set_yticks(range(accelerators), [f"acc {k}" for k in range(accelerators)])
    ax.set_xlabel("simulated time (clock cycles)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # cycles are whole
    present = set(window.loc[window["end"] > window["start"], "op"])  # what the window draws (0-cycle rows are not)
    handles = [Patch(color=kind.color, label=f"{code} {kind.name}") for code, kind in OPS.items() if code in present]
    if handles:  # just under the axis label, whatever the number of rows
        ax.legend(handles=handles, ncol=min(len(handles), 6), fontsize=8, loc="upper center",
                  bbox_to_anchor=(0.5, -0.55 / (0.6 * accelerators + 0.4)), frameon=False)
    return ax


METRIC_LABELS = {
    "train_loss": "training loss",
    "test_loss": "test loss",
    "test_accuracy": "test accuracy (fraction correct)",
    "grad_norm_sq": "squared gradient norm ||grad f||^2",
}
X_LABELS = {"samples": "samples trained", "cycles": "simulated time (clock cycles)"}


def curves(metrics: pd.DataFrame, y: str = "train_loss", axes=None, label: str | None = None):
    """``y`` against samples and against cycles, side by side.

    Returns the two matplotlib axes (samples, cycles), with axis labels in words.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, x in zip(axes, ("samples", "cycles")):
        ax.plot(metrics[x], metrics[y], marker=".", label=label)
        ax.set(xlabel=X_LABELS[x], ylabel=METRIC_LABELS.get(y, y))
    return axes


def training_curves(metrics: pd.DataFrame, target_metric: str | None = None, target_value: float | None = None,
                    title: str | None = None):
    """The training curves of one run: loss (training and test) on top, and below the test
    accuracy (or the squared gradient norm where there is no accuracy, or where it is the
    target), each against samples and against clock cycles; the target as a dashed line.

    Returns the matplotlib figure (2 x 2 axes).
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    has_accuracy = "test_accuracy" in metrics and metrics["test_accuracy"].notna().any()
    lower = "grad_norm_sq" if target_metric == "grad_norm_sq" or not has_accuracy else "test_accuracy"
    for col, x in enumerate(("samples", "cycles")):
        top, bottom = axes[0, col], axes[1, col]
        top.plot(metrics[x], metrics["train_loss"], marker=".", label="training loss")
        top.plot(metrics[x], metrics["test_loss"], marker=".", label="test loss")
        top.set(xlabel=X_LABELS[x], ylabel="loss")
        bottom.plot(metrics[x], metrics[lower], marker=".", color="C2", label=METRIC_LABELS[lower])
        bottom.set(xlabel=X_LABELS[x], ylabel=METRIC_LABELS[lower])
        if lower == "grad_norm_sq":
            bottom.set_yscale("log")
        if target_metric is not None and target_value is not None:
            ax = bottom if target_metric == lower else top if target_metric in ("train_loss", "test_loss") else None
            if ax is not None:
                sense = ">=" if target_metric == "test_accuracy" else "<="
                ax.axhline(target_value, color="0.3", ls="--", lw=1,
                           label=f"target: {METRIC_LABELS[target_metric]} {sense} {target_value:g}")
        for ax in (top, bottom):
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def energy_breakdown(summary: dict, metrics: pd.DataFrame | None = None):
    """A run's energy by op (a stacked bar: F, B, U, transfers, links, digital periphery,
    static power) and, given the metrics, the cumulative energy against samples trained.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    parts = {k: v for k, v in summary["energy_by_op"].items()}
    fig, axes = plt.subplots(1, 2 if metrics is not None and "energy_pj" in metrics else 1, figsize=(11, 4),
                             squeeze=False)
    ax = axes[0, 0]
    bottom = 0.0
    for k, (part, value) in enumerate(parts.items()):
        ax.bar([0], [value / 1e6], bottom=bottom / 1e6, color=f"C{k}",
               label=f"{part}: {value / 1e6:,.3f} µJ ({value / summary['energy_pj']:.0%})")
        bottom += value
    ax.set(xticks=[], ylabel="energy (µJ)", title=f"energy by op, {summary['energy_pj'] / 1e6:,.3f} µJ in all")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if axes.shape[1] == 2:
        ax = axes[0, 1]
        ax.plot(metrics["samples"], metrics["energy_pj"] / 1e6, marker=".")
        ax.set(xlabel="samples trained", ylabel="cumulative energy (µJ)", title="energy against samples")
        if summary.get("energy_complexity_pj") is not None:
            ax.axhline(summary["energy_complexity_pj"] / 1e6, color="0.3", ls="--", lw=1,
                       label="energy to target")
            ax.legend(fontsize=8)
    fig.suptitle(f"{summary['schedule']}, K={summary['stages']} ({summary.get('energy_preset')})")
    fig.tight_layout()
    return fig


SWEEP_PANELS = [("sample_complexity", "samples to target"), ("cycle_complexity", "clock cycles to target"),
                ("energy_complexity_pj", "energy to target (pJ)"),
                ("final_test_accuracy", "final test accuracy (fraction correct)")]
AXIS_NAMES = {"pipeline.stages": "pipeline depth K (accelerators)", "pipeline.schedule": "schedule",
              "schedule": "schedule"}


def swept_keys(results: pd.DataFrame) -> list[str]:
    """The keys a sweep's ``results.csv`` varies (its columns between ``point`` and ``status``)."""
    columns = list(results.columns)
    if "point" not in columns or "status" not in columns:
        return []
    keys = columns[columns.index("point") + 1:columns.index("status")]
    return [k for k in keys if results[k].nunique() > 1]


def sweep_axes(results: pd.DataFrame) -> tuple[str | None, str | None]:
    """What to draw a sweep against: x, the depth if it was swept, else the first swept key
    that is not a seed; lines ``by`` the schedule if it varies, else the next swept key."""
    keys = swept_keys(results)
    candidates = [k for k in keys if k != "seed"]
    if not candidates:
        return None, None
    x = "pipeline.stages" if "pipeline.stages" in candidates else candidates[0]
    rest = [k for k in candidates if k != x]
    if "schedule" in results.columns and results["schedule"].nunique() > 1 and x != "pipeline.schedule":
        return x, "schedule"
    return x, (rest[0] if rest else None)


def sweep_plot(results: pd.DataFrame, x: str = "pipeline.stages", by: str | None = "pipeline.schedule"):
    """Sample complexity, clock-cycle complexity, energy complexity (when the sweep accounted
    energy) and final accuracy against ``x``, one line per ``by``.

    Points that differ only in other keys (seeds) are pooled: the line is their mean and the
    band their min-max spread. In the complexity panels a hollow marker means that some of a
    point's runs missed the target (the mean is over those that reached it); where none
    reached it the line breaks and an x sits on the panel's top edge; a note under the panel
    names every point that missed, with how many of its runs reached the target.

    Returns the matplotlib figure (three or four panels, each with a legend and labelled axes).
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import matplotlib.transforms as transforms  # noqa: PLC0415

    panels = [(c, label) for c, label in SWEEP_PANELS if c != "energy_complexity_pj" or c in results.columns]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6))
    grouped = by is not None and by in results.columns
    groups = list(results.groupby(by)) if grouped else [("all points", results)]
    outside = []  # drawn outside the axes: left out of tight_layout, kept in the saved figure
    for ax, (column, ylabel) in zip(axes, panels):
        missed_notes = []
        top_edge = transforms.blended_transform_factory(ax.transData, ax.transAxes)
        for label, rows in groups:
            if column not in rows.columns:
                continue
            stats = rows.groupby(x)[column].agg(["mean", "min", "max", "count", "size"]).sort_index()
            line, = ax.plot(stats.index, stats["mean"], marker="o", label=str(label))  # NaN breaks the line
            color = line.get_color()
            ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.2)
            partial = stats[(stats["count"] > 0) & (stats["count"] < stats["size"])]
            ax.plot(partial.index, partial["mean"], ls="none", marker="o", markersize=9,
                    markerfacecolor="white", markeredgecolor=color)
            never = stats[stats["count"] == 0]
            marks, = ax.plot(never.index, [1.0] * len(never), ls="none", marker="x", markersize=9, color=color,
                             transform=top_edge, clip_on=False)
            outside.append(marks)
            if "complexity" in column:
                for value, row in stats[stats["count"] < stats["size"]].iterrows():
                    where = f"{label} at {value}" if grouped else f"{AXIS_NAMES.get(x, x)} {value}"
                    missed_notes.append(f"{where}: {int(row['count'])}/{int(row['size'])} reached")
        ax.set(xlabel=AXIS_NAMES.get(x, x), ylabel=ylabel, title=ylabel)
        if results[x].dtype.kind in "iu" and results[x].min() > 0 and x == "pipeline.stages":
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(results[x].unique()), [str(v) for v in sorted(results[x].unique())])
        if grouped:
            ax.legend(title=AXIS_NAMES.get(by, by), fontsize=8)
        if missed_notes:
            note = textwrap.fill("missed the target (x: no run reached it): " + "; ".join(missed_notes), 80)
            outside.append(ax.annotate(note, xy=(0, -0.2), xycoords="axes fraction", fontsize=7, va="top"))
    for artist in outside:
        artist.set_in_layout(False)
    fig.tight_layout(rect=(0, 0.08 if any(isinstance(a, plt.Annotation) for a in outside) else 0, 1, 1))
    for artist in outside:
        artist.set_in_layout(True)
    return fig
