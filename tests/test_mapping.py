"""aihwkit's weight mapping (``mapping``): the scales, the equivalence it promises, its refusals."""

from __future__ import annotations

import numpy as np
import pytest

import aimcsim
from aimcsim.crossbar import make_crossbar
from aimcsim.errors import ConfigError, UnusedKeyError
from aimcsim.mapping import MappedCrossbar, MappingConfig, mapped
from aimcsim.params import IOParameters
from aimcsim.sim import Engine

PERFECT = IOParameters(is_perfect=True)
EXACT = {"device": {"type": "ideal"}, "io": {"forward": {"perfect": True}, "backward": {"perfect": True}}}


def _crossbar(mapping: dict, device: dict | None = None, seed: int = 0):
    return mapped(make_crossbar(5, 8, 512, seed, device=device or {"type": "ideal"}, forward_io=PERFECT,
                                backward_io=PERFECT), MappingConfig(**mapping))


def _weights() -> np.ndarray:
    w = np.random.default_rng(3).uniform(-0.3, 0.3, (5, 8)).astype(np.float32)
    w[2] *= 0.1  # one small row: column-wise scales differ from the layer's
    return w


def test_no_mapping_builds_no_wrapper():
    cb = make_crossbar(5, 8, 512, 0, device={"type": "ideal"})
    assert mapped(cb, MappingConfig()) is cb
    assert mapped(cb, None) is cb


@pytest.mark.parametrize("columnwise", [False, True])
def test_the_array_holds_the_weights_scaled_to_omega(columnwise):
    w = _weights()
    cb = _crossbar({"weight_scaling_omega": 0.6, "weight_scaling_columnwise": columnwise})
    assert isinstance(cb, MappedCrossbar)
    cb.set_weights(w)
    array = cb.inner.get_weights()
    if columnwise:
        np.testing.assert_allclose(np.abs(array).max(axis=1), 0.6, rtol=1e-6)
        np.testing.assert_allclose(cb.alpha, np.abs(w).max(axis=1) / 0.6, rtol=1e-6)
    else:
        assert np.abs(array).max() == pytest.approx(0.6, rel=1e-6)
        assert len(set(cb.alpha.tolist())) == 1
    np.testing.assert_allclose(cb.get_weights(), w, rtol=1e-6, atol=1e-7)  # the logical weights come back


def test_an_all_zero_row_keeps_scale_one():
    cb = _crossbar({"weight_scaling_omega": 0.6, "weight_scaling_columnwise": True})
    w = _weights()
    w[1] = 0.0
    cb.set_weights(w)
    assert cb.alpha[1] == 1.0 and np.all(np.isfinite(cb.get_weights()))


@pytest.mark.parametrize("mapping", [{"weight_scaling_omega": 0.6},
                                     {"weight_scaling_omega": 0.6, "weight_scaling_columnwise": True},
                                     {"weight_scaling_omega": 2.0, "weight_scaling_columnwise": True,
                                      "weight_scaling_lr_compensation": True}])
def test_reads_and_updates_act_on_the_logical_weights(mapping):
    """Exact arithmetic: forward, transposed read and update equal W x, W^T d and W - lr d x^T."""
    w = _weights()
    cb = _crossbar(mapping)
    cb.set_weights(w)
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (3, 8)).astype(np.float32)
    d = rng.standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_allclose(cb.forward(x), x @ w.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cb.backward(d), d @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cb.evaluation_read(x), x @ w.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cb.evaluation_read(d, transposed=True), d @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cb.backward_with(d, 2 * w), d @ (2 * w), rtol=1e-5, atol=1e-6)
    cb.update(x, d, 0.1)
    np.testing.assert_allclose(cb.get_weights(), w - 0.1 * d.T @ x, rtol=1e-5, atol=1e-6)
    assert cb.last_report is not None  # the wrapped crossbar's report passes through


def test_a_pulsed_update_moves_the_array_by_the_scaled_gradient():
    """On a pulsed device the array sees d / alpha: a mapping that enlarges the weights (alpha < 1)
    makes more pulses for the same logical step."""
    w = _weights()
    x = np.ones((1, 8), np.float32)
    d = np.full((1, 5), 0.05, np.float32)
    pulses = {}
    for omega in (0.0, 0.6):
        cb = _crossbar({"weight_scaling_omega": omega}, device={"type": "constant_step"}, seed=1)
        cb.set_weights(w)
        cb.update(x, d, 0.1)
        pulses[omega] = cb.last_report.coincidences
    assert pulses[0.6] > pulses[0.0]


def _run(mapping: dict | None, schedule: str = "sequential", stages: int = 1) -> Engine:
    cfg = {"seed": 1, "data": {"name": "digits", "max_train": 120}, "model": {"hidden": [16], "activation": "tanh"},
           **EXACT, "pipeline": {"schedule": schedule, "stages": stages},
           "train": {"lr": 0.05, "epochs": 1, "eval_every": 10**9, "target": None}}
    if mapping:
        cfg["mapping"] = mapping
    engine = Engine(aimcsim.load_config(cfg))
    engine.run()
    return engine


@pytest.mark.parametrize("schedule,stages", [("sequential", 1), ("async", 2), ("async_stash", 2)])
def test_a_mapped_run_trains_like_an_unmapped_one_with_exact_arithmetic(schedule, stages):
    plain = _run(None, schedule, stages)
    for mapping in ({"weight_scaling_omega": 0.6}, {"weight_scaling_omega": 0.6, "weight_scaling_columnwise": True}):
        run = _run(mapping, schedule, stages)
        for a, b in zip(plain.network.weights(), run.network.weights()):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-6)
        assert any(not np.allclose(layer.grid.inner.get_weights(), w)
                   for layer, w in zip(run.network.layers, plain.network.weights()))  # the arrays differ


def test_bad_mapping_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="mapping.learn_out_scaling: learned digital output scales are not modelled"):
        aimcsim.load_config({"mapping": {"learn_out_scaling": True}})
    with pytest.raises(ConfigError, match="mapping.digital_bias: aimcsim keeps each analog layer's bias"):
        aimcsim.load_config({"mapping": {"digital_bias": True}})
    with pytest.raises(ConfigError, match="mapping.weight_scaling_omega"):
        aimcsim.load_config({"mapping": {"weight_scaling_omega": -1}})
    with pytest.raises(ConfigError, match="mapping.max_input_size: unknown key"):
        aimcsim.load_config({"mapping": {"max_input_size": 256}})
    with pytest.raises(UnusedKeyError, match="mapping.weight_scaling_columnwise: weight_scaling_omega is 0"):
        aimcsim.load_config({"mapping": {"weight_scaling_columnwise": True}})
    with pytest.raises(UnusedKeyError, match="mapping.weight_scaling_lr_compensation: has no effect"):
        aimcsim.load_config({"mapping": {"weight_scaling_omega": 0.6, "weight_scaling_lr_compensation": True}})
    tiki_taka = {"type": "transfer_compound", "unit_cell_devices": [{"type": "soft_bounds"}] * 2}
    cfg = aimcsim.load_config({"device": tiki_taka,
                               "mapping": {"weight_scaling_omega": 0.6, "weight_scaling_lr_compensation": True}})
    assert cfg.mapping.weight_scaling_lr_compensation  # a transfer that follows the learning rate reads it


def test_lr_compensation_changes_a_tiki_taka_run():
    """Its transfers scale with the learning rate (scale_transfer_lr), which compensation divides."""
    tiki_taka = {"type": "transfer_compound", "unit_cell_devices": [{"type": "soft_bounds"}] * 2}

    def weights(compensate: bool) -> list[np.ndarray]:
        cfg = {"seed": 0, "data": {"name": "digits", "max_train": 60}, "model": {"hidden": [8]},
               "device": tiki_taka,
               "mapping": {"weight_scaling_omega": 0.6, "weight_scaling_columnwise": True,
                           "weight_scaling_lr_compensation": compensate},
               "pipeline": {"schedule": "sequential", "stages": 1},
               "train": {"lr": 0.1, "epochs": 1, "eval_every": 10**9, "target": None}}
        engine = Engine(aimcsim.load_config(cfg))
        engine.run()
        return engine.network.weights()

    assert any(not np.array_equal(a, b) for a, b in zip(weights(False), weights(True)))
