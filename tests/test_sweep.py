"""Sweeps: serial, local pool and a real Dask cluster agree; resumable; failures recorded."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import yaml

import aimcsim
from aimcsim.cli import main
from aimcsim.errors import ConfigError
from aimcsim.sweep import first_difference, parse_grid, point_name, points

BASE = {
    "data": {"name": "synthetic", "n_samples": 150, "n_features": 6, "n_classes": 3},
    "model": {"hidden": [8, 8], "activation": "tanh"},
    "pipeline": {"schedule": "async", "stages": 1},
    "train": {"lr": 0.05, "epochs": 1, "eval_every": 30, "target": {"metric": "train_loss", "value": 1.0}},
}
GRID = {"pipeline.stages": [1, 3], "pipeline.schedule": ["gpipe", "async"]}
VOLATILE = ["wall_seconds"]


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=VOLATILE).sort_values("point").reset_index(drop=True)


def test_grid_parsing_and_point_names():
    grid = parse_grid(["pipeline.stages=1,2,4", "seed=0,1", "pipeline.schedule=gpipe,async"])
    assert grid == {"pipeline.stages": [1, 2, 4], "seed": [0, 1], "pipeline.schedule": ["gpipe", "async"]}
    ps = points(grid)
    assert len(ps) == 12 and ps[0] == {"pipeline.stages": 1, "seed": 0, "pipeline.schedule": "gpipe"}
    assert point_name(ps[-1]) == "pipeline.stages=4,seed=1,pipeline.schedule=async"
    assert point_name({"model.hidden": [8, 8]}) == "model.hidden=[8,_8]"


def test_serial_sweep_table_and_directories(tmp_path):
    table = aimcsim.sweep(BASE, GRID, out=tmp_path, workers=1)
    assert len(table) == 4 and set(table["status"]) == {"ok"}
    assert {"pipeline.stages", "pipeline.schedule", "samples", "cycles", "sample_complexity",
            "cycle_complexity", "final_test_accuracy", "staleness"} <= set(table.columns)
    for name in table["point"]:
        assert (tmp_path / name / "summary.json").is_file()
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert len(on_disk) == 4
    row = table[(table["pipeline.stages"] == 3) & (table["pipeline.schedule"] == "async")].iloc[0]
    assert json.loads(row["staleness"]) == [2, 1, 0]


def test_sweep_section_in_yaml_and_seed_axis(tmp_path):
    cfg = {**BASE, "sweep": {"grid": {"seed": [0, 1, 2]}, "workers": 1}}
    table = aimcsim.sweep(cfg, out=tmp_path)
    assert list(table["seed"]) == [0, 1, 2]
    assert table["final_train_loss"].nunique() == 3  # the seed changes the run


def test_interrupted_sweep_reruns_only_missing_points(tmp_path):
    done = []

    def stop_after_two(name, summary):
        done.append(name)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        aimcsim.sweep(BASE, GRID, out=tmp_path, workers=1, on_point=stop_after_two)
    assert len(pd.read_csv(tmp_path / "results.csv")) == 2  # finished points kept, file complete
    assert not list(tmp_path.glob("**/.*.partial"))
    second = []
    table = aimcsim.sweep(BASE, GRID, out=tmp_path, workers=1, on_point=lambda n, s: second.append(n))
    assert len(second) == 2 and not set(second) & set(done)
    assert len(table) == 4 and set(table["status"]) == {"ok"}


def test_a_batch_of_sweeps_on_one_pool_equals_the_sweeps_one_by_one(tmp_path):
    other = {**BASE, "train": {**BASE["train"], "lr": 0.1}}
    alone = [aimcsim.sweep(BASE, GRID, out=tmp_path / "a1", workers=1),
             aimcsim.sweep(other, {"seed": [0, 1, 2]}, out=tmp_path / "b1", workers=1)]
    seen = []
    batch = aimcsim.sweeps([(BASE, GRID, tmp_path / "a2"), (other, {"seed": [0, 1, 2]}, tmp_path / "b2")],
                           workers=2, on_point=lambda n, s: seen.append(n))
    assert len(seen) == 7
    for one, both, name in zip(alone, batch, ("a", "b")):
        assert comparable(one).equals(comparable(both))
        on_disk = [comparable(pd.read_csv(tmp_path / f"{name}{i}" / "results.csv")) for i in (1, 2)]
        assert on_disk[0].equals(on_disk[1])
    again = aimcsim.sweeps([(BASE, GRID, tmp_path / "a2"), (other, {"seed": [0, 1, 2]}, tmp_path / "b2")],
                           workers=2, on_point=lambda n, s: pytest.fail(n))  # resumed: nothing reruns
    assert [len(t) for t in again] == [4, 3]
    with pytest.raises(ConfigError, match="same directory"):
        aimcsim.sweeps([(BASE, GRID, tmp_path / "c"), (other, GRID, tmp_path / "c")], workers=1)


def test_a_finished_point_run_with_another_config_is_refused_not_reused(tmp_path, capsys):
    grid = {"seed": [0, 1]}
    aimcsim.sweep(BASE, grid, out=tmp_path, workers=1)
    assert aimcsim.sweep(BASE, grid, out=tmp_path, workers=1, on_point=lambda n, s: pytest.fail(n)) is not None
    edited = {**BASE, "train": {**BASE["train"], "lr": 0.1}}
    with pytest.raises(ConfigError, match=r"seed=0 was run with a different config \(train\.lr: 0\.05 there, 0\.1 now\)"):
        aimcsim.sweep(edited, grid, out=tmp_path, workers=1)
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited))
    assert main(["sweep", str(tmp_path / "edited.yaml"), "--grid", "seed=0,1", "--out", str(tmp_path),
                 "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.lr" in err[0] and "new --out" in err[0]


def test_first_difference_names_the_key_and_skips_fields_one_version_lacks():
    stored = {"train": {"lr": 0.05, "epochs": 1}, "device": {"type": "ideal", "old_field": 1}, "l": [1, {"a": 2}]}
    assert first_difference(stored, {"train": {"lr": 0.05, "epochs": 1}, "device": {"type": "ideal"},
                                     "l": [1, {"a": 2}], "new": 3}) is None
    assert first_difference(stored, {**stored, "l": [1, {"a": 3}]}) == "l[1].a: 2 there, 3 now"
    assert first_difference(stored, {**stored, "l": [1]}) == "l: [1, {'a': 2}] there, [1] now"


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path):
    base = {**BASE, "device": {"type": "ideal"}, "io": {"forward": {"perfect": True}, "backward": {"perfect": True}},
            "data": {"name": "synthetic", "n_samples": 150, "n_features": 6, "task": "regression"},
            "model": {"hidden": [8, 8], "activation": "relu", "loss": "mse", "init_scale": 3.0}}
    table = aimcsim.sweep(base, {"train.lr": [0.01, 40.0]}, out=tmp_path, workers=1)
    statuses = dict(zip(table["train.lr"], table["status"]))
    assert statuses == {0.01: "ok", 40.0: "diverged"}
    assert "non-finite" in table.set_index("train.lr").loc[40.0, "message"]


def test_local_pool_equals_serial(tmp_path):
    serial = aimcsim.sweep(BASE, GRID, out=tmp_path / "serial", workers=1)
    pool = aimcsim.sweep(BASE, GRID, out=tmp_path / "pool", workers=2)
    pd.testing.assert_frame_equal(comparable(serial), comparable(pool))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskCluster:
    """A real scheduler and worker processes on 127.0.0.1, torn down afterwards."""

    def __init__(self, n_workers: int, tmp_path):
        pytest.importorskip("distributed")
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.tmp = tmp_path
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
             str(self.port), "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers = [self._worker(k) for k in range(n_workers)]
        from distributed import Client
        deadline = time.time() + 60
        while True:
            try:
                with Client(self.address, timeout="2s") as client:
                    client.wait_for_workers(n_workers, timeout=30)
                break
            except (OSError, TimeoutError):
                if time.time() > deadline:
                    self.close()
                    raise

    def _worker(self, k):
        return subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nworkers", "1", "--nthreads",
             "1", "--no-dashboard", "--name", f"w{k}", "--local-directory", str(self.tmp / f"w{k}")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def close(self):
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def dask_cluster(tmp_path):
    cluster = DaskCluster(2, tmp_path)
    yield cluster
    cluster.close()


def test_dask_cluster_equals_serial(tmp_path, dask_cluster):
    serial = aimcsim.sweep(BASE, GRID, out=tmp_path / "serial", workers=1)
    on_dask = aimcsim.sweep(BASE, GRID, out=tmp_path / "dask", scheduler=dask_cluster.address)
    pd.testing.assert_frame_equal(comparable(serial), comparable(on_dask))


def test_killing_a_dask_worker_mid_sweep_still_completes_every_point(tmp_path, dask_cluster):
    slow = {**BASE, "train": {**BASE["train"], "epochs": 6}}
    grid = {"seed": [0, 1, 2, 3, 4, 5]}
    finished = []
    killer_done = threading.Event()

    def kill_one_worker(name, summary):
        finished.append(name)
        if len(finished) == 1:
            dask_cluster.workers[0].kill()  # SIGKILL: its running task is lost and rescheduled
            killer_done.set()

    table = aimcsim.sweep(slow, grid, out=tmp_path / "k", scheduler=dask_cluster.address, on_point=kill_one_worker)
    assert killer_done.is_set() and dask_cluster.workers[0].poll() is not None
    assert len(table) == 6 and set(table["status"]) == {"ok"}
    serial = aimcsim.sweep(slow, grid, out=tmp_path / "s", workers=1)
    pd.testing.assert_frame_equal(comparable(serial), comparable(table))


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"--scheduler: cannot reach a Dask scheduler at tcp://127.0.0.1:"):
        aimcsim.sweep(BASE, GRID, out=tmp_path, scheduler=f"tcp://127.0.0.1:{_free_port()}")


def test_sweep_cli_and_plot(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    import yaml
    cfg.write_text(yaml.safe_dump(BASE))
    out = tmp_path / "sw"
    code = main(["sweep", str(cfg), "--grid", "pipeline.stages=1,3", "--grid", "pipeline.schedule=gpipe,async",
                 "--grid", "seed=0,1", "--out", str(out), "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 0 and "8 points, 0 not ok" in captured.out
    assert "[8/8 done, 0 running, 0 failed]" in captured.err
    assert main(["plot", str(out)]) == 0
    assert (out / "sweep.png").stat().st_size > 10_000
    assert main(["sweep", str(cfg), "--grid", "pipeline.stages", "--out", str(out)]) == 2
    assert "expected KEY=V1,V2" in capsys.readouterr().err
    assert main(["sweep", str(cfg), "--grid", "pipeline.stagse=1,2", "--out", str(out)]) == 2
    assert "pipeline.stagse: unknown key" in capsys.readouterr().err
    assert main(["sweep", str(cfg), "--out", str(out)]) == 2
    assert "sweep.grid: no grid given" in capsys.readouterr().err
