"""The demo and the benchmark run and produce their documented outputs (not timed)."""

import json

import numpy as np
import pytest

from eie.bench import golden_bench
from eie.demo import run_demo
from eie.golden_model.image_file import load_image

BENCH_KEYS = {"layer", "shape", "n_pe", "useful_macs", "golden_useful_macs_per_s", "golden_vs_dense_numpy",
              "golden_vs_scipy_sparse", "cycle_model_cycles_per_s", "fc8_cycles_depth8", "busiest_pe_entries",
              "balanced_bound", "fc8_depth_sweep"}


def test_demo_writes_its_report(tmp_path):
    summary = run_demo(out_dir=tmp_path, n_pe=4, seed=3, progress=False)
    assert summary["within_bound"]
    on_disk = json.loads((tmp_path / "demo.json").read_text())
    assert len(on_disk["per_pe"]) == 4
    assert on_disk["cycle_report"]["cycles"] >= on_disk["cycle_report"]["busiest_pe_entries"]
    assert (tmp_path / "per_pe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_image(tmp_path / "demo.eie").n_pe == 4


def test_bench_json_keys_on_fc8(fc8_dir):
    res = golden_bench(fc8_dir=fc8_dir, repeat=1, progress=False)
    assert BENCH_KEYS <= set(res)
    json.dumps(res)  # serialisable
    depths = [r["fifo_depth"] for r in res["fc8_depth_sweep"]]
    cycles = [r["cycles"] for r in res["fc8_depth_sweep"]]
    assert depths == sorted(depths) and cycles == sorted(cycles, reverse=True)
    assert res["golden_useful_macs_per_s"] > 0 and res["fc8_cycles_depth8"] >= res["busiest_pe_entries"]
