"""Tile speed benchmark (issue: analog crossbar core).

Protocol: a 512x512 ``soft_bounds`` tile with aihwkit's default device, update and IO
parameters (cycle-to-cycle noise on), lr = 0.01, x ~ U(-1, 1), d ~ 0.1 N(0, 1), fresh x
and d for every call, weights reset to U(-1/sqrt(512), 1/sqrt(512)) before each timed
series. Every call is timed on its own; the report gives the median over all calls of all
series, per operation.

    python benchmarks/bench_tile.py [--size 512] [--calls 400] [--series 5] [--processes 3] [--json out.json]

aimcsim runs side by side with 1 and with 2 numba threads: each thread count in fresh
processes, one at a time, alternating 1, 2, 1, 2, ... (``--processes`` pairs), because
switching the thread count inside one process leaves the second thread asleep and makes two
threads look slower than one (measured: 34 against 30 us per read). The report gives the
median over the processes of each op's median, and the speed-up of the second thread.
Results are bit-identical at any thread count (a test); only the time changes. If aihwkit
is importable (an optional side-by-side run, never in CI) the same protocol is
run on aihwkit's C++ CPU simulator in the same process, its series alternating with
aimcsim's so that both see the same machine load, and the ratios are printed.
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


def aimcsim_ops(size: int, rng: np.random.Generator) -> dict:
    """name -> (op, reset, make_args) for an aimcsim tile under the protocol."""
    from aimcsim import AnalogTile

    tile = AnalogTile(size, size, device={"type": "soft_bounds"}, seed=0)
    w0 = rng.uniform(-1 / np.sqrt(size), 1 / np.sqrt(size), (size, size)).astype(np.float32)
    xs = lambda: (rng.uniform(-1, 1, size).astype(np.float32),)  # noqa: E731
    ds = lambda: ((0.1 * rng.standard_normal(size)).astype(np.float32),)  # noqa: E731
    xd = lambda: (xs()[0], ds()[0], 0.01)  # noqa: E731
    reset = lambda: tile.set_weights(w0)  # noqa: E731
    return {"update": (tile.update, reset, xd), "forward": (tile.forward, reset, xs),
            "backward": (tile.backward, reset, ds)}


def aihwkit_ops(size: int, rng: np.random.Generator) -> dict | None:
    """The same for aihwkit's C++ CPU simulator, or None if aihwkit is not importable."""
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
    return {"update": (tile.update, reset, xd), "forward": (tile.forward, reset, xs),
            "backward": (tile.backward, reset, ds)}


def measure(simulators: dict, calls: int, series: int) -> dict:
    """Median per simulator and op; the simulators' series alternate, so all see the same load.

    ``simulators`` maps a name to (ops, numba threads or None); the thread count is set
    before every series of that simulator.
    """
    import numba

    def threads(n: int | None) -> None:
        if n is not None:
            numba.set_num_threads(n)

    for ops, n in simulators.values():  # compile and warm up
        threads(n)
        for op, reset, mk in ops.values():
            _series(op, 20, reset, mk)
    times = {name: {op: [] for op in ops} for name, (ops, _) in simulators.items()}
    for op_name in ("update", "forward", "backward"):
        for _ in range(series):
            for name, (ops, n) in simulators.items():
                threads(n)
                op, reset, mk = ops[op_name]
                times[name][op_name] += _series(op, calls, reset, mk)
    return {name: {op: float(np.median(t)) for op, t in per_op.items()} for name, per_op in times.items()}


def thread_medians(threads: int, size: int, calls: int, series: int) -> dict:
    """aimcsim's medians with ``threads`` numba threads, in this (fresh) process."""
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(1234)
    return measure({"aimcsim": (aimcsim_ops(size, rng), None)}, calls, series)["aimcsim"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--calls", type=int, default=400, help="timed calls per series")
    parser.add_argument("--series", type=int, default=5, help="series (weights reset before each)")
    parser.add_argument("--processes", type=int, default=3, help="fresh-process pairs (1 thread, 2 threads)")
    parser.add_argument("--json", help="also write the medians to this file")
    args = parser.parse_args()
    for name in ("size", "calls", "series", "processes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: must be at least 1, got {getattr(args, name)}")
    rng = np.random.default_rng(1234)
    import numba

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    two = min(2, numba.config.NUMBA_NUM_THREADS)
    per_threads: dict[int, list[dict]] = {1: [], two: []}
    for _ in range(args.processes):
        for threads in (1, two):  # one fresh process at a time: two at once would share the cores
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                per_threads[threads].append(
                    pool.submit(thread_medians, threads, args.size, args.calls, args.series).result())
    one, ours = ({op: float(np.median([m[op] for m in per_threads[t]])) for op in per_threads[t][0]}
                 for t in (1, two))
    theirs = same_process = None
    aihwkit = aihwkit_ops(args.size, rng)
    if aihwkit is not None:  # side by side in this process, aimcsim at the default thread count
        both = measure({"aimcsim": (aimcsim_ops(args.size, rng), None), "aihwkit": (aihwkit, None)},
                       args.calls, args.series)
        same_process, theirs = both["aimcsim"], both["aihwkit"]
    goals = {"update": 400.0, "forward": 30.0, "backward": 15.0}
    print(f"{args.size}x{args.size} soft_bounds tile, median of {args.calls * args.series} calls per op (us), "
          f"median over {args.processes} fresh process(es) per thread count")
    print(f"{'op':10s}{'1 thread':>10s}{f'{two} threads':>11s}{'speed-up':>10s}{'goal':>8s}"
          + (f"{'aihwkit':>10s}{'vs aihwkit':>12s}" if theirs else ""))
    for op in ("update", "forward", "backward"):
        line = f"{op:10s}{one[op]:10.1f}{ours[op]:11.1f}{one[op] / ours[op]:9.2f}x{goals[op]:8.0f}"
        if theirs and op in theirs:  # aimcsim and aihwkit timed in the same process, series alternating
            line += f"{theirs[op]:10.1f}{theirs[op] / same_process[op]:11.2f}x"
        print(line)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"aimcsim_1_thread_us": one, "aimcsim_us": ours, "aihwkit_us": theirs, "goals_us": goals},
                      fh, indent=2)


if __name__ == "__main__":
    main()
