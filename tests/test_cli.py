"""The aimcsim command line: exit codes, one-line errors, run directories, reruns, interrupts."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from aimcsim import trace as tr
from aimcsim.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
SMALL = {
    "data": {"name": "synthetic", "n_samples": 150, "n_features": 6, "n_classes": 3},
    "model": {"hidden": [8, 8], "activation": "tanh"},
    "pipeline": {"schedule": "async", "stages": 3},
    "train": {"lr": 0.05, "epochs": 1, "eval_every": 40},
}


def write(tmp_path, data, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if isinstance(data, dict) else data)
    return str(path)


def deep(base, dotted, value):
    out = json.loads(json.dumps(base))
    node = out
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return out


MALFORMED = [
    # (dotted key, bad value, text the one-line message must contain)
    ("pipline", {"stages": 2}, "pipline: unknown key (did you mean 'pipeline'?)"),
    ("pipeline.stagse", 2, "pipeline.stagse: unknown key (did you mean 'stages'?)"),
    ("train.target.metrik", "train_loss", "train.target.metrik: unknown key (did you mean 'metric'?)"),
    ("model.hiden", [8], "model.hiden: unknown key (did you mean 'hidden'?)"),
    ("device.dw_mn", 0.01, "device.dw_mn: unknown key (did you mean 'dw_min'?)"),
    ("io.forward.out_nosie", 0.1, "io.forward.out_nosie: unknown key (did you mean 'out_noise'?)"),
    ("update.desired_bll", 8, "update.desired_bll: unknown key (did you mean 'desired_bl'?)"),
    ("timing.read_nss", 3, "timing.read_nss: unknown key (did you mean 'read_ns'?)"),
    ("pipeline.stages", "three", "pipeline.stages"),
    ("train.lr", "fast", "train.lr"),
    ("model.hidden", "wide", "model.hidden"),
    ("pipeline.stages", 0, "pipeline.stages"),
    ("pipeline.microbatches", 0, "pipeline.microbatches"),
    ("pipeline.microbatch_size", -1, "pipeline.microbatch_size"),
    ("train.lr", -0.1, "train.lr"),
    ("train.epochs", 0, "train.epochs"),
    ("train.eval_every", 0, "train.eval_every"),
    ("device.dw_min", 0, "device.dw_min"),
    ("timing.link_bits_per_cycle", -5, "timing.link_bits_per_cycle"),
    ("model.hidden", [8, -2], "model.hidden"),
    ("pipeline.schedule", "pipedream", "pipeline.schedule"),
    ("device.type", "softbounds", "device.type: unknown device type 'softbounds' (did you mean 'soft_bounds'?)"),
    ("model.activation", "gelu", "model.activation"),
    ("train.target.metric", "accuracy", "train.target.metric"),
    ("timing.preset", "rf24", "timing.preset"),
    ("update.pulse_type", "stochastic", "update.pulse_type"),
    ("io.backward.noise_management", "absmax", "io.backward.noise_management"),
    ("pipeline.partition", [1, 1], "pipeline.partition: 2 entries for 3 stages"),
    ("pipeline.partition", [2, 1, 1], "pipeline.partition: [2, 1, 1] must be positive layer counts summing"),
    ("pipeline.stages", 5, "pipeline.stages: 5 stages need at least as many layers"),
    ("data.name", "mnist", "data.path: required for data set 'mnist'"),
    ("data.path", "/nonexistent/mnist", "data.path"),
    ("device.w_min", 0.5, "device.w_min"),
    ("seed", -3, "seed"),
]


@pytest.mark.parametrize("key,value,expected", MALFORMED, ids=[m[0] + "=" + repr(m[1]) for m in MALFORMED])
def test_malformed_configs_exit_2_with_one_line_naming_the_key(tmp_path, capsys, key, value, expected):
    data = deep(SMALL, key, value)
    if key.startswith("data."):  # a file data set: the synthetic keys would be refused as unread
        data["data"] = {k: v for k, v in data["data"].items() if k in ("name", "path")}
    if key == "data.path":
        data["data"]["name"] = "mnist"
    code = main(["run", write(tmp_path, data), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert expected in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing was started


@pytest.mark.parametrize("text,expected", [
    ("pipeline: [1, 2\n", "is not valid YAML at line"),
    ("- just\n- a list\n", "must hold a mapping"),
])
def test_unreadable_config_files(tmp_path, capsys, text, expected):
    assert main(["validate", write(tmp_path, text)]) == 2
    assert expected in capsys.readouterr().err


def test_usage_errors_and_missing_files_exit_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["run", write(tmp_path, SMALL), "--set", "pipeline.stages"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["fly"]) == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_real_process_exit_code_and_no_traceback(tmp_path):
    bad = write(tmp_path, deep(SMALL, "pipeline.stagse", 2))
    proc = subprocess.run([sys.executable, "-m", "aimcsim.cli", "run", bad], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: pipeline.stagse: unknown key (did you mean 'stages'?); "
                                                "allowed: actions, max_stages, microbatch_size, microbatches, partition, "
                                                "schedule, stages, update, virtual_stages"]


def test_quickstart_writes_the_whole_run_directory(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["run", str(QUICKSTART), "--out", str(out), "--set", "train.epochs=0.5"]) == 0
    printed = capsys.readouterr().out
    assert "status            ok" in printed and str(out) in printed
    assert {p.name for p in out.iterdir()} == {"config.yaml", "summary.json", "metrics.csv", "trace.csv", "trace.json", "weights.npz"}
    summary = json.loads((out / "summary.json").read_text())
    for key in ("status", "schedule", "stages", "microbatches", "samples", "cycles", "time_ns", "final_train_loss",
                "final_test_loss", "final_test_accuracy", "sample_complexity", "cycle_complexity", "utilization",
                "bubble_fraction", "staleness", "events", "wall_seconds"):
        assert key in summary
    trace = pd.read_csv(out / "trace.csv")
    assert list(trace.columns) == ["stage", "accelerator", "op", "item", "start", "end", "version"]
    assert tr.utilization(trace, 3) == pytest.approx(summary["utilization"])
    assert tr.max_staleness(trace, 3) == summary["staleness"] == [2, 1, 0]
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns)[:6] == ["samples", "cycles", "time_ns", "train_loss", "test_loss", "test_accuracy"]
    chrome = json.loads((out / "trace.json").read_text())
    assert sum(e["ph"] == "X" for e in chrome["traceEvents"]) == len(trace)
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 0.5 and resolved["device"]["dw_min"] == 0.001
    assert main(["run", str(QUICKSTART), "--out", str(out)]) == 2  # never overwrite a finished run


def test_same_config_and_seed_give_byte_identical_outputs(tmp_path):
    cfg = write(tmp_path, SMALL)
    for name in ("a", "b"):
        assert main(["run", cfg, "--out", str(tmp_path / name), "--quiet"]) == 0
    for f in ("metrics.csv", "trace.csv", "trace.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert main(["run", cfg, "--out", str(tmp_path / "c"), "--quiet", "--set", "seed=1"]) == 0
    assert (tmp_path / "a" / "metrics.csv").read_bytes() != (tmp_path / "c" / "metrics.csv").read_bytes()


def test_a_diverged_run_exits_1_with_its_summary(tmp_path):
    data = deep(SMALL, "device", {"type": "ideal"})
    data["io"] = {"forward": {"perfect": True}, "backward": {"perfect": True}}
    data["data"] = {"name": "synthetic", "n_samples": 150, "n_features": 6, "task": "regression"}
    data["model"] = {"hidden": [8, 8], "activation": "relu", "loss": "mse", "init_scale": 3.0}
    data["train"].update(lr=40.0, epochs=5, target={"metric": "train_loss", "value": 0.1})
    assert main(["run", write(tmp_path, data), "--out", str(tmp_path / "d"), "--quiet"]) == 1
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at_sample"] is not None


def test_validate_prints_the_resolved_config(tmp_path, capsys):
    assert main(["validate", write(tmp_path, SMALL), "--set", "pipeline.schedule=gpipe"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["pipeline"]["schedule"] == "gpipe"
    assert resolved["io"]["forward"]["out_noise"] == 0.06 and resolved["io"]["backward"]["bound_management"] == "none"
    assert resolved["timing"]["forward_cycles"] == 1 and resolved["device"]["type"] == "soft_bounds"


def test_plot_writes_timeline_and_curves(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["run", write(tmp_path, SMALL), "--out", str(out), "--quiet"]) == 0
    assert main(["plot", str(out)]) == 0
    for name in ("timeline.png", "curves.png"):
        assert (out / name).stat().st_size > 10_000


def test_help_texts(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--set KEY=VALUE" in text and "pipeline.stages=8" in text and "examples:" in text


def test_sigint_leaves_no_partial_file(tmp_path):
    long = deep(SMALL, "train.epochs", 400)
    out = tmp_path / "interrupted"
    # a shell that starts its jobs in the background ignores SIGINT for them (and so would
    # this child): give the child the default disposition, as in an interactive terminal
    proc = subprocess.Popen([sys.executable, "-m", "aimcsim.cli", "run", write(tmp_path, long), "--out", str(out),
                             "--quiet"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        partial = out / ".trace.csv.partial"
        deadline = time.time() + 120
        while time.time() < deadline and not partial.exists():
            time.sleep(0.1)
        assert partial.exists(), "the run never started writing its trace"
        time.sleep(3.0)  # past set-up: the run is simulating and streaming
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    leftovers = list(out.iterdir()) if out.exists() else []
    assert leftovers == []


def test_progress_bar_is_silent_without_a_terminal(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aimcsim.cli", "run", write(tmp_path, SMALL), "--out",
                           str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""


def test_progress_bar_on_a_terminal(tmp_path):
    pty = pytest.importorskip("pty")
    long = write(tmp_path, deep(SMALL, "train.epochs", 150))  # ~6 s: the bar appears after 2 s
    out = bytearray()

    def read(fd):
        data = os.read(fd, 1024)
        out.extend(data)
        return data

    pid_status = []
    old = os.getcwd()
    try:
        pid_status.append(pty.spawn([sys.executable, "-m", "aimcsim.cli", "run", long, "--out",
                                     str(tmp_path / "tty")], read))
    finally:
        os.chdir(old)
    text = out.decode(errors="replace")
    assert "sample" in text and "cycles=" in text and "loss=" in text
