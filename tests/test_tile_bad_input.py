"""Bad tile input: one-line ValueErrors naming the parameter and what is allowed."""

import numpy as np
import pytest

from aimcsim import AnalogTile


@pytest.mark.parametrize("kwargs,match", [
    ({"device": {"type": "soft_bound"}}, r"device\.type: unknown device type 'soft_bound' \(did you mean 'soft_bounds'\?\)"),
    ({"device": {"type": "soft_bounds", "dw_mn": 0.1}}, r"device\.dw_mn: unknown key \(did you mean 'dw_min'\?\)"),
    ({"device": {"type": "constant_step", "dw_min": 0.0}}, r"device\.dw_min: .*greater than 0"),
    ({"device": {"type": "constant_step", "dw_min": -0.1}}, r"device\.dw_min"),
    ({"device": {"type": "soft_bounds", "w_min": 0.3, "w_max": 0.2}}, r"device\.w_min"),
    ({"device": {"type": "soft_bounds", "corrupt_devices_prob": 0.1}}, r"device.*corrupt_devices_prob.*does not model"),
    ({"device": {"type": "constant_step", "write_noise_std": 0.1}}, r"device.*write_noise_std.*does not model"),
    ({"device": {"type": "piecewise_step", "piecewise_up": [1, 2], "piecewise_down": [1]}}, r"piecewise"),
    ({"device": "soft_bounds"}, r"device: expected a mapping"),
    ({"update": {"pulse_type": "stochastic"}}, r"update\.pulse_type: .*stochastic_compressed"),
    ({"update": {"desired_bl": 0}}, r"update\.desired_bl"),
    ({"update": {"desired_bl": 2.5}}, r"update\.desired_bl"),
    ({"update": {"sto_round": True}}, r"update.*sto_round.*does not model"),
    ({"forward_io": {"out_noise": -1.0}}, r"io\.forward\.out_noise"),
    ({"forward_io": {"noise_management": "abs"}}, r"io\.forward\.noise_management"),
    ({"backward_io": {"bound_managment": "none"}}, r"io\.backward\.bound_managment: unknown key \(did you mean 'bound_management'\?\)"),
    ({"forward_io": {"inp_bound": 2.0}}, r"io\.forward.*inp_bound == 1"),
    ({"seed": -1}, r"seed"),
])
def test_bad_parameters_raise_one_line_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        AnalogTile(3, 4, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("size", [0, -3, 2.5, "4"])
def test_bad_sizes(size):
    with pytest.raises(ValueError, match="out_size"):
        AnalogTile(size, 4)


def test_bad_update_arguments():
    tile = AnalogTile(3, 4)
    with pytest.raises(ValueError, match=r"x: expected shape \(4,\)"):
        tile.update(np.ones(3), np.ones(3), 0.1)
    with pytest.raises(ValueError, match=r"d: expected shape \(3,\)"):
        tile.update(np.ones(4), np.ones(4), 0.1)
    with pytest.raises(ValueError, match="d: batch of 2 rows does not match x's 1"):
        tile.update(np.ones((1, 4)), np.ones((2, 3)), 0.1)
    with pytest.raises(ValueError, match="x: must be finite"):
        tile.update([1, np.nan, 0, 0], np.ones(3), 0.1)
    with pytest.raises(ValueError, match="d: must be finite"):
        tile.update(np.ones(4), [0, np.inf, 0], 0.1)
    with pytest.raises(ValueError, match="lr"):
        tile.update(np.ones(4), np.ones(3), -0.1)
    with pytest.raises(ValueError, match=r"weights: expected shape \(3, 4\)"):
        tile.set_weights(np.ones((4, 3)))
    before = tile.get_weights()
    with pytest.raises(ValueError, match="weights: must be finite"):
        tile.set_weights(np.full((3, 4), np.nan))
    np.testing.assert_array_equal(tile.get_weights(), before)  # nothing half-written


def test_set_weights_clips_to_each_devices_bounds():
    tile = AnalogTile(5, 5, device={"type": "soft_bounds"}, seed=2)
    tile.set_weights(np.full((5, 5), 10.0))
    np.testing.assert_array_equal(tile.get_weights(), tile.population.block[0])


def test_typed_parameter_objects_are_accepted():
    from aimcsim.devices import SoftBoundsDevice
    from aimcsim.params import IOParameters, UpdateParameters

    tile = AnalogTile(2, 3, device=SoftBoundsDevice(dw_min=0.01), update=UpdateParameters(desired_bl=7),
                      forward_io=IOParameters(perfect=True), backward_io=IOParameters(out_noise=0.0))
    assert tile.device.dw_min == 0.01 and tile.update_params.desired_bl == 7
    assert tile.forward_io.perfect and tile.backward_io.out_noise == 0.0


@pytest.mark.parametrize("backward_io", [None, {}, {"out_noise": 0.0}, "typed"])
def test_backward_bound_management_defaults_to_none_for_mappings_and_typed_objects(backward_io):
    """aihwkit's backward read has no bound management unless asked for; the default is the
    same whether the settings come as a mapping, a typed object, or not at all (a typed
    object used to get the forward's 'iterative')."""
    from aimcsim.config import load_config
    from aimcsim.params import IOParameters

    value = IOParameters(out_noise=0.0) if backward_io == "typed" else backward_io
    assert AnalogTile(2, 3, backward_io=value).backward_io.bound_management == "none"
    if backward_io != "typed":
        io = {"backward": backward_io} if backward_io is not None else {}
        assert load_config({"io": io}).backward_io().bound_management == "none"
    explicit = IOParameters(bound_management="iterative")
    assert AnalogTile(2, 3, backward_io=explicit).backward_io.bound_management == "iterative"
    assert AnalogTile(2, 3, backward_io={"bound_management": "iterative"}).backward_io.bound_management == "iterative"
