"""Analog reads: ADC grid, output noise, noise and bound management, perfect reads."""

import numpy as np
import pytest

from aimcsim import AnalogTile
from aimcsim.aligned import aligned_zeros
from aimcsim.devices import P_WMAX, P_WMIN

OUT_RES = 24.0 / 510  # out_res 1/(2^9 - 2) of the full range 2 * out_bound


def _tile(w, forward_io=None, backward_io=None, seed=0):
    tile = AnalogTile(w.shape[0], w.shape[1], device={"type": "ideal"}, forward_io=forward_io,
                      backward_io=backward_io, seed=seed)
    tile.set_weights(w)
    return tile


def test_output_lies_on_the_adc_grid_scaled_by_the_input_max():
    rng = np.random.default_rng(0)
    w = rng.uniform(-0.3, 0.3, (16, 20)).astype(np.float32)
    tile = _tile(w)
    x = rng.uniform(-0.5, 0.5, 20).astype(np.float32)
    y = tile.forward(x)
    scale = np.abs(x).max()
    k = y / (scale * OUT_RES)
    np.testing.assert_allclose(k, np.round(k), atol=1e-3)


def test_output_noise_std_matches_out_noise_times_input_scale():
    """With abs_max noise management the noise of the result is out_noise * max|x|."""
    rng = np.random.default_rng(1)
    w = rng.uniform(-0.2, 0.2, (64, 32)).astype(np.float32)
    x_scale = 0.5
    x = x_scale * rng.uniform(-1, 1, 32).astype(np.float32)
    x[0] = x_scale  # max|x| exactly x_scale
    io = {"out_res": 0.0, "inp_res": 0.0}  # isolate the noise from the quantisation
    tile = _tile(w, forward_io=io)
    n = 400
    ys = tile.forward(np.tile(x, (n, 1)))
    resid = ys - x @ w.T
    std = resid.std()
    expected = 0.06 * x_scale
    # std of a sample std over N = n * 64 draws is about sigma / sqrt(2N); allow 5 of those
    assert abs(std - expected) < 5 * expected / np.sqrt(2 * resid.size)
    assert abs(resid.mean()) < 5 * expected / np.sqrt(resid.size)


def test_no_noise_management_keeps_the_noise_unscaled():
    rng = np.random.default_rng(2)
    w = rng.uniform(-0.2, 0.2, (64, 16)).astype(np.float32)
    x = 0.25 * np.ones(16, np.float32)
    tile = _tile(w, forward_io={"noise_management": "none", "out_res": 0.0, "inp_res": 0.0})
    resid = tile.forward(np.tile(x, (300, 1))) - x @ w.T
    assert abs(resid.std() - 0.06) < 5 * 0.06 / np.sqrt(2 * resid.size)


def test_saturated_outputs_trigger_bound_management_passes():
    w = np.full((4, 100), 0.5, np.float32)  # y = 50 for x = 1: far beyond out_bound 12
    x = np.ones(100, np.float32)
    tile = _tile(w, forward_io={"out_noise": 0.0, "inp_res": 0.0})
    y = tile.forward(x)
    # halving the input: 50, 25, 12.5 saturate; 6.25 passes -> 4 passes
    assert tile.last_report.passes == 4
    np.testing.assert_allclose(y, 50.0, rtol=0.01)
    no_bm = _tile(w, forward_io={"out_noise": 0.0, "inp_res": 0.0, "bound_management": "none"})
    np.testing.assert_allclose(no_bm.forward(x), 12.0)
    assert no_bm.last_report.passes == 1


def test_bound_management_stops_at_max_bm_res_over_inp_res():
    w = np.full((2, 100), 10.0, np.float32)  # y = 1000: even 1/16 of the input saturates
    tile = _tile(w, forward_io={"out_noise": 0.0})
    y = tile.forward(np.ones(100, np.float32))
    # reductions 1, 2, 4, 8, 16: 16 > 0.25 / (2/126) stops the loop after 5 passes
    assert tile.last_report.passes == 5
    np.testing.assert_allclose(y, 12.0 * 16)


def test_backward_defaults_to_no_bound_management_and_transposes():
    w = np.full((100, 3), 0.5, np.float32)
    tile = _tile(w, backward_io={"out_noise": 0.0})
    z = tile.backward(np.ones(100, np.float32))
    assert tile.last_report.op == "B" and tile.last_report.passes == 1
    np.testing.assert_allclose(z, 12.0)  # clipped at out_bound, no repeat


def test_perfect_reads_are_exact():
    rng = np.random.default_rng(3)
    w = rng.uniform(-1, 1, (7, 9)).astype(np.float32)
    tile = _tile(w, forward_io={"perfect": True}, backward_io={"is_perfect": True})
    x = rng.standard_normal((5, 9)).astype(np.float32)
    d = rng.standard_normal(7).astype(np.float32)
    np.testing.assert_allclose(tile.forward(x), x @ w.T, rtol=1e-6)
    np.testing.assert_allclose(tile.backward(d), d @ w, rtol=1e-6)
    assert tile.forward(x[0]).shape == (7,)


def test_dac_quantises_and_clips_the_input():
    w = np.eye(3, dtype=np.float32)
    tile = _tile(w, forward_io={"out_noise": 0.0, "out_res": 0.0, "noise_management": "none",
                                "bound_management": "none"})
    y = tile.forward(np.array([0.3, -2.0, 0.004], np.float32))
    step = 2.0 / 126
    np.testing.assert_allclose(y, [np.round(0.3 / step) * step, -1.0, 0.0], atol=1e-6)


def test_zero_input_reads_zero():
    tile = _tile(np.ones((3, 4), np.float32))
    np.testing.assert_array_equal(tile.forward(np.zeros(4, np.float32)), 0.0)


def test_reads_are_reproducible_per_seed():
    rng = np.random.default_rng(4)
    w = rng.uniform(-0.3, 0.3, (10, 12)).astype(np.float32)
    x = rng.uniform(-1, 1, (3, 12)).astype(np.float32)
    a, b, c = _tile(w, seed=1), _tile(w, seed=1), _tile(w, seed=2)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    assert not np.array_equal(a.forward(x), c.forward(x))


@pytest.mark.parametrize("values,match", [
    (np.ones(5), r"x: expected shape \(4,\)"),
    (np.ones((2, 3)), r"x: expected shape"),
    (np.array([1.0, np.nan, 0.0, 1.0]), "x: must be finite"),
    (np.array([1.0, np.inf, 0.0, 1.0]), "x: must be finite"),
])
def test_bad_read_inputs(values, match):
    tile = _tile(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match=match):
        tile.forward(values)


@pytest.mark.parametrize("shape", [(384, 384), (363, 401)])
def test_two_core_reads_equal_the_exact_products(shape):
    """Crossbars past PARALLEL_MIN_SIZE read on both cores (each a half of the rows; the
    transposed read adds the halves' partial sums): with the IO made exact they equal W x
    and W^T d, also when the halves and the row blocks do not divide the shape."""
    from aimcsim import kernels

    assert shape[0] * shape[1] >= kernels.PARALLEL_MIN_SIZE
    rng = np.random.default_rng(5)
    w = rng.uniform(-0.05, 0.05, shape).astype(np.float32)
    exact = {"out_noise": 0.0, "out_res": 0.0, "inp_res": 0.0, "noise_management": "none",
             "bound_management": "none", "out_bound": 1000.0, "inp_bound": 100.0}
    tile = _tile(w, forward_io=exact, backward_io=exact)
    x = rng.uniform(-1, 1, (3, shape[1])).astype(np.float32)
    d = rng.uniform(-1, 1, (3, shape[0])).astype(np.float32)
    np.testing.assert_allclose(tile.forward(x), x @ w.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tile.backward(d), d @ w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(512, 512), (10, 257), (3, 5)])
def test_weights_and_device_planes_start_on_a_cache_line(shape):
    """The kernels' vector loads split cache lines otherwise (1-2 us more per 512x512 read)."""
    tile = AnalogTile(*shape, device={"type": "soft_bounds"}, seed=0)
    w0 = np.random.default_rng(1).uniform(-0.1, 0.1, shape).astype(np.float32)
    tile.set_weights(w0)
    for array in (tile._weights, tile.population.block):
        assert array.ctypes.data % 64 == 0 and array.flags.c_contiguous and array.flags.writeable
    block = tile.population.block  # programming writes into the aligned array (clipped to each device's bounds)
    np.testing.assert_array_equal(tile.get_weights(), np.clip(w0, block[P_WMIN], block[P_WMAX]))
    assert tile._weights.ctypes.data % 64 == 0
    for dtype, dims in ((np.float64, (7,)), (np.uint8, (3, 11)), (np.float32, (1,))):
        a = aligned_zeros(dims, dtype)
        assert a.shape == dims and a.dtype == dtype and a.ctypes.data % 64 == 0 and not a.any()
