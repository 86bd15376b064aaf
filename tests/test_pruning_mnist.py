"""`eie prune --dataset mnist`: the packaged MNIST CSVs, LeNet-300-100 and LeNet-5, on a small
subset (`--subset`) so that every method runs in seconds; the full runs are documented
commands (docs/pruning.md)."""

import json

import numpy as np
import pytest
import torch

from eie.cli import main
from eie.golden_model.image_file import load_image
from eie.pruning import data as data_mod
from eie.pruning.data import load_dataset, subset
from eie.pruning.export import eie_input, image_accuracy, layer_codes
from eie.pruning.models import LeNet5, MLP, build_model, fc_input, fc_layers
from eie.pruning.pipeline import load_checkpoint
from eie.pruning.registry import METHODS
from eie.pruning.sharing import codebook_of, share_weights, shared_bias
from eie.pruning.train import accuracy

torch.set_num_threads(1)

SMALL = ["--dataset", "mnist", "--subset", "400", "--seeds", "0", "--quiet", "--n-pe", "4", "--calib", "32",
         "--epochs", "3"]
QUICK = {  # each method's options cut to a few epochs / episodes
    "magnitude": ["--ft-epochs", "1", "--sweep", "0.5"],
    "iterative": ["--steps", "2", "--ft-epochs", "1", "--final-epochs", "1", "--no-one-shot"],
    "sensitivity": ["--ratios", "0,0.5,0.9", "--steps", "1", "--ft-epochs", "1", "--final-epochs", "0"],
    "regularize": ["--reg-epochs", "1", "--ft-epochs", "1", "--sweep", "0.5"],
    "slimming": ["--reg-epochs", "1", "--ft-epochs", "1"],
    "share": ["--steps", "1", "--ft-epochs", "1", "--final-epochs", "0", "--centroid-epochs", "1"],
    "lottery": ["--rounds", "2", "--modes", "rewind"],
    "netadapt": ["--resource", "weights", "--iterations", "2", "--short-epochs", "0", "--long-epochs", "1",
                 "--budget", "0.5", "--delta", "0.2"],
    "amc": ["--episodes", "6", "--warmup", "3", "--finetune-epochs", "1", "--baselines", "4", "--val-samples",
            "40"],
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("mnist-cache"))


def prune(capsys, *argv):
    """(exit status, captured output) of `eie prune ARGV`; a parser error is status 2 too."""
    try:
        rc = main(["prune", *argv])
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr()


def test_every_method_is_covered():
    assert set(QUICK) == set(METHODS)


@pytest.mark.parametrize("model", ["lenet300", "lenet5"])
@pytest.mark.parametrize("method", list(QUICK))
def test_every_method_runs_on_both_networks(capsys, tmp_path, cache, model, method):
    out = tmp_path / method
    rc, o = prune(capsys, method, *SMALL, "--model", model, "--cache-dir", cache, "--out", str(out), "--json",
                  *QUICK[method])
    assert rc == 0, o.err
    rep = json.loads(o.out)
    ctx = rep["context"]
    assert ctx["dataset"] == "mnist" and ctx["model"] == model and ctx["bias"] is True
    assert ctx["layers"] == ("all" if model == "lenet5" else "fc")            # Han et al. prune LeNet-5's convs
    run = rep["runs"][0]
    model_obj, obj = load_checkpoint(run["final"]["checkpoint"])
    assert isinstance(model_obj, LeNet5 if model == "lenet5" else MLP)
    assert all(fc.bias is not None for _, fc in fc_layers(model_obj))
    splits = subset(load_dataset("mnist", cache_dir=cache), 400, 80)
    assert accuracy(model_obj, splits, "test") == run["final"]["pruned"]["test_acc"]
    # the image holds the FC layers; LeNet-5's are fed by the conv features
    image = load_image(run["final"]["image"]["path"])
    fcs = fc_layers(model_obj)
    assert [L.n_in for L in image.layers] == [m.in_features for _, m in fcs]
    assert [L.n_out for L in image.layers] == [m.out_features for _, m in fcs]
    gold = image_accuracy(image, eie_input(model_obj, splits.x_test), splits.y_test)
    assert gold["accuracy"] == run["final"]["image"]["golden_test"]["accuracy"]
    assert set(gold["cycles_per_input_by_layer"]) == {L.name for L in image.layers}
    assert run["final"]["image"]["decode_matches"]


def test_lenet5_fc_input_is_the_conv_features():
    torch.manual_seed(0)
    net = build_model("lenet5", 784, 10, (28, 28))
    x = torch.rand(3, 784)
    feats = fc_input(net, x)
    assert feats.shape == (3, 800)
    torch.testing.assert_close(feats, net.features(x))
    torch.testing.assert_close(net.fc2(torch.relu(net.fc1(feats))), net(x))
    assert sum(p.numel() for p in net.parameters()) == 431080             # Caffe's LeNet: 430,500 weights + 580 biases
    with pytest.raises(ValueError, match="at least 12x12"):
        build_model("lenet5", 64, 10, (8, 8))


def test_shared_bias_is_a_codebook_entry_and_trains(cache):
    """The bias is quantised with the layer's codebook (as EIE stores it) and centroid
    finetuning moves it through the shared centroids."""
    torch.manual_seed(0)
    net = build_model("lenet300", 784, 10)
    with torch.no_grad():
        for _, fc in fc_layers(net):
            fc.bias.normal_(0, 0.3)
    share_weights(net)
    x = torch.rand(8, 784)
    for _, fc in fc_layers(net):
        cb, _ = codebook_of(fc)
        b, bidx = shared_bias(fc)
        np.testing.assert_array_equal(b, cb[bidx])
        assert fc.bias.grad_fn is not None                                  # computed from the centroids
    before = [shared_bias(fc)[0].copy() for _, fc in fc_layers(net)]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net(x).sum().backward()
    opt.step()
    net(x)
    after = [shared_bias(fc)[0] for _, fc in fc_layers(net)]
    assert all(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    # export: the bias's indices are those of the model's shared bias
    for _, fc in fc_layers(net):
        _, _, bias_idx = layer_codes(fc)
        cb, _ = codebook_of(fc)
        np.testing.assert_array_equal(cb[bias_idx], shared_bias(fc)[0])


def test_compare_on_lenet5_gives_per_layer_density_beside_the_paper(capsys, tmp_path, cache):
    rc, o = prune(capsys, "compare", *SMALL, "--model", "lenet5", "--cache-dir", cache, "--out", str(tmp_path),
                  "--methods", "iterative (global),AMC", "--steps", "1", "--ft-epochs", "1", "--final-epochs", "0",
                  "--amc-episodes", "4", "--amc-warmup", "2", "--sparsity", "0.9", "--json")
    assert rc == 0, o.err
    rep = json.loads(o.out)
    assert rep["paper_density"] == {"conv1": 0.66, "conv2": 0.12, "fc1": 0.08, "fc2": 0.19}
    for t in rep["table"]:
        assert set(t["density"]) == {"conv1", "conv2", "fc1", "fc2"}
        total = sum(t["density"][n] * w for n, w in (("conv1", 500), ("conv2", 25000), ("fc1", 400000),
                                                     ("fc2", 5000)))
        assert total / 430500 == pytest.approx(t["kept"], abs=1e-9)
        assert t["kept"] <= 0.1 + 1e-9                                     # matched: at most 10 % of the weights


@pytest.mark.parametrize("argv,needle", [
    (["--subset", "5"], "--subset"),
    (["--model", "lenet5", "--dataset", "digits"], "12x12"),
    (["--weight-decay", "-1"], "--weight-decay"),
])
def test_bad_options_are_one_line(capsys, tmp_path, cache, argv, needle):
    base = ["--dataset", "mnist", "--seeds", "0", "--quiet", "--epochs", "1", "--cache-dir", cache,
            "--out", str(tmp_path)]
    rc, o = prune(capsys, "magnitude", *base, *argv)
    assert rc == 2
    assert needle in o.err and len(o.err.strip().splitlines()) == 1 and "Traceback" not in o.err


def test_corrupt_packaged_csv_is_one_line_naming_it(capsys, tmp_path, monkeypatch):
    d = tmp_path / "data"
    d.mkdir()
    (d / "mnist_train.csv").write_text("label," + ",".join(["p"] * 784) + "\n5," + ",".join(["0"] * 700) + "\n")
    (d / "mnist_test.csv").write_text("label," + ",".join(["p"] * 784) + "\n")
    monkeypatch.setattr(data_mod, "mnist_package_dir", lambda: d)
    rc, o = prune(capsys, "magnitude", "--dataset", "mnist", "--quiet", "--cache-dir", str(tmp_path / "c"),
                  "--out", str(tmp_path / "o"))
    assert rc == 2
    assert str(d / "mnist_train.csv") in o.err and len(o.err.strip().splitlines()) == 1
    (d / "mnist_train.csv").unlink()
    rc, o = prune(capsys, "magnitude", "--dataset", "mnist", "--quiet", "--cache-dir", str(tmp_path / "c"),
                  "--out", str(tmp_path / "o"))
    assert rc == 2 and "mnist_train.csv: missing" in o.err and len(o.err.strip().splitlines()) == 1


def test_presets_name_real_options_and_apply(tmp_path):
    """Every preset of the papers' networks names an option of its method (a typo would be
    silently ignored otherwise), and a preset gives way to an option on the command line."""
    from eie.cli import build_parser
    from eie.pruning.cli import _network, _resolve_defaults
    from eie.pruning.registry import COMPARE_OPTIONS, PRESETS

    common = {"epochs", "lr", "batch_size", "lr_schedule", "layers", "optimizer", "weight_decay", "shift"}
    every = {o.name for m in METHODS.values() for o in m.options} | {o.name for o in COMPARE_OPTIONS}
    compare = {o.name for o in COMPARE_OPTIONS} | {o.name for m in METHODS.values() for o in m.compare_options}
    for model, table in PRESETS.items():
        for key, opts in table.items():
            names = (common | every if key == "*" else
                     compare if key == "compare" else {o.name for o in METHODS[key].options})
            assert set(opts) <= names, (model, key, set(opts) - names)
    parse = build_parser().parse_args
    args = parse(["prune", "iterative", "--dataset", "mnist", "--final-epochs", "3"])
    _network(args)
    _resolve_defaults(args, METHODS["iterative"].options, "iterative")
    assert args.model == "lenet300" and args.bias is True
    assert args.final_epochs == 3                                           # given: kept
    assert args.ft_epochs == PRESETS["lenet300"]["*"]["ft_epochs"]          # not given: the preset
    assert args.shift == 1
    args = parse(["prune", "iterative"])
    _network(args)
    _resolve_defaults(args, METHODS["iterative"].options, "iterative")
    assert (args.model, args.bias, args.ft_epochs, args.epochs) == ("mlp", False, 60, 60)   # digits: unchanged
    assert args.shift == 0


def test_help_states_the_presets_that_run():
    """The help of every common option with a preset names each paper network's value as
    PRESETS holds it (the help once said 20 dense epochs for LeNet-300-100 while 30 ran)."""
    from eie.cli import build_parser
    from eie.pruning.registry import PAPER_MODELS, preset

    parser = build_parser()
    prune = next(a for a in parser._subparsers._group_actions[0].choices["prune"]._actions
                 if a.dest == "prune_method").choices["iterative"]
    helps = {a.dest: " ".join(a.help.split()) for a in prune._actions if a.help}
    checked = 0
    for name in ("epochs", "lr", "batch_size", "optimizer", "weight_decay", "lr_schedule", "shift"):
        for model in PAPER_MODELS:
            value = preset(model, None, name)
            if value is not None:
                assert model in helps[name] and str(value) in helps[name], (name, model, helps[name])
                checked += 1
    assert checked >= 13
