"""The foundations: crossbar protocol and factory, ops as data, one cost model, explicit
connections, SimPy's public API, and the defects a new user hit (each test fails on the code
before the foundations issue)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

import aimcsim
from aimcsim import cost, ops
from aimcsim.cli import main
from aimcsim.crossbar import TILE_KINDS, Crossbar, TileGrid, make_crossbar, register_tile_kind
from aimcsim.devices import response_curve
from aimcsim.errors import UnusedKeyError
from aimcsim.sim import orders, schedules
from aimcsim.tile import AnalogTile

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "data": {"name": "synthetic", "n_samples": 120, "n_features": 6, "n_classes": 3},
    "model": {"hidden": [8, 8], "activation": "tanh"},
    "pipeline": {"schedule": "async", "stages": 3},
    "train": {"lr": 0.05, "epochs": 1, "eval_every": 40, "target": None},
}


def small(**sections):
    cfg = json.loads(json.dumps(SMALL))
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def write(tmp_path, data, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


# ------------------------------------------------------------------ crossbar protocol
def test_tiles_and_grids_implement_the_crossbar_protocol():
    assert isinstance(AnalogTile(3, 4), Crossbar)
    grid = make_crossbar(5, 9, tile_size=4, seed=1)
    assert isinstance(grid, Crossbar) and isinstance(grid, TileGrid) and grid.n_tiles == 6
    assert all(isinstance(t, AnalogTile) for row in grid.tiles for t in row)


def test_a_new_crossbar_kind_is_one_class_and_one_registration(monkeypatch):
    """Layers (and so every schedule) take a registered tile kind unchanged."""
    built = []

    class CountingTile(AnalogTile):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setitem(TILE_KINDS, "constant_step", TILE_KINDS["constant_step"])
    register_tile_kind(["constant_step"], CountingTile)
    r = aimcsim.simulate(small(device={"type": "constant_step"}, model={"tile_size": 4}))
    assert r.summary["status"] == "ok"
    # [W | b] of 8x7, 8x9 and 3x9 on tiles of at most 4 x 4, for the run and for the planner's probe copy
    assert len(built) == 2 * (2 * 2 + 2 * 3 + 1 * 3)
    assert all(t.update_params.pulse_type == "stochastic_compressed" for t in built)


def test_split_layer_tiles_have_distinct_random_streams():
    """Tile (0, 7) and tile (1, 0) of a split layer used to get the same seed (seed*131 + 7*ri + ci + 1)."""
    grid = TileGrid(16, 64, 8, seed=0, device={"type": "soft_bounds"})
    blocks = [t.population.block for row in grid.tiles for t in row]
    assert grid.tiles[0][7].seed != grid.tiles[1][0].seed
    assert not np.array_equal(grid.tiles[0][7].population.block, grid.tiles[1][0].population.block)
    seeds = [t.seed for row in grid.tiles for t in row]
    assert len(set(seeds)) == len(seeds) == 16 and len(blocks) == 16
    # and no tile of layer seed 0 repeats a tile of the neighbouring layer seed
    other = TileGrid(16, 64, 8, seed=1, device={"type": "soft_bounds"})
    assert not set(seeds) & {t.seed for row in other.tiles for t in row}


def test_one_copy_of_the_device_physics_training_equals_the_response_curve():
    """A 1x1 tile pulsed once per update (lr x d = dw_min, BL 1, certain coincidence) walks
    exactly, bit for bit, the response curve: both fire through devices.linear_pulse."""
    for device in ({"type": "soft_bounds", "dw_min_std": 0.0, "dw_min": 0.02},
                   {"type": "linear_step", "gamma_up": 0.5, "gamma_down": 0.3, "dw_min_std": 0.0, "dw_min": 0.02},
                   {"type": "constant_step", "dw_min_std": 0.0, "dw_min": 0.02}):
        tile = AnalogTile(1, 1, device=device, seed=3)
        tile.set_weights(np.zeros((1, 1)))
        walked = []
        for direction in [1] * 40 + [-1] * 25:
            tile.update(np.array([1.0], np.float32), np.array([-direction], np.float32), lr=device["dw_min"])
            assert tile.last_report.coincidences == 1
            walked.append(tile.get_weights()[0, 0])
        curve = response_curve(device, [1] * 40 + [-1] * 25, seed=3)[:, 0]
        np.testing.assert_array_equal(np.array(walked, np.float32), curve.astype(np.float32))


# ------------------------------------------------------------------------ ops as data
def test_every_component_reads_the_op_registry():
    assert ops.busy_ops() == ("F", "B", "I", "U", "W", "T")
    assert {"F", "B", "I", "W", "U", "T", "TF", "TB"} <= set(ops.OPS)
    model = cost.CostModel(cost.parse_timing({"preset": "ideal"}))
    assert set(model._rules) == set(ops.OPS)  # the cost model prices every registered op kind
    with pytest.raises(ValueError, match="already registered"):
        ops.register(ops.OpKind("F", "again", True, "read", "#000000"))


def test_cost_model_prices_reads_updates_and_links_from_reports():
    rf = cost.CostModel(cost.parse_timing({"preset": "rf25", "link_latency_cycles": 3, "link_bits_per_cycle": 16,
                                           "digital_sum_ns": 2.0}))
    read = ops.OpReport("F", vectors=2, passes=3, partial_sums=4)
    assert rf.cost("F", [read, read]) == (2 * (3 * 40 + 4 * 2), 0.0)
    upd = ops.OpReport("U", vectors=2, pulse_slots=31)
    assert rf.cost("U", [upd]) == (int(np.ceil(31 * 5 + 2 * 5.9)), 0.0)
    assert rf.cost("TF", [ops.LinkReport(10)]) == (3 + 5, 0.0)  # 10 elements x 8 bits / 16 bits per cycle
    ideal = cost.CostModel(cost.parse_timing({}))
    assert ideal.cost("F", [read]) == (1, 0.0) and ideal.cost("U", [upd]) == (0, 0.0)
    assert ideal.link_is_free() and not rf.link_is_free()


# --------------------------------------------------------------- timing constants
def test_a_timing_constant_the_preset_ignores_is_refused(tmp_path, capsys):
    """--set timing.read_ns=400 under ideal used to be accepted and written to config.yaml."""
    cfg = write(tmp_path, SMALL)
    assert main(["run", cfg, "--set", "timing.read_ns=400", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: timing.read_ns: has no effect under preset 'ideal'") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
    assert main(["validate", cfg, "--set", "timing.bits_per_element=16"]) == 2
    assert "timing.bits_per_element" in capsys.readouterr().err
    # it takes effect where it is charged: rf25, or ideal with the reads charged by time
    for extra in (["timing.preset=rf25", "timing.read_ns=400"], ["timing.forward_cycles=null", "timing.read_ns=400"]):
        assert main(["validate", cfg, *sum((["--set", e] for e in extra), [])]) == 0
        assert yaml.safe_load(capsys.readouterr().out)["timing"]["read_ns"] == 400
    a = aimcsim.simulate(small(timing={"preset": "rf25", "read_ns": 40}))
    b = aimcsim.simulate(small(timing={"preset": "rf25", "read_ns": 400}))
    assert b.summary["cycles"] > a.summary["cycles"]


def test_resolved_config_lists_only_the_timing_that_applies(tmp_path, capsys):
    assert main(["validate", write(tmp_path, SMALL)]) == 0
    timing = yaml.safe_load(capsys.readouterr().out)["timing"]
    assert timing["forward_cycles"] == 1 and "read_ns" not in timing and "pulse_slot_ns" not in timing
    assert main(["validate", write(tmp_path, small(timing={"preset": "rf25"}))]) == 0
    timing = yaml.safe_load(capsys.readouterr().out)["timing"]
    assert timing["read_ns"] == 40.0 and timing["pulse_slot_ns"] == 5.0 and "bits_per_element" not in timing


# ---------------------------------------------------------------- config defects
def test_a_config_with_only_a_data_section_validates(tmp_path, capsys):
    """It used to fail on pipeline.stages, a key the user never set."""
    assert main(["validate", write(tmp_path, {"data": {"name": "digits"}})]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["pipeline"]["stages"] == 3 and resolved["model"]["hidden"] == [32, 32]
    assert main(["validate", write(tmp_path, {"model": {"hidden": [4]}})]) == 2
    assert "pipeline.stages: 3 stages (the default; set pipeline.stages)" in capsys.readouterr().err


def test_run_refuses_a_config_with_a_sweep_section(tmp_path, capsys):
    """aimcsim run used to run only the base point of a sweep config, without a word."""
    cfg = write(tmp_path, {**SMALL, "sweep": {"grid": {"pipeline.stages": [1, 2]}}})
    assert main(["run", cfg, "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sweep: ") and "aimcsim sweep" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
    assert main(["run", cfg, "--set", "sweep=null", "--out", str(tmp_path / "r"), "--quiet"]) == 0


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_validate_refuses_a_data_path_without_data_files(tmp_path, capsys, name):
    """Only aimcsim run used to notice that the folder holds no data files."""
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = write(tmp_path, {**SMALL, "data": {"name": name, "path": str(empty)}})
    assert main(["validate", cfg]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data.path: ") and err.count("\n") == 1


@pytest.mark.parametrize("metric,value", [("test_accuracy", 70), ("test_accuracy", -0.1), ("train_loss", -1),
                                          ("grad_norm_sq", -1e-3)])
def test_target_values_out_of_range_are_refused(tmp_path, capsys, metric, value):
    cfg = write(tmp_path, {**SMALL, "train": {**SMALL["train"], "target": {"metric": metric, "value": value}}})
    assert main(["validate", cfg]) == 2
    assert "train.target.value" in capsys.readouterr().err


def test_plot_refuses_a_negative_window(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", write(tmp_path, SMALL), "--out", str(out), "--quiet"]) == 0
    for bad in ("-5", "0"):
        assert main(["plot", str(out), "--cycles", bad]) == 2
        assert "--cycles" in capsys.readouterr().err
    assert not (out / "timeline.png").exists()


def test_readme_points_to_the_architecture_doc_in_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "docs/architecture.md" in readme and (ROOT / "docs" / "architecture.md").is_file()
    assert "DESIGN.md" not in readme
    for module in re.findall(r"`aimcsim/([a-z_/]+\.py)`", (ROOT / "docs" / "architecture.md").read_text()):
        assert (ROOT / "aimcsim" / module).is_file(), module


# ------------------------------------------------------------------ deadlock
def test_a_deadlocking_schedule_ends_with_status_deadlock_and_exit_1(tmp_path, monkeypatch, capsys):
    """A registered schedule whose stage 1 waits for a backward before its forward used to end
    'ok'. (Action lists are checked for deadlocks before a run; a schedule in code is not.)"""
    def broken(stages, m):
        rows = orders.gpipe_rows(stages, m)
        rows[1] = rows[1][m:] + rows[1][:m]
        return rows

    monkeypatch.setitem(schedules.SCHEDULES, "broken", schedules.ScheduleKind(schedules._single(broken)))
    out = tmp_path / "d"
    assert main(["run", write(tmp_path, small(pipeline={"schedule": "broken"})), "--out", str(out), "--quiet"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "deadlock"
    assert "accelerator 1 waits for 1B0" in summary["message"]
    assert "accelerator 2 waits for 2F" in summary["message"]
    assert "accelerator 0 waits for 0B0" in summary["message"]


# ------------------------------------------------------------- lr convention
def test_minibatch_reduction_sum_gives_gpipe_the_step_of_m_times_lr():
    """sum applies each micro-batch with lr: the same arithmetic as mean with M * lr."""
    m = 4
    base = small(pipeline={"schedule": "gpipe", "microbatches": m}, device={"type": "ideal"},
                 io={"forward": {"perfect": True}, "backward": {"perfect": True}})
    summed = aimcsim.simulate({**base, "train": {**base["train"], "lr": 0.05, "minibatch_reduction": "sum"}})
    scaled = aimcsim.simulate({**base, "train": {**base["train"], "lr": 0.05 * m}})
    mean = aimcsim.simulate({**base, "train": {**base["train"], "lr": 0.05}})
    np.testing.assert_allclose(summed.metrics["train_loss"], scaled.metrics["train_loss"], rtol=1e-6)
    assert not np.allclose(summed.metrics["train_loss"], mean.metrics["train_loss"], rtol=1e-6)
    # where an update holds one micro-batch both are the same step: the key is refused, naming why
    with pytest.raises(UnusedKeyError, match="train.minibatch_reduction: schedule async .* updates after every"):
        aimcsim.simulate(small(train={"minibatch_reduction": "sum"}))
    with pytest.raises(UnusedKeyError, match="one micro-batch per mini-batch: mean and sum are the same step"):
        aimcsim.load_config({**base, "pipeline": {"schedule": "gpipe", "microbatches": 1},
                             "train": {**base["train"], "minibatch_reduction": "sum"}})


def test_depth_sweep_compares_like_with_like_and_sweeps_say_when_they_do_not(tmp_path, capsys):
    cfg = yaml.safe_load((ROOT / "configs" / "depth_sweep.yaml").read_text())
    assert cfg["train"]["minibatch_reduction"] == "sum"
    grid = {"pipeline.schedule": ["gpipe", "async"]}
    base = small(pipeline={"microbatches": 3}, train={"epochs": 0.3})
    aimcsim.sweep(base, grid, out=tmp_path / "mean", workers=1, quiet=False)
    assert "train.minibatch_reduction: sum" in capsys.readouterr().err
    aimcsim.sweep({**base, "train": {**base["train"], "minibatch_reduction": "sum"}}, grid, out=tmp_path / "sum",
                  workers=1, quiet=False)
    err = capsys.readouterr().err
    assert "1/M of the step" not in err  # no unequal-steps note; the key's own note names where it applies
    assert "note: train.minibatch_reduction applies at 1 of 2 points; ignored at pipeline.schedule=async" in err


# -------------------------------------------------------------- SimPy, engine
def test_the_simulator_touches_no_private_simpy_field():
    source = "\n".join(p.read_text() for p in (ROOT / "aimcsim").rglob("*.py"))
    for private in ("._ok", "._value", "._defused", "._queue", "._eid", ".callbacks"):
        assert private not in source, private


def test_simpy_version_range_is_pinned():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"simpy>=4\.1,<\d', text)


def test_no_module_calls_back_into_the_engine():
    for path in (ROOT / "aimcsim" / "sim").glob("*.py"):
        if path.name not in ("engine.py", "__init__.py"):
            assert not re.search(r"\bengine\.[a-z_]|from \.engine|import engine", path.read_text()), path.name


def test_stop_at_target_and_divergence_stop_between_steps():
    stop = aimcsim.simulate(small(train={"target": {"metric": "train_loss", "value": 1.08}, "stop_at_target": True,
                                         "epochs": 3}))
    assert stop.summary["message"] == "stopped at target" and stop.summary["status"] == "ok"
    assert stop.metrics["samples"].iloc[-1] == stop.summary["samples"] == stop.summary["sample_complexity"]


# ------------------------------------------------------------------ outputs
def test_perfetto_trace_can_be_compressed_or_skipped(tmp_path):
    cfg = write(tmp_path, SMALL)
    for mode, expected in (("json", "trace.json"), ("gz", "trace.json.gz"), ("none", None)):
        out = tmp_path / mode
        assert main(["run", cfg, "--out", str(out), "--quiet", "--perfetto", mode]) == 0
        names = {p.name for p in out.iterdir()}
        fixed = {"config.yaml", "summary.json", "metrics.csv", "trace.csv", "weights.npz"}
        assert fixed <= names and (names - fixed) == ({expected} - {None})
    import gzip
    plain = json.loads((tmp_path / "json" / "trace.json").read_text())
    packed = json.loads(gzip.decompress((tmp_path / "gz" / "trace.json.gz").read_bytes()))
    assert plain == packed
    assert main(["run", cfg, "--out", str(tmp_path / "x"), "--quiet", "--perfetto", "zip"]) == 2


def test_a_sweep_writes_perfetto_traces_only_when_asked(tmp_path):
    grid = {"pipeline.stages": [1, 2]}
    aimcsim.sweep(small(), grid, out=tmp_path / "default", workers=1)
    assert not list((tmp_path / "default").rglob("trace.json*"))
    assert len(list((tmp_path / "default").rglob("trace.csv"))) == 2
    aimcsim.sweep(small(), grid, out=tmp_path / "asked", workers=1, perfetto="gz")
    assert len(list((tmp_path / "asked").rglob("trace.json.gz"))) == 2


def test_curves_png_has_words_units_and_the_target_line():
    import matplotlib
    matplotlib.use("Agg")
    from aimcsim.plots import training_curves

    r = aimcsim.simulate(small(train={"target": {"metric": "test_accuracy", "value": 0.4}}))
    fig = training_curves(r.metrics, "test_accuracy", 0.4)
    labels = {ax.get_xlabel() for ax in fig.axes} | {ax.get_ylabel() for ax in fig.axes}
    assert {"samples trained", "simulated time (clock cycles)", "loss", "test accuracy (fraction correct)"} <= labels
    assert not labels & {"samples", "cycles", "train_loss", "test_accuracy"}  # no column names
    lines = [line for ax in fig.axes[2:] for line in ax.get_lines()]
    assert any(line.get_label().startswith("target: test accuracy") for line in lines)
    assert all(ax.get_legend() is not None for ax in fig.axes)


def test_sweep_png_marks_the_points_that_missed_the_target():
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd

    from aimcsim.plots import sweep_plot

    results = pd.DataFrame({
        "pipeline.stages": [1, 1, 2, 2, 1, 1, 2, 2], "pipeline.schedule": ["async"] * 4 + ["gpipe"] * 4,
        "sample_complexity": [100, 120, 200, None, 300, 320, None, None],
        "cycle_complexity": [10, 12, 20, None, 30, 32, None, None],
        "final_test_accuracy": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]})
    fig = sweep_plot(results)
    assert all(ax.get_legend() is not None and ax.get_ylabel() for ax in fig.axes)
    notes = " ".join(" ".join(t.get_text().split()) for t in fig.axes[0].texts)
    assert "async at 2: 1/2 reached" in notes and "gpipe at 2: 0/2 reached" in notes
    hollow = [line for line in fig.axes[0].get_lines() if line.get_markerfacecolor() == "white"]
    assert sum(len(line.get_xdata()) for line in hollow) == 1  # async at K = 2: one of two seeds reached
    crosses = [line for line in fig.axes[0].get_lines() if line.get_marker() == "x"]
    assert sum(len(line.get_xdata()) for line in crosses) == 1  # gpipe at K = 2: no seed reached


# ------------------------------------------------------------- thread counts
THREADS_SCRIPT = """
import hashlib, numba, numpy as np
from aimcsim import AnalogTile
from aimcsim.kernels import PARALLEL_MIN_SIZE
rng = np.random.default_rng(1)
digest = hashlib.sha256()
for size, pulse_type in ((512, "stochastic_compressed"), (384, "expected"), (512, "deterministic_implicit")):
    assert size * size >= PARALLEL_MIN_SIZE  # the threaded kernels
    tile = AnalogTile(size, size + 3, update={"pulse_type": pulse_type}, forward_io={"inp_noise": 0.01}, seed=4)
    tile.set_weights(rng.uniform(-0.1, 0.1, (size, size + 3)))
    for _ in range(3):
        x = rng.uniform(-1, 1, (2, size + 3)).astype(np.float32)
        d = (0.1 * rng.standard_normal((2, size))).astype(np.float32)
        digest.update(tile.forward(x).tobytes())
        digest.update(tile.backward(d).tobytes())
        tile.update(x, d, 0.01)
    digest.update(tile.get_weights().tobytes())
# a convolution's patches: many vectors on a small tile plan on all threads, fire in row blocks
tile = AnalogTile(16, 145, device={"type": "soft_bounds", "write_noise_std": 0.02}, seed=5)
for _ in range(2):
    x = rng.uniform(-1, 1, (1200, 145)).astype(np.float32)
    d = (0.05 * rng.standard_normal((1200, 16))).astype(np.float32)
    tile.update(x, d, 0.05)
digest.update(tile.get_weights().tobytes())
print(numba.get_num_threads(), digest.hexdigest())
"""


def test_results_are_bit_identical_for_1_2_and_8_threads():
    import os
    import subprocess
    import sys

    digests = {}
    for threads in (1, 2, 8):
        env = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
        proc = subprocess.run([sys.executable, "-c", THREADS_SCRIPT], capture_output=True, text=True, env=env,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        used, digest = proc.stdout.split()
        assert int(used) == threads
        digests[threads] = digest
    assert len(set(digests.values())) == 1, digests
