"""Demonstration: one analog tile learns a linear regression with pulsed updates.

    python -m aimcsim.demo [--device soft_bounds] [--pulse-type stochastic_compressed] [--steps 3000]

A teacher matrix W* (8 x 16) maps x ~ U(-1, 1) to y = W* x. A 8 x 16 tile starts at zero and
trains with analog SGD: a noisy forward read, the error d = y_hat - y computed digitally,
and the pulsed rank-one update W <- W - lr d x^T. The mean squared error is printed as it
falls, next to what the same loop reaches on an ideal device (exact floating-point updates; the reads stay noisy).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .devices import DEVICE_TYPES
from .errors import ConfigError
from .tile import AnalogTile


def train(device: str, pulse_type: str, steps: int, lr: float, seed: int = 0) -> list[tuple[int, float]]:
    """(step, test MSE) pairs of analog SGD on the teacher regression."""
    rng = np.random.default_rng(seed)
    teacher = rng.uniform(-0.3, 0.3, (8, 16)).astype(np.float32)
    x_test = rng.uniform(-1, 1, (256, 16)).astype(np.float32)
    y_test = x_test @ teacher.T
    tile = AnalogTile(8, 16, device={"type": device}, update={"pulse_type": pulse_type}, seed=seed)
    history = []
    for step in range(steps + 1):
        if step % max(steps // 10, 1) == 0:
            err = tile.forward(x_test) - y_test
            history.append((step, float(np.mean(err**2))))
        x = rng.uniform(-1, 1, 16).astype(np.float32)
        d = tile.forward(x) - x @ teacher.T
        tile.update(x, d, lr)
    return history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aimcsim.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="soft_bounds", help=f"one of {', '.join(DEVICE_TYPES)}")
    parser.add_argument("--pulse-type", default="stochastic_compressed",
                        help="stochastic_compressed | deterministic_implicit | expected | none")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args(argv)
    if args.steps < 1:
        print("error: --steps: must be a positive integer", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        analog = train(args.device, args.pulse_type, args.steps, args.lr)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    exact = train("ideal", "none", args.steps, args.lr)
    print(f"8x16 tile, device={args.device}, pulse_type={args.pulse_type}, lr={args.lr}")
    print(f"{'step':>7s}  {'test MSE (analog)':>18s}  {'test MSE (ideal device)':>22s}")
    for (step, mse), (_, ref) in zip(analog, exact):
        print(f"{step:7d}  {mse:18.5f}  {ref:22.5f}")
    print(f"done in {time.perf_counter() - t0:.1f} s (first run includes compiling the kernels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
