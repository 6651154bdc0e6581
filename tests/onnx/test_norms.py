"""Recognising ``||v||`` (``wnpass.onnx.norms``): the epsilon the report gives is the norm's,
``bounded`` says whether the norm the graph computes is at least ||v|| (what the common path's
overflow bound needs), and reduction axes out of range for the rank are a reason, never
wrapped."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from tests.helpers import onnx_model, rand
from wnpass import inspect_onnx
from wnpass.onnx.norms import Norm, as_norm

HEADER = '<ir_version: 8, opset_import: ["" : 18]>'


def _norm_of(body: str, **constants: np.ndarray) -> tuple[Norm, int] | str | None:
    """``as_norm`` of the value ``e`` of a graph ``body`` over the initializer ``v``."""
    text = f"{HEADER}\nagraph () => (float[N, M] e) {{\n{body}\n}}"
    model = ir.serde.deserialize_model(onnx_model(text, None, False, v=rand(6, 4), **constants))
    return as_norm(model.graph.outputs[0])


_F = np.float32


@pytest.mark.parametrize(
    ("body", "constants", "eps", "bounded"),
    [
        ("n = ReduceL2 <axes = [1]> (v)\ne = Identity(n)", {}, None, True),
        ("n = ReduceL2 <axes = [1]> (v)\ne = Max(n, c)", {"c": _F(1e-3)}, 1e-3, True),
        ("n = ReduceL2 <axes = [1]> (v)\nr = Add(n, c)\ne = Reciprocal(r)", {"c": _F(1)}, 1, True),
        (
            "s = ReduceSumSquare <axes = [1]> (v)\na = Add(s, c)\ne = Pow(a, h)",
            {"c": _F(0.25), "h": _F(-0.5)},
            0.25,
            True,
        ),
        ("n = ReduceL2 <axes = [1]> (v)\ne = Add(n, c)", {"c": _F(-0.5)}, -0.5, False),
        (
            "n = ReduceL2 <axes = [1]> (v)\nr = Reciprocal(n)\ne = Add(r, c)",
            {"c": _F(0.09)},
            None,
            False,
        ),
        (
            "n = ReduceL2 <axes = [1]> (v)\na = Add(n, c)\ne = Add(a, d)",
            {"c": _F(1), "d": _F(-91)},
            None,
            False,
        ),
        (
            "n = ReduceL2 <axes = [1]> (v)\na = Add(n, c)\ne = Max(a, d)",
            {"c": _F(1), "d": _F(1e-3)},
            None,
            True,
        ),
    ],
    ids=[
        "none",
        "max",
        "add-before-the-reciprocal",
        "inside-the-square-root",
        "negative",
        "after-the-reciprocal",
        "net-negative",
        "two-growing",
    ],
)
def test_the_epsilon_is_the_norms_and_bounded_says_whether_it_only_grows(
    body: str, constants: dict[str, np.ndarray], eps: float | None, bounded: bool
) -> None:
    """``1/||v|| + 0.09`` is no norm with an epsilon of 0.09, and ``(||v|| + 1) - 91`` none
    with 1: the report gives one epsilon only where there is one before any reciprocal, and
    the common path's bound holds only where every epsilon makes the norm larger."""
    found = _norm_of(body, **constants)
    assert isinstance(found, tuple)
    norm, _ = found
    assert norm.eps == (None if eps is None else pytest.approx(eps))
    assert norm.bounded is bounded


@pytest.mark.parametrize("axis", [5, 2, -3])
def test_reduction_axes_out_of_range_are_a_reason(axis: int) -> None:
    """Axes computed from constants (the checker does not see them) beyond the rank: ONNX
    Runtime refuses the graph, so the norm is not read as one over ``axis mod rank``."""
    body = "a = Reshape(a0, m1)\nn = ReduceL2(v, a)\ne = Identity(n)"
    found = _norm_of(body, a0=np.array(axis, np.int64), m1=np.array([-1], np.int64))
    assert found == f"ReduceL2 'n': axis {axis} is out of range for rank 2"


@pytest.mark.parametrize("axes", [np.array(1), np.array([[1]])], ids=["0-d", "2-D"])
def test_reduction_axes_that_are_no_vector_are_a_reason(axes: np.ndarray) -> None:
    """ONNX Runtime refuses ReduceL2 axes that are not a 1-D tensor ("must be a vector
    tensor"), so the norm is not read as one over the axes flattened."""
    found = _norm_of("n = ReduceL2(v, a)\ne = Identity(n)", a=axes.astype(np.int64))
    assert found == f"ReduceL2 'n': a list operand of rank {axes.ndim}, where ONNX wants 1"


def test_reduction_axes_in_range_are_read() -> None:
    body = "a = Reshape(a0, m1)\nn = ReduceL2(v, a)\ne = Identity(n)"
    found = _norm_of(body, a0=np.array(-2, np.int64), m1=np.array([-1], np.int64))
    assert isinstance(found, tuple) and found[0].axes == (-2,)


def test_axes_of_a_reshaped_v_are_not_read_against_v() -> None:
    """``ReduceL2(Reshape(v, [2, 3]), axes=[1])`` of a rank-1 v: per row of the reshaped
    tensor, not a norm of the whole of v (axis 1 is not v's)."""
    text = f"""{HEADER}
        agraph () => (float[2, 1] e) {{
            r = Reshape(v, s)
            e = ReduceL2 <axes = [1]> (r)
        }}"""
    model = onnx_model(text, None, False, v=rand(6), s=np.array([2, 3], np.int64))
    found = as_norm(ir.serde.deserialize_model(model).graph.outputs[0])
    assert isinstance(found, tuple)
    assert found[0].axes == (1,) and found[0].layout


def test_a_normalized_residual_stream_is_read_once_not_per_operand() -> None:
    """``y / ||y||`` where ``y`` ends a chain of 2,000 ``Add(h, Relu(h))`` (an activation, no
    weight): each non-constant ``Add`` is tested for a norm among its operands once, not by
    reading each operand's whole chain again (a recursion per ``Add``, whose cost grew
    threefold per level): no site, at once."""
    make = onnx.helper.make_node
    nodes, previous = [], "x"
    for i in range(2000):
        nodes += [make("Relu", [previous], [f"r{i}"]), make("Add", [previous, f"r{i}"], [f"h{i}"])]
        previous = f"h{i}"
    nodes += [make("ReduceL2", [previous], ["n"], axes=[1]), make("Div", [previous, "n"], ["y"])]
    info = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(nodes, "g", [info("x", 1, [2, 4])], [info("y", 1, [2, 4])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    assert inspect_onnx(model).sites == []
