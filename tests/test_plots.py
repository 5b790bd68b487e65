"""Plots read as a person expects: what is drawn is what the legend names, labels fit their
boxes, cycles are whole, units are written properly, and any sweep can be plotted."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import aimcsim  # noqa: E402
from aimcsim.cli import main  # noqa: E402
from aimcsim.plots import energy_breakdown, sweep_axes, timeline  # noqa: E402

DEEP = {
    "data": {"name": "digits"},
    "model": {"hidden": [16] * 7, "activation": "tanh"},
    "pipeline": {"schedule": "gpipe", "stages": 8, "microbatches": 8},
    "timing": {"preset": "rf25"},
    "energy": {"preset": "isaac32"},
    "train": {"lr": 0.05, "epochs": 32 / 1438, "eval_every": 1000, "target": None},
}


def test_the_timeline_legend_names_only_what_the_window_draws_and_labels_fit_their_boxes():
    r = aimcsim.simulate(DEEP)
    first_update = int(r.trace.loc[r.trace["op"] == "U", "start"].min())
    ax = timeline(r.trace, end=first_update)  # forwards and backwards only; transfers take 0 cycles
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["F forward", "B backward"]
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert boxes, "some boxes are wide enough for their label"
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)  # no label prints over another
    ticks = [t for t in ax.get_xticks() if 0 <= t <= first_update]
    assert all(float(t).is_integer() for t in ticks)
    plt.close("all")


def test_a_short_window_has_whole_cycle_ticks():
    r = aimcsim.simulate({**DEEP, "timing": {"preset": "ideal"}, "energy": {"preset": "none"}})
    ax = timeline(r.trace, end=3)
    assert all(float(t).is_integer() for t in ax.get_xticks())
    plt.close("all")


def test_energy_is_written_in_micro_joules():
    r = aimcsim.simulate(DEEP)
    fig = energy_breakdown(r.summary, r.metrics)
    texts = [fig.axes[0].get_ylabel(), fig.axes[0].get_title(), *(t.get_text() for t in fig.axes[0].get_legend().get_texts())]
    assert all("uJ" not in t for t in texts) and "energy (µJ)" in texts
    plt.close("all")


def test_a_sweep_over_any_key_is_plotted_against_it(tmp_path):
    base = {"data": {"name": "synthetic", "n_samples": 150, "n_features": 6, "n_classes": 3},
            "model": {"hidden": [8]}, "pipeline": {"stages": 1},
            "train": {"epochs": 0.3, "eval_every": 30, "target": {"metric": "train_loss", "value": 2.0}}}
    table = aimcsim.sweep(base, {"train.lr": [0.01, 0.1], "seed": [0, 1]}, out=tmp_path / "lr", workers=1)
    assert sweep_axes(table) == ("train.lr", None)
    assert main(["plot", str(tmp_path / "lr")]) == 0
    assert (tmp_path / "lr" / "sweep.png").stat().st_size > 0
    seeds = aimcsim.sweep(base, {"seed": [0, 1]}, out=tmp_path / "seeds", workers=1)
    assert sweep_axes(seeds) == (None, None)
    assert main(["plot", str(tmp_path / "seeds")]) == 2


def test_a_depth_sweep_is_drawn_per_schedule_without_an_all_legend(tmp_path):
    base = {"data": {"name": "synthetic", "n_samples": 150, "n_features": 6, "n_classes": 3},
            "model": {"hidden": [8, 8]}, "pipeline": {"microbatches": 2},
            "train": {"epochs": 0.3, "eval_every": 30, "target": {"metric": "train_loss", "value": 2.0}}}
    table = aimcsim.sweep(base, {"pipeline.stages": [1, 3], "pipeline.schedule": ["gpipe", "async"]},
                          out=tmp_path / "d", workers=1)
    x, by = sweep_axes(table)
    assert (x, by) == ("pipeline.stages", "schedule")
    depth_only = aimcsim.sweep({**base, "pipeline": {"schedule": "gpipe", "microbatches": 2}},
                               {"pipeline.stages": [1, 3]}, out=tmp_path / "k", workers=1)
    from aimcsim.plots import sweep_plot  # noqa: PLC0415

    fig = sweep_plot(depth_only, *sweep_axes(depth_only))
    assert all(ax.get_legend() is None for ax in fig.axes)  # one line: no "schedule: all" legend
    assert isinstance(pd.read_csv(tmp_path / "k" / "results.csv"), pd.DataFrame)
    plt.close("all")
