"""Analog convolutions and layers mapped onto several tiles."""

from pathlib import Path

import numpy as np
import pytest

import aimcsim
from aimcsim.crossbar import TileGrid
from aimcsim.layers import Conv
from aimcsim.network import Network
from aimcsim.sim.schedules import SCHEDULES

EXACT = {"device": {"type": "ideal"}, "update": {"pulse_type": "none"},
         "forward_io": {"perfect": True}, "backward_io": {"perfect": True}}


def direct_conv(x, w, b, stride, pad):
    """A direct (loop) convolution, independent of the simulator's im2col."""
    n, c, h, wd = x.shape
    oc, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    y = np.zeros((n, oc, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            y[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w) + b
    return y


def direct_conv_grads(x, w, g, stride, pad):
    """Exact gradients of sum(g * conv(x)) wrt x, w and b, by the same loops."""
    n, c, h, wd = x.shape
    oc, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    gx = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for i in range(g.shape[2]):
        for j in range(g.shape[3]):
            patch = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            gw += np.einsum("no,nckl->ockl", g[:, :, i, j], patch)
            gx[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum("no,ockl->nckl", g[:, :, i, j], w)
    return gx[:, :, pad:pad + h, pad:pad + wd], gw, g.sum(axis=(0, 2, 3))


@pytest.mark.parametrize("stride,pad", [(1, 0), (1, 1), (2, 1)])
def test_analog_conv_equals_a_direct_convolution_and_its_gradients(stride, pad):
    rng = np.random.default_rng(0)
    c, oc, k, h = 2, 3, 3, 7
    block = Conv("conv", ("input",), [(c, h, h)], {"channels": oc, "kernel": k, "stride": stride, "padding": pad},
                 "test")
    Network([block], "mse", seed=0, **EXACT)  # builds the layer's crossbar
    w = rng.uniform(-0.5, 0.5, (oc, c * k * k + 1)).astype(np.float32)
    block.grid.set_weights(w)
    kernel, bias = w[:, :-1].reshape(oc, c, k, k).astype(np.float64), w[:, -1].astype(np.float64)
    x = rng.uniform(-1, 1, (2, c, h, h)).astype(np.float32)
    y, cache = block.forward([x], block.grid.forward, True)
    np.testing.assert_allclose(y, direct_conv(x.astype(np.float64), kernel, bias, stride, pad), atol=1e-6)
    g = rng.standard_normal(y.shape).astype(np.float32)
    (gx,), (x_rows, delta) = block.backward(g, cache, block.grid.backward, [True])
    want_gx, want_gw, want_gb = direct_conv_grads(x.astype(np.float64), kernel, g.astype(np.float64), stride, pad)
    np.testing.assert_allclose(gx, want_gx, atol=1e-6)
    assert block.grid.last_report.vectors == x_rows.shape[0] == 2 * y.shape[2] * y.shape[3]  # one read per patch
    # the update: one rank-one update per patch, W <- W - lr sum_p delta_p x_p^T
    block.grid.update(x_rows, delta, 0.01)
    got = block.grid.get_weights().astype(np.float64)
    want = w.astype(np.float64) - 0.01 * np.concatenate([want_gw.reshape(oc, -1), want_gb[:, None]], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_a_layer_split_over_tiles_equals_one_tile():
    rng = np.random.default_rng(1)
    w = rng.uniform(-0.3, 0.3, (70, 150)).astype(np.float32)
    one = TileGrid(70, 150, 512, seed=0, **EXACT)
    split = TileGrid(70, 150, 32, seed=0, **EXACT)
    assert one.n_tiles == 1 and split.n_tiles == 3 * 5
    one.set_weights(w)
    split.set_weights(w)
    np.testing.assert_array_equal(split.get_weights(), w)
    x = rng.uniform(-1, 1, (4, 150)).astype(np.float32)
    d = rng.standard_normal((4, 70)).astype(np.float32)
    np.testing.assert_allclose(split.forward(x), one.forward(x), atol=1e-5)
    np.testing.assert_allclose(split.backward(d), one.backward(d), atol=1e-5)
    split.update(x, d, 0.01)
    one.update(x, d, 0.01)
    np.testing.assert_allclose(split.get_weights(), one.get_weights(), atol=1e-6)


def test_split_tiles_read_in_parallel_so_timing_matches_one_tile():
    cfg = {"data": {"name": "digits"}, "model": {"hidden": [200, 40], "activation": "tanh"},
           "pipeline": {"schedule": "async", "stages": 3}, "timing": {"preset": "rf25"},
           "update": {"update_bl_management": False, "desired_bl": 31},
           "train": {"epochs": 0.05, "eval_every": 1000, "target": None}}
    one = aimcsim.simulate(cfg)
    split = aimcsim.simulate({**cfg, "model": {**cfg["model"], "tile_size": 64}})
    for op in ("F", "B", "U"):
        a = one.trace[one.trace.op == op]
        b = split.trace[split.trace.op == op]
        np.testing.assert_array_equal((a.end - a.start).to_numpy(), (b.end - b.start).to_numpy())
    assert one.summary["cycles"] == split.summary["cycles"]
    # with a cost for the digital sum, the split layer's reads cost exactly that much more
    summed = aimcsim.simulate({**cfg, "model": {**cfg["model"], "tile_size": 64}, "timing": {"preset": "rf25",
                                                                                           "digital_sum_ns": 3}})
    f_one = one.trace[(one.trace.op == "F") & (one.trace.stage == 0)]
    f_sum = summed.trace[(summed.trace.op == "F") & (summed.trace.stage == 0)]
    # stage 0 holds the 65-input layer: 2 column tiles of 64 -> one partial sum per vector
    np.testing.assert_array_equal((f_sum.end - f_sum.start).to_numpy(), (f_one.end - f_one.start).to_numpy() + 3)


def test_lenet_mnist_config_runs_on_mnist_format_files(tmp_path):
    from test_data import make_idx_folder

    make_idx_folder(tmp_path / "mnist", n_train=12, n_test=4)
    config = Path(__file__).resolve().parents[1] / "configs" / "lenet_mnist.yaml"
    r = aimcsim.simulate(aimcsim.load_config(config,
                                             [f"data.path={tmp_path / 'mnist'}", "train.epochs=1",
                                              "train.eval_every=100", "timing.preset=ideal"]))
    assert r.summary["status"] == "ok" and r.summary["samples"] == 12 and r.summary["stages"] == 5


LENET = [{"conv": {"channels": 6, "kernel": 3, "padding": 1}}, {"activation": "tanh"},
         {"pool": {"kind": "max", "size": 2}},
         {"conv": {"channels": 12, "kernel": 3, "padding": 1}}, {"activation": "tanh"},
         {"pool": {"kind": "max", "size": 2}}, {"flatten": {}},
         {"linear": {"units": 32}}, {"activation": "tanh"}, {"linear": {"units": 10}}]


@pytest.mark.parametrize("schedule", ["gpipe", "async"])
def test_lenet_trains_on_digits_well_above_chance(schedule):
    # a soft-bounds device with pulsed updates and noisy reads. Its dynamic range matters for
    # convolutions: a sample's many patch updates partly cancel in sum, but each one pulls the
    # weights toward the symmetric point by |dW| W / tau, so tau = 0.6 (the default) keeps this
    # LeNet at chance level while tau = 6 trains it
    lr = 0.05 * (4 if schedule == "gpipe" else 1)
    device = {"type": "soft_bounds", "w_max": 6.0, "w_min": -6.0}
    r = aimcsim.simulate({"data": {"name": "digits"}, "model": {"layers": LENET}, "device": device,
                          "pipeline": {"schedule": schedule, "stages": 4, **({"microbatches": 4} if SCHEDULES[schedule].minibatches else {})},
                          "train": {"lr": lr, "epochs": 1, "eval_every": 400, "target": None}})
    assert r.summary["status"] == "ok" and r.summary["samples"] >= 1400
    assert r.summary["final_test_accuracy"] > 0.5  # chance is 0.1


def test_conv_stage_ops_cost_patches_times_the_vector_time():
    r = aimcsim.simulate({"data": {"name": "digits"}, "model": {"layers": LENET}, "timing": {"preset": "rf25"},
                          "io": {"forward": {"bound_management": "none"}},
                          "pipeline": {"schedule": "async", "stages": 4},
                          "train": {"epochs": 0.01, "eval_every": 1000, "target": None}})
    f0 = r.trace[(r.trace.op == "F") & (r.trace.stage == 0)]
    # the first conv reads each of the 8 x 8 output pixels' patches: 64 vectors x 40 ns
    assert set((f0.end - f0.start).unique()) == {64 * 40}


@pytest.mark.parametrize("layers,match", [
    ([{"conv": {"channels": 2}}, {"flatten": {}}, {"conv": {"channels": 2}}], r"model\.layers\[2\]\.conv: needs image input"),
    ([{"linear": {"units": 8}}, {"flatten": {}}, {"linear": {"units": 10}}],
     r"model\.layers\[1\]\.flatten: its input is already a vector"),
    ([{"conv": {"channels": 2}}, {"linear": {"units": 10}}], r"model\.layers\[1\]\.linear: needs vector input"),
    ([{"conv": {"channels": 0}}, {"flatten": {}}, {"linear": {}}], r"model\.layers\[0\]\.conv\.channels"),
    ([{"conv": {"channels": 2, "kernel": 9}}, {"flatten": {}}, {"linear": {}}], r"model\.layers\[0\]\.conv\.kernel"),
    ([{"conv": {"channels": 2}}, {"flatten": {}}, {"linear": {"units": 7}}], r"needs 10 units"),
    ([{"activation": "tanh"}], r"model\.layers: must end with a linear output layer"),
    ([{"conv": {"channels": 2}}, {"pool": {"kind": "median"}}], r"model\.layers\[1\]\.pool"),
    ([{"dense": {"units": 10}}], r"model\.layers\[0\]: unknown layer 'dense'"),
])
def test_bad_layer_lists_are_named(layers, match):
    with pytest.raises(ValueError, match=match):
        aimcsim.simulate({"data": {"name": "digits"}, "model": {"layers": layers},
                          "pipeline": {"stages": 1}, "train": {"epochs": 0.01}})
