"""What every pruning method's run shares: dense models per seed, checkpoints, the final
export (EIE image + compression) and the report summary (runner.py drives them; plots
are in plots.py).
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eie.golden_model.decoder import decode_bias, decode_image
from eie.golden_model.image_file import save_image

from .data import Splits
from .export import compression, eie_input, export_image, image_accuracy, rtl_sample
from .masks import clone_model, kept_fraction, remove_pruning, sparsity_report
from .models import MLP, ConvNet, LeNet5, fc_layers, runs_on_eie, strip_bias
from .sharing import codebooks, unshare
from .train import CACHE_DIR, TrainConfig, accuracy, dense_model

__all__ = ["Context", "dense_for", "arch_of", "build_from_arch", "save_checkpoint", "load_checkpoint",
           "evaluate_model", "finalize", "compression_by_pe", "compression_one_csc", "summarize",
           "progress_log"]


@dataclass
class Context:
    """Everything a method run needs besides its own options."""

    dataset: str = "digits"
    data_path: str | None = None
    model: str = "mlp"
    bias: bool = False                # EIE computes ReLU(W a): the default network has no biases
    dense: TrainConfig = field(default_factory=TrainConfig)  # seed is replaced per run
    layers: str = "fc"
    n_pe: int = 8
    acc_depth: int = 64
    calib: int = 256
    cache_dir: Path | None = CACHE_DIR
    progress: bool = False
    subset: int | None = None          # first N training images (N/5 val and test): quick runs
    rtl_samples: int = 0               # the first N test inputs of each image also through the RTL (cocotb)
    simulator: str | None = None       # for them: verilator or icarus (default: sim/simulator.py's choice)

    def describe(self) -> dict:
        d = asdict(self)
        d["cache_dir"] = None if self.cache_dir is None else str(self.cache_dir)
        return d


def progress_log(ctx: Context):
    """A `log(message)` function for the methods: stderr with progress on, else None."""
    if not ctx.progress:
        return None
    return lambda msg: print(msg, file=sys.stderr)


def dense_for(ctx: Context, seed: int) -> tuple[nn.Module, Splits]:
    """The trained dense model of this seed (cached; with and without biases in different
    files), and the data splits (split seed 0)."""
    return dense_model(ctx.model, ctx.dataset, ctx.dense.with_(seed=seed), bias=ctx.bias, data_path=ctx.data_path,
                       cache_dir=ctx.cache_dir, progress=ctx.progress, subset_size=ctx.subset)


# -- checkpoints ---------------------------------------------------------------------------
def arch_of(model: nn.Module) -> dict:
    if isinstance(model, MLP):
        return {"kind": "mlp", "sizes": list(model.sizes), "bias": model.layers[0].bias is not None}
    if isinstance(model, LeNet5):
        return {"kind": "lenet5", "image_shape": list(model.image_shape), "n_classes": model.fc2.out_features,
                "channels": [model.conv1.out_channels, model.conv2.out_channels],
                "hidden": model.fc1.out_features, "bias": model.fc1.bias is not None}
    if isinstance(model, ConvNet):
        return {"kind": "conv", "image_shape": list(model.image_shape), "n_classes": model.fc2.out_features,
                "channels": [model.conv1.out_channels, model.conv2.out_channels],
                "hidden": model.fc1.out_features, "bias": model.fc1.bias is not None}
    raise ValueError(f"cannot describe a {type(model).__name__}")


def build_from_arch(arch: dict) -> nn.Module:
    if arch["kind"] == "mlp":
        m = MLP(arch["sizes"])
    elif arch["kind"] == "lenet5":
        m = LeNet5(tuple(arch["image_shape"]), arch["n_classes"], tuple(arch["channels"]), arch["hidden"])
    elif arch["kind"] == "conv":
        m = ConvNet(tuple(arch["image_shape"]), arch["n_classes"], tuple(arch["channels"]), arch["hidden"])
    else:
        raise ValueError(f"unknown architecture kind {arch.get('kind')!r}")
    return m if arch.get("bias", True) else strip_bias(m)


def save_checkpoint(model: nn.Module, path, meta: dict | None = None) -> Path:
    """Plain weights (pruning and sharing removed on a copy; zeros baked in), the
    architecture, the codebooks of shared layers, and `meta`. Loads with weights_only."""
    path = Path(path)
    cbs = {n: {"codebook": torch.from_numpy(cb.copy()), "idx": torch.from_numpy(idx.astype(np.int64))}
           for n, (cb, idx) in codebooks(model).items()}
    plain = unshare(remove_pruning(clone_model(model)))
    obj = {"format": "eie-prune-checkpoint", "version": 1, "arch": arch_of(plain),
           "state_dict": plain.state_dict(), "codebooks": cbs, "meta": dict(meta or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path) -> tuple[nn.Module, dict]:
    """(model with plain weights, checkpoint dict). Re-attach masks with
    `magnitude.apply_masks_from_zeros` to keep finetuning sparse."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint")
    try:
        obj = torch.load(path, weights_only=True)
    except Exception as e:  # torch raises many kinds for a bad file
        raise ValueError(f"{path}: not a readable checkpoint ({e})") from None
    if not isinstance(obj, dict) or obj.get("format") != "eie-prune-checkpoint":
        raise ValueError(f"{path}: not an eie prune checkpoint (expected format 'eie-prune-checkpoint')")
    model = build_from_arch(obj["arch"])
    model.load_state_dict(obj["state_dict"])
    return model.eval(), obj


# -- evaluation and export -----------------------------------------------------------------
def evaluate_model(model: nn.Module, splits: Splits) -> dict:
    return {"val_acc": accuracy(model, splits, "val"), "test_acc": accuracy(model, splits, "test")}


@torch.no_grad()
def _with_weights(model: nn.Module, mats, biases=None) -> nn.Module:
    """A plain copy of `model` whose FC layers hold `mats` (and `biases`, where given)."""
    m = unshare(remove_pruning(clone_model(model)))
    for i, ((_, fc), W) in enumerate(zip(fc_layers(m), mats)):
        fc.weight.copy_(torch.as_tensor(W, dtype=fc.weight.dtype))
        if biases is not None and biases[i] is not None:
            fc.bias.copy_(torch.as_tensor(biases[i], dtype=fc.bias.dtype))
    return m.eval()


def finalize(model: nn.Module, splits: Splits, ctx: Context, out_dir, stem: str, seed: int, *,
             meta: dict | None = None, write: bool = True, reference_weights: int | None = None) -> dict:
    """Evaluate the final model of one run, write its checkpoint and EIE image (the FC
    layers of the MLP or LeNet-5; LeNet-5's conv features, computed in PyTorch, are the
    golden model's input).

    Returns {"pruned": {val_acc, test_acc, kept, layers}, "checkpoint", and for those
    networks "image": {path, n_pe, decode_matches, check, quantised: {val_acc, test_acc},
    golden_test: {accuracy, cycles_per_input, cycles_per_input_by_layer, ...}, and with
    `ctx.rtl_samples` rtl_sample: {bit_exact, cycle_exact, ...}}, "compression": {...}}. The
    image carries the network's biases (one more column each).
    `reference_weights` (structured methods): FC weights of the original network, so that
    `kept` and the compression ratios are relative to it.
    """
    out_dir = Path(out_dir)
    layers = sparsity_report(model, ctx.layers)
    kept = kept_fraction(model, ctx.layers)
    if reference_weights is not None:
        kept = sum(r["params"] - r["zeros"] for r in layers.values()) / reference_weights
    res = {"pruned": evaluate_model(model, splits) | {"kept": kept, "layers": layers}}
    meta = dict(meta or {}) | {"seed": seed, "dataset": ctx.dataset}
    if write:
        res["checkpoint"] = str(save_checkpoint(model, out_dir / f"{stem}-seed{seed}.pt", meta))
    if runs_on_eie(model):
        calib = splits.x_train[: ctx.calib]
        image, check = export_image(model, calib, ctx.n_pe, acc_depth=ctx.acc_depth, seed=seed, meta=meta)
        x_test = eie_input(model, splits.x_test)       # LeNet-5: the conv features, computed once
        quant = _with_weights(model, decode_image(image),
                              [decode_bias(L) for L in image.layers] if check["biases_carried"] else None)
        res["image"] = {"n_pe": ctx.n_pe, "acc_depth": ctx.acc_depth, "decode_matches": check["decode_matches"],
                        "check": check,
                        "quantised": evaluate_model(quant, splits),
                        "golden_test": image_accuracy(image, x_test, splits.y_test)}
        if ctx.rtl_samples:
            log = progress_log(ctx)
            if log:
                log(f"{stem} seed {seed}: the first {ctx.rtl_samples} test inputs through the RTL ({ctx.n_pe} PEs)")
            res["image"]["rtl_sample"] = rtl_sample(image, x_test[:ctx.rtl_samples], simulator=ctx.simulator)
        if write:
            path = out_dir / f"{stem}-seed{seed}.eie"
            save_image(image, path, overwrite=True)
            res["image"]["path"] = str(path)
        res["compression"] = compression(image, reference_weights)
        res["compression_one_csc"] = compression_one_csc(model, calib, seed=seed, reference_weights=reference_weights)
        res["compression_by_pe"] = compression_by_pe(model, calib, seed=seed, acc_depth=ctx.acc_depth,
                                                     reference_weights=reference_weights)
    return res


PE_SWEEP = (1, 2, 4, 8, 16, 32, 64)


def compression_one_csc(model: nn.Module, calibration, *, seed: int = 0,
                        reference_weights: int | None = None) -> dict:
    """Storage as Deep Compression counts it: each layer one CSC matrix (1 PE, one output
    batch: n_in + 1 pointers), as stored and Huffman-coded. EIE's images for N PEs and 64
    accumulators store N pointer arrays per output batch instead (compression_by_pe)."""
    rows = max(m.out_features for _, m in fc_layers(model))
    image, _ = export_image(model, calibration, 1, acc_depth=rows, seed=seed)
    c = compression(image, reference_weights)
    return {"acc_depth": rows, "ratio_total": c["ratio_total"], "ratio_huffman": c["ratio_huffman"],
            "csc_bits": c["total"]["csc_bits"], "huffman_bits": c["total"]["huffman_bits"],
            "entries": c["total"]["entries"], "pointers": c["total"]["pointers"]}


def compression_by_pe(model: nn.Module, calibration, *, seed: int = 0, acc_depth: int = 64,
                      pes=PE_SWEEP, reference_weights: int | None = None) -> list[dict]:
    """Total compression ratio of the image for several PE counts: the per-PE pointer
    arrays (16 bits per column per PE) dominate the index overhead of small layers."""
    out = []
    for n in pes:
        image, _ = export_image(model, calibration, n, acc_depth=acc_depth, seed=seed)
        c = compression(image, reference_weights)
        out.append({"n_pe": n, "csc_bits": c["total"]["csc_bits"], "pointer_bits": 16 * c["total"]["pointers"],
                    "padding_entries": c["total"]["padding_entries"], "ratio_total": c["ratio_total"],
                    "ratio_huffman": c["ratio_huffman"]})
    return out


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def summarize(runs: list[dict]) -> dict:
    """Means over seeds of the headline numbers (keys documented in docs/pruning.md)."""
    def get(r, *path):
        for p in path:
            if not isinstance(r, dict) or p not in r:
                return None
            r = r[p]
        return r

    s = {
        "seeds": [r["seed"] for r in runs],
        "dense_test_acc": _mean(get(r, "dense", "test_acc") for r in runs),
        "dense_val_acc": _mean(get(r, "dense", "val_acc") for r in runs),
        "test_acc": _mean(get(r, "final", "pruned", "test_acc") for r in runs),
        "val_acc": _mean(get(r, "final", "pruned", "val_acc") for r in runs),
        "kept": _mean(get(r, "final", "pruned", "kept") for r in runs),
        "quantised_test_acc": _mean(get(r, "final", "image", "quantised", "test_acc") for r in runs),
        "golden_test_acc": _mean(get(r, "final", "image", "golden_test", "accuracy") for r in runs),
        "ratio_pruning": _mean(get(r, "final", "compression", "ratio_pruning") for r in runs),
        "ratio_pruning_sharing": _mean(get(r, "final", "compression", "ratio_pruning_sharing") for r in runs),
        "ratio_total": _mean(get(r, "final", "compression", "ratio_total") for r in runs),
        "ratio_huffman": _mean(get(r, "final", "compression", "ratio_huffman") for r in runs),
        "ratio_one_csc": _mean(get(r, "final", "compression_one_csc", "ratio_total") for r in runs),
        "ratio_one_csc_huffman": _mean(get(r, "final", "compression_one_csc", "ratio_huffman") for r in runs),
    }
    if s["dense_test_acc"] is not None and s["test_acc"] is not None:
        s["test_acc_drop"] = s["dense_test_acc"] - s["test_acc"]
    if s["dense_val_acc"] is not None and s["val_acc"] is not None:
        s["val_acc_drop"] = s["dense_val_acc"] - s["val_acc"]
    return s
