"""Data sets: arrays (x_train, y_train, x_test, y_test) as float32 inputs and int or float targets.

``digits`` is scikit-learn's bundled 8x8 digits (no download: works offline). ``synthetic`` is
a seeded teacher-student problem whose generating model is known, for convergence studies.
The split and every order depend only on the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_outputs: int
    name: str

    @property
    def n_inputs(self) -> int:
        return self.x_train.shape[1]


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple:
    order = np.random.default_rng([seed, 0xDA7A]).permutation(len(x))
    n_test = max(1, int(round(test_fraction * len(x))))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def digits(test_fraction: float, seed: int) -> Dataset:
    from sklearn.datasets import load_digits  # noqa: PLC0415 - heavy import, only when used

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    return Dataset(*_split(x, y, test_fraction, seed), n_outputs=10, name="digits")


def synthetic(n_samples: int, n_features: int, n_classes: int, task: str, noise: float,
              test_fraction: float, seed: int) -> Dataset:
    """Teacher-student data: x ~ U(-1, 1); a random one-hidden-layer tanh teacher gives the labels."""
    rng = np.random.default_rng([seed, 0x5EED])
    x = rng.uniform(-1, 1, (n_samples, n_features)).astype(np.float32)
    hidden = max(4, n_features)
    w1 = rng.normal(0, 1 / np.sqrt(n_features), (hidden, n_features))
    outputs = n_classes if task == "classification" else 1
    w2 = rng.normal(0, 1 / np.sqrt(hidden), (outputs, hidden))
    scores = np.tanh(x @ w1.T) @ w2.T
    if task == "classification":
        if noise > 0:
            scores = scores + noise * rng.standard_normal(scores.shape)
        y = np.argmax(scores, axis=1).astype(np.int64)
    else:
        y = (scores + noise * rng.standard_normal(scores.shape)).astype(np.float32)
    return Dataset(*_split(x, y, test_fraction, seed), n_outputs=outputs, name="synthetic")


def load_dataset(cfg, seed: int) -> Dataset:
    """The data set a config's ``data`` section names."""
    if cfg.name == "digits":
        ds = digits(cfg.test_fraction, seed)
    elif cfg.name == "synthetic":
        ds = synthetic(cfg.n_samples, cfg.n_features, cfg.n_classes, cfg.task, cfg.noise, cfg.test_fraction, seed)
    else:
        raise ConfigError(f"data.name: '{cfg.name}' is not available yet; use digits or synthetic")
    if cfg.max_train is not None and cfg.max_train < len(ds.x_train):
        ds = Dataset(ds.x_train[:cfg.max_train], ds.y_train[:cfg.max_train], ds.x_test, ds.y_test,
                     ds.n_outputs, ds.name)
    return ds
