"""What every layer of the project needs, in one place: the user-error type, atomic
writes and JSON files, finding external tools, build-cache keys and table printing.

Only the standard library is imported here (rich when a table is printed), so that the
CLI can import this before any heavy dependency and the golden model stays light.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["UserError", "EXISTS", "output_problem", "output_dir_problem", "require_output", "atomic_write_bytes",
           "write_json", "json_text", "emit_json", "find_tool", "cache_key", "print_table"]


class UserError(Exception):
    """A problem with the command's arguments or files; printed as one line, exit status 2."""


EXISTS = "exists; refusing to overwrite it"   # the CLI's check_output adds its own way to replace it


# -- files ---------------------------------------------------------------------------------
def _parent_problem(parent: Path) -> tuple[type[OSError], str] | None:
    """Why files cannot be created in the existing-or-not directory `parent` (None: they can)."""
    if not parent.exists():
        # a component that is a regular file is reported as such, not as "File exists"
        for p in [parent, *parent.parents]:
            if p.exists() and not p.is_dir():
                return NotADirectoryError, f"{p} is not a directory"
        return FileNotFoundError, f"directory {parent} does not exist (create it first)"
    if not parent.is_dir():
        return NotADirectoryError, f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return PermissionError, f"directory {parent} is not writable"
    return None


def _output_check(path: Path, overwrite: bool) -> tuple[type[OSError], str] | None:
    if path.is_dir():
        return IsADirectoryError, "is a directory; expected a file name"
    problem = _parent_problem(path.parent)
    if problem:
        return problem
    if (path.exists() or path.is_symlink()) and not overwrite:
        return FileExistsError, EXISTS
    return None


def output_problem(path, overwrite: bool) -> str | None:
    """None if `path` can be written as a new file (or replaced, with `overwrite`), else why not.

    The parent directory must already exist: a missing one is a mistyped path more often
    than a wish, so it is never created (atomic_write_bytes applies the same rule).
    """
    problem = _output_check(Path(path), overwrite)
    return problem[1] if problem else None


def output_dir_problem(path, create_parents: bool) -> str | None:
    """None if `path` is a writable directory or can be made one, else why not.

    A report directory is the output itself, so it is created; its parent must exist
    unless `create_parents` (the project's own default locations such as reports/ and
    build/, made on first use).
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            return "is not a directory"
        return None if os.access(path, os.W_OK | os.X_OK) else "is not writable"
    if not create_parents:
        problem = _parent_problem(path.parent)
        return problem[1] if problem else None
    for p in path.parents:       # the nearest existing ancestor must take new directories
        if p.exists():
            problem = _parent_problem(p)
            return problem[1] if problem else None
    return None


def require_output(path, overwrite: bool) -> Path:
    """`path`, or the OSError output_problem describes (named by its subclass, e.g.
    FileNotFoundError for a missing parent directory)."""
    path = Path(path)
    problem = _output_check(path, overwrite)
    if problem:
        kind, what = problem
        raise kind(_ERRNO[kind], what, str(path))
    return path


def atomic_write_bytes(path, chunks, overwrite: bool = False) -> Path:
    """Write `chunks` to `path` via a temporary file and os.replace.

    Nothing is left half-written on an error or an interrupt; an existing file is kept
    unless `overwrite` is set. The parent directory must exist (output_problem's rule):
    a missing one is an OSError naming it, and functions that write a report tree make
    their directory first.
    """
    path = require_output(path, overwrite)
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


_ERRNO = {IsADirectoryError: errno.EISDIR, NotADirectoryError: errno.ENOTDIR, FileNotFoundError: errno.ENOENT,
          PermissionError: errno.EACCES, FileExistsError: errno.EEXIST}


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
