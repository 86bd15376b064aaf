"""Address map of the EIE array's host bus (pure Python: shared by RTL, loader, testbenches).

The bus is a word-addressed, 64-bit, single-cycle bus (docs/host-interface.md):
an address is `region << 28 | pe << 20 | offset`.
"""

from __future__ import annotations

__all__ = ["REGION_SHIFT", "PE_SHIFT", "OFFSET_BITS", "Region", "Ctrl", "Cmd", "Status",
           "LayerField", "LAYER_STRIDE", "address", "split_address", "bias_word",
           "PTR_COUNT_BITS", "PTR_COUNT_MAX", "pointer_word"]

REGION_SHIFT = 28
PE_SHIFT = 20
OFFSET_BITS = 20
ADDR_BITS = 32
DATA_BITS = 64
PE_READ_LATENCY = 5  # a PE's rd_data comes PE_READ_LATENCY cycles after its rd_local
READ_LATENCY = 3 + PE_READ_LATENCY   # r_valid and r_data come READ_LATENCY (8) cycles after r_en:
                                     # two request registers, the PE, then its group's read register
                                     # (docs/host-interface.md)


class Region:
    CTRL = 0        # control and status registers
    LAYER = 1       # layer descriptors: offset = layer * LAYER_STRIDE + LayerField
    CODEBOOK = 2    # offset = layer * 16 + v; written into every PE
    PTR = 3         # PE's column pointers: offset = absolute pointer index
    SPMAT = 4       # PE's sparse-matrix SRAM: offset = 64-bit row
    ACT = 5         # PE's activations: offset = local index m (j = m * N + pe)


class Ctrl:
    CMD = 0         # write: Cmd bits
    STATUS = 1      # read: Status bits
    CYCLES = 2      # read: cycles of the last run (start to done)
    N_LAYERS = 3    # read/write: layers to run
    INFO = 4        # read: n_pe | fifo_depth << 16 | acc_depth << 32 | max_layers << 48
    RUNS = 5        # read: runs completed since reset


class Cmd:
    START = 1 << 0         # run layers 0 .. N_LAYERS-1 on the loaded input
    CLEAR_INPUT = 1 << 1   # forget the input's non-zeros before writing a new input


class Status:
    BUSY = 1 << 0
    DONE = 1 << 1          # a run finished since the last START


class LayerField:
    N_IN = 0
    N_OUT = 1
    ROWS0 = 2        # local rows of PE 0 = ceil(n_out / N)
    BLOCK_ROWS = 3   # rows per output batch (the image's acc_depth)
    PTR_BASE = 4     # index of the layer's first pointer in every PE's pointer memory
    SHIFT = 5        # write-back right shift in_frac + w_frac - out_frac
    RELU = 6
    BIAS = 7         # bias column: activation (bits 0-15; 0 = none) | PE << 16 | local index << 32


def bias_word(activation: int, pe: int, local: int) -> int:
    """The BIAS field: the bias column's activation (16-bit two's complement), the PE and
    local index that hold column n_in (j = local * N + pe)."""
    return (int(activation) & 0xFFFF) | (int(pe) << 16) | (int(local) << 32)


LAYER_STRIDE = 8

PTR_COUNT_BITS = 2     # a PTR word: the column's count in bits 0-1, the entry index from bit 2
PTR_COUNT_MAX = 3      # counts saturate: the issue stage only asks "none, one, two, three or more"


def pointer_word(value: int, count: int) -> int:
    """A PTR write, laid out as `ArrayParams.ptr_item`: min(p[t] - p[t-1], 3), the entries
    of the column that ends at pointer p[t] (0 for a layer's first pointer), then p[t]'s
    absolute entry index. The loader knows the counts; stored with the pointers, they spare
    the issue stage a subtraction between the pointer memory and the sparse-matrix read
    enable. (Low bits: a pointer word of a small build stays one 16-bit halfword.)"""
    if count < 0:
        raise ValueError(f"pointer count {count} is negative: pointers must not decrease")
    return min(int(count), PTR_COUNT_MAX) | int(value) << PTR_COUNT_BITS


def address(region: int, offset: int = 0, pe: int = 0) -> int:
    if not 0 <= offset < (1 << OFFSET_BITS):
        raise ValueError(f"offset {offset} does not fit the {OFFSET_BITS}-bit offset field")
    if not 0 <= pe < (1 << (REGION_SHIFT - PE_SHIFT)):
        raise ValueError(f"pe {pe} does not fit the PE field")
    return (region << REGION_SHIFT) | (pe << PE_SHIFT) | offset


def split_address(addr: int) -> tuple[int, int, int]:
    """(region, pe, offset) of a bus address."""
    return addr >> REGION_SHIFT, (addr >> PE_SHIFT) & 0xFF, addr & ((1 << OFFSET_BITS) - 1)
