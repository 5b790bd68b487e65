"""End-to-end training benchmark: analog SGD and every compound device, side by side with aihwkit.

    python benchmarks/bench_training.py [--epochs 1] [--repeats 5] [--algorithms sgd,tt,...] [--json out.json]

Protocol: the digits MLP 64-32-32-10 (tanh, cross-entropy, analog biases), aihwkit's default
soft-bounds device for every array, aihwkit's default update and IO, per-sample SGD (micro-
batches of one) at lr 0.1, one epoch of the 1,437 training samples. aimcsim runs it at K = 1
(``sequential``) and K = 3 (``async``, one layer per accelerator); its time is the event
loop's (``Engine.wall_run``: every op, link and trace row, no evaluation). Where aihwkit is
importable (an optional run, never in CI: build it as DEVELOPERS.md says and run this script
with that environment's python) the same network trains there with ``AnalogSGD`` on the same
samples in the same order from the same initial weights, timed over its training loop alone,
with compound devices configured by aihwkit's own classes at their defaults. The series
alternate (aimcsim K = 1, aimcsim K = 3, aihwkit, ...) so that all see the same machine load;
the report gives the median samples per second over ``--repeats`` rounds and the ratios
aimcsim / aihwkit, and each run's final test accuracy (exact reads of the final weights).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import aimcsim
from aimcsim.sim import Engine

SOFT = {"type": "soft_bounds"}
ALGORITHMS = {  # aimcsim device sections, each at aihwkit's class defaults
    "sgd": SOFT,
    "tt": {"type": "transfer_compound", "unit_cell_devices": [SOFT, SOFT]},
    "ttv2": {"type": "buffered_transfer_compound", "unit_cell_devices": [SOFT, SOFT]},
    "cttv2": {"type": "chopped_transfer_compound", "unit_cell_devices": [SOFT, SOFT]},
    "agad": {"type": "dynamic_transfer_compound", "unit_cell_devices": [SOFT, SOFT]},
    "mp": {"type": "mixed_precision_compound", "device": SOFT},
}
LR = 0.1


def config(algorithm: str, stages: int, epochs: float, seed: int) -> dict:
    return {"seed": seed, "data": {"name": "digits"}, "model": {"hidden": [32, 32], "activation": "tanh"},
            "device": ALGORITHMS[algorithm],
            "pipeline": {"schedule": "sequential" if stages == 1 else "async", "stages": stages},
            "train": {"lr": LR, "epochs": epochs, "eval_every": 10**9, "target": None}}


def accuracy(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy of [W | b] layers with exact reads (tanh between layers)."""
    a = x.astype(np.float64)
    for k, w in enumerate(weights):
        a = np.concatenate([a, np.ones((len(a), 1))], axis=1) @ np.asarray(w, np.float64).T
        if k < len(weights) - 1:
            a = np.tanh(a)
    return float(np.mean(np.argmax(a, axis=1) == y))


def run_aimcsim(algorithm: str, stages: int, epochs: float, seed: int) -> dict:
    engine = Engine(aimcsim.load_config(config(algorithm, stages, epochs, seed)))
    engine.run()
    data = engine.data
    return {"samples": engine.samples, "seconds": engine.wall_run,
            "accuracy": accuracy(engine.network.weights(), data.x_test, data.y_test)}


def aihwkit_rpu_config(algorithm: str):
    """aihwkit's RPU config for an algorithm, its classes at their defaults, biases analog."""
    from aihwkit.simulator.configs import DigitalRankUpdateRPUConfig, SingleRPUConfig, UnitCellRPUConfig
    from aihwkit.simulator.configs import compounds
    from aihwkit.simulator.configs.devices import SoftBoundsDevice

    units = [SoftBoundsDevice(), SoftBoundsDevice()]
    if algorithm == "sgd":
        cfg = SingleRPUConfig(device=SoftBoundsDevice())
    elif algorithm == "mp":
        cfg = DigitalRankUpdateRPUConfig(device=compounds.MixedPrecisionCompound(device=SoftBoundsDevice()))
    else:
        cls = {"tt": compounds.TransferCompound, "ttv2": compounds.BufferedTransferCompound,
               "cttv2": compounds.ChoppedTransferCompound, "agad": compounds.DynamicTransferCompound}[algorithm]
        cfg = UnitCellRPUConfig(device=cls(unit_cell_devices=units))
    cfg.mapping.digital_bias = False  # aimcsim's biases are the last column of the crossbar
    return cfg


def run_aihwkit(algorithm: str, epochs: float, seed: int) -> dict | None:
    """The same training in aihwkit (None when aihwkit is not importable)."""
    try:
        import torch
        from aihwkit.nn import AnalogLinear, AnalogSequential
        from aihwkit.optim import AnalogSGD
    except ImportError:
        return None
    engine = Engine(aimcsim.load_config(config(algorithm, 1, epochs, seed)))  # data, order and initial weights
    data, order = engine.data, engine.feed.order[:engine.n_items]  # micro-batches of one sample
    torch.manual_seed(seed)
    init = engine.network.weights()
    layers = []
    for k, w in enumerate(init):
        layer = AnalogLinear(w.shape[1] - 1, w.shape[0], bias=True, rpu_config=aihwkit_rpu_config(algorithm))
        layer.set_weights(torch.tensor(w[:, :-1]), torch.tensor(w[:, -1]))
        layers += [layer] + ([torch.nn.Tanh()] if k < len(init) - 1 else [])
    model = AnalogSequential(*layers)
    opt = AnalogSGD(model.parameters(), lr=LR)
    opt.regroup_param_groups(model)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs = torch.tensor(data.x_train[order], dtype=torch.float32)
    ys = torch.tensor(data.y_train[order], dtype=torch.long)
    model.train()
    t0 = time.perf_counter()
    for i in range(len(order)):
        opt.zero_grad()
        loss = loss_fn(model(xs[i:i + 1]), ys[i:i + 1])
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    weights = []
    for layer in (m for m in model.modules() if isinstance(m, AnalogLinear)):
        w, b = layer.get_weights()
        weights.append(np.concatenate([w.numpy(), b.numpy()[:, None]], axis=1))
    return {"samples": len(order), "seconds": seconds, "accuracy": accuracy(weights, data.x_test, data.y_test)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    names = args.algorithms.split(",")
    for name in names:
        if name not in ALGORITHMS:
            raise SystemExit(f"--algorithms: unknown {name!r}; allowed: {', '.join(ALGORITHMS)}")
    for name in names:  # compile and warm every path once, untimed
        run_aimcsim(name, 1, 0.05, args.seed)
        run_aimcsim(name, 3, 0.05, args.seed)
    runs: dict = {name: {"aimcsim K=1": [], "aimcsim K=3": [], "aihwkit": []} for name in names}
    for _ in range(args.repeats):
        for name in names:
            runs[name]["aimcsim K=1"].append(run_aimcsim(name, 1, args.epochs, args.seed))
            runs[name]["aimcsim K=3"].append(run_aimcsim(name, 3, args.epochs, args.seed))
            other = run_aihwkit(name, args.epochs, args.seed)
            if other is not None:
                runs[name]["aihwkit"].append(other)
    report = {}
    print(f"{'algorithm':10s} {'simulator':12s} {'samples/s':>10s} {'accuracy':>9s}  vs aihwkit")
    for name in names:
        rows = {}
        for sim, results in runs[name].items():
            if not results:
                continue
            rate = statistics.median(r["samples"] / r["seconds"] for r in results)
            rows[sim] = {"samples_per_s": rate, "accuracy": results[-1]["accuracy"]}
        base = rows.get("aihwkit", {}).get("samples_per_s")
        for sim, row in rows.items():
            if base and sim != "aihwkit":
                row["ratio_to_aihwkit"] = row["samples_per_s"] / base
            ratio = f"{row['ratio_to_aihwkit']:.2f}x" if "ratio_to_aihwkit" in row else ""
            print(f"{name:10s} {sim:12s} {row['samples_per_s']:10.0f} {row['accuracy']:9.3f}  {ratio}")
        report[name] = rows
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
