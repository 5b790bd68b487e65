"""The one-call transfer kernel against TransferTile's Python orchestration.

A transfer compound's update runs as one compiled call where its options allow
(``compound_kernels.transfer_update``); the Python orchestration stays as the reference and as
the path of the options that draw from numpy Generators. Both must give the same bits: the same
A, C, buffers, choppers, counters, reads and reports, update after update, for every compound
kind and option the kernel takes.
"""

from __future__ import annotations

import numpy as np
import pytest

from aimcsim.compound_tile import TransferTile

SOFT = {"type": "soft_bounds"}
NOISY = {"type": "soft_bounds", "write_noise_std": 0.3}  # reads see apparent weights
AGING = {"type": "soft_bounds", "lifetime": 50.0, "diffusion": 0.01}  # device steps after every update
LONG_TRAINS = {"desired_bl": 100}
DETERMINISTIC = {"pulse_type": "deterministic_implicit", "desired_bl": 5}

CASES = {
    "tiki-taka": {"type": "transfer_compound"},
    "tiki-taka, 3 reads wrapping, every 2": {"type": "transfer_compound", "n_reads_per_transfer": 3,
                                             "transfer_every": 2},
    "tiki-taka, rows, gamma 0.2": {"type": "transfer_compound", "transfer_columns": False, "gamma": 0.2},
    "tiki-taka, vectors counted": {"type": "transfer_compound", "units_in_mbatch": False, "transfer_every": 3},
    "tiki-taka, write noise": {"type": "transfer_compound", "unit_cell_devices": [NOISY, NOISY]},
    "tiki-taka, decay and diffusion": {"type": "transfer_compound", "unit_cell_devices": [AGING, SOFT],
                                       "gamma": 0.1},
    "tiki-taka, deterministic writes": {"type": "transfer_compound", "transfer_update": DETERMINISTIC},
    "ttv2": {"type": "buffered_transfer_compound"},
    "ttv2, long trains, rows": {"type": "buffered_transfer_compound", "transfer_columns": False,
                                "transfer_update": LONG_TRAINS, "forget_buffer": False, "momentum": 0.3},
    "c-ttv2": {"type": "chopped_transfer_compound", "in_chop_prob": 0.3},
    "c-ttv2, regular choppers, gamma": {"type": "chopped_transfer_compound", "in_chop_random": False,
                                        "in_chop_prob": 0.5, "gamma": 0.3},
    "c-ttv2, corrected magnitudes": {"type": "chopped_transfer_compound", "correct_gradient_magnitudes": True,
                                     "auto_granularity": 10.0, "no_buffer": True, "fast_lr": 0.5},
    "agad": {"type": "dynamic_transfer_compound", "in_chop_prob": 0.5},
    "agad, capped, corrected accumulation": {"type": "dynamic_transfer_compound", "in_chop_prob": 0.34,
                                             "forget_buffer": False, "buffer_cap": 2.0, "gamma": 0.2,
                                             "experimental_correct_accumulation": True,
                                             "transfer_update": {"desired_bl": 3}},
}


def pair(device: dict, out_size: int = 5, in_size: int = 7) -> tuple[TransferTile, TransferTile]:
    """Two equal tiles: one takes the kernel, the other the Python orchestration."""
    device = {"unit_cell_devices": [SOFT, SOFT], **device}
    tiles = [TransferTile(out_size, in_size, device=device, forward_io={"inp_noise": 0.02},
                          backward_io={"out_noise": 0.02}, seed=11) for _ in range(2)]
    assert tiles[0]._kernel is not None, "this case should take the kernel"
    tiles[1]._kernel = None
    start = np.random.default_rng(3).uniform(-0.3, 0.3, (out_size, in_size)).astype(np.float32)
    for tile in tiles:
        tile.set_weights(start)
    return tiles[0], tiles[1]


def state(tile: TransferTile) -> dict:
    out = {name: value for name, value in tile.arrays().items()}
    out["W"] = tile.get_weights()
    out["counters"] = np.array([tile._vectors, tile._next_read, tile._sweeps, tile.fast._update_calls,
                                tile.slow._update_calls])
    if tile._dynamic:
        out["means"] = np.concatenate([tile._running_mean, tile._past_mean])
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_update_equals_the_python_orchestration(case):
    kernel, python = pair(CASES[case])
    rng = np.random.default_rng(5)
    transfers = changed = 0
    for call in range(60):
        rows = (1, 4, 3)[call % 3]  # per-sample updates and mini-batches, so transfers fall mid-call
        xs = rng.normal(0, 0.5, (rows, kernel.in_size)).astype(np.float32)
        ds = rng.normal(0, 0.5, (rows, kernel.out_size)).astype(np.float32)
        for tile in (kernel, python):
            tile.update(xs, ds, 0.05)
        assert kernel.last_report == python.last_report, f"update {call}"
        assert kernel.last_transfer == python.last_transfer, f"update {call}"
        assert kernel.transfer_changed_weights == python.transfer_changed_weights, f"update {call}"
        got, want = state(kernel), state(python)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} after update {call}")
        transfers += python.last_transfer is not None and python.last_transfer.vectors > 0
        changed += python.transfer_changed_weights
        # reads continue the same streams
        np.testing.assert_array_equal(kernel.forward(xs[0]), python.forward(xs[0]))
    assert transfers > 0 and changed > 0, "the case must write C at least once to test anything"


@pytest.mark.parametrize("device", [
    {"type": "transfer_compound", "random_selection": True},
    {"type": "transfer_compound", "with_reset_prob": 0.1},
    {"type": "transfer_compound", "transfer_forward": {"perfect": True}},
    {"type": "chopped_transfer_compound", "out_chop_prob": 0.1},
    {"type": "chopped_transfer_compound", "auto_scale": True},
    {"type": "dynamic_transfer_compound", "in_chop_random": True},
    {"type": "transfer_compound", "unit_cell_devices": [{"type": "ideal"}, SOFT]},
    {"type": "buffered_transfer_compound", "transfer_update": {"pulse_type": "none"}},
])
def test_options_the_kernel_cannot_replay_keep_the_python_path(device):
    tile = TransferTile(4, 3, device={"unit_cell_devices": [SOFT, SOFT], **device}, seed=2)
    assert tile._kernel is None


def test_the_kernels_one_pass_read_equals_the_tiles_read():
    """The transfer read inside the kernel is analog_read's arithmetic and draws for IO without
    noise or bound management (what a transfer read has)."""
    from aimcsim import kernels
    from aimcsim.params import IOParameters
    io = IOParameters(noise_management="none", bound_management="none", inp_noise=0.05, out_noise=0.1,
                      out_bound=0.5).as_array()
    rng = np.random.default_rng(9)
    weights = rng.normal(0, 0.5, (6, 9)).astype(np.float32)
    for transposed in (False, True):
        width, length = (6, 9) if transposed else (9, 6)
        x = rng.normal(0, 1, width).astype(np.float32)
        state_a = np.array([np.uint64(77)], np.uint64)
        state_b = state_a.copy()
        want = np.empty((1, length), np.float32)
        got = np.empty(length, np.float32)
        assert kernels.analog_read(weights, x[None], transposed, io, state_a, want) == 1
        assert kernels.one_pass_read(weights, x, transposed, io, state_b, got) == 1
        np.testing.assert_array_equal(got, want[0])
        assert state_a[0] == state_b[0]
        assert np.any(np.abs(got) == 0.5), "the case should clip at the output bound"


MIXED = {
    "mixed precision": {},
    "mixed precision, quantised, 2 rows per transfer, every 2": {"n_x_bins": 7, "n_d_bins": 5, "n_rows_per_transfer": 2,
                                                                 "transfer_every": 2},
    "mixed precision, write noise, long trains": {"device": NOISY, "granularity": 0.002},
}


@pytest.mark.parametrize("case", sorted(MIXED))
def test_mixed_precision_kernel_update_equals_the_python_orchestration(case):
    from aimcsim.compound_tile import MixedPrecisionTile
    device = {"type": "mixed_precision_compound", "device": SOFT, **MIXED[case]}
    kernel, python = (MixedPrecisionTile(5, 7, device=device, update=LONG_TRAINS if "long" in case else None,
                                         seed=4) for _ in range(2))
    assert kernel._kernel is not None
    python._kernel = None
    rng = np.random.default_rng(6)
    writes = 0
    for call in range(40):
        rows = (1, 4, 3)[call % 3]
        xs = rng.normal(0, 0.5, (rows, 7)).astype(np.float32)
        ds = rng.normal(0, 0.5, (rows, 5)).astype(np.float32)
        for tile in (kernel, python):
            tile.update(xs, ds, 0.05)
        assert kernel.last_report == python.last_report, f"update {call}"
        assert kernel.last_transfer == python.last_transfer, f"update {call}"
        assert kernel.transfer_changed_weights == python.transfer_changed_weights
        np.testing.assert_array_equal(kernel.chi, python.chi, err_msg=f"chi after update {call}")
        np.testing.assert_array_equal(kernel.get_weights(), python.get_weights(), err_msg=f"W after update {call}")
        assert (kernel._vectors, kernel._next_row, kernel.array._update_calls) == (
            python._vectors, python._next_row, python.array._update_calls)
        writes += python.last_transfer is not None and python.last_transfer.coincidences > 0
    assert writes > 0, "the case must write the array at least once to test anything"
