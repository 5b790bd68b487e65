"""The planner's predicted cycles against simulated ones: every shipped config, every schedule, both clocks.

    python benchmarks/bench_prediction.py [--samples 256] [--json out.json]

Each shipped config (``configs/*.yaml``; CIFAR- and MNIST-format ones on small random files
of that format, the 43-crossbar aihwkit example left out for time) runs ``--samples``
training samples with ``partition: time`` under each schedule that needs no action list,
with ``timing.preset`` ``ideal`` and ``rf25``; its summary's ``predicted_cycles_per_sample``
(the planner's replay of its probe through the schedule's event loop) is compared with the
measured ``cycles_per_sample``. Prints every case and the error distribution per clock.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aimcsim  # noqa: E402
from aimcsim.errors import ConfigError  # noqa: E402
from aimcsim.sim.schedules import SCHEDULES  # noqa: E402
from bench_training import cnn_data  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"resnet_aihwkit_example18": "43 crossbars: minutes per case"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"mnist": cnn_data(tmp, "mnist", args.samples), "fashion_mnist": cnn_data(tmp, "mnist", args.samples),
                 "cifar10": cnn_data(tmp, "cifar10", args.samples)}
        for path in sorted((ROOT / "configs").glob("*.yaml")):
            if path.stem in SKIP:
                continue
            for timing in ("ideal", "rf25"):
                for schedule, kind in SCHEDULES.items():
                    if kind.from_file:
                        continue
                    over = ["sweep=null", f"pipeline.schedule={schedule}", "pipeline.partition=time",
                            f"timing.preset={timing}", f"data.max_train={args.samples}", "train.epochs=1",
                            "train.eval_every=1000000000", "train.target=null", "pipeline.actions=null"]
                    name = (yaml.safe_load(path.read_text()).get("data") or {}).get("name", "digits")
                    if name in paths:
                        over.append(f"data.path={paths[name]}")
                    try:
                        cfg = aimcsim.load_config(path, over, unused="drop")
                        if cfg.pipeline.stages == 1:
                            continue
                        s = aimcsim.simulate(cfg).summary
                    except ConfigError as exc:
                        print(f"{path.stem:22s} {timing:5s} {schedule:24s} n/a: {exc}", flush=True)
                        continue
                    if s["predicted_cycles_per_sample"] is None:
                        continue
                    err = s["predicted_cycles_per_sample"] / s["cycles_per_sample"] - 1
                    rows.append({"config": path.stem, "timing": timing, "schedule": schedule,
                                 "partition": s["partition"], "measured": s["cycles_per_sample"],
                                 "predicted": s["predicted_cycles_per_sample"], "error": err})
                    print(f"{path.stem:22s} {timing:5s} {schedule:24s} {str(s['partition']):16s} measured "
                          f"{s['cycles_per_sample']:12.2f} predicted {s['predicted_cycles_per_sample']:12.2f} "
                          f"{err:+7.2%}", flush=True)
    for timing in ("ideal", "rf25"):
        errs = np.array([r["error"] for r in rows if r["timing"] == timing])
        if len(errs):
            print(f"{timing}: {len(errs)} cases, error median {np.median(errs):+.3%}, mean |error| "
                  f"{np.mean(np.abs(errs)):.3%}, max |error| {np.max(np.abs(errs)):.3%}, "
                  f"exact in {int(np.sum(errs == 0))}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
