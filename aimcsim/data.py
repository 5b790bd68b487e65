"""Data sets: arrays (x_train, y_train, x_test, y_test) as float32 inputs and int or float targets.

``digits`` is scikit-learn's bundled 8x8 digits (no download: works offline). ``synthetic`` is
a seeded teacher-student problem whose generating model is known, for convergence studies.
``mnist``, ``fashion_mnist`` and ``cifar10`` are read from a local folder in their standard
distribution formats (IDX files, gzipped or not; CIFAR-10 python pickles); nothing is ever
downloaded. Images become flat vectors scaled to [0, 1]. The split and every order depend
only on the seed.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

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
    image_shape: tuple | None = None  # (channels, height, width) for image data sets

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
    return Dataset(*_split(x, y, test_fraction, seed), n_outputs=10, name="digits", image_shape=(1, 8, 8))


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


IDX_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST distribution format) as an array; gzip is detected by content."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except OSError:
            raise ConfigError(f"data.path: '{path}' is not a valid gzip file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ConfigError(f"data.path: '{path}' is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ConfigError(f"data.path: '{path}' is truncated (IDX header)")
    dims = [int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim)]
    size = int(np.prod(dims)) if dims else 0
    if len(raw) - header != size:
        raise ConfigError(f"data.path: '{path}' holds {len(raw) - header} values, its header says {size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path, stem: str, what: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(f"data.path: '{folder}' has no {what} file (expected {stem} or {stem}.gz)")


#: where a data set is found when ``data.path`` is not given, and how to get it there
DEFAULT_PATHS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}
HOW_TO_GET = {"fashion_mnist": "apt-get install dataset-fashion-mnist (Debian) puts them there, or set data.path"}


def _idx_files(folder: str, name: str) -> dict[str, Path]:
    """The four IDX files of MNIST or Fashion-MNIST in ``folder``, by role (train_images, ...)."""
    root = Path(folder)
    if not root.is_dir():
        how = f"; {HOW_TO_GET[name]}" if name in HOW_TO_GET and folder == DEFAULT_PATHS.get(name) else ""
        raise ConfigError(f"data.path: '{folder}' is not a folder (expected the {name} IDX files){how}")
    return {key: _find(root, stem, key.replace("_", " ")) for key, stem in IDX_FILES.items()}


def idx_dataset(folder: str, name: str) -> Dataset:
    """MNIST or Fashion-MNIST from the four IDX files of their distribution."""
    paths = _idx_files(folder, name)
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ConfigError(f"data.path: {part} images {images.shape} and labels {labels.shape} do not match")
    for part in ("train", "test"):
        _check_labels(arrays[f"{part}_labels"], paths[f"{part}_labels"])
    flat = lambda a: (a.reshape(len(a), -1) / 255.0).astype(np.float32)  # noqa: E731
    h, w = arrays["train_images"].shape[1:]
    return Dataset(flat(arrays["train_images"]), arrays["train_labels"].astype(np.int64),
                   flat(arrays["test_images"]), arrays["test_labels"].astype(np.int64), 10, name, (1, h, w))


N_CLASSES = 10  # MNIST, Fashion-MNIST and CIFAR-10 alike


def _check_labels(labels: np.ndarray, path: Path) -> None:
    """Refuse labels outside 0..9 (they would index past the output layer)."""
    if len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES):
        bad = labels[(labels < 0) | (labels >= N_CLASSES)][0]
        raise ConfigError(f"data.path: '{path}' has a label {int(bad)} outside 0..{N_CLASSES - 1}")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError):
        raise ConfigError(f"data.path: '{path}' is not a CIFAR-10 python batch (a pickle with data and labels)") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ConfigError(f"data.path: '{path}' holds data {data.shape}, expected (n, 3072) with n labels")
    _check_labels(labels, path)
    return data, labels


def _cifar_files(folder: str) -> tuple[list[Path], Path]:
    """CIFAR-10's training batches and test batch in ``folder`` (or its cifar-10-batches-py)."""
    root = Path(folder)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    if not root.is_dir():
        raise ConfigError(f"data.path: '{folder}' is not a folder (expected CIFAR-10's data_batch_* and test_batch)")
    train_files = sorted(root.glob("data_batch_*"))
    if not train_files or not (root / "test_batch").is_file():
        raise ConfigError(f"data.path: '{root}' has no data_batch_* and test_batch files of CIFAR-10's python version")
    return train_files, root / "test_batch"


def cifar10(folder: str) -> Dataset:
    """CIFAR-10 from its python version (data_batch_1..5 and test_batch, or their folder)."""
    train_files, test_file = _cifar_files(folder)
    parts = [_cifar_batch(p) for p in train_files]
    x_test, y_test = _cifar_batch(test_file)
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    scale = lambda a: (a / 255.0).astype(np.float32)  # noqa: E731
    return Dataset(scale(x_train), y_train, scale(x_test), y_test, 10, "cifar10", (3, 32, 32))


def _file_stamp(paths: list[Path]) -> tuple:
    return tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)


@lru_cache(maxsize=2)
def _read_checked(name: str, folder: str, stamp: tuple) -> Dataset:
    """A file data set, read and checked once per file version (``stamp``) in this process."""
    return idx_dataset(folder, name) if name in ("mnist", "fashion_mnist") else cifar10(folder)


def _file_dataset(name: str, folder: str) -> Dataset:
    if name in ("mnist", "fashion_mnist"):
        files = list(_idx_files(folder, name).values())
    else:
        train_files, test_file = _cifar_files(folder)
        files = [*train_files, test_file]
    return _read_checked(name, folder, _file_stamp(files))


def check_data_files(cfg) -> None:
    """Refuse a data section whose files are missing or malformed, as a run would (the files are
    read and checked once per version in a process, so validating a sweep's points is cheap)."""
    if cfg.name in FILE_DATA_SETS:
        _file_dataset(cfg.name, cfg.path)


FILE_DATA_SETS = ("mnist", "fashion_mnist", "cifar10")


def data_shape(cfg) -> tuple[tuple | None, int, int]:
    """(image shape or None, input width, outputs) of the data set a ``data`` section names."""
    if cfg.name == "digits":
        return (1, 8, 8), 64, 10
    if cfg.name == "synthetic":
        return None, cfg.n_features, cfg.n_classes if cfg.task == "classification" else 1
    ds = _file_dataset(cfg.name, cfg.path)
    return ds.image_shape, ds.n_inputs, ds.n_outputs


def load_dataset(cfg, seed: int) -> Dataset:
    """The data set a config's ``data`` section names."""
    if cfg.name == "digits":
        ds = digits(cfg.test_fraction, seed)
    elif cfg.name == "synthetic":
        ds = synthetic(cfg.n_samples, cfg.n_features, cfg.n_classes, cfg.task, cfg.noise, cfg.test_fraction, seed)
    else:
        ds = _file_dataset(cfg.name, cfg.path)
    train, test = slice(cfg.max_train), slice(cfg.max_test)  # the first samples (None: all of them)
    return Dataset(ds.x_train[train], ds.y_train[train], ds.x_test[test], ds.y_test[test],
                   ds.n_outputs, ds.name, ds.image_shape)


def train_size(cfg, seed: int) -> int:
    """Training samples of the data set a ``data`` section names (after ``max_train``)."""
    return len(load_dataset(cfg, seed).x_train)
