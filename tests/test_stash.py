"""async_stash: the asynchronous schedule with PipeDream's weight stashing, against a numpy loop."""

from __future__ import annotations

import numpy as np

import aimcsim
from aimcsim.sim import Engine

EXACT = {"perfect": True}


def config(schedule: str) -> dict:
    return {"seed": 3, "data": {"name": "digits"}, "model": {"hidden": [8, 8], "activation": "tanh"},
            "device": {"type": "ideal"}, "io": {"forward": EXACT, "backward": EXACT},
            "pipeline": {"schedule": schedule, "stages": 3}, "train": {"lr": 0.05, "epochs": 40 / 1437,
                                                                     "eval_every": 10**6, "target": None}}


def delayed_sgd(init, xs, ys, forward_version, lr):
    """Plain numpy: item j's gradient is computed with every layer's weights as its forward read
    them (version v_k(j) of layer k) and applied to the layer's current weights, in item order."""
    history = [[w.astype(np.float64)] for w in init]  # history[k][v]: layer k after v updates
    for j, (x, y) in enumerate(zip(xs, ys)):
        weights = [history[k][forward_version[k][j]] for k in range(len(init))]
        a, inputs, pre = x[None].astype(np.float64), [], []
        for k, w in enumerate(weights):
            inputs.append(np.concatenate([a, [[1.0]]], axis=1))
            z = inputs[-1] @ w.T
            pre.append(z)
            a = np.tanh(z) if k < len(weights) - 1 else z
        p = np.exp(a - a.max())
        p /= p.sum()
        g = p.copy()
        g[0, y] -= 1.0  # d loss / d outputs of softmax cross-entropy
        for k in range(len(weights) - 1, -1, -1):
            delta = g if k == len(weights) - 1 else g * (1 - np.tanh(pre[k]) ** 2)
            g = delta @ weights[k][:, :-1]  # the backward reads the stashed weights
            history[k].append(history[k][-1] - lr * delta.T @ inputs[k])
    return [h[-1] for h in history]


def test_async_stash_on_exact_arrays_is_delayed_sgd_with_the_forwards_weights():
    engine = Engine(aimcsim.load_config(config("async_stash")))
    init = engine.network.weights()
    engine.run()
    trace = engine.tracer.frame()
    forwards = trace[trace["op"] == "F"]
    n = engine.n_items
    version = [forwards[forwards["stage"] == k].set_index("item")["version"].reindex(range(n)).to_numpy()
               for k in range(3)]
    for k in range(3):  # in steady state a forward at stage k reads weights K - 1 - k updates old
        assert np.array_equal(version[k], np.maximum(np.arange(n) - (2 - k), 0))
    order = np.concatenate([engine.feed.rows(i) for i in range(n)])
    expected = delayed_sgd(init, engine.data.x_train[order], engine.data.y_train[order], version, 0.05)
    for got, want in zip(engine.network.weights(), expected):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6)
    assert engine.tracer.max_staleness == [2, 1, 0]  # the update is still applied K - 1 - k updates late


def test_without_stashing_the_backward_reads_newer_weights():
    stash = aimcsim.simulate(config("async_stash")).weights()
    plain = aimcsim.simulate(config("async")).weights()
    assert not np.allclose(stash[0], plain[0], rtol=1e-6, atol=1e-8)
