"""User-supplied arrays (.npy / .npz files, weights, inputs): load them without trusting
their headers, and accept only real numbers.

A .npy header states a shape; it is checked against the bytes the file (or the .npz
member) actually holds before anything is allocated. Pickles are never loaded. Complex
values are refused rather than silently losing their imaginary part.
"""

from __future__ import annotations

import math
import zipfile

import numpy as np

from .errors import InputError
from .files import FileAccessError, open_regular_file

__all__ = ["load_array_file", "real_array"]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def real_array(a, what: str) -> np.ndarray:
    """`a` as an ndarray of real numbers (integer or float dtype); InputError otherwise."""
    a = np.asarray(a)
    if a.dtype.kind == "c":
        raise InputError(f"{what}: complex numbers (dtype {a.dtype}) are not supported; "
                         f"pass the real part explicitly if that is what you mean")
    if a.dtype.kind not in "iuf":
        raise InputError(f"{what}: expected real numbers, got dtype {a.dtype}")
    return a


def load_array_file(path, what: str):
    """An ndarray (.npy) or {member name: ndarray} (.npz, in archive order)."""
    try:
        f, size = open_regular_file(path, ".npy or .npz file")
    except FileAccessError as e:
        raise InputError(f"{what} {e}") from None
    with f:
        head = f.read(8)
        f.seek(0)
        try:
            if head.startswith(_NPY_MAGIC):
                return _read_npy(f, size, f"{what} {path}")
            if head.startswith(_ZIP_MAGIC):
                return _read_npz(f, f"{what} {path}")
        except InputError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError, SyntaxError) as e:
            raise InputError(f"{what} {path}: not a readable .npy/.npz file ({type(e).__name__}: "
                             f"{str(e)[:200]})") from None
    raise InputError(f"{what} {path}: not a readable .npy/.npz file (no NumPy or zip signature)")


def _read_npy(f, size: int, where: str) -> np.ndarray:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if dtype.hasobject:
        raise InputError(f"{where}: holds Python objects (dtype {dtype}); only plain numeric arrays are read")
    need = math.prod(shape) * dtype.itemsize
    have = size - f.tell()
    if need > have:
        raise InputError(f"{where}: header claims shape {shape} of {dtype} ({need:,} bytes) but the file "
                         f"holds {have:,} bytes of data")
    f.seek(0)
    return np.lib.format.read_array(f, allow_pickle=False)


def _read_npz(f, where: str) -> dict:
    out = {}
    with zipfile.ZipFile(f) as z:
        for info in z.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with z.open(info) as m:
                sub = f"{where}[{name}]"
                if not m.read(6) == _NPY_MAGIC:
                    raise InputError(f"{sub}: member is not a .npy array")
            with z.open(info) as m:
                version = np.lib.format.read_magic(m)
                hdr = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = hdr(m)
                if dtype.hasobject:
                    raise InputError(f"{sub}: holds Python objects (dtype {dtype}); only plain numeric arrays are read")
                need = math.prod(shape) * dtype.itemsize
                if need > info.file_size:
                    raise InputError(f"{sub}: header claims {need:,} bytes of data, the member holds "
                                     f"{info.file_size:,}")
            with z.open(info) as m:
                out[name] = np.lib.format.read_array(m, allow_pickle=False)
    return out
