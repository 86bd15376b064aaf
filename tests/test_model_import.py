"""Bring your own model: PyTorch (modules, torch.nn.utils.prune, torch.ao.pruning, state_dict,
TorchScript, pickles) and ONNX into EIE images, through eie.compile / run / simulate."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import eie
from eie.dense_chain import UnsupportedModel
from eie.golden_model import decode_bias_indices, decode_indices, decode_weights
from eie.golden_model.errors import InputError
from eie.golden_model.reference import error_bound, saturated_outputs
from eie.pruning.masks import clone_model, weight_of
from eie.sim.simulator import icarus_installed

from .cocotb_sims import sim_param

torch.set_num_threads(1)
N_PE = 4


def mlp(sizes=(20, 16, 12, 6), bias=True, seed=0, extras=False) -> nn.Sequential:
    """Linear/ReLU chain; `extras` adds the layers the importer ignores."""
    torch.manual_seed(seed)
    mods = [nn.Flatten()] if extras else []
    for i in range(len(sizes) - 1):
        mods.append(nn.Linear(sizes[i], sizes[i + 1], bias=bias))
        if i < len(sizes) - 2:
            mods += [nn.ReLU()] + ([nn.Dropout(0.3), nn.Identity()] if extras else [])
    return nn.Sequential(*mods).eval()


def inputs(n_in=20, batch=24, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (batch, n_in)).astype(np.float32)


def linears(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def torch_reference(model, x):
    """The torch model in float64 (a copy) and its Linear layers' effective (masked) weights."""
    m64 = clone_model(model).double().eval()
    with torch.no_grad():
        y = m64(torch.as_tensor(x, dtype=torch.float64)).numpy()
    ref = [(weight_of(m).double().numpy(), None if m.bias is None else m.bias.detach().double().numpy())
           for m in linears(model)]
    return y, ref


def same_image(a, b) -> bool:
    """The same encoded network (layer names aside)."""
    if len(a.layers) != len(b.layers) or a.n_pe != b.n_pe:
        return False
    return all(all(np.array_equal(getattr(p, k), getattr(q, k)) for k in ("ptr", "v", "z", "codebook", "codebook_float"))
               and all(getattr(p, k) == getattr(q, k) for k in ("n_in", "n_out", "in_frac", "w_frac", "out_frac",
                                                                "relu", "bias"))
               for p, q in zip(a.layers, b.layers))


def to_onnx(model, path, shape):
    """torch.onnx's TorchScript-based exporter (dynamo=False: the new one needs onnxscript)
    for inputs of `shape` (an int: (1, shape))."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # that exporter is deprecated
        torch.onnx.export(model, (torch.zeros((1, shape) if isinstance(shape, int) else shape),), str(path),
                          dynamo=False)
    return path


def assert_within_torch_bound(image, model, x):
    """Golden outputs against the torch model in float64, within the numerics bound taken
    with the torch model's own weights (reference.error_bound)."""
    y, ref = torch_reference(model, x)
    res = eie.run(image, x)
    bound = error_bound(image, x.astype(np.float64), res.layer_outputs, reference=ref)[-1]
    assert not saturated_outputs(res.outputs_int).any()
    assert np.all(np.abs(res.outputs - y) <= bound)
    return res, y, bound


def assert_nearest_centroid(image, model):
    """The image holds the torch weights: each one's codebook entry is its nearest non-zero
    one (entry 0 only for zeros), and golden vs the image's float weights is within the
    fixed-point bound."""
    for L, m in zip(image.layers, linears(model)):
        w = weight_of(m).double().numpy()
        cb = L.codebook_float.astype(np.float64)
        dist = np.abs(w[..., None] - cb[1:])
        got = np.abs(w - cb[decode_indices(L)])
        nz = w != 0
        np.testing.assert_array_equal(got[nz], dist.min(-1)[nz])


def assert_structure(image, model):
    """Zeros stay zeros and non-zeros stay non-zero: stored and decoded (k-means codebooks)."""
    for L, m in zip(image.layers, linears(model)):
        w = weight_of(m).numpy()
        np.testing.assert_array_equal(decode_indices(L) != 0, w != 0)
        np.testing.assert_array_equal(decode_weights(L) != 0, w != 0)
        if m.bias is not None:
            np.testing.assert_array_equal(decode_bias_indices(L) != 0, m.bias.detach().numpy() != 0)


# -- PyTorch modules ---------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [False, True])
def test_torch_mlp_within_bound_of_the_torch_model(bias):
    model, x = mlp(bias=bias, seed=2, extras=True), inputs()
    image = eie.compile(model, n_pe=N_PE, calibration=x)
    assert [L.bias for L in image.layers] == [bias] * 3 and [L.relu for L in image.layers] == [True, True, False]
    assert_within_torch_bound(image, model, x)
    assert_structure(image, model)
    assert_nearest_centroid(image, model)
    cal = image.meta["import"]["calibration"]
    assert cal["within_bound"] and cal["samples"] == len(x)


def test_lossless_sharing_leaves_only_the_fixed_point_error():
    """Weights and biases on 14 levels: k-means keeps them exactly, so the bound against the
    torch model is the bound against the image's own float weights."""
    model = mlp(bias=True, seed=3)
    rng = np.random.default_rng(3)
    with torch.no_grad():
        for m in linears(model):
            for p in (m.weight, m.bias):
                p.copy_(torch.as_tensor(rng.integers(-7, 8, p.shape) / 16.0))
    x = inputs()
    image = eie.compile(model, n_pe=N_PE, calibration=x)
    res, y, bound = assert_within_torch_bound(image, model, x)
    fixed = error_bound(image, x.astype(np.float64), res.layer_outputs)[-1]
    np.testing.assert_allclose(bound, fixed, rtol=1e-9)
    assert np.all(np.abs(res.outputs - y) <= fixed)
    assert image.meta["import"]["calibration"]["max_abs_error_vs_shared_float"] == pytest.approx(
        image.meta["import"]["calibration"]["max_abs_error"])


def test_torch_pruned_keeps_the_mask_with_hooks_and_after_remove():
    model, x = mlp(seed=6), inputs()
    prune.global_unstructured([(m, "weight") for m in linears(model)], pruning_method=prune.L1Unstructured, amount=0.8)
    with torch.no_grad():           # weight_orig changes after the last forward: the mask must still apply
        linears(model)[0].weight_orig.add_(0.01)
    masked = eie.compile(model, n_pe=N_PE, calibration=x)
    assert_structure(masked, model)
    assert_nearest_centroid(masked, model)
    assert_within_torch_bound(masked, model, x)
    dens = [L["density"] for L in masked.meta["import"]["layers"]]
    want = [float((weight_of(m) != 0).float().mean()) for m in linears(model)]
    assert dens == pytest.approx(want) and sum(d * L.n_in * L.n_out for d, L in zip(dens, masked.layers)) \
        == pytest.approx(0.2 * sum(L.n_in * L.n_out for L in masked.layers), abs=1)
    for m in linears(model):
        prune.remove(m, "weight")
    assert same_image(masked, eie.compile(model, n_pe=N_PE, calibration=x))


def test_tiny_nonzero_weights_stay_nonzero():
    """A weight 10^6 times smaller than the rest still gets a stored, non-zero entry."""
    model = mlp(bias=False, seed=7)
    with torch.no_grad():
        linears(model)[0].weight[0, :3] = torch.tensor([1e-6, -1e-6, 0.0])
    image = eie.compile(model, n_pe=N_PE)
    assert_structure(image, model)
    assert image.meta["import"]["layers"][0]["decoded_to_zero"] == 0


def test_ao_sparsifier_with_parametrizations_and_after_squash():
    from torch.ao.pruning import WeightNormSparsifier

    model, x = mlp(sizes=(20, 16, 8), seed=8), inputs()
    sp = WeightNormSparsifier(sparsity_level=1.0, sparse_block_shape=(1, 4), zeros_per_block=2)
    sp.prepare(model, [{"tensor_fqn": "0.weight"}, {"tensor_fqn": "2.weight"}])
    sp.step()
    attached = eie.compile(model, n_pe=N_PE, calibration=x)
    for L in attached.layers:       # 2 of every 4 weights in a row are zero
        assert (decode_indices(L) != 0).sum() == L.n_in * L.n_out // 2
    assert_structure(attached, model)
    assert_nearest_centroid(attached, model)
    assert_within_torch_bound(attached, model, x)
    sp.squash_mask()
    assert same_image(attached, eie.compile(model, n_pe=N_PE, calibration=x))


def test_given_codebook_is_used():
    model, x = mlp(sizes=(20, 10), bias=False, seed=9), inputs()
    cb = np.concatenate([[0.0], np.linspace(-0.2, 0.2, 15)])
    image = eie.compile(model, n_pe=N_PE, calibration=x, codebooks=[cb])
    np.testing.assert_array_equal(image.layers[0].codebook_float, cb.astype(np.float32))
    assert image.meta["import"]["codebook"] == "given"
    np.testing.assert_array_equal(decode_indices(image.layers[0]) != 0, weight_of(linears(model)[0]).numpy() != 0)


def test_balance_keeps_outputs():
    model, x = mlp(sizes=(20, 32, 6), seed=10), inputs()
    with torch.no_grad():   # all the work of layer 0 on PE 0 (rows 0, 4, 8, ...) unless rows move
        linears(model)[0].weight[np.arange(32) % N_PE != 0] = 0
    plain = eie.run(eie.compile(model, n_pe=N_PE, calibration=x), x)
    balanced = eie.compile(model, n_pe=N_PE, calibration=x, balance=True)
    assert balanced.layers[0].row_perm is not None
    assert eie.run(balanced, x).report.cycles < plain.report.cycles
    np.testing.assert_array_equal(eie.run(balanced, x).outputs_int, plain.outputs_int)


# -- files: state_dict, TorchScript, pickles, ONNX -------------------------------------------
@pytest.mark.parametrize("bias", [False, True])
def test_every_format_gives_the_same_image(tmp_path, bias):
    model, x = mlp(bias=bias, seed=11, extras=True), inputs()
    prune.l1_unstructured(linears(model)[1], "weight", 0.6)
    want = eie.compile(model, n_pe=N_PE, calibration=x)
    torch.save(model.state_dict(), tmp_path / "sd.pt")              # weight_orig + weight_mask keys
    torch.jit.trace(model, torch.as_tensor(x[:2])).save(str(tmp_path / "traced.pt"))
    to_onnx(model, tmp_path / "m.onnx", 20)
    for m in linears(model):
        if prune.is_pruned(m):
            prune.remove(m, "weight")
    torch.jit.script(model).save(str(tmp_path / "scripted.pth"))
    torch.save(model.state_dict(), tmp_path / "plain_sd.pth")
    for name in ("sd.pt", "traced.pt", "m.onnx", "scripted.pth", "plain_sd.pth"):
        got = eie.compile(tmp_path / name, n_pe=N_PE, calibration=x)
        assert same_image(got, want), name
        assert_within_torch_bound(got, model, x)
    kinds = {n: eie.import_model(tmp_path / n).kind for n in ("sd.pt", "traced.pt", "m.onnx")}
    assert kinds == {"sd.pt": "state_dict", "traced.pt": "TorchScript", "m.onnx": "ONNX"}


def test_onnx_layer_names_follow_torch(tmp_path):
    model = mlp(bias=True, seed=12)
    net = eie.import_model(to_onnx(model, tmp_path / "m.onnx", 20))
    assert [L.name for L in net.layers] == ["0", "2", "4"]


def test_whole_model_pickle_needs_trust(tmp_path):
    model, x = mlp(seed=13), inputs()
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(InputError, match=r"whole.pt: holds pickled Python objects.*trust_pickle=True"):
        eie.import_model(tmp_path / "whole.pt")
    assert same_image(eie.compile(tmp_path / "whole.pt", n_pe=N_PE, calibration=x, trust_pickle=True),
                      eie.compile(model, n_pe=N_PE, calibration=x))


def test_state_dict_rule_refuses_other_keys(tmp_path):
    sd = mlp(sizes=(4, 3, 2)).state_dict()
    sd["norm.running_mean"] = torch.zeros(3)
    with pytest.raises(UnsupportedModel, match=r"key 'norm.running_mean' \(not a Linear weight or bias\)"):
        eie.import_model(sd)


def test_state_dict_of_an_attached_ao_sparsifier_is_refused():
    from torch.ao.pruning import WeightNormSparsifier

    model = mlp(sizes=(8, 4, 2))
    sp = WeightNormSparsifier(sparsity_level=1.0, sparse_block_shape=(1, 4), zeros_per_block=2)
    sp.prepare(model, [{"tensor_fqn": "0.weight"}])
    with pytest.raises(UnsupportedModel, match="squash_mask"):
        eie.import_model(model.state_dict())


def test_garbage_files(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    (tmp_path / "bad.onnx").write_bytes(b"\xff\xfe garbage")
    (tmp_path / "w.npy").write_bytes(b"x")
    with pytest.raises(InputError, match=r"bad.pt: not a PyTorch file \(expected what torch.save or torch.jit.save"):
        eie.import_model(tmp_path / "bad.pt")
    with pytest.raises(InputError, match="bad.onnx: not a readable ONNX model"):
        eie.import_model(tmp_path / "bad.onnx")
    with pytest.raises(InputError, match=r"w.npy: expected a .pt or .pth \(PyTorch\) or .onnx file"):
        eie.import_model(tmp_path / "w.npy")
    with pytest.raises(InputError, match="missing.onnx: no such file"):
        eie.import_model(tmp_path / "missing.onnx")


# -- what EIE cannot run -----------------------------------------------------------------------------
class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 6), nn.Linear(6, 6)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.fc2(h) + h


UNSUPPORTED = {   # model, input shape, what the torch / TorchScript / ONNX message names
    "conv2d": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)), (1, 1, 4, 4),
               ["layer '0' (Conv2d)", "(aten::_convolution)", "node '/0/Conv' (Conv)"]),
    "sigmoid": (lambda: nn.Sequential(nn.Linear(6, 4), nn.Sigmoid(), nn.Linear(4, 2)), (1, 6),
                ["layer '1' (Sigmoid)", "(aten::sigmoid)", "node '/1/Sigmoid' (Sigmoid)"]),
    "residual_add": (Residual, (1, 6), ["operation 'add' (operator.add: a residual", "(aten::add)", "(Add)"]),
    "no_relu_between": (lambda: nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 2)), (1, 6),
                        ["layer '1' (Linear) is not supported: it follows layer '0' (Linear) without a ReLU",
                         "without a ReLU", "without a ReLU"]),
    "relu_on_input": (lambda: nn.Sequential(nn.ReLU(), nn.Linear(6, 2)), (1, 6),
                      ["layer '0' (ReLU)", "(aten::relu)", "(Relu)"]),
}


def one_line_error(fn, fragment):
    with pytest.raises(UnsupportedModel) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and fragment in msg, msg
    assert "is not supported" in msg and ("chain of Linear layers" in msg or "chain of Gemm or MatMul" in msg)
    return msg


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_unsupported_torch_torchscript_onnx(case, tmp_path):
    make, shape, (in_torch, in_script, in_onnx) = UNSUPPORTED[case]
    model = make().eval()
    one_line_error(lambda: eie.import_model(model), in_torch)
    path = tmp_path / "m.pt"
    torch.jit.trace(model, torch.zeros(shape)).save(str(path))
    one_line_error(lambda: eie.import_model(path), in_script)
    to_onnx(model, tmp_path / "m.onnx", shape)
    one_line_error(lambda: eie.import_model(tmp_path / "m.onnx"), in_onnx)


class FunctionalMLP(nn.Module):
    """forward in functional calls: torch.flatten, F.relu, F.dropout, Tensor.relu."""

    def __init__(self, start_dim=1):
        super().__init__()
        self.fc1, self.fc2, self.start_dim = nn.Linear(20, 8), nn.Linear(8, 4), start_dim

    def forward(self, x):
        h = nn.functional.dropout(nn.functional.relu(self.fc1(torch.flatten(x, self.start_dim))), 0.5, self.training)
        return self.fc2(h).relu()


def test_functional_forward_and_flatten_dims():
    torch.manual_seed(18)
    model = FunctionalMLP().eval()
    net = eie.import_model(model)
    assert [L.name for L in net.layers] == ["fc1", "fc2"] and [L.relu for L in net.layers] == [True, True]
    with torch.no_grad():
        want = model(torch.as_tensor(inputs()[:4]).reshape(4, 4, 5)).numpy()
    np.testing.assert_allclose(net.forward(inputs()[:4]), want, rtol=1e-5, atol=1e-6)
    one_line_error(lambda: eie.import_model(FunctionalMLP(start_dim=0)), "only flatten(x, 1)")
    one_line_error(lambda: eie.import_model(nn.Sequential(nn.Flatten(0), nn.Linear(4, 2))),
                   "layer '0' (Flatten) is not supported: it flattens dimensions 0..-1")


def test_untraceable_forward_is_one_line():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -x

    one_line_error(lambda: eie.import_model(Branchy()), "a forward that torch.fx cannot trace")


# -- running: golden model, RTL, files -------------------------------------------------------------
@pytest.mark.sim
def test_imported_model_runs_on_the_rtl_bit_and_cycle_exact():
    model, x = mlp(sizes=(20, 12, 6), bias=True, seed=14), inputs()
    prune.l1_unstructured(linears(model)[0], "weight", 0.7)
    image = eie.compile(model, n_pe=2, calibration=x, acc_depth=4)
    sim = eie.simulate(image, x[:2], simulator="amaranth")
    assert sim.simulator == "amaranth" and sim.bit_exact and sim.cycle_exact
    np.testing.assert_array_equal(sim.outputs_int, eie.run(image, x[:2]).outputs_int)
    assert all(c > 0 for c in sim.cycles_per_sample)


@pytest.mark.sim
# Icarus: a one-second build; Verilator's takes a minute, so it only runs where Icarus is absent
@pytest.mark.parametrize("sim", [sim_param("icarus" if icarus_installed() else "verilator")])
def test_imported_model_runs_under_cocotb(sim):
    model, x = mlp(sizes=(20, 12, 6), bias=True, seed=17), inputs()
    prune.l1_unstructured(linears(model)[1], "weight", 0.5)
    image = eie.compile(model, n_pe=2, calibration=x, acc_depth=4, balance=True)
    assert image.layers[-1].row_perm is not None          # outputs permuted on chip, read back in order
    result = eie.simulate(image, x[:3], simulator=sim)
    assert result.simulator == sim and result.bit_exact and result.cycle_exact
    np.testing.assert_array_equal(result.outputs_int, eie.run(image, x[:3]).outputs_int)   # the weights' row order


def test_save_load_keeps_the_report(tmp_path):
    model, x = mlp(seed=15), inputs()
    image = eie.compile(model, n_pe=N_PE, calibration=x)
    eie.save(image, tmp_path / "net.eie")
    with pytest.raises(FileExistsError):
        eie.save(image, tmp_path / "net.eie")
    back = eie.load(tmp_path / "net.eie")
    assert same_image(back, image) and back.meta["import"] == image.meta["import"]
    np.testing.assert_array_equal(eie.run(back, x).outputs_int, eie.run(image, x).outputs_int)


def test_inputs_of_the_wrong_shape_name_what_was_expected():
    image = eie.compile(mlp(seed=16), n_pe=N_PE)
    with pytest.raises(InputError, match=r"x: expected \(20,\) or \(batch, 20\)"):
        eie.run(image, np.zeros((3, 7)))
    with pytest.raises(InputError, match=r"calibration: expected \(20,\)"):
        eie.compile(mlp(seed=16), n_pe=N_PE, calibration=np.zeros(5))
    flat, shaped = eie.run(image, np.ones((2, 20))), eie.run(image, np.ones((2, 4, 5)))   # samples flattened
    np.testing.assert_array_equal(shaped.outputs_int, flat.outputs_int)
