"""Hardware parameters shared by the golden model, the cycle model and the RTL."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from . import numerics as nm
from .errors import ConfigError
from .image import EIEImage

__all__ = ["Timing", "lnzd_levels", "EIEConfig", "DEFAULT_FIFO_DEPTH", "DEFAULT_ACT_DEPTH"]

DEFAULT_FIFO_DEPTH = 8     # EIE paper: activation queue depth 8
DEFAULT_ACT_DEPTH = 1024   # activations per PE per bank (the paper's 2 KB activation SRAM)


@dataclass(frozen=True)
class Timing:
    """Fixed latencies of the pipelined micro-architecture (docs/cycle-model.md, 'Parameters').

    Each one is a register stage of the RTL (docs/rtl.md, 'Where the cycle-model constants
    come from'); changing one changes the contract for both sides.
    """

    list_latency: int = 3       # batch start -> every PE's first non-zero in its LNZD leaf buffer (read, land, buffer)
    lnzd_level_latency: int = 1  # per LNZD tree level: each node has a registered output buffer
    broadcast_latency: int = 1  # the root's choice -> written into every queue (broadcast registers)
    room_latency: int = 2       # a pop -> its credit usable by the broadcaster (registered pop, counter)
    pointer_latency: int = 2    # queue pop -> first issue of that column (pointer read, registered)
    pipeline_latency: int = 7   # last entry issue -> its sum is in the accumulator (fetch, select, decode, multiply, read, add, write)
    writeback_latency: int = 4  # last accumulator read -> its output written (register, shift, round/saturate, write)

    def __post_init__(self):
        for name, val in asdict(self).items():
            if not isinstance(val, int) or isinstance(val, bool) or val < 0:
                raise ConfigError(f"timing.{name} must be a non-negative integer, not {val!r}")
        if self.pointer_latency < 1:
            raise ConfigError(f"timing.pointer_latency must be at least 1, not {self.pointer_latency}")

    def lnzd_latency(self, n_pe: int) -> int:
        """Batch cycle in which the LNZD root first has an item: the list read, then one cycle
        per tree level."""
        return self.list_latency + lnzd_levels(n_pe) * self.lnzd_level_latency

    def first_broadcast(self, n_pe: int) -> int:
        """Batch cycle of the earliest broadcast (queue write)."""
        return self.lnzd_latency(n_pe) + self.broadcast_latency


def lnzd_levels(n_pe: int) -> int:
    """Levels of the LNZD quadtree over N PEs (leaf nodes of four PEs, then nodes of four)."""
    levels, width = 1, -(-n_pe // 4)
    while width > 1:
        levels, width = levels + 1, -(-width // 4)
    return levels


@dataclass(frozen=True)
class EIEConfig:
    """One EIE array: PEs, queue depth, memory depths and accumulator width."""

    n_pe: int = 4
    fifo_depth: int = DEFAULT_FIFO_DEPTH
    acc_depth: int = 64
    act_depth: int = DEFAULT_ACT_DEPTH
    acc_bits: int = nm.DEFAULT_ACC_BITS
    timing: Timing = field(default_factory=Timing)

    def __post_init__(self):
        for name in ("n_pe", "fifo_depth", "acc_depth", "act_depth"):
            val = getattr(self, name)
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ConfigError(f"{name} must be a positive integer, not {val!r}")
        if not isinstance(self.acc_bits, int) or not nm.MIN_ACC_BITS <= self.acc_bits <= nm.MAX_ACC_BITS:
            raise ConfigError(f"acc_bits must be an integer in {nm.MIN_ACC_BITS}..{nm.MAX_ACC_BITS}, "
                              f"not {self.acc_bits!r}")

    @classmethod
    def for_image(cls, image: EIEImage, **overrides) -> "EIEConfig":
        """The configuration an image was built for (n_pe, acc_depth), with overrides."""
        kw = {"n_pe": image.n_pe, "acc_depth": image.acc_depth}
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)

    def with_(self, **kw) -> "EIEConfig":
        return replace(self, **kw)

    def check_image(self, image: EIEImage) -> None:
        """Raise ConfigError if this array cannot run `image` as stored."""
        if image.n_pe != self.n_pe:
            raise ConfigError(f"{image.source}: built for {image.n_pe} PEs, the array has {self.n_pe}")
        if image.acc_depth > self.acc_depth:
            raise ConfigError(f"{image.source}: output batches of {image.acc_depth} rows per PE need "
                              f"acc_depth >= {image.acc_depth}, the array has {self.acc_depth}")
        cap = self.n_pe * self.act_depth
        for i, L in enumerate(image.layers):
            for name in ("n_in", "n_out"):
                if getattr(L, name) > cap:
                    raise ConfigError(f"{image.source}: layers[{i}].{name} = {getattr(L, name)} exceeds the "
                                      f"activation memories ({self.n_pe} PEs x act_depth {self.act_depth} = {cap})")
            if L.n_cols > cap:
                raise ConfigError(f"{image.source}: layers[{i}] has n_in = {L.n_in} and a bias column: "
                                  f"{L.n_cols} columns exceed the activation memories ({self.n_pe} PEs x "
                                  f"act_depth {self.act_depth} = {cap})")

    def as_dict(self) -> dict:
        return asdict(self)
