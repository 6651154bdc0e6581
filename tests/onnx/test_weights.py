"""The folded weight of a site (``wnpass.onnx.weights``): the common form's up-front checks and
lazy product agree with the graph's roundings and the evaluator's rules, and ``decline_reason``
(what ``inspect`` reports) is what the fold decides."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from tests.helpers import assert_close, inf_g, onnx_model, rand, run, zero_unit
from tests.onnx.helpers import computed_by_runtime, run_unoptimized
from wnpass import fold_onnx
from wnpass.onnx import weights
from wnpass.onnx.match import find_sites
from wnpass.onnx.weights import decline_reason, folded_weight

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def _site_model(
    body: str, x: str = "float[N, 64] x", y: str = "float[N, 32] y", **arrays: np.ndarray
) -> onnx.ModelProto:
    text = f"{HEADER}\nagraph ({x}) => ({y}) {{\n{body}\n}}"
    return onnx_model(text, None, True, **arrays)


def _weight(model: onnx.ModelProto) -> np.ndarray:
    (site,) = find_sites(ir.serde.deserialize_model(model))
    weight = folded_weight(site)
    assert not isinstance(weight, str), weight
    return weight.numpy()


def _declined(model: onnx.ModelProto) -> str:
    folded, report = fold_onnx(model)
    (site,) = report.sites
    assert site.status == "declined" and report.folded == 0
    assert onnx.printer.to_text(folded.graph) == onnx.printer.to_text(model.graph)
    assert site.reason is not None
    return site.reason


# ---------------------------------------------------------------- roundings in the product


def test_float_arithmetic_widened_to_double_is_declined() -> None:
    """The tester's model: v / ||v|| in float32, Cast to double, times a double g. The graph
    rounds the norm and the quotient in float32, which shows at double precision; rounding
    once cannot reproduce it, the fast path (v * g/||v|| in float64) even less."""
    body = """
        n = ReduceL2 <axes = [1]> (v)
        d = Div(v, n)
        c = Cast <to = 11> (d)
        w = Mul(c, g)
        y = Gemm <transB = 1> (x, w)
    """
    model = _site_model(
        body, "double[N, 64] x", "double[N, 32] y", v=rand(32, 64), g=rand(32, 1, dtype=np.float64)
    )
    assert "Cast 'c' widens to double a float value" in _declined(model)


def test_a_narrowing_cast_inside_the_product_rounds_there() -> None:
    """v / ||v|| in float32 cast to float16, then times g in float16: the graph rounds the
    quotient to float16 before g multiplies it, so the weight is
    ``round16(round16(v / ||v||) * g)``, not ``round16(v * g / ||v||)``."""
    body = """
        n = ReduceL2 <axes = [1]> (v)
        d = Div(v, n)
        c = Cast <to = 10> (d)
        w = Mul(c, g)
        y = Gemm <transB = 1> (x, w)
    """
    v, g = rand(32, 64), (rand(32, 1) * 7).astype(np.float16)
    model = _site_model(body, "float16[N, 64] x", "float16[N, 32] y", v=v, g=g)
    v64, g64 = v.astype(np.float64), g.astype(np.float64)
    quotient = (v64 / np.linalg.norm(v64, axis=1, keepdims=True)).astype(np.float16)
    expected = (quotient.astype(np.float64) * g64).astype(np.float16)
    once = (v64 * g64 / np.linalg.norm(v64, axis=1, keepdims=True)).astype(np.float16)
    assert not np.array_equal(expected, once)  # the rounding inside shows
    assert _weight(model).tobytes() == expected.tobytes()


@pytest.mark.parametrize("stored", [np.float32, np.float16], ids=["same-type", "widened-v"])
def test_casts_of_v_itself_keep_the_common_form(stored: type) -> None:
    """A Cast on v itself (to its own type, or widening a float16 v) moves a stored value
    exactly: the common form still applies, and the weight is rounded once."""
    body = """
        vc = Cast <to = 1> (v)
        n = ReduceL2 <axes = [1]> (vc)
        d = Div(vc, n)
        w = Mul(d, g)
        y = Gemm <transB = 1> (x, w)
    """
    v: np.ndarray = rand(32, 64).astype(stored)
    g = rand(32, 1)
    model = _site_model(body, v=v, g=g)
    (site,) = find_sites(ir.serde.deserialize_model(model))
    assert isinstance(weights._checked(site), weights._Checked)
    v64 = v.astype(np.float64)
    expected = (g * v64 / np.linalg.norm(v64, axis=1, keepdims=True)).astype(np.float32)
    assert _weight(model).tobytes() == expected.tobytes()


# ---------------------------------------------------------------- overflow on the way


def test_g_times_v_that_overflows_in_the_graph_is_declined() -> None:
    """``(g * v) / ||v||``: g * v is beyond float32 (inf in the graph) though the weight is
    not; the product must not be computed in another order and written."""
    body = """
        n = ReduceL2 <axes = [1]> (v)
        p = Mul(g, v)
        w = Div(p, n)
        y = Gemm <transB = 1> (x, w)
    """
    model = _site_model(body, v=rand(32, 64) * 1e10, g=np.full((32, 1), 1e30, np.float32))
    assert "Mul 'p' overflows float" in _declined(model)
    x = rand(2, 64)
    assert not np.all(np.isfinite(run(model, {"x": x})[0]))  # what ONNX Runtime computes


def test_a_negative_epsilon_that_overflows_the_weight_is_declined() -> None:
    """``v / (||v|| - 0.999)`` is not bounded by g: the weight overflows float32 here, which
    the graph computes as inf; it must be declined, never written as inf."""
    body = """
        n = ReduceL2 <axes = [1]> (v)
        e = Add(n, eps)
        d = Div(v, e)
        w = Mul(d, g)
        y = Gemm <transB = 1> (x, w)
    """
    v = np.zeros((32, 64), np.float32)
    v[:, 0] = 1.0
    g = np.full((32, 1), 1e38, np.float32)
    model = _site_model(body, v=v, g=g, eps=np.array(-0.999, np.float32))
    assert "overflows float" in _declined(model)


# ---------------------------------------------------------------- norms out of range


@pytest.mark.parametrize(
    ("scale", "reason"),
    [(1e20, "the sum of squares overflows float"), (1e-24, "below the smallest normal float")],
    ids=["overflow", "underflow"],
)
def test_norms_whose_squares_leave_float32_are_declined(scale: float, reason: str) -> None:
    """ONNX Runtime sums the squares in float32: inf (the weight 0) or 0 (the weight NaN).
    The fast path evaluates the norm by the evaluator's rules, so it declines too, naming the
    node, and ``inspect`` says the same."""
    body = """
        n = ReduceL2 <axes = [1]> (v)
        d = Div(v, n)
        w = Mul(d, g)
        y = Gemm <transB = 1> (x, w)
    """
    model = _site_model(body, v=rand(32, 64) * np.float32(scale), g=rand(32, 1))
    x = rand(2, 64)
    graph = run(model, {"x": x})[0]
    assert np.all(graph == 0) or np.all(np.isnan(graph))  # what the fold would have to keep
    declined = _declined(model)
    assert declined.startswith("ReduceL2 'n': ") and reason in declined
    (site,) = find_sites(ir.serde.deserialize_model(model))
    assert decline_reason(site) == declined


def test_norms_in_the_normal_range_fold_as_before() -> None:
    """Large and small units whose squares stay normal in float32 fold, rounded once."""
    body = """
        n = ReduceL2 <axes = [1]> (v)
        d = Div(v, n)
        w = Mul(d, g)
        y = Gemm <transB = 1> (x, w)
    """
    v, g = rand(32, 64), rand(32, 1)
    v[:16] *= np.float32(1e17)
    v[16:] *= np.float32(1e-17)
    v64 = v.astype(np.float64)
    expected = (g * v64 / np.linalg.norm(v64, axis=1, keepdims=True)).astype(np.float32)
    assert _weight(_site_model(body, v=v, g=g)).tobytes() == expected.tobytes()


# ---------------------------------------------------------------- what inspect reports


def _zero_unit() -> dict[str, np.ndarray]:
    return zero_unit(32, 64)


def _inf_g() -> dict[str, np.ndarray]:
    return inf_g(32, 64)


@pytest.mark.parametrize(
    ("body", "arrays", "reason"),
    [
        ("d = Div(v, n)\nw = Mul(d, g)", _zero_unit, "zero-norm units"),
        ("d = Div(v, n)\nw = Mul(d, g)", _inf_g, "g holds NaN or Inf"),
        ("p = Mul(g, v)\nw = Div(p, n)", _zero_unit, "zero-norm units"),
        ("d = Div(v, n)\nw = Mul(d, g)", lambda: {"v": rand(32, 64), "g": rand(32, 1)}, None),
    ],
    ids=["zero-norm", "inf-g", "zero-norm-general-path", "foldable"],
)
def test_decline_reason_is_what_the_fold_decides(body: str, arrays, reason: str | None) -> None:
    model = _site_model(
        f"n = ReduceL2 <axes = [1]> (v)\n{body}\ny = Gemm <transB = 1> (x, w)", **arrays()
    )
    (site,) = find_sites(ir.serde.deserialize_model(model))
    decided = decline_reason(site)
    _, report = fold_onnx(model)
    assert decided == report.sites[0].reason
    assert (decided is None) == (reason is None) and (reason or "") in (decided or "")


def test_decline_reason_of_the_common_form_does_not_compute_the_weight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """inspect stays cheap: the up-front checks (the norm and g) decide the common form."""

    def fail(*args: object) -> None:
        raise AssertionError("the weight was computed")

    monkeypatch.setattr(weights, "_multiply_into", fail)
    monkeypatch.setattr(weights, "_evaluated", fail)
    cases: list[dict[str, np.ndarray]] = [
        _zero_unit(),
        _inf_g(),
        {"v": rand(32, 64), "g": rand(32, 1)},
    ]
    for arrays in cases:
        model = _site_model(
            "n = ReduceL2 <axes = [1]> (v)\nd = Div(v, n)\nw = Mul(d, g)\n"
            "y = Gemm <transB = 1> (x, w)",
            "float[N, 64] x",
            "float[N, 32] y",
            **arrays,
        )
        (site,) = find_sites(ir.serde.deserialize_model(model))
        decline_reason(site)


# ---------------------------------------------------------------- the common form's bound

_OVERFLOWING = {
    "v": np.array([[100.0, 0.0], [3.0, 4.0]], np.float32),
    "g": np.array([[1e37], [1.0]], np.float32),
}


@pytest.mark.parametrize(
    ("norm", "epsilons"),
    [
        ("r = Reciprocal(n)\ne = Add(r, eps)", {"eps": np.array(0.09, np.float32)}),
        ("a = Add(n, one)\ne = Add(a, eps)", {"one": np.float32(1), "eps": np.float32(-91)}),
    ],
    ids=["epsilon-after-the-reciprocal", "two-epsilons"],
)
def test_an_epsilon_the_bound_does_not_cover_is_evaluated_node_by_node(
    norm: str, epsilons: dict[str, np.ndarray]
) -> None:
    """``(g * v) * (1/||v|| + 0.09)`` and ``(g * v) / ((||v|| + 1) - 91)``: the evaluated
    norm is below ||v||, so ``|g| * max(norm, 1/norm)`` bounds nothing: g * v overflows
    float32 (inf in the graph) though the bound is finite. The general path declines it; the
    report gives no epsilon, for no one number is the norm's."""
    combine = "w = Mul(p, e)" if "Reciprocal" in norm else "w = Div(p, e)"
    body = f"n = ReduceL2 <axes = [1]> (v)\n{norm}\np = Mul(g, v)\n{combine}\ny = Gemm(x, w)"
    arrays = {**_OVERFLOWING, **{k: np.asarray(a) for k, a in epsilons.items()}}
    model = _site_model(body, "float[N, 2] x", "float[N, 2] y", **arrays)
    (site,) = find_sites(ir.serde.deserialize_model(model))
    assert weights._checked(site) is None and site.form == "ReduceL2"
    assert "Mul 'p' overflows float" in _declined(model)
    assert not np.all(np.isfinite(run(model, {"x": np.ones((1, 2), np.float32)})[0]))


@pytest.mark.parametrize(
    ("v", "g"),
    [
        # g * v is 1e-30 * 1e-15 where v is non-zero, every non-zero value subnormal: the
        # common form read |g| as one per unit (its largest, 1) and folded 40% off (t55)
        ([[1e-15, 0.0], [2e-15, 0.0], [-3e-15, 0.0]], [[1e-30, 1.0]]),
        # v / ||v|| holds 1e-45 for 1e-44 (subnormal, partly), which a gain of 3e38 scales up
        # to 4.2e-7 in the graph: the general path folded 5.9e-7, 40% off (t58)
        ([[3.0, 4.0, 1e-44]], [[1e-30, 1e-30, 3e38]]),
    ],
    ids=["wholly-subnormal", "partly-subnormal"],
)
def test_a_gain_that_varies_within_a_unit_is_no_weight_norm(v: list, g: list) -> None:
    """A gain that varies along an axis the norm reduces scales each element of a unit by its
    own factor: the graph's few-bit subnormals come out as large as the rest. Weight norm has
    one gain per unit: such a site is declined, whichever path would compute it."""
    body = "n = ReduceL2 <axes = [1]> (v)\ngv = Mul(g, v)\nw = Div(gv, n)\ny = Gemm(x, w)"
    v_array, g_array = np.array(v, np.float32), np.array(g, np.float32)
    rows, cols = v_array.shape
    model = _site_model(body, f"float[N, {rows}] x", f"float[N, {cols}] y", v=v_array, g=g_array)
    (site,) = find_sites(ir.serde.deserialize_model(model))
    reason = "g varies along axis 1 of v, which the norm reduces: no weight norm of v's units"
    assert _declined(model) == reason and decline_reason(site) == reason


def test_a_gain_stored_at_v_s_shape_with_one_value_per_unit_folds() -> None:
    """Judged by its shape, such a gain was declined as varying within units (t59)."""
    body = "n = ReduceL2 <axes = [1]> (v)\ngv = Mul(g, v)\nw = Div(gv, n)\ny = Gemm(x, w)"
    g = np.repeat(rand(3, 1), 4, axis=1)
    model = _site_model(body, "float[N, 3] x", "float[N, 4] y", v=rand(3, 4), g=g)
    folded, report = fold_onnx(model)
    assert [s.status for s in report.sites] == ["folded"]
    feeds = {"x": rand(2, 3)}
    assert_close(run(folded, feeds), run(model, feeds))


def test_a_norm_in_a_numerator_is_evaluated_node_by_node() -> None:
    """``g / (||v|| / v)``: the graph's ``||v|| / v`` is inf for a tiny v, and its weight 0
    there. The common form bounds ``g * v``, ``g / ||v||`` and ``v / ||v||`` only, so it folded
    the exact weight (t58); with a Cast in the product the general path declined it."""
    body = "n = ReduceL2 <axes = [1]> (v)\nnv = Div(n, v)\nw = Div(g, nv)\ny = Gemm(x, w)"
    v = np.array([[1e5, 1e-34, 0.5], [2.0, 3.0, 1e-37]], np.float32)
    g = np.array([[1e30], [2e30]], np.float32)
    model = _site_model(body, "float[N, 2] x", "float[N, 3] y", v=v, g=g)
    (site,) = find_sites(ir.serde.deserialize_model(model))
    assert weights._checked(site) is None
    assert _declined(model) == "Div 'nv' overflows float (the graph computes inf there)"


def test_a_constant_of_shape_weight_has_its_value_s_dtype() -> None:
    """``ConstantOfShape(value=0.5)`` without type info was read as int64 (its input, the
    shape): its cone and a gain made of it were declined (t58)."""
    body = """
        s = ConstantOfShape <value = float[1] {0.5}> (shape)
        n = ReduceL2 <axes = [1]> (v)
        gv = Mul(s, v)
        w = Div(gv, n)
        y = Gemm(x, w)
    """
    model = _site_model(
        body, "float[N, 3] x", "float[N, 4] y", v=rand(3, 4), shape=np.array([3, 1], np.int64)
    )
    folded, report = fold_onnx(model)
    assert [(s.status, s.dtype) for s in report.sites] == [("folded", "float")]
    feeds = {"x": rand(2, 3)}
    assert_close(run(folded, feeds), run(model, feeds))


@pytest.mark.parametrize("g", [1.0, 2.0])
def test_a_reciprocal_of_the_norm_is_evaluated_node_by_node(g: float) -> None:
    """``(g * v) * Reciprocal(||v||)`` in float16 with norms of about 25000: ``1 / ||v||`` is
    wholly subnormal whatever g. The common form bounds ``g / ||v||`` only, so it folded the
    site for g = 2 and the general path declined it for g = 1 (t55)."""
    body = """
        n = ReduceL2 <axes = [1], keepdims = 1> (v)
        r = Reciprocal(n)
        gv = Mul(g, v)
        w = Mul(gv, r)
        y = Gemm(x, w)
    """
    v = (np.random.default_rng(10).uniform(0.5, 1, (4, 8)) * 12000).astype(np.float16)
    model = _site_model(
        body, "float16[N, 4] x", "float16[N, 8] y", v=v, g=np.full((4, 1), g, np.float16)
    )
    assert _declined(model).startswith("Reciprocal 'r' underflows float16")


def test_a_norm_truncated_to_an_integer_is_evaluated_node_by_node() -> None:
    """A norm cast to int64 and back is truncated (1.9 -> 1), below ||v||: g * v overflows
    float32 where the bound on the truncated norm does not see it."""
    body = """
        n = ReduceL2 <axes = [1]> (v)
        i = Cast <to = 7> (n)
        f = Cast <to = 1> (i)
        p = Mul(g, v)
        w = Div(p, f)
        y = Gemm(x, w)
    """
    v = np.array([[1.9, 0.0], [3.0, 4.0]], np.float32)
    g = np.array([[2e38], [1.0]], np.float32)
    model = _site_model(body, "float[N, 2] x", "float[N, 2] y", v=v, g=g)
    assert "Mul 'p' overflows float" in _declined(model)


# ---------------------------------------------------------------- the weight's declared type


def _function_site(declared: int) -> onnx.ModelProto:
    """A weight-norm site in a model-local function whose value_info gives the weight
    ``declared`` (the graph computes it in float32): valid for the checker and ONNX Runtime,
    which do not hold a function's value_info against its nodes."""
    v, g = rand(6, 4), rand(6, 1)
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    body = [
        helper.make_node("Constant", [], ["v"], value=numpy_helper.from_array(v, "v")),
        helper.make_node("Constant", [], ["g"], value=numpy_helper.from_array(g, "g")),
        helper.make_node("ReduceL2", ["v"], ["n"], axes=[1]),
        helper.make_node("Div", ["v", "n"], ["d"]),
        helper.make_node("Mul", ["g", "d"], ["w"]),
        helper.make_node("Gemm", ["X", "w"], ["Y"], transB=1),
    ]
    function = helper.make_function("loc", "Lin", ["X"], ["Y"], body, [helper.make_opsetid("", 13)])
    function.value_info.extend([helper.make_tensor_value_info("w", declared, [6, 4])])
    graph = helper.make_graph(
        [helper.make_node("Lin", ["x"], ["y"], domain="loc")],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 6])],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("loc", 1)]
    model = helper.make_model(graph, opset_imports=opsets, functions=[function])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model


def test_a_weight_declared_in_another_type_than_computed_is_declined() -> None:
    """The common form reads the weight's dtype from what the graph computes (v's), and
    declines where the type info says otherwise, as the general path does: written in the
    declared float16, the folded weight would not fit its Gemm."""
    model = _function_site(onnx.TensorProto.FLOAT16)
    x = rand(2, 4)
    assert np.all(np.isfinite(run(model, {"x": x})[0]))  # the input runs
    reason = "the graph says float16 where it computes float"
    assert _declined(model) == reason
    (site,) = find_sites(ir.serde.deserialize_model(model))
    assert weights._checked(site) == reason and decline_reason(site) == reason
    declared_right = _function_site(onnx.TensorProto.FLOAT)
    folded, report = fold_onnx(declared_right)
    assert report.folded == 1
    # the suite's float32 tolerances, which an output near zero needs (rtol alone failed one
    # of -9.3e-05 by 2e-09, with other random values)
    assert_close(run(folded, {"x": x}), run(declared_right, {"x": x}))


# ---------------------------------------------------------------- reasons true of the graph


def _norm_model(v: np.ndarray, eps: float | None = None) -> onnx.ModelProto:
    """``x @ (v / max(||v||, eps))^T`` over v's rows (no epsilon: ``Identity`` of the norm)."""
    guard = "n = Max(n0, eps)" if eps is not None else "n = Identity(n0)"
    body = f"n0 = ReduceL2 <axes = [1]> (v)\n{guard}\nw = Div(v, n)\ny = Gemm <transB = 1> (x, w)"
    rows, cols = v.shape
    arrays = {"v": v} if eps is None else {"v": v, "eps": np.array(eps, np.float32)}
    return _site_model(body, f"float[2, {cols}] x", f"float[2, {rows}] y", **arrays)


def test_an_empty_weight_is_folded_to_the_empty_tensor_the_graph_computes() -> None:
    """v of shape (4, 0): the norms are 0 but divide no element; the weight is empty."""
    model = _norm_model(np.zeros((4, 0), np.float32))
    folded, report = fold_onnx(model)
    assert report.folded == 1, report.sites[0].reason
    assert list(folded.graph.initializer[0].dims) == [4, 0]
    feeds = {"x": np.zeros((2, 0), np.float32)}
    assert np.array_equal(run_unoptimized(folded, feeds)[0], run_unoptimized(model, feeds)[0])


def test_an_infinite_epsilon_is_folded_to_the_zero_weight_the_graph_computes() -> None:
    """max(||v||, inf) is inf for finite v: v / inf is 0 (its sign kept), bit for bit."""
    model = _norm_model(rand(4, 6), np.inf)
    folded, report = fold_onnx(model)
    assert report.folded == 1, report.sites[0].reason
    feeds = {"x": rand(2, 6)}
    graphs = computed_by_runtime(model, "w", feeds)
    weight = onnx.numpy_helper.to_array(folded.graph.initializer[0])
    assert not graphs.any() and weight.tobytes() == graphs.tobytes()


def test_a_nan_epsilon_is_declined_for_the_nan_norm_not_blamed_on_v() -> None:
    """max(||v||, NaN) is NaN (Max passes NaN on, in ONNX Runtime too): v is finite and has
    no zero unit; the reason says what makes the weight NaN."""
    model = _norm_model(rand(4, 6), np.nan)
    assert np.isnan(computed_by_runtime(model, "w", {"x": rand(2, 6)})).all()
    assert _declined(model) == weights.NAN_NORM


def test_v_holding_inf_is_declined_as_v_holding_inf() -> None:
    v = rand(4, 6)
    v[1, 2] = np.inf
    assert _declined(_norm_model(v)) == "v holds NaN or Inf"


# ------------------------------------------------------- operands computed from constants

# a weight-norm site of the value ``v`` an operand's body computes, with gain g, read by a Gemm
V_SITE = """
    n = ReduceL2 <axes = [1]> (v)
    d = Div(v, n)
    w = Mul(d, g)
    y = Gemm <transB = 1> (x, w)
"""


def _operand_site(
    body: str, x: str = "float[N, 64] x", y: str = "float[N, 32] y", **arrays: np.ndarray
) -> onnx.ModelProto:
    """A model of ``body``, which computes ``v`` (and maybe ``g``), and its weight-norm site."""
    return _site_model(body + V_SITE, x, y, **arrays)


def test_an_operand_the_graph_rounds_on_the_way_is_declined() -> None:
    """t335: ``v = (A + B) - A`` with B below half an ulp of A is 0 in float32 (the graph's
    weight NaN), B exactly; ``g = (1 + d) - 1`` likewise. The fold computed the weight from
    the exact operands, wrote a finite weight over the graph's NaN (v) or one 55% away (g),
    and said ok: an operand that holds a rounding of the graph's is declined, with the ops."""
    a, small = np.ones((32, 64), np.float32), (rand(32, 64) * 1e-9).astype(np.float32)
    g = np.abs(rand(32, 1)) + 0.5
    v_rounded = """
        s = Add(a, b)
        v = Sub(s, a)
    """
    reason = _declined(_operand_site(v_rounded, a=a, b=small, g=g))
    assert reason.startswith("v is computed from constants by Add, Sub, which the graph holds")
    g_rounded = """
        s = Add(one, d0)
        g = Sub(s, one)
    """
    one = np.ones((32, 1), np.float32)
    model = _operand_site(g_rounded, one=one, d0=(g * 1e-7).astype(np.float32), v=rand(32, 64))
    assert _declined(model).startswith("g is computed from constants by Add, Sub")
    (site,) = find_sites(ir.serde.deserialize_model(model))
    assert decline_reason(site) == _declined(model)  # inspect says what the fold does


def test_an_operand_that_leaves_the_normal_range_on_the_way_or_sums_is_declined() -> None:
    """t338: ``v = (m * 1e-30) * 1e30`` holds one unit in subnormals on the way (a few bits
    of it kept), and its weight moved ONNX Runtime's outputs by 3% of scale; a ``ReduceSum``
    of ``[a, b, -a]`` is summed in an order ONNX Runtime chooses (off by 1.89 of scale):
    products are compared with their exact values too, and a sum is declined as it is."""
    m, g = rand(32, 64), np.abs(rand(32, 1)) + 0.5
    m[3] *= 1e-14  # this unit goes below float32's normal range at m * 1e-30
    scaled = """
        s = Mul(m, tiny)
        v = Mul(s, huge)
    """
    tiny, huge = np.array(1e-30, np.float32), np.array(1e30, np.float32)
    reason = _declined(_operand_site(scaled, m=m, tiny=tiny, huge=huge, g=g))
    assert reason.startswith("v is computed from constants by Mul, which the graph holds")
    summed = """
        c = Concat <axis = 0> (a, b, na)
        v = ReduceSum <keepdims = 0> (c, zero)
    """
    a = rand(1, 32, 64) * 1e8
    model = _operand_site(summed, a=a, b=rand(1, 32, 64), na=-a, zero=np.array([0], np.int64), g=g)
    assert "ONNX Runtime chooses the order of a ReduceSum's additions" in _declined(model)


def test_a_float16_operand_masked_exactly_folds() -> None:
    """t340: ``v = v0 * mask`` (PixelCNN's masked conv) in a float16 model was declined: the
    operand's check ran the bit-for-bit cone's rule that ONNX Runtime computes float16
    arithmetic in float32. A mask of 0 and 1 is exact either way: it folds."""
    body = """
        v = Mul(v0, m)
    """
    v0 = rand(32, 64).astype(np.float16)
    mask = (rand(32, 64) > 0).astype(np.float16)
    mask[:, 0] = 1  # no unit all masked: a zero norm is declined as such
    g = (np.abs(rand(32, 1)) + 0.5).astype(np.float16)
    model = _operand_site(body, "float16[N, 64] x", "float16[N, 32] y", v0=v0, m=mask, g=g)
    v = v0.astype(np.float64) * mask
    expected = g.astype(np.float64) * v / np.linalg.norm(v, axis=1, keepdims=True)
    np.testing.assert_array_equal(_weight(model), expected.astype(np.float16))


# the rounding of a float16 product, ``Cast16(Cast32(a * b) - Cast32(a) * Cast32(b))``
ROUNDING_SHOWN = """
    p = Mul(a, b)
    pw = Cast <to = 1> (p)
    aw = Cast <to = 1> (a)
    bw = Cast <to = 1> (b)
    q = Mul(aw, bw)
    r = Sub(pw, q)
    rh = Cast <to = 10> (r)
"""


@pytest.mark.parametrize("read", ["added", "concatenated", "widened"])
def test_a_float16_step_that_rounds_is_declined_whatever_reads_it(read: str) -> None:
    """t341: ``v = v0 + rh``, ``rh`` the rounding of a float16 ``Mul``, which ONNX Runtime
    computes in float32 (``rh`` 0 there, up to 4 rounded step by step): the fold wrote a
    weight 0.82 from ONNX Runtime's. t342: ``rh`` concatenated to v0 instead, and a float32
    model's ``v = Concat(Cast32(v16 * s16), v32)``: the exact evaluation rounds a float16
    ``Mul`` a widening Cast reads to its type, as the graph means it, and agreed with the
    step-by-step one, so the fold wrote the rounded product (or its rounding error, 45% of
    the outputs' scale) where ONNX Runtime keeps it unrounded. Float16 arithmetic in an
    operand folds only where no step rounds: one that does is declined where it is."""
    if read == "widened":
        body = """
            p = Mul(a, b)
            pw = Cast <to = 1> (p)
            v = Concat <axis = 1> (pw, v32)
        """
        a, b = rand(32, 32).astype(np.float16), (rand(32, 1) + 2).astype(np.float16)
        arrays = {"a": a, "b": b, "v32": rand(32, 32), "g": np.abs(rand(32, 1)) + 0.5}
        model = _operand_site(body, **arrays)
    else:
        width = 64 if read == "added" else 32
        a, b = ((rand(32, width) * 40).astype(np.float16) for _ in range(2))
        g = (np.abs(rand(32, 1)) + 0.5).astype(np.float16)
        arrays = {"a": a, "b": b, "v0": rand(32, width).astype(np.float16), "g": g}
        v = "v = Add(v0, rh)" if read == "added" else "v = Concat <axis = 1> (v0, rh)"
        x, y = "float16[N, 64] x", "float16[N, 32] y"
        model = _operand_site(ROUNDING_SHOWN + v, x, y, **arrays)
    assert _declined(model).startswith("v: Mul 'p' on float16 rounds: ONNX Runtime computes")


@pytest.mark.parametrize("op", ["Mul", "Div", "Add"])
def test_an_operand_that_cannot_cancel_or_rounds_nothing_folds(op: str) -> None:
    """``v = W * 0.1`` and ``v = W / 3`` round once each (an ulp at most, no cancellation:
    as close to the graph's weight as a plain site's, t336), ``v = W + W`` rounds nothing:
    each folds to the weight its exact value gives."""
    body = f"v = {op}(m, c)"
    m, g = rand(32, 64), np.abs(rand(32, 1)) + 0.5
    c = {"Mul": np.float32(0.1), "Div": np.float32(3.0), "Add": m}[op]
    model = _operand_site(body, m=m, c=np.asarray(c, np.float32), g=g)
    exact = {"Mul": np.multiply, "Div": np.divide, "Add": np.add}[op]
    v = exact(m.astype(np.float64), np.asarray(c, np.float64))
    expected = g * v / np.linalg.norm(v, axis=1, keepdims=True)
    np.testing.assert_array_equal(_weight(model), expected.astype(np.float32))
