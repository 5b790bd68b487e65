"""Device models: response curves, bounds, symmetric points, population."""

import numpy as np
import pytest

from aimcsim.compounds import parse_device
from aimcsim.devices import DEVICE_TYPES, populate, response_curve, plot_response

NO_VARIATION = {"dw_min_dtod": 0.0, "up_down_dtod": 0.0, "w_max_dtod": 0.0, "w_min_dtod": 0.0}


def test_soft_bounds_saturates_at_its_bounds():
    device = {"type": "soft_bounds", "dw_min": 0.01, "dw_min_std": 0.0, **NO_VARIATION}
    curve = response_curve(device, [1] * 3000 + [-1] * 3000)[:, 0]
    up, down = curve[:3000], curve[3000:]
    # monotone until the step falls below float32 resolution near the bound
    assert np.all(np.diff(up[:500]) > 0) and np.all(np.diff(up) >= 0)
    assert up[-1] > 0.6 * (1 - 1e-4) and up[-1] <= 0.6
    assert np.all(np.diff(down[:500]) < 0) and np.all(np.diff(down) <= 0)
    assert down[-1] < -0.6 * (1 - 1e-4) and down[-1] >= -0.6
    # the step shrinks linearly with the distance to the bound: dw = dw_min (1 - w / w_max)
    steps = np.diff(up[:200])
    np.testing.assert_allclose(steps, 0.01 * (1 - up[:199] / 0.6), rtol=1e-4)


@pytest.mark.parametrize("up_down", [0.3, -0.2])
def test_soft_bounds_symmetric_point_where_up_and_down_steps_are_equal(up_down):
    """Alternating pulses converge to w* with step_up(w*) = step_down(w*)."""
    device = {"type": "soft_bounds", "dw_min": 0.002, "dw_min_std": 0.0, "up_down": up_down, **NO_VARIATION}
    curve = response_curve(device, [1, -1] * 5000)[:, 0]
    # aihwkit: up_down > 0 shrinks the down step, < 0 the up step
    a_up = 0.002 * (1 + min(up_down, 0))
    a_down = 0.002 * (1 - max(up_down, 0))
    # a_up (1 - w/0.6) = a_down (1 + w/0.6)  ->  w* = 0.6 (a_up - a_down) / (a_up + a_down)
    w_star = 0.6 * (a_up - a_down) / (a_up + a_down)
    assert abs(curve[-1] - w_star) < 0.005
    assert np.sign(curve[-1]) == np.sign(up_down)


def test_constant_step_has_range_over_dw_min_states():
    device = {"type": "constant_step", "dw_min": 0.01, "dw_min_std": 0.0, **NO_VARIATION}
    curve = response_curve(device, [1] * 400 + [-1] * 400)[:, 0]
    states = np.unique(np.round(curve, 6))
    assert len(states) == pytest.approx((0.6 - -0.6) / 0.01 + 1, abs=1)
    assert curve.max() == pytest.approx(0.6) and curve.min() == pytest.approx(-0.6)


def test_cycle_to_cycle_noise_spreads_steps():
    device = {"type": "constant_step", "dw_min": 0.001, "dw_min_std": 0.3, **NO_VARIATION}
    curve = response_curve(device, [1] * 200, seed=3)[:, 0]
    steps = np.diff(np.r_[0.0, curve])
    n = len(steps)
    assert abs(steps.mean() - 0.001) < 4 * 0.0003 / np.sqrt(n)
    assert abs(steps.std() - 0.0003) < 0.0003 * 4 / np.sqrt(2 * n)


def test_device_to_device_variation_and_its_seed():
    device = {"type": "soft_bounds"}
    a = response_curve(device, [1] * 2000, n_traces=50, seed=1)
    b = response_curve(device, [1] * 2000, n_traces=50, seed=1)
    c = response_curve(device, [1] * 2000, n_traces=50, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    final = a[-1]
    # saturated weights spread like each device's own w_max: 0.6 (1 + 0.3 xi), folded at 0
    assert 0.1 < final.std() / final.mean() < 0.5


def test_populate_keeps_bounds_around_zero_and_steps_positive():
    arrays = populate(parse_device({"type": "linear_step", "dw_min_dtod": 2.0}), (30, 30),
                      np.random.default_rng(0))
    assert np.all(arrays.block[0] >= 0) and np.all(arrays.block[1] <= 0)
    assert np.all(arrays.block[2] >= 0) and np.all(arrays.block[3] >= 0)


@pytest.mark.parametrize("kind", [k for k in DEVICE_TYPES if k != "ideal"])
def test_every_model_moves_up_then_down_within_bounds(kind):
    curve = response_curve({"type": kind}, [1] * 1500 + [-1] * 1500, n_traces=4)
    assert np.all(curve[1499] > curve[0])
    assert np.all(curve[-1] < curve[1499])
    assert np.all(np.abs(curve) <= 0.6 * (1 + 5 * 0.3))


def test_pow_step_gamma_one_matches_soft_bounds_shape():
    common = {"dw_min": 0.01, "dw_min_std": 0.0, **NO_VARIATION}
    pow_curve = response_curve({"type": "pow_step", "pow_gamma": 1.0, "pow_gamma_dtod": 0.0, **common}, [1] * 50)
    # pow step up: dw = dw_min ((w_max - w) / (w_max - w_min))^1
    w = np.r_[0.0, pow_curve[:-1, 0]]
    np.testing.assert_allclose(np.diff(np.r_[0.0, pow_curve[:, 0]]), 0.01 * (0.6 - w) / 1.2, rtol=1e-4)


def test_piecewise_step_interpolates_nodes():
    device = {"type": "piecewise_step", "dw_min": 0.01, "dw_min_std": 0.0, "piecewise_up": [2.0, 1.0, 0.0],
              "piecewise_down": [1.0, 1.0, 1.0], **NO_VARIATION}
    curve = response_curve(device, [1])[:, 0]
    # w = 0 sits on the middle node (value 1.0)
    assert curve[0] == pytest.approx(0.01, rel=1e-5)


def test_response_curve_rejects_bad_arguments():
    with pytest.raises(ValueError, match="directions"):
        response_curve({"type": "soft_bounds"}, [1, 0, -1])
    with pytest.raises(ValueError, match="n_traces"):
        response_curve({"type": "soft_bounds"}, [1], n_traces=0)
    with pytest.raises(ValueError, match="ideal"):
        response_curve({"type": "ideal"}, [1])


def test_plot_response_draws_the_curve(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    ax = plot_response({"type": "soft_bounds"}, n_pulses=100, n_traces=2)
    assert len(ax.lines) == 2 + 1  # two traces and the turning-point marker
    assert ax.lines[0].get_ydata().shape == (200,)
    ax.figure.savefig(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000
