"""Throughput of an FPGA build: useful MAC/s projected from routed Fmax and exact cycles.

For one build of the array (an `ArrayParams`) this module picks a layer that fits the
build's memories (`fitting_layer`: a seeded synthetic layer at a Table III layer's
densities, as large as the activation, pointer and matrix memories allow, checked with
the loader's own capacity check `hdl.loader.place_image`), runs it through the golden
model with the build's configuration (`run_image`: bit-exact outputs and the cycle
model's cycle count, which the RTL matches cycle for cycle) and projects

    effective useful MAC/s = useful MACs x Fmax / cycles

next to the golden model's and scipy's (CSR and CSC mat-vec) useful MAC/s timed on this
machine in the same call (`eie.bench.speed`), and the paper's 64-PE figure (Han et al.,
ISCA 2016, Table IV at 800 MHz: `eie.bench.paper`). The FPGA figure is a projection,
not a measurement on a board: one inference from START to done, without loading the
image or moving the input and outputs over the host bus.

`scaling_points` / `write_scaling_png` turn FPGA reports (or the largest-N search's
trials, `largest_n.tried`) into the plot of Fmax and LUTs against N for one board.
docs/fpga.md and docs/benchmarks.md list the keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eie.bench.layers import synthetic_layer
from eie.bench.paper import CLOCK_MHZ, PAPER_N_PE, TABLE_III, layer_by_name
from eie.bench.speed import model_speed
from eie.fpga_boards import BOARDS
from eie.fpga_logs import summary_row
from eie.golden_model.errors import ConfigError, InputError
from eie.golden_model.model import run_image
from eie.hdl.loader import place_image
from eie.hdl.params import ArrayParams
from eie.plotting import pyplot, save_figure

__all__ = ["PROJECTION_NOTE", "DEFAULT_LAYER", "DEFAULT_SEED", "FittingLayer", "fitting_layer", "effective_macs_per_s",
           "paper_throughput", "build_throughput", "report_throughput", "load_fpga_report",
           "scaling_points", "write_scaling_png"]

PROJECTION_NOTE = ("projection, not a board measurement: useful MACs x routed Fmax (nextpnr) / cycles of one "
                   "inference from the cycle model (the RTL matches it cycle for cycle); loading the image and "
                   "the host-bus transfers of input and outputs are not included")
DEFAULT_LAYER = "Alex-8"      # Table III densities of AlexNet FC8: 25 % weights, 37.5 % activations
DEFAULT_SEED = 2016


def effective_macs_per_s(useful_macs: int, fmax_mhz: float, cycles: int) -> float:
    """Useful MACs x Fmax / cycles (MAC/s at Fmax MHz)."""
    if cycles <= 0:
        raise ValueError(f"cycles must be positive, not {cycles}")
    return useful_macs * fmax_mhz * 1e6 / cycles


def _shape(P, t: int, cap: int) -> tuple[int, int]:
    """Table III shape scaled so that the larger side is t, each side at most `cap`."""
    big = max(P.n_in, P.n_out)
    return (min(cap, max(1, round(t * P.n_in / big))), min(cap, max(1, round(t * P.n_out / big))))


SEED_TRIES = 100     # a tiny layer may draw no useful MAC: the next seeds are tried, in order


@dataclass
class FittingLayer:
    """The layer `fitting_layer` chose: the BenchLayer, its image for the build, how full
    each memory is (`capacity`) and the seed that generated it."""

    layer: object          # eie.bench.layers.BenchLayer
    image: object          # EIEImage, encoded for params.n_pe and params.acc_depth
    capacity: dict
    seed: int


def _encode_if_fits(params, P, t: int, seed: int):
    """(layer, image, seed) for size t, or (None, reason). The first seed from `seed` whose
    layer has a useful MAC (a non-zero weight in a column with a non-zero input) is used."""

    n_in, n_out = _shape(P, t, params.n_pe * params.act_depth)
    for s in range(seed, seed + SEED_TRIES):
        L = synthetic_layer(f"{P.name}-like {n_in}->{n_out}", n_in, n_out, P.weight_density, P.act_density, s)
        if L.useful_macs == 0:
            continue
        image = L.image(params.n_pe, acc_depth=params.acc_depth)
        try:
            place_image(image, params)
        except ConfigError as e:
            return None, str(e)
        return (L, image, s), None
    return None, f"{n_in} x {n_out}: no useful MAC with seeds {seed}..{seed + SEED_TRIES - 1}"


def fitting_layer(params, layer: str = DEFAULT_LAYER, seed: int = DEFAULT_SEED) -> FittingLayer:
    """The largest seeded synthetic layer with the shape ratio and densities of Table III's
    `layer` that the build's memories hold, with at least one useful MAC.

    The larger side t grows (bisection) while `hdl.loader.place_image` accepts the encoded
    image; each side is capped at n_pe x act_depth. The result is checked with the same
    call, so it always loads."""

    P = layer_by_name(layer)
    cap = params.n_pe * params.act_depth
    best, why = _encode_if_fits(params, P, 1, seed)
    if best is None:
        raise ConfigError(f"no {layer}-like layer fits this build, not even 1 x 1: {why}")
    # from t_all on both sides are capped: the largest layer the activation memories allow
    t_all = -(-cap * max(P.n_in, P.n_out) // min(P.n_in, P.n_out))
    lo, hi = 1, t_all + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2 if hi <= t_all else t_all      # try the largest first
        got, _ = _encode_if_fits(params, P, mid, seed)
        if got is not None:
            lo, best = mid, got
        else:
            hi = mid
    L, image, used_seed = best
    E = image.layers[0]
    capacity = {
        "activations": {"used": max(L.shape), "available": cap,
                        "what": "max(n_in, n_out) against n_pe x act_depth"},
        "pointers_per_pe": {"used": int(E.ptr.shape[1]), "available": params.ptr_depth},
        "entries_per_pe": {"used": int(E.entries_per_pe.max()), "available": params.spmat_depth * 8,
                           "what": "busiest PE's (v, z) entries against spmat_depth x 8"},
        "check": "hdl.loader.place_image",
    }
    return FittingLayer(L, image, capacity, used_seed)


def paper_throughput(layer: str | None = DEFAULT_LAYER) -> dict:
    """The paper's 64-PE figures (Han et al., ISCA 2016, Tables III and IV, 800 MHz).

    Useful MACs of a layer are Table IV's theoretical time x 800 MHz x 64 PEs (the
    theoretical time is the useful work over the PEs, 1 MAC per PE per cycle); the
    measured useful MAC/s are those MACs over Table IV's measured time."""

    peak = PAPER_N_PE * CLOCK_MHZ * 1e6

    def row(P):
        return {"layer": P.name, "shape": [P.n_in, P.n_out], "weight_density": P.weight_density,
                "act_density": P.act_density, "measured_us": P.measured_us, "theoretical_us": P.theoretical_us,
                "useful_macs": P.theoretical_macs,
                "useful_macs_per_s": P.theoretical_macs / (P.measured_us * 1e-6),
                "macs_per_pe_cycle": P.theoretical_us / P.measured_us}

    out = {"source": "Han et al., EIE: Efficient Inference Engine on Compressed Deep Neural Network, ISCA 2016, "
                     "Tables III and IV",
           "n_pe": PAPER_N_PE, "clock_mhz": CLOCK_MHZ, "peak_useful_macs_per_s": peak,
           "layers": [row(P) for P in TABLE_III]}
    if layer is not None:
        out["layer"] = row(layer_by_name(layer))
    return out


def build_throughput(params, fmax_mhz: float | None, *, layer: str = DEFAULT_LAYER, seed: int = DEFAULT_SEED,
                     repeat: int = 5) -> dict:
    """The throughput section for one build (see the module docstring). Without `fmax_mhz`
    the cycles, the golden model and the baselines are still reported, the FPGA figure not."""

    fit = fitting_layer(params, layer, seed)
    L, image = fit.layer, fit.image
    run = run_image(image, L.a[None, :], params.to_config(), int_input=True)
    cycles, useful = run.report.cycles, run.report.useful_macs
    speed = model_speed(L, params.n_pe, params.fifo_depth, repeat, image=image)
    n_in, n_out = L.shape[1], L.shape[0]
    paper = paper_throughput(layer)
    out = {
        "note": PROJECTION_NOTE,
        "layer": {"name": L.name, "paper_layer": layer, "shape": [n_in, n_out], "source": L.source, "seed": fit.seed,
                  "weight_density": L.weight_density, "act_density": L.act_density,
                  "paper_weight_density": paper["layer"]["weight_density"],
                  "paper_act_density": paper["layer"]["act_density"]},
        "capacity": fit.capacity,
        "n_pe": params.n_pe, "fifo_depth": params.fifo_depth,
        "cycles": cycles, "useful_macs": useful, "macs_per_pe_cycle": useful / (cycles * params.n_pe),
        "fmax_mhz": fmax_mhz,
        "fpga_useful_macs_per_s": None if fmax_mhz is None else effective_macs_per_s(useful, fmax_mhz, cycles),
        "fpga_us_per_inference": None if fmax_mhz is None else cycles / fmax_mhz,
        "this_machine": {
            "golden_model_seconds": speed["golden_seconds"],
            "golden_model_useful_macs_per_s": useful / speed["golden_seconds"],
            "scipy_csr_seconds": speed["scipy_sparse_seconds"],
            "scipy_csr_useful_macs_per_s": useful / speed["scipy_sparse_seconds"],
            "scipy_csc_seconds": speed["scipy_csc_seconds"],
            "scipy_csc_useful_macs_per_s": useful / speed["scipy_csc_seconds"],
            "numpy_dense_seconds": speed["dense_numpy_seconds"],
            "numpy_dense_useful_macs_per_s": useful / speed["dense_numpy_seconds"],
            "repeat": repeat,
            "what": "best of `repeat` timed calls on this machine, same layer and input; scipy and NumPy "
                    "multiply every stored weight (float64), the rate counts only the useful MACs",
        },
        "paper": {"source": paper["source"], "n_pe": paper["n_pe"], "clock_mhz": paper["clock_mhz"],
                  "peak_useful_macs_per_s": paper["peak_useful_macs_per_s"], **{
                      k: paper["layer"][k] for k in ("layer", "shape", "useful_macs", "useful_macs_per_s",
                                                     "measured_us", "macs_per_pe_cycle")}},
    }
    if useful != L.useful_macs:       # the cycle model's count and the layer's own must agree
        raise AssertionError(f"useful MACs: cycle model {useful}, layer {L.useful_macs}")
    if fmax_mhz is not None:
        f = out["fpga_useful_macs_per_s"]
        m = out["this_machine"]
        out["ratios"] = {"fpga_over_golden_model": f / m["golden_model_useful_macs_per_s"],
                         "fpga_over_scipy_csr": f / m["scipy_csr_useful_macs_per_s"],
                         "fpga_over_scipy_csc": f / m["scipy_csc_useful_macs_per_s"],
                         "paper_over_fpga": paper["layer"]["useful_macs_per_s"] / f}
    return out


def report_throughput(report: dict, *, layer: str = DEFAULT_LAYER, seed: int = DEFAULT_SEED,
                      repeat: int = 5, source: str = "report") -> dict:
    """build_throughput for an `eie fpga` report (its params and nextpnr's Fmax).
    ConfigError when the report has no routed Fmax."""

    fmax = (report.get("pnr") or {}).get("fmax_mhz")
    if not fmax:
        why = "it did not fit" if report.get("fits") is False else "place and route did not run"
        raise ConfigError(f"{source}: no routed Fmax ({why}; pnr.fmax_mhz is missing)")
    params = ArrayParams(**report["params"])
    return {"board": report["board"], "device": report.get("device"), **build_throughput(
        params, float(fmax), layer=layer, seed=seed, repeat=repeat)}


_REPORT_KEYS = ("board", "n_pe", "params", "pnr")


def load_fpga_report(path) -> dict:
    """An `eie fpga` report; InputError naming the file when it is missing or not one."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        rep = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{p}: not a JSON file ({e})") from None
    missing = [k for k in _REPORT_KEYS if not isinstance(rep, dict) or k not in rep]
    if missing:
        raise InputError(f"{p}: not an `eie fpga` report (no {', '.join(missing)})")
    return rep


# -- Fmax and LUTs against N ------------------------------------------------------------
def scaling_points(reports: list[dict]) -> dict[str, list[dict]]:
    """board -> points sorted by N, {n_pe, lut_or_lc, fmax_mhz, fits, by}, from reports'
    own builds and their largest-N trials (`largest_n.tried`). Per board and N, a place
    and route figure wins over a synthesis estimate."""
    rank = {"place-and-route": 2, "synthesis": 1}
    boards: dict[str, dict[int, dict]] = {}
    for rep in reports:
        row = summary_row(rep)
        own = {"n_pe": rep["n_pe"], "lut_or_lc": row["lut_or_lc"], "fmax_mhz": row["fmax_mhz"],
               "fits": row["fits"], "by": "place-and-route" if (rep.get("pnr") or {}).get("ran") else "synthesis"}
        trials = [own] + [{"n_pe": int(n), **{k: t.get(k) for k in ("lut_or_lc", "fmax_mhz", "fits", "by")}}
                          for n, t in ((rep.get("largest_n") or {}).get("tried") or {}).items()]
        pts = boards.setdefault(rep["board"], {})
        for t in trials:
            if t["lut_or_lc"] is None:        # e.g. parameters the self-test cannot use
                continue
            old = pts.get(t["n_pe"])
            if old is None or rank.get(t["by"], 0) > rank.get(old["by"], 0):
                pts[t["n_pe"]] = t
    return {b: [p[n] for n in sorted(p)] for b, p in sorted(boards.items())}


def write_scaling_png(board: str, points: list[dict], path) -> Path:
    """Fmax (MHz) and LUTs (LCs on the iCE40) against N for one board, in one PNG."""
    if not points:
        raise ValueError(f"{board}: no build with a LUT count to plot")
    b = BOARDS.get(board)
    unit = "LCs" if b is not None and b.family == "ice40" else "LUT4s"
    plt = pyplot()
    fig, (ax_f, ax_l) = plt.subplots(2, 1, figsize=(6.5, 6), sharex=True)
    styles = {"place-and-route": ("o", "tab:blue", "place and route"),
              "synthesis": ("s", "tab:orange", "synthesis estimate")}
    for by, (marker, color, label) in styles.items():
        for fits, fill in ((True, color), (False, "none")):
            sel = [p for p in points if p["by"] == by and bool(p["fits"]) == fits]
            if sel:
                ax_l.plot([p["n_pe"] for p in sel], [p["lut_or_lc"] for p in sel], marker, color=color,
                          mfc=fill, ls="none", label=f"{label}{'' if fits else ', does not fit'}")
    fp = [p for p in points if p.get("fmax_mhz")]
    if fp:
        ax_f.plot([p["n_pe"] for p in fp], [p["fmax_mhz"] for p in fp], "o-", color="tab:blue", label="nextpnr Fmax")
        ax_f.legend(fontsize=8)
    else:
        ax_f.text(0.5, 0.5, "no routed build (synthesis estimates only)", ha="center", va="center",
                  transform=ax_f.transAxes, fontsize=9)
    if b is not None:
        ax_l.axhline(b.capacity["lut"], color="0.4", ls="--", lw=1, label=f"device: {b.capacity['lut']:,}")
    ax_f.set_ylabel("Fmax (MHz)")
    ax_l.set_ylabel(unit)
    ax_l.set_xlabel("PEs (N)")
    ax_f.set_title(f"{board}{' (' + b.device + ')' if b else ''}: Fmax and logic against N")
    for ax in (ax_f, ax_l):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    ax_l.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    return path
