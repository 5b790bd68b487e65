"""Plots: pipeline timeline (Gantt), training curves, device response.

Plotting is kept apart from simulation; matplotlib is imported only when a plot is made.
"""

from __future__ import annotations

import pandas as pd

from .devices import plot_response  # noqa: F401 - re-exported: the device response plot
from .ops import OPS


def timeline(trace: pd.DataFrame, start: int = 0, end: int | None = None, ax=None, labels: bool = True):
    """Gantt chart of a trace: one row per accelerator, F/B/U and transfers colored, bubbles white.

    Transfers are drawn as thin bars under their sending stage's row. ``start``/``end``
    (cycles) select a window; item numbers are written into wide enough boxes.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.patches import Patch  # noqa: PLC0415

    end = int(trace["end"].max()) if end is None else end
    window = trace[(trace["end"] > start) & (trace["start"] < end)]
    stages = int(trace["stage"].max()) + 1 if len(trace) else 1
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 0.6 * stages + 1.2))
    for op, kind in OPS.items():
        rows = window[window["op"] == op]
        if rows.empty:
            continue
        color = kind.color
        transfer = not kind.busy
        height, offset = (0.15, 0.42) if transfer else (0.7, 0.0)
        y = rows["stage"].to_numpy() + offset
        ax.barh(y, (rows["end"] - rows["start"]).to_numpy(), left=rows["start"].to_numpy(), height=height,
                color=color, edgecolor="white" if not transfer else color, linewidth=0.5)
        if labels and not transfer:
            span = max(end - start, 1)
            for s, e, item, st in zip(rows["start"], rows["end"], rows["item"], rows["stage"]):
                if (e - s) / span > 0.012:
                    ax.text((s + e) / 2, st, f"{op}{item}", ha="center", va="center", fontsize=7, color="white")
    ax.set_xlim(start, end)
    ax.set_ylim(stages - 0.5, -0.5)
    ax.set_yticks(range(stages), [f"acc {k}" for k in range(stages)])
    ax.set_xlabel("clock cycle")
    ax.legend(handles=[Patch(color=kind.color, label=f"{code} {kind.name}") for code, kind in OPS.items()],
              ncol=len(OPS), fontsize=8,
              loc="upper right", bbox_to_anchor=(1.0, 1.25), frameon=False)
    return ax


def curves(metrics: pd.DataFrame, y: str = "train_loss", axes=None, label: str | None = None):
    """``y`` against samples and against cycles, side by side."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].plot(metrics["samples"], metrics[y], marker=".", label=label)
    axes[1].plot(metrics["cycles"], metrics[y], marker=".", label=label)
    axes[0].set(xlabel="samples", ylabel=y)
    axes[1].set(xlabel="clock cycles", ylabel=y)
    return axes


def sweep_plot(results: pd.DataFrame, x: str = "pipeline.stages", by: str = "pipeline.schedule"):
    """Sample complexity, clock-cycle complexity and final accuracy against ``x``, one line per ``by``.

    Points that differ only in other keys (seeds) are pooled: the line is their mean and the
    band their min-max spread. Points that did not reach the target are left out of the
    complexity panels (and counted in the title).
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    panels = [("sample_complexity", "samples to target"), ("cycle_complexity", "cycles to target"),
              ("final_test_accuracy", "final test accuracy")]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    groups = results.groupby(by) if by in results.columns else [("all", results)]
    for label, rows in groups:
        for ax, (column, title) in zip(axes, panels):
            data = rows[[x, column]].dropna()
            if data.empty:
                continue
            stats = data.groupby(x)[column].agg(["mean", "min", "max"]).sort_index()
            line, = ax.plot(stats.index, stats["mean"], marker="o", label=str(label))
            ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)
    for ax, (column, title) in zip(axes, panels):
        missed = int(results[column].isna().sum()) if column in results.columns else 0
        ax.set(xlabel=x, title=title + (f" ({missed} points missed the target)" if missed and "complexity" in column else ""))
        if results[x].dtype.kind in "iu" and results[x].min() > 0:
            ax.set_xscale("log", base=2)
    axes[2].legend(title=by)  # accuracy is known for every point; complexities may be missing
    fig.tight_layout()
    return fig
