"""Networks as graphs of typed layers: every kind's gradients, residual networks against a
hand-written reference, skip tensors on the links, presets, and bad graphs refused."""

from __future__ import annotations

import numpy as np
import pytest

import aimcsim
from aimcsim.config import ModelConfig
from aimcsim.errors import ConfigError
from aimcsim.graph import analog_count, build_layers
from aimcsim.layers import LAYER_KINDS
from aimcsim.sim import Engine

ROWS = np.random.default_rng(0)
EXACT = {"device": {"type": "ideal"}, "io": {"forward": {"perfect": True}, "backward": {"perfect": True}}}


# ----------------------------------------------------------------- every kind's gradients
def _layer(kind, options, shapes, inputs=None):
    cls = LAYER_KINDS[kind]
    names = inputs or tuple(f"in{i}" for i in range(len(shapes)))
    return cls("x", names, [tuple(s) for s in shapes], dict(options), "test")


def _check_gradients(layer, shapes, training=True, weights=None):
    """Backward against central finite differences of sum(g * forward), in float64."""
    rng = np.random.default_rng(1)
    xs = [rng.uniform(-1, 1, (3, *s)) for s in shapes]
    read = (lambda rows: rows @ weights.T) if weights is not None else None
    read_t = (lambda d: d @ weights) if weights is not None else None
    y, ctx = layer.forward(xs, read, training)
    g = rng.standard_normal(y.shape)
    grads, update = layer.backward(g, ctx, read_t, [True] * len(xs))

    def objective():
        return float(np.sum(g * layer.forward(xs, read, training)[0]))

    for x, grad in zip(xs, grads):
        np.testing.assert_allclose(grad, _numeric(objective, x, 1e-6), atol=1e-6, rtol=1e-5)
    if weights is not None:  # the update pair is the weight gradient: delta^T x
        x_rows, delta = update
        np.testing.assert_allclose(delta.T @ x_rows, _numeric(objective, weights, 1e-6), atol=1e-6, rtol=1e-5)
    elif update is not None:  # a norm's scale and shift (float32: a coarser step)
        for param, pgrad in zip(layer.params, update):
            np.testing.assert_allclose(pgrad, _numeric(objective, param, 1e-3), atol=1e-2, rtol=1e-2)


def _numeric(objective, array: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of ``objective()`` in every element of ``array`` (changed in place, restored)."""
    numeric = np.zeros(array.shape)
    for idx in np.ndindex(array.shape):
        keep = array[idx]
        array[idx] = keep + eps
        up = objective()
        array[idx] = keep - eps
        down = objective()
        array[idx] = keep
        numeric[idx] = (up - down) / (2 * eps)
    return numeric


@pytest.mark.parametrize("kind,options,shapes", [
    ("activation", {"name": "tanh"}, [(4,)]),
    ("activation", {"name": "sigmoid"}, [(2, 3, 3)]),
    ("activation", {"name": "relu"}, [(5,)]),
    ("pool", {"kind": "max", "size": 2}, [(2, 4, 4)]),
    ("pool", {"kind": "avg", "size": 2}, [(2, 5, 5)]),
    ("global_pool", {"kind": "avg"}, [(3, 4, 4)]),
    ("flatten", {}, [(2, 3, 3)]),
    ("add", {}, [(2, 3, 3), (2, 3, 3), (2, 3, 3)]),
    ("norm", {"kind": "batch"}, [(3, 4, 4)]),
    ("norm", {"kind": "batch"}, [(5,)]),
    ("norm", {"kind": "layer"}, [(4, 3, 3)]),
    ("norm", {"kind": "group", "groups": 2}, [(4, 3, 3)]),
    ("norm", {"kind": "layer"}, [(6,)]),
])
def test_every_digital_kind_passes_a_finite_difference_check(kind, options, shapes):
    _check_gradients(_layer(kind, options, shapes), shapes)


def test_batch_norm_in_evaluation_is_the_affine_map_of_its_running_statistics():
    layer = _layer("norm", {"kind": "batch"}, [(3, 2, 2)])
    rng = np.random.default_rng(2)
    for _ in range(5):
        layer.forward([rng.normal(1.0, 2.0, (4, 3, 2, 2)).astype(np.float32)], None, True)
    assert np.all(layer.running_mean != 0) and np.all(layer.running_var != 1)
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    y, _ = layer.forward([x], None, False)
    want = (x - layer.running_mean[None, :, None, None]) / np.sqrt(layer.running_var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    _check_gradients(_layer("norm", {"kind": "batch"}, [(3, 2, 2)]), [(3, 2, 2)], training=False)


@pytest.mark.parametrize("kind,options,shape", [
    ("linear", {"units": 3}, (5,)),
    ("conv", {"channels": 2, "kernel": 3, "padding": 1, "stride": 2}, (2, 5, 5)),
])
def test_analog_kinds_pass_a_finite_difference_check_with_exact_reads(kind, options, shape):
    layer = _layer(kind, options, [shape])
    weights = np.random.default_rng(3).uniform(-0.5, 0.5, (layer.units, layer.n_in + 1))
    _check_gradients(layer, [shape], weights=weights)


# ------------------------------------------------------------------- residual networks
def residual_config(schedule="sequential", stages=1, norm="layer", **pipeline) -> dict:
    """A stem and one residual block whose branch holds two convolutions, on 8x8 digits."""
    return {
        "seed": 5, "data": {"name": "digits", "max_train": 24},
        "model": {"layers": [
            {"conv": {"channels": 3, "kernel": 3, "padding": 1}, "name": "stem"},
            {"norm": {"kind": norm}},
            {"activation": "relu", "name": "a0"},
            {"conv": {"channels": 3, "kernel": 3, "padding": 1}},
            {"norm": {"kind": norm}},
            {"activation": "relu"},
            {"conv": {"channels": 3, "kernel": 3, "padding": 1}},
            {"norm": {"kind": norm}},
            {"add": {"inputs": ["a0"]}},
            {"activation": "relu"},
            {"global_pool": {"kind": "avg"}},
            {"linear": {"units": 10}},
        ]},
        **EXACT,
        "pipeline": {"schedule": schedule, "stages": stages, "microbatch_size": 2, **pipeline},
        "train": {"lr": 0.2, "epochs": 1, "eval_every": 1000, "target": None},
    }


def _reference_loss(params, x, y, norm):
    """The residual network written out by hand in float64 (convolutions as loops)."""
    (w0, b0, g0, s0, w1, b1, g1, s1, w2, b2, g2, s2, wf, bf) = params

    def conv(a, w, b):
        n, c, h, wd = a.shape
        ap = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)))
        out = np.zeros((n, w.shape[0], h, wd))
        for i in range(h):
            for j in range(wd):
                out[:, :, i, j] = np.einsum("nckl,ockl->no", ap[:, :, i:i + 3, j:j + 3], w) + b
        return out

    def normalise(a, gamma, beta):
        axes = (0, 2, 3) if norm == "batch" else (1, 2, 3)
        mean = a.mean(axis=axes, keepdims=True)
        var = a.var(axis=axes, keepdims=True)
        return (a - mean) / np.sqrt(var + 1e-5) * gamma[None, :, None, None] + beta[None, :, None, None]

    a0 = np.maximum(normalise(conv(x, w0, b0), g0, s0), 0)
    b = np.maximum(normalise(conv(a0, w1, b1), g1, s1), 0)
    r = np.maximum(normalise(conv(b, w2, b2), g2, s2) + a0, 0)
    out = r.mean(axis=(2, 3)) @ wf.T + bf
    z = out - out.max(axis=1, keepdims=True)
    return float(np.sum(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


def _numeric_grad(params, x, y, norm):
    grads = []
    for p in params:
        grad = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            keep = p[idx]
            p[idx] = keep + 1e-6
            up = _reference_loss(params, x, y, norm)
            p[idx] = keep - 1e-6
            down = _reference_loss(params, x, y, norm)
            p[idx] = keep
            grad[idx] = (up - down) / 2e-6
        grads.append(grad)
    return grads


def _params_of(engine):
    """Every trained quantity in layer order: a convolution's kernel and bias, a norm's scale
    and shift, the output layer's weights and bias (float64 copies)."""
    out = []
    for layer in engine.network.all_layers:
        if layer.analog:
            w = layer.grid.get_weights().astype(np.float64)
            kernel = w[:, :-1].reshape(layer.units, -1, 3, 3) if layer.kind == "conv" else w[:, :-1]
            out += [kernel.copy(), w[:, -1].copy()]
        elif layer.kind == "norm":
            out += [layer.gamma.astype(np.float64), layer.beta.astype(np.float64)]
    return out


def _sgd_reference(engine, groups, lr, norm):
    """Mini-batch SGD in float64 on the hand-written network: each group of micro-batches is
    one step (the gradient of each micro-batch's summed loss, at the same weights, averaged
    over the group's samples)."""
    params = _params_of(engine)
    for group in groups:
        total = [np.zeros_like(p) for p in params]
        samples = 0
        for item in group:
            rows = engine.feed.rows(item)
            x = engine.data.x_train[rows].reshape(-1, 1, 8, 8).astype(np.float64)
            grads = _numeric_grad(params, x, engine.data.y_train[rows], norm)
            total = [t + g for t, g in zip(total, grads)]
            samples += len(rows)
        params = [p - lr / samples * t for p, t in zip(params, total)]
    return params


def _compare(engine, want):
    got = _params_of(engine)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_a_residual_network_trains_as_the_hand_written_reference(norm):
    engine = Engine(aimcsim.load_config(residual_config(norm=norm)))
    engine.run()
    want = _sgd_reference(Engine(aimcsim.load_config(residual_config(norm=norm))),
                          [[i] for i in range(engine.n_items)], 0.2, norm)
    _compare(engine, want)


def test_gpipe_with_flush_equals_mini_batch_sgd_on_a_residual_network():
    cfg = residual_config("gpipe", stages=2, norm="batch", microbatches=3, partition=[2, 2])
    engine = Engine(aimcsim.load_config(cfg))
    assert engine.stages[0].sends == ["a0", "activation_5"]  # the skip tensor crosses the cut with the activation
    assert engine.stages[1].receives == ["a0", "activation_5"]
    engine.run()
    groups = [list(range(s, s + 3)) for s in range(0, engine.n_items, 3)]
    _compare(engine, _sgd_reference(Engine(aimcsim.load_config(cfg)), groups, 0.2, "batch"))


@pytest.mark.parametrize("schedule", ["async", "async_stash", "1f1b", "zbv_zero_bubble", "interleaved_1f1b"])
def test_every_schedule_takes_a_residual_network_cut_inside_a_block(schedule):
    extra = {"microbatches": 2} if schedule not in ("async", "async_stash") else {}
    stages = 4 if schedule in ("zbv_zero_bubble", "interleaved_1f1b") else 3
    r = aimcsim.simulate(residual_config(schedule, stages=stages, **extra))
    assert r.summary["status"] == "ok" and r.summary["samples"] == 24
    if schedule == "async":  # staleness is measured, as on a chain
        assert r.summary["staleness"] == [2, 1, 0]


def test_a_skip_tensor_crossing_a_cut_travels_on_the_link_with_its_bits():
    timing = {"preset": "rf25", "link_latency_cycles": 3, "link_bits_per_cycle": 16, "bits_per_element": 8}
    cfg = {**residual_config("sequential", stages=2, partition=[2, 2]), "timing": timing,
           "energy": {"preset": "isaac32", "link_pj_per_bit": 0.5}}
    r = aimcsim.simulate(cfg)
    trace = r.trace
    elements = 2 * (3 * 8 * 8) * 2  # two tensors (the branch's activation and the skip a0) of a micro-batch of 2
    sends = trace[trace["op"] == "TF"]
    assert set(sends["end"] - sends["start"]) == {3 + elements * 8 // 16}
    np.testing.assert_allclose(sends["energy_pj"], elements * 8 * 0.5)
    back = trace[trace["op"] == "TB"]
    assert set(back["end"] - back["start"]) == {3 + elements * 8 // 16}  # both gradients come back
    # cut before the block: only its input crosses (read twice on the other side)
    cfg["pipeline"]["partition"] = [1, 3]
    sends = aimcsim.simulate(cfg).trace.query("op == 'TF'")
    assert set(sends["end"] - sends["start"]) == {3 + (3 * 8 * 8 * 2) * 8 // 16}


# --------------------------------------------------------------------------- presets
@pytest.mark.parametrize("preset,crossbars", [("resnet8", 10), ("resnet20", 22), ("resnet32", 34), ("lenet5", 4)])
def test_presets_have_the_layers_of_their_papers(preset, crossbars):
    model = ModelConfig(preset=preset)  # checked against 28x28 or 32x32 images below
    assert analog_count(model) == crossbars
    shape = (1, 28, 28) if preset == "lenet5" else (3, 32, 32)
    layers = build_layers(model, shape, int(np.prod(shape)), 10)
    assert sum(layer.analog for layer in layers) == crossbars
    convs = [layer for layer in layers if layer.kind == "conv" and layer.kernel == 3]
    if preset != "lenet5":  # 6n + 2: the 3x3 convolutions and the output layer
        assert len(convs) + 1 == {"resnet8": 8, "resnet20": 20, "resnet32": 32}[preset]
        assert [layer.channels for layer in layers if layer.kind == "conv" and layer.kernel == 1] == [32, 64]
        assert layers[-2].kind == "global_pool" and layers[-2].out_shape == (64,)
    else:
        assert [layer.units for layer in layers if layer.analog] == [16, 32, 128, 10]


def test_basic_block_expands_to_conv_norm_relu_conv_norm_add_relu():
    model = aimcsim.load_config({"model": {"layers": [{"conv": {"channels": 4, "padding": 1}},
                                                      {"basic_block": {"channels": 8, "stride": 2}, "name": "b"},
                                                      {"global_pool": {}}, {"linear": {}}]},
                                 "pipeline": {"stages": 1, "microbatch_size": 2}}).model
    layers = build_layers(model, (1, 8, 8), 64, 10)
    kinds = [(layer.name, layer.kind) for layer in layers[1:-2]]
    assert kinds == [("b/conv1", "conv"), ("b/norm1", "norm"), ("b/relu1", "activation"), ("b/conv2", "conv"),
                     ("b/norm2", "norm"), ("b/shortcut", "conv"), ("b/add", "add"), ("b", "activation")]
    shortcut = layers[6]
    assert shortcut.inputs == ("conv_0",) and shortcut.kernel == 1 and shortcut.stride == 2
    assert layers[7].inputs == ("b/norm2", "b/shortcut")


# ---------------------------------------------------------------------------- bad graphs
@pytest.mark.parametrize("layers,match", [
    ([{"linear": {"units": 8}, "input": "nowhere"}, {"linear": {}}],
     r"model\.layers\[0\]\.input: 'nowhere' is not an earlier layer"),
    ([{"linear": {"units": 8}, "input": "out"}, {"linear": {}, "name": "out"}],
     r"model\.layers\[0\]\.input: 'out' is not an earlier layer .*cycle"),
    ([{"conv": {"channels": 2}, "name": "c"}, {"conv": {"channels": 3}}, {"add": {"inputs": ["c"]}}],
     r"model\.layers\[2\]\.add: shapes differ: conv_1 gives \(3, 4, 4\), c gives \(2, 6, 6\)"),
    ([{"linear": {"units": 8}, "name": "lonely"}, {"linear": {"units": 8}, "input": "input"}, {"linear": {}}],
     r"model\.layers\[0\]\.linear: the output of layer 'lonely' is read by no later layer"),
    ([{"linear": {"units": 8}, "name": "input"}, {"linear": {}}], r"model\.layers\[0\]\.name: 'input' is taken"),
    ([{"norm": {"kind": "group", "groups": 3}}, {"linear": {}}], r"model\.layers\[0\]\.norm\.groups: 3 groups"),
    ([{"add": {"inputs": "a"}}, {"linear": {}}], r"model\.layers\[0\]\.add\.inputs"),
])
def test_bad_graphs_are_refused_naming_the_layer(layers, match):
    with pytest.raises(ConfigError, match=match):
        aimcsim.load_config({"model": {"layers": layers}, "pipeline": {"stages": 1}})


def test_batch_norm_with_one_sample_micro_batches_is_refused():
    with pytest.raises(ConfigError, match="pipeline.microbatch_size: batch norm normalises with the micro-batch's "
                                          "statistics, and a micro-batch of 1 sample has none"):
        aimcsim.load_config({**residual_config(norm="batch"), "pipeline": {"stages": 1}})
    aimcsim.load_config({**residual_config(norm="layer"), "pipeline": {"stages": 1}})  # layer norm needs no batch
