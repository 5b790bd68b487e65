"""Write PyTorch's pipeline schedules as action-list CSVs (``_dump_csv``'s format), K = 4, M = 8.

    python configs/schedules/generate.py        # needs torch (2.13 generated the shipped files)

One row per rank (accelerator), one cell per step: ``{stage}{type}{microbatch}`` with type F
(forward), B (full backward), I (input-gradient backward) or W (weight-gradient backward), an
empty cell an idle step. The files are what ``torch.distributed.pipelining.
_schedule_visualizer.get_schedule_ops`` returns, written as ``PipelineScheduleMulti._dump_csv``
writes ``pipeline_order``, so PyTorch's ``_load_csv`` reads them back.
"""

from __future__ import annotations

import csv
from pathlib import Path

from torch.distributed.pipelining._schedule_visualizer import get_schedule_ops

RANKS, MICROBATCHES = 4, 8
SCHEDULES = {  # file stem -> (PyTorch schedule class name, stages per rank)
    "gpipe": ("GPipe", 1),
    "interleaved_1f1b": ("Interleaved1F1B", 2),
    "interleaved_zero_bubble": ("InterleavedZeroBubble", 2),
    "zbv_zero_bubble": ("ZBVZeroBubble", 2),
    "dualpipev": ("DualPipeV", 2),  # its "(0F7;7B3)OVERLAP_F_B" cells run their two actions in turn
}
# 1F1B is left out: torch 2.13's Schedule1F1B._get_pipeline_order starts the last rank at
# micro-batch 1 and ends it at micro-batch M (which does not exist), so aimcsim refuses that
# list; its runtime order is the built-in schedule 1f1b.


def main() -> None:
    here = Path(__file__).resolve().parent
    for stem, (name, per_rank) in SCHEDULES.items():
        ops = get_schedule_ops(name, RANKS, MICROBATCHES, num_stages_per_rank=per_rank)
        path = here / f"{stem}_k{RANKS}_m{MICROBATCHES}.csv"
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            for rank in ops:
                writer.writerow(["" if action is None else str(action) for action in rank])
        print(f"{path.name}: {name}, {RANKS} ranks x {per_rank} stages, {MICROBATCHES} micro-batches")


if __name__ == "__main__":
    main()
