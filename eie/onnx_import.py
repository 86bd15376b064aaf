"""ONNX models -> DenseChain: Gemm, or MatMul with an optional Add (the bias), and Relu,
in a chain; Flatten (axis 1), Identity and Dropout pass their input on.

Weights are the graph's initializers (or Constant nodes). The nodes must form one chain
from the graph's single input to its single output; the first node that does not fit
ends in one UnsupportedModel line naming it (op type and node name).
"""

from __future__ import annotations

import numpy as np

from eie.golden_model.errors import InputError

from .dense_chain import ChainBuilder, DenseChain, open_model_file

__all__ = ["SUPPORTED", "from_onnx", "load_onnx"]

SUPPORTED = ("EIE imports a chain of Gemm or MatMul (+ Add of a bias) nodes with Relu between them "
             "(Flatten, Dropout and Identity are ignored)")
_PASS = ("Identity", "Dropout", "Flatten")


def load_onnx(path) -> DenseChain:
    """Read an .onnx file (the `onnx` package) and import it."""
    try:
        import onnx  # the `onnx` package (the test extras, `make venv`): only for ONNX files
    except ImportError:
        raise InputError(f"{path}: reading ONNX needs the onnx package (pip install onnx; make venv installs "
                         "it)") from None
    src = str(path)
    with open_model_file(path, "ONNX file") as f:
        try:
            model = onnx.load_model_from_string(f.read())
        except Exception as e:  # noqa: BLE001 - protobuf's errors vary by version
            raise InputError(f"{src}: not a readable ONNX model ({type(e).__name__}: "
                             f"{(str(e).strip().splitlines() or [''])[0][:200]})") from None
    return from_onnx(model, src)


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _layer_name(node, weight_name: str) -> str:
    """`fc1` for an initializer `fc1.weight` (torch's exporter), else the node's name."""
    if weight_name.endswith(".weight"):
        return weight_name[:-len(".weight")]
    parts = [p for p in (node.name or "").split("/") if p]
    return parts[-2] if len(parts) >= 2 else (node.name or node.op_type)


def from_onnx(model, source: str = "ONNX model") -> DenseChain:
    """The dense chain of an onnx.ModelProto."""
    from onnx import numpy_helper

    b = ChainBuilder(source, "ONNX", SUPPORTED)
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for t in g.initializer:
        if t.data_location == 1:  # TensorProto.EXTERNAL
            b.unsupported(f"initializer '{t.name}' stored in an external data file")
    inputs = [i.name for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        b.unsupported(f"a graph with {len(inputs)} inputs and {len(g.output)} outputs (expected one of each)")
    cur = inputs[0]
    for node in g.node:
        op = node.op_type
        where = f"node '{node.name or node.output[0]}' ({op})"
        if op == "Constant":
            a = _attrs(node)
            if "value" not in a:
                b.unsupported(f"{where} without a tensor value")
            consts[node.output[0]] = numpy_helper.to_array(a["value"])
            continue
        ins = [i for i in node.input if i]
        data = [i for i in ins if i not in consts]
        if node.domain not in ("", "ai.onnx"):
            b.unsupported(f"{where} of operator set '{node.domain}'")
        if data != [cur] or (ins[0] != cur and op != "Add"):
            b.unsupported(where, "it does not take the previous layer's output as its first and only data input "
                                 "(a branch, a join or a computed weight)")
        if op in ("Gemm", "MatMul", "Add") and len(ins) < 2:
            b.unsupported(f"{where} with {len(ins)} input")
        a = _attrs(node)
        if op == "Gemm":
            _gemm(b, node, a, consts, where)
        elif op == "MatMul":
            w = consts[ins[1]]
            if w.ndim != 2:
                b.unsupported(f"{where} with a {w.ndim}-D weight")
            b.dense(w.T, None, _layer_name(node, ins[1]), where)
        elif op == "Add":
            b.bias(consts[ins[1] if ins[0] == cur else ins[0]], where)
        elif op == "Relu":
            b.relu(where)
        elif op == "Flatten" and a.get("axis", 1) != 1:
            b.unsupported(f"{where} with axis {a['axis']} (only axis 1, one sample per row)")
        elif op not in _PASS:
            b.unsupported(where)
        if len([o for o in node.output if o]) != 1 and op != "Dropout":
            b.unsupported(f"{where} with {len(node.output)} outputs")
        cur = node.output[0]
    if g.output[0].name != cur:
        b.unsupported(f"an output '{g.output[0].name}' that is not the last node's")
    return b.finish()


def _gemm(b: ChainBuilder, node, a: dict, consts: dict, where: str) -> None:
    """Y = alpha * A' B' + beta * C with A' = A (transA 0), B' = B or B^T: W = alpha B'^T."""
    if a.get("transA", 0):
        b.unsupported(f"{where} with transA = 1")
    ins = list(node.input)
    B = consts[ins[1]]
    if B.ndim != 2:
        b.unsupported(f"{where} with a {B.ndim}-D weight")
    W = (B if a.get("transB", 0) else B.T).astype(np.float64) * float(a.get("alpha", 1.0))
    bias = None
    if len(ins) > 2 and ins[2]:
        C = np.asarray(consts[ins[2]], dtype=np.float64) * float(a.get("beta", 1.0))
        if C.size not in (1, W.shape[0]):
            b.unsupported(f"{where} with a C of shape {C.shape} (a bias has one value per output, or one for all)")
        bias = np.broadcast_to(C.reshape(-1), (W.shape[0],)).copy()
    b.dense(W, bias, _layer_name(node, ins[1]), where)
