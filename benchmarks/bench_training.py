"""End-to-end training benchmark: analog SGD and every compound device, side by side with aihwkit.

    python benchmarks/bench_training.py [--epochs 1] [--repeats 5] [--algorithms sgd,tt,...] [--json out.json]
    python benchmarks/bench_training.py --algorithms none --cnns lenet5,resnet8 [--cnn-samples 256]
    python benchmarks/bench_training.py --algorithms sgd --mlp-cases "GPipe K=3 M=4,784 K=1"
    python benchmarks/bench_training.py --repeats 5 --cnns lenet5,resnet8 --bounds   # the README's table

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

With ``sgd``, ``--mlp-cases`` adds (default: both) GPipe at K = 3 with mini-batches of M = 4
micro-batches of one sample (aihwkit: mini-batches of 4) and the 784-256-128-10 MLP per sample
at K = 1 on 1,000 random MNIST-format images (``WIDE``).

``--cnns``: LeNet-5 on 28x28 and ResNet-8 on 32x32x3 (the presets; random images in MNIST's
and CIFAR-10's file formats), analog SGD on the soft-bounds device, K = 1, micro-batches of 8
on both sides (batch norm needs them), lr 0.05; aihwkit runs the same graph (AnalogConv2d,
AnalogLinear, torch's BatchNorm2d, the same initial weights, samples and order).

``--bounds``: after the timed rounds, each aimcsim case runs ``BOUND_RUNS`` more times with
every compiled kernel that Python calls timed (``KernelClock``); the table gives the median
kernel share of the run's time and the ceiling ratio / share: the ratio to aihwkit if nothing
but the kernels took time, which says whether a goal is within reach of leaner Python at all.
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


# The MLP cases: (network, aimcsim schedule, stages, micro-batches per mini-batch); aihwkit
# trains each with mini-batches of that many samples (micro-batches of one sample).
MLP_CASES = {"GPipe K=3 M=4": ("digits", "gpipe", 3, 4), "784 K=1": ("wide", "sequential", 1, 1)}
WIDE = {"hidden": [256, 128], "samples": 1000}  # 784-256-128-10 on MNIST-format images
_WIDE_PATH: list[str] = []  # the random MNIST-format folder, made on first use


def _wide_data() -> dict:
    if not _WIDE_PATH:
        import atexit  # noqa: PLC0415
        import shutil  # noqa: PLC0415
        import tempfile  # noqa: PLC0415
        folder = tempfile.mkdtemp(prefix="aimcsim_bench_")
        atexit.register(shutil.rmtree, folder, True)
        _WIDE_PATH.append(cnn_data(folder, "mnist", WIDE["samples"]))
    return {"name": "mnist", "path": _WIDE_PATH[0], "max_train": WIDE["samples"]}


def config(algorithm: str, stages: int, epochs: float, seed: int, case: str | None = None) -> dict:
    network, schedule, stages, microbatches = MLP_CASES[case] if case else (
        "digits", "sequential" if stages == 1 else "async", stages, 1)
    pipeline = {"schedule": schedule, "stages": stages}
    if schedule == "gpipe":
        pipeline["microbatches"] = microbatches
    data, hidden = ({"name": "digits"}, [32, 32]) if network == "digits" else (_wide_data(), WIDE["hidden"])
    return {"seed": seed, "data": data, "model": {"hidden": hidden, "activation": "tanh"},
            "device": ALGORITHMS[algorithm], "pipeline": pipeline,
            "train": {"lr": LR, "epochs": epochs, "eval_every": 10**9, "target": None}}


def accuracy(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy of [W | b] layers with exact reads (tanh between layers)."""
    a = x.astype(np.float64)
    for k, w in enumerate(weights):
        a = np.concatenate([a, np.ones((len(a), 1))], axis=1) @ np.asarray(w, np.float64).T
        if k < len(weights) - 1:
            a = np.tanh(a)
    return float(np.mean(np.argmax(a, axis=1) == y))


def run_aimcsim(algorithm: str, stages: int, epochs: float, seed: int, case: str | None = None) -> dict:
    engine = Engine(aimcsim.load_config(config(algorithm, stages, epochs, seed, case)))
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


def run_aihwkit(algorithm: str, epochs: float, seed: int, case: str | None = None) -> dict | None:
    """The same training in aihwkit (None when aihwkit is not importable): ``case``'s network
    (default the digits MLP), mini-batches of its micro-batch count."""
    try:
        import torch
        from aihwkit.nn import AnalogLinear, AnalogSequential
        from aihwkit.optim import AnalogSGD
    except ImportError:
        return None
    batch = MLP_CASES[case][3] if case else 1
    engine = Engine(aimcsim.load_config(config(algorithm, 1, epochs, seed, case)))  # data, order, initial weights
    data = engine.data  # micro-batches of one sample, in the run's order
    order = np.concatenate([engine.feed.rows(i) for i in range(engine.n_items)])
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
    for i in range(0, len(order), batch):
        opt.zero_grad()
        loss = loss_fn(model(xs[i:i + batch]), ys[i:i + batch])
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    weights = []
    for layer in (m for m in model.modules() if isinstance(m, AnalogLinear)):
        w, b = layer.get_weights()
        weights.append(np.concatenate([w.numpy(), b.numpy()[:, None]], axis=1))
    return {"samples": len(order), "seconds": seconds, "accuracy": accuracy(weights, data.x_test, data.y_test)}


class KernelClock:
    """Times every compiled kernel that Python calls (``aimcsim.kernels`` and
    ``aimcsim.compound_kernels``) while active: the work a run cannot shed by leaner Python
    around its ops. A run's time over its kernels' time is the most that removing everything
    else could gain (``--bounds``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._saved: list[tuple] = []

    def __enter__(self) -> "KernelClock":
        from numba.core.registry import CPUDispatcher  # noqa: PLC0415

        from aimcsim import compound_kernels, kernels  # noqa: PLC0415

        for module in (kernels, compound_kernels):
            for name, fn in vars(module).copy().items():
                if isinstance(fn, CPUDispatcher):
                    self._saved.append((module, name, fn))
                    setattr(module, name, self._timed(fn))
        return self

    def _timed(self, fn):
        def timed(*args):
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.seconds += time.perf_counter() - t0
        return timed

    def __exit__(self, *exc) -> None:
        for module, name, fn in self._saved:
            setattr(module, name, fn)


BOUND_RUNS = 3  # runs per case of --bounds: the median share (a run the machine slowed is an outlier)


def kernel_share(make_engine) -> dict:
    """``BOUND_RUNS`` runs of ``make_engine()`` with their kernels timed: microseconds per sample
    in all and in the kernels, and the kernels' share of the time, of the run with the median share."""
    runs = []
    for _ in range(BOUND_RUNS):
        engine = make_engine()
        with KernelClock() as clock:
            engine.run()
        n = engine.samples
        runs.append({"us_per_sample": 1e6 * engine.wall_run / n, "kernel_us_per_sample": 1e6 * clock.seconds / n,
                     "kernel_share": clock.seconds / engine.wall_run})
    return sorted(runs, key=lambda run: run["kernel_share"])[len(runs) // 2]


def print_bounds(report: dict, shares: dict) -> None:
    """Per aimcsim case: time per sample, the kernels' part, and the ratio to aihwkit if nothing
    but the kernels took time (the ceiling of a leaner Python path): the measured ratio over the
    kernels' share of the time (a share is a fraction of one run, so it moves less with the
    machine's speed than the times do)."""
    print(f"\n{'case':28s} {'us/sample':>9s} {'kernels':>8s} {'share':>6s}  ratio now  ceiling")
    for (case, sim), share in shares.items():
        rows = report[case]
        now = rows[sim].get("ratio_to_aihwkit")
        ceiling = "" if now is None else f"{now / share['kernel_share']:.1f}x"
        print(f"{case + ' ' + sim:28s} {share['us_per_sample']:9.1f} {share['kernel_us_per_sample']:8.1f} "
              f"{share['kernel_share']:6.0%}  {'' if now is None else f'{now:.2f}x':>9s}  {ceiling:>7s}")
        rows[sim]["kernel_share"] = share


def medians(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per simulator: the median samples per second over its rounds, the last round's accuracy,
    and the ratio to aihwkit's median where aihwkit ran."""
    rows = {sim: {"samples_per_s": statistics.median(r["samples"] / r["seconds"] for r in results),
                  "accuracy": results[-1]["accuracy"]} for sim, results in runs.items() if results}
    base = rows.get("aihwkit", {}).get("samples_per_s")
    for sim, row in rows.items():
        if base and sim != "aihwkit":
            row["ratio_to_aihwkit"] = row["samples_per_s"] / base
    return rows


def _ratio(row: dict) -> str:
    return f"{row['ratio_to_aihwkit']:.2f}x" if "ratio_to_aihwkit" in row else ""


# ------------------------------------------------------------------ convolutional networks
CNNS = {"lenet5": ("lenet5", "mnist"), "resnet8": ("resnet8", "cifar10")}  # name -> (preset, data format)
CNN_MICROBATCH = 8  # both sides: batch norm needs micro-batches, and aihwkit's LeNet-5 example uses 8
CNN_LR = 0.05


def cnn_data(folder, kind: str, n_train: int) -> str:
    """Random images in MNIST's (28x28) or CIFAR-10's (32x32x3) file format: speed does not
    need real images, and nothing is downloaded."""
    import gzip  # noqa: PLC0415
    import pickle  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    rng = np.random.default_rng(0)
    root = Path(folder) / kind
    root.mkdir(parents=True, exist_ok=True)
    if kind == "mnist":
        def idx(array):
            head = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            return gzip.compress(head + array.astype(np.uint8).tobytes())
        for prefix, n in (("train", n_train), ("t10k", 100)):
            (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(idx(rng.integers(0, 256, (n, 28, 28))))
            (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(idx(rng.integers(0, 10, n)))
    else:
        def batch(n):
            return pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                 b"labels": list(rng.integers(0, 10, n))})
        (root / "data_batch_1").write_bytes(batch(n_train))
        (root / "test_batch").write_bytes(batch(100))
    return str(root)


def cnn_config(name: str, path: str, n_train: int, seed: int) -> dict:
    preset, kind = CNNS[name]
    return {"seed": seed, "data": {"name": kind, "path": path, "max_train": n_train}, "model": {"preset": preset},
            "device": SOFT, "pipeline": {"schedule": "sequential", "stages": 1, "microbatch_size": CNN_MICROBATCH},
            "train": {"lr": CNN_LR, "epochs": 1, "eval_every": 10**9, "target": None}}


def run_cnn_aimcsim(name: str, path: str, n_train: int, seed: int) -> dict:
    engine = Engine(aimcsim.load_config(cnn_config(name, path, n_train, seed)))
    engine.run()
    return {"samples": engine.samples, "seconds": engine.wall_run, "accuracy": float("nan")}


def torch_graph(engine: Engine, rpu_config=None):
    """The network's graph as a torch module of aihwkit's analog layers (the initial weights
    copied; ``rpu_config`` default: analog SGD on aihwkit's soft-bounds device) and torch's
    digital ones, evaluated in the graph's order."""
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415
    from aihwkit.nn import AnalogConv2d, AnalogLinear  # noqa: PLC0415

    class Graph(torch.nn.Module):
        def __init__(self, layers, rpu_config):
            super().__init__()
            self.layers = layers
            self.mods = torch.nn.ModuleDict()
            for k, layer in enumerate(layers):
                key = f"m{k}"
                if layer.kind == "conv":
                    mod = AnalogConv2d(layer.in_image[0], layer.channels, layer.kernel, stride=layer.stride,
                                       padding=layer.padding, bias=True, rpu_config=rpu_config)
                    w = layer.grid.get_weights()
                    mod.set_weights(torch.tensor(w[:, :-1].reshape(layer.channels, *layer.in_image[:1],
                                                                   layer.kernel, layer.kernel)),
                                    torch.tensor(w[:, -1]))
                elif layer.kind == "linear":
                    mod = AnalogLinear(layer.n_in, layer.units, bias=True, rpu_config=rpu_config)
                    w = layer.grid.get_weights()
                    mod.set_weights(torch.tensor(w[:, :-1]), torch.tensor(w[:, -1]))
                elif layer.kind == "norm":
                    mod = (torch.nn.BatchNorm2d(layer.channels) if layer.image else torch.nn.BatchNorm1d(layer.channels))
                else:
                    continue
                self.mods[key] = mod

        def forward(self, x):
            t = {"input": x}
            for k, layer in enumerate(self.layers):
                xs = [t[n] for n in layer.inputs]
                a = xs[0]
                if f"m{k}" in self.mods:
                    if layer.kind == "conv" and a.dim() == 2:
                        a = a.reshape(-1, *layer.in_image)
                    y = self.mods[f"m{k}"](a)
                elif layer.kind == "activation":
                    y = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[layer.function](a)
                elif layer.kind == "pool":
                    y = (F.max_pool2d if layer.how == "max" else F.avg_pool2d)(a, layer.size)
                elif layer.kind == "global_pool":
                    y = a.mean(dim=(2, 3))
                elif layer.kind == "flatten":
                    y = a.reshape(a.shape[0], -1)
                elif layer.kind == "add":
                    y = sum(xs[1:], xs[0])
                t[layer.name] = y
            return t[self.layers[-1].name]

    return Graph(engine.network.all_layers, rpu_config or aihwkit_rpu_config("sgd"))


def run_cnn_aihwkit(name: str, path: str, n_train: int, seed: int) -> dict | None:
    """The same network, samples, order, micro-batches and initial weights in aihwkit (None
    when it is not importable)."""
    try:
        import torch  # noqa: PLC0415
        from aihwkit.optim import AnalogSGD  # noqa: PLC0415
    except ImportError:
        return None
    engine = Engine(aimcsim.load_config(cnn_config(name, path, n_train, seed)))
    torch.manual_seed(seed)
    model = torch_graph(engine)
    opt = AnalogSGD(model.parameters(), lr=CNN_LR)
    opt.regroup_param_groups(model)
    loss_fn = torch.nn.CrossEntropyLoss()
    data = engine.data
    batches = [engine.feed.rows(i) for i in range(engine.n_items)]
    model.train()
    t0 = time.perf_counter()
    for rows in batches:
        opt.zero_grad()
        loss = loss_fn(model(torch.tensor(data.x_train[rows])), torch.tensor(data.y_train[rows], dtype=torch.long))
        loss.backward()
        opt.step()
    return {"samples": sum(len(r) for r in batches), "seconds": time.perf_counter() - t0, "accuracy": float("nan")}


def cnn_main(names: list[str], repeats: int, n_train: int, seed: int) -> dict:
    """Samples per second of each CNN, aimcsim K = 1 against aihwkit, alternating rounds."""
    import tempfile  # noqa: PLC0415

    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: cnn_data(tmp, CNNS[name][1], n_train) for name in names}
        for name in names:  # compile and warm, untimed
            run_cnn_aimcsim(name, paths[name], 2 * CNN_MICROBATCH, seed)
        runs = {name: {"aimcsim K=1": [], "aihwkit": []} for name in names}
        for _ in range(repeats):
            for name in names:
                runs[name]["aimcsim K=1"].append(run_cnn_aimcsim(name, paths[name], n_train, seed))
                other = run_cnn_aihwkit(name, paths[name], n_train, seed)
                if other is not None:
                    runs[name]["aihwkit"].append(other)
        print(f"{'network':10s} {'simulator':12s} {'samples/s':>10s}  vs aihwkit   (micro-batches of {CNN_MICROBATCH})")
        for name in names:
            rows = medians(runs[name])
            for sim, row in rows.items():
                print(f"{name:10s} {sim:12s} {row['samples_per_s']:10.1f}  {_ratio(row)}")
            report[name] = rows
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--cnns", default="", help="also (or, with --algorithms none, only) these CNNs: lenet5,resnet8")
    ap.add_argument("--cnn-samples", type=int, default=256, help="training samples of each CNN run")
    ap.add_argument("--bounds", action="store_true",
                    help="also time each aimcsim case's compiled kernels: the ratio if nothing else took time")
    ap.add_argument("--mlp-cases", default="GPipe K=3 M=4,784 K=1",
                    help=f"with sgd, also these cases (of: {', '.join(MLP_CASES)}; '' for none)")
    args = ap.parse_args()
    cnn_report = {}
    if args.cnns:
        for name in args.cnns.split(","):
            if name not in CNNS:
                raise SystemExit(f"--cnns: unknown {name!r}; allowed: {', '.join(CNNS)}")
        cnn_report = cnn_main(args.cnns.split(","), args.repeats, args.cnn_samples, args.seed)
    cnn_shares = {}
    if args.bounds and args.cnns:
        import tempfile  # noqa: PLC0415
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.cnns.split(","):
                path = cnn_data(tmp, CNNS[name][1], args.cnn_samples)
                cnn_shares[(name, "aimcsim K=1")] = kernel_share(lambda: Engine(aimcsim.load_config(
                    cnn_config(name, path, args.cnn_samples, args.seed))))
    names = [] if args.algorithms == "none" else args.algorithms.split(",")
    for name in names:
        if name not in ALGORITHMS:
            raise SystemExit(f"--algorithms: unknown {name!r}; allowed: {', '.join(ALGORITHMS)}")
    for case in (c for c in args.mlp_cases.split(",") if c):
        if case not in MLP_CASES:
            raise SystemExit(f"--mlp-cases: unknown {case!r}; allowed: {', '.join(MLP_CASES)}")
    for name in names:  # compile and warm every path once, untimed
        run_aimcsim(name, 1, 0.05, args.seed)
        run_aimcsim(name, 3, 0.05, args.seed)
    runs: dict = {name: {"aimcsim K=1": [], "aimcsim K=3": [], "aihwkit": []} for name in names}
    mlp_cases = [case for case in args.mlp_cases.split(",") if case] if "sgd" in names else []
    for case in mlp_cases:
        run_aimcsim("sgd", 1, 0.05, args.seed, case)
    case_runs: dict = {case: {"aimcsim": [], "aihwkit": []} for case in mlp_cases}
    for _ in range(args.repeats):
        for name in names:
            runs[name]["aimcsim K=1"].append(run_aimcsim(name, 1, args.epochs, args.seed))
            runs[name]["aimcsim K=3"].append(run_aimcsim(name, 3, args.epochs, args.seed))
            other = run_aihwkit(name, args.epochs, args.seed)
            if other is not None:
                runs[name]["aihwkit"].append(other)
        for case in mlp_cases:
            case_runs[case]["aimcsim"].append(run_aimcsim("sgd", 1, args.epochs, args.seed, case))
            other = run_aihwkit("sgd", args.epochs, args.seed, case)
            if other is not None:
                case_runs[case]["aihwkit"].append(other)
    shares = {}
    if args.bounds:
        for name in names:
            for stages in (1, 3):
                shares[(name, f"aimcsim K={stages}")] = kernel_share(lambda: Engine(aimcsim.load_config(
                    config(name, stages, args.epochs, args.seed))))
        for case in mlp_cases:
            shares[(f"sgd {case}", "aimcsim")] = kernel_share(lambda: Engine(aimcsim.load_config(
                config("sgd", 1, args.epochs, args.seed, case))))
    report = {}
    print(f"{'algorithm':10s} {'simulator':12s} {'samples/s':>10s} {'accuracy':>9s}  vs aihwkit")
    for name in names:
        rows = medians(runs[name])
        for sim, row in rows.items():
            print(f"{name:10s} {sim:12s} {row['samples_per_s']:10.0f} {row['accuracy']:9.3f}  {_ratio(row)}")
        report[name] = rows
    if mlp_cases:
        print(f"\n{'sgd case':14s} {'simulator':9s} {'samples/s':>10s}  vs aihwkit   (aihwkit: mini-batches of M)")
    for case in mlp_cases:
        rows = medians(case_runs[case])
        for sim, row in rows.items():
            print(f"{case:14s} {sim:9s} {row['samples_per_s']:10.0f}  {_ratio(row)}")
        report[f"sgd {case}"] = rows
    if args.bounds:
        print_bounds({**report, **cnn_report}, {**shares, **cnn_shares})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({**report, **cnn_report}, fh, indent=2)


if __name__ == "__main__":
    main()
