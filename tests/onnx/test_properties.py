"""Property-based: random weight-norm graphs (shapes, axes, forms, dtypes, consumers, opsets)
fold to zero sites with the same outputs, and folding is idempotent and deterministic."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from tests.helpers import FP16_ATOL, FP16_RTOL, assert_close, run, sites_left
from wnpass import fold_onnx

FORMS = [
    "(v/n)*g",
    "g*(v/n)",
    "v*(g/n)",
    "(g*v)/n",
    "g*v*(1/n)",
    "rsqrt",
    "sqrt(sum(v*v))",
    "max-eps",
]
DTYPES = {
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
    "float16": TensorProto.FLOAT16,
}


def _norm_nodes(v: str, axes: list[int], opset: int, form: str) -> tuple[list, list, str, bool]:
    """Nodes computing the norm (or its reciprocal); returns (nodes, inits, name, reciprocal)."""
    inits, nodes = [], []

    def reduce(op: str, x: str, out: str) -> None:
        if opset >= 18 or op == "ReduceSum":
            inits.append(helper.make_tensor(f"{out}_axes", TensorProto.INT64, [len(axes)], axes))
            nodes.append(helper.make_node(op, [x, f"{out}_axes"], [out], keepdims=1))
        else:
            nodes.append(helper.make_node(op, [x], [out], axes=axes, keepdims=1))

    if form == "sqrt(sum(v*v))":
        nodes.append(helper.make_node("Mul", [v, v], ["sq"]))
        reduce("ReduceSum", "sq", "ss")
        nodes.append(helper.make_node("Sqrt", ["ss"], ["n"]))
        return nodes, inits, "n", False
    if form == "rsqrt":
        reduce("ReduceSumSquare", v, "ss")
        inits.append(helper.make_tensor("mhalf", TensorProto.FLOAT, [], [-0.5]))
        nodes.append(helper.make_node("Pow", ["ss", "mhalf"], ["r"]))
        return nodes, inits, "r", True
    reduce("ReduceL2", v, "n0")
    if form == "max-eps":
        inits.append(helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-12]))
        nodes.append(helper.make_node("Max", ["n0", "eps"], ["n"]))
        return nodes, inits, "n", False
    return nodes, inits, "n0", False


def _product(form: str, v: str, g: str, n: str, reciprocal: bool) -> list:
    mk = helper.make_node
    if reciprocal:
        return [mk("Mul", [v, n], ["vr"]), mk("Mul", ["vr", g], ["w"])]
    return {
        "(v/n)*g": [mk("Div", [v, n], ["d"]), mk("Mul", ["d", g], ["w"])],
        "g*(v/n)": [mk("Div", [v, n], ["d"]), mk("Mul", [g, "d"], ["w"])],
        "v*(g/n)": [mk("Div", [g, n], ["d"]), mk("Mul", [v, "d"], ["w"])],
        "(g*v)/n": [mk("Mul", [g, v], ["p"]), mk("Div", ["p", n], ["w"])],
        "g*v*(1/n)": [
            mk("Reciprocal", [n], ["r"]),
            mk("Mul", [g, v], ["p"]),
            mk("Mul", ["p", "r"], ["w"]),
        ],
        "sqrt(sum(v*v))": [mk("Div", [v, n], ["d"]), mk("Mul", ["d", g], ["w"])],
        "max-eps": [mk("Div", [v, n], ["d"]), mk("Mul", ["d", g], ["w"])],
    }[form]


@st.composite
def models(draw: st.DrawFn) -> tuple[onnx.ModelProto, dict[str, np.ndarray], str]:
    rank = draw(st.integers(2, 4))
    shape = draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank))
    dim = draw(st.one_of(st.none(), st.integers(0, rank - 1)))
    axes = [a for a in range(rank) if a != dim]
    form = draw(st.sampled_from(FORMS))
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    opset = draw(st.sampled_from([17, 18]))
    consumer = draw(st.sampled_from(["Mul", "Gemm"] if rank == 2 else ["Mul"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    storage = np.float16 if dtype == "float16" else np.dtype(dtype).type
    v = (rng.standard_normal(shape) + 0.1).astype(storage)
    g_shape = [1] * rank if dim is None else [s if a == dim else 1 for a, s in enumerate(shape)]
    g = (np.abs(rng.standard_normal(g_shape)) + 0.5).astype(storage)
    nodes, inits = [], [onnx.numpy_helper.from_array(v, "v"), onnx.numpy_helper.from_array(g, "g")]
    compute = TensorProto.FLOAT if dtype == "float16" else DTYPES[dtype]
    vn, gn = "v", "g"
    if dtype == "float16":  # fp16 models compute in float32 between Casts
        nodes += [
            helper.make_node("Cast", ["v"], ["vf"], to=compute),
            helper.make_node("Cast", ["g"], ["gf"], to=compute),
        ]
        vn, gn = "vf", "gf"
    norm_nodes, norm_inits, n, reciprocal = _norm_nodes(vn, axes, opset, form)
    for init in norm_inits:  # constants in the compute dtype
        if init.data_type == TensorProto.FLOAT and compute != TensorProto.FLOAT:
            init.CopyFrom(
                onnx.numpy_helper.from_array(
                    onnx.numpy_helper.to_array(init).astype(np.float64), init.name
                )
            )
    nodes += norm_nodes + _product(form, vn, gn, n, reciprocal)
    inits += norm_inits
    w = "w"
    if dtype == "float16":
        nodes.append(helper.make_node("Cast", ["w"], ["w16"], to=TensorProto.FLOAT16))
        w = "w16"
    io_type = DTYPES[dtype]
    if consumer == "Gemm":
        x_shape, y_shape = [2, shape[1]], [2, shape[0]]
        nodes.append(helper.make_node("Gemm", ["x", w], ["y"], transB=1))
    else:
        x_shape = y_shape = shape
        nodes.append(helper.make_node("Mul", ["x", w], ["y"]))
    graph = helper.make_graph(
        nodes,
        "random",
        [helper.make_tensor_value_info("x", io_type, x_shape)],
        [helper.make_tensor_value_info("y", io_type, y_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    x = rng.standard_normal(x_shape).astype(storage)
    return model, {"x": x}, dtype


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models())
def test_random_sites_fold_exactly_once_and_deterministically(case: tuple) -> None:
    model, feeds, dtype = case
    onnx.checker.check_model(model)
    folded, report = fold_onnx(model)
    assert report.folded == 1 and report.declined == 0, [s.reason for s in report.sites]
    assert sites_left(folded) == 0
    onnx.checker.check_model(folded)
    tolerance = {"rtol": FP16_RTOL, "atol": FP16_ATOL} if dtype == "float16" else {}
    assert_close(run(folded, feeds), run(model, feeds), **tolerance)
    again, second = fold_onnx(folded)
    assert second.folded == 0 and again.SerializeToString() == folded.SerializeToString()
    twice, _ = fold_onnx(model)
    assert twice.SerializeToString() == folded.SerializeToString()
