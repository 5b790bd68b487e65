"""simulate() results, exports, plots, divergence and bad pipeline settings."""

import json

import numpy as np
import pandas as pd
import pytest

import aimcsim
from aimcsim import trace as tr
from aimcsim.plots import curves, timeline

BASE = {
    "data": {"name": "synthetic", "n_samples": 120, "n_features": 6, "n_classes": 3},
    "model": {"hidden": [8, 8], "activation": "tanh"},
    "pipeline": {"schedule": "async", "stages": 3},
    "train": {"lr": 0.05, "epochs": 1, "eval_every": 40, "target": {"metric": "train_loss", "value": 5.0}},
}


def with_(**sections):
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def test_result_has_summary_metrics_and_trace(tmp_path):
    r = aimcsim.simulate(with_(), out=tmp_path / "run")
    keys = {"status", "schedule", "stages", "microbatches", "samples", "cycles", "time_ns", "final_train_loss",
            "final_test_loss", "final_test_accuracy", "sample_complexity", "cycle_complexity", "utilization",
            "bubble_fraction", "staleness", "events", "wall_seconds"}
    assert keys <= set(r.summary)
    assert r.summary["status"] == "ok" and r.summary["stages"] == 3
    assert list(r.metrics.columns)[:6] == ["samples", "cycles", "time_ns", "train_loss", "test_loss", "test_accuracy"]
    assert r.metrics["samples"].is_monotonic_increasing and r.metrics["samples"].iloc[0] == 0
    assert list(r.trace.columns) == ["stage", "accelerator", "op", "item", "start", "end", "version"]
    # a loose target is met at the first evaluation: complexities are its samples and cycles
    assert r.summary["sample_complexity"] == 0 and r.summary["cycle_complexity"] == 0
    # an event for every op or transfer that takes time, none per pulse, few others
    timed = int((r.trace["end"] > r.trace["start"]).sum())
    assert timed <= r.summary["events"] <= 2 * len(r.trace)
    # the run directory holds everything, and the trace read back gives the same statistics
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert files == {"config.yaml", "summary.json", "metrics.csv", "trace.csv", "trace.json", "weights.npz"}
    back = pd.read_csv(tmp_path / "run" / "trace.csv")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    np.testing.assert_allclose(tr.utilization(back, 3), summary["utilization"])
    assert tr.max_staleness(back, 3) == summary["staleness"]


class ListSink:
    """Collects what a tracer streams, in order."""

    def __init__(self):
        self.rows = []

    def write(self, rows):
        self.rows.extend(rows)


@pytest.mark.parametrize("schedule", ["async", "gpipe"])
def test_tracer_digested_in_small_chunks_matches_the_full_trace(schedule):
    """Statistics folded in chunk by chunk (streamed and dropped) equal the whole trace's,
    also when an item's F and B fall into different chunks."""
    r = aimcsim.simulate(with_(pipeline={"schedule": schedule}, train={"epochs": 2}))
    rows = list(r.trace.itertuples(index=False, name=None))
    sink = ListSink()
    tracer = tr.Tracer(3, sink, chunk_rows=7)
    for row in rows:
        tracer.record(row)
        if tracer.digest_due():
            tracer.digest()
            assert tracer.rows == []  # streamed and dropped: memory stays bounded
    tracer.digest()
    assert sink.rows == rows and tracer.n_rows == len(rows)
    assert tracer.end == tr.total_cycles(r.trace) == r.summary["cycles"]
    np.testing.assert_allclose(tracer.utilization(), tr.utilization(r.trace, 3))
    assert tracer.max_staleness == tr.max_staleness(r.trace, 3) == r.summary["staleness"]
    assert (schedule == "async") == (max(tracer.max_staleness) > 0)


def test_target_metrics_and_complexities():
    r = aimcsim.simulate(with_(train={"target": {"metric": "test_accuracy", "value": 0.5}, "epochs": 3}))
    m = r.metrics
    hits = m[m["test_accuracy"] >= 0.5]
    assert len(hits) > 0
    assert r.summary["sample_complexity"] == hits["samples"].iloc[0]
    assert r.summary["cycle_complexity"] == hits["cycles"].iloc[0]
    never = aimcsim.simulate(with_(train={"target": {"metric": "grad_norm_sq", "value": 0.0}}))
    assert never.summary["sample_complexity"] is None and never.summary["cycle_complexity"] is None
    assert (never.metrics["grad_norm_sq"] > 0).all()


def test_stop_at_target_ends_the_run_early():
    full = aimcsim.simulate(with_(train={"target": {"metric": "train_loss", "value": 1.05}, "epochs": 3}))
    stop = aimcsim.simulate(with_(train={"target": {"metric": "train_loss", "value": 1.05}, "epochs": 3,
                                         "stop_at_target": True}))
    assert stop.summary["sample_complexity"] == full.summary["sample_complexity"] is not None
    assert stop.summary["samples"] < full.summary["samples"]


def test_a_run_whose_loss_becomes_nan_stops_as_diverged():
    cfg = with_(device={"type": "ideal"}, io={"forward": {"perfect": True}, "backward": {"perfect": True}},
                data={"name": "synthetic", "task": "regression", "n_samples": 200},
                model={"hidden": [8, 8], "activation": "relu", "loss": "mse", "init_scale": 3.0},
                train={"lr": 40.0, "epochs": 5, "target": {"metric": "train_loss", "value": 0.1}})
    del cfg["data"]["n_classes"]  # a regression task has one output
    r = aimcsim.simulate(cfg)
    assert r.summary["status"] == "diverged"
    at = r.summary["diverged_at_sample"]
    assert at is not None and 0 <= at < 5 * 160
    assert r.summary["samples"] <= at + 3  # stopped there instead of running on
    assert "non-finite" in r.summary["message"]


def test_chrome_trace_and_action_strings():
    r = aimcsim.simulate(with_(pipeline={"schedule": "gpipe", "stages": 2, "microbatches": 3}))
    chrome = tr.to_chrome_trace(r.trace)
    spans = [e for e in chrome["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == len(r.trace)
    assert {e["tid"] for e in spans} == {0, 1}
    first = spans[0]
    assert first["name"] == "0F0" and first["dur"] == pytest.approx(1e-3)
    actions = r.action_strings()
    assert actions[1][:4] == ["1F0", "1F1", "1F2", "1B0"]


def test_timeline_and_curves_plots(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    r = aimcsim.simulate(with_(timing={"preset": "rf25"}))
    ax = timeline(r.trace, end=3000)
    drawn = (r.trace.start < 3000) & r.trace.op.isin(["F", "B", "U"]) & (r.trace.end > r.trace.start)
    n_compute = len(r.trace[drawn])  # stage 0's B reads nothing (no input gradient): 0 cycles, no box
    bars = [p for p in ax.patches if p.get_height() > 0.5]
    assert len(bars) == n_compute  # one box per op in the window; bubbles are left white
    ax.figure.savefig(tmp_path / "t.png")
    axes = curves(r.metrics)
    assert len(axes[1].lines[0].get_xdata()) == len(r.metrics)


@pytest.mark.parametrize("change,match", [
    ({"pipeline": {"partition": [1, 1]}}, r"pipeline\.partition: 2 entries for 3 stages"),
    ({"pipeline": {"partition": [1, 1, 2]}}, r"pipeline\.partition: .* summing to the model's 3 layers"),
    ({"pipeline": {"stages": 4}}, r"pipeline\.stages: 4 stages need at least as many layers"),
    ({"pipeline": {"microbatches": 0}}, r"pipeline\.microbatches"),
    ({"pipeline": {"schedule": "pipedream"}}, r"pipeline\.schedule"),
    ({"timing": {"read_ns": -1}}, r"timing\.read_ns"),
    ({"timing": {"link_bits_per_cycle": 0}}, r"timing\.link_bits_per_cycle"),
    ({"timing": {"link_latency_cycles": -2}}, r"timing\.link_latency_cycles"),
    ({"timing": {"preset": "fast"}}, r"timing\.preset"),
    ({"train": {"lr": 0}}, r"train\.lr"),
])
def test_bad_pipeline_settings_are_named(change, match):
    with pytest.raises(ValueError, match=match) as info:
        aimcsim.simulate(with_(**change))
    assert "\n" not in str(info.value)


def test_trained_weights_come_out_and_load_back_to_the_same_accuracy(tmp_path):
    from aimcsim.run import load_weights
    from aimcsim.sim import Engine

    cfg = with_(train={"target": {"metric": "test_accuracy", "value": 0.5}, "epochs": 2},
                model={"hidden": [8, 8], "activation": "tanh", "tile_size": 4})  # split layers too
    r = aimcsim.simulate(cfg, out=tmp_path / "run")
    weights = r.weights()
    on_disk = load_weights(tmp_path / "run" / "weights.npz")
    assert [w.shape for w in weights] == [(8, 7), (8, 9), (3, 9)]  # [W | b] per layer
    assert all(np.array_equal(a, b) for a, b in zip(weights, on_disk))
    with np.load(tmp_path / "run" / "weights.npz") as data:
        assert sorted(data.files) == ["layer0", "layer1", "layer2"]
    fresh = Engine(aimcsim.load_config(cfg))  # the initial weights: different accuracy
    data = fresh.data
    before = fresh.network.evaluate(data.x_test, data.y_test)["accuracy"]
    fresh.network.set_weights(on_disk)
    after = fresh.network.evaluate(data.x_test, data.y_test)["accuracy"]
    assert after == r.summary["final_test_accuracy"] and after != before
    with pytest.raises(ValueError, match=r"weights: layer1 is \(2, 2\)"):
        fresh.network.set_weights([on_disk[0], np.zeros((2, 2)), on_disk[2]])


def test_analog_evaluation_reads_change_the_metrics_but_never_training():
    exact = aimcsim.simulate(with_(train={"epochs": 2}))
    analog = aimcsim.simulate(with_(train={"epochs": 2, "eval_reads": "analog"}))
    assert analog.trace.equals(exact.trace)  # training drew nothing from the evaluation streams
    assert analog.summary["samples"] == exact.summary["samples"]
    np.testing.assert_array_equal(analog.metrics["grad_norm_sq"], exact.metrics["grad_norm_sq"])  # exact by definition
    assert not np.array_equal(analog.metrics["test_loss"], exact.metrics["test_loss"])  # noisy reads
    again = aimcsim.simulate(with_(train={"epochs": 2, "eval_reads": "analog"}))
    assert again.metrics.equals(analog.metrics)  # the evaluation stream is seeded too
    perfect = aimcsim.simulate(with_(train={"epochs": 2, "eval_reads": "analog"},
                                     io={"forward": {"perfect": True}, "backward": {"perfect": True}}))
    exact_perfect = aimcsim.simulate(with_(train={"epochs": 2}, io={"forward": {"perfect": True},
                                                                    "backward": {"perfect": True}}))
    np.testing.assert_allclose(perfect.metrics["test_loss"], exact_perfect.metrics["test_loss"], rtol=1e-5)
    with pytest.raises(ValueError, match="train.eval_reads"):
        aimcsim.load_config(with_(train={"eval_reads": "noisy"}))
