"""Verilog generation for the EIE array, plus a JSON sidecar naming its parameters and ports."""

from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib.wiring import In

from eie.common import atomic_write_bytes

from .eie import EIEArray
from .params import ArrayParams

__all__ = ["DEFAULT_TOP", "generate_verilog", "write_verilog"]

DEFAULT_TOP = "eie_array"


def generate_verilog(params: ArrayParams, top: str = DEFAULT_TOP) -> tuple[str, dict]:
    """(Verilog text, description) of one EIE array build."""
    dut = EIEArray(params)
    text = verilog.convert(dut, name=top, emit_src=False)
    ports = {"clk": {"dir": "in", "width": 1}, "rst": {"dir": "in", "width": 1}}
    for path, member, value in dut.signature.flatten(dut):
        ports["__".join(str(p) for p in path)] = {"dir": "in" if member.flow == In else "out", "width": len(value)}
    desc = {"top": top, "params": params.as_dict(), "ports": ports,
            "host_interface": "docs/host-interface.md"}
    return text, desc


def write_verilog(params: ArrayParams, out: Path, top: str = DEFAULT_TOP, overwrite: bool = False) -> dict:
    """Write `out` (.v) and `out` with suffix .json; returns the description."""
    out = Path(out)
    text, desc = generate_verilog(params, top)
    sidecar = out.with_suffix(".json")
    if not overwrite:
        for p in (out, sidecar):
            if p.exists():
                raise FileExistsError(f"{p} exists (`overwrite` is off)")
    out.parent.mkdir(parents=True, exist_ok=True)
    desc["verilog"] = str(out)
    desc["lines"] = text.count("\n")
    atomic_write_bytes(out, [text.encode()], overwrite=True)
    atomic_write_bytes(sidecar, [json.dumps(desc, indent=2).encode()], overwrite=True)
    return desc
