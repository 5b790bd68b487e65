"""Sweep benchmark (issue: sweeps at scale).

    python benchmarks/bench_sweep.py [--points 16] [--epochs 1.0]

Runs the same 16-point sweep (async, K = 1..4 x 4 seeds, a small MLP on digits) three ways,
side by side in one process: serially, on the local process pool (2 workers on this 2-core
machine), and on a Dask cluster started here (a scheduler and two single-threaded workers on
127.0.0.1). Reports wall times, the pool's speed-up over serial, and the Dask path's
per-point overhead over the local pool. Compilation is excluded: the kernels are compiled
and cached before the first timing.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aimcsim
from aimcsim.sweep import warm_up


def config(epochs: float) -> dict:
    return {"data": {"name": "digits"}, "model": {"hidden": [32, 32, 32], "activation": "tanh"},
            "pipeline": {"schedule": "async"},
            "train": {"lr": 0.02, "epochs": epochs, "eval_every": 500, "target": None}}


def start_cluster(tmp: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], stderr=subprocess.DEVNULL)]
    for k in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers",
                                       "1", "--nthreads", "1", "--no-dashboard", "--local-directory",
                                       str(tmp / f"w{k}")], stderr=subprocess.DEVNULL))
    from distributed import Client
    for _ in range(60):
        try:
            with Client(address, timeout="2s") as client:
                client.wait_for_workers(2, timeout=30)
            break
        except (OSError, TimeoutError):
            time.sleep(0.5)
    return address, procs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args()
    grid = {"pipeline.stages": [1, 2, 3, 4], "seed": [0, 1, 2, 3]}
    n = 16
    warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        times = {}
        t0 = time.perf_counter()
        serial = aimcsim.sweep(config(args.epochs), grid, out=tmp / "serial", workers=1)
        times["serial"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pool = aimcsim.sweep(config(args.epochs), grid, out=tmp / "pool", workers=2)
        times["local pool (2 workers)"] = time.perf_counter() - t0
        address, procs = start_cluster(tmp)
        try:
            t0 = time.perf_counter()
            dask = aimcsim.sweep(config(args.epochs), grid, out=tmp / "dask", scheduler=address)
            times["dask (2 workers)"] = time.perf_counter() - t0
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
    same = all(a["final_train_loss"].tolist() == b["final_train_loss"].tolist() for a, b in ((serial, pool), (serial, dask)))
    print(f"{n}-point sweep, async K=1..4 x 4 seeds on digits, {args.epochs} epoch(s) per point")
    for name, t in times.items():
        print(f"  {name:24s} {t:7.1f} s  ({t / n:.2f} s per point)")
    print(f"  local pool speed-up over serial: {times['serial'] / times['local pool (2 workers)']:.2f}x")
    overhead = (times["dask (2 workers)"] - times["local pool (2 workers)"]) / n
    print(f"  dask per-point overhead over the local pool: {overhead * 1000:+.0f} ms")
    print(f"  identical results across the three paths: {same}")


if __name__ == "__main__":
    main()
