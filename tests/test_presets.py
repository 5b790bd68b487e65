"""aihwkit's device and RPU-config presets, and the device physics they need (decay toward a
reset bias, diffusion): closed forms and statistics with tolerances from the sample counts."""

import math

import numpy as np
import pytest
import yaml

import aimcsim
from aimcsim import AnalogTile
from aimcsim.cli import main
from aimcsim.compounds import parse_device
from aimcsim.devices import P_WMAX, P_WMIN
from aimcsim.presets import DEVICE_PRESETS, RPU_PRESETS
from aimcsim.crossbar import make_crossbar
from aimcsim.sim import Engine

ZERO_X, ZERO_D = np.zeros(30, np.float32), np.zeros(40, np.float32)


def idle_update(tile):
    """An update call that fires no pulse (lr 0): only the per-update device physics acts."""
    tile.update(ZERO_X, ZERO_D, 0.0)


def test_decay_moves_every_weight_toward_the_reset_bias_by_one_over_lifetime_per_update():
    device = {"type": "linear_step", "lifetime": 25.0, "reset": 0.2, "dw_min_std": 0.0, "w_max": 2.0, "w_min": -2.0}
    tile = AnalogTile(40, 30, device=device, seed=3)
    tile.set_weights(np.random.default_rng(1).uniform(-0.9, 0.9, (40, 30)))
    w0 = tile.get_weights().astype(np.float64)
    for _ in range(7):
        idle_update(tile)
    expected = (w0 - 0.2) * (1 - 1 / 25.0) ** 7 + 0.2  # all far from the bounds
    np.testing.assert_allclose(tile.get_weights(), expected, rtol=0, atol=2e-6)
    assert tile.last_report.coincidences == 0


def test_decay_and_reset_bias_device_to_device_statistics():
    n = 200 * 100
    device = {"type": "constant_step", "lifetime": 500.0, "lifetime_dtod": 0.2, "reset": 0.05, "reset_dtod": 0.01}
    pop = AnalogTile(200, 100, device=device, seed=4).population
    lifetime = 1.0 / (1.0 - pop.decay.astype(np.float64))
    assert abs(lifetime.mean() - 500.0) < 4 * 500.0 * 0.2 / math.sqrt(n)
    assert abs(lifetime.std() / 500.0 - 0.2) < 4 * 0.2 / math.sqrt(2 * n)
    assert abs(pop.reset_bias.mean() - 0.05) < 4 * 0.01 / math.sqrt(n)
    assert abs(pop.reset_bias.std() - 0.01) < 4 * 0.01 / math.sqrt(2 * n)
    # no lifetime: no decay arrays, and the population is the one without these settings
    plain = AnalogTile(200, 100, device={"type": "constant_step"}, seed=4).population
    assert plain.decay is None and plain.diffusion is None
    np.testing.assert_array_equal(plain.block, pop.block)


def test_diffusion_is_a_gaussian_step_of_its_rate_per_update():
    n = 400 * 250
    device = {"type": "constant_step", "diffusion": 0.01, "w_max": 5.0, "w_min": -5.0}
    tile = AnalogTile(400, 250, device=device, seed=5)
    tile.set_weights(np.zeros((400, 250)))
    tile.update(np.zeros(250, np.float32), np.zeros(400, np.float32), 0.0)
    step = tile.get_weights().astype(np.float64)
    assert abs(step.mean()) < 4 * 0.01 / math.sqrt(n)
    assert abs(step.std() - 0.01) < 4 * 0.01 / math.sqrt(2 * n)
    before = tile.get_weights()
    tile.update(np.zeros(250, np.float32), np.zeros(400, np.float32), 0.0)
    assert not np.array_equal(tile.get_weights(), before)  # a fresh draw every update
    again = AnalogTile(400, 250, device=device, seed=5)
    again.set_weights(np.zeros((400, 250)))
    again.update(np.zeros(250, np.float32), np.zeros(400, np.float32), 0.0)
    np.testing.assert_array_equal(again.get_weights(), step.astype(np.float32))  # seeded
    rates = AnalogTile(400, 250, device={**device, "diffusion_dtod": 0.3}, seed=5).population.diffusion
    assert abs(rates.mean() - 0.01) < 4 * 0.01 * 0.3 / math.sqrt(n) + 1e-4  # |1 + 0.3 xi| folds a 4e-7 tail


@pytest.mark.parametrize("name", [n for n, p in DEVICE_PRESETS.items() if p.missing is None])
def test_every_runnable_device_preset_carries_aihwkits_values_and_takes_overrides(name):
    preset = DEVICE_PRESETS[name]
    device = parse_device({"preset": name})
    assert device.type == preset.type
    for key, value in preset.fields.items():
        assert getattr(device, key) == value, key
    assert parse_device({"preset": name, "dw_min": 0.0042}).dw_min == 0.0042
    tile = AnalogTile(3, 4, device={"preset": name}, seed=0)
    tile.update(np.ones(4, np.float32), -np.ones(3, np.float32), 0.05)
    assert np.all(tile.get_weights() <= tile.population.block[P_WMAX])
    assert np.all(tile.get_weights() >= tile.population.block[P_WMIN])


def test_preset_values_spot_checked_against_aihwkit():
    assert parse_device({"preset": "EcRamPresetDevice"}).gamma_down == 0.5085
    cap = parse_device({"preset": "CapacitorPresetDevice"})
    assert (cap.lifetime, cap.lifetime_dtod, cap.mult_noise) == (1.0e6, 0.3, False)
    assert parse_device({"preset": "PCMPresetDevice"}).A_up == -27.235
    assert parse_device({"preset": "IdealizedPresetDevice"}).dw_min == 0.0002


def test_rpu_preset_fills_device_update_and_io_and_explicit_keys_win():
    cfg = aimcsim.load_config({"rpu_preset": "CapacitorPreset", "device": {"dw_min": 0.004},
                               "io": {"forward": {"out_noise": 0.0}}})
    device, fwd, bwd, up = cfg.device_params(), cfg.forward_io(), cfg.backward_io(), cfg.update_params()
    assert device.type == "linear_step" and device.dw_min == 0.004 and device.lifetime == 1.0e6
    assert fwd.out_noise == 0.0 and fwd.out_bound == 20.0 and fwd.inp_res == 1 / 126
    assert bwd.out_noise == 0.1 and bwd.bound_management == "iterative"  # aihwkit's preset IO, backward too
    assert up.desired_bl == 31 and up.update_bl_management
    assert cfg.resolved()["rpu_preset"] == "CapacitorPreset"


@pytest.mark.parametrize("data,expected", [
    ({"rpu_preset": "EcRamPreseet"}, "rpu_preset: unknown preset 'EcRamPreseet' (did you mean 'EcRamPreset'?)"),
    ({"rpu_preset": "TikiTakaEcRamPreset", "device": {"type": "soft_bounds"}},
     "device.type: 'soft_bounds' conflicts with rpu_preset TikiTakaEcRamPreset, whose device is a transfer_compound"),
    ({"rpu_preset": "AGADEcRamPreset", "device": {"preset": "EcRamPresetDevice"}}, "device.preset: EcRamPresetDevice conflicts"),
    ({"rpu_preset": "EcRamPreset", "device": {"type": "soft_bounds"}}, "device.type: 'soft_bounds' conflicts with rpu_preset"),
    ({"rpu_preset": "EcRamPreset", "device": {"preset": "CapacitorPresetDevice"}}, "device.preset: CapacitorPresetDevice conflicts"),
    ({"device": {"preset": "CapacitorPresetDevice", "dw_mn": 0.1}}, "device.dw_mn: unknown key (did you mean 'dw_min'?)"),
    ({"device": {"preset": "IdealizedPresetDevice", "gamma_up": 0.1}}, "device.gamma_up: unknown key"),
    ({"device": {"preset": "CapacitorPresetDevice", "type": "soft_bounds"}}, "device.type: 'soft_bounds' conflicts"),
    ({"device": {"type": "constant_step", "write_noise_std": 1.0}}, "device: write_noise_std"),  # nor in aihwkit
    ({"device": {"type": "soft_bounds_reference", "reference_std": -1}}, "device.reference_std"),
    ({"device": {"preset": "EcRamPresetDevic"}}, "(did you mean 'EcRamPresetDevice'?)"),
    ({"device": {"type": "linear_step", "lifetime": -1}}, "device.lifetime"),
])
def test_bad_preset_settings_exit_2_with_one_line(tmp_path, capsys, data, expected):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


def test_presets_command_lists_every_preset_with_what_it_models(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in [*DEVICE_PRESETS, *RPU_PRESETS]:
        assert name in out
    for family in ("ReRamES", "ReRamSB", "Capacitor", "EcRam", "EcRamMO", "Idealized"):
        for algorithm in ("{}Preset", "TikiTaka{}Preset", "TTv2{}Preset", "ChoppedTTv2{}Preset", "AGAD{}Preset",
                          "MixedPrecision{}Preset"):
            assert algorithm.format(family) in RPU_PRESETS
    assert "not yet" not in out  # every preset runs (those with trains of 100 slots included)


def test_validate_shows_a_preset_fully_resolved(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"rpu_preset": "EcRamMOPreset"}))
    assert main(["validate", str(path)]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["device"]["dw_min"] == 2.8214e-4 and resolved["device"]["gamma_up_dtod"] == 0.05
    assert resolved["io"]["backward"]["out_bound"] == 20.0
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(resolved))
    assert main(["validate", str(again)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == resolved  # config.yaml reloads to itself


def test_the_shipped_preset_config_trains_on_the_async_pipeline():
    from pathlib import Path
    cfg = aimcsim.load_config(Path(__file__).resolve().parents[1] / "configs" / "ecram_async.yaml",
                              ["train.epochs=1"])
    r = aimcsim.simulate(cfg)
    assert r.summary["status"] == "ok" and r.summary["schedule"] == "async"
    assert r.summary["final_test_accuracy"] > 0.8


def test_write_noise_is_drawn_on_programming_and_for_every_device_an_update_touches():
    n = 60 * 50
    device = {"type": "soft_bounds", "write_noise_std": 8.0, "dw_min": 0.002, "dw_min_std": 0.0}
    sigma = 8.0 * 0.002
    tile = AnalogTile(60, 50, device=device, seed=6)
    tile.set_weights(np.zeros((60, 50)))  # zero is inside every device's bounds
    noise = tile.get_weights().astype(np.float64)
    assert abs(noise.mean()) < 4 * sigma / math.sqrt(n) + 1e-6
    assert abs(noise.std() - sigma) < 4 * sigma / math.sqrt(2 * n)
    quiet = AnalogTile(60, 50, device={**device, "apply_write_noise_on_set": False}, seed=6)
    quiet.set_weights(np.zeros((60, 50)))
    np.testing.assert_array_equal(quiet.get_weights(), 0.0)
    # one device pulsed: only its apparent weight changes, and the read sees it
    tile.set_weights(np.zeros((60, 50)))
    before = tile.get_weights()
    x, d = np.zeros(50, np.float32), np.zeros(60, np.float32)
    x[3], d[7] = 1.0, -1.0
    tile.update(x, d, 0.002)
    changed = np.argwhere(tile.get_weights() != before)
    assert changed.tolist() == [[7, 3]] and tile.last_report.coincidences >= 1
    probe = np.zeros(50, np.float32)
    probe[3] = 1.0
    perfect = AnalogTile(60, 50, device=device, forward_io={"perfect": True}, seed=6)
    perfect.set_weights(tile.get_weights())  # (re-drawn noise on set)
    np.testing.assert_allclose(perfect.forward(probe), perfect.get_weights()[:, 3], rtol=1e-6)


def test_write_noise_of_a_dense_update_is_fresh_for_every_touched_device():
    device = {"type": "linear_step", "write_noise_std": 10.0, "dw_min": 0.001, "dw_min_std": 0.0,
              "w_max": 5.0, "w_min": -5.0}
    tile = AnalogTile(80, 60, device=device, update={"pulse_type": "deterministic_implicit"}, seed=7)
    tile.set_weights(np.zeros((80, 60)))
    tile.update(np.ones(60, np.float32), -np.ones(80, np.float32), 0.01)  # every device fires
    assert tile.last_report.coincidences >= 80 * 60
    noise = tile.get_weights().astype(np.float64) - tile._state
    n, sigma = 80 * 60, 10.0 * 0.001
    assert abs(noise.std() - sigma) < 4 * sigma / math.sqrt(2 * n)


def test_a_reference_device_reads_w_minus_r_and_can_hold_the_symmetry_point():
    n = 100 * 80
    device = {"type": "soft_bounds_reference", "reference_mean": 0.05, "reference_std": 0.02, "dw_min_std": 0.0}
    tile = AnalogTile(100, 80, device=device, seed=8)
    ref = tile.population.reference.astype(np.float64)
    assert abs(ref.mean() - 0.05) < 4 * 0.02 / math.sqrt(n)
    assert abs(ref.std() - 0.02) < 4 * 0.02 / math.sqrt(2 * n)
    tile.set_weights(np.full((100, 80), 0.1))
    state = np.clip(0.1 + ref, tile.population.block[P_WMIN], tile.population.block[P_WMAX])
    np.testing.assert_allclose(tile._state, state, atol=1e-6)  # the device holds the weight plus its reference
    np.testing.assert_allclose(tile.get_weights(), state - ref, atol=1e-6)  # reads see w - r
    assert np.mean(np.isclose(tile.get_weights(), 0.1, atol=1e-6)) > 0.9  # where the bounds allow
    sym = AnalogTile(30, 20, device={"type": "soft_bounds_reference", "subtract_symmetry_point": True,
                                     "up_down": 0.2, "dw_min_std": 0.0}, seed=9)
    block = sym.population.block.astype(np.float64)
    up, down, wmax, wmin = block[2], block[3], block[0], block[1]
    np.testing.assert_allclose(sym.population.reference, (up - down) / (up / wmax - down / wmin), rtol=1e-5)


def test_slope_spread_of_a_reference_device_moves_its_bounds():
    n = 200 * 150
    base = {"type": "soft_bounds_reference", "w_max_dtod": 0.0, "w_min_dtod": 0.0, "dw_min_dtod": 0.0,
            "up_down_dtod": 0.0}
    plain = AnalogTile(200, 150, device=base, seed=10).population.block
    spread = AnalogTile(200, 150, device={**base, "slope_up_dtod": 0.1}, seed=10).population.block
    ratio = (plain[P_WMAX] / spread[P_WMAX]).astype(np.float64)  # = |1 + 0.1 xi|
    assert abs(ratio.mean() - 1.0) < 4 * 0.1 / math.sqrt(n)
    assert abs(ratio.std() - 0.1) < 4 * 0.1 / math.sqrt(2 * n)
    np.testing.assert_array_equal(spread[P_WMIN], plain[P_WMIN])


def test_the_reram_presets_now_run():
    for name in ("ReRamSBPreset", "ReRamESPreset"):
        r = aimcsim.simulate({"rpu_preset": name, "data": {"name": "synthetic", "n_samples": 60},
                              "train": {"epochs": 1, "target": None}})
        assert r.summary["status"] == "ok"
    assert parse_device({"preset": "ReRamSBPresetDevice"}).write_noise_std == 56


LONG_TRAIN_PRESETS = [name for name, p in RPU_PRESETS.items() if p.update.get("desired_bl", 0) > 64]


def test_the_presets_with_trains_of_100_slots_are_the_eight_aihwkit_has():
    assert sorted(LONG_TRAIN_PRESETS) == sorted(
        ["TTv2EcRamPreset", "ChoppedTTv2EcRamPreset", "TTv2EcRamMOPreset", "ChoppedTTv2EcRamMOPreset",
         "AGADEcRamMOPreset", "TTv2IdealizedPreset", "ChoppedTTv2IdealizedPreset", "AGADIdealizedPreset"])


@pytest.mark.parametrize("name", LONG_TRAIN_PRESETS)
def test_presets_with_long_pulse_trains_run(name):
    """desired_bl 100 (refused while trains held 64 slots): the run finishes, and an update fires
    trains within the preset's cap (c-TTv2 and AGAD scale theirs to about fast_lr x desired_bl;
    tests/test_tile_update.py checks trains beyond 64 slots)."""
    cfg = aimcsim.load_config({"rpu_preset": name, "data": {"name": "digits", "max_train": 40},
                               "model": {"hidden": [16]}, "pipeline": {"schedule": "sequential", "stages": 1},
                               "train": {"lr": 0.5, "epochs": 1, "eval_every": 40, "target": None}})
    assert cfg.update_params().desired_bl == 100
    engine = Engine(cfg)
    engine.run()
    assert engine.control.status == "ok"
    grid = make_crossbar(8, 12, 512, 0, device=cfg.device_params(), update=cfg.update_params(),
                         forward_io=cfg.forward_io(), backward_io=cfg.backward_io())
    rng = np.random.default_rng(0)
    grid.update(rng.uniform(-1, 1, (4, 12)).astype(np.float32), rng.uniform(-100, 100, (4, 8)).astype(np.float32), 1.0)
    assert 1 <= grid.last_report.max_bl <= 100 and grid.last_report.coincidences > 0
