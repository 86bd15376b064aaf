"""PyTorch models -> DenseChain: an nn.Module (traced with torch.fx), a TorchScript
module (its frozen graph), a state_dict, or a file holding any of them.

Weights are read as the model's forward pass would use them: a layer pruned with
`torch.nn.utils.prune` (weight_orig and weight_mask, before or after `prune.remove`) or
parametrised (`torch.nn.utils.parametrize`, as `torch.ao.pruning` sparsifiers attach their
masks) gives its masked weight, so its zeros are the pruning mask exactly.

State-dict rule (docs/api.md): the Linear layers are the `<prefix>.weight` (2-D) keys in
the dict's order, each with an optional `<prefix>.bias`; ReLU between them, none after the
last. Pruned keys (`weight_orig` + `weight_mask`) are multiplied out; any other key is
refused, naming it. Whole-model pickles run code when loaded: only with `trust_pickle`.
"""

from __future__ import annotations

import operator
import pickle
import warnings
import zipfile
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils import parametrize, prune

from eie.golden_model.errors import InputError

from .dense_chain import ChainBuilder, DenseChain, open_model_file

__all__ = ["SUPPORTED", "from_module", "from_state_dict", "load_torch"]

SUPPORTED = ("EIE imports a chain of Linear layers (with or without bias) with ReLU between them "
             "(Flatten, Dropout and Identity are ignored)")
_IGNORED_MODULES = (nn.Flatten, nn.Dropout, nn.Identity)
_RELU = (F.relu, torch.relu, torch.relu_)
_OPERATOR_WORDS = {operator.add: "a residual or other element-wise add", operator.iadd: "an in-place add",
                   operator.mul: "an element-wise multiply", operator.getitem: "indexing",
                   torch.cat: "a concatenation", torch.add: "an element-wise add"}


class _Tracer(fx.Tracer):
    """torch.fx with every nn.Linear (subclasses too) kept as one call_module node."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (nn.Linear, nn.ReLU, *_IGNORED_MODULES)) or super().is_leaf_module(m, qualname)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def _effective(m: nn.Module, name: str) -> torch.Tensor | None:
    """The tensor `m`'s forward uses for `name`: masked by a prune hook or parametrised."""
    if parametrize.is_parametrized(m, name):
        with torch.no_grad():
            return getattr(m, name)
    for hook in m._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == name:
            with torch.no_grad():
                return hook.apply_mask(m)
    return getattr(m, name, None)


def _linear(builder: ChainBuilder, m: nn.Linear, name: str) -> None:
    where = f"layer '{name}' (Linear)"
    other = [h for h in m._forward_pre_hooks.values() if not isinstance(h, prune.BasePruningMethod)]
    if other or m._forward_hooks:
        hook = (other or list(m._forward_hooks.values()))[0]
        builder.unsupported(where, f"it has a forward hook ({getattr(hook, '__name__', type(hook).__name__)}) whose "
                                   "effect the importer cannot know")
    bias = _effective(m, "bias")
    builder.dense(_array(_effective(m, "weight")), None if bias is None else _array(bias), name, where)


def _fn_name(fn) -> str:
    mod = (getattr(fn, "__module__", None) or "").replace("_operator", "operator")
    return f"{mod + '.' if mod and mod != 'builtins' else ''}{getattr(fn, '__name__', repr(fn))}"


def _flattens_samples(node, m: nn.Module | None) -> bool:
    """nn.Flatten / torch.flatten / Tensor.flatten from dimension 1 to the last: one row per sample."""
    if m is not None:
        return (m.start_dim, m.end_dim) == (1, -1)
    args = list(node.args[1:]) + [node.kwargs.get(k) for k in ("start_dim", "end_dim") if k in node.kwargs]
    return args in ([1], [1, -1])


def from_module(model: nn.Module, source: str | None = None) -> DenseChain:
    """The Linear/ReLU chain of `model` (not changed); UnsupportedModel names the first
    layer or operation that is not part of such a chain."""
    source = source or f"model {type(model).__name__}"
    if isinstance(model, torch.jit.ScriptModule):
        return _from_script(model, source)
    if not isinstance(model, nn.Module):
        raise InputError(f"{source}: expected a torch.nn.Module, got {type(model).__name__}")
    b = ChainBuilder(source, "pytorch module", SUPPORTED)
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # noqa: BLE001 - any tracing failure is one line for the user
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        b.unsupported(f"a forward that torch.fx cannot trace ({type(e).__name__}: {first[:200]})")
    cur = None                          # the node holding the chain's current value
    for node in graph.nodes:
        if node.op == "placeholder":
            if cur is not None:
                b.unsupported(f"a second input '{node.name}'")
            cur = node
            continue
        if node.op == "output":
            if node.args[0] is not cur:
                b.unsupported(f"an output that is not the last layer's ('{node.args[0]}')")
            break
        if node.op == "get_attr":
            b.unsupported(f"a tensor attribute '{node.target}' used in forward")
        data = [a for a in node.all_input_nodes]
        what = _describe(model, node)
        if data != [cur]:
            b.unsupported(what, "it does not take the previous layer's output alone (a branch or a join)")
        if node.op == "call_module":
            m = model.get_submodule(node.target)
            if isinstance(m, nn.Linear):
                _linear(b, m, node.target)
            elif isinstance(m, nn.ReLU):
                b.relu(what)
            elif isinstance(m, nn.Flatten) and not _flattens_samples(node, m):
                b.unsupported(what, f"it flattens dimensions {m.start_dim}..{m.end_dim}, not one row per sample")
            elif not isinstance(m, _IGNORED_MODULES):
                b.unsupported(what)
        elif node.op == "call_function" and node.target in _RELU:
            b.relu(what)
        elif node.op == "call_method" and node.target in ("relu", "relu_"):
            b.relu(what)
        elif node.op == "call_function" and node.target is F.dropout:
            pass
        elif (node.op == "call_function" and node.target is torch.flatten) or (
                node.op == "call_method" and node.target == "flatten"):
            if not _flattens_samples(node, None):
                b.unsupported(what, "only flatten(x, 1), one row per sample, is supported")
        else:
            b.unsupported(what)
        cur = node
    return b.finish()


def _describe(model: nn.Module, node) -> str:
    if node.op == "call_module":
        return f"layer '{node.target}' ({type(model.get_submodule(node.target)).__name__})"
    if node.op == "call_method":
        return f"operation '{node.name}' (Tensor.{node.target})"
    words = _OPERATOR_WORDS.get(node.target)
    return f"operation '{node.name}' ({_fn_name(node.target)}{': ' + words if words else ''})"


# -- TorchScript ----------------------------------------------------------------------------
def _constant(value):
    node = value.node()
    return node.kind() == "prim::Constant", (value.toIValue() if node.kind() == "prim::Constant" else None)


def _from_script(module: torch.jit.ScriptModule, source: str) -> DenseChain:
    """Walk the frozen graph (parameters folded into constants, a traced prune mask
    multiplied out, Dropout gone in eval mode) of a TorchScript module."""
    b = ChainBuilder(source, "TorchScript", SUPPORTED)
    was_training = module.training
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # TorchScript is deprecated, still what users have
            frozen = torch.jit.freeze(module.eval())
    except Exception as e:  # noqa: BLE001
        b.unsupported(f"a TorchScript module that cannot be frozen ({type(e).__name__}: {_first(e)})")
    finally:
        module.train(was_training)
    graph = frozen.graph
    inputs = list(graph.inputs())[1:]               # input 0 is the module itself
    if len(inputs) != 1:
        b.unsupported(f"a forward with {len(inputs)} inputs")
    cur, n, dense = inputs[0], 0, 0
    for node in graph.nodes():
        kind = node.kind()
        if kind == "prim::Constant":
            continue
        args = list(node.inputs())
        data = [a for a in args if not _constant(a)[0]]
        where = f"operation {n} ({kind})"
        n += 1
        if data != [cur]:
            b.unsupported(where, "it does not take the previous layer's output alone (a branch or a join)")
        consts = [_constant(a)[1] for a in args[1:]]
        if kind == "aten::linear":
            weight, bias = consts
            b.dense(_array(weight), None if bias is None else _array(bias), f"fc{dense}", where)
            dense += 1
        elif kind in ("aten::relu", "aten::relu_"):
            b.relu(where)
        elif kind == "aten::dropout" and consts[-1] is False:
            pass
        elif kind == "aten::flatten" and consts[0] == 1 and consts[1] == -1:
            pass
        else:
            b.unsupported(where)
        cur = node.output()
    if list(graph.return_node().inputs()) != [cur]:
        b.unsupported("an output that is not the last layer's")
    return b.finish()


# -- state_dict -------------------------------------------------------------------------------
_PRUNED = ("weight_orig", "weight_mask")
_PARAMETRISED = "parametrizations.weight.original"


def from_state_dict(sd: Mapping, source: str = "state_dict") -> DenseChain:
    """The Linear layers of a state_dict by the module-doc rule; ReLU after all but the last."""
    b = ChainBuilder(source, "state_dict", "a state_dict is read as Linear layers: '<name>.weight' (2-D) keys in "
                                           "order, each with an optional '<name>.bias', ReLU between them")
    layers: dict[str, dict] = {}
    for key, val in sd.items():
        if not isinstance(key, str) or not isinstance(val, torch.Tensor):
            b.unsupported(f"entry {key!r} ({type(val).__name__}, not a tensor)")
        if key.endswith("." + _PARAMETRISED) or key.endswith(".parametrizations.weight.0.mask"):
            b.unsupported(f"key '{key}' (a parametrised weight; torch.ao.pruning keeps its mask out of the state_dict: "
                          "call sparsifier.squash_mask() before saving)")
        prefix, _, leaf = key.rpartition(".")
        if leaf not in ("weight", "bias", *_PRUNED):
            b.unsupported(f"key '{key}' (not a Linear weight or bias)")
        layers.setdefault(prefix, {})[leaf] = val
    if not layers:
        b.unsupported("an empty state_dict")
    items = list(layers.items())
    for i, (prefix, p) in enumerate(items):
        name = prefix or "(top)"
        where = f"layer '{name}'"
        if "weight_orig" in p or "weight_mask" in p:
            if "weight" in p or not all(k in p for k in _PRUNED):
                b.unsupported(f"{where} (expected both weight_orig and weight_mask, or weight)")
            w = p["weight_orig"] * p["weight_mask"]
        elif "weight" in p:
            w = p["weight"]
        else:
            b.unsupported(f"key '{prefix}.bias' (a bias without a weight)")
        if w.dim() != 2:
            b.unsupported(f"key '{prefix}.weight' of shape {tuple(w.shape)} (a Linear weight is 2-D)")
        if i:
            b.relu(f"the ReLU before {where}")
        bias = p.get("bias")
        b.dense(_array(w), None if bias is None else _array(bias), name, where)
    return b.finish()


# -- files ------------------------------------------------------------------------------------------
def _file_kind(f) -> str:
    """"torchscript" (a torch.jit.save archive: code/ and constants.pkl), "torch" (a
    torch.save zip with data.pkl, or the legacy format, a bare pickle), else "other"."""
    head = f.read(4)
    f.seek(0)
    try:
        with zipfile.ZipFile(f) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return "torch" if head[:1] == b"\x80" else "other"
    finally:
        f.seek(0)
    if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
        return "torchscript"
    return "torch" if any(n.endswith("data.pkl") for n in names) else "other"


def load_torch(path, trust_pickle: bool = False) -> DenseChain:
    """A .pt/.pth file: TorchScript (torch.jit.save), a state_dict, or (with `trust_pickle`)
    a whole nn.Module saved with torch.save."""
    src = str(path)
    with open_model_file(path, "PyTorch file") as f:
        kind = _file_kind(f)
        if kind == "other":
            raise InputError(f"{src}: not a PyTorch file (expected what torch.save or torch.jit.save writes)")
        if kind == "torchscript":
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    module = torch.jit.load(f, map_location="cpu")
            except Exception as e:  # noqa: BLE001
                raise InputError(f"{src}: torch.jit.load failed ({type(e).__name__}: {_first(e)})") from None
            return _from_script(module, src)
        try:
            obj = torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            if not trust_pickle:
                raise InputError(f"{src}: holds pickled Python objects (a whole model saved with torch.save?), and "
                                 f"loading them runs code from the file; pass `trust_pickle=True` if you trust it, "
                                 f"or save model.state_dict() or TorchScript (torch.jit.script(model).save(path)) "
                                 f"instead") from None
            f.seek(0)
            try:
                obj = torch.load(f, map_location="cpu", weights_only=False)
            except Exception as e:  # noqa: BLE001 - e.g. the model's class cannot be imported
                raise InputError(f"{src}: torch.load failed ({type(e).__name__}: {_first(e)})") from None
        except Exception as e:  # noqa: BLE001
            raise InputError(f"{src}: torch.load cannot read it ({type(e).__name__}: {_first(e)})") from None
    if isinstance(obj, nn.Module):
        return from_module(obj, src)
    if isinstance(obj, Mapping):
        return from_state_dict(obj, src)
    raise InputError(f"{src}: holds a {type(obj).__name__}; expected an nn.Module, a state_dict or TorchScript")


def _first(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]
