"""Table IV reproduced: the nine Table III layers and the real FC8 on the cycle model."""

from __future__ import annotations

from eie.golden_model.config import EIEConfig
from eie.golden_model.cycle_model import cycle_report
from eie.golden_model.balance import balance_image
from eie.golden_model.fc8 import AUTHORS_CYCLES, AUTHORS_CYCLES_WITH_BIAS, fc8_image, load_fc8
from eie.golden_model.model import run_image

from .layers import BenchLayer, fc8_layer, synthetic_layer
from .paper import CLOCK_MHZ, PAPER_FIFO_DEPTH, PAPER_N_PE, TABLE_III, PaperLayer

__all__ = ["bench_layers", "table_layer", "layer_cycles", "table_row", "fc8_row", "TABLE_SEED"]

TABLE_SEED = 2016   # layer i of Table III uses seed TABLE_SEED + i


def table_layer(index: int, mode: str = "table", scale: float = 1.0, layers=TABLE_III) -> BenchLayer:
    """Synthetic layer `index` of Table III. mode 'table': the stated densities; 'work':
    densities scaled so the useful MACs equal Table IV's theoretical time
    (PaperLayer.work_matched_densities). `scale` < 1 shrinks both dimensions (tests and
    quick runs). Seeded by its index alone, so any process makes the same layer."""
    if mode not in ("table", "work"):
        raise ValueError(f"mode must be 'table' or 'work', not {mode!r}")
    P = layers[index]
    w, a = (P.weight_density, P.act_density) if mode == "table" else P.work_matched_densities()
    n_in, n_out = max(1, round(P.n_in * scale)), max(1, round(P.n_out * scale))
    return synthetic_layer(P.name, n_in, n_out, w, a, seed=TABLE_SEED + index)


def bench_layers(mode: str = "table", scale: float = 1.0, layers=TABLE_III) -> list[tuple[PaperLayer, BenchLayer]]:
    """(paper layer, synthetic layer) for every layer of Table III (`table_layer`)."""
    return [(P, table_layer(i, mode, scale, layers)) for i, P in enumerate(layers)]


def layer_cycles(layer: BenchLayer, n_pe: int, fifo_depth: int, image=None, act_depth: int | None = None) -> dict:
    """Cycle-model figures of one layer on one input (the CycleReport summary)."""
    image = image if image is not None else layer.image(n_pe)
    need = -(-max(layer.shape) // n_pe)
    cfg = EIEConfig.for_image(image, fifo_depth=fifo_depth, act_depth=max(act_depth or 0, need, 1024))
    rep = cycle_report(image, [layer.a[None, :]], cfg)
    d = rep.as_dict()
    return {k: d[k] for k in ("cycles", "useful_macs", "entries_processed", "padding_entries",
                              "busiest_pe_entries", "balanced_bound", "load_balance_efficiency",
                              "broadcasts", "broadcast_stall_cycles")} | {
        "ideal_cycles": -(-d["useful_macs"] // n_pe)}


def _balanced(layer: BenchLayer, image, calibrated: bool):
    """Row-permuted re-encoding (golden_model/balance.py). Uncalibrated: from the weights
    alone (every input assumed non-zero alike); calibrated: tuned on the layer's own input,
    an optimistic figure since the same input is then measured."""
    return balance_image(image, calibration=layer.a[None, :] if calibrated else None, int_input=True)


def _balanced_figures(L: BenchLayer, image, n_pe: int, fifo_depth: int, before: int, calibrated: bool) -> dict:
    b = layer_cycles(L, n_pe, fifo_depth, _balanced(L, image, calibrated))
    return {k: b[k] for k in ("cycles", "busiest_pe_entries", "load_balance_efficiency")} | {
        "us_at_800MHz": b["cycles"] / CLOCK_MHZ, "calibrated": calibrated,
        "cycles_saved_percent": 100.0 * (before - b["cycles"]) / before}


def table_row(P: PaperLayer | None, L: BenchLayer, n_pe: int, fifo_depth: int, balance: bool, image=None) -> dict:
    """One Table IV row: the cycle model's figures of `L`, next to the paper's `P` (if given)."""
    image = image if image is not None else L.image(n_pe)
    c = layer_cycles(L, n_pe, fifo_depth, image)
    us = c["cycles"] / CLOCK_MHZ
    row = {"layer": L.name, "shape": [L.shape[1], L.shape[0]], "source": L.source,
           "weight_density": L.weight_density, "act_density": L.act_density,
           **c, "us_at_800MHz": us, "ideal_us": c["ideal_cycles"] / CLOCK_MHZ}
    if P is not None:
        row |= {"paper_weight_density": P.weight_density, "paper_act_density": P.act_density,
                "paper_measured_us": P.measured_us, "paper_theoretical_us": P.theoretical_us,
                "diff_vs_measured_percent": 100.0 * (us - P.measured_us) / P.measured_us,
                "diff_vs_theoretical_percent": 100.0 * (us - P.theoretical_us) / P.theoretical_us,
                "paper_measured_over_theoretical": P.measured_us / P.theoretical_us,
                "ours_over_ideal": c["cycles"] / max(1, c["ideal_cycles"])}
    if balance:
        row["balanced"] = _balanced_figures(L, image, n_pe, fifo_depth, c["cycles"], calibrated=False)
    return row


def fc8_row(fc8_dir=None, fifo_depth: int = PAPER_FIFO_DEPTH, balance: bool = True,
            layer: BenchLayer | None = None) -> dict | None:
    """FC8 as the authors stored it (their entries, unchanged), next to their simulator.
    `layer`: the already loaded fc8_layer(fc8_dir), if the caller has it."""
    L = layer if layer is not None else fc8_layer(fc8_dir)
    if L is None:
        return None
    ref = L.reference if L.reference is not None else load_fc8(fc8_dir)
    image = fc8_image(ref)
    row = table_row(None, L, PAPER_N_PE, fifo_depth, balance, image=image)
    auth = AUTHORS_CYCLES.get(fifo_depth)
    row |= {"authors_cycles": auth, "paper_measured_us": 9.9, "paper_theoretical_us": 8.9,
            "diff_vs_authors_percent": None if auth is None else 100.0 * (row["cycles"] - auth) / auth,
            "lower_bound_ideal": row["ideal_cycles"], "lower_bound_busiest_pe": row["busiest_pe_entries"]}
    if ref.bias_ptr is not None:   # the 4,097th column, as the authors' published figures count
        biased = fc8_image(ref, bias=True)
        cyc = run_image(biased, ref.act, EIEConfig.for_image(biased, fifo_depth=fifo_depth)).report.cycles
        auth_b = AUTHORS_CYCLES_WITH_BIAS.get(fifo_depth)
        row["with_bias"] = {"cycles": cyc, "authors_cycles": auth_b,
                            "diff_vs_authors_percent": None if auth_b is None else 100.0 * (cyc - auth_b) / auth_b}
    if balance:
        row["balanced_calibrated"] = _balanced_figures(L, image, PAPER_N_PE, fifo_depth, row["cycles"], True)
    return row

