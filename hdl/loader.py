"""Turns an EIE image into the host-bus writes that load it (docs/host-interface.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eie.golden_model.errors import ConfigError
from eie.golden_model.image import permutation_problem
from eie.golden_model.layout import ENTRIES_PER_SRAM_ROW, local_rows, n_blocks, pack_sram_rows

from . import host_map as hm
from .params import ArrayParams

__all__ = ["LayerPlacement", "place_image", "image_writes", "input_writes", "output_reads",
           "start_writes", "params_for_image"]


@dataclass(frozen=True)
class LayerPlacement:
    """Where one layer lives in every PE: pointer base and, per PE, its first entry."""

    ptr_base: int
    n_ptrs: int
    entry_base: np.ndarray     # (N,)


def place_image(image, params: ArrayParams) -> list[LayerPlacement]:
    """Lay the layers out one after another in each PE's memories; ConfigError if they do not fit."""
    src = image.source
    params.to_config().check_image(image)   # PEs, batch rows, activation memories: one home (EIEConfig)
    if len(image.layers) > params.max_layers:
        raise ConfigError(f"{src}: {len(image.layers)} layers, the RTL array holds max_layers = {params.max_layers}")
    placements, ptr_base = [], 0
    entry_base = np.zeros(params.n_pe, dtype=np.int64)
    for L in image.layers:
        n_ptrs = L.ptr.shape[1]
        placements.append(LayerPlacement(ptr_base, n_ptrs, entry_base.copy()))
        ptr_base += n_ptrs
        entry_base += L.entries_per_pe
    if ptr_base > params.ptr_depth:
        raise ConfigError(f"{src}: {ptr_base} column pointers per PE, the RTL array has ptr_depth = {params.ptr_depth}")
    most = int(entry_base.max())
    if most > params.spmat_depth * ENTRIES_PER_SRAM_ROW:
        raise ConfigError(f"{src}: PE {int(entry_base.argmax())} holds {most} entries, the RTL array has "
                          f"spmat_depth = {params.spmat_depth} rows x {ENTRIES_PER_SRAM_ROW} = "
                          f"{params.spmat_depth * ENTRIES_PER_SRAM_ROW}")
    return placements


def params_for_image(image, **overrides) -> ArrayParams:
    """The smallest power-of-two memories that hold `image` (handy for simulation)."""
    def pow2(n):
        return 1 << max(0, int(n - 1).bit_length())
    N = image.n_pe
    n_ptrs = sum(L.ptr.shape[1] for L in image.layers)
    entries = sum(L.entries_per_pe for L in image.layers)
    widest = max(max(L.n_cols, L.n_out) for L in image.layers)
    kw = dict(n_pe=N, acc_depth=pow2(image.acc_depth), act_depth=pow2(-(-widest // N)),
              ptr_depth=max(2, pow2(n_ptrs)), spmat_depth=pow2(max(1, -(-int(np.max(entries)) // ENTRIES_PER_SRAM_ROW))),
              max_layers=pow2(len(image.layers)))
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return ArrayParams(**kw)


def image_writes(image, params: ArrayParams) -> list[tuple[int, int]]:
    """(address, data) bus writes that load every layer of `image` (codebooks, pointers,
    sparse-matrix rows, descriptors) and set N_LAYERS."""
    A, R = hm.address, hm.Region
    placements = place_image(image, params)
    N = params.n_pe
    writes = []
    for li, (L, pl) in enumerate(zip(image.layers, placements)):
        for v, w in enumerate(L.codebook):
            writes.append((A(R.CODEBOOK, li * 16 + v), int(w) & 0xFFFF))
        desc = {
            hm.LayerField.N_IN: L.n_cols, hm.LayerField.N_OUT: L.n_out,
            hm.LayerField.ROWS0: int(local_rows(L.n_out, N)[0]),
            hm.LayerField.BLOCK_ROWS: image.acc_depth, hm.LayerField.PTR_BASE: pl.ptr_base,
            hm.LayerField.SHIFT: L.shift, hm.LayerField.RELU: int(bool(L.relu)),
            # always written (0 = no bias), so no descriptor of an earlier image lingers
            hm.LayerField.BIAS: hm.bias_word(L.bias_activation, L.n_in % N, L.n_in // N) if L.bias else 0,
        }
        for field, val in desc.items():
            writes.append((A(R.LAYER, li * hm.LAYER_STRIDE + field), int(val)))
        for k in range(N):
            counts = np.diff(L.ptr[k], prepend=L.ptr[k][:1])     # 0 for the layer's first pointer
            for i, (ptr, count) in enumerate(zip(L.ptr[k], counts)):
                writes.append((A(R.PTR, pl.ptr_base + i, k), hm.pointer_word(int(ptr) + int(pl.entry_base[k]), int(count))))
    for k in range(N):
        v = np.concatenate([L.pe_entries(k)[1] for L in image.layers])
        z = np.concatenate([L.pe_entries(k)[2] for L in image.layers])
        for row, word in enumerate(pack_sram_rows(v, z)):
            writes.append((A(R.SPMAT, row, k), int(word)))
    writes.append((A(hm.Region.CTRL, hm.Ctrl.N_LAYERS), len(image.layers)))
    return writes


def input_writes(a_int, n_pe: int) -> list[tuple[int, int]]:
    """Clear the input, then write activation j to PE j % N, local j // N, in increasing j."""
    writes = [(hm.address(hm.Region.CTRL, hm.Ctrl.CMD), hm.Cmd.CLEAR_INPUT)]
    for j, val in enumerate(np.asarray(a_int, dtype=np.int64)):
        writes.append((hm.address(hm.Region.ACT, j // n_pe, j % n_pe), int(val) & 0xFFFF))
    return writes


def start_writes() -> list[tuple[int, int]]:
    return [(hm.address(hm.Region.CTRL, hm.Ctrl.CMD), hm.Cmd.START)]


def output_reads(n_out: int, n_pe: int, row_perm=None) -> list[int]:
    """Bus addresses of outputs 0 .. n_out-1 (16-bit two's complement in the low bits).

    Without `row_perm`: in hardware row order, output r at PE r % N, local r // N (the
    cycle-/bit-exact contract: golden_model RunResult.hw_outputs_int). With the last
    layer's `row_perm` (a load-balanced image, EncodedLayer.row_perm): in the original
    (logical) order, so the words read compare with RunResult.outputs_int; logical output
    row_perm[r] lives at hardware row r.
    """
    if row_perm is None:
        hw = range(n_out)
    else:
        if msg := permutation_problem(row_perm, n_out):
            raise ConfigError(f"row_perm: {msg}")
        hw = np.argsort(row_perm)             # hardware row of every logical output
    return [hm.address(hm.Region.ACT, int(r) // n_pe, int(r) % n_pe) for r in hw]
