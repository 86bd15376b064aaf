"""The Python API for a user's own model (docs/api.md): import, compile, run, simulate.

    image = eie.compile(model_or_path, n_pe=4, calibration=x)   # EIEImage
    result = eie.run(image, x)                                  # outputs + cycle report
    sim = eie.simulate(image, x[:2], simulator="amaranth")      # the RTL, bit- and cycle-checked
    eie.save(image, "net.eie"); image = eie.load("net.eie")

Everything here is glue over the one home of each concern: the importers
(torch_import.py, onnx_import.py, dense_chain.py), the encoder (`encode_network`:
k-means or given codebooks, calibration, balancing), the image file, the golden and
cycle models (`run_image`), the error bound (`reference.error_bound`), the storage count
(`pruning.export.compression`) and the RTL runners (hdl.rtl_sim, sim.runner).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eie.golden_model import decode_bias_indices, decode_indices, encode_network
from eie.golden_model.config import DEFAULT_FIFO_DEPTH, EIEConfig
from eie.golden_model.csc import DEFAULT_ACC_DEPTH
from eie.golden_model.encoder import DEFAULT_ACT_FRAC
from eie.golden_model.errors import EIEError, InputError
from eie.golden_model.image import EIEImage
from eie.golden_model.image_file import load_image, save_image
from eie.golden_model.model import RunResult, run_image
from eie.golden_model.numerics import dequantize
from eie.golden_model.reference import error_bound, float_reference, saturated_outputs

from .dense_chain import DenseChain, as_batch

__all__ = ["import_model", "compile", "run", "compare", "simulate", "save", "load", "SimulationResult",
           "SIMULATORS"]

SIMULATORS = ("amaranth", "verilator", "icarus")
_TORCH_SUFFIXES = (".pt", ".pth")


def import_model(model, *, trust_pickle: bool = False) -> DenseChain:
    """The float network of `model`: an nn.Module, a TorchScript module, a state_dict, an
    onnx.ModelProto, a DenseChain, or a path to a .pt/.pth/.onnx file."""
    if isinstance(model, DenseChain):
        return model
    if isinstance(model, (str, Path)):
        suffix = Path(model).suffix.lower()
        if suffix == ".onnx":
            from .onnx_import import load_onnx

            return load_onnx(model)
        if suffix in _TORCH_SUFFIXES:
            from .torch_import import load_torch

            return load_torch(model, trust_pickle=trust_pickle)
        raise InputError(f"{model}: expected a .pt or .pth (PyTorch) or .onnx file, got suffix {suffix or 'none'!r}")
    if type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx"):
        from .onnx_import import from_onnx

        return from_onnx(model)
    from .torch_import import from_module, from_state_dict  # PyTorch: deferred to the models that need it

    if isinstance(model, Mapping):
        return from_state_dict(model)
    return from_module(model)


def compile(model, n_pe: int, *, calibration=None, balance=False, codebooks=None, acc_depth: int = DEFAULT_ACC_DEPTH,
            act_frac: int = DEFAULT_ACT_FRAC, seed: int = 0, trust_pickle: bool = False,
            act_frac_name: str = "act_frac", calibration_name: str = "calibration") -> EIEImage:
    """Import `model` (see import_model) and encode it for `n_pe` PEs, its zeros kept as
    they are. `calibration` (model inputs) sets the activation formats and gives the
    report's error against the float model; `codebooks`: one 16-entry codebook (entry 0 =
    0.0) or None (k-means) per layer; `balance`: see encode_network; `act_frac_name`,
    `calibration_name`: what errors call those two (a CLI passes its option names). The
    report is `image.meta["import"]` (per-layer density, compression, error)."""
    net = import_model(model, trust_pickle=trust_pickle)
    x = None if calibration is None else as_batch(calibration, net.n_in, "calibration")
    biases = [L.bias for L in net.layers]
    image = encode_network([L.weight for L in net.layers], n_pe, acc_depth=acc_depth, codebooks=codebooks,
                           calibration=x, act_frac=act_frac, relu_last=net.relu_last,
                           act_frac_name=act_frac_name, calibration_name=calibration_name,
                           names=[L.name for L in net.layers], seed=seed, balance=balance, source=net.source,
                           biases=biases if any(b is not None for b in biases) else None,
                           meta={"source": net.source, "kind": net.kind})
    _check_structure(image, net)
    image.meta["import"] = _report(image, net, x, codebooks)
    return image


def _check_structure(image: EIEImage, net: DenseChain) -> None:
    """The image stores an entry exactly where the model has a non-zero weight or bias."""
    for L, D in zip(image.layers, net.layers):
        b = np.zeros(D.n_out) if D.bias is None else D.bias
        if not (np.array_equal(decode_indices(L) != 0, D.weight != 0)
                and np.array_equal(decode_bias_indices(L) != 0, b != 0)):
            raise EIEError(f"{net.source}: layer '{D.name}': the image's non-zero pattern differs from the model's "
                           "(an encoder bug: please report it)")


def _report(image: EIEImage, net: DenseChain, x, codebooks) -> dict:
    from eie.pruning.export import compression  # the storage count of the pruning reports (imports PyTorch)

    comp = compression(image)
    quant = {q["layer"]: q for q in image.meta.get("quantisation", [])}
    layers = []
    for L, D, c in zip(image.layers, net.layers, comp["layers"]):
        nnz = int(np.count_nonzero(D.weight))
        layers.append({"name": D.name, "n_in": D.n_in, "n_out": D.n_out, "bias": D.bias is not None,
                       "relu": bool(L.relu), "nonzero": nnz, "density": nnz / D.weight.size,
                       "w_frac": int(L.w_frac), "decoded_to_zero": quant.get(D.name, {}).get("decoded_to_zero", 0),
                       "compression": c["dense_bits"] / c["csc_bits"]})
    return {"source": net.source, "kind": net.kind, "n_pe": image.n_pe,
            "codebook": "k-means" if codebooks is None else "given", "layers": layers,
            "density": sum(r["nonzero"] for r in layers) / sum(r["n_in"] * r["n_out"] for r in layers),
            "compression": {k: comp[k] for k in ("ratio_pruning", "ratio_pruning_sharing", "ratio_total",
                                                 "bits_per_nonzero")},
            "calibration": None if x is None else compare(image, net, x)}


def run(image: EIEImage, x, *, fifo_depth: int = DEFAULT_FIFO_DEPTH) -> RunResult:
    """Bit-exact outputs (`.outputs` float, `.outputs_int`) and the cycle report (`.report`)
    of the golden and cycle models for float inputs (n_in,) or (batch, n_in)."""
    return run_image(image, as_batch(x, image.layers[0].n_in, "x"), EIEConfig.for_image(image, fifo_depth=fifo_depth))


def compare(image: EIEImage, model, x) -> dict:
    """The golden model against the float `model` (anything import_model takes) on inputs
    x: the largest error and the numerics bound on it (reference.error_bound taken with
    the model's own weights, so it includes the weight-sharing error); the same against
    the image's float weights (the fixed-point error alone); arg-max agreement."""
    net = import_model(model)
    x = as_batch(x, net.n_in, "x")
    res = run_image(image, x)
    want, shared = net.forward(x), float_reference(image, x)[-1]
    bound = error_bound(image, x, res.layer_outputs, reference=[(L.weight, L.bias) for L in net.layers])[-1]
    fixed = error_bound(image, x, res.layer_outputs)[-1]
    sat = saturated_outputs(res.outputs_int)
    err, err_fixed = np.abs(res.outputs - want), np.abs(res.outputs - shared)
    return {"samples": int(x.shape[0]), "max_abs_output": float(np.abs(want).max()),
            "max_abs_error": float(err.max()), "max_error_bound": float(bound.max()),
            "max_abs_error_vs_shared_float": float(err_fixed.max()), "max_fixed_point_bound": float(fixed.max()),
            "within_bound": bool(np.all(sat | ((err <= bound) & (err_fixed <= fixed)))),
            "argmax_agreement": float(np.mean(res.outputs.argmax(1) == want.argmax(1)))}


@dataclass
class SimulationResult:
    """The RTL's outputs (original row order) and cycles, next to the models'."""

    outputs_int: np.ndarray       # (batch, n_out) int64
    outputs: np.ndarray           # dequantised float64
    cycles_per_sample: list
    golden: RunResult             # the golden and cycle models on the same inputs
    simulator: str
    seconds: float

    @property
    def bit_exact(self) -> bool:
        return bool(np.array_equal(self.outputs_int, self.golden.outputs_int))

    @property
    def cycle_exact(self) -> bool:
        return [int(c) for c in self.cycles_per_sample] == [int(c) for c in self.golden.report.cycles_per_sample]


def simulate(image: EIEImage, x, *, simulator: str | None = None, fifo_depth: int = DEFAULT_FIFO_DEPTH,
             timeout: float | None = None) -> SimulationResult:
    """Run float inputs x through the RTL: "amaranth" (Amaranth's simulator, nothing to
    build), or "verilator" / "icarus" under cocotb (None: $EIE_SIMULATOR, else Icarus if
    installed, else Verilator; the build is cached under build/sim/)."""
    from eie.hdl.loader import params_for_image  # Amaranth: deferred to the RTL

    golden = run(image, x, fifo_depth=fifo_depth)
    a = golden.layer_outputs[0]                  # the input as the hardware gets it (quantised)
    params = params_for_image(image, fifo_depth=fifo_depth)
    t0 = time.perf_counter()
    if simulator == "amaranth":
        from eie.hdl.rtl_sim import run_rtl

        rtl = run_rtl(image, a, params)
        out, cycles, name = rtl.outputs, list(rtl.cycles_per_sample), "amaranth"
    else:
        from eie.sim.cases import Case
        from eie.sim.runner import run_cases
        from eie.sim.simulator import choose

        name = choose(simulator)
        sim = run_cases([Case("eie.simulate", image, a)], params, simulator=name, timeout=timeout)
        if sim.tests == 0 or len(sim.results) != a.shape[0]:
            raise EIEError(f"{name}: the simulation ran {len(sim.results)} of {a.shape[0]} inputs (log: {sim.log})")
        out, cycles = sim.logical_outputs(image), [r["cycles_rtl"] for r in sim.results]
    return SimulationResult(out, dequantize(out, image.layers[-1].out_frac), cycles, golden, name,
                            time.perf_counter() - t0)


def save(image: EIEImage, path, *, overwrite: bool = False) -> Path:
    """Write the image file atomically (docs/image-format.md); an existing file is kept
    unless `overwrite`."""
    return save_image(image, path, overwrite=overwrite)


def load(path) -> EIEImage:
    """Read and validate an image file (ImageFormatError names a bad field)."""
    return load_image(path)
