"""No setting is silently ignored, and no bad input crashes or exhausts memory.

The search (``settings_search``) changes every field of every shipped config under every
schedule and asserts that the change is refused as unread or changes the run's outputs. CI
runs a seeded sample of it; ``AIMCSIM_SEARCH_ALL=1 pytest tests/test_settings_apply.py``
runs all of it (about 25 minutes on two cores). The other tests pin the cases the issue
names, one each.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import aimcsim
import settings_search as search
from aimcsim.cli import main
from aimcsim.errors import ConfigError, UnusedKeyError
from test_cli import SMALL
from test_data import idx_bytes, make_cifar_folder, make_idx_folder

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
KEYS_PER_CASE = 15  # the CI sample: this many leaves of every (config, schedule) case,
CASE_SECONDS = 6.0  # fewer where that many would take longer than this


def with_(base: dict, **sections) -> dict:
    out = json.loads(json.dumps(base))
    for key, value in sections.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


# ----------------------------------------------------------------------------- the search
@pytest.fixture(scope="module")
def data_folders(tmp_path_factory) -> dict:
    """Small files in every file format a shipped config reads (CI has no real data)."""
    root = tmp_path_factory.mktemp("settings")
    make_idx_folder(root / "mnist", n_train=40, n_test=10)
    make_cifar_folder(root / "cifar", per_batch=8, batches=5)
    return {"mnist": str(root / "mnist"), "fashion_mnist": str(root / "mnist"), "cifar10": str(root / "cifar")}


@pytest.mark.parametrize("name", search.case_names())
def test_every_setting_is_refused_or_changes_the_run(name, data_folders):
    """Each (sampled) leaf of the case's resolved config, changed to other valid values: refused
    as unread, or the run's outputs change. A valid change that changes nothing fails."""
    tree = search.case(name, data_folders)
    if tree is None:
        pytest.skip(f"{name}: the network has too few layers for the schedule's action list")
    keys = [".".join(map(str, p)) for p in search.leaves(tree)]
    if not os.environ.get("AIMCSIM_SEARCH_ALL"):  # a sample, fewer keys where a short run is slow
        started = time.perf_counter()
        search.outputs(aimcsim.load_config(tree))
        per_run = time.perf_counter() - started
        count = int(min(KEYS_PER_CASE, max(3, CASE_SECONDS / (2 * per_run))))
        keys = random.Random(f"{name}-{len(keys)}").sample(keys, min(count, len(keys)))
    findings = search.search(name, tree, keys)
    assert len(findings) == len(keys)
    silent = [f"{f.key} ({f.detail})" for f in findings if f.outcome == "no-op"]
    assert not silent, f"{name}: settings that change nothing: {silent}"
    stuck = [f.key for f in findings if f.outcome == "no-value"]
    assert not stuck, f"{name}: no other valid value found for {stuck}; give the search one or say why not"


def test_the_search_finds_a_planted_silent_setting(monkeypatch):
    """The search would catch a key nothing reads: with the rule for update keys under
    pulse_type none switched off, desired_bl there is a valid change that changes nothing."""
    from aimcsim import params  # noqa: PLC0415

    tree = search.case("quickstart/async", None)
    tree["update"] = {"pulse_type": "none", "desired_bl": 31}
    monkeypatch.setattr(params.UpdateParameters, "unused_keys", lambda self, floating=False: {})
    findings = {f.key: f for f in search.search("planted", tree, ["update.desired_bl"])}
    assert findings["update.desired_bl"].outcome == "no-op"


# ------------------------------------------------------------- the cases the issue names
@pytest.mark.parametrize("schedule", ["async", "sequential", "async_stash"])
def test_microbatches_are_refused_where_there_are_no_mini_batches(schedule):
    with pytest.raises(UnusedKeyError, match=f"pipeline.microbatches: schedule {schedule} has no mini-batches; "
                                             "micro-batches follow each other without a flush"):
        aimcsim.load_config(with_(SMALL, pipeline={"schedule": schedule, "microbatches": 4}))


def test_an_async_run_says_it_has_no_mini_batches(tmp_path, capsys):
    assert main(["run", str(QUICKSTART), "--out", str(tmp_path / "r"), "--set", "train.epochs=0.05",
                 "--perfetto", "none"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("schedule")][0]
    assert "no mini-batches" in line and "M=" not in line
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["microbatches"] is None


@pytest.mark.parametrize("overrides,message", [
    (["train.minibatch_reduction=sum"], "train.minibatch_reduction: schedule async (update immediate) updates "
                                        "after every micro-batch"),
    (["pipeline.schedule=gpipe", "pipeline.microbatches=1", "train.minibatch_reduction=sum"],
     "train.minibatch_reduction: one micro-batch per mini-batch"),
    (["update.pulse_type=none", "update.desired_bl=20"], "update.desired_bl: has no effect: pulse_type none fires"),
    (["update.pulse_type=expected", "update.desired_bl=20"], "update.desired_bl: has no effect: pulse_type expected"),
    (["update.fixed_bl=false"], "update.fixed_bl: has no effect: update_bl_management is on"),
    (["io.forward.perfect=true", "io.forward.out_noise=0.1"], "io.forward.out_noise: has no effect: perfect: true"),
    (["io.backward.is_perfect=true", "io.backward.inp_res=0.1"], "io.backward.inp_res: has no effect: perfect"),
    (["io.forward.bound_management=none", "io.forward.max_bm_factor=10"], "io.forward.max_bm_factor: has no effect"),
    (["data.n_features=4"], "data.n_features: only data set synthetic reads it (data.name is digits)"),
    (["data.path=/tmp"], "data.path: data set digits is generated or bundled"),
    (["energy.preset=isaac32", "update={pulse_type: none}", "energy.device_pulse_pj=3"],
     "energy.device_pulse_pj: has no effect: the updates fire no pulses"),
    (["timing.preset=rf25", "timing.transfer_cycles=3"], "timing.transfer_cycles: has no effect: a single-array"),
    (["timing.read_ns=30"], "timing.read_ns: has no effect under preset 'ideal'"),
    (["pipeline.stages=1", "timing.link_latency_cycles=3"], "timing.link_latency_cycles: has no effect: every "
                                                            "stage is on one accelerator"),
    (["model.layers=[{linear: {units: 10}}]", "pipeline.stages=1"], "model.hidden: model.layers describes the network"),
    (["pipeline.virtual_stages=2"], "pipeline.virtual_stages: schedule async holds one stage per accelerator"),
    (["train.target=null", "train.stop_at_target=true"], "train.stop_at_target: train.target is null"),
    (["device.type=ideal"], "update.pulse_type: has no effect: the device (ideal) updates in floating point"),
    (["device.lifetime_dtod=0.1"], "device.lifetime_dtod: has no effect: lifetime is 0"),
    (["update={pulse_type: expected}", "device.dw_min_std=0.1"],
     "device.dw_min_std: has no effect: pulse_type expected"),
])
def test_a_key_nothing_reads_is_refused_naming_it_and_why(overrides, message, capsys):
    assert main(["validate", str(QUICKSTART), *(x for o in overrides for x in ("--set", o))]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err


def test_a_key_left_at_its_default_is_never_an_error_and_config_yaml_lists_what_applies():
    config = aimcsim.load_config(with_(SMALL, update={"pulse_type": "none"}, io={"forward": {"perfect": True}}))
    resolved = config.resolved()
    assert resolved["update"] == {"pulse_type": "none"}
    assert resolved["io"]["forward"] == {"perfect": True}
    assert "microbatches" not in resolved["pipeline"] and "minibatch_reduction" not in resolved["train"]
    assert "n_features" in resolved["data"] and "path" not in resolved["data"]
    digits = aimcsim.load_config({"data": {"name": "digits"}}).resolved()["data"]
    assert digits == {"name": "digits", "test_fraction": 0.2, "max_train": None, "max_test": None}  # no synthetic keys
    again = aimcsim.load_config(resolved)  # what config.yaml lists loads again, unchanged
    assert again.resolved() == resolved


def test_the_rule_is_per_sweep(tmp_path, capsys):
    base = with_(SMALL, pipeline={"microbatches": 3}, train={"epochs": 0.2})
    grid = {"pipeline.schedule": ["gpipe", "async"]}
    table = aimcsim.sweep(base, grid, out=tmp_path / "mixed", workers=1, quiet=False)
    assert list(table["status"]) == ["ok", "ok"]
    err = capsys.readouterr().err
    assert "note: pipeline.microbatches applies at 1 of 2 points; ignored at pipeline.schedule=async" in err
    gpipe = yaml.safe_load((tmp_path / "mixed" / "pipeline.schedule=gpipe" / "config.yaml").read_text())
    run_async = yaml.safe_load((tmp_path / "mixed" / "pipeline.schedule=async" / "config.yaml").read_text())
    assert gpipe["pipeline"]["microbatches"] == 3 and "microbatches" not in run_async["pipeline"]
    with pytest.raises(UnusedKeyError, match=r"pipeline.microbatches: schedule async has no mini-batches.* at "
                                             r"every point of the sweep \(e.g. seed=0\)"):
        aimcsim.sweep(base, {"seed": [0, 1]}, out=tmp_path / "never", workers=1)
    assert not (tmp_path / "never").exists()
    with pytest.raises(UnusedKeyError, match="pipeline.microbatches"):  # a grid key no point reads
        aimcsim.sweep(SMALL, {"pipeline.microbatches": [2, 4]}, out=tmp_path / "grid", workers=1)


def test_validate_checks_a_sweep_config_per_sweep(capsys):
    assert main(["validate", str(ROOT / "configs" / "depth_sweep.yaml")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("# sweep of 8 points")
    assert "note: pipeline.microbatches applies at 4 of 8 points" in captured.err


# ------------------------------------------------------------------ output directories
@pytest.mark.parametrize("command", [
    ["run", str(QUICKSTART)],
    ["sweep", str(QUICKSTART), "--grid", "seed=0,1"],
    ["plot", str(ROOT / "configs")],
])
@pytest.mark.parametrize("where", ["file", "under_file"])
def test_an_output_path_that_cannot_be_a_directory_is_one_line(tmp_path, capsys, command, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = blocker if where == "file" else blocker / "run"
    assert main([*command, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out: ") and err.count("\n") == 1 and "Traceback" not in err
    assert blocker.read_text() == "a file"
    with pytest.raises(ConfigError, match="out: .* is a file"):
        aimcsim.simulate(str(QUICKSTART), out=blocker)


def test_an_output_directory_without_write_permission_is_one_line(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == locked else real_access(path, mode))
    assert main(["run", str(QUICKSTART), "--out", str(locked / "run")]) == 2  # as root, chmod would not stop us
    err = capsys.readouterr().err
    assert err == f"error: --out: '{locked / 'run'}' cannot be written: no write permission in '{locked}'\n"
    assert list(locked.iterdir()) == []


# ---------------------------------------------------------------------- memory and time
def test_a_huge_epoch_count_with_stop_at_target_does_not_grow_memory():
    """The data order is drawn epoch by epoch: 10^9 epochs cost what one does."""
    config = aimcsim.load_config(with_(SMALL, train={"epochs": 1.0e9, "stop_at_target": True, "eval_every": 40,
                                                     "target": {"metric": "train_loss", "value": 50.0}}))
    tracemalloc.start()
    try:
        result = aimcsim.simulate(config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.summary["message"] == "stopped at target" and result.summary["samples"] <= 40
    assert peak < 50e6  # drawing every epoch up front would need 10^9 x 120 indices


def test_the_epoch_by_epoch_order_equals_drawing_every_epoch_up_front():
    from aimcsim.data import Dataset  # noqa: PLC0415
    from aimcsim.sim.feed import DataFeed  # noqa: PLC0415

    x = np.arange(10, dtype=np.float32)[:, None]
    data = Dataset(x, np.arange(10), x, np.arange(10), 10, "t")
    for size in (1, 3, 4, 7):
        feed = DataFeed(data, size, 60, seed=5)
        rng = np.random.default_rng([5, 0x0DE])
        order = np.concatenate([rng.permutation(10) for _ in range(-(-60 * size // 10))])
        for item in [*range(60), 3, 0, 59, 12]:  # in order, then back to evicted epochs
            np.testing.assert_array_equal(feed.rows(item), order[item * size:(item + 1) * size])


@pytest.mark.parametrize("key,value,message", [
    ("train.epochs", ".inf", "train.epochs: Input should be a finite number"),
    ("train.lr", ".inf", "train.lr: Input should be a finite number"),
    ("train.lr", ".nan", "train.lr: Input should be a finite number"),
    ("device.dw_min", ".inf", "device.dw_min: Input should be a finite number"),
    ("timing.read_ns", ".inf", "timing.read_ns: must be a finite number"),
    ("pipeline.microbatch_size", "5000", "pipeline.microbatch_size: 5000 samples per micro-batch, but the training "
                                         "set has only 1438"),
])
def test_non_finite_and_impossible_values_are_refused_by_validate(capsys, key, value, message):
    assert main(["validate", str(QUICKSTART), "--set", f"{key}={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err


def test_a_device_without_range_is_refused(capsys):
    assert main(["validate", str(QUICKSTART), "--set", "device.w_max=0", "--set", "device.w_min=0"]) == 2
    assert capsys.readouterr().err.startswith("error: device.w_max: w_max and w_min are both 0.0")


def test_a_micro_batch_longer_than_the_run_is_refused_not_stretched(capsys):
    assert main(["validate", str(QUICKSTART), "--set", "pipeline.microbatch_size=500", "--set", "train.epochs=0.2"]) == 2
    assert capsys.readouterr().err.startswith("error: train.epochs: 0.2 epochs of 1438 samples are 287 samples, "
                                              "fewer than one micro-batch of 500")


# ---------------------------------------------------------------------------- config files
def test_an_empty_config_file_is_refused_and_braces_take_every_default(tmp_path, capsys):
    for text in ("", "# only a comment\n"):
        (tmp_path / "c.yaml").write_text(text)
        assert main(["validate", str(tmp_path / "c.yaml")]) == 2
        assert "is empty (no settings); write {} in it to take every default" in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text("{}\n")
    assert main(["validate", str(tmp_path / "c.yaml")]) == 0


def test_a_section_given_twice_is_refused(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("train: {lr: 0.1}\nseed: 1\ntrain: {epochs: 2}\n")
    assert main(["validate", str(tmp_path / "c.yaml")]) == 2
    assert "config: 'train' is given twice in one mapping at line 3" in capsys.readouterr().err


def test_a_relative_action_list_is_read_from_the_config_files_folder(tmp_path):
    config = aimcsim.load_config(ROOT / "configs" / "zero_bubble.yaml")  # from any working directory
    assert config.action_list().accelerators == 4
    assert Path(config.pipeline.actions).is_absolute()
    with pytest.raises(ConfigError, match=r"no such file .* e\.g\. configs/schedules/gpipe_k4_m8\.csv"):
        aimcsim.load_config({"pipeline": {"schedule": "actions", "actions": "missing.csv"}})
    assert (ROOT / "configs" / "schedules" / "gpipe_k4_m8.csv").is_file()  # the example named is shipped


def test_null_hands_the_stage_count_to_an_action_list_and_errors_say_where_it_came_from(capsys):
    lists = ROOT / "configs" / "schedules"
    config = aimcsim.load_config(QUICKSTART, ["pipeline.schedule=actions", f"pipeline.actions={lists / 'gpipe_k4_m8.csv'}",
                                              "pipeline.stages=null", "model.hidden=[8, 8, 8]"])
    assert config.pipeline.stages == 4
    assert main(["validate", str(QUICKSTART), "--set", "pipeline.schedule=actions", "--set",
                 f"pipeline.actions={lists / 'gpipe_k4_m8.csv'}", "--set", "pipeline.stages=null"]) == 2
    err = capsys.readouterr().err
    assert "pipeline.stages: 4 stages (from the action list" in err and "the default" not in err


def test_an_mlp_can_be_written_as_a_layer_list():
    layers = [{"linear": {"units": 16}}, {"activation": "tanh"}, {"linear": {"units": 10}}]
    as_list = aimcsim.simulate({"model": {"layers": layers}, "pipeline": {"stages": 2},
                                "train": {"epochs": 0.05, "eval_every": 40}})
    as_hidden = aimcsim.simulate({"model": {"hidden": [16], "activation": "tanh"}, "pipeline": {"stages": 2},
                                  "train": {"epochs": 0.05, "eval_every": 40}})
    pd.testing.assert_frame_equal(as_list.metrics, as_hidden.metrics)
    flat = [{"flatten": {}}, *layers]  # flatten first: the image's flat vector, which the data already is
    assert aimcsim.simulate({"model": {"layers": flat}, "pipeline": {"stages": 2},
                             "train": {"epochs": 0.05, "eval_every": 40}}).metrics.equals(as_list.metrics)


# ------------------------------------------------------------- validate checks what run does
@pytest.mark.parametrize("breakage,message", [
    ("truncated", "holds 1273 values, its header says 1280"),
    ("magic", "bad magic number"),
    ("count", "do not match"),
    ("label", "has a label 12 outside 0..9"),
])
def test_validate_reads_the_data_files_as_a_run_would(tmp_path, capsys, breakage, message):
    folder = tmp_path / "m"
    make_idx_folder(folder, n_train=20, n_test=5, gz=False, size=8)
    labels = folder / "train-labels-idx1-ubyte"
    if breakage == "truncated":
        images = folder / "train-images-idx3-ubyte"
        images.write_bytes(images.read_bytes()[:-7])
    elif breakage == "magic":
        labels.write_bytes(b"\x01" + labels.read_bytes()[1:])
    elif breakage == "count":
        labels.write_bytes(idx_bytes(np.zeros(19, dtype=np.uint8)))
    else:
        labels.write_bytes(idx_bytes(np.full(20, 12, dtype=np.uint8)))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": {"name": "mnist", "path": str(folder)},
                                                     "model": {"hidden": [8]}, "pipeline": {"stages": 1}}))
    assert main(["validate", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_validate_builds_the_layer_list(capsys):
    assert main(["validate", str(QUICKSTART), "--set", "model.hidden=null", "--set", "model.activation=null",
                 "--set", "model.layers=[{linear: {units: 8}}, {bogus: 1}, {linear: {units: 10}}]"]) == 2
    assert capsys.readouterr().err.startswith("error: model.layers[1]: unknown layer 'bogus'")


# ------------------------------------------------------------------------ sweeps, plots
def test_a_sweep_script_without_a_main_guard_gets_one_clear_error(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import aimcsim
        aimcsim.sweep({SMALL!r}, {{"seed": [0, 1]}}, out={str(tmp_path / 'out')!r}, workers=2)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"aimcsim.errors.ConfigError: sweep: the script {script} has no  if __name__ == \"__main__\":  guard")
    assert "bootstrapping" not in done.stderr and not (tmp_path / "out").exists()


def test_an_interrupted_sweep_cancels_what_has_not_started_and_keeps_what_finished(tmp_path):
    def interrupt(name, summary):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        aimcsim.sweep(with_(SMALL, train={"epochs": 0.2}), {"seed": list(range(6))}, out=tmp_path, workers=2,
                      on_point=interrupt)
    results = pd.read_csv(tmp_path / "results.csv")
    assert len(results) == 1 and results["status"].iloc[0] == "ok"
    finished = [p for p in tmp_path.iterdir() if (p / "summary.json").is_file()]
    assert len(finished) <= 2  # the one recorded, and at most the other worker's point in flight
