"""Update realisations: pulsed statistics, BL management, expected and exact closed forms."""

import math

import numpy as np
import pytest

from aimcsim import AnalogTile

NO_VARIATION = {"dw_min_dtod": 0.0, "up_down_dtod": 0.0, "w_max_dtod": 0.0, "w_min_dtod": 0.0}


DW_MIN, DW_STD = 0.001, 0.3  # the statistical tests' constant-step device


def _mean_update(lr: float, trials: int, bound: float, update: dict | None = None):
    """(mean dW over ``trials`` identical updates of a constant-step tile, -lr d x^T, the realised
    BL, the 5-sigma tolerance of the mean): per trial cross-point (i, j) fires N ~ Binomial(BL,
    p_i q_j) pulses of dw_min (1 + std xi), so Var[dW] = dw_min^2 (Var N + E[N] std^2) and the
    mean over ``trials`` has std sqrt(Var / trials)."""
    out_size, in_size = 4, 5
    device = {"type": "constant_step", "dw_min": DW_MIN, "dw_min_std": DW_STD, "w_max": bound, "w_min": -bound,
              **NO_VARIATION}
    tile = AnalogTile(out_size, in_size, device=device, update=update, seed=3)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, in_size).astype(np.float32)
    d = (0.1 * rng.standard_normal(out_size)).astype(np.float32)
    before = tile.get_weights()
    for _ in range(trials):
        tile.update(x, d, lr)
    mean_dw = (tile.get_weights().astype(np.float64) - before) / trials
    expected = -lr * np.outer(d, x)
    bl = tile.last_report.max_bl
    p = np.clip(np.abs(expected) / (bl * DW_MIN), 0, 1)
    var = DW_MIN**2 * (bl * p * (1 - p) + bl * p * DW_STD**2)
    tolerance = 5 * np.sqrt(var / trials) + 1e-6  # 5 sigma, fixed seed
    return mean_dw, expected, bl, tolerance


def test_constant_step_mean_update_matches_gradient():
    """E[dW] = -lr d x^T under update management, within a tolerance from the trial count."""
    mean_dw, expected, _, tolerance = _mean_update(0.01, 4000, 100.0)
    assert np.all(np.abs(mean_dw - expected) <= tolerance), np.max(np.abs(mean_dw - expected) / tolerance)


@pytest.mark.parametrize("lr,x_scale,d_scale", [(0.01, 1.0, 0.3), (0.1, 1.0, 1.0), (0.001, 0.5, 0.05)])
def test_realised_bl_follows_update_bl_management(lr, x_scale, d_scale):
    tile = AnalogTile(6, 7, device={"type": "constant_step"}, seed=1)
    rng = np.random.default_rng(5)
    x = x_scale * rng.uniform(-1, 1, 7)
    d = d_scale * rng.uniform(-1, 1, 6)
    tile.update(x, d, lr)
    x32, d32 = x.astype(np.float32), d.astype(np.float32)
    expected_bl = min(math.ceil(lr * np.abs(x32).max() * np.abs(d32).max() / 0.001), 31)
    assert tile.last_report.max_bl == expected_bl
    assert tile.last_report.pulse_slots == expected_bl


def test_batch_update_is_sequential_rank_one_updates():
    rng = np.random.default_rng(2)
    xs = rng.uniform(-1, 1, (3, 8)).astype(np.float32)
    ds = (0.1 * rng.standard_normal((3, 5))).astype(np.float32)
    a = AnalogTile(5, 8, device={"type": "soft_bounds"}, update={"pulse_type": "none"}, seed=0)
    a.update(xs, ds, 0.05)
    b = AnalogTile(5, 8, device={"type": "soft_bounds"}, update={"pulse_type": "none"}, seed=0)
    for x, d in zip(xs, ds):
        b.update(x, d, 0.05)
    np.testing.assert_array_equal(a.get_weights(), b.get_weights())
    assert a.last_report.vectors == 3


def test_none_is_exact_floating_point():
    rng = np.random.default_rng(4)
    w = rng.uniform(-0.3, 0.3, (6, 9)).astype(np.float32)
    x = rng.uniform(-1, 1, 9).astype(np.float32)
    d = rng.standard_normal(6).astype(np.float32)
    tile = AnalogTile(6, 9, device={"type": "soft_bounds"}, update={"pulse_type": "none"})
    tile.set_weights(w)
    tile.update(x, d, 0.02)
    np.testing.assert_array_equal(tile.get_weights(), w - np.float32(0.02) * np.outer(d, x))


def test_ideal_device_update_is_exact():
    rng = np.random.default_rng(4)
    w = rng.uniform(-3, 3, (4, 3)).astype(np.float32)  # no bounds for the ideal device
    x, d = rng.standard_normal(3).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    tile = AnalogTile(4, 3, device={"type": "ideal"})
    tile.set_weights(w)
    tile.update(x, d, 0.5)
    np.testing.assert_array_equal(tile.get_weights(), w - np.float32(0.5) * np.outer(d, x))


def test_expected_update_equals_soft_bounds_closed_form():
    """Soft bounds with w_max = -w_min = tau: W <- W + dW - |dW| W / tau."""
    tau = 0.5
    device = {"type": "soft_bounds", "w_max": tau, "w_min": -tau, **NO_VARIATION}
    rng = np.random.default_rng(7)
    w = rng.uniform(-0.4, 0.4, (5, 6)).astype(np.float32)
    x = rng.uniform(-1, 1, 6).astype(np.float32)
    d = (0.2 * rng.standard_normal(5)).astype(np.float32)
    tile = AnalogTile(5, 6, device=device, update={"pulse_type": "expected"})
    tile.set_weights(w)
    tile.update(x, d, 0.1)
    w64 = w.astype(np.float64)
    dw = -0.1 * np.outer(d.astype(np.float64), x.astype(np.float64))
    closed = w64 + dw - np.abs(dw) * w64 / tau
    # equal up to float32 rounding of the stored result
    np.testing.assert_allclose(tile.get_weights(), closed, rtol=0, atol=2e-7)


def test_expected_update_general_form_with_asymmetric_device():
    """W + dW F(W) - |dW| G(W) with F = (q- + q+)/2, G = (q- - q+)/2 from the device response."""
    device = {"type": "linear_step", "gamma_up": 0.5, "gamma_down": 0.2, "gamma_up_dtod": 0.0,
              "gamma_down_dtod": 0.0, "up_down": 0.2, **NO_VARIATION}
    rng = np.random.default_rng(8)
    w = rng.uniform(-0.5, 0.5, (3, 4)).astype(np.float32)
    x, d = rng.uniform(-1, 1, 4).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    tile = AnalogTile(3, 4, device=device, update={"pulse_type": "expected"})
    tile.set_weights(w)
    tile.update(x, d, 0.05)
    w64 = w.astype(np.float64)
    # aihwkit linear step: up step = dw_min (1 + 0) (1 - gamma_up w / w_max), down step =
    # dw_min (1 - up_down) (1 - gamma_down w / w_min) (up_down > 0 shrinks the down step)
    q_up = 1.0 - 0.5 * w64 / 0.6
    q_down = (1.0 - 0.2) * (1.0 - 0.2 * w64 / -0.6)
    f, g = (q_down + q_up) / 2, (q_down - q_up) / 2
    dw = -0.05 * np.outer(d.astype(np.float64), x.astype(np.float64))
    np.testing.assert_allclose(tile.get_weights(), w64 + dw * f - np.abs(dw) * g, rtol=0, atol=3e-7)


@pytest.mark.parametrize("pulse_type", ["stochastic_compressed", "deterministic_implicit"])
def test_pulsed_updates_are_bit_reproducible(pulse_type):
    rng = np.random.default_rng(9)
    xs = rng.uniform(-1, 1, (4, 33)).astype(np.float32)
    ds = (0.1 * rng.standard_normal((4, 17))).astype(np.float32)

    def run(seed):
        tile = AnalogTile(17, 33, device={"type": "soft_bounds"}, update={"pulse_type": pulse_type}, seed=seed)
        for x, d in zip(xs, ds):
            tile.update(x, d, 0.05)
            tile.forward(x)
        return tile.get_weights(), tile.forward(xs)

    a, b, c = run(11), run(11), run(12)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_deterministic_implicit_fires_rounded_counts():
    """Noise-free constant step: each cross-point moves by round(BL p_d p_x) steps of dw_min."""
    device = {"type": "constant_step", "dw_min_std": 0.0, "w_max": 10.0, "w_min": -10.0, **NO_VARIATION}
    tile = AnalogTile(3, 4, device=device, update={"pulse_type": "deterministic_implicit"})
    x = np.array([1.0, -0.5, 0.25, 0.0], np.float32)
    d = np.array([0.3, -0.1, 0.05], np.float32)
    tile.update(x, d, 0.01)
    bl = tile.last_report.max_bl
    x_max, d_max = float(np.abs(x).max()), float(np.abs(d).max())  # the float32 values
    k = 0.01 * x_max * d_max / 0.001
    assert bl == math.ceil(k)
    p_x = np.sqrt(0.01 / (0.001 * bl)) * np.sqrt(d_max / x_max) * np.abs(x)
    p_d = np.sqrt(0.01 / (0.001 * bl)) * np.sqrt(x_max / d_max) * np.abs(d)
    counts = np.floor(bl * np.outer(np.minimum(p_d, 1), np.minimum(p_x, 1)) + 0.5)
    expected = -np.sign(np.outer(d, x)) * counts * 0.001
    np.testing.assert_allclose(tile.get_weights(), expected, atol=1e-7)
    assert tile.last_report.coincidences == counts.sum()


def test_coincidences_count_device_pulses():
    device = {"type": "constant_step", "dw_min_std": 0.0, "w_max": 10.0, "w_min": -10.0, **NO_VARIATION}
    tile = AnalogTile(20, 30, device=device, seed=5)
    rng = np.random.default_rng(1)
    tile.update(rng.uniform(-1, 1, 30), 0.1 * rng.standard_normal(20), 0.01)
    # noise-free constant steps of 0.001: total |dW| / dw_min is the number of pulses fired
    assert round(float(np.abs(tile.get_weights()).sum()) / 0.001) == tile.last_report.coincidences > 0


@pytest.mark.parametrize("device", [{"type": "soft_bounds"},
                                    {"type": "exp_step", "write_noise_std": 0.05},  # generic model, apparent weights
                                    ])
def test_many_vector_update_is_the_same_on_any_number_of_threads(device):
    """An update of many vectors on a small crossbar (a convolution's patches) plans them on all
    threads and fires row blocks over all of them: the same devices, pulses and apparent
    weights as the vector-by-vector loop, whatever the thread count and split."""
    import numba

    from aimcsim import kernels

    out_size, in_size, n_vec = 12, 40, 600  # two plan chunks, the second one short
    assert out_size * in_size < kernels.PARALLEL_MIN_SIZE <= n_vec * out_size * in_size
    assert kernels.update_threads(n_vec, out_size * in_size) == numba.get_num_threads()
    assert kernels.update_threads(1, out_size * in_size) == 1
    rng = np.random.default_rng(8)
    xs = rng.uniform(-1, 1, (n_vec, in_size)).astype(np.float32)
    xs[5] = 0.0  # a vector that fires nothing
    ds = (0.05 * rng.standard_normal((n_vec, out_size))).astype(np.float32)
    results = []
    default = numba.get_num_threads()
    try:
        for cores, threads in ((1, 1), (1, 3), (default, 2), (default, 5)):
            numba.set_num_threads(cores)
            tile = AnalogTile(out_size, in_size, device=device, seed=3)
            pop = tile.population
            up = tile.update_params
            counts = kernels.pulsed_update(tile._state, pop.block, pop.model, pop.shared, xs, ds, 0.05, pop.dw_min,
                                           up.desired_bl, up.fixed_bl, up.update_bl_management, True,
                                           up.um_grad_scale, False, np.uint64(11), tile._weights, tile._reference,
                                           pop.write_noise, pop.apparent, threads)
            results.append((counts, tile._state.copy(), tile._weights.copy()))
    finally:
        numba.set_num_threads(default)
    assert results[0][0][2] > 0
    for counts, state, seen in results[1:]:
        assert counts == results[0][0]
        np.testing.assert_array_equal(state, results[0][1])
        np.testing.assert_array_equal(seen, results[0][2])
    assert not np.array_equal(results[0][1], AnalogTile(out_size, in_size, device=device, seed=3)._state)


@pytest.mark.parametrize("lr", [0.01, 0.5])  # BL 3 (counting sort of the columns) and BL 31 (argsort)
def test_threaded_rows_equal_single_threaded_rows(lr):
    """A large crossbar fires its rows on all threads; each row owns its noise stream, so the
    result equals firing every row on one thread (the separate compiled kernels must agree)."""
    from aimcsim import kernels

    size = 384  # 147,456 cross-points: above the threading threshold
    assert size * size >= kernels.PARALLEL_MIN_SIZE
    tile = AnalogTile(size, size, device={"type": "soft_bounds"}, seed=3)
    pop = tile.population
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, size).astype(np.float32)
    d = (0.1 * rng.standard_normal(size)).astype(np.float32)
    bl, a_scale, b_scale = kernels.update_management(lr, float(np.abs(x).max()), float(np.abs(d).max()),
                                                      pop.dw_min, 31, False, True, True, 1.0)
    plan = kernels._new_plan(size, size)
    key = np.uint64(77)
    groups = kernels._plan_vector(x, d, bl, a_scale, b_scale, False, key, plan)
    device = (pop.block, pop.model, pop.shared)
    w_threaded, w_single = tile.get_weights(), tile.get_weights()
    fired_threaded = kernels._fire_rows_threaded(w_threaded, device, d, bl, groups, False, key, plan)
    fired_single = kernels._fire_rows(0, size, w_single, device, d, bl, groups, False, key, plan,
                                      kernels._new_work(size, bl, True))
    assert fired_threaded == fired_single > 0
    np.testing.assert_array_equal(w_threaded, w_single)
    assert not np.array_equal(w_single, tile.get_weights())


def test_counting_sort_is_a_stable_argsort():
    from aimcsim import kernels

    rng = np.random.default_rng(5)
    for n_keys in (2, 16, 8192):
        keys = rng.integers(0, n_keys, 1000).astype(np.uint64)
        order = np.empty(1000, np.int64)
        kernels._counting_sort(keys, n_keys, order)
        np.testing.assert_array_equal(order, np.argsort(keys, kind="stable"))


@pytest.mark.parametrize("desired_bl", [65, 100, 255])
def test_trains_longer_than_a_word_keep_the_mean_update(desired_bl):
    """Pulse trains of more than 64 slots (several words per element): E[dW] = -lr d x^T and
    the realised BL is aihwkit's, within a tolerance from the trial count (as above)."""
    update = {"desired_bl": desired_bl, "update_bl_management": False}  # fixed BL = desired_bl
    mean_dw, expected, bl, tolerance = _mean_update(0.5, 2000, 1000.0, update)
    assert bl == desired_bl
    assert np.all(np.abs(mean_dw - expected) <= tolerance), np.max(np.abs(mean_dw - expected) / tolerance)
    assert np.max(expected) / (desired_bl * DW_MIN) < 1  # probabilities below 1: the trains are really that long


def test_long_trains_are_bit_reproducible():
    runs = []
    for _ in range(2):
        tile = AnalogTile(6, 9, device={"type": "soft_bounds"}, update={"desired_bl": 200, "update_bl_management": False},
                          seed=11)
        rng = np.random.default_rng(2)
        tile.update(rng.uniform(-1, 1, (3, 9)), rng.uniform(-1, 1, (3, 6)), 0.3)
        runs.append(tile.get_weights())
    np.testing.assert_array_equal(*runs)
