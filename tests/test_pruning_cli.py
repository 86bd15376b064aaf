"""`eie prune ...` on tiny configurations: outputs, documented JSON keys, the exported
checkpoint and image of every method (built-in and plug-in), compare, biases."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from eie.cli import build_parser, main
from eie.golden_model import decode_weights
from eie.golden_model import numerics as nm
from eie.golden_model.image_file import load_image
from eie.pruning.export import image_accuracy, layer_codes
from eie.pruning.models import fc_layers
from eie.pruning.pipeline import load_checkpoint
from eie.pruning.train import accuracy

torch.set_num_threads(1)

TINY = ["--epochs", "2", "--seeds", "0", "--quiet", "--n-pe", "4", "--calib", "32"]

REPORT_KEYS = {"method", "options", "context", "runs", "summary", "seconds", "output_dir", "files"}
SUMMARY_KEYS = {"seeds", "dense_test_acc", "dense_val_acc", "test_acc", "val_acc", "kept", "quantised_test_acc",
                "golden_test_acc", "ratio_pruning", "ratio_pruning_sharing", "ratio_total", "ratio_huffman",
                "ratio_one_csc", "ratio_one_csc_huffman", "test_acc_drop", "val_acc_drop"}
FINAL_KEYS = {"pruned", "checkpoint", "image", "compression", "compression_by_pe", "compression_one_csc"}


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


def check_export(run, splits):
    """The run's checkpoint loads and computes the reported accuracy; its image file
    decodes to the checkpoint's pruned weights quantised with the exported codebooks
    (same zeros, at most 15 shared values per layer) and runs at the reported accuracy."""
    model, obj = load_checkpoint(run["final"]["checkpoint"])
    assert obj["meta"]["seed"] == run["seed"]
    assert accuracy(model, splits, "test") == run["final"]["pruned"]["test_acc"]
    fc = [l.weight for _, l in fc_layers(model)]
    kept = sum(int((w != 0).sum()) for w in fc) / sum(w.numel() for w in fc)
    assert kept == pytest.approx(run["final"]["pruned"]["kept"])
    image = load_image(run["final"]["image"]["path"])
    for (name, layer), L in zip(fc_layers(model), image.layers):
        w = layer.weight.detach().double().numpy()
        dec = decode_weights(L)
        np.testing.assert_array_equal(dec != 0, w != 0)                 # the pruning mask, exactly
        assert len(np.unique(dec[dec != 0])) <= 15
        if name in obj["codebooks"]:                                     # trained (shared) codebook
            cb, idx = obj["codebooks"][name]["codebook"].numpy(), obj["codebooks"][name]["idx"].numpy()
        else:                                                            # k-means codebook at export
            cb, idx, _ = layer_codes(layer, run["seed"])
        q = nm.quantize(cb.astype(np.float64), L.w_frac, nm.WEIGHT_BITS).astype(np.float64) * 2.0 ** -L.w_frac
        np.testing.assert_array_equal(dec, q[idx])
    golden = image_accuracy(image, splits.x_test, splits.y_test)
    assert golden["accuracy"] == run["final"]["image"]["golden_test"]["accuracy"]


def check_common(rep, out_dir, method, splits=None):
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
    # Deep Compression's count: one CSC matrix per layer, n_in + 1 pointers (+1 for a bias column)
    one = r["final"]["compression_one_csc"]
    image = load_image(img["path"])
    assert one["pointers"] == sum(L.n_cols + 1 for L in image.layers)
    assert one["ratio_total"] == pytest.approx(c["total"]["dense_bits"] / one["csc_bits"])
    for name in rep["files"]:
        assert (out_dir / name).is_file(), name
    pngs = [f for f in rep["files"] if f.endswith(".png")]
    assert "compression.png" in pngs and len(pngs) >= 2
    assert all((out_dir / f).read_bytes()[:4] == b"\x89PNG" for f in pngs)
    assert any(f.endswith(".pt") for f in rep["files"]) and any(f.endswith(".eie") for f in rep["files"])
    if splits is not None:
        for run_ in rep["runs"]:
            check_export(run_, splits)


def test_iterative_and_share_from_checkpoint(capsys, tmp_path, cache, splits):
    rep, out = run_json(capsys, tmp_path, cache, "iterative", "--sparsity", "0.8", "--steps", "2", "--ft-epochs", "1",
                        "--final-epochs", "1")
    check_common(rep, out, "iterative", splits)
    assert rep["summary"]["kept"] == pytest.approx(0.2, abs=1e-3)
    r = rep["runs"][0]
    assert len(r["history"]) == 4 and "one_shot" in r and r["one_shot"]["epochs"] == 3
    assert rep["options"]["sparsity"] == 0.8
    ckpt = r["final"]["checkpoint"]
    rep2, out2 = run_json(capsys, tmp_path, cache, "share", "--from", ckpt, "--centroid-epochs", "1")
    check_common(rep2, out2, "share", splits)
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


PLUGINS = {
    "lottery": ["--rounds", "2", "--rate", "0.5", "--modes", "reset,rewind", "--seeds", "0,1"],
    "netadapt": ["--iterations", "2", "--delta", "0.2", "--short-epochs", "1", "--long-epochs", "1",
                 "--latency-samples", "4"],
    "amc": ["--constraint", "cycles", "--budget", "0.5", "--episodes", "2", "--warmup", "1", "--finetune-epochs", "1",
            "--latency-samples", "4", "--no-bias"],
}


@pytest.mark.parametrize("method", PLUGINS)
def test_plugins_write_checkpoint_image_report(capsys, tmp_path, cache, splits, method):
    """Lottery, NetAdapt and AMC end like the other methods: checkpoint, EIE image and report."""
    rep, out = run_json(capsys, tmp_path, cache, method, *PLUGINS[method])
    check_common(rep, out, method, splits)
    r = rep["runs"][0]
    res = r[method]
    assert res["method"] == method and r["final"]["pruned"]["kept"] < 1
    if method == "lottery":
        assert [x["seed"] for x in rep["runs"]] == [0, 1]
        assert {"lottery-seed0.png", "lottery-seed1.png", "lottery_mean.png"} <= set(rep["files"])
        assert r["exported_ticket"] == "rewind" and res["config"]["bias"] is False
        last = res["rounds"][-1]["rewind"]
        assert r["final"]["pruned"]["test_acc"] == last["test_acc"]          # the exported network is that ticket
        assert r["final"]["pruned"]["kept"] == last["remaining_weights"] / 50200
        assert res["dense"] == r["dense"]                 # its dense run is the cached dense model of the seed
    else:
        assert f"{method}.png" in rep["files"]
        assert r["final"]["pruned"]["test_acc"] == res["final"]["test_acc"]
        assert r["final"]["pruned"]["kept"] == pytest.approx(1 - res["final"]["sparsity"]["overall"])
    if method == "netadapt":
        assert all(it["latency"] <= it["target"] for it in res["iterations"][1:])
        # any method's checkpoint goes on to centroid finetuning
        rep2, out2 = run_json(capsys, tmp_path, cache, "share", "--from", r["final"]["checkpoint"],
                              "--centroid-epochs", "1")
        check_common(rep2, out2, "share", splits)
        assert rep2["runs"][0]["source"]["meta"]["method"] == "netadapt" and rep2["runs"][0]["sharing_kept"]
    if method == "amc":
        assert res["final"]["budget_met"] and res["final"]["cycles"] <= res["budget"]
        assert rep["options"]["constraint"] == "cycles"


def test_compare_tiny(capsys, tmp_path, cache, splits):
    out_dir = tmp_path / "cmp"
    rc, out = run(capsys, "compare", *TINY, "--cache-dir", cache, "--out", str(out_dir), "--json", "--sparsity", "0.8",
                  "--steps", "1", "--ft-epochs", "1", "--final-epochs", "0", "--reg-epochs", "1",
                  "--methods", "one-shot (global),iterative (global),L1,slimming,lottery,netadapt,amc",
                  "--lottery-rate", "0.5", "--netadapt-delta", "0.4", "--netadapt-short-epochs", "1",
                  "--amc-episodes", "3", "--amc-warmup", "2")
    assert rc == 0, out.err
    rep = json.loads(out.out)
    names = [t["method"] for t in rep["table"]]
    assert names == ["magnitude one-shot (global)", "iterative (global)", "L1 + one-shot global",
                     "network slimming (structured)", "lottery ticket (global IMP, rewind)",
                     "NetAdapt (weights as resource)", "AMC (DDPG, FLOPs budget)"]
    for t in rep["table"]:
        assert {"method", "matching", "kept", "val_acc", "test_acc", "test_acc_drop", "quantised_test_acc",
                "golden_test_acc", "cycles_per_input", "ratio_total", "ratio_one_csc", "ratio_one_csc_huffman",
                "runs"} <= set(t)
        assert t["kept"] <= 0.2 + 1e-3 and t["matching"]
        assert t["cycles_per_input"] > 0
        # the golden model computes what the float network with the image's 4-bit weights does
        for r in t["runs"]:
            assert abs(r["golden_test_acc"] - r["quantised_test_acc"]) <= 2 / len(splits.y_test), (t["method"], r)
        # one CSC per layer; Huffman coding never stores more than the fixed 4-bit fields
        assert t["ratio_one_csc_huffman"] >= t["ratio_one_csc"] > 1
    kept = {t["method"]: t["kept"] for t in rep["table"]}
    assert kept["iterative (global)"] == kept["NetAdapt (weights as resource)"] == pytest.approx(0.2, abs=1e-9)
    assert kept["lottery ticket (global IMP, rewind)"] == pytest.approx(0.2, abs=1e-4)
    assert kept["AMC (DDPG, FLOPs budget)"] > 0.15
    assert "3 rounds" in rep["table"][4]["matching"]
    assert rep["options"]["amc_episodes"] == 3 and rep["options"]["lottery_rate"] == 0.5
    assert (out_dir / "compare.png").is_file() and (out_dir / "compare.json").is_file()


def test_bias_free_by_default_and_biases_carried(capsys, tmp_path, cache, splits):
    """No biases by default for the digits MLP; with --bias the image carries them (one more
    column of activation 1, quantised with the layer's codebook): the decoded bias is the
    model's bias on its codebook, and no warning is printed."""
    it = ["--sparsity", "0.8", "--steps", "1", "--ft-epochs", "1", "--final-epochs", "0", "--no-one-shot"]
    rep, _ = run_json(capsys, tmp_path, cache, "iterative", *it)
    img = rep["runs"][0]["final"]["image"]
    assert rep["context"]["bias"] is False and not img["check"]["biases_carried"]
    model, _ = load_checkpoint(rep["runs"][0]["final"]["checkpoint"])
    assert all(l.bias is None for _, l in fc_layers(model))

    rc, out = run(capsys, "iterative", *TINY, "--cache-dir", cache, "--out", str(tmp_path / "b"), "--json", "--bias",
                  *it)
    assert rc == 0, out.err
    rep = json.loads(out.out)
    r = rep["runs"][0]
    img = r["final"]["image"]
    assert rep["context"]["bias"] is True and "warning" not in out.err
    assert img["check"]["biases_carried"] and img["decode_matches"]
    assert all(L["bias_equal"] and L["bias_indices_equal"] for L in img["check"]["layers"])
    model, _ = load_checkpoint(r["final"]["checkpoint"])
    assert all(l.bias is not None for _, l in fc_layers(model))
    image = load_image(img["path"])
    from eie.golden_model.decoder import decode_bias
    for (_, layer), L in zip(fc_layers(model), image.layers):
        cb, _, bidx = layer_codes(layer, 0)
        q = nm.quantize(cb.astype(np.float64), L.w_frac, nm.WEIGHT_BITS) * 2.0 ** -L.w_frac
        np.testing.assert_array_equal(decode_bias(L), q[bidx])
    # the golden model computes what the float model with the image's weights and biases does
    assert abs(img["golden_test"]["accuracy"] - img["quantised"]["test_acc"]) <= 2 / len(splits.y_test)
    # the dense model with and without biases: one cache file each
    names = [p.name for p in Path(cache).glob("mlp-*digits-*.pt")]
    assert any("-nobias-" in n for n in names) and any("-nobias-" not in n for n in names)
    # --no-bias and --bias override the network's default (None: resolved per network)
    parse = build_parser().parse_args
    assert parse(["prune", "iterative"]).bias is None
    assert parse(["prune", "iterative", "--no-bias"]).bias is False
    assert parse(["prune", "iterative", "--bias"]).bias is True
    assert parse(["prune", "amc", "--bias", "--no-bias"]).bias is False


def test_user_errors(capsys, tmp_path, cache):
    rc, out = run(capsys, "share", *TINY, "--cache-dir", cache, "--out", str(tmp_path / "x"),
                  "--from", str(tmp_path / "missing.pt"))
    assert rc == 2 and out.err.startswith("eie prune share: error: ") and "no such checkpoint" in out.err
    assert "Traceback" not in out.err
    rc, out = run(capsys, "compare", *TINY, "--cache-dir", cache, "--out", str(tmp_path / "y"), "--methods", "nope")
    assert rc == 2 and out.err.startswith("eie prune compare: error: --methods: unknown ['nope']")
    for bad, msg in ((["--sparsity", "1.5"], "--sparsity: expected a number in [0, 1), got 1.5"),
                     (["--seeds", "a,b"], "--seeds: expected comma-separated values, each an integer"),
                     (["--lr-scale", "0"], "--lr-scale: expected a number in (0, 1], got 0"),
                     (["--steps", "0"], "--steps: expected an integer in 1..1000, got 0")):
        with pytest.raises(SystemExit) as e:
            main(["prune", "iterative", *bad])
        assert e.value.code == 2 and msg in capsys.readouterr().err


def test_post_parse_error_names_the_method_subcommand(tmp_path):
    """An error found after parsing (here the lottery's option check) is one line that
    names the whole subcommand, as argparse's own errors do, with exit status 2."""
    out = tmp_path / "lot"
    p = subprocess.run([sys.executable, "-m", "eie", "prune", "lottery", "--modes", "rewind", "--export", "reset",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("eie prune lottery: error: ") and "'reset'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not out.exists()


def test_library_text_shows_the_options_of_the_command(monkeypatch):
    """The library names arguments (`data_path`, `layers="all"`, `bias=False`); `eie prune`
    shows them as its options, and leaves names it does not parse alone."""
    from eie.cli_inputs import as_options
    from eie.golden_model.errors import InputError
    from eie.pruning import data as data_mod
    from eie.pruning.amc import compare_note

    args = build_parser().parse_args(["prune", "compare", "--dataset", "mnist"])
    monkeypatch.setattr(data_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError) as e:
        data_mod.mnist_package_dir()
    assert "`data_path`" in str(e.value) and "--data-path" not in str(e.value)
    assert as_options(str(e.value), args).endswith("or give --data-path, the directory of the IDX files")
    assert as_options("train with `bias=False`", args) == "train with --no-bias"
    settings = SimpleNamespace(sparsity=0.9, amc_reward_batches=0, amc_episodes=3, amc_warmup=1, amc_a_max_last=0.8,
                               steps=1, ft_epochs=1, final_epochs=0, lr_scale=0.1)
    assert "with --layers all the budget is 10 % of the weights" in as_options(compare_note(settings), args)
    assert as_options("`model` `nope` `n_pe=8` `trust_pickle=True`", args) == "--model `nope` --n-pe 8 `trust_pickle=True`"


def test_registry_defaults_match_library():
    """The registry keeps the library's defaults as data (so the parser imports no torch):
    they must be the library's, and every entry point it names must resolve."""
    from eie.pruning import registry
    from eie.pruning.amc import AMCConfig
    from eie.pruning.iterative import FinetuneConfig
    from eie.pruning.netadapt import NetAdaptConfig
    from eie.pruning.sensitivity import DEFAULT_RATIOS
    from eie.pruning.train import TrainConfig

    d = TrainConfig()
    c = registry.COMMON_DEFAULTS
    assert (c["epochs"], c["lr"], c["batch_size"]) == (d.epochs, d.lr, d.batch_size)
    assert c["lr_scale"] == FinetuneConfig().lr_scale
    assert registry.DEFAULT_RATIOS == DEFAULT_RATIOS
    opts = {m.name: {o.name: o.default for o in m.options} for m in registry.METHODS.values()}
    a, n = AMCConfig(), NetAdaptConfig()
    assert {k: opts["amc"][k] for k in ("a_max", "a_max_last", "reward_batches", "reward_lr", "budget")} == \
        {"a_max": a.a_max, "a_max_last": a.a_max_last, "reward_batches": a.reward_batches, "reward_lr": a.reward_lr,
         "budget": a.budget}
    assert (opts["netadapt"]["delta"], opts["netadapt"]["budget"], opts["netadapt"]["short_epochs"]) == \
        (n.delta, n.budget, n.short_epochs)
    for m in registry.METHODS.values():
        for ref in [m.run, m.plots, m.resolve, m.seeds] + [x for r in m.compare for x in (r.run, r.note)]:
            if ref is not None:
                assert callable(registry.resolve(ref)), ref
    names = [o.name for o in registry.COMPARE_OPTIONS] + [o.name for m in registry.METHODS.values()
                                                           for o in m.compare_options]
    assert len(names) == len(set(names))           # one compare option, one name


def test_rtl_samples_run_the_exported_image_on_the_rtl(capsys, tmp_path, cache):
    """--rtl-samples N: the image's first N test inputs through the RTL under cocotb
    (Icarus's one-second build where it is installed, else Verilator), every output word and
    every input's cycles checked by the scoreboard; the RTL's cycles are the golden model's
    for those inputs, run here on their own."""
    from eie.golden_model.model import run_image
    from eie.pruning.data import load_digits_splits
    from eie.pruning.export import eie_input
    from eie.sim.simulator import icarus_installed

    it = ["--sparsity", "0.8", "--steps", "1", "--ft-epochs", "1", "--final-epochs", "0", "--no-one-shot", "--bias"]
    sim = "icarus" if icarus_installed() else "verilator"
    rep, _ = run_json(capsys, tmp_path, cache, "iterative", *it, "--rtl-samples", "3", "--simulator", sim)
    img = rep["runs"][0]["final"]["image"]
    rtl = img["rtl_sample"]
    assert rtl["simulator"] == f"{sim} (cocotb)" and rtl["ok"]
    assert rtl["samples"] == 3 and rtl["bit_exact"] and rtl["cycle_exact"]
    model, _ = load_checkpoint(rep["runs"][0]["final"]["checkpoint"])
    x = eie_input(model, load_digits_splits(0).x_test[:3])
    golden = run_image(load_image(img["path"]), x)
    assert rtl["cycles_rtl"] == [int(c) for c in golden.report.cycles_per_sample]
    (tmp_path / "none").mkdir()
    plain, _ = run_json(capsys, tmp_path / "none", cache, "iterative", *it)
    assert "rtl_sample" not in plain["runs"][0]["final"]["image"]
