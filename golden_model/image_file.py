"""EIE image file: versioned on-disk form of an EIEImage (docs/image-format.md).

Layout: 8-byte magic, u16 major, u16 minor, u32 header length H, H bytes of UTF-8
JSON, then the arrays, each 8-byte aligned at the offset its header entry gives,
little-endian, with a CRC-32. Loading checks every field and names the one that is
wrong; saving writes a temporary file beside the target and renames it into place.

Version 1.1 adds one optional array per layer, `row_perm` (load balancing); a layer's
`col_perm` is not stored, it is the previous layer's `row_perm`. An image without any
permutation is written as 1.0, byte for byte as before, and 1.0 files load unchanged.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from .errors import ImageFormatError
from .image import EIEImage, EncodedLayer

__all__ = ["MAGIC", "VERSION", "save_image", "load_image", "atomic_write_bytes"]

MAGIC = b"EIEIMAGE"
VERSION = (1, 1)            # newest this code writes (1.0 when no layer is permuted)
_PERM_MINOR = 1             # first minor version with layers[i].row_perm
_PREAMBLE = struct.Struct("<8sHHI")
_ARRAYS = {  # per-layer array -> required dtype
    "codebook": "<i2", "codebook_float": "<f4", "ptr": "<u4", "v": "|u1", "z": "|u1",
}
_OPTIONAL_ARRAYS = {  # per-layer array that may be absent -> required dtype (format 1.1)
    "row_perm": "<u4",
}
_LAYER_INTS = ("n_in", "n_out", "in_frac", "w_frac", "out_frac")


def atomic_write_bytes(path, chunks, overwrite: bool = False) -> Path:
    """Write `chunks` to `path` via a temporary file and os.replace.

    Nothing is left half-written on an error or Ctrl-C; an existing file is kept
    unless `overwrite` is set.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it (pass --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode open() would
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_image(image: EIEImage, path, overwrite: bool = False) -> Path:
    """Validate and write `image` to `path` atomically."""
    image.validate()
    arrays: list[tuple[str, np.ndarray]] = []
    layers_hdr = []
    for i, L in enumerate(image.layers):
        hdr = {"name": L.name, "relu": bool(L.relu), **{k: int(getattr(L, k)) for k in _LAYER_INTS}}
        for name, dtype in _ARRAYS.items():
            arrays.append((f"layers[{i}].{name}", np.ascontiguousarray(getattr(L, name), dtype=dtype)))
        for name, dtype in _OPTIONAL_ARRAYS.items():
            if getattr(L, name) is not None:
                arrays.append((f"layers[{i}].{name}", np.ascontiguousarray(getattr(L, name), dtype=dtype)))
        layers_hdr.append(hdr)
    minor = _PERM_MINOR if any(L.row_perm is not None for L in image.layers) else 0
    table, offset = {}, 0
    for name, arr in arrays:
        table[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset,
                       "nbytes": int(arr.nbytes), "crc32": zlib.crc32(arr.tobytes())}
        offset += (arr.nbytes + 7) // 8 * 8
    header = {"format": "eie-image", "n_pe": image.n_pe, "acc_depth": image.acc_depth,
              "layers": layers_hdr, "meta": image.meta, "arrays": table}
    hbytes = json.dumps(header, indent=1, sort_keys=True).encode()
    hbytes += b" " * ((-(len(hbytes) + _PREAMBLE.size)) % 8)

    def chunks():
        yield _PREAMBLE.pack(MAGIC, VERSION[0], minor, len(hbytes))
        yield hbytes
        for _, arr in arrays:
            yield arr.tobytes()
            yield b"\0" * ((-arr.nbytes) % 8)

    return atomic_write_bytes(path, chunks(), overwrite=overwrite)


def _fail(src, where, msg):
    raise ImageFormatError(f"{src}: {where}: {msg}")


def _get(obj: dict, key: str, typ: type, src: str, where: str):
    """obj[key], checked to be of `typ` (a bool is not accepted as an int)."""
    field = f"{where}.{key}" if where else key
    if not isinstance(obj, dict) or key not in obj:
        _fail(src, field, "missing")
    val = obj[key]
    if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
        _fail(src, field, f"expected {typ.__name__}, got {val!r}")
    return val


def load_image(path) -> EIEImage:
    """Read and fully validate an image file; ImageFormatError names the bad field."""
    path = Path(path)
    src = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageFormatError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise ImageFormatError(f"{src}: is a directory, expected an EIE image file") from None
    if len(data) < _PREAMBLE.size:
        _fail(src, "header", f"file is {len(data)} bytes, shorter than the {_PREAMBLE.size}-byte preamble")
    magic, major, minor, hlen = _PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        _fail(src, "magic", f"expected {MAGIC!r}, got {magic!r} (not an EIE image)")
    if major != VERSION[0]:
        _fail(src, "version", f"format version {major}.{minor} is not supported (this reader: {VERSION[0]}.x)")
    body = _PREAMBLE.size + hlen
    if body > len(data):
        _fail(src, "header", f"truncated: header claims {hlen} bytes, file has {len(data) - _PREAMBLE.size}")
    try:
        header = json.loads(data[_PREAMBLE.size:body].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(src, "header", f"not valid UTF-8 JSON ({e})")
    if not isinstance(header, dict) or header.get("format") != "eie-image":
        _fail(src, "header.format", "expected 'eie-image'")
    n_pe = _get(header, "n_pe", int, src, "")
    acc_depth = _get(header, "acc_depth", int, src, "")
    layers_hdr = _get(header, "layers", list, src, "")
    meta = _get(header, "meta", dict, src, "")
    table = _get(header, "arrays", dict, src, "")

    def array(name: str) -> np.ndarray:
        ent = _get(table, name, dict, src, "arrays")
        where = f"arrays[{name!r}]"
        dtype = _get(ent, "dtype", str, src, where)
        shape = _get(ent, "shape", list, src, where)
        off = _get(ent, "offset", int, src, where)
        nbytes = _get(ent, "nbytes", int, src, where)
        crc = _get(ent, "crc32", int, src, where)
        field = name.split(".")[-1]
        want = np.dtype(_ARRAYS.get(field) or _OPTIONAL_ARRAYS[field]).str
        if dtype != want:
            _fail(src, name, f"dtype {dtype!r}, expected {want!r}")
        if not all(isinstance(s, int) and s >= 0 for s in shape):
            _fail(src, name, f"shape {shape!r} is not a list of non-negative integers")
        itemsize = np.dtype(dtype).itemsize
        if int(np.prod(shape, dtype=np.int64)) * itemsize != nbytes:
            _fail(src, name, f"nbytes {nbytes} does not match shape {shape} of {dtype}")
        start = body + off
        if off < 0 or start + nbytes > len(data):
            _fail(src, name, f"truncated: needs bytes {start}..{start + nbytes} of a {len(data)}-byte file")
        raw = data[start:start + nbytes]
        if zlib.crc32(raw) != crc:
            _fail(src, name, "CRC-32 mismatch (corrupted file)")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()

    layers = []
    prev_perm = None
    for i, lh in enumerate(layers_hdr):
        w = f"layers[{i}]"
        kw = {k: _get(lh, k, int, src, w) for k in _LAYER_INTS}
        name = _get(lh, "name", str, src, w)
        relu = _get(lh, "relu", bool, src, w)
        arrs = {k: array(f"{w}.{k}") for k in _ARRAYS}
        # optional (1.1): a 1.0 file has none; a 1.0 reader ignores them (outputs then in hardware order)
        arrs |= {k: array(f"{w}.{k}") for k in _OPTIONAL_ARRAYS if f"{w}.{k}" in table}
        layer = EncodedLayer(name=name, relu=relu, acc_depth=acc_depth, col_perm=prev_perm, **kw, **arrs)
        layers.append(layer)
        prev_perm = layer.row_perm
    return EIEImage(n_pe=n_pe, acc_depth=acc_depth, layers=layers, meta=meta, source=src).validate()
