"""Reading the FPGA tools' results (Yosys' `stat -json` and log, nextpnr's `--report`) and
the headline figures of a build report."""

from __future__ import annotations

import re

__all__ = ["synth_counts", "memory_mapping", "fmax", "pnr_counts", "summary_row"]

_BRAM_CELLS = ("SB_RAM40_4K", "DP16KD", "PDPW16KD")
_DSP_CELLS = ("SB_MAC16", "MULT18X18D", "ALU54B")


def synth_counts(stat: dict) -> dict:
    """Device cells from `stat -json` of the synthesised (flat) top."""
    design = stat.get("design") or next(iter(stat["modules"].values()))
    t = {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}
    ff = sum(v for k, v in t.items() if k.startswith("SB_DFF") or k == "TRELLIS_FF")
    carry = t.get("SB_CARRY", 0) + t.get("CCU2C", 0)
    lutram = t.get("TRELLIS_DPR16X4", 0)
    lut4 = t.get("SB_LUT4", 0) + t.get("LUT4", 0)
    # LUT4 equivalents: a CCU2C is two LUT4s, a DPR16X4 takes a slice's two LUT4s and a
    # third for its write port; an SB_CARRY shares its LC with a LUT4.
    lut_equiv = lut4 + 2 * t.get("CCU2C", 0) + 3 * lutram
    return {
        "lut4": lut4, "lut4_equivalent": lut_equiv, "carry": carry, "ff": ff,
        "bram": sum(t.get(c, 0) for c in _BRAM_CELLS), "dsp": sum(t.get(c, 0) for c in _DSP_CELLS),
        "lutram": lutram, "spram": t.get("SB_SPRAM256KA", 0),
        "cells_by_type": dict(sorted(t.items())),
    }


_MAP_RE = re.compile(r"mapping memory (\S+) via \$__(\w+?)_?$")
_FF_RE = re.compile(r"using FF mapping for memory (\S+)")


def memory_mapping(log_text: str) -> dict:
    """memory -> "block RAM (cell)" | "distributed RAM (cell)" | "logic (flip-flops)" from Yosys' log."""
    out = {}
    for line in log_text.splitlines():
        m = _MAP_RE.search(line)
        if m:
            cell = m.group(2).rstrip("_")
            kind = "distributed RAM" if "DPR16X4" in cell else "block RAM"
            out[m.group(1).removeprefix("top.")] = f"{kind} ({cell})"
            continue
        m = _FF_RE.search(line)
        if m:
            out[m.group(1).removeprefix("top.")] = "logic (flip-flops)"
    return dict(sorted(out.items()))


def fmax(report: dict) -> tuple[float | None, float | None]:
    """(achieved, constraint) MHz of the design's clock in nextpnr's --report."""
    clocks = report.get("fmax") or {}
    if not clocks:
        return None, None
    key = min(clocks, key=lambda k: clocks[k].get("achieved", float("inf")))
    return clocks[key].get("achieved"), clocks[key].get("constraint")


_PNR_KEYS = {  # nextpnr utilisation key -> report key
    "ICESTORM_LC": "lc", "ICESTORM_RAM": "bram", "ICESTORM_DSP": "dsp", "ICESTORM_SPRAM": "spram",
    "TRELLIS_COMB": "lut", "TRELLIS_FF": "ff", "DP16KD": "bram", "MULT18X18D": "dsp", "TRELLIS_RAMW": "lutram_w",
}


def pnr_counts(report: dict) -> dict:
    util = report.get("utilization", {})
    out = {}
    for key, name in _PNR_KEYS.items():
        if key in util:
            out[name] = {"used": int(util[key]["used"]), "available": int(util[key]["available"])}
    return out


def summary_row(res: dict) -> dict:
    """The headline figures of one build (for tables and the closing note)."""
    p = res.get("pnr", {})
    u = p.get("utilisation", {})
    s = res.get("synthesis", {})

    def used(key, fallback=None):
        return u[key]["used"] if key in u else fallback

    return {
        "board": res["board"], "n_pe": res["n_pe"],
        "lut_or_lc": used("lc", used("lut", s.get("lut4_equivalent", s.get("lut4")))),
        "lut_available": (u.get("lc") or u.get("lut") or {}).get("available"),
        "ff": used("ff", s.get("ff")),
        "bram": used("bram", s.get("bram")), "dsp": used("dsp", s.get("dsp")),
        "fmax_mhz": p.get("fmax_mhz"), "fits": res.get("fits"),
        "seconds": res.get("seconds", {}).get("total"),
    }
