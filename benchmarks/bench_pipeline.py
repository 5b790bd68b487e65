"""Pipeline simulator benchmark (issue: the pipeline simulator).

    python benchmarks/bench_pipeline.py [--samples 250] [--width 256] [--layers 16] [--repeats 21]
                                        [--processes 3] [--scaling-samples 1000]

1. Overhead: an ``async`` run at K = 4 on 256-wide layers, against a plain loop that calls
   the same stage kernels (forward, backward, update of the same tiles) in the same order
   (recorded from an untimed run of the same config; runs are deterministic) with no SimPy,
   no links and no tracer. Simulator time is the event loop's (``Engine.wall_run``, the
   trace digest included), without the evaluations.
   The machine is shared and its speed drifts by tens of percent within seconds, so the
   two are timed in quadruples, simulator - loop - loop - simulator (linear drift cancels,
   and each side runs both right after the other and right after itself), on short runs
   (``--samples``; a quadruple takes under a second), ``--repeats`` quadruples in each of
   ``--processes`` fresh processes run one after another (the same code's median moves by
   a few points from one process to the next). Reported: the median over all quadruples
   of simulator time over loop time with its distribution-free 95 % confidence interval,
   the ratio of the medians, and each process's median.
2. Scaling: a fixed network of ``--layers`` layers split over K in {1, 2, 4, 8, 16}
   accelerators, ``--scaling-samples`` samples: wall time, SimPy events per second and
   simulated samples per second.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import aimcsim
from aimcsim import network
from aimcsim.sim import Engine


def config(width: int, layers: int, stages: int, samples: int) -> dict:
    return {
        "data": {"name": "synthetic", "n_samples": int(samples / 0.8) + 2, "n_features": width, "n_classes": 10},
        "model": {"hidden": [width] * (layers - 1), "activation": "tanh"},
        "pipeline": {"schedule": "async", "stages": stages},
        "train": {"lr": 0.01, "epochs": 1, "eval_every": 10**9, "target": None},
    }


def simulated(cfg: dict) -> tuple[float, Engine]:
    """Wall time of the event loop (``Engine.wall_run``): the evaluations before and after it
    run outside simulated time and have no counterpart in the plain loop."""
    engine = Engine(aimcsim.load_config(cfg))
    engine.run()
    return engine.wall_run, engine


def execution_order(cfg: dict) -> list[tuple[int, str, int]]:
    """(stage, op, item) in the order the simulator ran the stage kernels.

    Recorded from the calls themselves: the trace gives each op's cycle, but not the order
    of the ops that start in the same cycle.
    """
    order: list[tuple[int, str, int]] = []
    ops = {"forward": "F", "backward": "B", "update": "U"}
    originals = {name: getattr(network.Stage, name) for name in ops}

    def recording(name: str):
        method, op = originals[name], ops[name]

        def call(stage, *args):
            order.append((stage.index, op, args[0] if op != "U" else -1))  # U's argument is lr
            return method(stage, *args)
        return call

    for name in ops:
        setattr(network.Stage, name, recording(name))
    try:
        simulated(cfg)
    finally:
        for name, method in originals.items():
            setattr(network.Stage, name, method)
    return order


def plain_loop(cfg: dict, order: list[tuple[int, str, int]]) -> float:
    """The same kernels in the same order, called directly."""
    engine = Engine(aimcsim.load_config(cfg))
    stages = engine.stages
    lr = engine.config.train.lr
    feed = engine.feed
    loss = engine.config.model.loss
    loss_and_grad = network.loss_and_grad
    acts, grads = {}, {}
    t0 = time.perf_counter()
    for stage_index, op, item in order:
        stage = stages[stage_index]
        if op == "F":
            x = feed.inputs(item) if stage_index == 0 else acts.pop((stage_index, item))
            out, _ = stage.forward(item, x)
            if stage.is_last:
                _, grads[(stage_index, item)] = loss_and_grad(loss, out.astype("float64"), feed.targets(item))
            else:
                acts[(stage_index + 1, item)] = out
        elif op == "B":
            err, _ = stage.backward(item, grads.pop((stage_index, item)))
            if stage_index > 0:
                grads[(stage_index - 1, item)] = err
        else:
            stage.update(lr)
    return time.perf_counter() - t0


def warm_up(width: int) -> None:
    """Load the cached kernels (the first call in a process loads them) before timing."""
    simulated(config(width, 4, 4, 50))


def overhead_quads(width: int, samples: int, repeats: int) -> list[tuple[float, float]]:
    """(simulator, plain loop) wall times summed over each of ``repeats`` quadruples
    simulator - loop - loop - simulator, in this process."""
    warm_up(width)
    cfg = config(width, 4, 4, samples)
    order = execution_order(cfg)
    quads = []
    for _ in range(repeats):
        first, _ = simulated(cfg)
        loops = plain_loop(cfg, order) + plain_loop(cfg, order)
        last, _ = simulated(cfg)
        quads.append((first + last, loops))
    return quads


def median_interval(n: int) -> tuple[int, int]:
    """Ranks (0-based) of a distribution-free 95 % confidence interval for the median of n
    values: the normal approximation of the binomial order statistics, clipped to the sample
    (for a handful of values it is the range)."""
    half_width = 1.96 * math.sqrt(n) / 2
    return max(0, math.floor(n / 2 - half_width)), min(n - 1, math.ceil(n / 2 + half_width) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=250, help="samples per overhead run")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=16, help="layers of the scaling network")
    parser.add_argument("--repeats", type=int, default=21, help="quadruples per process")
    parser.add_argument("--processes", type=int, default=3, help="fresh processes to pool the quadruples of")
    parser.add_argument("--scaling-samples", type=int, default=1000, help="samples per scaling run")
    args = parser.parse_args()
    for name in ("samples", "width", "layers", "repeats", "processes", "scaling_samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(args, name)}")

    per_process = []
    for _ in range(args.processes):  # fresh interpreters, one at a time (two at once would share the two cores)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            per_process.append(pool.submit(overhead_quads, args.width, args.samples, args.repeats).result())
    quads = [quad for chunk in per_process for quad in chunk]
    s, p = statistics.median(a for a, _ in quads), statistics.median(b for _, b in quads)
    ratios = sorted(a / b for a, b in quads)
    lo, hi = median_interval(len(ratios))
    print(f"overhead, async K=4, 4 layers of width {args.width}, {args.samples} samples per run, "
          f"{args.repeats} quadruples x {args.processes} process(es):")
    print(f"  simulator / plain loop per quadruple: median {100 * (statistics.median(ratios) - 1):+.1f} %, "
          f"95 % CI {100 * (ratios[lo] - 1):+.1f} % to {100 * (ratios[hi] - 1):+.1f} %, "
          f"range {100 * (ratios[0] - 1):+.1f} % to {100 * (ratios[-1] - 1):+.1f} %")
    print(f"  medians: simulator {s / 2:.3f} s, plain loop {p / 2:.3f} s per run: "
          f"{100 * (s / p - 1):+.1f} % (ratio of medians)")
    medians = " ".join(f"{100 * (statistics.median(a / b for a, b in chunk) - 1):+.1f}" for chunk in per_process)
    print(f"  per-process medians (%): {medians}")

    warm_up(args.width)  # the quadruples ran in other processes: this one has not loaded the kernels
    print(f"\nscaling, {args.layers} layers of width {args.width}, {args.scaling_samples} samples, async:")
    print(f"{'K':>4s}{'wall s':>10s}{'events':>10s}{'events/s':>12s}{'samples/s':>12s}{'cycles':>10s}")
    for k in (1, 2, 4, 8, 16):
        if k > args.layers:
            break
        wall, engine = simulated(config(args.width, args.layers, k, args.scaling_samples))
        ev = engine.event_counter[0]
        cycles = int(engine.tracer.frame()["end"].max())
        print(f"{k:4d}{wall:10.2f}{ev:10d}{ev / wall:12.0f}{engine.samples / wall:12.1f}{cycles:10d}")


if __name__ == "__main__":
    main()
