"""benchmarks/study.py: its points are valid configs, its statistics and fits are right."""

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aimcsim import load_config
from aimcsim.sweep import points

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import study  # noqa: E402


@pytest.mark.parametrize("scale", [study.FULL, study.QUICK], ids=["full", "quick"])
def test_every_point_of_the_study_is_a_valid_config(scale):
    sweeps = [sw for make in study.EXPERIMENTS.values() for sw in make(scale)]
    names = [sw.name for sw in sweeps]
    assert len(set(names)) == len(names)  # one directory per sweep
    count = 0
    for sw in sweeps:
        for p in points({**sw.grid, "seed": list(range(scale.seeds))}):
            cfg = load_config(sw.base, [f"{k}={v!r}".replace("'", '"') for k, v in p.items()])
            count += 1
            if sw.name.startswith("epsilon/"):
                assert cfg.train.stop_at_target and cfg.train.target.metric == "grad_norm_sq"
                assert cfg.train.lr == pytest.approx(study.EPS_LR * cfg.train.target.value)
    assert count >= (600 if scale is study.FULL else 100)
    if scale is study.FULL:
        eps = scale.epsilons
        assert max(eps) / min(eps) >= 10 - 1e-9 and np.allclose(np.diff(np.log(eps)), np.log(eps[1] / eps[0]))


def test_tiki_taka_transfers_once_per_sample_under_every_schedule():
    tt = study.DEVICES["tiki_taka"][0]
    assert study.transfer_per_sample(tt, "gpipe", 8)["transfer_every"] == tt["transfer_every"] / 8
    assert study.transfer_per_sample(tt, "async", 8) is tt
    assert study.transfer_per_sample({"type": "constant_step"}, "gpipe", 8) == {"type": "constant_step"}
    assert study.config("tiki_taka", "gpipe", 4)["device"]["transfer_every"] == 1 / study.MICROBATCHES


def test_mean_ci_is_the_t_interval_and_fmt_counts_what_was_not_reached():
    mean, half, n = study.mean_ci([1.0, 2.0, 3.0, math.nan])
    assert (mean, n) == (2.0, 3)
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3))
    assert study.fmt([1.0, 2.0, 3.0, math.nan], ".1f") == f"2.0 ± {half:.1f} (3/4)"
    assert study.fmt([math.nan, math.nan], ",.0f") == "not reached (0/2)"
    assert study.fmt([1500.0], ",.0f") == "1,500"


def test_epsilon_report_fits_the_slope_and_marks_unreached_targets(tmp_path):
    rng = np.random.default_rng(0)
    eps = np.geomspace(0.5, 0.05, 5)
    rows = []
    for device, slope in (("digital", 1.5), ("constant_step", 2.0)):
        for e in eps:
            for seed in range(5):
                samples = 1000 * (0.5 / e) ** slope * math.exp(rng.normal(0, 0.05))
                if device == "constant_step" and e == eps[-1] and seed == 0:
                    samples = math.nan  # one seed stopped by its budget
                point = tmp_path / f"{device}-{e:.3g}-{seed}"
                point.mkdir()
                (point / "config.yaml").write_text("train: {epochs: 40}\n")
                lowest = 0.2 if math.isnan(samples) else 0.9 * e  # the unreached seed stops at a floor
                pd.DataFrame({"grad_norm_sq": [1.0, lowest]}).to_csv(point / "metrics.csv", index=False)
                rows.append({"device": device, "schedule": "sequential", "K": 1, "eps": e, "seed": seed,
                             "sample_complexity": samples, "samples": 60000, "point": str(point)})
    lines = study.epsilon_report(pd.DataFrame(rows), tmp_path)
    assert "budget 40 epochs" in lines[2]
    table = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| digital")
             or line.startswith("| constant_step")}
    fitted = {name: float(line.rstrip(" |").split(" | ")[-2].split(" ± ")[0]) for name, line in table.items()}
    lowest = {name: line.rstrip(" |").split(" | ")[-1] for name, line in table.items()}
    assert lowest["digital, sequential"] == f"{0.9 * eps[-1]:.3f} ± 0.000"
    assert lowest["constant_step, sequential"].startswith(f"{(0.2 + 4 * 0.9 * eps[-1]) / 5:.3f} ± ")
    assert fitted["digital, sequential"] == pytest.approx(1.5, abs=0.05)
    assert fitted["constant_step, sequential"] == pytest.approx(2.0, abs=0.05)
    assert "(4/5)" in table["constant_step, sequential"] and "(4/5)" not in table["digital, sequential"]
    assert (tmp_path / "epsilon.png").stat().st_size > 10_000
