"""Pipeline timing under the ideal clock and rf25, staleness, and PyTorch op orders."""

import numpy as np
import pytest

import aimcsim
from aimcsim import trace as tr
from aimcsim.sim.schedules import SCHEDULES

TINY_DATA = {"name": "synthetic", "n_samples": 100, "n_features": 6, "n_classes": 3, "test_fraction": 0.2}


def run(schedule, stages, microbatches=4, epochs=1.0, hidden=(8, 8, 8, 8, 8, 8, 8), timing=None, **extra):
    config = {
        "data": TINY_DATA,
        "model": {"hidden": list(hidden), "activation": "tanh"},
        "pipeline": {"schedule": schedule, "stages": stages,
                     **({"microbatches": microbatches} if SCHEDULES[schedule].minibatches else {})},
        "timing": timing or {"preset": "ideal"},
        "train": {"lr": 0.05, "epochs": epochs, "eval_every": 10_000, "target": None},
        **extra,
    }
    return aimcsim.simulate(config)


@pytest.mark.parametrize("k,m", [(1, 1), (2, 4), (3, 2), (4, 8), (8, 4)])
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_synchronous_mini_batch_takes_2_m_plus_k_minus_1_cycles(schedule, k, m):
    r = run(schedule, k, m)
    t = r.trace
    minibatches = r.summary["samples"] // m
    assert r.summary["cycles"] == minibatches * 2 * (m + k - 1)
    # every mini-batch ends with the first stage's update; consecutive ends are 2(M+K-1) apart
    ends = np.sort(t[(t.op == "U") & (t.stage == 0)]["end"].to_numpy())
    assert np.all(np.diff(ends) == 2 * (m + k - 1))
    np.testing.assert_allclose(r.summary["utilization"], [m / (m + k - 1)] * k)
    assert r.summary["staleness"] == [0] * k


@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
def test_async_staleness_is_k_minus_k_and_utilization_tends_to_one(k):
    short = run("async", k, epochs=0.25)
    long = run("async", k, epochs=2.0)
    assert long.summary["staleness"] == [k - 1 - s for s in range(k)]  # K - k, stages 1-indexed
    st = tr.staleness(long.trace, k)
    for s in range(k):  # every item after the warm-up sees exactly K - k newer updates
        per_item = st[st.stage == s].sort_values("item")["staleness"].to_numpy()
        assert np.all(per_item[k:] == k - 1 - s)
    u_short, u_long = np.mean(short.summary["utilization"]), np.mean(long.summary["utilization"])
    n = long.summary["samples"]
    # fill and drain cost about K cycles each at every stage: utilization = 2N / (2N + ~2K)
    assert u_long >= 2 * n / (2 * n + 2 * k) - 1e-9
    assert u_long >= u_short
    assert long.summary["cycles"] <= 2 * n + 2 * k


def test_sequential_has_no_pipelining():
    k = 3
    r = run("sequential", k)
    n = r.summary["samples"]
    assert r.summary["cycles"] == n * 2 * k
    assert r.summary["staleness"] == [0] * k
    np.testing.assert_allclose(r.summary["utilization"], [1 / k] * k)


# PyTorch's torch.distributed.pipelining op orders, written out by hand (torch is not a dependency):
# ScheduleGPipe: all forwards, then all backwards. Schedule1F1B: min(M, K - k) warm-up forwards,
# then one backward and one forward alternately, then the remaining backwards.
PYTORCH_GPIPE_K3_M4 = {
    0: "0F0 0F1 0F2 0F3 0B0 0B1 0B2 0B3",
    1: "1F0 1F1 1F2 1F3 1B0 1B1 1B2 1B3",
    2: "2F0 2F1 2F2 2F3 2B0 2B1 2B2 2B3",
}
PYTORCH_1F1B_K4_M8 = {
    0: "0F0 0F1 0F2 0F3 0B0 0F4 0B1 0F5 0B2 0F6 0B3 0F7 0B4 0B5 0B6 0B7",
    1: "1F0 1F1 1F2 1B0 1F3 1B1 1F4 1B2 1F5 1B3 1F6 1B4 1F7 1B5 1B6 1B7",
    2: "2F0 2F1 2B0 2F2 2B1 2F3 2B2 2F4 2B3 2F5 2B4 2F6 2B5 2F7 2B6 2B7",
    3: "3F0 3B0 3F1 3B1 3F2 3B2 3F3 3B3 3F4 3B4 3F5 3B5 3F6 3B6 3F7 3B7",
}
PYTORCH_1F1B_K4_M2 = {
    0: "0F0 0F1 0B0 0B1",
    1: "1F0 1F1 1B0 1B1",
    2: "2F0 2F1 2B0 2B1",
    3: "3F0 3B0 3F1 3B1",
}


@pytest.mark.parametrize("schedule,k,m,expected", [
    ("gpipe", 3, 4, PYTORCH_GPIPE_K3_M4),
    ("1f1b", 4, 8, PYTORCH_1F1B_K4_M8),
    ("1f1b", 4, 2, PYTORCH_1F1B_K4_M2),
])
def test_op_orders_equal_pytorch_schedules(schedule, k, m, expected):
    r = run(schedule, k, m, epochs=0.3)
    first = r.trace[r.trace["item"] < m]  # the first mini-batch
    actions = tr.action_strings(first)
    assert {s: " ".join(a) for s, a in actions.items()} == expected


def test_rf25_update_heavy_stage_sets_the_async_throughput():
    """Async steady state: one micro-batch per max_k (t_F + t_B + t_U) cycles, measured on the trace."""
    timing = {"preset": "rf25"}
    update = {"update_bl_management": False, "desired_bl": 31}  # fixed BL: constant op times
    r = run("async", 2, hidden=(8, 8), timing=timing, update=update,
            pipeline={"schedule": "async", "stages": 2, "partition": [2, 1]}, epochs=1.0)
    t = r.trace
    per_stage = []
    for s in range(2):
        ops = t[t.stage == s]
        dur = {op: (ops[ops.op == op]["end"] - ops[ops.op == op]["start"]).mean() for op in "FBU"}
        per_stage.append(dur["F"] + dur["B"] + dur["U"])
    # stage 0 holds two tiles: two reads forward, one backward (its first layer needs none), two updates
    assert per_stage[0] == 2 * 40 + 40 + 2 * 161
    assert per_stage[1] == 40 + 40 + 161
    period = max(per_stage)
    ends = np.sort(t[(t.op == "U") & (t.stage == 0)]["end"].to_numpy())
    steady = ends[6:-6]
    steady = steady[: 1 + 2 * ((len(steady) - 1) // 2)]  # whole periods of the 2-item pattern
    # throughput = 1 / max_k (t_F + t_B + t_U): the steady state completes one micro-batch per period
    assert (steady[-1] - steady[0]) / (len(steady) - 1) == period
    assert r.summary["utilization"][0] > 0.98 and r.summary["utilization"][1] < 0.6


def test_async_never_leaves_an_arrived_error_waiting_on_an_idle_stage():
    """A stage waiting for slow activations still takes an error that arrives sooner.

    Wide activations (64 values) and narrow errors (4 values) over an 8-bit link: stage 1
    waits 64 cycles for its next forward's input while stage 2's error for item 0 arrives
    after 4. ``async`` prefers a ready B, so every B must start when its error arrives or
    while the stage is busy; an idle stage never lets an arrived error wait.
    """
    r = run("async", 3, epochs=0.2, hidden=(64, 4),
            timing={"preset": "ideal", "link_bits_per_cycle": 8, "bits_per_element": 8})
    t = r.trace
    errors = t[t.op == "TB"]
    backwards = t[t.op == "B"]
    compute = t[t.op.isin(["F", "B", "U"])]
    checked = 0
    for sender, item, arrival in zip(errors.stage, errors.item, errors.end):
        stage = sender - 1
        start = int(backwards[(backwards.stage == stage) & (backwards.item == item)].start.iloc[0])
        assert start >= arrival
        ops = compute[(compute.stage == stage) & (compute.end > arrival) & (compute.start < start)]
        busy = set()
        for a, b in zip(ops.start, ops.end):
            busy.update(range(max(a, arrival), min(b, start)))
        assert busy == set(range(arrival, start)), f"stage {stage} idled while error {item} waited"
        checked += 1
    assert checked >= 20
    # the scenario happened: stage 1 took item 0's error before its next forward's input came
    f1 = t[(t.stage == 1) & (t.op == "F")].sort_values("start")
    b0 = backwards[(backwards.stage == 1) & (backwards.item == 0)].start.iloc[0]
    assert f1.start.iloc[0] < b0 < f1.start.iloc[1]


def test_links_add_latency_and_serialisation_time():
    free = run("gpipe", 2, 2, epochs=0.2, timing={"preset": "ideal"})
    slow = run("gpipe", 2, 2, epochs=0.2, timing={"preset": "ideal", "link_latency_cycles": 3,
                                                   "link_bits_per_cycle": 8, "bits_per_element": 8})
    t = slow.trace
    transfers = t[t.op.isin(["TF", "TB"])]
    # a hidden width of 8 values at 8 bits over 8 bits/cycle: 3 + 8 cycles per transfer
    assert set((transfers["end"] - transfers["start"]).unique()) == {11}
    assert slow.summary["cycles"] > free.summary["cycles"]
    per_minibatch = slow.summary["cycles"] / (slow.summary["samples"] // 2)
    # by hand, K = 2, M = 2: F0 [0,1) F1 [1,2) | TF0 [1,12) TF1 [12,23) (one transfer at a time)
    # | stage 1: F0 [12,13) F1 [23,24) B0 [24,25) B1 [25,26) | TB0 [25,36) TB1 [36,47)
    # | stage 0: B0 [36,37) B1 [47,48), U (0 cycles) -> 48 cycles per mini-batch
    assert per_minibatch == 48
