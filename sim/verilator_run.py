"""A faster path for long runs: the same Verilog compiled by Verilator with a C++ harness.

cocotb 2.x needs a newer Verilator than Debian's 5.006, so this is not a cocotb
testbench: the C++ harness (sim/verilator/harness.cpp) replays the host-bus operations
of docs/host-interface.md from a file, and Python compares the read-back words and the
CYCLES register with the golden and cycle models exactly as the scoreboard does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eie.golden_model.model import run_image
from eie.hdl import host_map as hm
from eie.hdl.loader import image_writes, input_writes, output_reads, start_writes
from eie.hdl.params import ArrayParams
from eie.hdl.synth import ToolMissing
from eie.hdl.verilog_out import DEFAULT_TOP, generate_verilog

__all__ = ["VerilatorRun", "build_verilator", "run_verilator"]

HARNESS = Path(__file__).parent / "verilator" / "harness.cpp"
ROOT = Path("build/verilator")


@dataclass
class VerilatorRun:
    outputs: np.ndarray
    cycles_per_sample: list
    expected_cycles: list
    bit_exact: bool
    cycle_exact: bool
    clock_cycles: int
    seconds: float
    build_seconds: float

    @property
    def cycles_per_second(self) -> float:
        return self.clock_cycles / self.seconds if self.seconds else 0.0


def build_verilator(params: ArrayParams, root: Path = ROOT) -> tuple[Path, float]:
    """Compile the array + harness once per parameter set; returns (executable, seconds)."""
    exe = shutil.which("verilator")
    if exe is None:
        raise ToolMissing("Verilator not found: `apt-get install -y verilator`")
    key = hashlib.sha1(json.dumps(params.as_dict(), sort_keys=True).encode()).hexdigest()[:10]
    d = (Path(root) / f"n{params.n_pe}_d{params.fifo_depth}_{key}").resolve()
    d.mkdir(parents=True, exist_ok=True)
    text, _ = generate_verilog(params)
    v = d / "eie.v"
    binary = d / "obj" / "Veie_array"
    # the binary is current only if it was built from this Verilog and this harness
    stamp = d / "built.sha1"
    cflags = f"-O1 -DEIE_READ_LATENCY={hm.READ_LATENCY}"     # the harness waits for the bus's answer
    digest = hashlib.sha1(text.encode() + HARNESS.read_bytes() + cflags.encode()).hexdigest()
    if not binary.exists() or not stamp.exists() or stamp.read_text() != digest:
        stamp.unlink(missing_ok=True)
        v.write_text(text)
        t0 = time.perf_counter()
        cmd = [exe, "--cc", "--exe", "--build", "-O2", "-Wno-fatal", "-Wno-lint", "-Wno-style",
               "--top-module", DEFAULT_TOP, "--Mdir", str(d / "obj"), "-o", "Veie_array",
               "-CFLAGS", cflags, str(v), str(HARNESS.resolve())]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError("Verilator build failed:\n" + "\n".join((proc.stdout + proc.stderr).splitlines()[-20:]))
        stamp.write_text(digest)
        return binary, time.perf_counter() - t0
    return binary, 0.0


def run_verilator(image, a_int, params: ArrayParams, root: Path = ROOT) -> VerilatorRun:
    """Load `image`, run every row of `a_int`, compare with the golden and cycle models."""
    a_int = np.atleast_2d(np.asarray(a_int, dtype=np.int64))
    binary, build_s = build_verilator(params, root)
    n_out = image.layers[-1].n_out
    lines = [f"W {a} {d}" for a, d in image_writes(image, params)]
    for a in a_int:
        lines += [f"W {a_} {d}" for a_, d in input_writes(a, params.n_pe) + start_writes()]
        lines.append("S")
        lines.append(f"R {hm.address(hm.Region.CTRL, hm.Ctrl.CYCLES)}")
        lines += [f"R {addr}" for addr in output_reads(n_out, params.n_pe, image.layers[-1].row_perm)]  # logical order
    with tempfile.TemporaryDirectory(prefix="run_", dir=binary.parent.parent) as work:   # runs may overlap
        ops, res = Path(work) / "ops.txt", Path(work) / "result.txt"
        ops.write_text("\n".join(lines) + "\n")
        t0 = time.perf_counter()
        proc = subprocess.run([str(binary), str(ops), str(res)], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"Verilator harness failed ({proc.returncode}): {proc.stderr[-500:]}")
        reads = [line.split() for line in res.read_text().splitlines()]
    total = int(reads[-1][1])
    words = [int(r[1]) for r in reads if r[0] == "R"]
    per = 1 + n_out
    cycles, outs = [], []
    for s in range(len(a_int)):
        chunk = words[s * per:(s + 1) * per]
        cycles.append(chunk[0])
        outs.append([w - (1 << 64) if w >> 63 else w for w in chunk[1:]])
    gold = run_image(image, a_int, params.to_config(), int_input=True)
    outputs = np.array(outs, dtype=np.int64)
    return VerilatorRun(outputs, cycles, gold.report.cycles_per_sample,
                        bool((outputs == gold.outputs_int).all()), cycles == gold.report.cycles_per_sample,
                        total, seconds, build_s)
