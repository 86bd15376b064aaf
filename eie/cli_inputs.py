"""The `eie` commands' files and option values, checked before any work starts.

Every problem is a UserError naming the option or file and what was expected; the
checks themselves live in the golden model (user_arrays, files, encoder, numerics), this
module only attaches the option's name.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import numpy as np

from eie.common import EXISTS, UserError, output_dir_problem, output_problem
from eie.golden_model.codebook import check_codebook
from eie.golden_model.errors import InputError
from eie.golden_model.numerics import ACT_BITS, CODEBOOK_SIZE, int_range
from eie.golden_model.user_arrays import load_array_file, real_array
from eie.hdl import host_map

__all__ = ["int_in", "float_in", "list_of", "SEED_MAX", "DEPTH_MAX", "FIFO_MAX", "RTL_MAX_N_PE", "WORKERS_MAX",
           "check_output", "check_output_dir", "load_array", "load_weights", "load_codebooks", "load_calibration",
           "load_input", "as_options"]

# -- option values ---------------------------------------------------------------------------
SEED_MAX = (1 << 32) - 1       # k-means (scikit-learn) and the training seeds
DEPTH_MAX = 1 << 24            # any memory depth option
FIFO_MAX = 1 << 16             # activation queue depth
RTL_MAX_N_PE = 1 << (host_map.REGION_SHIFT - host_map.PE_SHIFT)  # the host address's PE field: 256
WORKERS_MAX = 4096             # local worker processes


def _shown(text: str) -> str:
    return text if len(text) <= 40 else f"a value of {len(text)} characters"


def int_in(lo: int, hi: int):
    """argparse type: an integer in lo..hi (the message names the option via argparse)."""
    def parse(text: str) -> int:
        try:
            val = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in {lo}..{hi}, got {text[:40]!r}") from None
        if not lo <= val <= hi:
            shown = text if len(text) <= 40 else f"an integer of {len(text)} digits"
            raise argparse.ArgumentTypeError(f"expected an integer in {lo}..{hi}, got {shown}")
        return val
    parse.__name__ = "integer"
    return parse


def float_in(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False):
    """argparse type: a finite number in [lo, hi] (`lo_open` / `hi_open`: the bound excluded)."""
    span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def parse(text: str) -> float:
        try:
            val = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {span}, got {_shown(text)!r}") from None
        if not (math.isfinite(val) and (lo < val if lo_open else lo <= val) and (val < hi if hi_open else val <= hi)):
            raise argparse.ArgumentTypeError(f"expected a number in {span}, got {_shown(text)}")
        return val
    parse.__name__ = "number"
    return parse


def list_of(item, max_len: int = 1000):
    """argparse type: comma-separated values, each parsed by the type `item`; one at least."""
    def parse(text: str) -> list:
        parts = [t.strip() for t in text.split(",") if t.strip()]
        if not parts or len(parts) > max_len:
            raise argparse.ArgumentTypeError(f"expected 1 to {max_len} comma-separated values, got "
                                             f"{len(parts) if parts else 'none'}")
        out = []
        for t in parts:
            try:
                out.append(item(t))
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentTypeError(f"expected comma-separated values, each "
                                                 f"{str(e).removeprefix('expected ')}") from None
        return out
    parse.__name__ = "list"
    return parse


# -- library text -> command-line text ---------------------------------------------------------
_ARGUMENT = re.compile(r"`([a-z][a-z0-9_]*)(?:=([^`]*))?`")
_QUOTES = "\"'"


def as_options(text: str, args: argparse.Namespace) -> str:
    """Library messages name an argument as `name` or `name=value` (they know no command
    line); for a name the command parsed, show its option instead: `data_path` ->
    --data-path, `layers="all"` -> --layers all, `bias=False` -> --no-bias."""
    def option(m: re.Match) -> str:
        name, value = m.groups()
        if name not in vars(args):
            return m.group(0)
        flag = "--" + name.replace("_", "-")
        if value is None or value == "True":
            return flag
        if value == "False":
            return "--no-" + flag[2:]
        return f"{flag} {value.strip(_QUOTES)}"
    return _ARGUMENT.sub(option, text)


def check_output(path, option: str, force: bool) -> None:
    """Refuse an output that cannot be written (or exists, without --force) before the work."""
    problem = output_problem(path, overwrite=force)
    if problem == EXISTS:
        problem += " (pass --force to replace it)"
    if problem:
        raise UserError(f"{option} {path}: {problem}")


def check_output_dir(path, option: str, default=None) -> None:
    """Refuse a report directory that cannot be made before the work. It is created by
    the command; its parent must exist unless `path` is the option's `default` (the
    project's own reports/ and build/ trees are made on first use)."""
    problem = output_dir_problem(path, create_parents=default is not None and Path(path) == Path(default))
    if problem:
        raise UserError(f"{option} {path}: {problem}")


def load_array(path: str, what: str, *, archive: bool = False):
    """One .npy array (or, with `archive`, also a .npz as {name: array}) named `what` in errors."""

    try:
        obj = load_array_file(path, what)
    except InputError as e:
        raise UserError(str(e)) from None
    if isinstance(obj, dict) and not archive:
        raise UserError(f"{what} {path}: expected one .npy array, got an .npz archive")
    return obj


def _real(a, what: str):

    try:
        return real_array(a, what)
    except InputError as e:
        raise UserError(str(e)) from None


def load_weights(path: str):
    """(matrices, names, biases): a .npy is one layer without a bias; a .npz holds W0, W1,
    ..., W{n-1} and, for any of those layers, a bias vector b{i} (None where there is none)."""
    obj = load_array(path, "WEIGHTS", archive=True)
    if not isinstance(obj, dict):
        return [_real(obj, f"WEIGHTS {path}")], [Path(path).stem], [None]
    if not obj:
        raise UserError(f"WEIGHTS {path}: the .npz holds no arrays (expected W0, W1, ...)")
    n_b = sum(1 for k in obj if re.fullmatch(r"b\d+", k))
    n = max(sum(1 for k in obj if re.fullmatch(r"W\d+", k)), len(obj) - n_b, 1)
    want = [f"W{i}" for i in range(n)]
    allowed = set(want) | {f"b{i}" for i in range(n)}
    if sorted(k for k in obj if re.fullmatch(r"W\d+", k)) != sorted(want) or set(obj) - allowed:
        got = ", ".join(sorted(obj, key=_natural)[:8]) + (", ..." if len(obj) > 8 else "")
        raise UserError(f"WEIGHTS {path}: expected members named {', '.join(want[:3])}"
                        f"{', ...' if len(want) > 3 else ''} (layer order) and optional biases b0, b1, ..., got {got}")
    biases = [_real(obj[f"b{i}"], f"WEIGHTS {path}[b{i}]") if f"b{i}" in obj else None for i in range(n)]
    return [_real(obj[k], f"WEIGHTS {path}[{k}]") for k in want], want, biases


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def load_codebooks(path: str, n_layers: int) -> list:
    """--codebook: 16 floats (entry 0 = 0) for every layer, or one row of 16 per layer."""


    what = f"--codebook {path}"
    cb = _real(load_array(path, "--codebook"), what).astype(np.float64)
    if cb.ndim == 1:
        cb = np.broadcast_to(cb, (n_layers, cb.shape[0]))
    if cb.ndim != 2 or cb.shape != (n_layers, CODEBOOK_SIZE):
        raise UserError(f"{what}: expected shape ({CODEBOOK_SIZE},) or ({n_layers}, {CODEBOOK_SIZE}), "
                        f"got {cb.shape}")
    try:
        return [check_codebook(row, what if n_layers == 1 else f"{what}[{i}]") for i, row in enumerate(cb)]
    except InputError as e:
        raise UserError(str(e)) from None


def load_calibration(path: str):
    """--calibrate: real inputs; their shape is checked by the encoder / balancer."""
    return _real(load_array(path, "--calibrate"), f"--calibrate {path}")


def load_input(path: str, int_input: bool):
    """--input: real numbers; with --int-input, integers that fit 16 bits (checked in their own
    dtype, so that uint64 2**64 - 1 is not read as -1)."""


    x = _real(load_array(path, "--input"), f"--input {path}")
    if int_input:
        if x.dtype.kind not in "iu":
            raise UserError(f"--input {path}: --int-input expects integer fixed-point values, got dtype {x.dtype}")
        lo, hi = int_range(ACT_BITS)
        if x.size and (np.any(x > hi) or (x.dtype.kind == "i" and np.any(x < lo))):
            bad = int(np.flatnonzero(((x > hi) | (x < lo)) if x.dtype.kind == "i" else (x > hi))[0])
            raise UserError(f"--input {path}: --int-input element {bad} is {x.ravel()[bad]}; expected "
                            f"{lo}..{hi} (signed {ACT_BITS}-bit)")
        x = x.astype(np.int64)
    return x
