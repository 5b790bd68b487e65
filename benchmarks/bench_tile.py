"""Tile speed benchmark (issue: analog crossbar core).

Protocol: a 512x512 ``soft_bounds`` tile with aihwkit's default device, update and IO
parameters (cycle-to-cycle noise on), lr = 0.01, x ~ U(-1, 1), d ~ 0.1 N(0, 1), fresh x
and d for every call, weights reset to U(-1/sqrt(512), 1/sqrt(512)) before each timed
series. Every call is timed on its own; the report gives the median over all calls of all
series, per operation.

    python benchmarks/bench_tile.py [--size 512] [--calls 400] [--series 5] [--json out.json]

If aihwkit is importable (an optional side-by-side run, never in CI) the same protocol is
run on aihwkit's C++ CPU simulator in the same process, and the ratios are printed.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _series(op, n_calls: int, reset, make_args) -> list[float]:
    reset()
    args = [make_args() for _ in range(n_calls)]
    times = []
    for a in args:
        t0 = time.perf_counter_ns()
        op(*a)
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return times


def bench_aimcsim(size: int, calls: int, series: int, rng: np.random.Generator) -> dict:
    from aimcsim import AnalogTile

    tile = AnalogTile(size, size, device={"type": "soft_bounds"}, seed=0)
    w0 = rng.uniform(-1 / np.sqrt(size), 1 / np.sqrt(size), (size, size)).astype(np.float32)
    xs = lambda: (rng.uniform(-1, 1, size).astype(np.float32),)  # noqa: E731
    ds = lambda: ((0.1 * rng.standard_normal(size)).astype(np.float32),)  # noqa: E731
    xd = lambda: (xs()[0], ds()[0], 0.01)  # noqa: E731
    reset = lambda: tile.set_weights(w0)  # noqa: E731
    for op, mk in ((tile.forward, xs), (tile.backward, ds), (tile.update, xd)):  # compile + warm up
        _series(op, 20, reset, mk)
    out = {}
    for name, op, mk in (("update", tile.update, xd), ("forward", tile.forward, xs),
                         ("backward", tile.backward, ds)):
        t = []
        for _ in range(series):
            t += _series(op, calls, reset, mk)
        out[name] = float(np.median(t))
    return out


def bench_aihwkit(size: int, calls: int, series: int, rng: np.random.Generator) -> dict | None:
    try:
        import torch
        from aihwkit.simulator.configs import SingleRPUConfig
        from aihwkit.simulator.configs.devices import SoftBoundsDevice
        from aihwkit.simulator.tiles import AnalogTile as AihwTile
    except ImportError:
        return None
    torch.set_num_threads(2)
    tile = AihwTile(size, size, SingleRPUConfig(device=SoftBoundsDevice()), bias=False)
    tile.set_learning_rate(0.01)
    w0 = torch.tensor(rng.uniform(-1 / np.sqrt(size), 1 / np.sqrt(size), (size, size)), dtype=torch.float32)
    xs = lambda: (torch.tensor(rng.uniform(-1, 1, (1, size)), dtype=torch.float32),)  # noqa: E731
    ds = lambda: (torch.tensor(0.1 * rng.standard_normal((1, size)), dtype=torch.float32),)  # noqa: E731
    xd = lambda: (xs()[0], ds()[0])  # noqa: E731
    reset = lambda: tile.set_weights(w0)  # noqa: E731
    ops = (("update", tile.update, xd), ("forward", tile.forward, xs), ("backward", tile.backward, ds))
    for _, op, mk in ops:
        _series(op, 20, reset, mk)
    out = {}
    for name, op, mk in ops:
        t = []
        for _ in range(series):
            t += _series(op, calls, reset, mk)
        out[name] = float(np.median(t))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--calls", type=int, default=400, help="timed calls per series")
    parser.add_argument("--series", type=int, default=5, help="series (weights reset before each)")
    parser.add_argument("--json", help="also write the medians to this file")
    args = parser.parse_args()
    rng = np.random.default_rng(1234)
    ours = bench_aimcsim(args.size, args.calls, args.series, rng)
    theirs = bench_aihwkit(args.size, args.calls, args.series, rng)
    goals = {"update": 400.0, "forward": 30.0, "backward": 15.0}
    print(f"{args.size}x{args.size} soft_bounds tile, median of {args.calls * args.series} calls per op (us)")
    print(f"{'op':10s}{'aimcsim':>10s}{'goal':>8s}" + (f"{'aihwkit':>10s}{'speed-up':>10s}" if theirs else ""))
    for op in ("update", "forward", "backward"):
        goal = f"{goals[op]:8.0f}" if op in goals else f"{'':8s}"
        line = f"{op:10s}{ours[op]:10.1f}{goal}"
        if theirs and op in theirs:
            line += f"{theirs[op]:10.1f}{theirs[op] / ours[op]:9.2f}x"
        print(line)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"aimcsim_us": ours, "aihwkit_us": theirs, "goals_us": goals}, fh, indent=2)


if __name__ == "__main__":
    main()
