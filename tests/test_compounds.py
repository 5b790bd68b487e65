"""Compound devices: Tiki-Taka, TTv2, c-TTv2, AGAD and mixed precision, alone and in pipelines.

Exact cases are checked against independent numpy loops written here from aihwkit's rules;
random behaviour (choppers) against binomial tolerances from the counts, seeds fixed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import aimcsim
from aimcsim import cost, ops
from aimcsim.cli import main
from aimcsim.compounds import parse_device
from aimcsim.crossbar import make_crossbar, make_tile
from aimcsim.sim.schedules import SCHEDULES

IDEAL = {"type": "ideal"}
SOFT = {"type": "soft_bounds"}
PERFECT = {"perfect": True}
# a pulsed device whose every pulse moves it by exactly dw_min (no variation, far bounds)
EXACT = {"type": "constant_step", "dw_min": 0.01, "dw_min_dtod": 0.0, "dw_min_std": 0.0, "up_down_dtod": 0.0,
         "w_max": 100.0, "w_min": -100.0, "w_max_dtod": 0.0, "w_min_dtod": 0.0}
# writes that fire exactly the requested whole pulses (at most 5 per entry)
EXACT_WRITES = {"pulse_type": "deterministic_implicit", "desired_bl": 5, "update_management": True,
                "update_bl_management": False}


def tiki_taka(out_size=3, in_size=4, **fields):
    device = {"type": "transfer_compound", "unit_cell_devices": [IDEAL, IDEAL], "transfer_forward": PERFECT, **fields}
    return make_tile(out_size, in_size, device=device, forward_io=PERFECT, backward_io=PERFECT, seed=1)


def reference_tiki_taka(steps, out_size, in_size, lr, every_rows, n_reads=1, fast_lr=1.0, transfer_lr=1.0):
    """aihwkit's Tiki-Taka on exact arrays: A -= fast_lr lr d x^T per vector; after every
    ``every_rows(rows)``-th vector, C[:, i] += transfer_lr lr A[:, i] for the next n_reads columns."""
    a = np.zeros((out_size, in_size))
    c = np.zeros((out_size, in_size))
    vectors, column = 0, 0
    for xs, ds in steps:
        every = every_rows(len(xs))
        for x, d in zip(xs, ds):
            a -= fast_lr * lr * np.outer(d, x)
            vectors += 1
            if vectors % every == 0:
                for _ in range(n_reads):
                    c[:, column] += transfer_lr * lr * a[:, column]
                    column = (column + 1) % in_size
    return a, c


def random_steps(rng, calls, rows, out_size=3, in_size=4):
    return [(rng.uniform(-1, 1, (rows, in_size)).astype(np.float32), rng.uniform(-1, 1, (rows, out_size)).astype(np.float32))
            for _ in range(calls)]


@pytest.mark.parametrize("fields,rows,every_rows", [
    ({}, 1, lambda m: m),                                                  # once per update call
    ({"units_in_mbatch": True, "transfer_every": 2.0}, 3, lambda m: 2 * m),  # every second call
    ({"units_in_mbatch": False, "transfer_every": 2.0}, 3, lambda m: 2),     # every second vector, mid-call too
    ({"units_in_mbatch": False, "n_reads_per_transfer": 3}, 2, lambda m: 1),  # three columns, wrapping at the edge
    ({"fast_lr": 0.5, "transfer_lr": 2.0}, 1, lambda m: m),
])
def test_tiki_taka_moves_transfer_lr_scaled_columns_of_a_into_c(fields, rows, every_rows):
    tile = tiki_taka(**fields)
    steps = random_steps(np.random.default_rng(4), 7, rows)
    for xs, ds in steps:
        tile.update(xs, ds, 0.1)
    a, c = reference_tiki_taka(steps, 3, 4, 0.1, every_rows, fields.get("n_reads_per_transfer", 1),
                               fields.get("fast_lr", 1.0), fields.get("transfer_lr", 1.0))
    arrays = tile.arrays()
    np.testing.assert_allclose(arrays["A"], a, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(arrays["C"], c, rtol=1e-5, atol=1e-7)


def test_row_transfers_move_rows_of_a_into_c():
    tile = tiki_taka(transfer_columns=False)
    steps = random_steps(np.random.default_rng(2), 5, 1)
    a, c = np.zeros((3, 4)), np.zeros((3, 4))
    for k, (xs, ds) in enumerate(steps):
        tile.update(xs, ds, 0.1)
        a -= 0.1 * np.outer(ds[0], xs[0])
        c[k % 3, :] += 0.1 * a[k % 3, :]  # rows in order, wrapping at the 3 rows
    np.testing.assert_allclose(tile.arrays()["C"], c, rtol=1e-5, atol=1e-7)
    assert tile.last_transfer.dac == 3 and tile.last_transfer.adc == 4  # a transposed read of one row


def test_transfers_come_in_the_period_aihwkit_counts():
    tile = tiki_taka(transfer_every=2.0)  # in mini-batches: every second update call
    ran = []
    for xs, ds in random_steps(np.random.default_rng(0), 6, 2):
        tile.update(xs, ds, 0.1)
        ran.append(tile.last_transfer is not None)
    assert ran == [False, True] * 3
    vectors = tiki_taka(transfer_every=3.0, units_in_mbatch=False)  # every third vector
    counts = []
    for xs, ds in random_steps(np.random.default_rng(0), 4, 2):
        vectors.update(xs, ds, 0.1)
        counts.append(0 if vectors.last_transfer is None else vectors.last_transfer.passes)
    assert counts == [0, 1, 1, 0]  # after vectors 3 (second call) and 6 (third call)


@pytest.mark.parametrize("fields,ga,gc", [({}, 0.0, 1.0), ({"gamma": 0.5}, 0.5, 1.0), ({"gamma_vec": [0.3, 2.0]}, 0.3, 2.0)])
def test_reads_see_gamma_weighted_arrays_and_c_alone_at_gamma_zero(fields, ga, gc):
    x = np.array([0.3, -0.2, 0.5, 0.1], np.float32)
    rng = np.random.default_rng(1)
    tile = tiki_taka(**fields)
    w0 = rng.uniform(-0.5, 0.5, (3, 4)).astype(np.float32)
    tile.set_weights(w0)
    np.testing.assert_allclose(tile.get_weights(), w0, rtol=1e-6)  # A = 0, C = W / gamma_C
    np.testing.assert_allclose(tile.arrays()["C"], w0 / gc, rtol=1e-6)
    for xs, ds in random_steps(rng, 3, 1):
        tile.update(xs, ds, 0.1)
    arrays = tile.arrays()
    expected = ga * arrays["A"] + gc * arrays["C"]
    np.testing.assert_allclose(tile.forward(x), expected @ x, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(tile.backward(np.ones(3, np.float32)), expected.sum(axis=0), rtol=1e-5, atol=1e-7)
    assert tile.update_changes_weights == (ga != 0.0)


@pytest.mark.parametrize("forget", [True, False])
def test_buffered_threshold_fires_whole_pulses_and_keeps_the_remainder(forget):
    device = {"type": "buffered_transfer_compound", "unit_cell_devices": [EXACT, EXACT], "transfer_forward": PERFECT,
              "transfer_update": EXACT_WRITES, "scale_transfer_lr": False, "transfer_lr": 1.0, "thres_scale": 2.0,
              "momentum": 0.25, "forget_buffer": forget}
    tile = make_tile(6, 2, device=device, forward_io=PERFECT, backward_io=PERFECT, seed=0)
    thr = 2.0 * 0.01
    column = np.array([-3.7, -0.5, 0.2, 1.0, 2.9, 7.5]) * thr  # H / thr after one read
    a0 = np.stack([column, np.zeros(6)], axis=1).astype(np.float32)
    tile.fast.set_weights(a0)
    zeros = (np.zeros((1, 2), np.float32), np.zeros((1, 6), np.float32))
    tile.update(*zeros, 1.0)  # no pulses on A (x = 0); one transfer of column 0
    h = a0[:, 0].astype(np.float32)
    n = np.clip(np.trunc(h / np.float32(thr)), -5, 5)
    np.testing.assert_array_equal(n, [-3, 0, 0, 1, 2, 5])
    kept = np.where(n != 0, h * np.float32(0.25), h) if forget else h - np.float32(0.75) * n * np.float32(thr)
    arrays = tile.arrays()
    np.testing.assert_allclose(arrays["H"][0], kept, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(arrays["C"][:, 0], n * 0.01, rtol=1e-5, atol=1e-9)  # step 1 x dw_min per pulse
    assert tile.last_transfer.coincidences == int(np.abs(n).sum())
    tile.update(*zeros, 1.0)  # column 1 holds nothing: no write
    assert tile.last_transfer.coincidences == 0 and tile.last_transfer.passes == 1


def test_mixed_precision_fires_trunc_chi_over_eps_pulses_and_keeps_the_rest():
    device = {"type": "mixed_precision_compound", "device": EXACT, "transfer_lr": 1.0}
    update = {"pulse_type": "deterministic_implicit", "desired_bl": 31}
    tile = make_tile(3, 4, device=device, update=update, forward_io=PERFECT, backward_io=PERFECT, seed=2)
    rng = np.random.default_rng(7)
    w0 = rng.uniform(-0.5, 0.5, (3, 4)).astype(np.float32)
    tile.set_weights(w0)
    chi = np.zeros((3, 4), np.float32)
    w = w0.astype(np.float64)
    for call in range(3):
        x = rng.uniform(-1, 1, (1, 4)).astype(np.float32)
        d = rng.uniform(-1, 1, (1, 3)).astype(np.float32)
        tile.update(x, d, 0.05)
        chi += np.float32(0.05) * np.outer(d[0], x[0]).astype(np.float32)
        if call == 0:
            assert tile.last_transfer is None  # aihwkit counts the first vector as index 0: no transfer
            continue
        n = np.trunc(chi / np.float32(0.01))
        chi = chi - n * np.float32(0.01)
        w -= 0.01 * n
        assert tile.last_transfer is not None and tile.last_transfer.coincidences == int(np.abs(n).sum())
    np.testing.assert_allclose(tile.chi, chi, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(tile.get_weights(), w, rtol=1e-5, atol=1e-6)
    assert not tile.update_changes_weights


def _flips(tile, calls: int, key: str) -> np.ndarray:
    """Per entry, how often the chopper sign changed over ``calls`` one-vector updates."""
    rng = np.random.default_rng(3)
    before = tile.arrays()[key]
    flips = np.zeros_like(before)
    for _ in range(calls):
        tile.update(rng.uniform(-1, 1, (1, tile.in_size)).astype(np.float32),
                    rng.uniform(-1, 1, (1, tile.out_size)).astype(np.float32), 0.01)
        after = tile.arrays()[key]
        flips += after != before
        before = after
    return flips


def test_in_choppers_flip_at_in_chop_prob():
    p, calls = 0.2, 3000
    tile = make_tile(3, 5, device={"type": "chopped_transfer_compound", "unit_cell_devices": [SOFT, SOFT],
                                   "in_chop_prob": p}, seed=5)
    total = _flips(tile, calls, "in_chopper").sum()  # one read, so one chance to flip, per vector
    assert abs(total - calls * p) < 4 * math.sqrt(calls * p * (1 - p))


def test_regular_in_choppers_flip_every_period_of_sweeps():
    tile = make_tile(3, 5, device={"type": "chopped_transfer_compound", "unit_cell_devices": [SOFT, SOFT],
                                   "in_chop_prob": 0.25, "in_chop_random": False}, seed=5)
    flips = _flips(tile, 5 * 12, "in_chopper")  # 12 sweeps over the 5 columns: period 4 sweeps
    np.testing.assert_array_equal(flips, [3] * 5)


def test_out_choppers_flip_at_out_chop_prob_after_every_sweep():
    p, sweeps = 0.3, 400
    tile = make_tile(6, 2, device={"type": "chopped_transfer_compound", "unit_cell_devices": [SOFT, SOFT],
                                   "in_chop_prob": 0.0, "out_chop_prob": p}, seed=6)
    total = _flips(tile, 2 * sweeps, "out_chopper").sum()
    trials = sweeps * 6
    assert abs(total - trials * p) < 4 * math.sqrt(trials * p * (1 - p))


def test_agad_choppers_switch_regularly_and_c_waits_for_the_first_periods():
    device = {"type": "dynamic_transfer_compound", "unit_cell_devices": [SOFT, SOFT], "in_chop_prob": 0.5}
    tile = make_tile(3, 2, device=device, seed=8)  # a chopper period of 2 reads per column
    np.testing.assert_array_equal(_flips(tile, 2 * 6, "in_chopper"), [3, 3])
    tile = make_tile(3, 2, device=device, seed=8)
    rng = np.random.default_rng(0)
    written = []
    for _ in range(40):
        tile.update(rng.uniform(-1, 1, (1, 2)).astype(np.float32), rng.uniform(-1, 1, (1, 3)).astype(np.float32), 0.05)
        written.append(tile.last_transfer.coincidences)
    assert sum(written[:6]) == 0 and sum(written) > 0  # aihwkit writes C only after the first 2 + 1 sweeps


def test_a_run_is_bit_identical_for_a_seed():
    cfg = {"data": {"name": "digits"}, "model": {"hidden": [16]},
           "device": {"type": "chopped_transfer_compound", "unit_cell_devices": [SOFT, SOFT], "out_chop_prob": 0.1},
           "pipeline": {"schedule": "async", "stages": 2}, "train": {"epochs": 0.2, "eval_every": 100}}
    first, second = aimcsim.simulate(cfg), aimcsim.simulate(cfg)
    assert first.trace.equals(second.trace) and first.metrics.drop(columns="wall_seconds", errors="ignore").equals(
        second.metrics.drop(columns="wall_seconds", errors="ignore"))
    third = aimcsim.simulate({**cfg, "seed": 1})
    assert not np.array_equal(first.weights()[0], third.weights()[0])


# ------------------------------------------------------------------ in the pipeline
MLP = {"data": {"name": "digits"}, "model": {"hidden": [16, 16], "activation": "tanh"},
       "device": {"type": "transfer_compound", "unit_cell_devices": [SOFT, SOFT]},
       "train": {"lr": 0.05, "epochs": 0.15, "eval_every": 100, "target": None}}


@pytest.mark.parametrize("schedule", ["sequential", "gpipe", "1f1b", "async"])
def test_every_schedule_runs_a_compound_with_transfers_as_their_own_op(schedule):
    cfg = {**MLP, "pipeline": {"schedule": schedule, "stages": 3, **({"microbatches": 4} if SCHEDULES[schedule].minibatches else {})}, "timing": {"preset": "rf25"}}
    r = aimcsim.simulate(cfg)
    assert r.summary["status"] == "ok"
    trace = r.trace
    updates, transfers = trace[trace["op"] == "U"], trace[trace["op"] == "T"]
    assert len(transfers) == len(updates) > 0  # Tiki-Taka transfers after every update call
    follow = updates.merge(transfers, on=["stage", "item"], suffixes=("_u", "_t"))
    assert len(follow) == len(transfers) and (follow["start_t"] == follow["end_u"]).all()
    assert (transfers["end"] > transfers["start"]).all()  # rf25 charges the reads and writes
    assert r.summary["transfers"] == [int((transfers["stage"] == k).sum()) for k in range(3)]
    for k in range(3):  # gamma = 0: only transfers change what forwards read
        stage = trace[trace["stage"] == k]
        assert stage["version"].max() == (stage["op"] == "T").sum() - 1
        busy = stage[stage["op"].isin(ops.busy_ops())]
        assert r.summary["utilization"][k] == pytest.approx((busy["end"] - busy["start"]).sum() / r.summary["cycles"])


def test_async_staleness_counts_transfers_for_tiki_taka_and_updates_at_nonzero_gamma():
    base = {**MLP, "pipeline": {"schedule": "async", "stages": 3}}
    hidden = aimcsim.simulate(base).summary["staleness"]
    seen = aimcsim.simulate({**base, "device": {**MLP["device"], "gamma": 0.1}}).summary["staleness"]
    assert hidden[0] >= 1 and seen[0] == 2 * hidden[0]  # U and T each change what the forward reads


def test_split_layers_and_convolutions_take_compounds_unchanged():
    grid = make_crossbar(5, 9, 4, seed=3, device={"type": "buffered_transfer_compound", "unit_cell_devices": [SOFT, SOFT]})
    assert grid.n_tiles == 6
    rng = np.random.default_rng(0)
    grid.update(rng.uniform(-1, 1, (2, 9)).astype(np.float32), rng.uniform(-1, 1, (2, 5)).astype(np.float32), 0.1)
    assert grid.last_transfer is not None and grid.last_transfer.passes == 1  # tiles transfer in parallel
    assert grid.last_transfer.dac == 2 * (4 + 4 + 1)  # every tile read one of its columns
    split = aimcsim.simulate({**MLP, "model": {**MLP["model"], "tile_size": 16},
                              "pipeline": {"schedule": "async", "stages": 2}})
    assert split.summary["status"] == "ok" and sum(split.summary["transfers"]) > 0
    conv = aimcsim.load_config(Path(__file__).resolve().parents[1] / "configs" / "lenet_digits.yaml",
                               ["train.epochs=0.05", "pipeline.stages=2"])
    conv = conv.model_copy(update={"device": {"type": "mixed_precision_compound", "device": SOFT}})
    r = aimcsim.simulate(conv)
    assert r.summary["status"] == "ok" and all(n > 0 for n in r.summary["transfers"])


def test_transfers_are_priced_by_the_cost_model():
    rf = cost.CostModel(cost.parse_timing({"preset": "rf25"}),
                        cost.parse_energy({"preset": "isaac32"}))
    report = ops.OpReport("T", vectors=1, passes=2, pulse_slots=31, coincidences=4, dac=8, adc=6, cells=24,
                          line_slots=31 * 7, digital=6)
    cycles, energy = rf.cost("T", [report])
    assert cycles == math.ceil(2 * 40 + 31 * 5 + 5.9)
    e = rf.energy
    assert energy == pytest.approx(8 * e.dac_pj + 6 * e.adc_pj + 24 * e.cell_read_fj * 1e-3 + 217 * e.pulse_slot_pj
                                   + 4 * e.device_pulse_pj + 6 * e.digital_pj)
    assert rf.energy_by_part["transfers"] == pytest.approx(energy)
    assert cost.CostModel(cost.parse_timing({})).cost("T", [report]) == (0, 0.0)
    r = aimcsim.simulate({**MLP, "pipeline": {"schedule": "sequential", "stages": 1},
                          "timing": {"preset": "rf25"}, "energy": {"preset": "isaac32"}})
    assert r.summary["energy_by_op"]["transfers"] > 0


@pytest.mark.parametrize("device,expected", [
    ({"type": "transfer_compound", "unit_cell_devices": [SOFT, SOFT], "gama": 0.1},
     "device.gama: unknown key (did you mean 'gamma'?)"),
    ({"type": "transfer_compound", "unit_cell_devices": [{"type": "transfer_compound"}, SOFT]},
     "device.unit_cell_devices[0].type: 'transfer_compound' is a compound device"),
    ({"type": "mixed_precision_compound", "device": {"type": "chopped_transfer_compound"}},
     "device.device.type: 'chopped_transfer_compound' is a compound device"),
    ({"type": "chopped_transfer_compound", "unit_cell_devices": [SOFT]},
     "device.unit_cell_devices: chopped_transfer_compound takes a list of exactly 2 unit devices"),
    ({"type": "transfer_compound", "unit_cell_devices": [SOFT, {"type": "soft_bounds", "dw_mn": 1}]},
     "device.unit_cell_devices[1].dw_mn: unknown key"),
    ({"type": "transfer_compound", "unit_cell_devices": [SOFT, SOFT], "transfer_every": 0}, "device.transfer_every"),
    ({"type": "transfer_compound", "unit_cell_devices": [SOFT, SOFT], "transfer_every": -1}, "device.transfer_every"),
    ({"type": "mixed_precision_compound", "transfer_every": 0}, "device.transfer_every"),
    ({"type": "chopped_transfer_compound", "unit_cell_devices": [SOFT, SOFT], "in_chop_prob": 1.5}, "device.in_chop_prob"),
    ({"type": "transfer_compound", "unit_cell_devices": [SOFT, SOFT], "with_reset_prob": -0.1}, "device.with_reset_prob"),
    ({"type": "chopped_transfer_compound", "unit_cell_devices": [SOFT, SOFT], "n_reads_per_transfer": 2},
     "device.n_reads_per_transfer: the chopped transfer reads one column"),
    ({"type": "dynamic_transfer_compound", "unit_cell_devices": [SOFT, SOFT], "out_chop_prob": 0.1},
     "device.out_chop_prob"),
    ({"type": "buffered_transfer_compound", "unit_cell_devices": [IDEAL, SOFT]},
     "device.unit_cell_devices[0].type: 'ideal' has no pulse granularity"),
    ({"type": "transfer_compound", "unit_cell_devices": [SOFT, SOFT], "transfer_forward": {"bound_management": "iterative"}},
     "device.transfer_forward.bound_management: a transfer read has none"),
    ({"type": "transfer_compound", "unit_cell_devices": [SOFT, SOFT], "transfer_update": {"desired_bl": 0}},
     "device.transfer_update.desired_bl"),
    ({"type": "mixed_precision_compound", "n_x_bins": 1}, "device.n_x_bins"),
    ({"type": "tranfer_compound"}, "device.type: unknown device type 'tranfer_compound' (did you mean 'transfer_compound'?)"),
])
def test_bad_compound_settings_exit_2_with_one_line(tmp_path, capsys, device, expected):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"name": "digits"}, "device": device}))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


def test_defaults_are_aihwkits_per_class():
    units = {"unit_cell_devices": [SOFT, SOFT]}
    tt = parse_device({"type": "transfer_compound", **units})
    buffered = parse_device({"type": "buffered_transfer_compound", **units})
    chopped = parse_device({"type": "chopped_transfer_compound", **units})
    dynamic = parse_device({"type": "dynamic_transfer_compound", **units})
    assert tt.units_in_mbatch and tt.scale_fast_lr and tt.transfer_update.desired_bl == 31
    assert tt.transfer_forward.noise_management == "none" and tt.transfer_forward.out_noise == 0.06
    assert buffered.momentum == 0.1 and buffered.transfer_update.desired_bl == 1
    assert not buffered.transfer_update.update_management and not buffered.transfer_update.update_bl_management
    assert not chopped.units_in_mbatch and not chopped.scale_fast_lr and chopped.in_chop_prob == 0.1
    assert chopped.in_chop_random and chopped.momentum == 0.0 and chopped.auto_momentum == 0.99
    assert not dynamic.in_chop_random and dynamic.tail_weightening == 5.0 and dynamic.buffer_cap == 0.0
    partial = parse_device({"type": "chopped_transfer_compound", **units, "transfer_update": {"desired_bl": 3}})
    assert partial.transfer_update.desired_bl == 3 and not partial.transfer_update.update_management
    mixed = parse_device({"type": "mixed_precision_compound"})
    assert mixed.device.type == "soft_bounds" and mixed.n_rows_per_transfer == -1 and mixed.transfer_every == 1


def test_compound_rpu_presets_train():
    for name in ("TikiTakaReRamSBPreset", "ChoppedTTv2CapacitorPreset", "AGADEcRamPreset", "MixedPrecisionEcRamPreset"):
        cfg = aimcsim.load_config({"rpu_preset": name, "data": {"name": "digits"}, "model": {"hidden": [8]},
                                   "pipeline": {"schedule": "async", "stages": 2},
                                   "train": {"epochs": 0.05, "eval_every": 1000}})
        r = aimcsim.simulate(cfg)
        assert r.summary["status"] == "ok" and sum(r.summary["transfers"]) > 0, name
    tt = aimcsim.load_config({"rpu_preset": "TikiTakaReRamSBPreset"}).device_params()
    assert tt.unit_cell_devices[0].subtract_symmetry_point and tt.transfer_forward.out_bound == 20.0
    assert tt.transfer_forward.noise_management == "none"


@pytest.mark.parametrize("schedule", ["sequential", "async"])
def test_tiki_taka_beats_analog_sgd_on_the_digits_mlp(schedule):
    """The error floor of plain analog SGD on an asymmetric device, lifted by Tiki-Taka: the
    64-32-32-10 tanh MLP, aihwkit's default soft-bounds device, seeds 0-2."""
    base = {"data": {"name": "digits"}, "model": {"hidden": [32, 32], "activation": "tanh"},
            "pipeline": {"schedule": schedule, "stages": 1 if schedule == "sequential" else 3},
            "train": {"lr": 0.02, "epochs": 3, "eval_every": 10**6, "target": None}}
    for seed in range(3):
        sgd = aimcsim.simulate({**base, "seed": seed, "device": SOFT}).summary["final_test_accuracy"]
        tt = aimcsim.simulate({**base, "seed": seed, "device": {"type": "transfer_compound",
                                                               "unit_cell_devices": [SOFT, SOFT]}})
        assert tt.summary["final_test_accuracy"] > sgd, (seed, sgd, tt.summary["final_test_accuracy"])
