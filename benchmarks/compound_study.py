"""Two-array training under pipelining: analog SGD against Tiki-Taka and c-TTv2, written into docs/earlier_results.md.

    python benchmarks/compound_study.py [--seeds 3] [--epochs 3] [--out runs/compounds] [--workers 2]

The digits MLP 64-32-32-32-10 (tanh, cross-entropy; four layers, so that K = 4 puts one on
each accelerator), for two devices (aihwkit's default soft bounds, and its
EcRamPresetDevice) and three algorithms on them: analog SGD, Tiki-Taka (aihwkit's
TransferCompound defaults) and c-TTv2 (ChoppedTransferCompound with fast_lr 0.3 and
buffer_granularity 10; aihwkit's defaults train poorly here). Each algorithm uses the
learning rate it did best with on a small scan at K = 1 (stated in the table). Schedules
``sequential``, ``gpipe`` (M = 4, ``minibatch_reduction: sum``: every sample gets the same
step) and ``async``, K = 1, 2, 4, every seed, under the ``ideal`` and the ``rf25`` timing.
The table goes between the COMPOUND TABLES markers of docs/earlier_results.md; the sweep directories
are resumable (a finished point is not rerun).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

import aimcsim
from doc_tables import write_between

ROOT = Path(__file__).resolve().parents[1]
STAGES = [1, 2, 4]
SCHEDULES = ["sequential", "gpipe", "async"]
TARGET = 0.6
BEGIN = "<!-- BEGIN COMPOUND TABLES (written by benchmarks/compound_study.py) -->"
END = "<!-- END COMPOUND TABLES -->"
DEVICES = {"soft bounds": {"type": "soft_bounds"}, "EcRamPresetDevice": {"preset": "EcRamPresetDevice"}}
ALGORITHMS = {  # name -> (device section from the unit device, learning rate)
    "analog SGD": (lambda unit: unit, 0.02),
    "Tiki-Taka": (lambda unit: {"type": "transfer_compound", "unit_cell_devices": [unit, unit]}, 0.05),
    "c-TTv2": (lambda unit: {"type": "chopped_transfer_compound", "unit_cell_devices": [unit, unit],
                             "fast_lr": 0.3, "buffer_granularity": 10.0}, 0.5),
}


def base_config(device: dict, lr: float, epochs: float, schedule: str, timing: str) -> dict:
    flush = {"microbatches": 4} if schedule == "gpipe" else {}  # only gpipe has mini-batches to combine
    return {"seed": 0, "data": {"name": "digits"},
            "model": {"hidden": [32, 32, 32], "activation": "tanh", "loss": "cross_entropy"},
            "device": device, "pipeline": {"schedule": schedule, "stages": 1, **flush},
            "timing": {"preset": timing},
            "train": {"lr": lr, "epochs": epochs, "eval_every": 100,
                      "target": {"metric": "test_accuracy", "value": TARGET},
                      **({"minibatch_reduction": "sum"} if flush else {})}}


def run_all(seeds: int, epochs: float, out: Path, workers: int) -> pd.DataFrame:
    tables = []
    for device_name, unit in DEVICES.items():
        for algorithm, (make, lr) in ALGORITHMS.items():
            for timing in ("ideal", "rf25"):
                for schedule in SCHEDULES:
                    cfg = base_config(make(unit), lr, epochs, schedule, timing)
                    where = out / device_name.replace(" ", "_") / algorithm.replace(" ", "_") / timing / schedule
                    t = aimcsim.sweep(cfg, {"pipeline.stages": STAGES, "seed": list(range(seeds))}, out=where,
                                      workers=workers, quiet=True)
                    t["device"], t["algorithm"], t["timing"], t["lr"] = device_name, algorithm, timing, lr
                    tables.append(t)
                    print(f"{device_name} / {algorithm} / {timing} / {schedule}: done", flush=True)
    return pd.concat(tables, ignore_index=True)


def _pm(values: pd.Series, fmt: str) -> str:
    v = values.dropna()
    if v.empty:
        return f"not reached (0/{len(values)})"
    text = f"{format(v.mean(), fmt)} ± {format(v.std(ddof=0), fmt)}"
    return text + (f" ({len(v)}/{len(values)})" if len(v) < len(values) else "")


def table(results: pd.DataFrame) -> str:
    lines = [f"Target: test accuracy ≥ {TARGET}. Mean ± std over seeds; a count in brackets: only that many "
             f"seeds reached the target (\"not reached\": none did). Accuracy and samples are from the `ideal` "
             f"runs; cycles from each timing's own runs (under `rf25` the asynchronous event order, and with it "
             f"the arithmetic, can differ).", ""]
    for device in DEVICES:
        lines += [f"### {device}", "",
                  "| algorithm (lr) | schedule | K | final test accuracy | samples to target | cycles to target "
                  "(ideal) | cycles to target (rf25) | transfers per stage | max staleness |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for algorithm, (_, lr) in ALGORITHMS.items():
            for schedule in SCHEDULES:
                for k in STAGES:
                    pick = (results["device"] == device) & (results["algorithm"] == algorithm) & \
                           (results["schedule"] == schedule) & (results["pipeline.stages"] == k)
                    ideal = results[pick & (results["timing"] == "ideal")]
                    rf = results[pick & (results["timing"] == "rf25")]
                    stale = max(max(json.loads(s)) for s in ideal["staleness"])
                    transfers = ideal["transfers"].map(lambda s: sum(json.loads(s)) / len(json.loads(s)))
                    lines.append(f"| {algorithm} ({lr}) | {schedule} | {k} | "
                                 f"{_pm(ideal['final_test_accuracy'], '.3f')} | "
                                 f"{_pm(ideal['sample_complexity'], ',.0f')} | {_pm(ideal['cycle_complexity'], ',.0f')} | "
                                 f"{_pm(rf['cycle_complexity'], ',.0f')} | {transfers.mean():,.0f} | {stale} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--out", default="runs/compounds")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    results = run_all(args.seeds, args.epochs, out, args.workers)
    results.to_csv(out / "all_results.csv", index=False)
    doc = write_between(ROOT / "docs" / "earlier_results.md", BEGIN, END, table(results), add_markers=False)
    print(f"wrote the table into {doc}")


if __name__ == "__main__":
    main()
