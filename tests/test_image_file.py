"""On-disk EIE image format (docs/image-format.md): layout, round trip, every rejected
file naming its field, and atomic writes."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import stat
import struct
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from eie.golden_model import EIEImage, ImageFormatError, decode_weights, encode_layer, encode_network
from eie.golden_model import files, image_file
from eie.common import atomic_write_bytes
from eie.golden_model.image_file import MAGIC, VERSION, load_image, save_image

from .helpers import sparse_matrix

PREAMBLE = struct.Struct("<8sHHI")  # magic, major, minor, header length (documented layout)
INTEGRITY = struct.Struct("<II")    # from 1.2: CRC-32 of the preamble and header, reserved 0
ARRAY_FIELDS = ("codebook", "codebook_float", "ptr", "v", "z")
DOC_DTYPES = {"codebook": "<i2", "codebook_float": "<f4", "ptr": "<u4", "v": "|u1", "z": "|u1"}
N_PE = 4


# -- images -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def net():
    """Three layers, 4 PEs, acc_depth 4 (several output batches per layer), calibrated."""
    rng = np.random.default_rng(20240611)
    Ws = [sparse_matrix(rng, 24, 20, 0.3), sparse_matrix(rng, 18, 24, 0.4), sparse_matrix(rng, 6, 18, 0.5)]
    calib = rng.normal(0, 1, (5, 20))
    meta = {"weights": "unit-test", "pruning": {"method": "magnitude", "density": [0.3, 0.4, 0.5]},
            "note": "Ünïcode ✓", "n": 3}
    return encode_network(Ws, N_PE, acc_depth=4, calibration=calib, meta=meta)


@pytest.fixture(scope="module")
def single():
    """One layer, 4 PEs, one output batch (acc_depth 64): 30 outputs, 12 inputs."""
    rng = np.random.default_rng(7)
    W = sparse_matrix(rng, 30, 12, 0.35)
    return encode_network([W], N_PE, acc_depth=64, calibration=rng.normal(0, 1, (3, 12)))


@pytest.fixture(scope="module")
def padded():
    """Tall, very sparse layer on 2 PEs: long zero runs need (v=0, z=15) padding entries."""
    rng = np.random.default_rng(99)
    W = sparse_matrix(rng, 200, 10, 0.03)
    W[0, :] = 0.25  # column starts
    W[199, :] = -0.5  # and ends: gaps of up to ~98 local rows in one column
    return encode_network([W], 2, acc_depth=128, calibration=rng.normal(0, 1, (2, 10)))


# -- raw file helpers (documented layout, written independently of save_image) -----------
@dataclasses.dataclass
class Raw:
    magic: bytes
    major: int
    minor: int
    header: dict
    arrays: dict  # name -> ndarray, in file order


def read_raw(path) -> Raw:
    data = Path(path).read_bytes()
    magic, major, minor, hlen = PREAMBLE.unpack_from(data)
    body = PREAMBLE.size + hlen
    header = json.loads(data[PREAMBLE.size:body].decode())
    arrays = {}
    for name, ent in sorted(header["arrays"].items(), key=lambda kv: kv[1]["offset"]):
        raw = data[body + ent["offset"]: body + ent["offset"] + ent["nbytes"]]
        arrays[name] = np.frombuffer(raw, dtype=ent["dtype"]).reshape(ent["shape"]).copy()
    return Raw(magic, major, minor, header, arrays)


def write_raw(path, raw: Raw, edit_header=None) -> Path:
    """Write `raw` in the documented layout with recomputed offsets, sizes and CRCs.

    `edit_header(header)` may change the header after the array table is built. From
    minor version 2 on, the header's CRC block follows the header and the arrays follow it."""
    header = copy.deepcopy(raw.header)
    protected = raw.minor >= 2
    table, blobs, offset = {}, [], INTEGRITY.size if protected else 0
    for name, arr in raw.arrays.items():
        arr = np.ascontiguousarray(arr)
        b = arr.tobytes()
        table[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset,
                       "nbytes": len(b), "crc32": zlib.crc32(b)}
        blobs.append(b + b"\0" * ((-len(b)) % 8))
        offset += len(blobs[-1])
    header["arrays"] = table
    if edit_header is not None:
        edit_header(header)
    hbytes = json.dumps(header).encode()
    hbytes += b" " * ((-(len(hbytes) + PREAMBLE.size)) % 8)
    head = PREAMBLE.pack(raw.magic, raw.major, raw.minor, len(hbytes)) + hbytes
    crc = INTEGRITY.pack(zlib.crc32(head), 0) if protected else b""
    path = Path(path)
    path.write_bytes(head + crc + b"".join(blobs))
    return path


def as_version(raw: Raw, minor: int) -> Raw:
    """`raw` relabelled as format 1.`minor`: the layer fields that minor has not (bias, 1.3)
    are dropped (only bias-free images can be written as such)."""
    raw.minor = minor
    if minor < 3:
        for lh in raw.header["layers"]:
            assert not lh.pop("bias", False), "a biased layer has no form before 1.3"
    return raw


def save_unvalidated(image: EIEImage, path) -> Path:
    """save_image without its validate() step, to put an invalid image on disk."""
    with mock.patch.object(EIEImage, "validate", lambda self: self):
        return save_image(image, path)


def with_layer(image: EIEImage, i: int, **changes) -> EIEImage:
    """A copy of `image` whose layer i has `changes` (fresh objects: no cached coordinates)."""
    layers = list(image.layers)
    layers[i] = dataclasses.replace(layers[i], **changes)
    return EIEImage(n_pe=image.n_pe, acc_depth=image.acc_depth, layers=layers, meta=dict(image.meta))


def assert_same_image(a: EIEImage, b: EIEImage):
    assert (a.n_pe, a.acc_depth, len(a.layers)) == (b.n_pe, b.acc_depth, len(b.layers))
    assert a.meta == b.meta
    for La, Lb in zip(a.layers, b.layers):
        for f in ("name", "n_in", "n_out", "relu", "in_frac", "w_frac", "out_frac", "acc_depth"):
            assert getattr(La, f) == getattr(Lb, f), f
        for f in ARRAY_FIELDS:
            x, y = getattr(La, f), getattr(Lb, f)
            assert x.shape == y.shape, f
            assert np.array_equal(x, y), f


@pytest.fixture
def saved(net, tmp_path):
    return save_image(net, tmp_path / "net.eie")


@pytest.fixture
def saved_single(single, tmp_path):
    return save_image(single, tmp_path / "single.eie")


# -- round trip and layout ---------------------------------------------------------------
def test_round_trip_multilayer(net, saved):
    loaded = load_image(saved)
    assert_same_image(net, loaded)
    assert loaded.source == str(saved)
    for L in loaded.layers:
        for f, dt in DOC_DTYPES.items():
            assert getattr(L, f).dtype == np.dtype(dt), f
    for La, Lb in zip(net.layers, loaded.layers):
        assert np.array_equal(decode_weights(La), decode_weights(Lb))


def test_round_trip_preserves_meta(net, saved):
    meta = load_image(saved).meta
    assert meta == net.meta
    assert meta["note"] == "Ünïcode ✓" and meta["pruning"]["density"] == [0.3, 0.4, 0.5]


def test_round_trip_with_padding_entries(padded, tmp_path):
    L = padded.layers[0]
    pad = (L.v == 0)
    assert pad.any() and np.all(L.z[pad] == 15)  # the fixture really exercises padding
    loaded = load_image(save_image(padded, tmp_path / "p.eie"))
    assert_same_image(padded, loaded)
    assert np.array_equal(decode_weights(loaded.layers[0]), decode_weights(L))


def test_file_layout_matches_the_documentation(net, saved):
    data = saved.read_bytes()
    magic, major, minor, hlen = PREAMBLE.unpack_from(data)
    assert magic == b"EIEIMAGE" and (major, minor) == (1, 3)
    body = PREAMBLE.size + hlen
    assert body % 8 == 0
    crc, reserved = INTEGRITY.unpack_from(data, body)
    assert crc == zlib.crc32(data[:body]) and reserved == 0
    header = json.loads(data[PREAMBLE.size:body].decode("utf-8"))
    assert header["format"] == "eie-image"
    assert (header["n_pe"], header["acc_depth"]) == (net.n_pe, net.acc_depth)
    assert [h["name"] for h in header["layers"]] == [L.name for L in net.layers]
    end = 0
    for i, L in enumerate(net.layers):
        hl = header["layers"][i]
        assert (hl["n_in"], hl["n_out"], hl["relu"]) == (L.n_in, L.n_out, L.relu)
        for f in ARRAY_FIELDS:
            ent = header["arrays"][f"layers[{i}].{f}"]
            assert ent["offset"] % 8 == 0
            assert ent["dtype"] == np.dtype(DOC_DTYPES[f]).str
            raw = data[body + ent["offset"]: body + ent["offset"] + ent["nbytes"]]
            assert zlib.crc32(raw) == ent["crc32"]
            arr = np.frombuffer(raw, dtype=ent["dtype"]).reshape(ent["shape"])
            assert np.array_equal(arr, getattr(L, f))
            end = max(end, body + ent["offset"] + ent["nbytes"])
    assert end <= len(data) < end + 8
    assert min(e["offset"] for e in header["arrays"].values()) == INTEGRITY.size


def test_independent_writer_is_accepted(net, saved, tmp_path):
    """A file written from the documentation alone (other JSON formatting) loads the same."""
    out = write_raw(tmp_path / "rewritten.eie", read_raw(saved))
    assert out.read_bytes() != saved.read_bytes()
    assert_same_image(net, load_image(out))


def test_newer_minor_version_is_accepted(net, saved, tmp_path):
    raw = read_raw(saved)
    raw.minor = VERSION[1] + 7
    assert_same_image(net, load_image(write_raw(tmp_path / "minor.eie", raw)))


# -- preamble, header, truncation, CRC ----------------------------------------------------
def test_wrong_magic(saved):
    data = bytearray(saved.read_bytes())
    data[:8] = b"NOTANEIE"
    saved.write_bytes(bytes(data))
    with pytest.raises(ImageFormatError, match="magic"):
        load_image(saved)


def test_npy_file_is_not_an_image(tmp_path):
    p = tmp_path / "w.npy"
    np.save(p, np.zeros((4, 4)))
    with pytest.raises(ImageFormatError, match="magic"):
        load_image(p)


@pytest.mark.parametrize("major", [0, 2, 65535])
def test_unsupported_major_version(saved, tmp_path, major):
    raw = read_raw(saved)
    raw.major = major
    with pytest.raises(ImageFormatError, match=rf"version: format version {major}\.{VERSION[1]}"):
        load_image(write_raw(tmp_path / "v.eie", raw))


def _array_span(path, name):
    data = path.read_bytes()
    hlen = PREAMBLE.unpack_from(data)[3]
    ent = json.loads(data[PREAMBLE.size:PREAMBLE.size + hlen])["arrays"][name]
    start = PREAMBLE.size + hlen + ent["offset"]
    return start, start + ent["nbytes"]


@pytest.mark.parametrize("cut", ["empty", "preamble", "after_preamble", "header", "ptr", "z_last"])
def test_truncated_file(saved, cut):
    data = saved.read_bytes()
    hlen = PREAMBLE.unpack_from(data)[3]
    n_layers = 3
    if cut == "empty":
        n, match = 0, r"header: file is 0 bytes, shorter than the 16-byte preamble"
    elif cut == "preamble":
        n, match = 11, r"header: file is 11 bytes, shorter than the 16-byte preamble"
    elif cut == "after_preamble":
        n, match = PREAMBLE.size, r"header: truncated"
    elif cut == "header":
        n, match = PREAMBLE.size + hlen // 2, r"header: truncated"
    elif cut == "ptr":
        s, e = _array_span(saved, "layers[0].ptr")
        n, match = (s + e) // 2, r"layers\[0\]\.ptr: truncated"
    else:
        s, e = _array_span(saved, f"layers[{n_layers - 1}].z")
        n, match = e - 1, rf"layers\[{n_layers - 1}\]\.z: truncated"
    saved.write_bytes(data[:n])
    with pytest.raises(ImageFormatError, match=match):
        load_image(saved)


def reseal_header(data: bytearray) -> bytearray:
    """Recompute a 1.2 file's header CRC after an edit of its preamble or header."""
    body = PREAMBLE.size + PREAMBLE.unpack_from(data)[3]
    INTEGRITY.pack_into(data, body, zlib.crc32(bytes(data[:body])), 0)
    return data


def test_header_not_json(saved):
    data = bytearray(saved.read_bytes())
    data[PREAMBLE.size] = ord("#")  # the opening brace
    saved.write_bytes(bytes(reseal_header(data)))
    with pytest.raises(ImageFormatError, match=r"header: not valid UTF-8 JSON"):
        load_image(saved)


def test_header_edit_fails_the_header_crc(saved):
    data = bytearray(saved.read_bytes())
    data[PREAMBLE.size] = ord("#")
    saved.write_bytes(bytes(data))
    with pytest.raises(ImageFormatError, match=r"header: CRC-32 mismatch"):
        load_image(saved)


@pytest.mark.parametrize("layer", [0, 2])
@pytest.mark.parametrize("field", ARRAY_FIELDS)
def test_corrupted_array_bytes_fail_crc(saved, layer, field):
    name = f"layers[{layer}].{field}"
    s, e = _array_span(saved, name)
    data = bytearray(saved.read_bytes())
    data[(s + e) // 2] ^= 0x40
    saved.write_bytes(bytes(data))
    with pytest.raises(ImageFormatError, match=re.escape(name) + r": CRC-32 mismatch"):
        load_image(saved)


def test_array_dtype_and_nbytes_checked(saved, tmp_path):
    raw = read_raw(saved)
    raw.arrays["layers[1].ptr"] = raw.arrays["layers[1].ptr"].astype("<u8")
    with pytest.raises(ImageFormatError, match=r"layers\[1\]\.ptr: dtype '<u8'"):
        load_image(write_raw(tmp_path / "dtype.eie", raw))

    def bad_nbytes(h):
        h["arrays"]["layers[0].v"]["nbytes"] += 1
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.v: nbytes"):
        load_image(write_raw(tmp_path / "nbytes.eie", read_raw(saved), bad_nbytes))


# -- missing header fields ----------------------------------------------------------------
@pytest.mark.parametrize("keys, field", [
    (("format",), "header.format"),
    (("n_pe",), "n_pe"),
    (("acc_depth",), "acc_depth"),
    (("layers",), "layers"),
    (("meta",), "meta"),
    (("arrays",), "arrays"),
    (("layers", 0, "n_out"), "layers[0].n_out"),
    (("layers", 1, "in_frac"), "layers[1].in_frac"),
    (("layers", 2, "relu"), "layers[2].relu"),
    (("layers", 0, "name"), "layers[0].name"),
    (("arrays", "layers[1].z"), "arrays.layers[1].z"),
    (("arrays", "layers[0].ptr", "crc32"), "arrays['layers[0].ptr'].crc32"),
])
def test_missing_header_field(saved, tmp_path, keys, field):
    def drop(h):
        obj = h
        for k in keys[:-1]:
            obj = obj[k]
        del obj[keys[-1]]
    p = write_raw(tmp_path / "missing.eie", read_raw(saved), drop)
    with pytest.raises(ImageFormatError, match=re.escape(field) + r": (missing|expected 'eie-image')"):
        load_image(p)


@pytest.mark.parametrize("keys, value, field", [
    (("n_pe",), "4", "n_pe"),
    (("n_pe",), True, "n_pe"),
    (("layers", 0, "relu"), 1, "layers[0].relu"),
    (("layers", 1, "n_in"), 24.0, "layers[1].n_in"),
])
def test_mistyped_header_field(saved, tmp_path, keys, value, field):
    def set_(h):
        obj = h
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value
    p = write_raw(tmp_path / "typed.eie", read_raw(saved), set_)
    with pytest.raises(ImageFormatError, match=re.escape(field) + ": expected"):
        load_image(p)


# -- content rules (file and in-memory validate) -----------------------------------------
def _edit_array(saved, tmp_path, name, fn):
    raw = read_raw(saved)
    raw.arrays[name] = fn(raw.arrays[name].copy())
    return write_raw(tmp_path / "edited.eie", raw)


def _first_pe_with_entries(L, at_least=1):
    return int(np.flatnonzero(L.entries_per_pe >= at_least)[0])


def test_pointers_not_non_decreasing(single, saved_single, tmp_path):
    L = single.layers[0]
    k = _first_pe_with_entries(L)
    assert L.ptr.shape[1] >= 3

    def bump(p):
        p[k, 1] = p[k, -1] + 3  # ptr[k][2] <= ptr[k][-1] < ptr[k][1]
        return p
    with pytest.raises(ImageFormatError, match=rf"layers\[0\]\.ptr\[PE {k}\]: pointers must be non-decreasing"):
        load_image(_edit_array(saved_single, tmp_path, "layers[0].ptr", bump))
    with pytest.raises(ImageFormatError, match=rf"layers\[0\]\.ptr\[PE {k}\]: pointers must be non-decreasing"):
        with_layer(single, 0, ptr=bump(L.ptr.copy())).validate()


@pytest.mark.parametrize("array, index, match", [
    ("layers[0].ptr", 2, r"layers\[0\]\.ptr\[PE 2\]\[0\]: expected 0"),                     # PE 2's pointers start at 1
    ("layers[0].codebook", 3, r"layers\[0\]\.codebook\[3\]: .* is not codebook_float\[3\]"),  # not the quantised float
])
def test_one_element_off_by_one_is_named(single, saved_single, tmp_path, array, index, match):
    def bump(a):
        a[index] += 1
        return a
    with pytest.raises(ImageFormatError, match=match):
        load_image(_edit_array(saved_single, tmp_path, array, bump))


def test_last_pointer_past_the_end(single, saved_single, tmp_path):
    total = int(single.layers[0].ptr[:, -1].astype(np.int64).sum())

    def grow(p):
        p[N_PE - 1, -1] += 2
        return p
    with pytest.raises(ImageFormatError, match=rf"layers\[0\]\.v: expected {total + 2} entries"):
        load_image(_edit_array(saved_single, tmp_path, "layers[0].ptr", grow))


@pytest.mark.parametrize("name", ["v", "z"])
def test_v_z_length_mismatch(single, saved_single, tmp_path, name):
    total = int(single.layers[0].ptr[:, -1].astype(np.int64).sum())
    with pytest.raises(ImageFormatError, match=rf"layers\[0\]\.{name}: expected {total} entries"):
        load_image(_edit_array(saved_single, tmp_path, f"layers[0].{name}", lambda a: a[:-1]))
    L = single.layers[0]
    with pytest.raises(ImageFormatError, match=rf"layers\[0\]\.{name}: expected {total} entries"):
        with_layer(single, 0, **{name: np.concatenate([getattr(L, name), [1]]).astype(np.uint8)}).validate()


@pytest.mark.parametrize("size", [15, 17])
def test_codebook_size(single, saved_single, tmp_path, size):
    def resize(cb):
        return np.resize(cb, size)
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.codebook: expected 16 entries"):
        load_image(_edit_array(saved_single, tmp_path, "layers[0].codebook", resize))
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.codebook_float: expected 16 entries"):
        load_image(_edit_array(saved_single, tmp_path, "layers[0].codebook_float", resize))


def test_codebook_entry_zero_reserved(single, saved_single, tmp_path):
    def set0(cb):
        cb[0] = 5
        return cb
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.codebook\[0\]: entry 0 is reserved"):
        load_image(_edit_array(saved_single, tmp_path, "layers[0].codebook", set0))
    L = single.layers[0]
    cbf = L.codebook_float.copy()
    cbf[0] = 0.5
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.codebook\[0\]"):
        with_layer(single, 0, codebook_float=cbf).validate()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_codebook_float(single, saved_single, tmp_path, bad):
    def poison(cbf):
        cbf[6] = bad
        return cbf
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.codebook_float\[6\]: expected a finite number"):
        load_image(_edit_array(saved_single, tmp_path, "layers[0].codebook_float", poison))
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.codebook_float\[6\]"):
        with_layer(single, 0, codebook_float=poison(single.layers[0].codebook_float.copy())).validate()


@pytest.mark.parametrize("name, value", [("v", 16), ("v", 255), ("z", 16), ("z", 200)])
def test_v_or_z_above_15(single, saved_single, tmp_path, name, value):
    pos = 5

    def poke(a):
        a[pos] = value
        return a
    with pytest.raises(ImageFormatError, match=rf"layers\[0\]\.{name}\[{pos}\]: {value} does not fit 4 bits"):
        load_image(_edit_array(saved_single, tmp_path, f"layers[0].{name}", poke))
    with pytest.raises(ImageFormatError, match=rf"layers\[0\]\.{name}\[{pos}\]"):
        with_layer(single, 0, **{name: poke(getattr(single.layers[0], name).copy())}).validate()


def test_n_out_too_small_for_the_rows_the_z_reach(single, saved_single, tmp_path):
    L = single.layers[0]
    assert L.n_out == 30 and decode_weights(L)[5:].any()  # entries live below row 5

    def shrink(h):
        h["layers"][0]["n_out"] = 5  # still one output batch: the pointers keep their shape
    p = write_raw(tmp_path / "n_out.eie", read_raw(saved_single), shrink)
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.z: .*shape mismatch"):
        load_image(p)
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.z: .*shape mismatch"):
        with_layer(single, 0, n_out=5).validate()


def test_large_zero_run_lands_past_the_block(single):
    L = single.layers[0]
    k = _first_pe_with_entries(L)
    z = L.z.copy()
    z[int(L.entry_offsets[k])] = 15  # PE k holds only ceil((30 - k) / 4) <= 8 rows
    with pytest.raises(ImageFormatError, match=rf"layers\[0\]\.z: entry 0 of PE {k} lands on local row 15"):
        with_layer(single, 0, z=z).validate()


@pytest.mark.parametrize("n_in", [11, 13])
def test_ptr_shape_must_match_n_in(saved_single, tmp_path, n_in):
    def change(h):
        h["layers"][0]["n_in"] = n_in
    p = write_raw(tmp_path / "n_in.eie", read_raw(saved_single), change)
    with pytest.raises(ImageFormatError, match=rf"layers\[0\]\.ptr: expected shape \(4, {n_in + 1}\)"):
        load_image(p)


def test_ptr_rows_must_match_n_pe(saved_single, tmp_path):
    def change(h):
        h["n_pe"] = 8
    p = write_raw(tmp_path / "n_pe.eie", read_raw(saved_single), change)
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.ptr: expected one pointer array per PE \(8\)"):
        load_image(p)


@pytest.mark.parametrize("key, value", [("n_pe", 0), ("acc_depth", 0), ("acc_depth", -3)])
def test_non_positive_sizes(saved_single, tmp_path, key, value):
    def change(h):
        h[key] = value
    p = write_raw(tmp_path / "sizes.eie", read_raw(saved_single), change)
    with pytest.raises(ImageFormatError, match=rf": {key}: expected an integer in 1\.\."):
        load_image(p)


def test_chaining_in_frac_mismatch(net, saved, tmp_path):
    def bump(h):
        h["layers"][1]["in_frac"] += 1
    p = write_raw(tmp_path / "frac.eie", read_raw(saved), bump)
    with pytest.raises(ImageFormatError, match=r"layers\[1\]\.in_frac: .* does not match layers\[0\]\.out_frac"):
        load_image(p)
    L1 = net.layers[1]
    with pytest.raises(ImageFormatError, match=r"layers\[1\]\.in_frac"):
        with_layer(net, 1, in_frac=L1.in_frac - 1, out_frac=L1.out_frac - 1).validate()


def test_chaining_n_in_mismatch(net, tmp_path):
    rng = np.random.default_rng(5)
    L0 = net.layers[0]  # n_out 24
    stray = encode_layer(sparse_matrix(rng, 9, 23, 0.4), N_PE, acc_depth=net.acc_depth,
                         in_frac=L0.out_frac, out_frac=L0.out_frac, name="stray")
    bad = EIEImage(n_pe=N_PE, acc_depth=net.acc_depth, layers=[L0, stray])
    with pytest.raises(ImageFormatError, match=r"layers\[1\]\.n_in: 23 does not match layers\[0\]\.n_out = 24"):
        bad.validate()
    p = save_unvalidated(bad, tmp_path / "chain.eie")
    with pytest.raises(ImageFormatError, match=r"layers\[1\]\.n_in: 23 does not match"):
        load_image(p)


def test_error_message_names_the_file(saved_single, tmp_path):
    p = _edit_array(saved_single, tmp_path, "layers[0].v", lambda a: a[:-1])
    with pytest.raises(ImageFormatError) as ei:
        load_image(p)
    assert str(ei.value).startswith(f"{p}: layers[0].v: ")


def test_file_not_found(tmp_path):
    missing = tmp_path / "nope.eie"
    with pytest.raises(ImageFormatError, match=re.escape(str(missing)) + ": no such file"):
        load_image(missing)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageFormatError, match="is a directory"):
        load_image(tmp_path)


def test_save_validates_first(single, tmp_path):
    bad = with_layer(single, 0, n_out=5)
    target = tmp_path / "bad.eie"
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.z"):
        save_image(bad, target)
    assert list(tmp_path.iterdir()) == []


def test_layers_refuse_in_place_edits(tmp_path):
    """validate() caches decoded rows, so a layer's arrays are frozen: an in-place edit
    fails loudly, and an edited copy is validated afresh."""
    rng = np.random.default_rng(11)
    img = encode_network([sparse_matrix(rng, 30, 12, 0.35)], N_PE)  # validate() fills the cache
    with pytest.raises(ValueError, match="read-only"):
        img.layers[0].z[:] = 15
    bad = dataclasses.replace(img.layers[0], z=np.full_like(img.layers[0].z, 15))
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.z"):
        EIEImage(img.n_pe, img.acc_depth, [bad]).validate()


# -- atomic writes ---------------------------------------------------------------------------
def test_refuses_to_overwrite(net, single, saved):
    before = saved.read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite") as e:
        save_image(single, saved)
    assert "--force" not in str(e.value)        # a library call knows no command line (the CLI adds it)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_overwrite_replaces(single, saved):
    save_image(single, saved, overwrite=True)
    assert_same_image(single, load_image(saved))
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_failed_rename_leaves_nothing(net, tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk on fire")
    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        save_image(net, tmp_path / "net.eie")
    assert list(tmp_path.iterdir()) == []


def test_interrupt_mid_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    seen = []

    def chunks():
        yield b"x" * 1000
        # the temporary file exists beside the target while writing
        seen.extend(p.name for p in tmp_path.iterdir())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, chunks())
    assert len(seen) == 1 and seen[0] != target.name
    assert list(tmp_path.iterdir()) == []


def test_interrupt_keeps_the_old_file(saved):
    before = saved.read_bytes()

    def chunks():
        yield b"partial"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(saved, chunks(), overwrite=True)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_interrupt_inside_save_image(net, tmp_path, monkeypatch):
    real = image_file.atomic_write_bytes

    def interrupted(path, chunks, overwrite=False):
        def gen():
            for n, c in enumerate(chunks):
                if n == 3:  # preamble, header, first array written
                    raise KeyboardInterrupt
                yield c
        return real(path, gen(), overwrite=overwrite)
    monkeypatch.setattr(image_file, "atomic_write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_image(net, tmp_path / "net.eie")
    assert list(tmp_path.iterdir()) == []


def test_missing_parent_directory_is_an_error_naming_it(single, tmp_path):
    """The CLI's rule (eie.common.output_problem) holds for library writes too: a missing
    directory is a mistyped path, never created."""
    with pytest.raises(FileNotFoundError, match=r"directory .*/a/b does not exist \(create it first\)"):
        save_image(single, tmp_path / "a" / "b" / "net.eie")
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=r"/f is not a directory"):
        save_image(single, tmp_path / "f" / "net.eie")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_written_file_mode_follows_umask(single, tmp_path):
    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain"
        plain.write_bytes(b"")
        p = save_image(single, tmp_path / "net.eie")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644

