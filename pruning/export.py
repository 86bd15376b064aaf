"""Pruned (and weight-shared) network -> EIE image of its FC layers, checked against the model.

`export_image` encodes the FC layers (all of the MLP; LeNet-5's two, fed by its conv
features, which stay in PyTorch) with `encode_network`, passing each layer's trained
16-entry codebook (layers that are not shared yet get the golden model's k-means codebook
of their weights and biases) and a calibration batch for the activation formats. It then
decodes the image and checks, layer by layer, that

- the index matrix of the image equals the model's (`decode_indices`), so the zero
  pattern is exactly the pruning mask, and
- `decode_weights` equals the model's quantised weights exactly: the codebook in the
  hardware's 16-bit fixed point (`numerics.quantize(codebook, w_frac)`), looked up at
  the model's indices.

Biases: EIE stores a layer's bias as one more CSC column with activation 1.0, so the
hardware's bias is `codebook[assign_indices(b, codebook)]`, quantised with the layer's
codebook like a weight (sharing.py shares it so during centroid finetuning); the decoded
bias is checked like the weights.

`compression` counts the storage from the image: 4-bit v + 4-bit z per stored entry
(padding entries included), 16-bit column pointers (every PE's pointer array, n_blocks *
n_in + 1 per PE), and the 16 x 16-bit codebook, against dense 32-bit floats.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from eie.golden_model import decode_indices, decode_weights, encode_network
from eie.golden_model import numerics as nm
from eie.golden_model.codebook import assign_indices, kmeans_codebook
from eie.golden_model.decoder import decode_bias, decode_bias_indices
from eie.golden_model.image import EIEImage
from eie.golden_model.model import run_image

from .huffman import coded_bits
from .masks import weight_of
from .models import fc_input, fc_layers, runs_on_eie
from .sharing import codebook_of, is_shared, shared_bias

__all__ = ["layer_codes", "export_image", "check_image", "eie_input", "compression", "image_accuracy", "rtl_sample",
           "DENSE_BITS", "INDEX_BITS", "PTR_BITS", "CODEBOOK_BITS"]

DENSE_BITS = 32      # a dense float32 weight
INDEX_BITS = 4       # v: codebook index
ZRUN_BITS = 4        # z: zero run
PTR_BITS = 16        # one column pointer (EIE paper: 16-bit p_j)
CODEBOOK_BITS = nm.CODEBOOK_SIZE * nm.WEIGHT_BITS


def layer_codes(module: nn.Module, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(codebook float32 (16,), idx uint8, bias_idx uint8 or None) of a layer: its trained
    codebook if shared, else the golden model's k-means codebook of its (pruned) weights
    and its bias, which shares the codebook."""
    bias = getattr(module, "bias", None)
    if is_shared(module):
        cb, idx = codebook_of(module)
        sb = shared_bias(module)
        b = None if bias is None else (sb[0] if sb is not None else bias.detach().numpy())
    else:
        w = weight_of(module).double().numpy()
        b = None if bias is None else bias.detach().double().numpy()
        cb = kmeans_codebook(w if b is None else np.concatenate([w.ravel(), b]), seed=seed).astype(np.float32)
        idx = assign_indices(w, cb.astype(np.float64))
    # Canonical indices: with repeated codebook values (layers with < 15 distinct weights)
    # the nearest-centroid rule picks one of equal entries; use the pick the encoder makes.
    cb64 = cb.astype(np.float64)
    bias_idx = None if b is None else assign_indices(np.asarray(b, dtype=np.float64), cb64)
    return cb, assign_indices(cb64[idx], cb64), bias_idx


def eie_input(model: nn.Module, x) -> np.ndarray:
    """What EIE is fed for model inputs `x` (float64): the input of the first FC layer."""
    return fc_input(model, np.asarray(x, dtype=np.float32)).numpy().astype(np.float64)


def export_image(model: nn.Module, calibration, n_pe: int, *, acc_depth: int = 64, seed: int = 0,
                 meta: dict | None = None) -> tuple[EIEImage, dict]:
    """(image, check): the network's FC layers as an EIE image for `n_pe` PEs, verified.
    `calibration`: a batch of model inputs (their FC-layer inputs set the activation formats)."""
    if not runs_on_eie(model):
        raise ValueError(f"only the MLP and LeNet-5 run on EIE end to end; got {type(model).__name__}")
    layers = fc_layers(model)
    codes = [layer_codes(m, seed) for _, m in layers]
    weights = [cb.astype(np.float64)[idx] for cb, idx, _ in codes]
    names = [n.replace("layers.", "fc") for n, _ in layers]
    meta = dict(meta or {}) | {"source": "eie.pruning"}
    biases = [None if bi is None else cb.astype(np.float64)[bi] for cb, _, bi in codes]
    image = encode_network(weights, n_pe, acc_depth=acc_depth, codebooks=[cb for cb, _, _ in codes],
                           calibration=eie_input(model, calibration), names=names, meta=meta,
                           biases=biases if any(b is not None for b in biases) else None)
    return image, check_image(image, codes)


def check_image(image: EIEImage, codes) -> dict:
    """Compare the decoded image with the model's (codebook, idx, bias_idx) per layer (see module doc)."""
    per = []
    for L, (cb, idx, bias_idx) in zip(image.layers, codes):
        q = nm.quantize(cb.astype(np.float64), L.w_frac, nm.WEIGHT_BITS).astype(np.float64) * 2.0 ** -L.w_frac
        expect = q[idx]
        dec = decode_weights(L)
        row = {
            "name": L.name, "w_frac": L.w_frac,
            "indices_equal": bool(np.array_equal(decode_indices(L), idx)),
            "weights_equal": bool(np.array_equal(dec, expect)),
            "max_abs_vs_float_codebook": float(np.abs(dec - cb.astype(np.float64)[idx]).max()),
            "fixed_point_half_lsb": 2.0 ** -(L.w_frac + 1),
        }
        if bias_idx is not None:
            got = decode_bias(L)
            row["bias_indices_equal"] = bool(np.array_equal(decode_bias_indices(L), bias_idx))
            row["bias_equal"] = got is not None and bool(np.array_equal(np.asarray(got, dtype=np.float64),
                                                                         q[bias_idx]))
        per.append(row)
    return {"layers": per,
            "decode_matches": all(p["indices_equal"] and p["weights_equal"] and p.get("bias_equal", True)
                                  and p.get("bias_indices_equal", True) for p in per),
            "biases_carried": any(bi is not None for _, _, bi in codes)}


def compression(image: EIEImage, reference_weights: int | None = None) -> dict:
    """Storage breakdown from the image (bits), per layer and in total, with ratios.

    `reference_weights`: weights of the original network when the image holds a
    structurally smaller one (slimming); the total dense bits then count those.
    `huffman_bits` is Deep Compression's third stage: the stored entries' 4-bit indices and
    4-bit zero runs Huffman-coded (two codes per layer, tables included), pointers and
    codebook as stored; EIE itself reads the fixed 8-bit entries (`csc_bits`)."""
    rows = []
    for L in image.layers:
        n = L.n_in * L.n_out
        nnz = int(np.count_nonzero(L.v))
        entries = int(L.v.size)
        ptrs = int(L.ptr.size)
        r = {
            "name": L.name, "weights": n, "nonzero": nnz, "entries": entries, "padding_entries": entries - nnz,
            "pointers": ptrs,
            "dense_bits": DENSE_BITS * n,
            "pruned_bits": DENSE_BITS * nnz,                          # pruning alone, values only
            "shared_bits": INDEX_BITS * nnz + CODEBOOK_BITS,          # + 4-bit sharing, values only
            "csc_bits": (INDEX_BITS + ZRUN_BITS) * entries + PTR_BITS * ptrs + CODEBOOK_BITS,  # as stored
            "huffman_bits": coded_bits(L.v) + coded_bits(L.z) + PTR_BITS * ptrs + CODEBOOK_BITS,
        }
        r["index_overhead_bits"] = r["csc_bits"] - r["shared_bits"]
        rows.append(r)
    tot = {k: sum(r[k] for r in rows) for k in rows[0] if k != "name"}
    if reference_weights is not None:
        tot["weights"] = int(reference_weights)
        tot["dense_bits"] = DENSE_BITS * int(reference_weights)
    out = {"n_pe": image.n_pe, "layers": rows, "total": tot,
           "kept_fraction": tot["nonzero"] / tot["weights"],
           "ratio_pruning": tot["dense_bits"] / max(1, tot["pruned_bits"]),
           "ratio_pruning_sharing": tot["dense_bits"] / max(1, tot["shared_bits"]),
           "ratio_total": tot["dense_bits"] / max(1, tot["csc_bits"]),
           "ratio_huffman": tot["dense_bits"] / max(1, tot["huffman_bits"]),
           "bits_per_nonzero": tot["csc_bits"] / max(1, tot["nonzero"])}
    return out


def image_accuracy(image: EIEImage, x, y, batch: int = 2000) -> dict:
    """Top-1 accuracy of the bit-exact golden model on EIE inputs (x, y), the cycles of the
    whole run and per input and per layer (in batches: the functional model holds every
    activation of a batch)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    correct, cycles, per_layer = 0, 0, {}
    for i in range(0, len(y), batch):
        res = run_image(image, x[i:i + batch])
        correct += int(np.sum(res.outputs.argmax(1) == y[i:i + batch]))
        cycles += int(res.report.cycles)
        for L in res.report.layers:
            per_layer[L["name"]] = per_layer.get(L["name"], 0) + int(L["cycles"])
    n = max(1, len(y))
    return {"accuracy": correct / n, "samples": int(len(y)), "cycles": cycles, "cycles_per_input": cycles / n,
            "cycles_per_input_by_layer": {k: v / n for k, v in per_layer.items()}}


def rtl_sample(image: EIEImage, x, *, simulator: str | None = None, on_result=None) -> dict:
    """EIE inputs `x` (float, (n, n_in)) through the RTL under cocotb (sim/samples.py), every
    output word and every input's cycle count checked against the golden model: {simulator,
    samples, bit_exact, cycle_exact, cycles_rtl, cycles_model, build_seconds, sim_seconds, ...}."""
    from eie.golden_model.functional import quantize_input   # the simulators: only when asked for
    from eie.sim.cases import Case
    from eie.sim.samples import check_samples

    res = check_samples([Case("test", image, quantize_input(image, x))], simulator=simulator, on_result=on_result)
    case = res.pop("cases")["test"]
    return res | case


@torch.no_grad()
def float_outputs(model: nn.Module, x) -> np.ndarray:
    model.eval()
    return model(torch.as_tensor(np.asarray(x, dtype=np.float32))).double().numpy()
