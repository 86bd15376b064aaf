"""Reading and writing user files safely: the one place that opens them.

Reading: only regular files are opened (a FIFO, /dev/zero or a directory would block or
never end), without blocking, and every OS error becomes an error naming the file.
Writing: a temporary file beside the target, fsync, os.replace; the temporary file is
removed on every exit path (exceptions, Ctrl-C, SIGTERM once the CLI turns it into an
exception), so nothing is ever half-written.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import EIEError

__all__ = ["FileAccessError", "open_regular_file", "read_exact", "atomic_write_bytes", "output_problem"]


class FileAccessError(EIEError):
    """A file cannot be opened or read (missing, not a regular file, no permission, I/O error)."""


def open_regular_file(path, what: str = "file"):
    """(binary file object, size in bytes) of `path`, which must be a readable regular file.

    Opened with O_NONBLOCK so that a named pipe is refused instead of waiting for a writer.
    """
    src = str(path)
    try:
        fd = os.open(src, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileAccessError(f"{src}: no such file") from None
    except IsADirectoryError:
        raise FileAccessError(f"{src}: is a directory, expected {_article(what)} {what}") from None
    except OSError as e:
        raise FileAccessError(f"{src}: cannot open: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileAccessError(f"{src}: is a directory, expected {_article(what)} {what}")
        if not stat.S_ISREG(st.st_mode):
            raise FileAccessError(f"{src}: not a regular file (a pipe, socket or device), expected {_article(what)} {what}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_exact(f, offset: int, n: int, src: str, where: str) -> bytearray:
    """Exactly n bytes at `offset` (the caller has checked them against the file size)."""
    buf = bytearray(n)
    try:
        f.seek(offset)
        view, got = memoryview(buf), 0
        while got < n:
            k = f.readinto(view[got:])
            if not k:
                raise FileAccessError(f"{src}: {where}: file ended after {offset + got} bytes "
                                      f"(it shrank while being read?)")
            got += k
    except OSError as e:
        raise FileAccessError(f"{src}: {where}: read error: {e.strerror or e}") from None
    return buf


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


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" or noun.startswith("EIE") else "a"
