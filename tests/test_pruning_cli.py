"""`eie prune ...` smoke tests on tiny configurations: outputs and documented JSON keys."""

import json

import pytest
import torch

from eie.cli import main
from eie.golden_model.image_file import load_image

torch.set_num_threads(1)

TINY = ["--epochs", "2", "--seeds", "0", "--quiet", "--n-pe", "4", "--calib", "32"]

REPORT_KEYS = {"method", "options", "context", "runs", "summary", "seconds", "output_dir", "files"}
SUMMARY_KEYS = {"seeds", "dense_test_acc", "dense_val_acc", "test_acc", "val_acc", "kept", "quantised_test_acc",
                "golden_test_acc", "ratio_pruning", "ratio_pruning_sharing", "ratio_total", "test_acc_drop",
                "val_acc_drop"}
FINAL_KEYS = {"pruned", "checkpoint", "image", "compression", "compression_by_pe"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def run(capsys, *argv):
    rc = main(["prune", *argv])
    out = capsys.readouterr()
    return rc, out


def run_json(capsys, tmp_path, cache, method, *extra):
    out_dir = tmp_path / method
    rc, out = run(capsys, method, *TINY, "--cache-dir", cache, "--out", str(out_dir), "--json", *extra)
    assert rc == 0, out.err
    rep = json.loads(out.out)
    assert rep == json.loads((out_dir / "report.json").read_text())
    return rep, out_dir


def check_common(rep, out_dir, method):
    assert REPORT_KEYS <= set(rep)
    assert rep["method"] == method
    assert SUMMARY_KEYS <= set(rep["summary"])
    r = rep["runs"][0]
    assert {"seed", "dense", "final"} <= set(r)
    assert FINAL_KEYS <= set(r["final"])
    assert {"val_acc", "test_acc", "kept", "layers"} <= set(r["final"]["pruned"])
    img = r["final"]["image"]
    assert img["decode_matches"] is True and img["n_pe"] == 4
    assert load_image(img["path"]).n_pe == 4
    c = r["final"]["compression"]
    assert {"ratio_pruning", "ratio_pruning_sharing", "ratio_total", "total", "layers"} <= set(c)
    assert c["ratio_pruning_sharing"] > c["ratio_pruning"] > 1 and c["ratio_total"] > 1
    for name in rep["files"]:
        assert (out_dir / name).is_file(), name
    pngs = [f for f in rep["files"] if f.endswith(".png")]
    assert "compression.png" in pngs and len(pngs) >= 2
    assert all((out_dir / f).read_bytes()[:4] == b"\x89PNG" for f in pngs)
    assert any(f.endswith(".pt") for f in rep["files"]) and any(f.endswith(".eie") for f in rep["files"])


def test_iterative_and_share_from_checkpoint(capsys, tmp_path, cache):
    rep, out = run_json(capsys, tmp_path, cache, "iterative", "--sparsity", "0.8", "--steps", "2", "--ft-epochs", "1",
                        "--final-epochs", "1")
    check_common(rep, out, "iterative")
    assert rep["summary"]["kept"] == pytest.approx(0.2, abs=1e-3)
    r = rep["runs"][0]
    assert len(r["history"]) == 4 and "one_shot" in r and r["one_shot"]["epochs"] == 3
    assert rep["options"]["sparsity"] == 0.8
    ckpt = r["final"]["checkpoint"]
    rep2, out2 = run_json(capsys, tmp_path, cache, "share", "--from", ckpt, "--centroid-epochs", "1")
    check_common(rep2, out2, "share")
    r2 = rep2["runs"][0]
    assert r2["source"]["checkpoint"] == ckpt and r2["source"]["meta"]["method"] == "iterative"
    assert r2["sharing_kept"] is True
    assert r2["pruned"]["kept"] == pytest.approx(0.2, abs=1e-3)
    assert {"kmeans", "centroid_finetuned"} <= set(r2)
    assert "accuracy_stages.png" in rep2["files"]


def test_magnitude(capsys, tmp_path, cache):
    rep, out = run_json(capsys, tmp_path, cache, "magnitude", "--sparsity", "0.7", "--scope", "layer",
                        "--ft-epochs", "1", "--sweep", "0.5")
    check_common(rep, out, "magnitude")
    r = rep["runs"][0]
    assert set(r["sweep_no_finetune"]) == {"layer", "global"}
    assert all(v["sparsity"] == pytest.approx(0.7, abs=1e-3) for v in r["final"]["pruned"]["layers"].values())


def test_sensitivity(capsys, tmp_path, cache):
    rep, out = run_json(capsys, tmp_path, cache, "sensitivity", "--ratios", "0,0.5,0.8", "--threshold", "0.05",
                        "--steps", "1", "--ft-epochs", "1", "--final-epochs", "0")
    check_common(rep, out, "sensitivity")
    r = rep["runs"][0]
    assert set(r["picked"]) == {"layers.0", "layers.1", "layers.2"}
    for n, ratio in r["picked"].items():
        assert all(p["drop"] <= 0.05 for p in r["scan"]["layers"][n] if p["ratio"] <= ratio)
        assert r["final"]["pruned"]["layers"][n]["sparsity"] == pytest.approx(ratio, abs=1e-3)
    assert "sensitivity.png" in rep["files"]


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_regularize(capsys, tmp_path, cache, penalty):
    rep, out = run_json(capsys, tmp_path, cache, "regularize", "--penalty", penalty, "--reg-epochs", "1",
                        "--ft-epochs", "1", "--sweep", "0.5")
    check_common(rep, out, "regularize")
    r = rep["runs"][0]
    assert rep["options"]["lam"] == (1e-4 if penalty == "l1" else 1e-3)
    assert r["weights_after"]["mean_abs"] < r["weights_control"]["mean_abs"]
    assert "weights_hist.png" in rep["files"]


def test_slimming_mlp_and_conv(capsys, tmp_path, cache):
    rep, out = run_json(capsys, tmp_path, cache, "slimming", "--reg-epochs", "1", "--ft-epochs", "1", "--kept", "0.3")
    check_common(rep, out, "slimming")
    r = rep["runs"][0]
    sizes = r["compact_arch"]
    assert sizes[0] == 64 and sizes[-1] == 10 and sizes[1] < 300
    kept = (64 * sizes[1] + sizes[1] * sizes[2] + sizes[2] * 10) / 50200
    assert r["final"]["pruned"]["kept"] == pytest.approx(kept) and kept <= 0.3
    rc, o = run(capsys, "slimming", *TINY, "--cache-dir", cache, "--out", str(tmp_path / "conv"), "--json",
                "--model", "conv", "--reg-epochs", "1", "--ft-epochs", "1", "--ratio", "0.25")
    assert rc == 0, o.err
    rep = json.loads(o.out)
    r = rep["runs"][0]
    assert "image" not in r["final"]  # only the MLP runs on EIE
    assert sum(r["units_kept"].values()) == 18 and sum(r["compact_arch"]) == 18


def test_compare_tiny(capsys, tmp_path, cache):
    out_dir = tmp_path / "cmp"
    rc, out = run(capsys, "compare", *TINY, "--cache-dir", cache, "--out", str(out_dir), "--json", "--sparsity", "0.8",
                  "--steps", "1", "--ft-epochs", "1", "--final-epochs", "0", "--reg-epochs", "1",
                  "--methods", "one-shot (global),iterative (global),L1,slimming")
    assert rc == 0, out.err
    rep = json.loads(out.out)
    names = [t["method"] for t in rep["table"]]
    assert names == ["magnitude one-shot (global)", "iterative (global)", "L1 + one-shot global",
                     "network slimming (structured)"]
    for t in rep["table"]:
        assert {"method", "kept", "val_acc", "test_acc", "test_acc_drop", "ratio_total", "runs"} <= set(t)
        assert t["kept"] <= 0.2 + 1e-3
    assert (out_dir / "compare.png").is_file() and (out_dir / "compare.json").is_file()


def test_user_errors(capsys, tmp_path, cache):
    rc, out = run(capsys, "share", *TINY, "--cache-dir", cache, "--out", str(tmp_path / "x"),
                  "--from", str(tmp_path / "missing.pt"))
    assert rc == 2 and "no such checkpoint" in out.err and "Traceback" not in out.err
    rc, out = run(capsys, "compare", *TINY, "--cache-dir", cache, "--out", str(tmp_path / "y"), "--methods", "nope")
    assert rc == 2 and "unknown" in out.err
    for bad, msg in ((["--sparsity", "1.5"], "fraction"), (["--seeds", "a,b"], "integers"),
                     (["--lr-scale", "0"], "lr_scale"), (["--steps", "0"], "steps")):
        with pytest.raises(SystemExit) as e:
            main(["prune", "iterative", *bad])
        assert e.value.code == 2 and msg in capsys.readouterr().err


def test_cli_defaults_match_library():
    from eie.pruning import cli
    from eie.pruning.finetune import FinetuneConfig
    from eie.pruning.sensitivity import DEFAULT_RATIOS
    from eie.pruning.train import TrainConfig

    d = TrainConfig()
    assert (cli.DENSE_EPOCHS, cli.DENSE_LR, cli.DENSE_BATCH) == (d.epochs, d.lr, d.batch_size)
    assert cli.LR_SCALE == FinetuneConfig().lr_scale
    assert cli.DEFAULT_RATIOS == DEFAULT_RATIOS
    assert set(cli.PLUGIN_METHODS) == {"lottery", "netadapt", "amc"}
