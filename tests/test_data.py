"""Data sets: digits, synthetic, and MNIST / Fashion-MNIST / CIFAR-10 read from small generated files."""

import gzip
import pickle
import struct

import numpy as np
import pytest

import aimcsim
from aimcsim.config import DataConfig
from aimcsim.data import load_dataset


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_idx_folder(folder, n_train=40, n_test=10, gz=True, size=28):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in files.items():
        raw = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return files


def make_cifar_folder(folder, per_batch=6, batches=5):
    rng = np.random.default_rng(1)
    root = folder / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for k in range(1, batches + 1):
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, per_batch))}
        (root / f"data_batch_{k}").write_bytes(pickle.dumps(batch))
    test = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [1, 2, 3, 4]}
    (root / "test_batch").write_bytes(pickle.dumps(test))
    return root


def test_digits_is_bundled_and_split_by_seed():
    a = load_dataset(DataConfig(name="digits"), seed=0)
    b = load_dataset(DataConfig(name="digits"), seed=1)
    assert a.x_train.shape[1] == 64 and a.n_outputs == 10
    assert len(a.x_train) + len(a.x_test) == 1797 and 0 <= a.x_train.min() and a.x_train.max() <= 1
    assert not np.array_equal(a.y_test, b.y_test)


def test_synthetic_is_a_seeded_teacher_student_problem():
    cfg = DataConfig(name="synthetic", n_samples=300, n_features=5, n_classes=4)
    a, b = load_dataset(cfg, 3), load_dataset(cfg, 3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert set(np.unique(a.y_train)) <= set(range(4)) and len(np.unique(a.y_train)) > 1
    reg = load_dataset(DataConfig(name="synthetic", task="regression", n_samples=100), 0)
    assert reg.y_train.dtype == np.float32 and reg.n_outputs == 1


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_data_sets(tmp_path, gz, name):
    files = make_idx_folder(tmp_path / name, gz=gz)
    ds = load_dataset(DataConfig(name=name, path=str(tmp_path / name)), 0)
    assert ds.x_train.shape == (40, 784) and ds.x_test.shape == (10, 784)
    np.testing.assert_allclose(ds.x_train[3], files["train-images-idx3-ubyte"][3].ravel() / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, files["t10k-labels-idx1-ubyte"])


def test_a_run_on_mnist_format_files(tmp_path):
    make_idx_folder(tmp_path / "m", n_train=30, size=8)
    r = aimcsim.simulate({"data": {"name": "mnist", "path": str(tmp_path / "m")}, "model": {"hidden": [8]},
                          "pipeline": {"stages": 2}, "train": {"epochs": 1, "eval_every": 10}})
    assert r.summary["status"] == "ok" and r.summary["samples"] == 30


def test_max_train_and_max_test_take_the_first_samples(tmp_path):
    files = make_idx_folder(tmp_path / "m", n_train=30, n_test=10, size=8)
    ds = load_dataset(DataConfig(name="mnist", path=str(tmp_path / "m"), max_train=12, max_test=4), 0)
    assert ds.x_train.shape == (12, 64) and ds.x_test.shape == (4, 64)
    np.testing.assert_array_equal(ds.y_test, files["t10k-labels-idx1-ubyte"][:4])
    r = aimcsim.simulate({"data": {"name": "mnist", "path": str(tmp_path / "m"), "max_test": 4},
                          "model": {"hidden": [8]}, "pipeline": {"stages": 2}, "train": {"epochs": 1, "eval_every": 10}})
    assert r.summary["final_test_accuracy"] in {k / 4 for k in range(5)}  # a share of 4 test samples
    with pytest.raises(Exception, match=r"data\.max_test"):
        aimcsim.load_config({"data": {"name": "digits", "max_test": 0}})


def test_eval_train_samples_sets_what_the_train_loss_is_measured_on():
    base = {"data": {"name": "digits", "max_train": 300}, "model": {"hidden": [8]}, "pipeline": {"stages": 1},
            "train": {"epochs": 0.5, "eval_every": 50}}
    full, few = (aimcsim.simulate({**base, "train": {**base["train"], "eval_train_samples": n}}) for n in (300, 20))
    np.testing.assert_array_equal(full.metrics["test_accuracy"], few.metrics["test_accuracy"])  # training unchanged
    assert not np.allclose(full.metrics["train_loss"], few.metrics["train_loss"])
    with pytest.raises(Exception, match=r"train\.eval_train_samples"):
        aimcsim.load_config({**base, "train": {"eval_train_samples": 0}})


def test_cifar10_python_batches(tmp_path):
    make_cifar_folder(tmp_path)
    for path in (tmp_path, tmp_path / "cifar-10-batches-py"):
        ds = load_dataset(DataConfig(name="cifar10", path=str(path)), 0)
        assert ds.x_train.shape == (30, 3072) and ds.x_test.shape == (4, 3072)
        assert list(ds.y_test) == [1, 2, 3, 4] and ds.x_train.max() <= 1.0


@pytest.mark.parametrize("breakage,match", [
    ("missing_folder", r"data\.path: '.*' is not a folder"),
    ("missing_file", r"data\.path: '.*' has no test labels file \(expected t10k-labels-idx1-ubyte"),
    ("bad_magic", r"is not an IDX file of unsigned bytes"),
    ("truncated", r"holds \d+ values, its header says \d+"),
    ("bad_gzip", r"is not a valid gzip file"),
    ("mismatch", r"train images .* and labels .* do not match"),
])
def test_malformed_idx_files_get_clear_errors(tmp_path, breakage, match):
    folder = tmp_path / "m"
    if breakage != "missing_folder":
        make_idx_folder(folder, gz=False)
    labels = folder / "train-labels-idx1-ubyte"
    if breakage == "missing_file":
        (folder / "t10k-labels-idx1-ubyte").unlink()
    elif breakage == "bad_magic":
        labels.write_bytes(b"\x01\x02" + labels.read_bytes()[2:])
    elif breakage == "truncated":
        labels.write_bytes(labels.read_bytes()[:-3])
    elif breakage == "bad_gzip":
        labels.write_bytes(b"\x1f\x8b" + b"not gzip at all")
    elif breakage == "mismatch":
        labels.write_bytes(idx_bytes(np.zeros(7)))
    with pytest.raises(ValueError, match=match):
        load_dataset(DataConfig(name="mnist", path=str(folder)), 0)


def test_malformed_cifar_files_get_clear_errors(tmp_path):
    root = make_cifar_folder(tmp_path)
    (root / "data_batch_2").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"data_batch_2' is not a CIFAR-10 python batch"):
        load_dataset(DataConfig(name="cifar10", path=str(tmp_path)), 0)
    (root / "test_batch").unlink()
    with pytest.raises(ValueError, match=r"has no data_batch_\* and test_batch files"):
        load_dataset(DataConfig(name="cifar10", path=str(tmp_path)), 0)
