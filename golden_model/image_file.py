"""EIE image file: versioned on-disk form of an EIEImage (docs/image-format.md).

Layout: 8-byte magic, u16 major, u16 minor, u32 header length H, H bytes of UTF-8
JSON, then (version 1.2 on) an 8-byte integrity block (CRC-32 of every byte before it),
then the arrays, each 8-byte aligned at the offset its header entry gives,
little-endian, with a CRC-32. Loading checks every field and names the one that is
wrong; saving writes a temporary file beside the target and renames it into place.

Version 1.1 added one optional array per layer, `row_perm` (load balancing); a layer's
`col_perm` is not stored, it is the previous layer's `row_perm`. Version 1.2 adds the
header CRC; 1.0 and 1.1 files still load and are reported as having an unprotected
header (`EIEImage.file_format`). Version 1.3 adds `bias` (true/false) to every layer's
header: a layer with a bias stores one more column (EncodedLayer.bias); files before
1.3 have no biases.

The loader never holds the whole file: it checks every size against the file's size
before allocating anything, then reads each array with a bounded read. Every byte of a
file is either checked by a CRC or must be zero padding; a file may not extend past its
last array.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from eie.common import atomic_write_bytes

from .errors import ImageFormatError
from .files import FileAccessError, open_regular_file, read_exact
from .image import EIEImage, EncodedLayer, MAX_DIM, MAX_N_PE, MAX_ACC_DEPTH
from . import numerics as nm

__all__ = ["MAGIC", "VERSION", "MAX_HEADER_BYTES", "save_image", "load_image"]

MAGIC = b"EIEIMAGE"
VERSION = (1, 3)            # what this code writes
_PERM_MINOR = 1             # first minor version with layers[i].row_perm
_HEADER_CRC_MINOR = 2       # first minor version with the header integrity block
_BIAS_MINOR = 3             # first minor version with layers[i].bias
MAX_HEADER_BYTES = 16 << 20  # a header is a few kB per layer; anything larger is refused unread
_MAX_BYTES = (1 << 63) - 1  # offsets and sizes: a file cannot be larger (then checked against the file)
_PREAMBLE = struct.Struct("<8sHHI")
_INTEGRITY = struct.Struct("<II")  # CRC-32 of bytes [0, 16 + H), reserved (0)
_ARRAYS = {  # per-layer array -> (required dtype, number of dimensions)
    "codebook": ("<i2", 1), "codebook_float": ("<f4", 1), "ptr": ("<u4", 2), "v": ("|u1", 1), "z": ("|u1", 1),
}
_OPTIONAL_ARRAYS = {  # per-layer array that may be absent (format 1.1)
    "row_perm": ("<u4", 1),
}
# header integers and the range each must lie in before it is used at all
_LAYER_INTS = {"n_in": (1, MAX_DIM), "n_out": (1, MAX_DIM), "in_frac": (nm.MIN_FRAC, nm.MAX_FRAC),
               "w_frac": (nm.MIN_FRAC, nm.MAX_FRAC), "out_frac": (nm.MIN_FRAC, nm.MAX_FRAC)}


def _pad8(n: int) -> int:
    return (n + 7) // 8 * 8


def save_image(image: EIEImage, path, overwrite: bool = False) -> Path:
    """Validate and write `image` to `path` atomically (format 1.3)."""
    image.validate()
    arrays: list[tuple[str, np.ndarray]] = []
    layers_hdr = []
    for i, L in enumerate(image.layers):
        hdr = {"name": L.name, "relu": bool(L.relu), "bias": bool(L.bias),
               **{k: int(getattr(L, k)) for k in _LAYER_INTS}}
        for name, (dtype, _) in _ARRAYS.items():
            arrays.append((f"layers[{i}].{name}", np.ascontiguousarray(getattr(L, name), dtype=dtype)))
        for name, (dtype, _) in _OPTIONAL_ARRAYS.items():
            if getattr(L, name) is not None:
                arrays.append((f"layers[{i}].{name}", np.ascontiguousarray(getattr(L, name), dtype=dtype)))
        layers_hdr.append(hdr)
    table, offset = {}, _INTEGRITY.size
    for name, arr in arrays:
        table[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset,
                       "nbytes": int(arr.nbytes), "crc32": zlib.crc32(arr.tobytes())}
        offset += _pad8(arr.nbytes)
    header = {"format": "eie-image", "n_pe": image.n_pe, "acc_depth": image.acc_depth,
              "layers": layers_hdr, "meta": image.meta, "arrays": table}
    try:
        hbytes = json.dumps(header, indent=1, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as e:
        image.fail("meta", f"not representable as JSON ({e})")
    hbytes += b" " * ((-(len(hbytes) + _PREAMBLE.size)) % 8)
    if len(hbytes) > MAX_HEADER_BYTES:
        image.fail("meta", f"the header would be {len(hbytes):,} bytes; at most {MAX_HEADER_BYTES:,} are allowed")
    head = _PREAMBLE.pack(MAGIC, VERSION[0], VERSION[1], len(hbytes)) + hbytes

    def chunks():
        yield head
        yield _INTEGRITY.pack(zlib.crc32(head), 0)
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
        _fail(src, field, f"expected {typ.__name__}, got {_short(val)}")
    return val


def _get_int(obj: dict, key: str, lo: int, hi: int, src: str, where: str) -> int:
    """obj[key] as an int in lo..hi (checked before anything uses it)."""
    val = _get(obj, key, int, src, where)
    if not lo <= val <= hi:
        _fail(src, f"{where}.{key}" if where else key, f"expected an integer in {lo}..{hi}, got {_short(val)}")
    return val


def _short(val) -> str:
    """repr of a header value, cut short (a hostile header may hold 5,000-digit integers)."""
    if isinstance(val, int) and not isinstance(val, bool) and abs(val) >= 10 ** 30:
        return f"an integer of {len(str(abs(val))) if abs(val) < 10 ** 4000 else 'over 4,000'} digits"
    text = repr(val)
    return text if len(text) <= 60 else text[:57] + "..."


def load_image(path) -> EIEImage:
    """Read and fully validate an image file; ImageFormatError names the bad field."""
    src = str(Path(path))
    try:
        f, size = open_regular_file(path, "EIE image file")
    except FileAccessError as e:
        raise ImageFormatError(str(e)) from None
    with f:
        return _load(f, size, src)


def _load(f, size: int, src: str) -> EIEImage:
    if size < _PREAMBLE.size:
        _fail(src, "header", f"file is {size} bytes, shorter than the {_PREAMBLE.size}-byte preamble")
    pre = bytes(read_exact(f, 0, _PREAMBLE.size, src, "header"))
    magic, major, minor, hlen = _PREAMBLE.unpack(pre)
    if magic != MAGIC:
        _fail(src, "magic", f"expected {MAGIC!r}, got {magic!r} (not an EIE image)")
    if major != VERSION[0]:
        _fail(src, "version", f"format version {major}.{minor} is not supported (this reader: {VERSION[0]}.x)")
    body = _PREAMBLE.size + hlen
    if body > size:
        _fail(src, "header", f"truncated: header claims {hlen} bytes, file has {size - _PREAMBLE.size}")
    if hlen > MAX_HEADER_BYTES:
        _fail(src, "header", f"header length {hlen:,} bytes exceeds the limit of {MAX_HEADER_BYTES:,}")
    hbytes = bytes(read_exact(f, _PREAMBLE.size, hlen, src, "header"))
    protected = minor >= _HEADER_CRC_MINOR
    data_start = 0
    if protected:
        if body + _INTEGRITY.size > size:
            _fail(src, "header", f"truncated: the header CRC at bytes {body}..{body + _INTEGRITY.size} "
                                 f"is past the end of a {size}-byte file")
        crc, reserved = _INTEGRITY.unpack(bytes(read_exact(f, body, _INTEGRITY.size, src, "header CRC")))
        if zlib.crc32(pre + hbytes) != crc:
            _fail(src, "header", "CRC-32 mismatch (corrupted header)")
        if reserved != 0:
            _fail(src, "header", f"reserved word after the header CRC is {reserved:#x}, expected 0")
        data_start = _INTEGRITY.size
    try:
        header = json.loads(hbytes.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        _fail(src, "header", f"not valid UTF-8 JSON ({_short(str(e))})")
    if not isinstance(header, dict) or header.get("format") != "eie-image":
        _fail(src, "header.format", "expected 'eie-image'")
    n_pe = _get_int(header, "n_pe", 1, MAX_N_PE, src, "")
    acc_depth = _get_int(header, "acc_depth", 1, MAX_ACC_DEPTH, src, "")
    layers_hdr = _get(header, "layers", list, src, "")
    meta = _get(header, "meta", dict, src, "")
    table = _get(header, "arrays", dict, src, "")
    if not layers_hdr:
        _fail(src, "layers", "expected at least one layer")
    entries = {}  # name -> (offset, nbytes, dtype, shape, crc)
    names = []
    for i, lh in enumerate(layers_hdr):
        names += [f"layers[{i}].{k}" for k in _ARRAYS]
        names += [f"layers[{i}].{k}" for k in _OPTIONAL_ARRAYS if f"layers[{i}].{k}" in table]
    for name in names:
        entries[name] = _array_entry(table, name, size - body, src)
    extra = sorted(set(table) - set(entries))
    if extra and minor <= VERSION[1]:
        _fail(src, f"arrays[{extra[0]!r}]", "not an array of this format version")
    _check_tiling(entries, data_start, size - body, src)

    def array(name: str) -> np.ndarray:
        off, nbytes, dtype, shape, crc = entries[name]
        raw = read_exact(f, body + off, _pad8(nbytes), src, name)
        if zlib.crc32(memoryview(raw)[:nbytes]) != crc:
            _fail(src, name, "CRC-32 mismatch (corrupted file)")
        if any(raw[nbytes:]):
            _fail(src, name, "padding after the array is not zero")
        return np.frombuffer(raw, dtype=dtype, count=math.prod(shape)).reshape(shape)

    layers = []
    prev_perm = None
    for i, lh in enumerate(layers_hdr):
        w = f"layers[{i}]"
        kw = {k: _get_int(lh, k, lo, hi, src, w) for k, (lo, hi) in _LAYER_INTS.items()}
        name = _get(lh, "name", str, src, w)
        relu = _get(lh, "relu", bool, src, w)
        if minor >= _BIAS_MINOR:
            bias = _get(lh, "bias", bool, src, w)
        elif "bias" in lh:
            _fail(src, f"{w}.bias", f"not a field of format version {major}.{minor} (biases came with 1.3)")
        else:
            bias = False
        arrs = {k: array(f"{w}.{k}") for k in _ARRAYS}
        # optional (1.1): a 1.0 file has none; a 1.0 reader ignores them (outputs then in hardware order)
        arrs |= {k: array(f"{w}.{k}") for k in _OPTIONAL_ARRAYS if f"{w}.{k}" in table}
        layer = EncodedLayer(name=name, relu=relu, acc_depth=acc_depth, col_perm=prev_perm, bias=bias, **kw, **arrs)
        layers.append(layer)
        prev_perm = layer.row_perm
    fmt = {"version": f"{major}.{minor}", "header": "crc32" if protected else "unprotected"}
    return EIEImage(n_pe=n_pe, acc_depth=acc_depth, layers=layers, meta=meta, source=src,
                    file_format=fmt).validate()


def _array_entry(table: dict, name: str, room: int, src: str):
    """(offset, nbytes, dtype, shape, crc) of one table entry, each checked against `room`,
    the bytes after the header, before anything is allocated."""
    ent = _get(table, name, dict, src, "arrays")
    where = f"arrays[{name!r}]"
    dtype = _get(ent, "dtype", str, src, where)
    shape = _get(ent, "shape", list, src, where)
    off = _get_int(ent, "offset", 0, _MAX_BYTES, src, where)
    nbytes = _get_int(ent, "nbytes", 0, _MAX_BYTES, src, where)
    crc = _get_int(ent, "crc32", 0, 0xFFFFFFFF, src, where)
    field = name.split(".")[-1]
    want, ndim = _ARRAYS.get(field) or _OPTIONAL_ARRAYS[field]
    want = np.dtype(want).str
    if dtype != want:
        _fail(src, name, f"dtype {_short(dtype)}, expected {want!r}")
    if len(shape) != ndim or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= _MAX_BYTES
                                     for s in shape):
        _fail(src, name, f"shape {_short(shape)} is not a list of {ndim} non-negative integers")
    if math.prod(shape) * np.dtype(dtype).itemsize != nbytes:
        _fail(src, name, f"nbytes {nbytes} does not match shape {shape} of {dtype}")
    if off % 8:
        _fail(src, name, f"offset {off} is not a multiple of 8")
    if off + nbytes > room:
        _fail(src, name, f"truncated: needs bytes {off}..{off + nbytes} after the header, the file has {room}")
    return off, nbytes, dtype, shape, crc


def _check_tiling(entries: dict, start: int, room: int, src: str) -> None:
    """The arrays (each padded to 8 bytes) follow one another from `start` with no gap or
    overlap, and the file ends with the last one: no byte goes unchecked."""
    cursor = start
    for name, (off, nbytes, *_rest) in sorted(entries.items(), key=lambda kv: (kv[1][0], kv[1][1])):
        if off != cursor:
            what = "overlaps the previous array" if off < cursor else f"leaves {off - cursor} unchecked bytes before it"
            _fail(src, name, f"offset {off} {what} (expected {cursor})")
        cursor += _pad8(nbytes)
    if room != cursor:
        if room < cursor:
            _fail(src, "arrays", f"truncated: the last array ends at byte {cursor} after the header, the file has {room}")
        _fail(src, "arrays", f"{room - cursor:,} unexpected bytes after the last array")
