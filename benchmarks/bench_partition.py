"""What the planner's time partition buys, measured: weights cut, time cut and the best contiguous cut.

    python benchmarks/bench_partition.py [--networks mlp8,lenet5,resnet8] [--stages 2,4,8] [--json out.json]

Protocol. Under ``rf25`` timing, for each network and K: the simulated cycles per sample of
``async`` and ``gpipe`` (M = 4, ``minibatch_reduction: sum``) on the ``weights`` cut and on the
planner's ``time`` cut; the asynchronous speed-up over K = 1 (``sequential`` on one
accelerator); GPipe over async, next to the same ratio under the ideal clock; and the best of all contiguous cuts for ``async``.
Every cut is simulated where there are at most ``--exhaustive`` of them; beyond that every
cut is predicted (the planner's replay, README: Pipeline planner) and the ``--top`` fastest
predicted are simulated, the best simulated one counting as the best. Networks: the study's
8-layer digits MLP (64-32x7-10, tanh, ConstantStepDevice, lr 0.02), LeNet-5 on 28x28 and
ResNet-8 on 32x32x3 (random images in MNIST's and CIFAR-10's file formats; micro-batches of
8 for ResNet-8's batch norm). The planner's prediction for each simulated cut is recorded
too: the table's last column is its error. Goal (issue 28): the time cut within 5 % of the
best on every row.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aimcsim  # noqa: E402
from aimcsim.network import build_network  # noqa: E402
from aimcsim.planner import plan_partition, predict  # noqa: E402
from aimcsim.sim import Engine  # noqa: E402
from bench_training import cnn_data  # noqa: E402

MLP8 = {"data": {"name": "digits", "max_train": 512}, "model": {"hidden": [32] * 7, "activation": "tanh"},
        "device": {"type": "constant_step"}, "train": {"lr": 0.02}}
NETWORKS = {
    "mlp8": (MLP8, None),
    "lenet5": ({"data": {"name": "mnist", "max_train": 256}, "model": {"preset": "lenet5"},
                "device": {"type": "soft_bounds", "w_max": 6.0, "w_min": -6.0}, "train": {"lr": 0.05}}, "mnist"),
    "resnet8": ({"data": {"name": "cifar10", "max_train": 256}, "model": {"preset": "resnet8"},
                 "device": {"type": "soft_bounds", "w_max": 6.0, "w_min": -6.0}, "train": {"lr": 0.05},
                 "pipeline": {"microbatch_size": 8}}, "cifar10"),
}


def config(net: dict, path: str | None, schedule: str, stages: int, partition, timing: str = "rf25") -> aimcsim.Config:
    tree = json.loads(json.dumps(net))
    if path:
        tree["data"]["path"] = path
    tree["seed"] = 0
    tree["pipeline"] = {**tree.get("pipeline", {}), "schedule": schedule, "stages": stages, "partition": partition}
    if schedule == "gpipe":
        tree["pipeline"]["microbatches"] = 4
        tree["train"] = {**tree["train"], "minibatch_reduction": "sum"}
    tree["timing"] = {"preset": timing}
    tree["train"] = {**tree["train"], "epochs": 1, "eval_every": 10**9, "target": None}
    return aimcsim.load_config(tree, unused="drop")


def simulate(cfg: aimcsim.Config) -> float:
    engine = Engine(cfg)
    engine.run()
    return engine.tracer.end / engine.samples


def cuts(n: int, k: int) -> list[list[int]]:
    """Every contiguous partition of n layers into k stages."""
    return [[int(v) for v in np.diff([0, *c, n])] for c in itertools.combinations(range(1, n), k - 1)]


def row(name: str, k: int, args) -> dict | None:
    net, kind = NETWORKS[name]
    path = args.paths.get(kind)
    base = config(net, path, "async", 1, "balanced")
    n = base.analog_layers()
    if k > n:
        return None
    timed = Engine(config(net, path, "async", k, "time"))
    time_cut = timed.partition  # (K = layers: the one cut there is, no plan)
    weights_cut = Engine(config(net, path, "async", k, "balanced")).partition
    sequential = simulate(config(net, path, "sequential", 1, "balanced"))
    out = {"network": name, "K": k, "layers": n, "sequential_k1": sequential}
    for rule, cut in (("weights", weights_cut), ("time", time_cut)):
        a = simulate(config(net, path, "async", k, cut))
        g = simulate(config(net, path, "gpipe", k, cut))
        out[rule] = {"cut": cut, "async": a, "gpipe": g, "async_speedup": sequential / a, "gpipe_over_async": g / a}
    # the ideal clock (F = B = 1 cycle per stage op, U = 0): GPipe over async, the paper's ratio
    out["ideal_gpipe_over_async"] = (simulate(config(net, path, "gpipe", k, time_cut, "ideal"))
                                     / simulate(config(net, path, "async", k, time_cut, "ideal")))
    # the best contiguous cut for async: all simulated, or the fastest predicted simulated
    cfg = config(net, path, "async", k, "time")
    data = timed.data
    _, units, _ = plan_partition(cfg, data, lambda: build_network(cfg, data))
    every = cuts(n, k)
    if len(every) <= args.exhaustive:
        candidates, how = every, f"all {len(every)} simulated"
    else:
        predicted = sorted(every, key=lambda c: predict(cfg, data, units, c)["cycles_per_sample"])
        candidates, how = predicted[:args.top], f"{args.top} fastest predicted of {len(every)} simulated"
    best_cut, best = None, np.inf
    errors = []
    for cut in candidates:
        measured = simulate(config(net, path, "async", k, cut))
        errors.append(predict(cfg, data, units, cut)["cycles_per_sample"] / measured - 1)
        if measured < best:
            best_cut, best = cut, measured
    out["best"] = {"cut": best_cut, "async": best, "how": how}
    out["time_gap_to_best"] = out["time"]["async"] / best - 1
    out["prediction_error"] = {"max_abs": float(np.max(np.abs(errors))), "median": float(np.median(errors)),
                               "cuts": len(errors)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--stages", default="2,4,8")
    ap.add_argument("--exhaustive", type=int, default=40, help="simulate every cut up to this many")
    ap.add_argument("--top", type=int, default=8, help="else simulate this many fastest predicted cuts")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    for name in args.networks.split(","):
        if name not in NETWORKS:
            raise SystemExit(f"--networks: unknown {name!r}; allowed: {', '.join(NETWORKS)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        args.paths = {"mnist": cnn_data(tmp, "mnist", 256), "cifar10": cnn_data(tmp, "cifar10", 256)}
        print(f"{'net':8s} {'K':>2s} {'rule':8s} {'cut':26s} {'async':>9s} {'gpipe':>9s} {'g/a':>5s} {'ideal':>5s} "
              f"{'vs K=1':>7s} {'vs best':>8s}  (cycles per sample under rf25; g/a: gpipe / async, ideal: the "
              f"same under the ideal clock; vs K=1: async speed-up over sequential on one accelerator)", flush=True)
        for name in args.networks.split(","):
            for k in (int(s) for s in args.stages.split(",")):
                t0 = time.perf_counter()
                r = row(name, k, args)
                if r is None:
                    print(f"{name:8s} {k:2d} n/a: fewer than {k} analog layers", flush=True)
                    continue
                rows.append(r)
                for rule in ("weights", "time"):
                    x = r[rule]
                    gap = x["async"] / r["best"]["async"] - 1
                    print(f"{name:8s} {k:2d} {rule:8s} {str(x['cut']):26s} {x['async']:9.1f} {x['gpipe']:9.1f} "
                          f"{x['gpipe_over_async']:5.2f} {r['ideal_gpipe_over_async']:5.2f} "
                          f"{x['async_speedup']:6.2f}x {gap:+8.1%}", flush=True)
                b = r["best"]
                e = r["prediction_error"]
                print(f"{name:8s} {k:2d} {'best':8s} {str(b['cut']):26s} {b['async']:9.1f} {'':9s} {'':5s} {'':5s} "
                      f"{r['sequential_k1'] / b['async']:6.2f}x {'':8s}  ({b['how']}; prediction error "
                      f"median {e['median']:+.2%}, max |{e['max_abs']:.2%}| over {e['cuts']} cuts; "
                      f"{time.perf_counter() - t0:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
