"""Energy accounting: every op's energy from its reports and the constants, written out by hand
on a 4-3-2 network; static power; energy to target; ``none`` changes nothing; bad input."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

import aimcsim
from aimcsim import network
from aimcsim.cli import main
from aimcsim.sim import Engine

# distinct values, so that a count charged with the wrong constant shows
E = {"preset": "isaac32", "dac_pj": 1.1, "adc_pj": 2.3, "cell_read_fj": 3.7, "pulse_slot_pj": 0.5,
     "device_pulse_pj": 7.0, "digital_pj": 0.13, "link_pj_per_bit": 0.2, "static_mw": 4.0}
BITS = 8
# a 4-3-2 network: 3 inputs + bias -> 3 hidden (+ bias) -> 2 classes
HAND = {
    "data": {"name": "synthetic", "n_samples": 40, "n_features": 3, "n_classes": 2},
    "model": {"hidden": [3], "activation": "tanh", "init_scale": 6.0},
    "pipeline": {"schedule": "async", "stages": 2},
    "io": {"forward": {"out_bound": 0.3}},  # saturating outputs: bound management repeats reads
    "timing": {"preset": "rf25", "link_latency_cycles": 2, "link_bits_per_cycle": 4, "bits_per_element": BITS},
    "energy": E,
    "train": {"lr": 0.2, "epochs": 1, "eval_every": 8, "target": {"metric": "train_loss", "value": 5.0}},
}
LAYERS = [(3, 4), (2, 4)]  # (out, in) of each crossbar, the bias column included


def run_logged(stages: int, schedule: str):
    """Run HAND, logging every stage op's tile reports by (stage, op, item) (U in order)."""
    cfg = {**HAND, "pipeline": {"schedule": schedule, "stages": stages, "microbatches": 2}}
    cfg = aimcsim.load_config(cfg, unused="drop")  # micro-batches and links only where they apply
    log: dict = {}
    originals = {name: getattr(network.Stage, name) for name in ("forward", "backward", "update")}

    def forward(stage, item, x):
        out, reports = originals["forward"](stage, item, x)
        log[(stage.index, "F", item)] = reports
        return out, reports

    def backward(stage, item, g):
        err, reports = originals["backward"](stage, item, g)
        log[(stage.index, "B", item)] = reports
        return err, reports

    def update(stage, lr, reduction="mean"):
        reports = originals["update"](stage, lr, reduction)
        log.setdefault((stage.index, "U"), []).append(reports)
        return reports

    network.Stage.forward, network.Stage.backward, network.Stage.update = forward, backward, update
    try:
        engine = Engine(aimcsim.load_config(cfg))
        log.clear()  # the planner's probe (a copy of the network) ran its own stages while the engine was built
        engine.run()
    finally:
        for name, method in originals.items():
            setattr(network.Stage, name, method)
    return engine, log


def layers_of(engine, stage):
    start = sum(engine.partition[:stage])
    return LAYERS[start:start + engine.partition[stage]]


@pytest.mark.parametrize("stages,schedule", [(1, "sequential"), (2, "async"), (2, "gpipe")])
def test_every_row_costs_its_counts_times_the_constants(stages, schedule):
    engine, log = run_logged(stages, schedule)
    trace = engine.tracer.frame()
    assert list(trace.columns) == ["stage", "accelerator", "op", "item", "start", "end", "version", "energy_pj"]
    repeats = 0
    updates_seen = {k: 0 for k in range(stages)}
    for row in trace.itertuples(index=False):
        layers = layers_of(engine, row.stage)
        if row.op in ("F", "B"):
            reports = log[(row.stage, row.op, row.item)]
            # the transposed read of the stage's first layer is skipped on the first stage
            read_layers = layers if row.op == "F" else [lay for k, lay in enumerate(layers[::-1])
                                                          if not (row.stage == 0 and k == len(layers) - 1)]
            assert len(reports) == len(read_layers)
            expected = 0.0
            for (n_out, n_in), r in zip(read_layers, reports):
                driven, sensed = (n_in, n_out) if row.op == "F" else (n_out, n_in)
                assert (r.dac, r.adc, r.cells, r.digital) == (r.passes * driven, r.passes * sensed,
                                                              r.passes * n_out * n_in, r.vectors * sensed)
                repeats += r.passes - r.vectors
                expected += (r.passes * driven * 1.1 + r.passes * sensed * 2.3 + r.passes * n_out * n_in * 3.7e-3
                             + r.vectors * sensed * 0.13)
            assert row.energy_pj == pytest.approx(expected, rel=1e-12, abs=1e-12)
        elif row.op == "U":
            reports = log[(row.stage, "U")][updates_seen[row.stage]]
            updates_seen[row.stage] += 1
            expected = 0.0
            for (n_out, n_in), r in zip(layers, reports):
                assert r.line_slots == r.pulse_slots * (n_out + n_in)
                expected += r.pulse_slots * (n_out + n_in) * 0.5 + r.coincidences * 7.0
            assert row.energy_pj == pytest.approx(expected, rel=1e-12, abs=1e-12)
        else:  # a link moves one micro-batch of the boundary's activations or errors
            width = layers[-1][0] if row.op == "TF" else layers[0][1] - 1
            assert row.energy_pj == pytest.approx(width * BITS * 0.2, rel=1e-12)
    if schedule != "gpipe":
        assert repeats > 0  # bound management repeated some reads, and they were charged
    assert sum(updates_seen.values()) == int((trace.op == "U").sum())
    # the run's energy: the rows, added in order, plus static power of every accelerator all along
    from aimcsim.run import summarize
    summary = summarize(engine, 0.0)
    static = 4.0 * stages * summary["cycles"] / 1.0  # mW x ns = pJ at 1 GHz
    assert summary["energy_by_op"]["static"] == static
    assert summary["energy_pj"] == sum(trace["energy_pj"].tolist()) + static
    parts = summary["energy_by_op"]
    assert sum(parts.values()) == pytest.approx(summary["energy_pj"], rel=1e-12)
    assert parts["links"] == pytest.approx(trace[trace.op.isin(["TF", "TB"])].energy_pj.sum(), rel=1e-12)
    assert parts["U"] == pytest.approx(trace[trace.op == "U"].energy_pj.sum(), rel=1e-12)
    assert parts["F"] + parts["B"] + parts["digital"] == pytest.approx(
        trace[trace.op.isin(["F", "B"])].energy_pj.sum(), rel=1e-12)
    assert summary["energy_per_sample_pj"] == summary["energy_pj"] / summary["samples"]


def test_energy_to_target_is_the_cumulative_energy_where_the_sample_complexity_is_read():
    r = aimcsim.simulate({**HAND, "pipeline": {"schedule": "async", "stages": 2},
                          "train": {**HAND["train"], "epochs": 3, "target": {"metric": "train_loss", "value": 0.69}}})
    s, m, t = r.summary, r.metrics, r.trace
    assert s["sample_complexity"] is not None and s["sample_complexity"] > 0
    hit = m[m["samples"] == s["sample_complexity"]].iloc[0]
    assert s["energy_complexity_pj"] == hit["energy_pj"]
    assert s["cycle_complexity"] == hit["cycles"]
    assert m["energy_pj"].is_monotonic_increasing and m["energy_pj"].iloc[0] == 0.0
    for _, row in m.iloc[1:].iterrows():  # the ops recorded by then: those that ended before, at most those by then
        static = 4.0 * 2 * row["cycles"]
        assert t[t.end < row["cycles"]].energy_pj.sum() + static <= row["energy_pj"] * (1 + 1e-12)
        assert row["energy_pj"] <= (t[t.end <= row["cycles"]].energy_pj.sum() + static) * (1 + 1e-12)


def test_preset_none_leaves_every_output_byte_identical(tmp_path):
    base = {**HAND, "energy": {}, "pipeline": {"schedule": "async", "stages": 2}}
    for name, cfg in (("absent", {k: v for k, v in base.items() if k != "energy"}),
                      ("none", {**base, "energy": {"preset": "none"}})):
        cfg = json.loads(json.dumps(cfg))
        cfg["timing"].pop("bits_per_element")  # only charged when energy is accounted
        assert main(["run", str(_write(tmp_path, cfg, name)), "--out", str(tmp_path / name), "--quiet"]) == 0
    for f in ("metrics.csv", "trace.csv", "trace.json"):
        assert (tmp_path / "absent" / f).read_bytes() == (tmp_path / "none" / f).read_bytes()
    assert "energy" not in (tmp_path / "none" / "trace.csv").read_text().splitlines()[0]
    assert "energy" not in (tmp_path / "none" / "metrics.csv").read_text().splitlines()[0]
    summary = json.loads((tmp_path / "none" / "summary.json").read_text())
    assert not [k for k in summary if "energy" in k]


def _write(tmp_path, cfg, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_directory_plot_and_sweep_carry_energy(tmp_path, capsys):
    import matplotlib
    matplotlib.use("Agg")
    cfg = _write(tmp_path, {**HAND, "pipeline": {"schedule": "async", "stages": 2}}, "e")
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "energy            " in printed and "energy by op      " in printed
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns)[-1] == "energy_pj"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["energy_by_op"]) == {"F", "B", "U", "transfers", "links", "digital", "static"}
    assert main(["plot", str(out)]) == 0
    assert (out / "energy.png").stat().st_size > 10_000
    table = aimcsim.sweep(str(cfg), {"pipeline.stages": [1, 2], "pipeline.schedule": ["gpipe", "async"]},
                          out=tmp_path / "sweep", workers=1)
    assert {"energy_pj", "energy_per_sample_pj", "energy_complexity_pj", "energy_by_op"} <= set(table.columns)
    assert table["energy_pj"].notna().all()
    from aimcsim.plots import sweep_plot
    fig = sweep_plot(pd.read_csv(tmp_path / "sweep" / "results.csv"))
    assert [ax.get_ylabel() for ax in fig.axes][2] == "energy to target (pJ)"
    assert main(["plot", str(tmp_path / "sweep")]) == 0


def test_the_resolved_config_lists_the_energy_that_applies(tmp_path, capsys):
    free_links = {"preset": "rf25", "bits_per_element": 16}  # unlimited bandwidth: bits cost no time
    cfg = {**HAND, "pipeline": {"stages": 2}, "timing": free_links, "energy": {"preset": "isaac32"}}
    assert main(["validate", str(_write(tmp_path, cfg, "v"))]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["energy"]["adc_pj"] == 1.6667 and resolved["energy"]["device_pulse_pj"] == 8.0
    assert resolved["timing"]["bits_per_element"] == 16  # charged by the links' energy
    plain = {k: v for k, v in cfg.items() if k != "energy"}
    assert main(["validate", str(_write(tmp_path, plain, "p"))]) == 2  # neither energy nor bandwidth uses it
    assert "timing.bits_per_element" in capsys.readouterr().err


@pytest.mark.parametrize("energy,expected", [
    ({"preset": "isaac32", "adc_pj": -1}, "energy.adc_pj"),
    ({"preset": "isaac32", "adc_pJ": 1}, "energy.adc_pJ: unknown key (did you mean 'adc_pj'?)"),
    ({"preset": "isaac64"}, "energy.preset"),
    ({"dac_pj": 0.4}, "energy.dac_pj: has no effect under preset 'none'"),
    ({"preset": "isaac32", "static_mw": "lots"}, "energy.static_mw"),
])
def test_bad_energy_settings_exit_2_naming_the_key(tmp_path, capsys, energy, expected):
    cfg = _write(tmp_path, {**HAND, "energy": energy}, "bad")
    assert main(["run", str(cfg), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert not (tmp_path / "r").exists()


def test_shipped_rf25_configs_account_energy():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("rf25_async.yaml", "rf25_sync.yaml"):
        assert aimcsim.load_config(root / name).energy_model().preset == "isaac32"
    assert np.isclose(aimcsim.load_config({"energy": {"preset": "isaac32"}}).energy_model().dac_pj, 0.41667)
