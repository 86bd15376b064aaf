"""`eie import MODEL --n-pe N [--calibrate X.npy] -o net.eie`: the image equals eie.compile's, the
report is printed (and --json), and every bad input is one line with exit status 2."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import eie
from eie.golden_model.image_file import load_image

from .test_cli import assert_one_line_error, console_script, eie as run_eie
from .test_model_import import inputs, linears, mlp, same_image, to_onnx

N_PE = 4


@pytest.fixture
def files(tmp_path):
    """A pruned biased MLP as TorchScript, ONNX, state_dict and whole pickle, with its inputs."""
    model, x = mlp(bias=True, seed=21), inputs()
    prune.l1_unstructured(linears(model)[0], "weight", 0.75)
    np.save(tmp_path / "x.npy", x)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    torch.save(model, tmp_path / "whole.pt")
    to_onnx(model, tmp_path / "m.onnx", 20)
    prune.remove(linears(model)[0], "weight")
    torch.jit.script(model).save(str(tmp_path / "ts.pth"))
    return model, x, tmp_path


@pytest.mark.parametrize("name", ["m.onnx", "ts.pth", "sd.pt"])
def test_import_json_matches_the_api(files, capsys, name):
    model, x, d = files
    out = d / "net.eie"
    rc, stdout, err = run_eie(capsys, "import", d / name, "--n-pe", N_PE, "--calibrate", d / "x.npy", "-o", out,
                              "--json")
    assert rc == 0, err
    s = json.loads(stdout)
    img = load_image(out)
    assert same_image(img, eie.compile(model, n_pe=N_PE, calibration=x))
    assert s["output"] == str(out) and s["import"] == img.meta["import"]
    rep = s["import"]
    assert [L["density"] for L in rep["layers"]] == pytest.approx(
        [float((m.weight != 0).float().mean()) for m in linears(model)])
    assert rep["layers"][0]["density"] == pytest.approx(0.25, abs=1 / 320)
    assert rep["calibration"]["within_bound"] and rep["calibration"]["samples"] == len(x)
    assert rep["compression"]["ratio_total"] > 1


def test_import_human_report(files, capsys):
    _, _, d = files
    rc, out, err = run_eie(capsys, "import", d / "m.onnx", "--n-pe", N_PE, "--calibrate", d / "x.npy",
                           "-o", d / "net.eie")
    assert rc == 0 and err == ""
    assert "wrote" in out and "density" in out and "compression" in out and "bound" in out and "within" in out
    rc, out, err = run_eie(capsys, "import", d / "m.onnx", "--n-pe", N_PE, "-o", d / "nocal.eie")
    assert rc == 0 and "no --calibrate" in out


def test_import_refuses_to_overwrite(files, capsys):
    _, _, d = files
    out = d / "net.eie"
    out.write_bytes(b"keep me")
    rc, _, err = run_eie(capsys, "import", d / "m.onnx", "--n-pe", N_PE, "-o", out)
    assert_one_line_error(rc, err, "import", str(out), "--force")
    assert out.read_bytes() == b"keep me"
    rc, _, err = run_eie(capsys, "import", d / "m.onnx", "--n-pe", 2, "-o", out, "--force")
    assert rc == 0, err
    assert load_image(out).n_pe == 2


def test_output_is_checked_before_the_model_is_read(tmp_path, capsys):
    rc, _, err = run_eie(capsys, "import", tmp_path / "missing.onnx", "--n-pe", N_PE, "-o", tmp_path / "no" / "o.eie")
    assert_one_line_error(rc, err, "import", "-o", "does not exist")


def test_pickled_model_needs_trust_pickle(files, capsys):
    model, x, d = files
    rc, _, err = run_eie(capsys, "import", d / "whole.pt", "--n-pe", N_PE, "-o", d / "w.eie")
    assert_one_line_error(rc, err, "import", str(d / "whole.pt"), "--trust-pickle")
    assert not (d / "w.eie").exists()
    rc, _, err = run_eie(capsys, "import", d / "whole.pt", "--n-pe", N_PE, "--trust-pickle", "-o", d / "w.eie")
    assert rc == 0, err


@pytest.mark.parametrize("layer,shape,fragment", [
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)), (1, 1, 4, 4), "(Conv)"),
    (lambda: nn.Sequential(nn.Linear(6, 4), nn.Sigmoid(), nn.Linear(4, 2)), (1, 6), "(Sigmoid)"),
], ids=["conv2d", "sigmoid"])
@pytest.mark.parametrize("fmt", ["onnx", "pt"])
def test_unsupported_model_is_one_line(tmp_path, capsys, layer, shape, fragment, fmt):
    model = layer().eval()
    path = tmp_path / f"m.{fmt}"
    if fmt == "onnx":
        to_onnx(model, path, shape)
    else:
        torch.jit.trace(model, torch.zeros(shape)).save(str(path))
        fragment = {"(Conv)": "(aten::_convolution)", "(Sigmoid)": "(aten::sigmoid)"}[fragment]
    rc, out, err = run_eie(capsys, "import", path, "--n-pe", N_PE, "-o", tmp_path / "o.eie")
    assert_one_line_error(rc, err, "import", str(path), fragment, "is not supported", "chain of")
    assert out == "" and not (tmp_path / "o.eie").exists()


@pytest.mark.parametrize("content,suffix,fragment", [
    (b"", ".pt", "not a PyTorch file"), (b"garbage" * 10, ".pth", "not a PyTorch file"),
    (b"\xff\xfe garbage", ".onnx", "not a readable ONNX model"), (b"x", ".h5", "expected a .pt or .pth"),
], ids=["empty_pt", "garbage_pth", "garbage_onnx", "wrong_suffix"])
def test_bad_model_file(tmp_path, capsys, content, suffix, fragment):
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(content)
    rc, _, err = run_eie(capsys, "import", bad, "--n-pe", N_PE, "-o", tmp_path / "o.eie")
    assert_one_line_error(rc, err, "import", str(bad), fragment)
    assert not (tmp_path / "o.eie").exists()


def test_missing_model_file(tmp_path, capsys):
    rc, _, err = run_eie(capsys, "import", tmp_path / "nope.onnx", "--n-pe", N_PE, "-o", tmp_path / "o.eie")
    assert_one_line_error(rc, err, "import", "nope.onnx", "no such file")


def test_calibration_of_the_wrong_shape_names_the_option(files, capsys):
    _, _, d = files
    np.save(d / "bad_x.npy", np.zeros((3, 7)))
    rc, _, err = run_eie(capsys, "import", d / "m.onnx", "--n-pe", N_PE, "--calibrate", d / "bad_x.npy",
                         "-o", d / "o.eie")
    assert_one_line_error(rc, err, "import", f"--calibrate {d / 'bad_x.npy'}", "(batch, 20)")
    assert not (d / "o.eie").exists()


def test_an_act_frac_a_biased_model_cannot_take_names_the_option(files, capsys):
    """A bias needs an input format with 1.0 an integer (in_frac >= 0): the refusal names --act-frac."""
    _, _, d = files
    rc, _, err = run_eie(capsys, "import", d / "m.onnx", "--n-pe", N_PE, "--act-frac", "-1", "-o", d / "o.eie")
    assert_one_line_error(rc, err, "import", "--act-frac")
    assert "act_frac" not in err.replace(str(d), "")  # the tmp path holds the test's name
    assert not (d / "o.eie").exists()


def test_codebook_option(files, capsys):
    _, _, d = files
    np.save(d / "cb.npy", np.concatenate([[0.0], np.linspace(-0.3, 0.3, 15)]))
    rc, _, err = run_eie(capsys, "import", d / "m.onnx", "--n-pe", N_PE, "--codebook", d / "cb.npy", "-o", d / "c.eie")
    assert rc == 0, err
    img = load_image(d / "c.eie")
    assert img.meta["import"]["codebook"] == "given"
    np.save(d / "cb_bad.npy", np.ones(16))
    rc, _, err = run_eie(capsys, "import", d / "m.onnx", "--n-pe", N_PE, "--codebook", d / "cb_bad.npy",
                         "-o", d / "c2.eie")
    assert_one_line_error(rc, err, "import", "--codebook", "entry 0")


@pytest.mark.parametrize("n_pe", ["0", "x", "5000"])
def test_bad_n_pe(files, capsys, n_pe):
    _, _, d = files
    with pytest.raises(SystemExit) as e:           # argparse's usage error: one line, exit 2
        run_eie(capsys, "import", d / "m.onnx", "--n-pe", n_pe, "-o", d / "o.eie")
    err = capsys.readouterr().err
    assert_one_line_error(e.value.code, err, "import", "--n-pe", "expected an integer")


def test_console_script_import_and_run(files):
    _, x, d = files
    proc = subprocess.run([*console_script(), "import", str(d / "m.onnx"), "--n-pe", "2", "-o", str(d / "cs.eie")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([*console_script(), "run", str(d / "cs.eie"), "--input", str(d / "x.npy"), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(json.loads(proc.stdout)["outputs_int"], eie.run(eie.load(d / "cs.eie"), x).outputs_int)
