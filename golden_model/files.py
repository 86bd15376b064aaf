"""Reading user files safely: the one place that opens them.

Reading: only regular files are opened (a FIFO, /dev/zero or a directory would block or
never end), without blocking, and every OS error becomes an error naming the file.
Writing is eie.common.atomic_write_bytes (a temporary file beside the target, fsync,
os.replace), shared with every other layer.
"""

from __future__ import annotations

import os
import stat

from .errors import EIEError

__all__ = ["FileAccessError", "open_regular_file", "read_exact"]


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


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" or noun.startswith("EIE") else "a"
