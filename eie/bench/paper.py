"""The paper's evaluation figures the benchmark is compared with.

Han et al., "EIE: Efficient Inference Engine on Compressed Deep Neural Network",
ISCA 2016: Table III (benchmark layers: shape, weight and activation density) and
Table IV (EIE wall-clock µs per layer at 800 MHz on 64 PEs, measured and, in brackets,
theoretical). The FC8 cycle counts of the authors' simulator are in golden_model/fc8.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["PaperLayer", "TABLE_III", "CLOCK_MHZ", "PAPER_N_PE", "PAPER_FIFO_DEPTH", "layer_by_name"]

CLOCK_MHZ = 800.0      # EIE's clock in the paper (45 nm)
PAPER_N_PE = 64
PAPER_FIFO_DEPTH = 8


@dataclass(frozen=True)
class PaperLayer:
    """One row of Table III with its Table IV times (µs at 800 MHz, 64 PEs)."""

    name: str
    n_in: int
    n_out: int
    weight_density: float
    act_density: float
    measured_us: float
    theoretical_us: float

    @property
    def useful_macs(self) -> float:
        """Useful multiply-accumulates implied by Table III's shape and densities."""
        return self.n_in * self.n_out * self.weight_density * self.act_density

    @property
    def theoretical_macs(self) -> float:
        """Useful MACs implied by Table IV's theoretical time (perfect balance, 1 MAC/PE/cycle).

        On FC8 this is the authors' real layer: 8.9 µs x 800 MHz x 64 = 455,680, and the
        data holds 452,789 useful pairs (7,075 ideal cycles = 8.84 µs)."""
        return self.theoretical_us * CLOCK_MHZ * PAPER_N_PE

    def work_matched_densities(self) -> tuple[float, float]:
        """(weight, activation) densities scaled so the useful MACs equal `theoretical_macs`.

        Table III's densities give fewer MACs than Table IV's theoretical time for most
        layers (VGG-6: 1.9x fewer); the activation density is scaled first (it varies
        per input image), then the weight density when activations are already dense."""
        f = self.theoretical_macs / self.useful_macs
        a = self.act_density * f
        if a <= 1.0:
            return self.weight_density, a
        return min(1.0, self.weight_density * a), 1.0

    def as_dict(self) -> dict:
        return asdict(self)


TABLE_III = (
    PaperLayer("Alex-6", 9216, 4096, 0.09, 0.351, 30.3, 28.1),
    PaperLayer("Alex-7", 4096, 4096, 0.09, 0.353, 12.2, 11.7),
    PaperLayer("Alex-8", 4096, 1000, 0.25, 0.375, 9.9, 8.9),
    PaperLayer("VGG-6", 25088, 4096, 0.04, 0.183, 34.4, 28.1),
    PaperLayer("VGG-7", 4096, 4096, 0.04, 0.375, 8.7, 7.9),
    PaperLayer("VGG-8", 4096, 1000, 0.23, 0.411, 8.4, 7.3),
    PaperLayer("NT-We", 4096, 600, 0.10, 1.0, 8.0, 5.2),
    PaperLayer("NT-Wd", 600, 8791, 0.11, 1.0, 13.9, 13.0),
    PaperLayer("NT-LSTM", 1201, 2400, 0.10, 1.0, 7.5, 6.5),
)


def layer_by_name(name: str) -> PaperLayer:
    for L in TABLE_III:
        if L.name.lower() == name.lower():
            return L
    raise KeyError(f"unknown Table III layer {name!r}; known: {', '.join(L.name for L in TABLE_III)}")
