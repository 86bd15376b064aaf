"""What every layer of the project needs, in one place: the user-error type, atomic
writes and JSON files, finding external tools, build-cache keys and table printing.

Only the standard library is imported here (rich when a table is printed), so that the
CLI can import this before any heavy dependency and the golden model stays light.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["UserError", "output_problem", "atomic_write_bytes", "write_json", "json_text", "emit_json",
           "find_tool", "cache_key", "print_table"]


class UserError(Exception):
    """A problem with the command's arguments or files; printed as one line, exit status 2."""


# -- files ---------------------------------------------------------------------------------
def output_problem(path, overwrite: bool) -> str | None:
    """None if `path` can be written as a new file (or replaced, with `overwrite`), else why not.

    Checked before any work starts; the parent directory must already exist.
    """
    path = Path(path)
    if path.is_dir():
        return "is a directory; expected a file name"
    parent = path.parent
    if not parent.exists():
        # a component that is a regular file is reported as such, not as "File exists"
        for p in [parent, *parent.parents]:
            if p.exists() and not p.is_dir():
                return f"{p} is not a directory"
        return f"directory {parent} does not exist (create it first)"
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable"
    if (path.exists() or path.is_symlink()) and not overwrite:
        return "exists; refusing to overwrite it (pass --force to replace it)"
    return None


def atomic_write_bytes(path, chunks, overwrite: bool = False) -> Path:
    """Write `chunks` to `path` via a temporary file and os.replace.

    Nothing is left half-written on an error or an interrupt; an existing file is kept
    unless `overwrite` is set. Missing parent directories are created (library callers
    writing report trees rely on it; the CLI refuses missing ones up front, output_problem).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory; expected a file name", str(path))
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it (pass --force to replace it)")
    for p in path.parents:
        if p.exists():
            if not p.is_dir():
                raise NotADirectoryError(20, f"{p} is not a directory", str(path))
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode open() would
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_default(o):
    """NumPy scalars and arrays (without importing NumPy) and paths."""
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):          # numpy.ndarray, numpy.integer, numpy.floating
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def json_text(obj) -> str:
    """The project's JSON layout (indent 2; NumPy values and paths as plain JSON)."""
    return json.dumps(obj, indent=2, default=_json_default)


def write_json(path, obj, overwrite: bool = True) -> Path:
    """`obj` as a JSON file, atomically (see atomic_write_bytes)."""
    return atomic_write_bytes(path, [json_text(obj).encode() + b"\n"], overwrite=overwrite)


def emit_json(obj) -> None:
    """`obj` as JSON on stdout (the commands' --json)."""
    sys.stdout.write(json_text(obj) + "\n")


# -- tools and build caches ----------------------------------------------------------------
def find_tool(tool: str) -> str | None:
    """Path of an external tool: the YoWASP build next to this Python, else `yowasp-TOOL`
    or `TOOL` on PATH; None when there is none."""
    here = Path(sys.executable).parent / f"yowasp-{tool}"
    for cand in (str(here) if here.exists() else None, shutil.which(f"yowasp-{tool}"), shutil.which(tool)):
        if cand:
            return cand
    return None


def cache_key(*parts, length: int = 12) -> str:
    """A short hash of JSON-able `parts`: the name of a cached build or model."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:length]


# -- tables --------------------------------------------------------------------------------
def _cell(v) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int) or type(v).__name__.startswith(("int", "uint")):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_table(title: str, columns, rows, left=("name", "layer", "key", "in→out", "seed", "method")) -> None:
    """A rich table on stdout: text columns (`left`) left-aligned, numbers right-aligned,
    integers with thousands separators. Piped output is not cut at 80 columns."""
    from rich.console import Console  # rich: deferred until a table is printed
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="left" if c in left else "right", no_wrap=True)
    for r in rows:
        t.add_row(*[_cell(v) for v in r])
    con = Console()
    if not con.is_terminal:
        con = Console(width=140)
    con.print(t)
