"""The constant evaluator does what the graph does: Casts round, integers are integers, and
whatever it cannot do exactly is declined with its reason (never approximated, never a
MemoryError or a RecursionError).

The differential test builds random constant subgraphs of layout ops, Casts, integer
arithmetic and single float operations and checks that wnpass's evaluator and ONNX's reference
evaluator agree bit for bit wherever wnpass says it can evaluate them.
"""

from __future__ import annotations

import itertools
from typing import Any

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from tests.helpers import assert_close, onnx_model, rand, run
from tests.onnx.helpers import run_unoptimized
from wnpass import fold_onnx
from wnpass.onnx.evaluate import MAX_ELEMENTS, NotExact, evaluate, round_to

HEADER = '<ir_version: 8, opset_import: ["" : 18]>'
HEADER17 = '<ir_version: 8, opset_import: ["" : 17]>'  # ReduceL2 axes as an attribute


def _evaluate(model: onnx.ModelProto) -> np.ndarray:
    """wnpass's value of the model's first output, rounded as it would be stored."""
    ir_model = ir.serde.deserialize_model(model)
    array, dtype = evaluate(ir_model.graph.outputs[0])
    return round_to(array, dtype)


def _constant_model(text: str, **initializers: np.ndarray) -> onnx.ModelProto:
    return onnx_model(f"{HEADER}\n{text}", None, True, **initializers)


# ---------------------------------------------------------------- casts


def test_cast_to_float16_and_back_on_v_is_honoured() -> None:
    """Issue 9: a Cast float32 -> float16 -> float32 on v rounds v to float16 first."""
    v, g = rand(3, 4) * 1000, np.abs(rand(3, 1)) + 0.5
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            h = Cast <to = 10> (v)
            vf = Cast <to = 1> (h)
            n = ReduceL2 <axes = [1]> (vf)
            d = Div(vf, n)
            w = Mul(d, g)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, v=v, g=g)
    folded, report = fold_onnx(model)
    assert isinstance(folded, onnx.ModelProto) and report.folded == 1
    v16 = v.astype(np.float16).astype(np.float64)
    expected = (g * v16 / np.linalg.norm(v16, axis=1, keepdims=True)).astype(np.float32)
    weight = onnx.numpy_helper.to_array(folded.graph.initializer[0])
    np.testing.assert_array_equal(weight, expected)
    assert not np.array_equal(weight, (g * v / np.linalg.norm(v, axis=1, keepdims=True)))
    x = rand(2, 4)
    assert_close(run(folded, {"x": x}), run(model, {"x": x}))  # rtol alone fails near zero


def test_narrowing_cast_of_a_product_rounds_once() -> None:
    """float32 arithmetic cast to float16: the float64 value rounded once to float16."""
    a = np.array([1 + 2**-11 + 2**-30, 3.0], np.float64).astype(np.float32)
    model = _constant_model(
        "agraph () => (float16[2] y) { p = Mul(a, b)\n y = Cast <to = 10> (p) }",
        a=a,
        b=np.array([1.0, 1.0], np.float32),
    )
    np.testing.assert_array_equal(_evaluate(model), a.astype(np.float64).astype(np.float16))


def _cast_model(values: np.ndarray, to: int) -> onnx.ModelProto:
    return helper.make_model(
        helper.make_graph(
            [helper.make_node("Cast", ["c"], ["y"], to=to)],
            "g",
            [],
            [helper.make_tensor_value_info("y", to, None)],
            [onnx.numpy_helper.from_array(values, "c")],
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )


@pytest.mark.parametrize(
    ("to", "above_midpoint", "once", "twice"),
    [
        (TensorProto.FLOAT16, np.float64(1 + 2**-11 + 2**-40), 1 + 2**-10, 1.0),
        (TensorProto.BFLOAT16, np.float64(1 + 2**-8 + 2**-40), 1 + 2**-7, 1.0),
        (TensorProto.BFLOAT16, np.int64(2**24 + 2**16 + 1), 2**24 + 2**17, 2**24),
    ],
    ids=["double-float16", "double-bfloat16", "int64-bfloat16"],
)
def test_cast_that_rounds_differently_through_float32_is_declined(
    to: int, above_midpoint: np.generic, once: float, twice: float
) -> None:
    """ONNX Runtime's CPU kernel casts double and integers through float32, which rounds this
    value down where rounding it once rounds it up: the folded value would depend on the
    kernel."""
    values = np.array([above_midpoint])
    assert round_to(values.astype(np.float64), ir.DataType(to)).astype(np.float64)[0] == once
    there_and_back = _cast_model(values, to)
    there_and_back.graph.node.append(helper.make_node("Cast", ["y"], ["z"], to=TensorProto.DOUBLE))
    there_and_back.graph.output[0].CopyFrom(
        helper.make_tensor_value_info("z", TensorProto.DOUBLE, None)
    )
    assert run(there_and_back, {})[0].tolist() == [twice]  # ONNX Runtime: through float32
    model = _cast_model(np.concatenate([values, values[:0] + 1]), to)
    with pytest.raises(NotExact, match=r"rounds 1 value.* differently once than through float32"):
        evaluate(ir.serde.deserialize_model(model).graph.outputs[0])


def test_cast_from_double_folds_where_the_roundings_agree() -> None:
    """Random doubles: rounding once and through float32 agree, and equal ONNX Runtime's."""
    values = np.random.default_rng(0).standard_normal(1000) * 100
    model = _cast_model(values, TensorProto.FLOAT16)
    actual = _evaluate(model)
    assert actual.tobytes() == run(model, {})[0].tobytes()


@pytest.mark.parametrize(
    ("values", "to", "reason"),
    [
        (np.array([np.nan], np.float32), TensorProto.INT32, "NaN or Inf"),
        (np.array([3e9], np.float32), TensorProto.INT32, "out of its range"),
        (np.array([300], np.int32), TensorProto.UINT8, "out of its range"),
        # in float64, int64's largest value rounds up to 2**63: compared exactly
        (np.array([2.0**63, 5.0], np.float32), TensorProto.INT64, "out of its range"),
        (np.array([2.0**64, 7.0], np.float64), TensorProto.UINT64, "out of its range"),
        (np.array([2**63], np.uint64), TensorProto.INT64, "out of its range"),
        (np.array([1.0, np.nan], np.float32), TensorProto.FLOAT16, "NaN from float to float16"),
        (np.array([np.nan], np.float64), TensorProto.FLOAT, "NaN from double to float"),
        (np.array([np.nan], np.float16), TensorProto.FLOAT, "NaN from float16 to float"),
        (np.array([2**60], np.int64), TensorProto.FLOAT, "beyond 2\\*\\*53"),
        (np.array(["a"], object), TensorProto.FLOAT, "string"),
    ],
)
def test_casts_that_are_not_exact_are_declined(values: np.ndarray, to: int, reason: str) -> None:
    ir_model = ir.serde.deserialize_model(_cast_model(values, to))
    with pytest.raises(NotExact, match=reason):
        evaluate(ir_model.graph.outputs[0])


def test_float_to_int_cast_truncates_toward_zero() -> None:
    model = _constant_model(
        "agraph () => (int32[4] y) { y = Cast <to = 6> (c) }",
        c=np.array([2.7, -2.7, 0.5, -0.5], np.float32),
    )
    np.testing.assert_array_equal(_evaluate(model), np.array([2, -2, 0, 0], np.int32))


def test_cast_like_rounds_to_its_second_inputs_declared_type_without_reading_it() -> None:
    """``CastLike(c, like)`` is a Cast to the type of ``like``; its value is never read, so a
    ``like`` computed from an activation does not stop the cast of a constant."""
    c = np.array([0.1, 1e-12], np.float64)
    model = _constant_model(
        "agraph (float[2] x) => (float[2] y) <float[2] like> { like = Relu(x)\n"
        " y = CastLike(c, like) }",
        c=c,
    )
    np.testing.assert_array_equal(_evaluate(model), c.astype(np.float32))


def test_cast_like_to_an_undeclared_type_is_declined() -> None:
    model = _constant_model(
        "agraph (float[2] x) => (float[2] y) { like = Relu(x)\n y = CastLike(c, like) }",
        c=np.array([0.1, 0.2], np.float64),
    )
    with pytest.raises(NotExact, match="CastLike to the type of 'like'"):
        _evaluate(model)


# ---------------------------------------------------------------- integers


def test_integer_division_truncates_toward_zero() -> None:
    model = _constant_model(
        "agraph () => (int64[4] y) { y = Div(a, b) }",
        a=np.array([7, -7, 7, -7], np.int64),
        b=np.array([2, 2, -2, -2], np.int64),
    )
    np.testing.assert_array_equal(_evaluate(model), np.array([3, -3, -3, 3], np.int64))


def test_integers_are_not_computed_in_float64() -> None:
    """2**53 + 1 is not a float64: integer arithmetic must not pass through one."""
    big = np.array([2**52 + 1], np.int64)
    model = _constant_model("agraph () => (int64[1] y) { y = Mul(a, b) }", a=big, b=np.array([2]))
    with pytest.raises(NotExact, match="beyond 2\\*\\*53"):
        _evaluate(model)
    small = _constant_model(
        "agraph () => (int64[1] y) { y = Add(a, b) }", a=np.array([2**40]), b=np.array([1])
    )
    np.testing.assert_array_equal(_evaluate(small), np.array([2**40 + 1]))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("y = Mul(a, a)", "overflows int8"),
        ("y = Div(a, z)", "division by zero"),
        ("y = Sqrt(f)", "Sqrt on int8"),
        ("y = ReduceSum(a)", "ReduceSum on int8"),
        ("y = Sin(g)", "Sin in the weight computation is not supported"),
    ],
)
def test_what_is_not_modelled_exactly_is_declined(text: str, reason: str) -> None:
    model = onnx_model(
        f"{HEADER}\nagraph () => (int8[2] y) {{ f = Identity(a)\n {text} }}",
        check=False,
        a=np.array([100, -100], np.int8),
        z=np.array([1, 0], np.int8),
        g=np.array([1.0, 2.0], np.float32),
    )
    with pytest.raises(NotExact, match=reason):
        _evaluate(model)


def test_float16_overflow_inside_the_graph_is_declined() -> None:
    """The graph computes inf where float16 overflows; float64 would not: decline."""
    model = _constant_model(
        "agraph () => (float16[1] y) { y = Mul(a, a) }", a=np.array([1000], np.float16)
    )
    with pytest.raises(NotExact, match="overflows float16"):
        _evaluate(model)


# ---------------------------------------------------------------- sizes and chains


def test_huge_declared_shapes_are_declined_not_allocated() -> None:
    shape = np.array([1 << 20, 1 << 20, 4], np.int64)
    model = _constant_model(
        "agraph () => (float[?, ?, 4] y) { y = Expand(c, s) }", c=rand(1, 1, 4), s=shape
    )
    with pytest.raises(NotExact, match=f"more than {MAX_ELEMENTS}"):
        _evaluate(model)


def test_a_tile_in_front_of_a_weight_folds_and_a_huge_one_is_declined() -> None:
    """Tile copies elements: a weight tiled in front of a MatMul is folded (SEW-D's
    relative-position operands were "computed by Tile", t174), its repeats checked and its
    size bounded."""
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, ?] y) {{
            t = Tile(w, r)
            y = MatMul(x, t)
        }}
    """
    w = rand(2, 3)
    model = onnx_model(text, w=w, r=np.array([2, 2], np.int64))
    folded, report = fold_onnx(model)
    assert isinstance(folded, onnx.ModelProto)
    assert [c.status for c in report.cones] == ["folded"]
    (tile,) = folded.graph.initializer
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(tile), np.tile(w, (2, 2)))
    huge = onnx_model(text, w=w, r=np.array([2, 1 << 30], np.int64))
    (cone,) = fold_onnx(huge)[1].cones
    assert cone.status == "declined" and "Tile 't' would make" in (cone.reason or "")


def test_huge_expand_in_front_of_a_weight_is_declined_by_the_fold() -> None:
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 1073741824] y) {{
            e = Expand(w, s)
            y = MatMul(x, e)
        }}
    """
    model = onnx_model(text, w=rand(1, 1), s=np.array([4, 1 << 30], np.int64))
    _, report = fold_onnx(model)
    (cone,) = report.cones
    assert cone.status == "declined" and "more than" in (cone.reason or "")


def _identity_chain(start: str, end: str, length: int) -> str:
    names = [start, *[f"{start}_{i}" for i in range(length - 1)], end]
    return "\n".join(f"{b} = Identity({a})" for a, b in itertools.pairwise(names))


def test_a_3000_node_chain_folds_without_recursion() -> None:
    """Graph walks are iterative: a weight-norm site behind 3000 Identity nodes folds."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {_identity_chain("v", "vi", 3000)}
            n = ReduceL2 <axes = [1]> (vi)
            d = Div(vi, n)
            w = Mul(d, g)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    v, g = rand(3, 4), np.abs(rand(3, 1)) + 0.5
    model = onnx_model(text, check=False, v=v, g=g)
    folded, report = fold_onnx(model)
    assert isinstance(folded, onnx.ModelProto)
    assert report.folded == 1 and [n.op_type for n in folded.graph.node] == ["Gemm"]
    weight = onnx.numpy_helper.to_array(folded.graph.initializer[0])
    v64 = v.astype(np.float64)
    expected = (g * v64 / np.linalg.norm(v64, axis=1, keepdims=True)).astype(np.float32)
    np.testing.assert_array_equal(weight, expected)


def test_a_3000_node_layout_chain_in_front_of_a_weight_folds() -> None:
    text = f"""
        {HEADER}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            {_identity_chain("w", "wt", 3000)}
            y = MatMul(x, wt)
        }}
    """
    w = rand(4, 3)
    folded, report = fold_onnx(onnx_model(text, check=False, w=w))
    assert isinstance(folded, onnx.ModelProto)
    assert report.cones_folded == 1 and [n.op_type for n in folded.graph.node] == ["MatMul"]
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(folded.graph.initializer[0]), w)


# ---------------------------------------------------------------- differential


DTYPES = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "float64": TensorProto.DOUBLE,
    "int32": TensorProto.INT32,
    "int64": TensorProto.INT64,
    "int8": TensorProto.INT8,
    "uint8": TensorProto.UINT8,
    "bool": TensorProto.BOOL,
}
FLOATS = ("float16", "float32", "float64")
NUMERIC = [d for d in DTYPES if d != "bool"]
OPS = [  # Cast four times: chains of Casts are where rounding goes wrong
    "Cast", "Cast", "Cast", "Cast", "Transpose", "Reshape", "Unsqueeze", "Squeeze", "Slice",
    "Concat", "Gather", "Split", "Expand", "Tile", "Identity", "Add", "Sub", "Mul", "Div", "Max",
    "Min",
]  # fmt: skip
INT64_MAX = np.iinfo(np.int64).max


class _Builder:
    """A random constant graph: nodes, initializers, and each value's shape, dtype and whether
    it holds an unrounded float result (one float operation whose rounding is still to come)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.values: list[tuple[str, tuple[int, ...], str, bool]] = []

    def constant(self, array: np.ndarray) -> str:
        name = f"c{len(self.initializers)}"
        self.initializers.append(onnx.numpy_helper.from_array(array, name))
        return name

    def data(self, shape: tuple[int, ...], dtype: str, nonzero: bool = False) -> np.ndarray:
        if dtype in FLOATS:
            array = self.rng.standard_normal(shape) * 8
            if nonzero:
                array = np.where(np.abs(array) < 0.5, 1.5, array)
            return array.astype(dtype)
        low, high = (1, 6) if nonzero else (-20, 20)
        if dtype == "uint8":
            low = max(low, 0)
        return self.rng.integers(low, high, shape).astype(dtype)

    def add(self, op: str, inputs: list[str], shape: tuple[int, ...], dtype: str,
            pending: bool = False, outputs: int = 1, index: int = 0,
            **attrs: Any) -> None:  # fmt: skip
        k = len(self.nodes)
        names = [f"t{k}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, **attrs))
        self.values.append((names[index], shape, dtype, pending))


def _step(b: _Builder, draw: st.DrawFn) -> None:
    chain = draw(st.integers(0, 3)) > 0  # mostly build on the latest value: long chains
    name, shape, dtype, pending = b.values[-1] if chain else draw(st.sampled_from(b.values))
    rank = len(shape)
    new: tuple[int, ...]
    op = draw(st.sampled_from(OPS))
    if op == "Cast":
        to = draw(st.sampled_from(list(DTYPES)))
        narrowing = to in FLOATS and dtype in FLOATS and FLOATS.index(to) < FLOATS.index(dtype)
        if pending and narrowing:  # double rounding vs one: the documented difference
            return
        b.add("Cast", [name], shape, to, to=DTYPES[to])
    elif op == "Transpose":
        perm = draw(st.permutations(range(rank)))
        b.add(op, [name], tuple(shape[p] for p in perm), dtype, pending, perm=list(perm))
    elif op == "Reshape":
        target = [-1] if rank < 2 else [0, -1]
        new = (int(np.prod(shape)),) if rank < 2 else (shape[0], int(np.prod(shape[1:])))
        b.add(op, [name, b.constant(np.array(target, np.int64))], new, dtype, pending)
    elif op == "Unsqueeze":
        axis = draw(st.integers(-rank - 1, rank))
        dims = list(shape)
        dims.insert(axis % (rank + 1), 1)
        b.add(op, [name, b.constant(np.array([axis], np.int64))], tuple(dims), dtype, pending)
    elif op == "Squeeze":
        ones = [i for i, d in enumerate(shape) if d == 1]
        if not ones or rank == 1:
            return
        axis = draw(st.sampled_from(ones))
        new = shape[:axis] + shape[axis + 1 :]
        b.add(op, [name, b.constant(np.array([axis], np.int64))], new, dtype, pending)
    elif op == "Slice":
        axis = draw(st.integers(0, rank - 1))
        dim = shape[axis]
        ends = st.one_of(st.integers(-dim - 2, dim + 2), st.sampled_from([INT64_MAX, -INT64_MAX]))
        start, end = draw(st.integers(-dim - 2, dim + 2)), draw(ends)
        step = draw(st.sampled_from([1, 2, -1, -2]))
        # Python's slicing clamps like ONNX once the end is within [-dim - 1, dim]
        size = len(range(dim)[slice(start, max(min(end, dim), -dim - 1), step)])
        if size == 0:
            return
        consts = [b.constant(np.array([v], np.int64)) for v in (start, end, axis, step)]
        new = (*shape[:axis], size, *shape[axis + 1 :])
        b.add(op, [name, *consts], new, dtype, pending)
    elif op == "Concat":
        axis = draw(st.integers(-rank, rank - 1))
        dims = list(shape)
        dims[axis] *= 2
        b.add(op, [name, name], tuple(dims), dtype, pending, axis=axis)
    elif op == "Gather":
        axis = draw(st.integers(0, rank - 1))
        dim = shape[axis]
        count = draw(st.integers(1, 3))
        indices = b.constant(b.rng.integers(-dim, dim, count).astype(np.int64))
        new = (*shape[:axis], count, *shape[axis + 1 :])
        b.add(op, [name, indices], new, dtype, pending, axis=axis)
    elif op == "Split":
        axis = draw(st.integers(0, rank - 1))
        if shape[axis] < 2:
            return
        index = draw(st.integers(0, 1))
        sizes = [1, shape[axis] - 1]
        new = (*shape[:axis], sizes[index], *shape[axis + 1 :])
        split = b.constant(np.array(sizes, np.int64))
        b.add(op, [name, split], new, dtype, pending, outputs=2, index=index, axis=axis)
    elif op == "Expand":
        b.add(op, [name, b.constant(np.array([2, *shape], np.int64))], (2, *shape), dtype, pending)
    elif op == "Tile":
        repeats = [draw(st.integers(1, 2)) for _ in shape]  # 0: an empty axis, no Gather
        new = tuple(d * r for d, r in zip(shape, repeats, strict=True))
        b.add(op, [name, b.constant(np.array(repeats, np.int64))], new, dtype, pending)
    elif op == "Identity":
        b.add(op, [name], shape, dtype, pending)
    else:  # binary arithmetic and Max/Min against a fresh constant of the same type
        if dtype == "bool" or (pending and op not in ("Max", "Min")):
            return
        other = b.constant(b.data(shape, dtype, nonzero=op == "Div"))
        is_float = dtype in FLOATS
        b.add(op, [name, other], shape, dtype, pending or (is_float and op not in ("Max", "Min")))


@st.composite
def constant_graphs(draw: st.DrawFn) -> onnx.ModelProto:
    b = _Builder(draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(1, 2))):
        shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
        dtype = draw(st.sampled_from(NUMERIC))
        name = b.constant(b.data(shape, dtype))
        b.values.append((name, shape, dtype, False))
    for _ in range(draw(st.integers(1, 7))):
        _step(b, draw)
    name, shape, dtype, _ = b.values[-1]
    output = helper.make_tensor_value_info(name, DTYPES[dtype], list(shape))
    graph = helper.make_graph(b.nodes, "random", [], [output], b.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(constant_graphs())
def test_wnpass_and_the_onnx_reference_agree_bit_for_bit(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model)
    note(onnx.printer.to_text(model.graph))
    with np.errstate(all="ignore"):
        (expected,) = ReferenceEvaluator(model).run(None, {})
    try:
        actual = _evaluate(model)
    except NotExact as error:  # declined: nothing is folded, so nothing can be wrong
        note(f"declined: {error}")
        # a discarded example: were most of them declined, hypothesis would fail the test
        # (filter_too_much), so an evaluator that declines everything cannot pass
        assume(False)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes(), (actual, expected)


def test_a_narrowing_cast_that_overflows_is_declined() -> None:
    """float32 70000 -> float16 is inf in the graph: declined, never folded into a weight."""
    import numpy as np

    from tests.helpers import onnx_model
    from wnpass import fold_onnx

    text = """
        <ir_version: 8, opset_import: ["" : 18]>
        agraph (float16[2, 2] x) => (float16[2, 2] y) {
            h = Cast <to = 10> (w)
            y = MatMul(x, h)
        }
    """
    model = onnx_model(text, w=np.array([[7e4, 1.0], [2.0, 3.0]], np.float32))
    _, report = fold_onnx(model)
    (cone,) = report.cones
    assert cone.status == "declined" and "overflows float16" in (cone.reason or "")


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        ("bfloat16", np.array([[1e5, 1.0], [-3e5, 2.0]], ml_dtypes.bfloat16)),
        ("int64", np.array([[70000, 1], [65520, 2]], np.int64)),  # 65520 rounds to inf
    ],
)
def test_a_cast_to_float16_that_overflows_is_declined_from_any_type(
    dtype: str, values: np.ndarray
) -> None:
    """From float32 it was declined; from bfloat16 or an integer type it was folded into a
    weight of inf (t55)."""
    text = """
        <ir_version: 8, opset_import: ["" : 18]>
        agraph (float16[2, 2] x) => (float16[2, 2] y) {
            h = Cast <to = 10> (w)
            y = MatMul(x, h)
        }
    """
    _, report = fold_onnx(onnx_model(text, w=values))
    (cone,) = report.cones
    assert cone.status == "declined"
    assert cone.reason == "Cast 'h' overflows float16 (the graph computes inf there)", dtype


# ---------------------------------------------------------------- rounding steps made visible


@pytest.mark.parametrize(
    ("text", "output", "reason"),
    [
        ("n = ReduceL2(a)\n y = Cast <to = 11> (n)", "double[1]", "widens to double a float"),
        ("n = ReduceL2(a)\n y = Cast <to = 6> (n)", "int32[1]", "converts to int32 a float"),
        ("m = Mul(a, a)\n p = Mul(m, a)\n y = Cast <to = 11> (p)", "double[4]", "widens"),
        ("n = ReduceL2(h)\n y = Cast <to = 1> (n)", "float[1]", "widens to float a float16"),
        ("n = ReduceL2(a)\n c = Cast <to = 1> (n)\n y = Cast <to = 11> (c)", "double[1]", "widens"),
    ],
    ids=["norm-to-double", "norm-to-int", "two-products", "float16-norm", "same-type-first"],
)
def test_widening_a_value_of_several_roundings_is_declined(
    text: str, output: str, reason: str
) -> None:
    """The graph rounds every step in the narrower type; a wider type shows those roundings,
    which rounding once cannot reproduce (a Cast to its own type on the way changes nothing)."""
    model = _constant_model(
        f"agraph () => ({output} y) {{ {text} }}",
        a=np.array([0.1, 0.2, 0.3, 0.7], np.float32),
        h=np.array([0.1, 0.2, 0.3, 0.7], np.float16),
    )
    with pytest.raises(NotExact, match=f"^Cast '[cy]' {reason}") as declined:
        _evaluate(model)
    hinted = str(declined.value).endswith("fold the model before its conversion to float16")
    assert hinted == ("float16" in reason)  # only a converted model has a float32 one to fold


def test_widening_one_product_of_stored_values_is_the_graphs_bits() -> None:
    """One float32 Mul is rounded correctly by the graph too: widened, it is its bits."""
    a, b = rand(64), rand(64)
    model = _constant_model(
        "agraph () => (double[64] y) { p = Mul(a, b)\n y = Cast <to = 11> (p) }", a=a, b=b
    )
    assert _evaluate(model).tobytes() == run(model, {})[0].tobytes()


# ---------------------------------------------------------------- sums of squares


SQUARE_SUMS = {
    "ReduceL2": "n = ReduceL2 <keepdims = 0> (a, axes)",
    "ReduceSumSquare": "n = ReduceSumSquare <keepdims = 0> (a, axes)",
    "ReduceSum(v*v)": "s = Mul(a, a)\n n = ReduceSum <keepdims = 0> (s, axes)",
    "ReduceSum(Pow(v,2))": "s = Pow(a, two)\n n = ReduceSum <keepdims = 0> (s, axes)",
    "LpNormalization": "n = LpNormalization <axis = 1> (a)",
}


def _square_sum(form: str, scale: float) -> onnx.ModelProto:
    output = "float[2, 4]" if form == "LpNormalization" else "float[2]"
    return _constant_model(
        f"agraph () => ({output} n) {{ {SQUARE_SUMS[form]} }}",
        a=np.array([[3.0, 4.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0]], np.float32) * np.float32(scale),
        axes=np.array([1], np.int64),
        two=np.array(2.0, np.float32),
    )


@pytest.mark.parametrize("form", list(SQUARE_SUMS))
@pytest.mark.parametrize(
    ("scale", "reason"),
    [(4e18, "overflows float"), (1e-20, "below the smallest normal float")],
    ids=["overflow", "underflow"],
)
def test_sums_of_squares_beyond_float32_are_declined(form: str, scale: float, reason: str) -> None:
    """Every element and every square is finite (4e18 * 4 squared is 2.6e38), but the sum of
    the squares, which ONNX Runtime computes in float32, is inf (4.8e38) or below float32's
    smallest normal (3e-39): the graph's norm is not what float64 computes. Declined, naming
    the node; the same graph in range evaluates."""
    in_range = ir.serde.deserialize_model(_square_sum(form, 1.0)).graph.outputs[0]
    assert np.all(np.isfinite(evaluate(in_range)[0]))
    pattern = f"^[A-Za-z2]+ 'n'.* {reason}"
    if scale < 1 and "(" in form:  # the sum itself of squares the graph stores: subnormal
        pattern = "^ReduceSum 'n' underflows float: its every non-zero value is below"
    with pytest.raises(NotExact, match=pattern):
        _evaluate(_square_sum(form, scale))


@pytest.mark.parametrize("form", list(SQUARE_SUMS))
def test_squares_held_in_subnormals_are_declined_in_every_spelling(form: str) -> None:
    """64 values of 2e-20: each square (4e-40) is a float32 subnormal, their sum (2.6e-38) is
    normal. The graph's norm lost the squares' precision (36 float32 ulps off on a measured
    case); ``Mul(v, v)`` and ``Pow(v, 2)`` were declined for it, ReduceL2, ReduceSumSquare and
    LpNormalization folded the exact value (t45). Ten times larger, every square is normal."""
    output = "float[1, 64]" if form == "LpNormalization" else "float[1]"

    def model(scale: float) -> onnx.ModelProto:
        return _constant_model(
            f"agraph () => ({output} n) {{ {SQUARE_SUMS[form]} }}",
            a=np.full((1, 64), scale, np.float32),
            axes=np.array([1], np.int64),
            two=np.array(2.0, np.float32),
        )

    assert np.all(np.isfinite(_evaluate(model(2e-19))))
    inside = "^[A-Za-z2]+ 'n': its squares underflow float: in some unit, every non-zero square"
    # squares the graph stores: judged by how far they move the norm (36 ulps measured)
    stored = "^ReduceSum 'n': its squares underflow float: the graph holds some unit's in"
    pattern = stored if "(" in form else inside
    with pytest.raises(NotExact, match=pattern):
        _evaluate(model(2e-20))


def test_squares_partly_in_subnormals_are_evaluated() -> None:
    """As for any result with values in the normal range (``_check_range``): the subnormal
    squares are within half a spacing of the largest, which ordinary rounding allows."""
    a = np.full((1, 64), 2e-20, np.float32)
    a[0, 0] = 1e-18
    text = "agraph () => (float[1] n) { n = ReduceL2 <keepdims = 0> (a, axes) }"
    assert np.isfinite(_evaluate(_constant_model(text, a=a, axes=np.array([1], np.int64))))


def test_float16_norms_sum_in_float32_as_onnx_runtime_does() -> None:
    """A float16 ReduceL2 whose sum of squares is beyond float16 (1e5) is summed in float32 by
    ONNX Runtime and folds; a float16 norm below float16's smallest normal is declined."""
    big = np.full((1, 1000), 10, np.float16)
    text = "agraph () => (float16[1] n) { n = ReduceL2 <keepdims = 0> (a, axes) }"
    model = _constant_model(text, a=big, axes=np.array([1], np.int64))
    assert _evaluate(model).tobytes() == run(model, {})[0].tobytes()
    small = _constant_model(text, a=np.full((1, 4), 2e-5, np.float16), axes=np.array([1]))
    with pytest.raises(NotExact, match="the norm is below the smallest normal float16"):
        _evaluate(small)


def test_a_zero_sum_of_squares_is_left_to_the_fold() -> None:
    """A zero-norm unit is no inexact sum: the fold declines it with its own reason."""
    model = _square_sum("ReduceL2", 0.0)
    np.testing.assert_array_equal(_evaluate(model), np.zeros(2, np.float32))


# ---------------------------------------------------------------- Pad and ConstantOfShape

PADS: dict[str, tuple[list[int], np.ndarray | None]] = {
    "constant": ([1, 0, 2, 3], None),
    "constant, a fill": ([0, 2, 1, 1], np.array(-1.5, np.float32)),
    "constant, cropping": ([-1, 2, 0, -2], np.array(0.25, np.float32)),
    "reflect": ([1, 2, 2, 0], None),
    "edge": ([2, 0, 1, 3], None),
    "wrap": ([1, 3, 2, 1], None),
}


@pytest.mark.parametrize("case", PADS)
def test_pad_is_the_graphs_tensor_bit_for_bit(case: str) -> None:
    """Pad moves x's elements and writes the fill value (or copies of x's own): the tensor
    ONNX Runtime and the ONNX reference compute, to the bit, in every mode."""
    pads, fill = PADS[case]
    mode = case.split(",")[0]
    fill_input = ", c" if fill is not None else ""
    initializers = {"x": rand(3, 4), "p": np.array(pads, np.int64)}
    if fill is not None:
        initializers["c"] = fill
    model = onnx_model(
        f"""<ir_version: 9, opset_import: ["" : 19]>
        agraph (float[1] z) => (float[?, ?] y, float[1] zz) {{
            y = Pad <mode = "{mode}"> (x, p{fill_input})
            zz = Identity(z)
        }}""",
        None,
        True,
        **initializers,
    )
    ours = _evaluate(model)
    feeds = {"z": np.zeros(1, np.float32)}
    runtime = run(model, feeds)[0]
    assert ours.tobytes() == runtime.tobytes() and ours.shape == runtime.shape
    if min(pads) >= 0:  # the reference (numpy's pad) does not crop
        outputs = ReferenceEvaluator(model).run(None, feeds)
        assert isinstance(outputs, list) and ours.tobytes() == outputs[0].tobytes()


def test_pad_with_axes_and_an_integer_fill() -> None:
    model = _constant_model(
        "agraph () => (int32[?, ?] y) { y = Pad(x, p, c, a) }",
        x=np.arange(6, dtype=np.int32).reshape(2, 3),
        p=np.array([1, 2], np.int64),
        c=np.array(7, np.int32),
        a=np.array([-1], np.int64),
    )
    (reference,) = ReferenceEvaluator(model).run(None, {})
    np.testing.assert_array_equal(_evaluate(model), reference)


@pytest.mark.parametrize(
    ("mode", "pads", "reason"),
    [
        ("reflect", [3, 0, 0, 0], "wider than the axis"),
        ("edge", [-1, 0, 0, 0], "negative width"),
    ],
)
def test_pad_widths_onnx_leaves_undefined_are_declined(
    mode: str, pads: list[int], reason: str
) -> None:
    model = _constant_model(
        f'agraph () => (float[?, ?] y) {{ y = Pad <mode = "{mode}"> (x, p) }}',
        x=rand(3, 4),
        p=np.array(pads, np.int64),
    )
    with pytest.raises(NotExact, match=reason):
        _evaluate(model)


def test_constant_of_shape_fills_its_value() -> None:
    model = _constant_model(
        "agraph () => (int64[?, ?] y) { y = ConstantOfShape <value = int64[1] {-3}> (s) }",
        s=np.array([2, 3], np.int64),
    )
    assert _evaluate(model).tobytes() == np.full((2, 3), -3, np.int64).tobytes()


# ---------------------------------------------------------------- axes out of range


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("y = ReduceL2(x, a)", "ReduceL2 'y': axis 2 is out of range for rank 2"),
        ("y = ReduceSum(x, n)", "ReduceSum 'y': axis -3 is out of range for rank 2"),
        ("y = ReduceSumSquare(x, a)", "ReduceSumSquare 'y': axis 2 is out of range for rank 2"),
        ("y = Slice(x, z, o, a)", "Slice 'y': axis 2 is out of range for rank 2"),
        ("y = Unsqueeze(x, t)", "Unsqueeze 'y': axis 3 is out of range for rank 3"),
        ("y = Squeeze(x, a)", "Squeeze 'y': axis 2 is out of range for rank 2"),
        ("y = Concat <axis = 2> (x, x)", "Concat 'y': axis 2 is out of range for rank 2"),
        ("y = Split <axis = -3, num_outputs = 1> (x)", "Split 'y': axis -3 is out of range"),
        ("y = Gather <axis = 2> (x, z)", "Gather 'y': axis 2 is out of range for rank 2"),
        ("y = Flatten <axis = 3> (x)", "Flatten 'y': axis 3 is out of range for rank 2"),
        ("y = LpNormalization <axis = 2> (x)", "LpNormalization 'y': axis 2 is out of range"),
        ("y = Pad(x, w, , a)", "Pad 'y': axis 2 is out of range for rank 2"),
        ("y = Transpose <perm = [-1, 0]> (x)", r"perm \[-1, 0\] is no permutation of rank 2"),
        ("y = Slice(x, zz, oo, s)", r"Slice 'y': an axis is sliced more than once in \[1, 1\]"),
    ],
    ids=[
        "ReduceL2",
        "ReduceSum",
        "ReduceSumSquare",
        "Slice",
        "Unsqueeze",
        "Squeeze",
        "Concat",
        "Split",
        "Gather",
        "Flatten",
        "LpNormalization",
        "Pad",
        "Transpose",
        "Slice-twice",
    ],
)
def test_axes_out_of_range_for_the_rank_are_declined(text: str, reason: str) -> None:
    """ONNX allows an axis in [-r, r-1] ([-r, r] for Flatten), each once; ONNX Runtime
    refuses a graph with another, so evaluating it is declined naming the axis, never done
    as if it were the axis modulo the rank (which would fold a graph that cannot run into one
    that runs)."""
    model = onnx_model(
        f"{HEADER}\nagraph () => (float[?, ?] y) {{ {text} }}",
        check=False,
        x=rand(2, 3),
        a=np.array([2], np.int64),
        n=np.array([-3], np.int64),
        t=np.array([3], np.int64),
        z=np.array([0], np.int64),
        o=np.array([1], np.int64),
        w=np.array([0, 0], np.int64),
        zz=np.array([0, 0], np.int64),
        oo=np.array([1, 1], np.int64),
        s=np.array([1, -1], np.int64),
    )
    with pytest.raises(NotExact, match=reason):
        _evaluate(model)


_LISTS = {  # an op with a list operand, and that list's values
    "y = ReduceL2(x, l)": [1],
    "y = ReduceSum(x, l)": [1],
    "y = ReduceSumSquare(x, l)": [1],
    "y = Squeeze(u, l)": [0],
    "y = Reshape(x, l)": [6],
    "y = Slice(x, l, e)": [1],
    "y = Pad(x, l)": [1, 1, 1, 1],
    "y = Split <num_outputs = 1> (x, l)": [2],
    "y = Unsqueeze(x, l)": [0],
}


@pytest.mark.parametrize(
    ("text", "rank"),
    [
        (text, rank)
        for text, values in _LISTS.items()
        for rank in (0, 2)
        if rank or len(values) == 1
    ],
)
def test_a_list_operand_of_another_rank_than_one_is_evaluated_only_where_the_runtime_runs_it(
    text: str, rank: int
) -> None:
    """Axes, a shape, starts, pads and sizes are 1-D tensors; ONNX Runtime refuses a graph
    that gives one of rank 0 or 2 (Unsqueeze also takes a 0-d one), so the fold declines it
    rather than read it flattened and turn a graph that cannot run into one that runs."""
    values = np.array(_LISTS[text], np.int64)
    listed = values.reshape(()) if rank == 0 else values.reshape(1, -1)
    model = onnx_model(
        f"{HEADER}\nagraph () => (float[?, ?] y) {{ {text} }}",
        check=False,
        x=rand(2, 3),
        u=rand(1, 3),
        l=listed,
        e=np.array([2], np.int64),
    )
    runs = rank == 0 and text.startswith("y = Unsqueeze")
    try:
        expected = run_unoptimized(model, {})[0]
    except Exception:
        assert not runs, "ONNX Runtime refused a graph it is known to run"
        with pytest.raises(NotExact, match=f"a list operand of rank {rank}, where ONNX wants 1"):
            _evaluate(model)
        return
    assert runs, "ONNX Runtime ran a graph the fold declines"
    assert _evaluate(model).tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("y = Flatten <axis = 2> (x)", (6, 1)),
        ("y = Flatten <axis = -2> (x)", (1, 6)),
        ("y = Unsqueeze(x, u)", (1, 2, 3)),
        ("y = ReduceSum(x, r)", (2, 1)),
    ],
    ids=["Flatten-rank", "Flatten-minus-rank", "Unsqueeze-minus-new-rank", "ReduceSum-repeat"],
)
def test_axes_at_the_ends_of_the_range_are_evaluated(text: str, shape: tuple[int, ...]) -> None:
    """The ends of each op's range, and a reduction axis named twice (one axis, as ONNX
    Runtime reduces it)."""
    dims = ", ".join("?" * len(shape))
    model = _constant_model(
        f"agraph () => (float[{dims}] y) {{ {text} }}",
        x=rand(2, 3),
        u=np.array([-3], np.int64),
        r=np.array([1, -1], np.int64),
    )
    assert _evaluate(model).shape == shape


@pytest.mark.parametrize("kind", ["weight-norm", "computed-weight"])
def test_a_graph_with_an_axis_out_of_range_is_not_folded(kind: str) -> None:
    """Axes computed from constants (``Reshape([5], [-1])``: the checker does not see them)
    beyond the rank of a weight-norm's ReduceL2 or of a Slice computing a weight: the input
    does not run, and the fold leaves it as it is, saying which axis."""
    if kind == "weight-norm":
        body = """
            a = Reshape(a0, m1)
            n = ReduceL2(v, a)
            d = Div(v, n)
            w = Mul(g, d)
            y = Gemm <transB = 1> (x, w)
        """
        arrays: dict[str, np.ndarray] = {
            "v": rand(6, 4),
            "g": rand(6, 1),
            "a0": np.array(5, np.int64),
        }
        reason, y = "ReduceL2 'n': axis 5 is out of range for rank 2", "float[2, 6] y"
    else:
        body = "a = Reshape(a0, m1)\nw = Slice(v, z, e, a)\ny = MatMul(x, w)"
        arrays = {"v": rand(4, 6), "a0": np.array(3, np.int64)}
        arrays |= {"z": np.array([0], np.int64), "e": np.array([3], np.int64)}
        reason, y = "Slice 'w': axis 3 is out of range for rank 2", "float[2, 3] y"
    text = f"{HEADER}\nagraph (float[2, 4] x) => ({y}) {{ {body} }}"
    model = onnx_model(text, None, True, m1=np.array([-1], np.int64), **arrays)
    with pytest.raises(Exception, match=r"axis|range|dimension"):
        run(model, {"x": rand(2, 4)})  # what ONNX Runtime says of the input
    folded, report = fold_onnx(model)
    (entry,) = report.sites if kind == "weight-norm" else report.cones
    assert entry.status == "declined" and entry.reason is not None and reason in entry.reason
    assert onnx.printer.to_text(folded.graph) == onnx.printer.to_text(model.graph)


# ------------------------------------------------------- where ONNX and ONNX Runtime differ


@pytest.mark.parametrize("end", [2**31 - 1, 2**63 - 1])
def test_a_negative_step_to_int_max_is_declined(end: int) -> None:
    """t335: ONNX Runtime reads an end of INT32_MAX or INT64_MAX as "to the end" whichever way
    the step goes (rows 3..0 of W); ONNX's semantics clamp it to the last row (nothing): the
    fold wrote an empty table, outputs changed, and said ok."""
    model = _constant_model(
        "agraph () => (float[?, 4] y) { y = Slice(w, s, e, a, k) }",
        w=rand(5, 4),
        s=np.array([3], np.int64),
        e=np.array([end], np.int64),
        a=np.array([0], np.int64),
        k=np.array([-1], np.int64),
    )
    with pytest.raises(NotExact, match=f"an end of {end} with a negative step"):
        _evaluate(model)


@pytest.mark.parametrize(("opset", "refused"), [(9, True), (10, True), (11, False)])
def test_negative_slice_axes_before_opset_11_are_declined(opset: int, refused: bool) -> None:
    """t335: a Slice-1 of axis -1 (which ONNX Runtime refuses, and ONNX defines from opset
    11 on) was folded into a model whose declared shapes inference then rejected: exit 3.
    Declined there; from opset 11 on, the axis counts from the back."""
    w = rand(3, 5)
    if opset == 9:
        body = "y = Slice <starts = [1], ends = [3], axes = [-1]> (w)"
    else:
        body = "y = Slice(w, s, e, a)"
    model = onnx_model(
        f"""<ir_version: 8, opset_import: ["" : {opset}]>
        agraph () => (float[?, ?] y) {{ {body} }}""",
        None,
        True,
        w=w,
        s=np.array([1], np.int64),
        e=np.array([3], np.int64),
        a=np.array([-1], np.int64),
    )
    if refused:
        with pytest.raises(NotExact, match=r"negative axes \[-1\], which Slice takes from opset"):
            _evaluate(model)
    else:
        np.testing.assert_array_equal(_evaluate(model), w[:, 1:3])


def test_a_negative_step_to_before_the_start_is_the_runtimes_slice() -> None:
    """INT64_MIN, the end ONNX recommends for slicing backward to the start, is read alike."""
    model = _constant_model(
        "agraph () => (float[?, 4] y) { y = Slice(w, s, e, a, k) }",
        w=rand(5, 4),
        s=np.array([3], np.int64),
        e=np.array([-(2**63)], np.int64),
        a=np.array([0], np.int64),
        k=np.array([-1], np.int64),
    )
    assert _evaluate(model).tobytes() == run(model, {})[0].tobytes()


@pytest.mark.parametrize("opset", [11, 13])
def test_squeezing_empty_axes_is_declined_where_an_axis_has_size_1(opset: int) -> None:
    """t335: ONNX Runtime squeezes every axis of size 1 where the axes given are empty, ONNX's
    semantics none (the folded table kept its 1 x 3 x 4 shape). Without such an axis the two
    agree."""

    def model(w: np.ndarray) -> onnx.ModelProto:
        node = helper.make_node("Squeeze", ["w"] if opset == 11 else ["w", "a"], ["y"])
        initializers = [onnx.numpy_helper.from_array(w, "w")]
        if opset == 11:
            node.attribute.append(
                helper.make_attribute("axes", [], attr_type=onnx.AttributeProto.INTS)
            )
        else:
            initializers.append(onnx.numpy_helper.from_array(np.zeros(0, np.int64), "a"))
        output = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        graph = helper.make_graph([node], "g", [], [output], initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])

    with pytest.raises(NotExact, match="empty axes, which squeeze none"):
        _evaluate(model(rand(1, 3, 4)))
    assert _evaluate(model(rand(2, 3))).shape == (2, 3)


def test_a_pad_of_negative_zero_fills_negative_zero() -> None:
    """t335: below opset 11 a ``value`` of -0.0 read as false padded +0.0."""
    model = onnx_model(
        """<ir_version: 8, opset_import: ["" : 10]>
        agraph () => (float[?, ?] y) { y = Pad <pads = [0, 0, 1, 1], value = -0.0> (w) }""",
        None,
        True,
        w=rand(2, 3),
    )
    ours = _evaluate(model)
    assert ours.tobytes() == run(model, {})[0].tobytes() and np.signbit(ours[2, 3])


# ---------------------------------------------------------------- Range


def _range_model(bounds: tuple[float, float, float], dtype: type) -> onnx.ModelProto:
    """y = Range(s, l, d), the bounds of ``dtype`` as initializers."""
    name = {"float32": "float"}.get(np.dtype(dtype).name, np.dtype(dtype).name)
    text = f"agraph () => ({name}[N] y) {{ y = Range (s, l, d) }}"
    arrays: dict[str, np.ndarray] = {
        n: np.array(b, dtype) for n, b in zip("sld", bounds, strict=True)
    }
    return _constant_model(text, **arrays)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64])
@pytest.mark.parametrize("bounds", [(0, 7, 2), (5, -4, -3), (3, 3, 1), (3, 9, -1), (-6, 6, 5)])
def test_an_integer_range_is_onnx_runtimes(bounds: tuple[int, int, int], dtype: type) -> None:
    """Up, down, empty either way, a last step short of the limit: its values and type."""
    model = _range_model(bounds, dtype)
    expected = run(model, {})[0]
    folded = _evaluate(model)
    assert (folded.dtype, folded.tobytes()) == (expected.dtype, expected.tobytes())


@pytest.mark.parametrize(
    ("bounds", "dtype", "reason"),
    [
        ((0, 4, 0), np.int64, "a delta of 0"),  # ONNX Runtime refuses it
        ((-(2**31), 2**31 - 1, 2**30), np.int32, "a span of 4294967295"),  # overflows int32
        ((0, 2**60, 2**58 - 1), np.int64, "a span of"),  # float64's count may round
        ((0.0, 3.0, 1.0), np.float32, "a Range of float values"),
    ],
    ids=["zero-delta", "span-overflows", "span-past-float64", "float"],
)
def test_a_range_whose_values_may_not_be_exact_is_declined(
    bounds: tuple[float, float, float], dtype: type, reason: str
) -> None:
    with pytest.raises(NotExact, match=f": {reason}"):
        _evaluate(_range_model(bounds, dtype))
