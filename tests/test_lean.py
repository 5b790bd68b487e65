"""The lean stage path: which stages take it, and that it computes exactly what the general path does."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import aimcsim
from aimcsim.errors import ConfigError
from aimcsim.lean import LeanChain
from aimcsim.sim import Engine

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _mlp(**over) -> dict:
    cfg = {"seed": 2, "data": {"name": "digits"}, "model": {"hidden": [16, 12], "activation": "tanh"},
           "device": {"type": "soft_bounds"}, "pipeline": {"schedule": "sequential", "stages": 1},
           "timing": {"preset": "rf25"}, "energy": {"preset": "isaac32"},
           "train": {"lr": 0.1, "epochs": 0.2, "eval_every": 100}}
    for key, value in over.items():
        layered = key == "model" and "layers" in value  # a layer list replaces the MLP's settings
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) and not layered else value
    return cfg


def _fingerprint(result) -> str:
    h = hashlib.sha256()
    h.update(result.metrics.to_csv(index=False).encode())
    h.update(result.trace.to_csv(index=False).encode())
    for w in result.weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def _both_paths(monkeypatch, config) -> tuple[str, str, int]:
    """(fingerprint with the lean path, without it, lean stages built)."""
    built = []
    original = LeanChain.of.__func__

    def counting(cls, *args):
        chain = original(cls, *args)
        built.append(chain is not None)
        return chain

    monkeypatch.setattr(LeanChain, "of", classmethod(counting))
    lean = _fingerprint(aimcsim.simulate(aimcsim.load_config(config)))
    monkeypatch.setattr(LeanChain, "of", classmethod(lambda cls, *args: None))
    general = _fingerprint(aimcsim.simulate(aimcsim.load_config(config)))
    return lean, general, sum(built)


@pytest.mark.parametrize("over", [
    {},
    {"pipeline": {"schedule": "async", "stages": 3}},
    {"pipeline": {"schedule": "gpipe", "stages": 3, "microbatches": 4}},
    {"pipeline": {"schedule": "1f1b", "stages": 2, "microbatches": 4, "microbatch_size": 2}},
    {"device": {"type": "transfer_compound", "unit_cell_devices": [{"type": "soft_bounds"}] * 2},
     "pipeline": {"schedule": "async", "stages": 3}},
    {"device": {"type": "exp_step", "write_noise_std": 0.02}},  # apparent weights
])
def test_lean_path_equals_the_general_path(monkeypatch, over):
    lean, general, built = _both_paths(monkeypatch, _mlp(**over))
    assert built > 0
    assert lean == general


def test_lean_path_equals_the_general_path_with_split_backwards(monkeypatch):
    """Zero bubble: backwards split into I (transposed reads) and W (updates), eight stages."""
    config = aimcsim.load_config(str(CONFIGS / "zero_bubble.yaml"), ["train.epochs=0.1", "train.eval_every=50"])
    lean, general, built = _both_paths(monkeypatch, config)
    assert built >= 8  # the eight stages of the run (and the planner's probe's)
    assert lean == general


@pytest.mark.parametrize("over, why", [
    ({"mapping": {"weight_scaling_omega": 0.6}}, "a weight mapping"),
    ({"model": {"hidden": [16, 12], "activation": "tanh", "tile_size": 32}}, "a layer split over tiles"),
    ({"io": {"forward": {"perfect": True}}}, "an exact read"),
    ({"device": {"type": "mixed_precision_compound", "device": {"type": "soft_bounds"}}}, "mixed precision"),
    ({"model": {"layers": [{"conv": {"channels": 2, "kernel": 3}}, {"activation": "tanh"}, {"flatten": {}},
                           {"linear": {"units": 10}}]}}, "a convolution"),
    ({"model": {"layers": [{"linear": {"units": 16}}, {"norm": {"kind": "layer"}}, {"activation": "relu"},
                           {"linear": {"units": 10}}]}}, "a norm layer"),
])
def test_stages_that_need_the_general_path_do_not_take_the_lean_one(over, why):
    engine = Engine(aimcsim.load_config(_mlp(**over)))
    stages = engine.network.stages([engine.network.n_layers])
    assert stages[0]._lean is None, why


def test_non_finite_values_are_refused_on_the_lean_path():
    """Inside a run a tile's finiteness check is how divergence is found: the lean path keeps it."""
    engine = Engine(aimcsim.load_config(_mlp()))
    stage = engine.network.stages([engine.network.n_layers])[0]
    assert stage._lean is not None
    x = np.zeros((1, 64), dtype=np.float32)
    x[0, 3] = np.nan
    with pytest.raises(ConfigError, match="x: must be finite"):
        stage.forward(0, x)
    rows = np.ones((1, 65), dtype=np.float32)
    delta = np.full((1, 16), np.inf, dtype=np.float32)
    with pytest.raises(ConfigError, match="d: must be finite"):
        stage._lean.update(0, rows, delta, 0.1)
