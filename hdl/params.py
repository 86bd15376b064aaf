"""Parameters of the EIE array and the widths and layouts derived from them.

One `ArrayParams` describes a build of the RTL; `to_config()` gives the golden model's
`EIEConfig` for the same array, so tests compare like with like.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

from amaranth.hdl import signed
from amaranth.lib import data

from eie.golden_model import numerics as nm
from eie.golden_model.config import EIEConfig, Timing
from eie.golden_model.errors import ConfigError
from eie.golden_model.layout import ENTRIES_PER_SRAM_ROW, SRAM_ROW_BITS

from .host_map import PTR_COUNT_BITS

__all__ = ["ArrayParams", "memory_bits", "bits_for", "fits_signed", "ACT_BITS", "PRODUCT_BITS", "CODEBOOK_SIZE"]

ACT_BITS = nm.ACT_BITS              # activations and codebook values (docs/numerics.md)
PRODUCT_BITS = nm.PRODUCT_BITS      # exact 16 x 16 product
CODEBOOK_SIZE = nm.CODEBOOK_SIZE    # 4-bit weight index


def bits_for(n: int) -> int:
    """Bits of an unsigned value in 0..n (at least 1)."""
    return max(1, int(n).bit_length())


def fits_signed(value, bits: int):
    """True when a signed Amaranth value lies in the `bits`-bit signed range: every bit from
    bit `bits - 1` up equals the sign (no comparator, just an AND/OR of the top bits)."""
    top = value[bits - 1:]
    return (top == 0) | (top == (1 << len(top)) - 1)


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class ArrayParams:
    """A build of the EIE array. Depths are per PE; all memory depths are powers of two."""

    n_pe: int = 4
    fifo_depth: int = 8
    acc_depth: int = 64          # accumulators per PE (rows per output batch)
    act_depth: int = 1024        # activations per PE per bank (source / destination)
    ptr_depth: int = 4096        # column pointers per PE, all layers together
    spmat_depth: int = 2048      # 64-bit sparse-matrix rows per PE (8 entries each)
    max_layers: int = 8          # layer descriptors and codebooks held on chip
    acc_bits: int = nm.DEFAULT_ACC_BITS
    # A two-entry register slice between every PE's list head and its LNZD leaf, so the
    # leaf's grant does not reach back into the PE (docs/rtl.md): one more cycle of
    # `list_latency` (the `timing` below), the rest of the schedule unchanged.
    leaf_slice: bool = False

    def __post_init__(self):
        for name in ("n_pe", "fifo_depth", "acc_depth", "act_depth", "ptr_depth", "spmat_depth", "max_layers"):
            val = getattr(self, name)
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ConfigError(f"{name} must be a positive integer, not {val!r}")
        for name in ("acc_depth", "act_depth", "ptr_depth", "spmat_depth", "max_layers"):
            if not _pow2(getattr(self, name)):
                raise ConfigError(f"{name} must be a power of two, not {getattr(self, name)}")
        if self.ptr_depth < 2:
            raise ConfigError(f"ptr_depth must be at least 2 (even and odd bank), not {self.ptr_depth}")
        for name in ("act_depth", "ptr_depth", "spmat_depth"):
            if getattr(self, name) > 1 << 20:
                raise ConfigError(f"{name} must be at most 2**20 (host address offset field), not {getattr(self, name)}")
        if self.n_pe > 256:
            raise ConfigError(f"n_pe must be at most 256 (host address map), not {self.n_pe}")
        nm.check_acc_bits(self.acc_bits)
        if not isinstance(self.leaf_slice, bool):
            raise ConfigError(f"leaf_slice must be True or False, not {self.leaf_slice!r}")

    @property
    def timing(self) -> Timing:
        """The latencies this build implements (the golden model's cycle-model constants)."""
        base = Timing()
        return Timing(list_latency=base.list_latency + int(self.leaf_slice)) if self.leaf_slice else base

    # -- derived widths ------------------------------------------------------------
    @property
    def index_bits(self) -> int:
        """Global activation index j < n_pe * act_depth."""
        return bits_for(self.n_pe * self.act_depth - 1)

    @property
    def local_bits(self) -> int:
        return bits_for(self.act_depth - 1)

    @property
    def ptr_addr_bits(self) -> int:
        return bits_for(self.ptr_depth - 1)

    @property
    def entry_bits(self) -> int:
        """Pointer values: entry indices 0 .. spmat_depth * 8 inclusive."""
        return bits_for(self.spmat_depth * ENTRIES_PER_SRAM_ROW)

    @property
    def spmat_addr_bits(self) -> int:
        return bits_for(self.spmat_depth - 1)

    @property
    def row_bits(self) -> int:
        return bits_for(self.acc_depth - 1)

    @property
    def layer_bits(self) -> int:
        return bits_for(self.max_layers - 1)

    @property
    def pe_bits(self) -> int:
        return bits_for(self.n_pe - 1)

    @property
    def shift_bits(self) -> int:
        return bits_for(nm.MAX_ACC_BITS)

    # -- layouts -----------------------------------------------------------------------
    @cached_property
    def act_item(self) -> data.StructLayout:
        """One broadcast: column index j and its (non-zero) activation."""
        return data.StructLayout({"index": self.index_bits, "value": signed(ACT_BITS)})

    @cached_property
    def ptr_item(self) -> data.StructLayout:
        """One stored pointer p[t]: the entries of the column ending at it, saturated, then
        its entry index (host_map.pointer_word packs the host's word the same way)."""
        return data.StructLayout({"count": PTR_COUNT_BITS, "value": self.entry_bits})

    @cached_property
    def nz_item(self) -> data.StructLayout:
        """One non-zero activation held by a PE: local index m (j = m * N + k) and value."""
        return data.StructLayout({"local": self.local_bits, "value": signed(ACT_BITS)})

    def to_config(self, timing: Timing | None = None) -> EIEConfig:
        """The golden model's view of this array."""
        return EIEConfig(n_pe=self.n_pe, fifo_depth=self.fifo_depth, acc_depth=self.acc_depth,
                         act_depth=self.act_depth, acc_bits=self.acc_bits, timing=timing or self.timing)

    def as_dict(self) -> dict:
        return asdict(self)



def memory_bits(p: ArrayParams) -> dict:
    """Bits of each on-chip memory of one PE (what block RAM / SRAM macros must hold)."""
    return {
        "pointers": p.ptr_depth * p.ptr_item.size,
        "sparse_matrix": p.spmat_depth * SRAM_ROW_BITS,
        "activations": 2 * p.act_depth * ACT_BITS,
        "nonzero_lists": 2 * p.act_depth * (p.local_bits + ACT_BITS),
        "accumulators": 2 * p.acc_depth * p.acc_bits,     # two banks (double-buffered, docs/rtl.md)
        "codebooks": p.max_layers * CODEBOOK_SIZE * ACT_BITS,
        "activation_queue": p.fifo_depth * (p.index_bits + ACT_BITS),
    }
