"""Helpers shared by the ONNX fold tests: a Gemm whose weight a text body computes from v and
g, and the check that a model folds completely with unchanged outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from tests.helpers import assert_close, onnx_model, rand, run
from wnpass import fold_onnx, inspect_onnx

HEADER17 = '<ir_version: 8, opset_import: ["" : 17]>'
HEADER18 = '<ir_version: 8, opset_import: ["" : 18]>'
V, G = rand(3, 4), np.abs(rand(3, 1)) + 0.5  # a Gemm(transB=1) weight: units on axis 0
X = rand(2, 4)


def gemm_model(
    body: str, header: str = HEADER17, names: dict[str, str] | None = None, **extra: Any
) -> onnx.ModelProto:
    """x[2,4] -> Gemm(x, w, transB=1) -> y[2,3], where ``body`` computes w from v and g (V and
    G unless given), values renamed as ``names`` says (``onnx_model``)."""
    text = f"""
        {header}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {body}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    return onnx_model(text, names, True, **{"v": V, "g": G, **extra})


def ir3_model(
    nodes: list[onnx.NodeProto],
    initializers: dict[str, np.ndarray] | None = None,
    *,
    flag: bool = False,
) -> onnx.ModelProto:
    """x[2, 6] (and a bool c with ``flag``) -> ... -> y[2, 6] at IR version 3 and opset 8,
    every initializer listed as a graph input too, as that version wants (the checker refuses
    one that is not)."""
    arrays = initializers or {}
    inits = [onnx.numpy_helper.from_array(array, name) for name, array in arrays.items()]
    listed = [onnx.helper.make_tensor_value_info(i.name, i.data_type, i.dims) for i in inits]
    if flag:
        listed.insert(0, onnx.helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, []))
    graph = onnx.helper.make_graph(
        nodes,
        "main",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 6]), *listed],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 6])],
        inits,
    )
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", 8)], ir_version=3
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def ir3_linear() -> onnx.ModelProto:
    """A Linear at IR version 3, its weights Constant nodes: Gemm(x, Transpose(W), b)."""
    make, array = onnx.helper.make_node, onnx.numpy_helper.from_array
    nodes = [
        make("Constant", [], ["W"], value=array(rand(6, 6))),
        make("Transpose", ["W"], ["Wt"]),
        make("Constant", [], ["b"], value=array(rand(6))),
        make("Gemm", ["x", "Wt", "b"], ["y"], transB=1),
    ]
    return ir3_model(nodes)


def run_unoptimized(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """ONNX Runtime's CPU provider with every graph optimization off: the graph's own
    arithmetic, node by node (no constant folding of the weight)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model.SerializeToString()
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def computed_by_runtime(
    model: onnx.ModelProto, name: str, feeds: dict[str, np.ndarray]
) -> np.ndarray:
    """The value ``name`` as ``run_unoptimized`` computes it in ``model`` (made an output of a
    copy of it)."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.append(onnx.ValueInfoProto(name=name))
    return run_unoptimized(exposed, feeds)[-1]


def assert_folds(model: onnx.ModelProto, sites: int = 1, feeds: dict | None = None, **tol):
    """Fold, then: every site folded, none left, same outputs, a valid model."""
    feeds = feeds if feeds is not None else {"x": X}
    folded, report = fold_onnx(model)
    assert report.folded == sites, [s.reason for s in report.sites]
    assert report.declined == 0
    assert len(inspect_onnx(folded).sites) == 0
    onnx.checker.check_model(folded, full_check=True)
    assert_close(run(folded, feeds), run(model, feeds), **tol)
    return folded, report


# Cones of layout and cast ops that the fold declines on their values, not their ops.
DECLINED_ON_VALUES = {
    # float32 -> float16 -> float32 of a weight holding 70000: float16 overflows
    "cast-overflow": (
        f"""
        {HEADER18}
        agraph (float[1, 2] x) => (float[1, 2] y) {{
            h = Cast <to = 10> (w)
            t = Cast <to = 1> (h)
            y = MatMul(x, t)
        }}
        """,
        {"w": np.array([[1.0, 70000.0], [2.0, 3.0]], np.float32)},
    ),
    # a reflecting Pad with a negative width, which the evaluator does not do
    "reflect-pad-negative-width": (
        f"""
        {HEADER18}
        agraph (float[3, 9] x) => (float[3, 16] y) {{
            p = Pad <mode = "reflect"> (w, pads)
            y = MatMul(x, p)
        }}
        """,
        {"w": rand(10, 12), "pads": np.array([2, 1, -3, 3], np.int64)},
    ),
}


# One norm of v feeds a folded site (gain g) and one a fold declines (gain s, fed at run time).
SHARED_NORM = f"""
    {HEADER17}
    agraph (float[2, 4] x, float[3, 1] s) => (float[2, 3] y) {{
        n = ReduceL2 <axes = [1]> (v)
        d = Div(v, n)
        w = Mul(d, g)
        u = Div(v, n)
        k = Mul(u, s)
        y1 = Gemm <transB = 1> (x, w)
        y2 = Gemm <transB = 1> (x, k)
        y = Add(y1, y2)
    }}
"""

# Two sites of one v, with gains a_g and b.
SHARED_V = f"""
    {HEADER17}
    agraph (float[2, 4] x) => (float[2, 3] y, float[2, 3] z) {{
        n = ReduceL2 <axes = [1]> (a_v)
        d = Div(a_v, n)
        w = Mul(d, a_g)
        y = Gemm <transB = 1> (x, w)
        n2 = ReduceL2 <axes = [1]> (a_v)
        d2 = Div(a_v, n2)
        w2 = Mul(d2, b)
        z = Gemm <transB = 1> (x, w2)
    }}
"""

# w1 = g * v / ||v|| (a weight-normed Linear), then F.normalize(w1) (a cosine classifier).
TWICE = f"""
    {HEADER17}
    agraph (float[2, 4] x) => (float[2, 6] y) {{
        n = ReduceL2 <axes = [1]> (v)
        d = Div(v, n)
        w1 = Mul(g, d)
        n2 = ReduceL2 <axes = [1]> (w1)
        c = Max(n2, eps)
        w2 = Div(w1, c)
        y = Gemm <transB = 1> (x, w2)
    }}
"""
