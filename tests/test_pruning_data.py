"""Data loaders of the pruning pipeline: IDX files, digits splits, errors."""

import gzip
import struct

import numpy as np
import pytest

from eie.golden_model.errors import InputError
from eie.pruning.data import load_dataset, load_digits_splits, load_idx, load_mnist_idx


def write_idx(path, arr: np.ndarray, type_code: int = 0x08, dtype=">u1", gz: bool = False):
    header = bytes([0, 0, type_code, arr.ndim]) + b"".join(struct.pack(">I", n) for n in arr.shape)
    raw = header + np.asarray(arr, dtype=dtype).tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("type_code,dtype", [(0x08, ">u1"), (0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"),
                                             (0x0D, ">f4"), (0x0E, ">f8")])
def test_idx_round_trip(tmp_path, gz, type_code, dtype):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 100, (5, 3, 4)).astype(dtype)
    p = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), arr, type_code, dtype, gz)
    got = load_idx(p)
    assert got.shape == (5, 3, 4)
    np.testing.assert_array_equal(got, arr)


def test_idx_errors(tmp_path):
    with pytest.raises(InputError, match="no such IDX file"):
        load_idx(tmp_path / "missing")
    (tmp_path / "magic").write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(InputError, match="bad magic"):
        load_idx(tmp_path / "magic")
    (tmp_path / "type").write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(InputError, match="unknown IDX element type"):
        load_idx(tmp_path / "type")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x02" + struct.pack(">II", 3, 3) + b"\x00" * 8)
    with pytest.raises(InputError, match="truncated"):
        load_idx(tmp_path / "short")


def _mnist_dir(tmp_path, n_train=60, n_test=20, gz=False):
    rng = np.random.default_rng(1)
    sfx = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n_train, 28, 28)), gz=gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", np.arange(n_train) % 10, gz=gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n_test, 28, 28)), gz=gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", np.arange(n_test) % 10, gz=gz)
    return tmp_path


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_directory(tmp_path, gz):
    s = load_mnist_idx(_mnist_dir(tmp_path, gz=gz))
    assert s.sizes() == {"train": 50, "val": 10, "test": 20}
    assert s.x_train.shape[1] == 784 and s.image_shape == (28, 28)
    assert s.x_train.dtype == np.float32 and 0 <= s.x_train.min() and s.x_train.max() <= 1
    assert s.y_train.dtype == np.int64


def test_mnist_errors(tmp_path):
    with pytest.raises(InputError, match="missing train-images"):
        load_mnist_idx(tmp_path)
    d = _mnist_dir(tmp_path)
    write_idx(d / "t10k-labels-idx1-ubyte", np.arange(19) % 10)
    with pytest.raises(InputError, match="counts differ"):
        load_mnist_idx(d)
    with pytest.raises(InputError, match="data-path"):
        load_dataset("mnist")
    with pytest.raises(InputError, match="unknown dataset"):
        load_dataset("cifar")


def test_digits_split_sizes_and_stratification():
    s = load_digits_splits(0)
    sizes = s.sizes()
    assert sum(sizes.values()) == 1797
    assert sizes == {"train": 1077, "val": 360, "test": 360}
    assert s.n_features == 64 and s.n_classes == 10 and s.image_shape == (8, 8)
    assert 0 <= s.x_train.min() and s.x_train.max() <= 1
    full = np.bincount(np.concatenate([s.y_train, s.y_val, s.y_test]), minlength=10) / 1797
    for part in ("train", "val", "test"):
        frac = np.bincount(getattr(s, f"y_{part}"), minlength=10) / sizes[part]
        assert np.abs(frac - full).max() < 0.01, part  # stratified: class shares within 1 %
    # Disjoint: no test image is also in the training set (digits has no duplicates across splits).
    train_rows = {r.tobytes() for r in s.x_train}
    assert sum(r.tobytes() in train_rows for r in s.x_test) <= 2


def test_digits_split_is_seeded():
    a, b, c = load_digits_splits(0), load_digits_splits(0), load_digits_splits(1)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_test, c.x_test)
