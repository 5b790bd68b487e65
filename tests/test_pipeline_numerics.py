"""With an ideal device and perfect reads the pipeline is exactly (delayed) SGD.

The references are written here in numpy, independently of the simulator's training code:
they share only the initial weights and the data order (both depend on the seed alone).
"""

import numpy as np
import pytest

from aimcsim import load_config
from aimcsim.sim import Engine


def make_engine(schedule, stages, microbatches=3, microbatch_size=2, epochs=0.5, hidden=(7, 5)):
    config = load_config({
        "seed": 3,
        "data": {"name": "synthetic", "n_samples": 60, "n_features": 6, "n_classes": 3},
        "model": {"hidden": list(hidden), "activation": "tanh"},
        "device": {"type": "ideal"},
        "io": {"forward": {"perfect": True}, "backward": {"perfect": True}},
        "pipeline": {"schedule": schedule, "stages": stages, "microbatches": microbatches,
                     "microbatch_size": microbatch_size},
        "train": {"lr": 0.3, "epochs": epochs, "eval_every": 1000, "target": None},
    }, unused="drop")  # one helper for every schedule: micro-batches only where they apply
    return Engine(config)


def forward(weights, x):
    """Per layer: (input with bias column, pre-activation); tanh hidden layers, linear output."""
    cache, a = [], x.astype(np.float64)
    for k, w in enumerate(weights):
        xin = np.hstack([a, np.ones((len(a), 1))])
        z = xin @ w.T
        cache.append((xin, z))
        a = z if k == len(weights) - 1 else np.tanh(z)
    return a, cache


def softmax_ce_grad(out, y):
    p = np.exp(out - out.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p


def backward(weights, cache, grad_out):
    """Update pairs (x, delta) per layer, reading the weights in ``weights``."""
    pairs = [None] * len(weights)
    g = grad_out
    for k in range(len(weights) - 1, -1, -1):
        xin, z = cache[k]
        delta = g if k == len(weights) - 1 else g * (1 - np.tanh(z) ** 2)
        pairs[k] = (xin, delta)
        g = delta @ weights[k][:, :-1]
    return pairs


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("stages", [1, 2, 3])
def test_synchronous_schedules_equal_mini_batch_sgd(schedule, stages):
    engine = make_engine(schedule, stages)
    weights = [w.astype(np.float64) for w in engine.network.weights()]
    lr, m, big_m = 0.3, 2, 3
    n_items = engine.n_items
    engine.run()
    assert engine.samples == n_items * m and n_items % big_m == 0
    for start in range(0, n_items, big_m):
        rows = np.concatenate([engine.feed.rows(i) for i in range(start, start + big_m)])
        x, y = engine.data.x_train[rows], engine.data.y_train[rows]
        out, cache = forward(weights, x)
        pairs = backward(weights, cache, softmax_ce_grad(out, y))
        weights = [w - lr / len(rows) * d.T @ xin for w, (xin, d) in zip(weights, pairs)]
    for got, want in zip(engine.network.weights(), weights):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_sequential_equals_micro_batch_sgd(stages):
    engine = make_engine("sequential", stages)
    weights = [w.astype(np.float64) for w in engine.network.weights()]
    engine.run()
    for item in range(engine.n_items):
        rows = engine.feed.rows(item)
        out, cache = forward(weights, engine.data.x_train[rows])
        pairs = backward(weights, cache, softmax_ce_grad(out, engine.data.y_train[rows]))
        weights = [w - 0.3 / 2 * d.T @ xin for w, (xin, d) in zip(weights, pairs)]
    for got, want in zip(engine.network.weights(), weights):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("stages,hidden", [(2, (7, 5)), (3, (7, 5)), (4, (6, 6, 5))])
def test_async_equals_delayed_sgd(stages, hidden):
    """Stage k (1-indexed) forwards with weights K - k updates old and backwards with the current ones."""
    engine = make_engine("async", stages, hidden=hidden, epochs=0.6)
    layer_stage = np.repeat(np.arange(stages), engine.partition)
    history = [[w.astype(np.float64)] for w in engine.network.weights()]  # per layer, per version
    engine.run()
    for item in range(engine.n_items):
        rows = engine.feed.rows(item)
        delay = [stages - 1 - layer_stage[k] for k in range(len(history))]
        stale = [h[max(0, item - delay[k])] for k, h in enumerate(history)]
        current = [h[item] for h in history]
        out, cache = forward(stale, engine.data.x_train[rows])
        pairs = backward(current, cache, softmax_ce_grad(out, engine.data.y_train[rows]))
        for k, (xin, d) in enumerate(pairs):
            history[k].append(current[k] - 0.3 / 2 * d.T @ xin)
    for got, h in zip(engine.network.weights(), history):
        np.testing.assert_allclose(got, h[-1], rtol=0, atol=1e-6)
    # and the delay really was there: the same data without it ends elsewhere
    no_delay = make_engine("sequential", stages, hidden=hidden, epochs=0.6)
    no_delay.run()
    assert max(np.abs(a - b).max() for a, b in zip(no_delay.network.weights(), engine.network.weights())) > 1e-4


def test_initial_state_does_not_depend_on_the_pipeline():
    a = make_engine("async", 1)
    b = make_engine("gpipe", 3, microbatches=5)
    for wa, wb in zip(a.network.weights(), b.network.weights()):
        np.testing.assert_array_equal(wa, wb)
    for item in range(a.n_items):
        np.testing.assert_array_equal(a.feed.rows(item), b.feed.rows(item))
    np.testing.assert_array_equal(a.data.x_train, b.data.x_train)
