"""Action-list schedules: PyTorch's orders, several stages per accelerator, flush and immediate updates.

The shipped lists in configs/schedules/ were written by torch 2.13 (configs/schedules/generate.py);
the built-in generators must reproduce them, and a run must execute every accelerator's list in
order, each op at the earliest cycle its input and its accelerator allow.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import aimcsim
from aimcsim import trace as tr
from aimcsim.cli import main
from aimcsim.sim import actions, orders
from aimcsim.sim.schedules import SCHEDULES

ROOT = Path(__file__).resolve().parents[1]
LISTS = ROOT / "configs" / "schedules"
SHIPPED = sorted(p.stem for p in LISTS.glob("*.csv"))
M = 8


def config(**pipeline):
    """A tiny 8-layer network on 48 training samples: two mini-batches of 8 micro-batches."""
    return {
        "seed": 1,
        "data": {"name": "synthetic", "n_samples": 60, "n_features": 6, "n_classes": 3},
        "model": {"hidden": [5] * 7, "activation": "tanh"},
        "device": {"type": "ideal"},
        "io": {"forward": {"perfect": True}, "backward": {"perfect": True}},
        "pipeline": pipeline,
        "timing": {"preset": "ideal"},
        "train": {"lr": 0.2, "epochs": 0.4, "eval_every": 1000, "target": None},
    }


def expected_strings(rows, items, rows_for=None):
    """Every accelerator's list, repeated per mini-batch with its micro-batch offset, as PyTorch
    strings (``rows_for(m)``: the order of a shorter last mini-batch)."""
    m = 1 + max(mb for row in rows for _, _, mb in row)
    out = {a: [] for a in range(len(rows))}
    for start in range(0, items, m):
        batch = rows if start + m <= items else rows_for(items - start)
        for a, row in enumerate(batch):
            out[a] += [f"{s}{op}{start + mb}" for op, s, mb in row]
    return out


def test_the_shipped_lists_are_what_the_native_generators_build():
    built = {
        "gpipe_k4_m8": orders.gpipe_rows(4, M),
        "interleaved_1f1b_k4_m8": orders.interleaved_rows(8, M, 2, zero_bubble=False),
        "interleaved_zero_bubble_k4_m8": orders.interleaved_rows(8, M, 2, zero_bubble=True),
        "zbv_zero_bubble_k4_m8": orders.zbv_rows(8, M),
    }
    for stem, rows in built.items():
        listed = actions.read_action_list(LISTS / f"{stem}.csv")
        assert [list(r) for r in listed.rows] == rows, stem
    assert actions.read_action_list(LISTS / "interleaved_1f1b_k4_m8.csv").placement == tuple(orders.round_robin(8, 2))
    assert actions.read_action_list(LISTS / "zbv_zero_bubble_k4_m8.csv").placement == (0, 1, 2, 3, 3, 2, 1, 0)
    dual = actions.read_action_list(LISTS / "dualpipev_k4_m8.csv")  # OVERLAP_F_B cells run in turn
    assert (dual.stages, dual.microbatches, dual.accelerators) == (8, 8, 4)
    assert dual.rows[0][17:19] == (("F", 0, 7), ("B", 7, 3))  # "(0F7;7B3)OVERLAP_F_B"


@pytest.mark.parametrize("update", ["flush", "immediate"])
@pytest.mark.parametrize("timing", ["ideal", "rf25"])
@pytest.mark.parametrize("stem", SHIPPED)
def test_every_accelerator_runs_its_list_in_order(stem, timing, update):
    cfg = config(schedule="actions", actions=str(LISTS / f"{stem}.csv"), update=update)
    cfg["timing"] = {"preset": timing}
    r = aimcsim.simulate(cfg)
    listed = actions.read_action_list(LISTS / f"{stem}.csv")
    items = r.summary["samples"]
    assert r.summary["status"] == "ok" and items == 16
    assert r.action_strings() == expected_strings([list(row) for row in listed.rows], items)
    assert r.summary["accelerators"] == listed.accelerators and r.summary["placement"] == list(listed.placement)
    t = r.trace
    # a W is the pulsed update (immediate) or only hands the pairs to the flush's U (flush)
    weights = t[t.op == "W"]
    updates = t[t.op == "U"]
    if update == "flush":
        assert (weights.end == weights.start).all()
        assert len(updates) == 2 * listed.stages  # one per stage per mini-batch
    elif len(weights):
        assert updates.empty or set(updates.stage) <= set(t[t.op == "B"].stage)
        if timing == "rf25":
            assert (weights.end > weights.start).all()


@pytest.mark.parametrize("schedule,stages,virtual", [
    ("gpipe", 4, None), ("1f1b", 4, None), ("sequential", 3, None),
    ("interleaved_1f1b", 8, 2), ("interleaved_1f1b", 6, 3), ("interleaved_1f1b", 8, 4),
    ("interleaved_zero_bubble", 8, 2), ("interleaved_zero_bubble", 6, 3),
    ("zbv_zero_bubble", 4, 2), ("zbv_zero_bubble", 8, 2),
])
def test_built_in_schedules_run_their_orders_and_are_valid_lists(schedule, stages, virtual):
    pipeline = {"schedule": schedule, "stages": stages, **({"microbatches": M} if SCHEDULES[schedule].minibatches else {})}
    if virtual:
        pipeline["virtual_stages"] = virtual
    r = aimcsim.simulate(config(**pipeline))
    assert r.summary["status"] == "ok"
    rows_for = {"gpipe": lambda m: orders.gpipe_rows(stages, m), "1f1b": lambda m: orders.one_f_one_b_rows(stages, m),
                "sequential": lambda m: orders.sequential_rows(stages, m),
                "interleaved_1f1b": lambda m: orders.interleaved_rows(stages, m, virtual, False),
                "interleaved_zero_bubble": lambda m: orders.interleaved_rows(stages, m, virtual, True),
                "zbv_zero_bubble": lambda m: orders.zbv_rows(stages, m)}[schedule]
    rows = rows_for(M)
    actions.check_orders(rows, schedule)  # the validator accepts every built-in order
    assert r.action_strings() == expected_strings(rows, r.summary["samples"], rows_for)
    assert r.summary["accelerators"] == stages // (virtual or 1)


def test_each_op_starts_at_the_earliest_cycle_a_hand_worked_v_shaped_list(tmp_path):
    """Two accelerators in a V (0 and 3 on row 0, 1 and 2 on row 1), M = 2, ideal clock:
    F = I = B = 1 cycle, W = U = 0, links free. Start cycles worked out by hand."""
    rows = ["0F0,0F1,,3F0,3I0,3W0,3F1,3B1,0I0,0W0,0B1",
            ",1F0,1F1,2F0,2F1,2I0,2W0,1B0,2B1,1B1"]
    path = tmp_path / "v.csv"
    path.write_text("\r\n".join(rows) + "\r\n")
    cfg = config(schedule="actions", actions=str(path))
    cfg["model"]["hidden"] = [5] * 3
    cfg["train"]["epochs"] = 2.5 / 48  # two micro-batches: one mini-batch
    r = aimcsim.simulate(cfg)
    t = r.trace[r.trace.op.isin(["F", "B", "I", "W"])]
    starts = {f"{s}{op}{i}": start for s, op, i, start in zip(t.stage, t.op, t.item, t.start)}
    assert starts == {"0F0": 0, "0F1": 1, "3F0": 4, "3I0": 5, "3W0": 6, "3F1": 6, "3B1": 7, "0I0": 8, "0W0": 9,
                      "0B1": 10, "1F0": 1, "1F1": 2, "2F0": 3, "2F1": 4, "2I0": 6, "2W0": 7, "1B0": 7, "2B1": 8,
                      "1B1": 9}
    assert r.summary["cycles"] == 11
    # stages on one accelerator hand over for free: no link rows between 1 and 2, or 3 and its loss
    links = r.trace[r.trace.op.isin(["TF", "TB"])]
    assert set(zip(links.stage, links.op)) == {(0, "TF"), (2, "TF"), (3, "TB"), (1, "TB")}


@pytest.mark.parametrize("stem", SHIPPED)
def test_every_op_starts_when_its_input_and_its_accelerator_are_free_under_rf25(stem):
    """Generic earliest-start check with real op times and link latencies: an op starts at the
    later of its accelerator's previous op end and its input's arrival (the producing op's
    end, or its link transfer's end)."""
    cfg = config(schedule="actions", actions=str(LISTS / f"{stem}.csv"))
    cfg["timing"] = {"preset": "rf25", "link_latency_cycles": 7}
    t = aimcsim.simulate(cfg).trace
    ends = {(s, op, i): e for s, op, i, e in zip(t.stage, t.op, t.item, t.end)}
    busy = t[t.op.isin(("F", "B", "I", "W", "U", "T"))]
    for acc, ops in busy.groupby("accelerator"):
        free = 0
        for s, op, i, start, end in zip(ops.stage, ops.op, ops.item, ops.start, ops.end):
            ready = free
            if op == "F" and s > 0:
                ready = max(ready, ends.get((s - 1, "TF", i), ends[(s - 1, "F", i)]))
            elif op in ("B", "I"):
                if (s + 1, "TB", i) in ends:
                    ready = max(ready, ends[(s + 1, "TB", i)])
                elif (s + 1, "B", i) in ends or (s + 1, "I", i) in ends:
                    ready = max(ready, ends.get((s + 1, "B", i), ends.get((s + 1, "I", i))))
                else:
                    ready = max(ready, ends[(s, "F", i)])  # the last stage: its own forward's loss gradient
            assert start == ready, (stem, acc, f"{s}{op}{i}")
            free = end


@pytest.mark.parametrize("source", [("actions", stem) for stem in SHIPPED] + [
    ("interleaved_1f1b", 4), ("interleaved_1f1b", 6), ("interleaved_zero_bubble", 4),
    ("interleaved_zero_bubble", 8), ("zbv_zero_bubble", 4), ("zbv_zero_bubble", 6), ("1f1b", 4)])
def test_flush_gives_gpipe_arithmetic_exactly(source):
    """On an ideal device with exact reads every list with update: flush is mini-batch SGD:
    the final weights and loss equal gpipe's bit for bit (the schedule changes time, not arithmetic)."""
    schedule, arg = source
    if schedule == "actions":
        pipeline = {"schedule": "actions", "actions": str(LISTS / f"{arg}.csv")}
        stages = actions.read_action_list(LISTS / f"{arg}.csv").stages
    else:
        pipeline = {"schedule": schedule, "stages": arg, "microbatches": M}
        stages = arg
    cfg = config(**pipeline, update="flush")
    cfg["train"]["eval_every"] = 8  # after each mini-batch: an evaluation sees every stage updated
    got = aimcsim.simulate(cfg)
    reference = config(schedule="gpipe", stages=stages, microbatches=M)
    reference["train"]["eval_every"] = 8
    reference = aimcsim.simulate(reference)
    assert got.summary["samples"] == reference.summary["samples"] == 16
    for a, b in zip(got.weights(), reference.weights()):
        np.testing.assert_array_equal(a, b)
    assert got.summary["final_train_loss"] == reference.summary["final_train_loss"]
    np.testing.assert_array_equal(got.metrics["train_loss"], reference.metrics["train_loss"])


def test_immediate_updates_make_staleness_emerge_and_the_statistics_follow_the_trace():
    r = aimcsim.simulate(config(schedule="zbv_zero_bubble", stages=8, microbatches=M, update="immediate"))
    t, s = r.trace, r.summary
    assert s["staleness"] == tr.max_staleness(t, 8)  # counted at I (the input-gradient backward)
    assert max(s["staleness"]) > 0 and s["staleness"][-1] == 0  # the last stage's I follows its F at once
    assert s["accelerator_staleness"] == [max(s["staleness"][k] for k in (a, 7 - a)) for a in range(4)]
    np.testing.assert_allclose(s["accelerator_utilization"], tr.utilization(t, 4, by="accelerator"))
    np.testing.assert_allclose(s["utilization"], tr.utilization(t, 8))
    assert s["bubble_fraction"] == pytest.approx(1 - np.mean(s["accelerator_utilization"]))
    flushed = aimcsim.simulate(config(schedule="zbv_zero_bubble", stages=8, microbatches=M))
    assert flushed.summary["staleness"] == [0] * 8 and flushed.summary["update"] == "flush"


def test_static_energy_counts_accelerators_not_stages():
    cfg = config(schedule="interleaved_1f1b", stages=8, microbatches=M)
    cfg["energy"] = {"preset": "isaac32"}
    s = aimcsim.simulate(cfg).summary
    clock_ghz = 1.0
    assert s["accelerators"] == 4
    assert s["energy_by_op"]["static"] == pytest.approx(3.3 * 4 * s["cycles"] / clock_ghz)


# ------------------------------------------------------------------------ bad input
def run_cli(tmp_path, capsys, pipeline, **extra):
    cfg = config(**pipeline)
    cfg.update(extra)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert not (tmp_path / "out").exists()
    return code, err


BAD_LISTS = {
    "malformed": (["0F0,0X1", "1F0"], "row 0, step 1: '0X1' is not an action"),
    "missing forward": (["0F0,0B0", "1F0,1B0,1B1"], "row 1, step 2: '1B1' comes before its forward 1F1"),
    "backward first": (["0F0,0B0", "1B0,1F0"], "row 1, step 0: '1B0' comes before its forward 1F0 (it comes at step 1)"),
    "no forward at all": (["0F0,0F1,0B0,0B1", "1F0,1B0"], "row 1: stage 1 has no forward of micro-batch 1 (1F1)"),
    "stage without actions": (["0F0,0B0", "2F0,2B0"], "stage 1 has no actions (the rows hold stages 0, 2)"),
    # row 0 holds stages 0 and 2: its 0B0 waits for 1B0, which waits for 2B0 behind 0B0
    "deadlock": (["0F0,0B0,2F0,2B0", "1F0,1B0"],
                 "row 0, step 1: '0B0' waits for 1B0 or 1I0, which cannot run before it (the list deadlocks)"),
    "cross deadlock": (["0F0,0B0,0F1,0B1", "1F1,1F0,1B0,1B1"],
                       "row 0, step 1: '0B0' waits for 1B0 or 1I0, which cannot run before it (the list deadlocks)"),
    "W before I": (["0F0,0W0,0I0", "1F0,1B0"], "row 0, step 1: '0W0' comes before its input-gradient backward 0I0"),
    "I without W": (["0F0,0I0", "1F0,1B0"], "row 0, step 1: '0I0' has no weight part 0W0"),
    "stage on two rows": (["0F0,0B0,1F0", "1F0,1B0"], "row 1, step 0: '1F0' puts stage 1 on a second accelerator"),
    "repeated": (["0F0,0F0,0B0", "1F0,1B0"], "row 0, step 1: '0F0' repeats an action (step 0)"),
    "empty row": (["0F0,0B0", ",,", "1F0,1B0"], "row 1: has no actions"),
    # torch 2.13's Schedule1F1B IR on its last rank (K = 2, M = 2): starts at micro-batch 1, ends at M
    "torch 1F1B": (["0F0,0F1,0B0,0B1", ",1F1,1B0,1F2,1B1"], "row 1, step 2: '1B0' comes before its forward 1F0"),
}


@pytest.mark.parametrize("case", sorted(BAD_LISTS))
def test_a_bad_list_exits_2_with_one_line_naming_row_step_and_action(tmp_path, capsys, case):
    rows, message = BAD_LISTS[case]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(rows) + "\n")
    code, err = run_cli(tmp_path, capsys, {"schedule": "actions", "actions": str(path)})
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: pipeline.actions: {path}") and message in err[0], err[0]


def test_torch_communication_actions_are_accepted_and_ignored(tmp_path):
    path = tmp_path / "comms.csv"
    path.write_text("0F0,0SEND_F0,0RECV_B0,0B0,0REDUCE_GRAD\n1RECV_F0,1F0,1B0,1SEND_B0,1UNSHARD,1RESHARD\n")
    listed = actions.read_action_list(path)
    assert [list(r) for r in listed.rows] == [[("F", 0, 0), ("B", 0, 0)], [("F", 1, 0), ("B", 1, 0)]]


@pytest.mark.parametrize("pipeline,message", [
    ({"schedule": "actions"}, "pipeline.actions: schedule actions needs the path"),
    ({"schedule": "actions", "actions": "nowhere.csv"}, "nowhere.csv' (a PyTorch _dump_csv action list"),
    ({"schedule": "actions", "actions": str(LISTS / "gpipe_k4_m8.csv"), "stages": 3},
     "pipeline.stages: 3, but the action list"),
    ({"schedule": "actions", "actions": str(LISTS / "gpipe_k4_m8.csv"), "microbatches": 4},
     "pipeline.microbatches: 4, but the action list"),
    ({"schedule": "actions", "actions": str(LISTS / "gpipe_k4_m8.csv"), "virtual_stages": 2},
     "pipeline.virtual_stages: with schedule actions the rows of the list place the stages"),
    ({"schedule": "gpipe", "stages": 2, "actions": str(LISTS / "gpipe_k4_m8.csv")},
     "pipeline.actions: only schedule actions reads an action list"),
    ({"schedule": "async", "stages": 2, "update": "flush"}, "pipeline.update: schedule async updates after every"),
    ({"schedule": "gpipe", "stages": 2, "update": "later"}, "pipeline.update: Input should be 'flush' or 'immediate'"),
    ({"schedule": "gpipe", "stages": 2, "virtual_stages": 2}, "pipeline.virtual_stages: schedule gpipe holds one"),
    ({"schedule": "zbv_zero_bubble", "stages": 6, "virtual_stages": 3},
     "pipeline.virtual_stages: zbv_zero_bubble places exactly 2 stages per accelerator, got 3"),
    ({"schedule": "interleaved_1f1b", "stages": 5}, "pipeline.stages: 5 stages do not divide into 2 per accelerator"),
    ({"schedule": "interleaved_1f1b", "stages": 4, "microbatches": 5},
     "pipeline.microbatches: interleaved_1f1b on 2 accelerators needs a multiple of 2 micro-batches"),
])
def test_bad_schedule_settings_exit_2_with_one_line(tmp_path, capsys, pipeline, message):
    code, err = run_cli(tmp_path, capsys, pipeline)
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_a_run_shorter_than_one_mini_batch_of_a_list_is_refused(tmp_path, capsys):
    code, err = run_cli(tmp_path, capsys, {"schedule": "actions", "actions": str(LISTS / "gpipe_k4_m8.csv")},
                        train={"lr": 0.2, "epochs": 0.1, "eval_every": 1000, "target": None})
    assert code == 2 and len(err) == 1 and "fewer than one mini-batch of 8" in err[0], err


def test_the_shipped_zero_bubble_config_runs(tmp_path):
    out = tmp_path / "zb"
    assert main(["run", str(ROOT / "configs" / "zero_bubble.yaml"), "--set", "train.epochs=0.05", "--out", str(out),
                 "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["accelerators"] == 4 and summary["stages"] == 8
    trace = pd.read_csv(out / "trace.csv")
    assert {"I", "W"} <= set(trace.op) and list(trace.columns)[:3] == ["stage", "accelerator", "op"]


def test_a_trace_from_before_the_accelerator_column_still_reads_and_plots(tmp_path):
    r = aimcsim.simulate(config(schedule="gpipe", stages=2, microbatches=M), out=tmp_path / "run")
    old = r.trace.drop(columns="accelerator")
    old.to_csv(tmp_path / "run" / "trace.csv", index=False)
    back = tr.read_trace(tmp_path / "run" / "trace.csv")
    assert list(back.columns) == list(r.trace.columns) and (back.accelerator == back.stage).all()
    assert main(["plot", str(tmp_path / "run")]) == 0 and (tmp_path / "run" / "timeline.png").is_file()


def test_a_compound_device_transfers_on_the_accelerator_of_its_stage():
    cfg = config(schedule="zbv_zero_bubble", stages=4, microbatches=4, update="immediate")
    cfg["model"]["hidden"] = [5] * 3
    cfg["device"] = {"type": "transfer_compound", "transfer_every": 2,
                     "unit_cell_devices": [{"type": "constant_step"}, {"type": "constant_step"}]}
    cfg["io"] = {}
    r = aimcsim.simulate(cfg)
    t = r.trace
    transfers = t[t.op == "T"]
    assert r.summary["status"] == "ok" and len(transfers) and sum(r.summary["transfers"]) == len(transfers)
    placement = r.summary["placement"]
    assert (transfers.accelerator == transfers.stage.map(lambda s: placement[s])).all()
    # each transfer follows the W (the immediate update) that ran it, on the same stage
    for stage, acc, item, start in zip(transfers.stage, transfers.accelerator, transfers.item, transfers.start):
        w = t[(t.op == "W") & (t.stage == stage) & (t.item == item)]
        assert len(w) == 1 and int(w.end.iloc[0]) == start


def test_a_sweep_over_lists_and_schedules_derives_stages_per_point(tmp_path):
    """What a schedule derives (stages and micro-batches from a list, virtual stages) is not the
    user's setting: each point of a sweep derives it anew."""
    from aimcsim import sweep
    base = config(schedule="actions", actions=str(LISTS / "gpipe_k4_m8.csv"))
    table = sweep(base, {"pipeline.actions": [str(LISTS / "gpipe_k4_m8.csv"), str(LISTS / "zbv_zero_bubble_k4_m8.csv")]},
                  out=tmp_path / "lists", workers=1, quiet=True)
    assert list(table["stages"]) == [4, 8] and list(table["accelerators"]) == [4, 4]
    table = sweep(config(schedule="interleaved_1f1b", stages=4, microbatches=M),
                  {"pipeline.schedule": ["interleaved_1f1b", "gpipe"]}, out=tmp_path / "schedules", workers=1, quiet=True)
    assert list(table["status"]) == ["ok", "ok"] and list(table["accelerators"]) == [2, 4]
