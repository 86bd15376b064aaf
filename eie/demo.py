"""`eie demo` / `make demo`: from a trained network to hardware results, in one command.

1. the dense network, trained or loaded from the cache: the digits MLP 64-300-100-10
   (bias-free: EIE computes ReLU(W a)), or with `dataset="mnist"` LeNet-300-100 on real
   MNIST (biases carried as one more column; the schedule is a short cut of the papers'
   preset, registry.PRESETS); 2. iterative global magnitude pruning with finetuning to 8 % of
   the weights; 3. 4-bit weight sharing (k-means, centroid finetuning); 4. export to the
   EIE image for N PEs; 5. the whole test set through the bit-exact golden model and the
   cycle model (hardware accuracy next to the float accuracy, error bound checked);
   6. a sample of test inputs through the RTL under cocotb on Verilator or Icarus (bit- and cycle-exact);
   7. reports/demo/: demo.json, demo.md, PNG plots, the image, the checkpoint, the waves.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from tqdm import tqdm

from eie.demo_report import write_demo_report
from eie.golden_model.balance import balance_image
from eie.golden_model.config import EIEConfig
from eie.golden_model.functional import quantize_input
from eie.golden_model.image_file import load_image, save_image
from eie.golden_model.model import run_image
from eie.golden_model.reference import error_bound, float_reference, saturated_outputs
from eie.pruning.export import float_outputs
from eie.pruning.iterative import FinetuneConfig, iterative_prune
from eie.pruning.masks import kept_fraction
from eie.pruning.pipeline import Context, dense_for, evaluate_model, finalize
from eie.pruning.registry import CENTROID_LR, PRESETS
from eie.pruning.share import centroid_config
from eie.pruning.sharing import share_weights
from eie.pruning.train import TrainConfig, finetune
from eie.sim.cases import Case
from eie.sim.samples import check_samples
from eie.sim.simulator import choose
from eie.sim.verilator_env import fst_supported

__all__ = ["DemoConfig", "run_demo", "DATASETS"]

DATASETS = ("digits", "mnist")
DESCRIPTIONS = {"digits": "MLP 64-300-100-10 on scikit-learn digits",
                "mnist": "LeNet-300-100 (784-300-100-10, biases) on real MNIST"}
DATASET_NAMES = {"digits": "scikit-learn digits (8x8, 10 classes)",
                 "mnist": "MNIST (28x28, 60,000 + 10,000 images)"}


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 0
    dataset: str = "digits"       # or "mnist": LeNet-300-100 on real MNIST (DemoConfig.mnist)
    n_pe: int = 8
    kept: float = 0.08            # fraction of FC weights kept (Deep Compression's LeNet-300-100 figure)
    dense_epochs: int = 60
    steps: int = 4                # prune -> finetune rounds
    ft_epochs: int = 60
    final_epochs: int = 150
    centroid_epochs: int = 30
    rtl: str = "auto"             # auto (sim/simulator.py) | verilator | icarus | none
    rtl_samples: int = 32
    waves: bool = True            # FST of the RTL run (GTKWave)
    fifo_depth: int = 8
    subset: int | None = None     # the first N training images (N/5 validation and test): tests only

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, not {self.dataset!r}")

    @classmethod
    def mnist(cls, **kw) -> "DemoConfig":
        """LeNet-300-100 on the 60,000 MNIST images: an epoch is 55,000 images, not 1,077,
        so the schedule is short (225 s cold on a 2-core machine, docs/benchmarks.md)."""
        return replace(cls(dataset="mnist", dense_epochs=8, steps=3, ft_epochs=2, final_epochs=6, centroid_epochs=2),
                       **kw)

    @classmethod
    def quick(cls, **kw) -> "DemoConfig":
        """Minutes -> seconds (tests): short training, 2 rounds, 2 RTL samples."""
        return replace(cls(dense_epochs=8, steps=2, ft_epochs=3, final_epochs=3, centroid_epochs=2, rtl_samples=2,
                           waves=False), **kw)

    def training(self) -> tuple[str, bool, TrainConfig, float]:
        """(network, biases, dense training, finetuning LR scale) of the data set: digits
        Adam on the bias-free MLP; MNIST the papers' preset (SGD, momentum, weight decay,
        cosine, finetuning at the dense LR, 1-pixel translations)."""
        if self.dataset == "mnist":
            sgd = {k: v for k, v in PRESETS["lenet300"]["*"].items() if k in TrainConfig.__dataclass_fields__}
            return "lenet300", True, TrainConfig(**(sgd | {"epochs": self.dense_epochs})), 1.0
        return "mlp", False, TrainConfig(epochs=self.dense_epochs), 0.1


def _step(con, i: int, text: str):
    con.print(f"[bold cyan][{i}/6][/] {text}")


def _golden(image, x, y, float_logits, config):
    """Golden model on the whole set: accuracy, agreement with float, error bound, cycles."""

    res = run_image(image, x, config)
    ref = float_reference(image, x)[-1]
    bound = error_bound(image, x, res.layer_outputs)[-1]
    within = saturated_outputs(res.outputs_int) | (np.abs(res.outputs - ref) <= bound)
    pred = res.outputs.argmax(1)
    rep = res.report.as_dict()
    return {"accuracy": float(np.mean(pred == y)), "samples": int(len(y)),
            "float_image_accuracy": float(np.mean(ref.argmax(1) == y)),
            "argmax_agreement_with_float_model": float(np.mean(pred == float_logits.argmax(1))),
            "max_abs_error_vs_float": float(np.abs(res.outputs - ref).max()),
            "max_error_bound": float(bound.max()), "within_bound": bool(within.all()),
            "cycles": rep["cycles"], "cycles_per_input": rep["cycles"] / len(y),
            "cycles_per_input_min": int(min(rep["cycles_per_sample"])),
            "cycles_per_input_max": int(max(rep["cycles_per_sample"])),
            "us_per_input_at_800MHz": rep["cycles"] / len(y) / 800.0,
            "useful_macs_per_input": rep["useful_macs"] / len(y),
            "load_balance_efficiency": rep["load_balance_efficiency"],
            "per_layer": rep["layers"], "per_pe": rep["per_pe"]}, res


def _balance(image, splits, gres, config) -> dict:
    """Re-encode with output rows permuted across PEs (golden_model/balance.py), tuned on
    training inputs, measured on the test set: same outputs (original order), fewer cycles?"""

    bal = balance_image(image, calibration=splits.x_train[:256])
    res = run_image(bal, splits.x_test, config)
    before, after = gres.report.cycles, res.report.cycles
    return bal, res, {"outputs_identical": bool((res.outputs_int == gres.outputs_int).all()),
            "cycles_per_input": after / len(splits.y_test), "cycles_before_per_input": before / len(splits.y_test),
            "cycles_saved_percent": 100.0 * (before - after) / before,
            "busiest_pe_entries": res.report.busiest_pe_entries,
            "busiest_pe_entries_before": gres.report.busiest_pe_entries,
            "load_balance_efficiency": res.report.as_dict()["load_balance_efficiency"]}


def _rtl(cases, cfg: DemoConfig, out_dir: Path, con) -> dict:
    """Inputs through the RTL under cocotb, one simulator run for every (name, image, a_int,
    model cycles) case (sim/samples.py); the scoreboard checks every output word and every
    input's cycles."""
    if cfg.rtl == "none":
        return {"skipped": 'rtl="none"'}
    sim = choose(None if cfg.rtl == "auto" else cfg.rtl)
    waves = None
    if cfg.waves:                # FST where it can be written (Verilator: lz4 headers), else VCD
        waves = str(out_dir / ("demo_rtl.fst" if sim == "icarus" or fst_supported() else "demo_rtl.vcd"))
    total = sum(len(a) for _, _, a, _ in cases)
    bar = tqdm(total=total, desc=f"RTL samples ({sim})", disable=con.quiet)
    out = check_samples([Case(name, im, a) for name, im, a, _ in cases], simulator=sim, fifo_depth=cfg.fifo_depth,
                        waves=waves, on_result=lambda r: bar.update(),
                        building=lambda: con.status(f"compiling the RTL (Amaranth -> Verilog -> {sim}; "
                                                    "cached after the first time)"))
    bar.close()
    for name, _, _, model_cycles in cases:     # the cycles of the demo's own golden-model run
        out[name] = out["cases"][name] | {"cycles_model": [int(c) for c in model_cycles]}
    del out["cases"]
    main = out[cases[0][0]]
    out |= {k: main[k] for k in ("samples", "bit_exact", "cycle_exact", "cycles_rtl", "cycles_model")}
    return out


def run_demo(out_dir: Path = Path("reports/demo"), cfg: DemoConfig = DemoConfig(), progress: bool = True) -> dict:
    t_start = time.perf_counter()
    torch.set_num_threads(1)
    con = Console(quiet=not progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net, bias, dense_cfg, lr_scale = cfg.training()
    ctx = Context(dataset=cfg.dataset, model=net, bias=bias, n_pe=cfg.n_pe, progress=progress, dense=dense_cfg,
                  subset=cfg.subset)
    tcfg = ctx.dense.with_(seed=cfg.seed)
    times = {}

    _step(con, 1, f"dense {DESCRIPTIONS[cfg.dataset]} (cached after the first run)")
    t0 = time.perf_counter()
    model, splits = dense_for(ctx, cfg.seed)
    dense = evaluate_model(model, splits)
    times["dense"] = time.perf_counter() - t0
    con.print(f"      dense float test accuracy {dense['test_acc']:.2%}")

    _step(con, 2, f"iterative global magnitude pruning to {cfg.kept:.0%} of the weights, {cfg.steps} rounds + finetuning")
    t0 = time.perf_counter()
    history = iterative_prune(model, splits, 1.0 - cfg.kept, tcfg, steps=cfg.steps,
                              ft=FinetuneConfig(epochs=cfg.ft_epochs, final_epochs=cfg.final_epochs,
                                                lr_scale=lr_scale),
                              scope="global", progress=progress)
    pruned = evaluate_model(model, splits) | {"kept": kept_fraction(model)}
    times["prune"] = time.perf_counter() - t0
    con.print(f"      pruned: {pruned['kept']:.2%} kept, float test accuracy {pruned['test_acc']:.2%}")

    _step(con, 3, "4-bit weight sharing (16 shared weights per layer, index 0 = 0) + centroid finetuning")
    t0 = time.perf_counter()
    share_weights(model, seed=cfg.seed)
    kmeans = evaluate_model(model, splits)
    if cfg.dataset == "mnist":   # Adam on the centroids (share.centroid_config says why)
        finetune(model, splits, centroid_config(tcfg, CENTROID_LR), cfg.centroid_epochs, 1.0, progress=progress,
                 desc="centroid finetuning", seed_offset=500)
    else:
        finetune(model, splits, tcfg, cfg.centroid_epochs, 0.1, progress=progress, desc="centroid finetuning",
                 seed_offset=500)
    shared = evaluate_model(model, splits)
    times["share"] = time.perf_counter() - t0
    con.print(f"      shared: float test accuracy {shared['test_acc']:.2%} (k-means alone {kmeans['test_acc']:.2%})")

    _step(con, 4, f"export to the EIE image for {cfg.n_pe} PEs (per-PE interleaved CSC, decode check)")
    t0 = time.perf_counter()
    fin = finalize(model, splits, ctx, out_dir, "demo", cfg.seed, meta={"demo": True})

    image = load_image(fin["image"]["path"])     # from the file: what runs below is what was written
    times["export"] = time.perf_counter() - t0
    comp = fin["compression"]
    con.print(f"      {fin['image']['path']}: compression {comp['ratio_pruning']:.1f}x pruning, "
              f"{comp['ratio_pruning_sharing']:.1f}x + 4-bit, {comp['ratio_total']:.1f}x as stored (CSC)")

    _step(con, 5, f"whole test set ({len(splits.y_test)} inputs) through the golden model and the cycle model")
    t0 = time.perf_counter()

    config = EIEConfig.for_image(image, fifo_depth=cfg.fifo_depth)
    golden, gres = _golden(image, splits.x_test, splits.y_test, float_outputs(model, splits.x_test), config)
    times["golden"] = time.perf_counter() - t0
    con.print(f"      hardware arithmetic accuracy {golden['accuracy']:.2%} vs float {shared['test_acc']:.2%}; "
              f"max |error| {golden['max_abs_error_vs_float']:.3g} <= bound {golden['max_error_bound']:.3g}: "
              f"{'OK' if golden['within_bound'] else 'OUT OF BOUND'}")
    con.print(f"      {golden['cycles_per_input']:.0f} cycles/input ({golden['us_per_input_at_800MHz']:.2f} µs at "
              f"800 MHz), load-balance efficiency {golden['load_balance_efficiency']:.1%}")

    t0 = time.perf_counter()
    bal_image, bres, balance = _balance(image, splits, gres, config)

    balance["image"] = str(save_image(bal_image, out_dir / f"demo-seed{cfg.seed}-balanced.eie", overwrite=True))
    times["balance"] = time.perf_counter() - t0
    con.print(f"      load balancing (rows permuted, tuned on training inputs): {balance['cycles_per_input']:.0f} "
              f"cycles/input ({balance['cycles_saved_percent']:+.1f} % saved on the test set), outputs "
              f"{'identical' if balance['outputs_identical'] else 'DIFFER'}")

    k = min(cfg.rtl_samples, len(splits.y_test))
    kb = max(1, k // 4)
    _step(con, 6, f"{k} test inputs through the RTL ({cfg.n_pe} PEs) under cocotb, and {kb} through the balanced image")
    t0 = time.perf_counter()
    a_int = quantize_input(image, splits.x_test[:k])
    rtl = _rtl([("demo", image, a_int, gres.report.cycles_per_sample[:k]),
                ("demo_balanced", bal_image, a_int[:kb], bres.report.cycles_per_sample[:kb])], cfg, out_dir, con)
    times["rtl"] = time.perf_counter() - t0
    if "skipped" not in rtl:
        for name in ("demo", "demo_balanced"):
            r = rtl[name]
            con.print(f"      {name}: {r['samples']} inputs, outputs {'bit-exact' if r['bit_exact'] else 'MISMATCH'}, "
                      f"cycles {'equal to the cycle model' if r['cycle_exact'] else 'DIFFER'} "
                      f"({min(r['cycles_rtl'], default=0)}…{max(r['cycles_rtl'], default=0)} per input)")

    summary = {"config": asdict(cfg), "dataset": DATASET_NAMES[cfg.dataset],
               "network": [int(L.n_in) for L in image.layers] + [int(image.layers[-1].n_out)],
               "accuracy": {"dense_float": dense["test_acc"], "pruned_float": pruned["test_acc"],
                            "shared_float": shared["test_acc"], "kmeans_float": kmeans["test_acc"],
                            "image_weights_float": fin["image"]["quantised"]["test_acc"],
                            "hardware_golden": golden["accuracy"]},
               "kept": pruned["kept"], "pruning_history": history, "image": fin["image"], "compression": comp,
               "checkpoint": fin.get("checkpoint"), "golden": golden, "load_balance": balance, "rtl": rtl,
               "seconds": {**times, "total": time.perf_counter() - t_start}}
    summary["checks_failed"] = [what for what, bad in (
        ("golden model outside the error bound", not golden["within_bound"]),
        ("RTL mismatch", "skipped" not in rtl and not rtl["ok"]),
        ("balanced image computes different outputs", not balance["outputs_identical"]),
        ("image does not decode to the shared weights", not fin["image"]["decode_matches"])) if bad]
    files = write_demo_report(summary, out_dir)
    con.print(f"wrote {out_dir}/: " + ", ".join(files) + f" in {summary['seconds']['total']:.0f} s")
    return summary
