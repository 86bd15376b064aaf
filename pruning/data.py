"""Data sets for the pruning pipeline, all offline: scikit-learn digits, MNIST IDX files, MNIST-1D.

Every loader returns `Splits` with a fixed stratified train/val/test split, float32
features scaled to [0, 1] (digits, MNIST) and int64 labels.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eie.golden_model.errors import InputError

__all__ = ["Splits", "load_digits_splits", "load_idx", "load_mnist_idx", "load_mnist1d", "load_dataset",
           "DATASETS"]


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

    The official test set stays the test set; 1/6 of the training set becomes validation.
    """
    from sklearn.model_selection import train_test_split  # scikit-learn: deferred (slow to import)

    d = Path(directory)

    def find(stem):
        for cand in (d / stem, d / f"{stem}.gz", d / stem.replace("-idx", ".idx")):
            if cand.is_file():
                return cand
        raise InputError(f"{d}: missing {stem}[.gz]")

    xtr = load_idx(find("train-images-idx3-ubyte")).reshape(-1, 28 * 28) / 255.0
    ytr = load_idx(find("train-labels-idx1-ubyte"))
    xte = load_idx(find("t10k-images-idx3-ubyte")).reshape(-1, 28 * 28) / 255.0
    yte = load_idx(find("t10k-labels-idx1-ubyte"))
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise InputError(f"{d}: image and label counts differ")
    x_train, x_val, y_train, y_val = train_test_split(xtr.astype(np.float32), ytr.astype(np.int64), test_size=1 / 6,
                                                      stratify=ytr, random_state=seed)
    return Splits("mnist", x_train, y_train, x_val, y_val, xte.astype(np.float32), yte.astype(np.int64), (28, 28))


def load_mnist1d(seed: int = 0) -> Splits:
    """MNIST-1D (Greydanus 2020), generated offline by the `mnist1d` package: 40 features."""
    from mnist1d.data import get_dataset_args, make_dataset  # only for --dataset mnist1d

    args = get_dataset_args()
    args.seed = 42 + seed
    d = make_dataset(args)
    x = np.concatenate([d["x"], d["x_test"]])
    y = np.concatenate([d["y"], d["y_test"]])
    return _split("mnist1d", x, y, seed, None)


DATASETS = {"digits": load_digits_splits, "mnist1d": load_mnist1d}


def load_dataset(name: str = "digits", path=None, seed: int = 0) -> Splits:
    """`digits` (default), `mnist1d`, or `mnist` (needs `path` to the IDX files)."""
    if name == "mnist":
        if path is None:
            raise InputError("dataset mnist: give the directory of the IDX files (--data-path); "
                             "nothing is downloaded")
        return load_mnist_idx(path, seed)
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}: expected one of {sorted(DATASETS) + ['mnist']}")
    return DATASETS[name](seed)
