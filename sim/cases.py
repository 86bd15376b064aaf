"""Verification cases: an EIE image plus int inputs, built by name or from a seed.

The same cases run in cocotb (sim/tb_eie.py) and can be saved to a directory that a
simulator process reads (`save_cases` / `load_cases`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eie.golden_model import encode_network
from eie.golden_model.errors import ConfigError
from eie.golden_model.image_file import load_image, save_image
from eie.hdl.loader import place_image
from eie.hdl.params import ArrayParams

__all__ = ["Case", "sim_params", "random_case", "corner_cases", "CORNER_CASES", "save_cases", "load_cases"]


@dataclass
class Case:
    """One verification case: run every row of `inputs` through `image`."""

    name: str
    image: object                  # EIEImage
    inputs: np.ndarray             # (batch, n_in) int16 values as int64
    seed: int | None = None
    reset_after: int | None = None  # assert reset this many cycles into the first run, then redo the case
    info: dict = field(default_factory=dict)


def sim_params(n_pe: int = 4, fifo_depth: int = 8, **kw) -> ArrayParams:
    """The build the cocotb suites use: room for every random and corner case."""
    base = dict(n_pe=n_pe, fifo_depth=fifo_depth, acc_depth=16, act_depth=64, ptr_depth=8192,
                spmat_depth=1024, max_layers=4)
    base.update(kw)
    return ArrayParams(**base)


def _sparse(rng, n_out, n_in, density, scale=0.5):
    W = rng.normal(0, scale, (n_out, n_in))
    return W * (rng.random((n_out, n_in)) < density)


def _inputs(rng, batch, n_in, density, scale=512):
    a = rng.integers(-scale, scale, (batch, n_in))
    a[rng.random((batch, n_in)) >= density] = 0
    return a


def random_case(seed: int, params: ArrayParams, max_dim: int = 48) -> Case:
    """A random network that fits `params`: 1-3 layers, shapes 1..max_dim (any, not only
    multiples of N), weight density 1-100 %, activation density 0-100 %, output batches
    of 1..acc_depth rows (so layers often span several batches), 1-3 samples; each layer
    has a bias with probability 1/2 (drawn from a generator of its own, so the rest of
    a seed's case is what it was before biases)."""
    rng = np.random.default_rng(seed)
    N = params.n_pe
    cap = min(max_dim, N * params.act_depth)
    for _ in range(20):
        layers = int(rng.integers(1, 4))
        dims = [int(rng.integers(1, cap + 1)) for _ in range(layers + 1)]
        w_density = float(rng.choice([0.01, 0.05, 0.1, 0.3, 0.6, 1.0]))
        a_density = float(rng.choice([0.0, 0.1, 0.5, 0.9, 1.0]))
        acc_depth = int(rng.choice([d for d in (1, 2, 4, 8, 16) if d <= params.acc_depth]))
        Ws = [_sparse(rng, dims[i + 1], dims[i], w_density) for i in range(layers)]
        bias_rng = np.random.default_rng([seed, 1])
        biases = [bias_rng.normal(0, 0.5, d) if bias_rng.random() < 0.5 else None for d in dims[1:]]
        image = encode_network(Ws, N, acc_depth=acc_depth, seed=seed % 997, biases=biases)
        try:
            place_image(image, params)
        except ConfigError:
            continue
        full_scale = rng.random() < 0.15          # sometimes saturate the 16-bit outputs
        a = _inputs(rng, int(rng.integers(1, 4)), dims[0], a_density, 32767 if full_scale else 512)
        info = {"dims": dims, "w_density": w_density, "a_density": a_density, "acc_depth": acc_depth,
                "full_scale": bool(full_scale), "biases": [b is not None for b in biases]}
        return Case(f"random_{seed}", image, a, seed=seed, info=info)
    raise ConfigError(f"seed {seed}: no random network fits {params}")


# -- the corner cases, by name ------------------------------------------------------------
def _cells(n_out, n_in, cells, value=0.75):
    W = np.zeros((n_out, n_in))
    for r, c in cells:
        W[r, c] = value if (r + c) % 2 else -value
    return W


def _runs_15_16(N, rng):
    n_out = 40 * N
    W = _cells(n_out, 3, [(0, 0), (16 * N, 0), (33 * N, 0), (16 * N, 1), (39 * N, 2)])
    return encode_network([W], N, acc_depth=16 if N > 1 else 16), np.array([[256, -300, 77], [0, 512, 1]])


def _empty_columns(N, rng):
    W = _sparse(rng, 3 * N + 1, 16, 0.5)
    W[:, ::3] = 0
    W[0::N, 1] = 0
    return encode_network([W], N, acc_depth=4), np.full((1, 16), 100)


def _all_zero_input(N, rng):
    Ws = [_sparse(rng, 10, 8, 0.5), _sparse(rng, 6, 10, 0.5)]
    return encode_network(Ws, N, acc_depth=4), np.zeros((2, 8), dtype=np.int64)


def _all_zero_matrix(N, rng):
    return encode_network([np.zeros((9, 11))], N, acc_depth=2), np.arange(1, 12)[None, :] * 37


def _column_in_one_pe(N, rng):
    k = N - 1
    cells = [(r, 1) for r in range(k, 10 * N, N)] + [(0, 0), (1 % (10 * N), 2), (3 % (10 * N), 3)]
    return encode_network([_cells(10 * N, 4, cells)], N, acc_depth=16), np.array([[300, 200, -100, 50]])


def _same_accumulator(N, rng):
    W = np.zeros((3, 12))
    W[0, :] = np.linspace(-1, 1, 12) + 0.05
    return encode_network([W], N, acc_depth=4), np.arange(1, 13)[None, :] * 40


def _full_queues(N, rng):
    # column c is long in PE c % N and empty elsewhere: with shallow queues the LNZD
    # waits for the busy PE, with deep ones the PEs overlap their columns
    cells = [(r, c) for c in range(12) for r in range(c % N, 9 * N, N)]
    return encode_network([_cells(9 * N, 12, cells)], N, acc_depth=16), np.full((1, 12), 64)


def _fewer_rows_than_pes(N, rng):
    return encode_network([_sparse(rng, max(1, N - 1), 10, 0.7)], N, acc_depth=2), _inputs(rng, 2, 10, 0.8)


def _rows_not_multiple(N, rng):
    return encode_network([_sparse(rng, 3 * N + 1, 9, 0.6)], N, acc_depth=16), _inputs(rng, 2, 9, 0.8)


def _longer_than_one_batch(N, rng):
    return encode_network([_sparse(rng, 9 * N + 1, 12, 0.4)], N, acc_depth=2), _inputs(rng, 2, 12, 0.6)


def _register_file_swap(N, rng):
    Ws = [_sparse(rng, 14, 10, 0.5), _sparse(rng, 11, 14, 0.5), _sparse(rng, 6, 11, 0.6)]
    return encode_network(Ws, N, acc_depth=4), _inputs(rng, 3, 10, 0.9)


def _output_saturation(N, rng):
    cb = np.array([0.0] + list(np.linspace(-120, 120, 15)))
    W = _sparse(rng, 10, 20, 0.9) * 200
    return encode_network([W], N, acc_depth=4, codebooks=[cb]), rng.integers(-32768, 32767, (2, 20))


def _accumulator_saturation(N, rng):
    cb = np.array([0.0] + list(np.linspace(-100, 100, 15)))
    W = _sparse(rng, 8, 24, 0.8) * 200
    return encode_network([W], N, acc_depth=8, codebooks=[cb]), rng.integers(-32768, 32767, (2, 24))


def _bias_columns(N, rng):
    # biases on the first and last layers: their bias columns (index n_in) sit in PEs
    # n_in mod N = 1 and 3 mod N, after every other entry of those PEs' lists; the first
    # sample is all zeros, so the bias is the only broadcast; layers of several batches
    dims = [4 * N + 1, 5 * N, 2 * N + 3]
    Ws = [_sparse(rng, dims[1], dims[0], 0.4), _sparse(rng, dims[2], dims[1], 0.5),
          _sparse(rng, 7, dims[2], 0.6)]
    bs = [rng.normal(0, 0.5, dims[1]), None, rng.normal(0, 0.5, 7)]
    a = _inputs(rng, 3, dims[0], 0.7)
    a[0] = 0
    return encode_network(Ws, N, acc_depth=2, biases=bs), a


CORNER_CASES = {
    "runs_of_15_and_16_zeros": _runs_15_16,
    "empty_columns": _empty_columns,
    "all_zero_input": _all_zero_input,
    "all_zero_matrix": _all_zero_matrix,
    "column_entirely_in_one_pe": _column_in_one_pe,
    "same_accumulator_consecutive_cycles": _same_accumulator,
    "full_queues_stall": _full_queues,
    "fewer_rows_than_pes": _fewer_rows_than_pes,
    "rows_not_a_multiple_of_n": _rows_not_multiple,
    "outputs_longer_than_one_batch": _longer_than_one_batch,
    "register_file_swap_across_layers": _register_file_swap,
    "output_saturation_16_bit": _output_saturation,
    "accumulator_saturation": _accumulator_saturation,   # bites with a narrow acc_bits build
    "bias_columns": _bias_columns,
}


def corner_cases(n_pe: int, names=None, seed: int = 0) -> list[Case]:
    out = []
    for i, name in enumerate(names or CORNER_CASES):
        image, a = CORNER_CASES[name](n_pe, np.random.default_rng(seed + i))
        out.append(Case(name, image, np.asarray(a, dtype=np.int64)))
    return out


def reset_case(n_pe: int, reset_after: int = 25, seed: int = 99) -> Case:
    """A two-layer run that is reset part-way through, then reloaded and run again."""
    rng = np.random.default_rng(seed)
    image = encode_network([_sparse(rng, 16, 12, 0.6), _sparse(rng, 5, 16, 0.6)], n_pe, acc_depth=4)
    return Case("reset_mid_run", image, _inputs(rng, 2, 12, 0.9), reset_after=reset_after)


# -- on disk, for the simulator process ---------------------------------------------------
def save_cases(cases: list[Case], directory) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i, c in enumerate(cases):
        img = save_image(c.image, d / f"case{i:05d}.eie", overwrite=True)
        np.save(d / f"case{i:05d}.npy", np.asarray(c.inputs, dtype=np.int64))
        manifest.append({"name": c.name, "seed": c.seed, "image": img.name, "inputs": f"case{i:05d}.npy",
                         "reset_after": c.reset_after, "info": c.info})
    path = d / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path


def load_cases(manifest) -> list[Case]:
    manifest = Path(manifest)
    out = []
    for m in json.loads(manifest.read_text()):
        out.append(Case(m["name"], load_image(manifest.parent / m["image"]),
                        np.load(manifest.parent / m["inputs"]), seed=m["seed"],
                        reset_after=m["reset_after"], info=m.get("info", {})))
    return out
