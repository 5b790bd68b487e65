"""Evaluation at data-set size: the time and peak memory of one evaluation of 10,000 CIFAR-size images.

    python benchmarks/bench_eval.py [--images 10000] [--networks cnn3,resnet8,resnet20]

Writes a CIFAR-10-format test set of random images (``--images`` of them; nothing is
downloaded) to a temporary folder, builds each network on it and times
``Network.evaluate`` on the whole test set (exact reads, as every evaluation of a run), with
its peak traced memory (tracemalloc: numpy's arrays). ``cnn3`` is a small three-convolution
CNN (16, 32, 32 channels, 3x3, max pooling), the networks are the presets otherwise. It
reports the chunk size the evaluation chose and the arithmetic rate reached (the analog
layers' multiply-adds, counted from their shapes), which bounds the time from below.

To compare with an older aimcsim, run the same script with that checkout first on
``PYTHONPATH`` (its ``evaluate`` takes the same arguments).
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

import aimcsim
from aimcsim.sim import Engine

CNN3 = [{"conv": {"channels": 16, "kernel": 3, "padding": 1}}, {"activation": "relu"}, {"pool": {"kind": "max"}},
        {"conv": {"channels": 32, "kernel": 3, "padding": 1}}, {"activation": "relu"}, {"pool": {"kind": "max"}},
        {"conv": {"channels": 32, "kernel": 3, "padding": 1}}, {"activation": "relu"}, {"pool": {"kind": "max"}},
        {"flatten": {}}, {"linear": {"units": 10}}]


def cifar_folder(root: Path, images: int) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batch = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 20))}
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch))
    test = {b"data": rng.integers(0, 256, (images, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, images))}
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    return root


def model_of(name: str) -> dict:
    return {"layers": CNN3} if name == "cnn3" else {"preset": name}


def multiply_adds(engine: Engine) -> int:
    """Multiply-adds of one image's analog reads (weights x patches)."""
    network = engine.network
    layers = getattr(network, "layers", [])
    total = 0
    for layer in layers:
        grid = getattr(layer, "grid", None)
        patches = getattr(layer, "patches", None)
        if patches is None:  # an older aimcsim's Block: patches from its input shape
            if getattr(layer, "kind", "dense") == "conv":
                _, h, w = layer.in_shape
                oh = (h + 2 * layer.padding - layer.kernel) // layer.stride + 1
                ow = (w + 2 * layer.padding - layer.kernel) // layer.stride + 1
                patches = oh * ow
            else:
                patches = 1
        total += grid.out_size * grid.in_size * patches
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--networks", default="cnn3,resnet8,resnet20")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = cifar_folder(Path(tmp), args.images)
        print(f"aimcsim at {Path(aimcsim.__file__).parent}; {args.images:,} CIFAR-size test images")
        for name in args.networks.split(","):
            cfg = {"data": {"name": "cifar10", "path": str(folder)}, "model": model_of(name),
                   "pipeline": {"schedule": "sequential", "stages": 1, "microbatch_size": 2},
                   "train": {"epochs": 1, "eval_every": 10**9, "target": None}}
            engine = Engine(aimcsim.load_config(cfg))
            x, y = engine.data.x_test, engine.data.y_test
            engine.network.evaluate(x[:8], y[:8])  # warm up
            tracemalloc.start()
            t0 = time.perf_counter()
            engine.network.evaluate(x, y)
            wall = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            chunk = engine.network.eval_batch(False) if hasattr(engine.network, "eval_batch") else 1024
            rate = 2 * multiply_adds(engine) * len(x) / wall / 1e9
            print(f"{name:9s} {wall:6.1f} s  peak {peak / 2**20:7.0f} MB  chunk {chunk:5d}  {rate:5.1f} GFLOP/s")


if __name__ == "__main__":
    main()
