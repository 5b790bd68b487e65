"""Write PyTorch's pipeline schedules as action-list CSVs (``_dump_csv``'s format), K = 4, M = 8.

    python configs/schedules/generate.py          # needs torch (2.13 generated the shipped files)
    python configs/schedules/generate.py --check  # aimcsim's native orders against torch, over a grid

One row per rank (accelerator), one cell per step: ``{stage}{type}{microbatch}`` with type F
(forward), B (full backward), I (input-gradient backward) or W (weight-gradient backward), an
empty cell an idle step. The files are what ``torch.distributed.pipelining.
_schedule_visualizer.get_schedule_ops`` returns, written as ``PipelineScheduleMulti._dump_csv``
writes ``pipeline_order``, so PyTorch's ``_load_csv`` reads them back.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from torch.distributed.pipelining._schedule_visualizer import get_schedule_ops

from aimcsim.sim import actions, orders

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


NATIVE = {  # PyTorch class -> aimcsim built-in, as (ranks, stages per rank, micro-batches) -> rows
    "Interleaved1F1B": lambda r, v, m: orders.interleaved_rows(r * v, m, v, zero_bubble=False),
    "InterleavedZeroBubble": lambda r, v, m: orders.interleaved_rows(r * v, m, v, zero_bubble=True),
    "ZBVZeroBubble": lambda r, v, m: orders.zbv_rows(r * v, m),
    "GPipe": lambda r, v, m: orders.gpipe_rows(r, m),
}


def check() -> None:
    """Every native order equals torch's (idle steps dropped) over ranks 1-6, V 2-4, M 1-16."""
    compared = 0
    for name, native in NATIVE.items():
        for ranks in range(1, 7):
            for v in ((1,) if name == "GPipe" else (2,) if name == "ZBVZeroBubble" else (2, 3, 4)):
                for m in range(1, 17):
                    try:
                        ops = get_schedule_ops(name, ranks, m, num_stages_per_rank=v)
                    except (ValueError, AssertionError):
                        continue  # torch refuses this combination (e.g. M not a multiple of the rounds)
                    theirs = [[(a.computation_type.value, a.stage_index, a.microbatch_index) for a in rank
                               if a is not None and a.computation_type.value in "FBIW"] for rank in ops]
                    ours = native(ranks, v, m)
                    assert ours == theirs, (name, ranks, v, m)
                    actions.check_orders(ours, name)
                    compared += 1
    print(f"{compared} (schedule, ranks, V, M) combinations: aimcsim's orders equal torch's")


def main() -> None:
    if "--check" in sys.argv:
        check()
        return
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
