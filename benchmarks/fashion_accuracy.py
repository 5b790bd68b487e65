"""Accuracy on real Fashion-MNIST: LeNet-5 and ResNet-8, aimcsim ``sequential`` next to aihwkit.

    python benchmarks/fashion_accuracy.py [--networks lenet5,resnet8] [--seeds 3] [--json out.json]

Each network trains from its shipped config (``configs/lenet5_fashion.yaml``,
``configs/resnet8_fashion.yaml``: device, lr, micro-batch size, training samples) with the
schedule set to ``sequential`` on one accelerator, for ``--seeds`` seeds. Where aihwkit is
importable (DEVELOPERS.md says how to build it; never in CI) the same graph trains there
(``bench_training.torch_graph``: AnalogConv2d / AnalogLinear at the same device's aihwkit
class, torch's BatchNorm2d) on the same samples, in the same order and micro-batches, from
the same initial weights. Both report the test accuracy of the final network read through
its own analog IO chain (noise, DAC/ADC at the defaults both share) on the 10,000 test images.
Needs the data (``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aimcsim  # noqa: E402
from aimcsim.sim import Engine  # noqa: E402
from bench_training import torch_graph  # noqa: E402

CONFIGS = {"lenet5": "configs/lenet5_fashion.yaml", "resnet8": "configs/resnet8_fashion.yaml"}
ROOT = Path(__file__).resolve().parent.parent


SEQUENTIAL = ["pipeline.schedule=sequential", "pipeline.stages=1", "timing.preset=ideal",
              "train.eval_every=1000000000", "train.target=null"]
EXTRA: list[str] = []  # --set overrides


def load(name: str, seed: int) -> aimcsim.Config:
    """The shipped config on one accelerator (keys a single accelerator does not read dropped)."""
    return aimcsim.load_config(ROOT / CONFIGS[name], [f"seed={seed}", *SEQUENTIAL, *EXTRA], unused="drop")


def run_aimcsim(name: str, seed: int) -> dict:
    engine = Engine(load(name, seed))
    engine.run()
    test = engine.network.evaluate(engine.data.x_test, engine.data.y_test, reads="analog")
    return {"samples": engine.samples, "seconds": engine.wall_run, "accuracy": test["accuracy"]}


def aihwkit_device(config: aimcsim.Config):
    """aihwkit's device class for the config's device, with the config's bounds."""
    from aihwkit.simulator.configs import SingleRPUConfig  # noqa: PLC0415
    from aihwkit.simulator.configs import devices  # noqa: PLC0415

    d = config.device_params()
    cls = {"constant_step": devices.ConstantStepDevice, "soft_bounds": devices.SoftBoundsDevice}[config.device["type"]]
    cfg = SingleRPUConfig(device=cls(w_max=d.w_max, w_min=d.w_min))
    cfg.mapping.digital_bias = False  # aimcsim's biases are the last column of the crossbar
    return cfg


def run_aihwkit(name: str, seed: int) -> dict | None:
    try:
        import torch  # noqa: PLC0415
        from aihwkit.optim import AnalogSGD  # noqa: PLC0415
    except ImportError:
        return None
    config = load(name, seed)
    engine = Engine(config)
    torch.manual_seed(seed)
    model = torch_graph(engine, aihwkit_device(config))
    opt = AnalogSGD(model.parameters(), lr=config.train.lr)
    opt.regroup_param_groups(model)
    loss_fn = torch.nn.CrossEntropyLoss()
    data = engine.data
    model.train()
    t0 = time.perf_counter()
    samples = 0
    for i in range(engine.n_items):
        rows = engine.feed.rows(i)
        opt.zero_grad()
        loss = loss_fn(model(torch.tensor(data.x_train[rows])), torch.tensor(data.y_train[rows], dtype=torch.long))
        loss.backward()
        opt.step()
        samples += len(rows)
    seconds = time.perf_counter() - t0
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data.x_test), 500):
            out = model(torch.tensor(data.x_test[start:start + 500]))
            correct += int((out.argmax(dim=1).numpy() == data.y_test[start:start + 500]).sum())
    return {"samples": samples, "seconds": seconds, "accuracy": correct / len(data.x_test)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default="lenet5,resnet8")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--set", action="append", default=[], help="a config override for every run (KEY=VALUE)")
    args = ap.parse_args()
    EXTRA.extend(args.set)
    names = args.networks.split(",")
    for name in names:
        if name not in CONFIGS:
            raise SystemExit(f"--networks: unknown {name!r}; allowed: {', '.join(CONFIGS)}")
    report: dict = {}
    for name in names:
        for seed in range(args.seeds):
            for sim, run in (("aimcsim", run_aimcsim), ("aihwkit", run_aihwkit)):
                r = run(name, seed)
                if r is None:
                    continue
                report.setdefault(name, {}).setdefault(sim, []).append(r)
                print(f"{name:8s} seed {seed} {sim:8s} accuracy {r['accuracy']:.4f}  "
                      f"{r['samples']} samples in {r['seconds']:.0f} s", flush=True)
    print(f"\n{'network':8s} {'simulator':9s} {'accuracy (mean +- sd over seeds)':>34s}")
    for name, sims in report.items():
        for sim, runs in sims.items():
            acc = [r["accuracy"] for r in runs]
            sd = statistics.stdev(acc) if len(acc) > 1 else float("nan")
            print(f"{name:8s} {sim:9s} {np.mean(acc):.4f} +- {sd:.4f}  ({', '.join(f'{a:.4f}' for a in acc)})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
