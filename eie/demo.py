"""`eie demo` / `make demo`: the golden model end to end on its embedded default.

A random pruned two-layer network (made by the code, seeded), weight-shared and
encoded for N PEs, run through the bit-exact golden model and the cycle model, and
checked against the float reference within the bound of docs/numerics.md. Writes
reports/demo/demo.json and a per-PE load plot.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eie.golden_model.config import EIEConfig
from eie.golden_model.encoder import encode_network
from eie.golden_model.image_file import atomic_write_bytes, save_image
from eie.golden_model.model import run_image
from eie.golden_model.reference import error_bound, float_reference, saturated_outputs

__all__ = ["run_demo", "random_pruned_network"]


def random_pruned_network(seed: int = 0, shape=(784, 300, 100), density=(0.08, 0.12)):
    """LeNet-300-100-sized random layers pruned to the given weight densities."""
    rng = np.random.default_rng(seed)
    weights = []
    for (n_in, n_out), d in zip(zip(shape[:-1], shape[1:]), density):
        W = rng.normal(0, 1 / np.sqrt(n_in * d), (n_out, n_in))
        weights.append(W * (rng.random(W.shape) < d))
    x = np.maximum(rng.normal(0.2, 1.0, (16, shape[0])), 0)
    return weights, x


def run_demo(out_dir: Path = Path("reports/demo"), n_pe: int = 8, seed: int = 0, progress: bool = True) -> dict:
    from rich.console import Console

    con = Console(quiet=not progress)
    weights, x = random_pruned_network(seed)
    with con.status("weight sharing (k-means) and encoding"):
        image = encode_network(weights, n_pe, calibration=x, seed=seed, meta={"demo": "random pruned MLP"})
    out_dir.mkdir(parents=True, exist_ok=True)
    save_image(image, out_dir / "demo.eie", overwrite=True)
    with con.status("golden model and cycle model"):
        res = run_image(image, x, EIEConfig.for_image(image))
    ref = float_reference(image, x)[-1]
    bound = error_bound(image, x, res.layer_outputs)[-1]
    ok = saturated_outputs(res.outputs_int) | (np.abs(res.outputs - ref) <= bound)
    rep = res.report.as_dict()
    summary = {
        "image": str(out_dir / "demo.eie"), "n_pe": n_pe, "samples": int(x.shape[0]),
        "layers": [[L.n_in, L.n_out, round(float(np.count_nonzero(L.v)) / (L.n_in * L.n_out), 4)]
                   for L in image.layers],
        "max_abs_error_vs_float": float(np.abs(res.outputs - ref).max()),
        "max_error_bound": float(bound.max()),
        "within_bound": bool(ok.all()),
        "argmax_agreement": float(np.mean(res.outputs.argmax(1) == ref.argmax(1))),
        "cycle_report": {k: v for k, v in rep.items() if k != "per_pe"},
    }
    atomic_write_bytes(out_dir / "demo.json", [json.dumps(summary | {"per_pe": rep["per_pe"]}, indent=2).encode()],
                       overwrite=True)
    _plot(rep, out_dir / "per_pe.png")
    con.print(f"[bold]EIE demo[/]: {len(image.layers)} layers {[L[:2] for L in summary['layers']]} on {n_pe} PEs, "
              f"{summary['samples']} inputs")
    con.print(f"  golden vs float: max |error| {summary['max_abs_error_vs_float']:.3g} "
              f"(bound {summary['max_error_bound']:.3g}) -> {'OK' if ok.all() else 'OUT OF BOUND'}; "
              f"argmax agreement {summary['argmax_agreement']:.0%}")
    con.print(f"  cycles {rep['cycles']:,} ({rep['cycles'] // x.shape[0]:,}/input), useful MACs {rep['useful_macs']:,}, "
              f"load-balance efficiency {rep['load_balance_efficiency']:.1%}")
    con.print(f"  wrote {out_dir}/demo.json, demo.eie, per_pe.png")
    if not ok.all():
        raise SystemExit("demo: golden model outside the error bound")
    return summary


def _plot(rep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pe = [p["pe"] for p in rep["per_pe"]]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(pe, [p["busy_cycles"] for p in rep["per_pe"]], label="busy")
    ax.bar(pe, [p["idle_cycles"] for p in rep["per_pe"]], bottom=[p["busy_cycles"] for p in rep["per_pe"]],
           label="idle (starved)", color="0.8")
    ax.set_xlabel("PE")
    ax.set_ylabel("cycles")
    ax.set_title(f"per-PE load: {rep['cycles']:,} cycles, efficiency {rep['load_balance_efficiency']:.1%}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
