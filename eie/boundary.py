"""The one boundary between a command and the user: every failure becomes one line.

A command's errors (the project's own, OS errors, running out of memory) print as
`eie <command>: error: <what>` with exit status 2; SIGINT, SIGTERM and a closed output
pipe print one line too and exit 128 + the signal number (130, 143, 141), the shell
convention. SIGTERM is turned into an exception so that `finally` blocks run and no
temporary file is left behind. Only the standard library is imported here: the
handlers are installed before NumPy, PyTorch or Amaranth load.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager

from eie.common import UserError

__all__ = ["UserError", "Terminated", "signal_handlers", "run_command", "report"]

EXIT_USAGE = 2
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM
EXIT_SIGPIPE = 128 + getattr(signal, "SIGPIPE", 13)


class Terminated(BaseException):
    """SIGTERM arrived (raised from the signal handler so that cleanup code runs)."""


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextmanager
def signal_handlers():
    """SIGTERM -> Terminated, SIGINT -> KeyboardInterrupt, for the duration of one command."""
    installed = {}
    try:
        for sig, handler in ((signal.SIGTERM, _raise_terminated), (signal.SIGINT, signal.default_int_handler)):
            installed[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave the handlers alone
        pass
    try:
        yield
    finally:
        for sig, old in installed.items():
            signal.signal(sig, old)


def report(command: str, message: str, kind: str = "error") -> None:
    """Print `eie <command>: <kind>: <message>` as exactly one line on stderr."""
    text = " | ".join(line.strip() for line in str(message).strip().splitlines() if line.strip())
    prog = f"eie {command}" if command else "eie"
    try:
        print(f"{prog}: {kind}: {text}" if kind else f"{prog}: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _os_error_text(e: OSError) -> str:
    if e.filename is None:
        return str(e)
    what = e.strerror or str(e)
    return f"{e.filename}: {what}"


def run_command(command: str, fn, wording=str) -> int:
    """fn() -> exit status, with every user-facing failure turned into one line; `wording`
    rewrites the project's own messages (the CLI shows library arguments as its options)."""
    from eie.golden_model.errors import EIEError  # NumPy: deferred, this module loads before the handlers

    try:
        return fn()
    except (UserError, EIEError) as e:
        report(command, wording(str(e)))
        return EXIT_USAGE
    except BrokenPipeError:
        _silence_stdout()
        report(command, "output pipe closed by the reader (SIGPIPE)", "stopped")
        return EXIT_SIGPIPE
    except OSError as e:
        report(command, _os_error_text(e))
        return EXIT_USAGE
    except MemoryError:
        report(command, "out of memory: the inputs or options need more memory than this machine has")
        return EXIT_USAGE
    except KeyboardInterrupt:
        report(command, "interrupted", "")
        return EXIT_SIGINT
    except Terminated:
        report(command, "terminated (SIGTERM)", "")
        return EXIT_SIGTERM
