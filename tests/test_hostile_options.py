"""Hostile option values for the commands that train, build or simulate (issue 16).

Every numeric option of `eie prune ...`, `eie sim`, `eie regress` and `eie demo` has a
range checked when the command line is parsed, so a bad value is one line naming the
option and what was expected, exit status 2, before any training, build or simulation;
options that only make sense together, and report directories, are checked right after,
still before the work. A seeded fuzz throws random values at the same options.
"""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from eie.cli import build_parser, main
from eie.cli_inputs import SEED_MAX, check_output_dir
from eie.common import UserError, output_dir_problem

from .test_hostile_input import assert_clean_failure, eie

OPTION_FUZZ = settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])


def rejected_when_parsed(capsys, argv) -> str:
    """The one error line of a command line the parser refuses (exit 2; a command that
    started would return a status instead of raising SystemExit)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- one named case per kind of bad value -------------------------------------------------------
BAD_VALUES = [
    # (command line, option, what the message says was expected)
    (["prune", "magnitude", "--sparsity", "1"], "--sparsity", "a number in [0, 1)"),
    (["prune", "magnitude", "--sparsity", "nan"], "--sparsity", "a number in [0, 1)"),
    (["prune", "magnitude", "--sweep", "0.5,1.5"], "--sweep", "a number in [0, 1)"),
    (["prune", "sensitivity", "--ratios", "x"], "--ratios", "a number in [0, 1)"),
    (["prune", "sensitivity", "--threshold", "-0.1"], "--threshold", "a number in [0, 1]"),
    (["prune", "iterative", "--steps", "0"], "--steps", "an integer in 1..1000"),
    (["prune", "iterative", "--epochs", "0"], "--epochs", "an integer in 1..10000"),
    (["prune", "iterative", "--final-epochs", "-1"], "--final-epochs", "an integer in 0..10000"),
    (["prune", "magnitude", "--ft-epochs", "1e3"], "--ft-epochs", "an integer in 0..10000"),
    (["prune", "magnitude", "--lr", "inf"], "--lr", "a number in (0, 10]"),
    (["prune", "magnitude", "--lr", "0"], "--lr", "a number in (0, 10]"),
    (["prune", "magnitude", "--lr-scale", "1.5"], "--lr-scale", "a number in (0, 1]"),
    (["prune", "share", "--centroid-lr=-1e-4"], "--centroid-lr", "a number in (0, 10]"),
    (["prune", "magnitude", "--batch-size", "0"], "--batch-size", "an integer in 1..1048576"),
    (["prune", "magnitude", "--weight-decay", "-0.1"], "--weight-decay", "a number in [0, 1]"),
    (["prune", "magnitude", "--n-pe", 10 ** 30], "--n-pe", "an integer in 1..4096"),
    (["prune", "magnitude", "--acc-depth", "0"], "--acc-depth", "an integer in 1..65536"),
    (["prune", "magnitude", "--calib", "0"], "--calib", "an integer in 1..10000000"),
    (["prune", "magnitude", "--subset", "9"], "--subset", "an integer in 10..10000000"),
    (["prune", "magnitude", "--seeds", f"0,{SEED_MAX + 1}"], "--seeds", "an integer in 0..4294967295"),
    (["prune", "magnitude", "--seeds", ","], "--seeds", "1 to 100 comma-separated values"),
    (["prune", "magnitude", "--seeds", ",".join(["1"] * 101)], "--seeds", "1 to 100 comma-separated values"),
    (["prune", "regularize", "--lam", "-1"], "--lam", "a number in [0, 1000]"),
    (["prune", "slimming", "--kept", "1"], "--kept", "a number in [0, 1)"),
    (["prune", "lottery", "--rate", "0"], "--rate", "a number in (0, 1)"),
    (["prune", "lottery", "--rounds", "0"], "--rounds", "an integer in 1..1000"),
    (["prune", "lottery", "--modes", "reset,reset"], "--modes", "a comma-separated subset of reset,rewind,random"),
    (["prune", "netadapt", "--delta-decay", "0"], "--delta-decay", "a number in (0, 1]"),
    (["prune", "netadapt", "--budget", "-0.3"], "--budget", "a number in (0, 1e+15]"),
    (["prune", "amc", "--a-max", "0.5,1"], "--a-max", "a number in (0, 1)"),
    (["prune", "amc", "--episodes", "0"], "--episodes", "an integer in 1..1000000"),
    (["prune", "amc", "--val-samples", "-1"], "--val-samples", "an integer in 0..10000000"),
    (["prune", "compare", "--workers", "0"], "--workers", "an integer in 1..4096"),
    (["prune", "compare", "--amc-episodes", "0"], "--amc-episodes", "an integer in 1..1000000"),
    (["prune", "compare", "--lottery-rate", "1"], "--lottery-rate", "a number in (0, 1)"),
    (["sim", "--n-pe", "257"], "--n-pe", "an integer in 1..256"),
    (["sim", "--fifo-depth", "0"], "--fifo-depth", "an integer in 1..65536"),
    (["sim", "--acc-bits", "15"], "--acc-bits", "an integer in 16..48"),
    (["regress", "--cases", "0"], "--cases", "an integer in 1..10000000"),
    (["regress", "--seed", "-1"], "--seed", "an integer in 0..4294967295"),
    (["regress", "--chunk", "0"], "--chunk", "an integer in 1..10000000"),
    (["regress", "--builds", "4x8,0x8"], "--builds", "with N in 1..256 and D in 1..65536, got '0x8'"),
    (["regress", "--builds", "4x8,4x0"], "--builds", "with N in 1..256 and D in 1..65536, got '4x0'"),
    (["regress", "--builds", "4by8"], "--builds", "each NxD (PEs x queue depth, e.g. 4x8)"),
    (["regress", "--workers", "-2"], "--workers", "an integer in 1..4096"),
    (["demo", "--n-pe", 10 ** 30], "--n-pe", "an integer in 1..256"),
    (["demo", "--n-pe", "0"], "--n-pe", "an integer in 1..256"),
    (["demo", "--seed", SEED_MAX + 1], "--seed", "an integer in 0..4294967295"),
    (["demo", "--rtl-samples", "0"], "--rtl-samples", "an integer in 1..100000"),
]


@pytest.mark.parametrize("argv, option, expected", BAD_VALUES, ids=[" ".join(map(str, c[0]))[:60] for c in BAD_VALUES])
def test_bad_option_value_is_one_line_before_the_work(capsys, argv, option, expected):
    line = rejected_when_parsed(capsys, argv)
    command = " ".join(a for a in argv[:2] if not a.startswith("-"))
    assert line.startswith(f"eie {command}: error: argument {option}: expected "), line
    assert expected in line, line


# -- options that only make sense together, and output directories ------------------------------
def _must_not_run(*a, **k):
    raise AssertionError("the work started before the options were checked")


@pytest.fixture
def no_pruning_work(monkeypatch):
    """Training of any kind fails the test: the checks must come first."""
    from eie.pruning import runner

    monkeypatch.setattr(runner, "run_method", _must_not_run)
    monkeypatch.setattr(runner, "run_compare", _must_not_run)


@pytest.fixture
def no_work(no_pruning_work, monkeypatch):
    """Nor a simulator build, a regression job, the demo, the benchmarks or an FPGA build."""
    import eie.bench
    import eie.demo
    import eie.fpga
    import eie.sim.cli
    import eie.sim.runner

    for module, name in ((eie.sim.cli, "run_jobs"), (eie.sim.runner, "build"), (eie.demo, "run_demo"),
                         (eie.bench, "run_bench"), (eie.fpga, "run_fpga")):
        monkeypatch.setattr(module, name, _must_not_run)


@pytest.mark.parametrize("extra, match", [
    (["--modes", "reset", "--export", "random"], r"export 'random': not among the modes run \(reset\)"),
    (["--rate", "0.5", "--output-rate-factor", "3"], r"output_rate_factor \* rate must be in \[0, 1\]"),
    (["--modes", "random"], "random re-init needs the 'rewind' trajectory for its masks"),
])
def test_lottery_options_that_contradict_each_other(capsys, tmp_path, no_pruning_work, extra, match):
    rc, _, err = eie(capsys, "prune", "lottery", "--out", tmp_path / "o", "--no-cache", *extra)
    assert_clean_failure(rc, err, "prune lottery")
    assert re.search(match, err), err
    assert not (tmp_path / "o").exists()


def test_regress_seeds_past_the_seed_range(capsys, no_work):
    rc, _, err = eie(capsys, "regress", "--seed", SEED_MAX, "--cases", 2)
    assert_clean_failure(rc, err, "regress")
    assert "the last case's seed would be 4,294,967,296; expected at most 4,294,967,295" in err


@pytest.mark.parametrize("argv, option", [
    (["prune", "magnitude", "--out", "{missing}"], "--out"),
    (["prune", "compare", "--cache-dir", "{missing}"], "--cache-dir"),
    (["regress", "--failures", "{missing}"], "--failures"),
    (["sim", "--waves", "{missing}.vcd"], "--waves"),
    (["bench", "--out", "{missing}"], "--out"),
    (["demo", "--out", "{missing}"], "--out"),
    (["fpga", "--board", "icebreaker", "--out", "{missing}"], "--out"),
    (["fpga", "--board", "icebreaker", "--build-dir", "{missing}"], "--build-dir"),
])
def test_report_directory_under_a_missing_parent(capsys, tmp_path, no_work, argv, option):
    """A user-named output directory is created, but not its parents: a missing parent is a
    mistyped path, named in one line before the work."""
    missing = tmp_path / "no" / "such"
    argv = [a.replace("{missing}", str(missing)) for a in argv]
    rc, _, err = eie(capsys, *argv)
    assert_clean_failure(rc, err, " ".join(argv[:2]) if argv[0] == "prune" else argv[0])
    assert f"{option} {missing}" in err and f"directory {tmp_path / 'no'} does not exist (create it first)" in err
    assert list(tmp_path.iterdir()) == []


def test_output_dir_rule(tmp_path):
    """The rule behind those: existing directories and new ones in an existing directory
    are fine; the option's default may create its parents (reports/, build/)."""
    (tmp_path / "file").write_bytes(b"")
    assert output_dir_problem(tmp_path, create_parents=False) is None
    assert output_dir_problem(tmp_path / "new", create_parents=False) is None
    assert "does not exist" in output_dir_problem(tmp_path / "a" / "b", create_parents=False)
    assert output_dir_problem(tmp_path / "a" / "b", create_parents=True) is None
    assert output_dir_problem(tmp_path / "file", create_parents=True) == "is not a directory"
    assert output_dir_problem(tmp_path / "file" / "a" / "b", create_parents=True) == f"{tmp_path / 'file'} is not a directory"
    default = tmp_path / "reports" / "x"
    check_output_dir(default, "--out", default)
    with pytest.raises(UserError, match=r"^--out .*/reports/x: directory .*/reports does not exist"):
        check_output_dir(default, "--out", tmp_path / "reports" / "y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]   # checks create nothing


# -- fuzz: random values for the same options -------------------------------------------------
HOSTILE = st.one_of(
    st.integers(-3, 300).map(str), st.integers(-(2 ** 70), 2 ** 70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.floats(-2, 2).map(str),
    st.sampled_from(["", "x", "1e400", "-0", "0x10", "1_0", " 4", "٣", "0.5,0.6", "9" * 50]))


def _ints(lo, hi):
    return st.integers(lo, hi).map(str)


def _command_line(data, head, valid: dict) -> tuple[list, str | None]:
    """`head` + every option of `valid` ({option: strategy of good values}), one of them
    (or none) replaced by a hostile value; returns the arguments and the option replaced."""
    names = list(valid)
    hit = data.draw(st.sampled_from([None, *names]), label="hostile option")
    argv = list(head)
    for o in names:
        argv += [o, data.draw(HOSTILE if o == hit else valid[o], label=o)]
    return argv, hit


def _fuzzed(capsys, data, head, valid: dict):
    """(namespace, argv) of a command line from `_command_line`, the namespace None if it
    was refused, after checking the error: one line naming the hostile option (only that
    one can be wrong)."""
    argv, hit = _command_line(data, head, valid)
    try:
        return build_parser().parse_args(argv), argv
    except SystemExit as e:
        err = capsys.readouterr().err
        assert e.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert hit is not None and f"argument {hit}: expected " in err, err
        event(f"{head[-1]} rejected")
        return None, argv


PRUNE = {"--sparsity": st.floats(0, 1, exclude_max=True).map(repr), "--lr": st.floats(1e-6, 10).map(repr),
         "--epochs": _ints(1, 10_000), "--n-pe": _ints(1, 4096),
         "--seeds": st.lists(st.integers(0, SEED_MAX), min_size=1, max_size=4).map(lambda v: ",".join(map(str, v)))}


@OPTION_FUZZ
@given(data=st.data())
def test_fuzz_prune_options(capsys, data):
    a, argv = _fuzzed(capsys, data, ["prune", "iterative"], PRUNE)
    if a is not None:
        event("accepted")
        assert 0 <= a.sparsity < 1 and 0 < a.lr <= 10 and math.isfinite(a.lr)
        assert 1 <= a.epochs <= 10_000 and 1 <= a.n_pe <= 4096 and all(0 <= s <= SEED_MAX for s in a.seeds)
        given_values = dict(zip(argv[2::2], argv[3::2]))
        assert a.sparsity == float(given_values["--sparsity"]) and a.n_pe == int(given_values["--n-pe"])


REGRESS = {"--cases": _ints(1, 10 ** 7), "--seed": _ints(0, SEED_MAX), "--chunk": _ints(1, 10 ** 7),
           "--workers": _ints(1, 4096),
           "--builds": st.lists(st.tuples(st.integers(1, 256), st.integers(1, 1 << 16)), min_size=1, max_size=3)
                         .map(lambda b: ",".join(f"{n}x{d}" for n, d in b))}


@OPTION_FUZZ
@given(data=st.data())
def test_fuzz_regress_options(capsys, data):
    a, _ = _fuzzed(capsys, data, ["regress"], REGRESS)
    if a is not None:
        event("accepted")
        assert 1 <= a.cases <= 10 ** 7 and 0 <= a.seed <= SEED_MAX and 1 <= a.chunk and 1 <= a.workers <= 4096
        assert a.builds and all(1 <= n <= 256 and 1 <= d <= 1 << 16 for n, d in a.builds)


SIM = {"--n-pe": _ints(1, 256), "--fifo-depth": _ints(1, 1 << 16), "--acc-bits": _ints(16, 48)}
DEMO = {"--n-pe": _ints(1, 256), "--seed": _ints(0, SEED_MAX), "--rtl-samples": _ints(1, 100_000)}


@OPTION_FUZZ
@given(data=st.data())
def test_fuzz_demo_and_sim_options(capsys, data):
    a, _ = _fuzzed(capsys, data, ["demo"], DEMO)
    if a is not None:
        event("demo accepted")
        assert 1 <= a.n_pe <= 256 and 0 <= a.seed <= SEED_MAX and 1 <= a.rtl_samples <= 100_000
    a, _ = _fuzzed(capsys, data, ["sim"], SIM)
    if a is not None:
        event("sim accepted")
        assert 1 <= a.n_pe <= 256 and 1 <= a.fifo_depth <= 1 << 16 and 16 <= a.acc_bits <= 48


def test_list_option_defaults_are_parsed_like_given_values():
    """A default written as text (--sweep, --ratios) reaches the method as the list its
    type makes of it, as when the option is given (it once arrived as a string)."""
    from eie.pruning import cli as prune_cli
    from eie.pruning.registry import METHODS

    for method, name in (("magnitude", "sweep"), ("sensitivity", "ratios"), ("regularize", "sweep")):
        args = build_parser().parse_args(["prune", method])
        prune_cli._network(args)
        prune_cli._resolve_defaults(args, METHODS[method].options, method)
        default = next(o.default for o in METHODS[method].options if o.name == name)
        assert getattr(args, name) == [float(v) for v in default.split(",")], (method, name)
