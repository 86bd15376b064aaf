"""EIE reference implementation: golden model, RTL, verification and pruning.

The folders `golden_model/`, `hdl/`, `pruning/` and `sim/` are installed as the
subpackages `eie.golden_model`, `eie.hdl`, `eie.pruning` and `eie.sim`.
"""

__version__ = "0.1.0"
