"""Hostile input (issue 16): a seeded fuzz of the image loader and the CLI, and one named
test per kind of bad input. Only the project's own errors may escape, nothing may be
left behind, and a file that loads must be the image that was saved."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from eie.cli import main
from eie.golden_model import ImageFormatError, encode_network
from eie.golden_model import files, image_file
from eie.golden_model.decoder import decode_image
from eie.golden_model.encoder import FAR_CODEBOOK_REL_RMS
from eie.golden_model.image_file import load_image, save_image

from .helpers import eie_bound_by_file_modes, sparse_matrix
from .test_image_file import INTEGRITY, PREAMBLE, as_version, assert_same_image, read_raw, reseal_header, write_raw

FUZZ = settings(max_examples=1200, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                          HealthCheck.too_slow])
CLI_FUZZ = settings(max_examples=250, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                             HealthCheck.too_slow])


# -- inputs ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image():
    """Two layers, one of them row-permuted: every array kind and both versions' features."""
    rng = np.random.default_rng(16)
    Ws = [sparse_matrix(rng, 12, 10, 0.4), sparse_matrix(rng, 6, 12, 0.5)]
    return encode_network(Ws, 2, acc_depth=4, calibration=rng.normal(0, 1, (3, 10)), balance=True,
                          meta={"note": "fuzz"})


@pytest.fixture(scope="module")
def image_bytes(image, tmp_path_factory):
    return save_image(image, tmp_path_factory.mktemp("img") / "good.eie").read_bytes()


@pytest.fixture
def weights(tmp_path):
    """A small weight matrix with few distinct values (k-means is skipped: fast)."""
    rng = np.random.default_rng(3)
    W = rng.choice([-0.5, -0.25, 0.25, 0.75], (10, 8)) * (rng.random((10, 8)) < 0.5)
    np.save(tmp_path / "W.npy", W)
    return tmp_path / "W.npy"


def eie(capsys, *args):
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_clean_failure(rc, err, command):
    """Exit 2 and exactly one line on stderr naming the command, no traceback."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"eie {command}: error: "), lines[0]


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*.tmp"))


# -- fuzz: mutated bytes -----------------------------------------------------------------------
mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10 ** 6), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10 ** 6), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10 ** 6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10 ** 6), st.integers(0, 255)),
    st.tuples(st.just("append"), st.integers(1, 64), st.integers(0, 255)),
)


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for kind, pos, val in ops:
        if not b:
            break
        i = pos % len(b)
        if kind == "flip":
            b[i] ^= 1 << val
        elif kind == "set":
            b[i] = val
        elif kind == "cut":
            del b[i:]
        elif kind == "insert":
            b.insert(i, val)
        else:
            b += bytes([val]) * pos
    return bytes(b)


@FUZZ
@given(ops=st.lists(mutation, min_size=1, max_size=3))
def test_fuzz_mutated_bytes_fail_cleanly_or_load_the_same_image(image, image_bytes, tmp_path, ops):
    data = mutate(image_bytes, ops)
    p = tmp_path / "m.eie"
    p.write_bytes(data)
    try:
        loaded = load_image(p)
    except ImageFormatError as e:
        assert str(e).startswith(f"{p}: ")
        assert "\n" not in str(e)
        event("clean error")
        return
    event("loaded: same image")
    # accepted: then it must be the saved image (e.g. a flipped minor version 2 -> 0 reads
    # the same bytes as an unprotected file)
    assert data != image_bytes or loaded.file_format["header"] == "crc32"
    assert_same_image(image, loaded)
    for a, b in zip(image.layers, loaded.layers):
        assert np.array_equal(a.logical_rows, b.logical_rows)


def test_a_bit_flip_anywhere_in_the_header_is_caught(image_bytes):
    """Every bit of the preamble and the header CRC, and one bit (rotating) of every header
    byte: each flip fails; none is read as another header (in memory: image_file._load)."""
    hlen = PREAMBLE.unpack_from(image_bytes)[3]
    body = PREAMBLE.size + hlen
    flips = [(i, bit) for i in [*range(PREAMBLE.size), *range(body, body + INTEGRITY.size)] for bit in range(8)]
    flips += [(i, i % 8) for i in range(PREAMBLE.size, body)]
    accepted = []
    for i, bit in flips:
        b = bytearray(image_bytes)
        b[i] ^= 1 << bit
        try:
            image_file._load(io.BytesIO(bytes(b)), len(b), "mem")
        except ImageFormatError:
            continue
        accepted.append((i, bit))
    assert accepted == [] and len(flips) > 8 * hlen // 8


# -- fuzz: mutated header fields behind a valid CRC ----------------------------------------------
def leaf_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaf_paths(v, prefix + (k,))
    elif isinstance(obj, list) and obj and not all(isinstance(x, int) for x in obj):
        for i, v in enumerate(obj):
            yield from leaf_paths(v, prefix + (i,))
    yield prefix


HOSTILE_JSON = st.one_of(
    st.sampled_from(["10" + "0" * 30, str(2 ** 64), str(2 ** 63), str(2 ** 32), str(2 ** 31), "-1", "0", "1",
                     "1" * 5000, "1e400", "-0.0", "NaN", "null", "true", '"x"', "[]", "{}", "[0, 0]",
                     "[" * 5000 + "]" * 5000, str(-(2 ** 63)), "[4294967296, 1]", "[3, -1]"]),
    st.integers(-(2 ** 70), 2 ** 70).map(str),
    st.lists(st.integers(-3, 2 ** 33), max_size=3).map(json.dumps),
)


@FUZZ
@given(pick=st.integers(0, 10 ** 6), value=HOSTILE_JSON)
def test_fuzz_header_fields_fail_cleanly(image_bytes, tmp_path, pick, value):
    _, major, minor, hlen = PREAMBLE.unpack_from(image_bytes)
    header = json.loads(image_bytes[PREAMBLE.size:PREAMBLE.size + hlen])
    paths = [p for p in leaf_paths(header) if p]
    path = paths[pick % len(paths)]
    marker = "\"__FUZZ__\""
    obj = header
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = "__FUZZ__"
    text = json.dumps(header).replace(marker, value).encode()
    text += b" " * ((-(len(text) + PREAMBLE.size)) % 8)
    arrays = image_bytes[PREAMBLE.size + hlen + INTEGRITY.size:]
    data = bytearray(PREAMBLE.pack(b"EIEIMAGE", major, minor, len(text)) + text + bytes(INTEGRITY.size) + arrays)
    p = tmp_path / "h.eie"
    p.write_bytes(bytes(reseal_header(data)))
    try:
        load_image(p)
    except ImageFormatError as e:
        assert "\n" not in str(e) and len(str(e)) < 1000
        assert str(e).startswith(f"{p}: ")
        event("clean error")
    else:
        event("loaded")


# -- fuzz: option values --------------------------------------------------------------------
OPTION_VALUE = st.one_of(st.integers(-5, 70), st.integers(-(2 ** 70), 2 ** 70),
                         st.sampled_from(["", "x", "1.5", "1e3", "0x10", "10" * 20, " 4", "٣"]))


@CLI_FUZZ
@given(n_pe=OPTION_VALUE, seed=OPTION_VALUE, acc_depth=OPTION_VALUE, act_frac=OPTION_VALUE,
       force=st.booleans())
def test_fuzz_encode_options(weights, tmp_path, capsys, n_pe, seed, acc_depth, act_frac, force):
    out = tmp_path / "o.eie"
    out.unlink(missing_ok=True)
    args = ["encode", weights, "--n-pe", n_pe, "--seed", seed, "--acc-depth", acc_depth,
            "--act-frac", act_frac, "-o", out] + (["--force"] if force else [])
    rc, _, err = eie(capsys, *args)
    assert leftovers(tmp_path) == []
    event(f"exit {rc}")
    if rc == 0:
        assert load_image(out).n_pe == int(str(n_pe))
    else:
        assert_clean_failure(rc, err, "encode")
        assert not out.exists()


@CLI_FUZZ
@given(fifo=OPTION_VALUE, acc_bits=OPTION_VALUE, act_depth=OPTION_VALUE)
def test_fuzz_run_options(weights, tmp_path, capsys, fifo, acc_bits, act_depth):
    img = tmp_path / "r.eie"
    if not img.exists():
        assert eie(capsys, "encode", weights, "--n-pe", 2, "-o", img)[0] == 0
        np.save(tmp_path / "x.npy", np.linspace(-1, 1, 8))
    y = tmp_path / "y.npy"
    y.unlink(missing_ok=True)
    rc, _, err = eie(capsys, "run", img, "--input", tmp_path / "x.npy", "--fifo-depth", fifo,
                     "--acc-bits", acc_bits, "--act-depth", act_depth, "-o", y)
    assert leftovers(tmp_path) == []
    event(f"exit {rc}")
    if rc == 0:
        assert np.load(y).shape == (10,)
    else:
        assert_clean_failure(rc, err, "run")
        assert not y.exists()


# -- 1. the header is protected ---------------------------------------------------------------
@pytest.mark.parametrize("field", ["in_frac", "out_frac", "n_out"])
def test_header_field_edit_fails_the_crc(image_bytes, tmp_path, field):
    """The edits a single bit flip made silently in format 1.1 (off-by-one formats, n_out)."""
    hlen = PREAMBLE.unpack_from(image_bytes)[3]
    text = image_bytes[PREAMBLE.size:PREAMBLE.size + hlen].decode()
    key = f'"{field}": '
    i = text.rindex(key) + len(key)
    digit = text[i]
    edited = text[:i] + str((int(digit) + 1) % 10) + text[i + 1:]
    p = tmp_path / "e.eie"
    p.write_bytes(image_bytes[:PREAMBLE.size] + edited.encode() + image_bytes[PREAMBLE.size + hlen:])
    with pytest.raises(ImageFormatError, match=r"header: CRC-32 mismatch"):
        load_image(p)


def test_old_files_load_and_are_reported_unprotected(image, image_bytes, tmp_path, capsys):
    raw = read_raw_bytes(image_bytes, tmp_path)
    as_version(raw, 1)
    p = write_raw(tmp_path / "old.eie", raw)
    loaded = load_image(p)
    assert_same_image(image, loaded)
    assert loaded.file_format == {"version": "1.1", "header": "unprotected"}
    rc, out, _ = eie(capsys, "info", p, "--json")
    assert rc == 0 and json.loads(out)["file"]["header"] == "unprotected"
    rc, out, _ = eie(capsys, "info", p)
    assert rc == 0 and "header unprotected" in out


def read_raw_bytes(data: bytes, tmp_path: Path):
    p = tmp_path / "src.eie"
    p.write_bytes(data)
    return read_raw(p)


# -- 2. header values that used to raise other exceptions --------------------------------------
@pytest.mark.parametrize("value, match", [
    ("1" + "0" * 30, r"n_pe: expected an integer in 1\.\.4096, got an integer of 31 digits"),
    (str(2 ** 64), r"n_pe: expected an integer in 1\.\.4096"),
    ("1" * 5000, r"header: not valid UTF-8 JSON"),
])
def test_out_of_range_integers(image_bytes, tmp_path, value, match):
    p = _with_header_text(image_bytes, tmp_path, lambda t: t.replace('"n_pe": 2', f'"n_pe": {value}'))
    with pytest.raises(ImageFormatError, match=match):
        load_image(p)


def test_shape_whose_element_count_wraps(image_bytes, tmp_path):
    def edit(t):
        h = json.loads(t)
        h["arrays"]["layers[0].ptr"]["shape"] = [2 ** 32, 2 ** 32]
        return json.dumps(h)
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.ptr: nbytes \d+ does not match shape"):
        load_image(_with_header_text(image_bytes, tmp_path, edit))


def test_deeply_nested_header(image_bytes, tmp_path):
    p = _with_header_text(image_bytes, tmp_path, lambda t: t.replace('"meta": {', '"deep": ' + "[" * 100000
                                                                      + "]" * 100000 + ', "meta": {'))
    with pytest.raises(ImageFormatError, match=r"header: not valid UTF-8 JSON"):
        load_image(p)


def _with_header_text(image_bytes, tmp_path, edit) -> Path:
    _, major, minor, hlen = PREAMBLE.unpack_from(image_bytes)
    text = edit(image_bytes[PREAMBLE.size:PREAMBLE.size + hlen].decode()).encode()
    text += b" " * ((-(len(text) + PREAMBLE.size)) % 8)
    head = PREAMBLE.pack(b"EIEIMAGE", major, minor, len(text)) + text
    p = tmp_path / "edited.eie"
    p.write_bytes(head + INTEGRITY.pack(zlib.crc32(head), 0) + image_bytes[PREAMBLE.size + hlen + INTEGRITY.size:])
    return p


def test_unreadable_file(image_bytes, tmp_path, monkeypatch):
    p = tmp_path / "x.eie"
    p.write_bytes(image_bytes)
    real = os.open

    def deny(path, *a, **k):
        if str(path) == str(p):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)
    monkeypatch.setattr(files.os, "open", deny)
    with pytest.raises(ImageFormatError, match=r"x\.eie: cannot open: Permission denied"):
        load_image(p)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_devices_and_named_pipes_are_refused_without_reading(tmp_path, special):
    if special == "fifo":
        special = tmp_path / "pipe"
        os.mkfifo(special)  # nobody writes: opening it for a blocking read would hang
    with pytest.raises(ImageFormatError, match="not a regular file"):
        load_image(special)


# -- 3. sizes are checked before anything is allocated ------------------------------------------
def test_trailing_bytes_are_refused(image_bytes, tmp_path):
    p = tmp_path / "tail.eie"
    p.write_bytes(image_bytes)
    with open(p, "r+b") as f:
        f.truncate(len(image_bytes) + (1 << 31))  # sparse: 2 GiB of tail, no disk used
    with pytest.raises(ImageFormatError, match=r"arrays: 2,147,483,648 unexpected bytes after the last array"):
        load_image(p)


def test_huge_claimed_array_is_refused_before_allocation(image_bytes, tmp_path, monkeypatch):
    def edit(t):
        h = json.loads(t)
        h["arrays"]["layers[0].v"] |= {"shape": [1 << 31], "nbytes": 1 << 31}
        return json.dumps(h)
    p = _with_header_text(image_bytes, tmp_path, edit)
    sizes = []
    real = files.read_exact
    monkeypatch.setattr("eie.golden_model.image_file.read_exact",
                        lambda f, off, n, *a: sizes.append(n) or real(f, off, n, *a))
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.v: truncated"):
        load_image(p)
    assert max(sizes) <= len(p.read_bytes())


def test_gap_or_nonzero_padding_is_refused(image, image_bytes, tmp_path):
    raw = read_raw_bytes(image_bytes, tmp_path)

    def gap(h):
        for e in h["arrays"].values():
            e["offset"] += 8
    p = write_raw(tmp_path / "gap.eie", raw, gap)
    p.write_bytes(p.read_bytes() + bytes(8))
    with pytest.raises(ImageFormatError, match=r"leaves 8 unchecked bytes before it"):
        load_image(p)
    data = bytearray(image_bytes)
    hlen = PREAMBLE.unpack_from(data)[3]
    h = json.loads(data[PREAMBLE.size:PREAMBLE.size + hlen])
    ent = h["arrays"]["layers[0].v"]
    assert ent["nbytes"] % 8  # has padding
    data[PREAMBLE.size + hlen + ent["offset"] + ent["nbytes"]] = 1
    p = tmp_path / "pad.eie"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageFormatError, match=r"layers\[0\]\.v: padding after the array is not zero"):
        load_image(p)


# -- 4. output paths -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["directory", "under_a_file", "missing_parent", "read_only"])
@pytest.mark.parametrize("command", ["encode", "decode", "run"])
def test_bad_output_paths(weights, tmp_path, capsys, case, command):
    img = tmp_path / "w.eie"
    assert eie(capsys, "encode", weights, "--n-pe", 2, "-o", img)[0] == 0
    np.save(tmp_path / "x.npy", np.zeros(8))
    ro = tmp_path / "ro"
    ro.mkdir()
    target = {"directory": tmp_path, "under_a_file": weights / "o.out", "missing_parent": tmp_path / "no" / "o.out",
              "read_only": ro / "o.out"}[case]
    expect = {"directory": "is a directory", "under_a_file": "is not a directory",
              "missing_parent": "does not exist", "read_only": "is not writable"}[case]
    args = {"encode": ["encode", weights, "--n-pe", 2, "-o", target],
            "decode": ["decode", img, "-o", target],
            "run": ["run", img, "--input", tmp_path / "x.npy", "--output", target]}[command]
    if case == "read_only":
        os.chmod(ro, 0o555)
    if case == "read_only" and os.access(ro, os.W_OK):  # root: run where the directory's mode binds
        try:
            child = eie_bound_by_file_modes(args)
        except subprocess.SubprocessError as e:  # no CAP_SETPCAP (rootless containers)
            pytest.skip(f"root, and cannot drop the capabilities that ignore file modes: {e}")
        rc, err = child.returncode, child.stderr
    else:
        rc, _, err = eie(capsys, *args)
    assert_clean_failure(rc, err, command)
    assert str(target) in err and expect in err
    assert not (tmp_path / "no").exists() and leftovers(tmp_path) == []


def test_existing_output_refused_before_the_work(weights, tmp_path, capsys, monkeypatch):
    out = tmp_path / "o.eie"
    out.write_bytes(b"keep")
    import eie.golden_model as gm

    def must_not_run(*a, **k):
        raise AssertionError("encoded before checking the output")
    monkeypatch.setattr(gm, "encode_network", must_not_run)
    rc, _, err = eie(capsys, "encode", weights, "--n-pe", 2, "-o", out)
    assert_clean_failure(rc, err, "encode")
    assert "--force" in err and out.read_bytes() == b"keep"


# -- 5. option values ---------------------------------------------------------------------------
@pytest.mark.parametrize("option, value", [("--seed", -1), ("--seed", 2 ** 32), ("--n-pe", 10 ** 9),
                                           ("--n-pe", 10 ** 30), ("--n-pe", 0), ("--acc-depth", -1),
                                           ("--act-frac", 127), ("--act-frac", -113), ("--n-pe", "four")])
def test_option_out_of_range(weights, tmp_path, capsys, option, value):
    args = {"--n-pe": 2} | {option: value}
    argv = ["encode", weights, "-o", tmp_path / "o.eie"] + [x for k, v in args.items() for x in (k, v)]
    rc, _, err = eie(capsys, *argv)
    assert_clean_failure(rc, err, "encode")
    assert f"argument {option}" in err and "expected an integer in" in err
    assert not (tmp_path / "o.eie").exists()


@pytest.mark.parametrize("content, match", [
    (np.array(["a"] * 16), "expected real numbers"),
    (np.zeros((0, 16)), r"expected shape \(16,\) or \(1, 16\), got \(0, 16\)"),
    ("npz", "expected one .npy array, got an .npz archive"),
    (np.zeros(16), r"all \d+ non-zero weights would decode to 0"),
    (np.array([0.0] + [1e39] * 15), r"entry 1 is 1e\+39; codebook values must be below 1\.70139e\+38"),
    (np.array([0.0] + [1e-40] * 15), "would decode to 0"),
])
def test_bad_codebook(weights, tmp_path, capsys, content, match):
    cb = tmp_path / "cb.npy"
    if isinstance(content, str):
        cb = tmp_path / "cb.npz"
        np.savez(cb, a=np.zeros(16))
    else:
        np.save(cb, content)
    rc, _, err = eie(capsys, "encode", weights, "--n-pe", 2, "--codebook", cb, "-o", tmp_path / "o.eie")
    assert_clean_failure(rc, err, "encode")
    assert re.search(match, err), err
    assert str(cb) in err or str(weights) in err


@pytest.mark.parametrize("scale, warned", [(1.0, False), (8.0, True), (1 / 8, True)])
def test_a_codebook_of_the_wrong_scale_is_warned_about(weights, tmp_path, capsys, scale, warned):
    """The weights' own values as the codebook decode exactly; the same codebook 8x too large or
    too small still encodes (every weight decodes to a non-zero value) but is warned about."""
    cb = tmp_path / "cb.npy"
    np.save(cb, np.array([0.0, -0.5, -0.25, 0.25, 0.75] + [0.75] * 11) * scale)
    rc, _, err = eie(capsys, "encode", weights, "--n-pe", 2, "--codebook", cb, "-o", tmp_path / "o.eie")
    assert rc == 0, err
    lines = [x for x in err.splitlines() if "relative RMS error" in x]
    W, (D,) = np.load(weights), decode_image(load_image(tmp_path / "o.eie"))
    error = 100 * np.sqrt(np.sum((D - W)[W != 0] ** 2) / np.sum(W ** 2))
    assert (error > 100 * FAR_CODEBOOK_REL_RMS) == warned, error
    if warned:
        assert len(lines) == 1 and lines[0].startswith("eie encode: warning: ") and str(cb) in lines[0], err
        assert f"{error:.0f} %" in lines[0], lines[0]
    else:
        assert lines == [], err
    assert (tmp_path / "o.eie").exists()


@pytest.mark.parametrize("scale", [1.0, 4.0, 120.0])
def test_outputs_clipped_by_a_narrow_format_are_warned_about(weights, tmp_path, capsys, scale):
    """Inputs larger than the image was encoded for clip the outputs at the 16-bit limits: the
    run names the image, the layer and how many outputs clipped (counted here independently),
    and reports the counts in --json; inputs that fit give no warning."""
    img = tmp_path / "r.eie"
    assert eie(capsys, "encode", weights, "--n-pe", 2, "-o", img)[0] == 0
    x = np.linspace(0.2, 1, 8) * scale
    np.save(tmp_path / "x.npy", x)
    rc, out, err = eie(capsys, "run", img, "--input", tmp_path / "x.npy", "--json")
    assert rc == 0, err
    image = load_image(img)
    L = image.layers[0]
    xq = np.floor(x * 2.0 ** L.in_frac + 0.5) / 2.0 ** L.in_frac
    want = decode_image(image)[0] @ xq          # exact: the weights and inputs are dyadic
    q = np.floor(want * 2.0 ** L.out_frac + 0.5)
    limit = 2.0 ** (15 - L.out_frac)
    clipped = int(np.count_nonzero((q >= 2 ** 15 - 1) | (q <= -2 ** 15)))
    assert json.loads(out)["saturated_outputs"] == [clipped]
    lines = [x for x in err.splitlines() if "clipped" in x]
    if clipped:
        assert lines == [f"eie run: warning: {img}: layer {L.name}: {clipped:,} of 10 outputs clipped at the "
                         f"limit ±{limit:g} of its format (out_frac {L.out_frac}): encode with --calibrate on "
                         f"inputs like these, or a smaller --act-frac"], err
    else:
        assert lines == [], err
    assert (scale == 120.0) <= (clipped > 0)


@pytest.mark.parametrize("content, match", [
    (np.array([["x"] * 8]), "expected real numbers"),
    (np.zeros((0, 8)), r"with batch >= 1, got \(0, 8\)"),
    (np.ones((2, 8)) + 1j, "complex numbers"),
])
def test_bad_calibration(weights, tmp_path, capsys, content, match):
    c = tmp_path / "c.npy"
    np.save(c, content)
    rc, _, err = eie(capsys, "encode", weights, "--n-pe", 2, "--calibrate", c, "-o", tmp_path / "o.eie")
    assert_clean_failure(rc, err, "encode")
    assert match.split("\\")[0] in err and f"--calibrate {c}" in err


# -- 6. signals and pipes ------------------------------------------------------------------------
def test_sigterm_while_writing_leaves_nothing(weights, tmp_path, capsys, monkeypatch):
    real = files.os.fsync

    def terminated(fd):
        os.kill(os.getpid(), signal.SIGTERM)  # the real signal, delivered mid-write
        real(fd)
    monkeypatch.setattr(files.os, "fsync", terminated)
    rc, _, err = eie(capsys, "encode", weights, "--n-pe", 2, "-o", tmp_path / "o.eie")
    assert rc == 143 and err.strip() == "eie encode: terminated (SIGTERM)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["W.npy"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored after the command


def test_sigint_while_building_the_parser_is_one_line(capsys, monkeypatch):
    import eie.cli as cli

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "build_parser", interrupted)
    rc = main(["info", "x.eie"])
    assert rc == 130 and capsys.readouterr().err.strip() == "eie: interrupted"


def test_broken_pipe_is_one_line(image, tmp_path, capsys, monkeypatch):
    p = save_image(image, tmp_path / "i.eie")
    import eie.cli as cli

    def closed(obj):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(cli, "emit_json", closed)
    rc = main(["info", str(p), "--json"])
    err = capsys.readouterr().err
    assert rc == 141 and err.strip().splitlines() == ["eie info: stopped: output pipe closed by the reader (SIGPIPE)"]


# -- 7. silent wrong answers -------------------------------------------------------------------------
@pytest.mark.parametrize("scale, match", [(1e39, r"weights must be below 1\.70139e\+38"),
                                          (1e300, r"weights must be below 1\.70139e\+38"),
                                          (1e-40, "would decode to 0")])
def test_weights_out_of_the_16_bit_range(tmp_path, capsys, scale, match):
    rng = np.random.default_rng(5)
    W = sparse_matrix(rng, 20, 12, 0.5) * scale
    np.save(tmp_path / "W.npy", W)
    rc, _, err = eie(capsys, "encode", tmp_path / "W.npy", "--n-pe", 2, "-o", tmp_path / "o.eie")
    assert_clean_failure(rc, err, "encode")  # one line: no NumPy overflow warnings before it
    assert re.search(match, err) and str(tmp_path / "W.npy") in err


@pytest.mark.parametrize("scale", [2.0 ** -20, 1.0, 2.0 ** 10, 1e5, 1e6, 1e9, 1e-12, 1e-15, 1e30, 1e-30])
def test_weights_far_from_1_get_their_own_format(tmp_path, capsys, scale):
    """w_frac follows the layer's range, so relative error does not grow with the scale."""
    rng = np.random.default_rng(6)
    W = sparse_matrix(rng, 20, 12, 0.5) * scale
    np.save(tmp_path / "W.npy", W)
    rc, out, err = eie(capsys, "encode", tmp_path / "W.npy", "--n-pe", 2, "-o", tmp_path / "o.eie", "--json")
    assert rc == 0, err
    q = json.loads(out)["quantisation"][0]
    from eie.golden_model import decode_weights

    D = decode_weights(load_image(tmp_path / "o.eie").layers[0])
    rel = np.linalg.norm((D - W)[W != 0]) / np.linalg.norm(W[W != 0])
    assert q["rel_rms_error"] == pytest.approx(rel) and rel < 0.1
    assert np.all(D[W != 0] != 0)


def test_unsigned_int_input_does_not_wrap(weights, tmp_path, capsys):
    img = tmp_path / "w.eie"
    assert eie(capsys, "encode", weights, "--n-pe", 2, "-o", img)[0] == 0
    np.save(tmp_path / "x.npy", np.full(8, 2 ** 64 - 1, dtype=np.uint64))
    rc, _, err = eie(capsys, "run", img, "--input", tmp_path / "x.npy", "--int-input")
    assert_clean_failure(rc, err, "run")
    assert "18446744073709551615" in err and "-32768..32767" in err


@pytest.mark.parametrize("where", ["weights", "input"])
def test_complex_values_are_refused(weights, tmp_path, capsys, where):
    img = tmp_path / "w.eie"
    assert eie(capsys, "encode", weights, "--n-pe", 2, "-o", img)[0] == 0
    c = tmp_path / "c.npy"
    if where == "weights":
        np.save(c, np.load(weights) + 0.5j)
        rc, _, err = eie(capsys, "encode", c, "--n-pe", 2, "-o", tmp_path / "o.eie")
        cmd = "encode"
    else:
        np.save(c, np.ones(8) + 1j)
        rc, _, err = eie(capsys, "run", img, "--input", c)
        cmd = "run"
    assert_clean_failure(rc, err, cmd)
    assert "complex" in err and str(c) in err


def test_npz_members_must_be_w0_w1(tmp_path, capsys):
    rng = np.random.default_rng(8)
    np.savez(tmp_path / "n.npz", b=sparse_matrix(rng, 6, 8, 0.5), a=sparse_matrix(rng, 8, 6, 0.5))
    rc, _, err = eie(capsys, "encode", tmp_path / "n.npz", "--n-pe", 2, "-o", tmp_path / "o.eie")
    assert_clean_failure(rc, err, "encode")
    assert "expected members named W0, W1" in err and "got a, b" in err


def test_npy_header_claiming_more_than_the_file_holds(tmp_path, capsys):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (99999, 99999)})
    p = tmp_path / "W.npy"
    p.write_bytes(buf.getvalue() + bytes(16))
    rc, _, err = eie(capsys, "encode", p, "--n-pe", 2, "-o", tmp_path / "o.eie")
    assert_clean_failure(rc, err, "encode")
    assert str(p) in err and "header claims shape (99999, 99999)" in err


# -- 8. messages name the file or option ----------------------------------------------------------------
def test_stack_mismatch_names_the_file(tmp_path, capsys):
    rng = np.random.default_rng(9)
    np.savez(tmp_path / "s.npz", W0=sparse_matrix(rng, 6, 8, 0.5), W1=sparse_matrix(rng, 4, 5, 0.5))
    rc, _, err = eie(capsys, "encode", tmp_path / "s.npz", "--n-pe", 2, "-o", tmp_path / "o.eie")
    assert_clean_failure(rc, err, "encode")
    assert f"{tmp_path / 's.npz'}[W1]" in err and "n_in = 5" in err
