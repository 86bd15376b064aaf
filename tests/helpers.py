"""Small helpers shared by the tests."""

import ctypes
import os
import subprocess
import sys

import numpy as np

_PR_CAPBSET_DROP = 24
_FILE_MODE_CAPS = (1, 2, 3)   # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def sparse_matrix(rng, n_out, n_in, density, scale=0.5):
    W = rng.normal(0, scale, (n_out, n_in))
    return W * (rng.random((n_out, n_in)) < density)


def _drop_file_mode_caps():
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _FILE_MODE_CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def eie_bound_by_file_modes(args) -> subprocess.CompletedProcess:
    """`python -m eie.cli ARGS` in a child process that file modes bind even when the tests
    run as root (as CI does): before exec the child drops the capabilities that let root
    ignore them (Linux), so a read-only directory is read-only to it, as to any user."""
    return subprocess.run([sys.executable, "-m", "eie.cli", *map(str, args)], preexec_fn=_drop_file_mode_caps,
                          capture_output=True, text=True, timeout=120, env=os.environ | {"PYTHONWARNINGS": "ignore"})
