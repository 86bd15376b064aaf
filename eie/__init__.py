"""EIE reference implementation: golden model, RTL, verification and pruning.

The folders `golden_model/`, `hdl/`, `pruning/` and `sim/` are installed as the
subpackages `eie.golden_model`, `eie.hdl`, `eie.pruning` and `eie.sim`.

The API for a user's own model (docs/api.md), loaded on first use so that `import eie`
(and the command line) stays light: `eie.compile`, `eie.run`, `eie.simulate`,
`eie.compare`, `eie.import_model`, `eie.save`, `eie.load`.
"""

__version__ = "0.1.0"

_API = ("import_model", "compile", "run", "compare", "simulate", "save", "load")


def __getattr__(name):
    if name in _API:
        from eie import api

        return getattr(api, name)
    raise AttributeError(f"module 'eie' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
