"""Convolutional pipeline benchmark (issue: convolutional networks and tile mapping).

    python benchmarks/bench_conv.py [--images 1000] [--repeats 3]

Simulated images per second of configs/lenet_digits.yaml (a LeNet-style CNN on 8x8 digits:
64 patches per image in the first convolution, each an analog read, a transposed read and a
rank-one update) at K = 1 and K = 4 accelerators, median wall time of ``--repeats`` runs.
The patches of one image go to the kernels in one call.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import aimcsim

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "lenet_digits.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    epochs = args.images / 1437  # digits' training split
    aimcsim.simulate(aimcsim.load_config(CONFIG, ["train.epochs=0.02", "pipeline.stages=1"]))  # warm up
    print(f"LeNet on digits, {args.images} images, eval every 10^9 samples, median of {args.repeats}")
    for k in (1, 4):
        walls, result = [], None
        for _ in range(args.repeats):
            cfg = aimcsim.load_config(CONFIG, [f"train.epochs={epochs}", f"pipeline.stages={k}",
                                               "train.eval_every=1000000000"])
            t0 = time.perf_counter()
            result = aimcsim.simulate(cfg)
            walls.append(time.perf_counter() - t0)
        wall = statistics.median(walls)
        n = result.summary["samples"]
        print(f"  K={k}: {wall:6.2f} s  {n / wall:7.1f} simulated images/s  "
              f"({result.summary['cycles'] / n:,.0f} cycles per image under rf25)")


if __name__ == "__main__":
    main()
