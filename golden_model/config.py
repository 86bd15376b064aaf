"""Hardware parameters shared by the golden model, the cycle model and the RTL."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from . import numerics as nm
from .errors import ConfigError
from .image import EIEImage

__all__ = ["Timing", "EIEConfig", "DEFAULT_FIFO_DEPTH", "DEFAULT_ACT_DEPTH"]

DEFAULT_FIFO_DEPTH = 8     # EIE paper: activation queue depth 8
DEFAULT_ACT_DEPTH = 1024   # activations per PE per bank (the paper's 2 KB activation SRAM)


@dataclass(frozen=True)
class Timing:
    """Fixed latencies of the micro-architecture (docs/cycle-model.md, section 'Constants')."""

    lnzd_latency: int = 1       # batch start -> first cycle the LNZD can broadcast
    pipeline_latency: int = 3   # last entry issue -> its accumulate has landed (read, decode, multiply, add)
    writeback_latency: int = 1  # last accumulator read -> its output written (round/saturate/ReLU)

    def __post_init__(self):
        for name, val in asdict(self).items():
            if not isinstance(val, int) or val < 0:
                raise ConfigError(f"timing.{name} must be a non-negative integer, not {val!r}")


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
                                      f"activation memories ({self.n_pe} PEs x {self.act_depth} = {cap})")

    def as_dict(self) -> dict:
        return asdict(self)
