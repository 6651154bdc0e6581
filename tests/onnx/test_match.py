"""The matcher: the axes a norm really reduces, and a weight normalized twice."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest

from tests.helpers import assert_close, onnx_model, rand, run
from tests.onnx.helpers import HEADER17, TWICE, assert_folds, gemm_model, run_unoptimized
from wnpass import fold_onnx, inspect_onnx
from wnpass.onnx import match


def test_axes_of_a_transposed_norm_are_those_it_reduces() -> None:
    """Transpose -> ReduceL2(axes=1) -> Transpose reduces axis 0 of v, whatever g's shape."""
    text = f"""
        {HEADER17}
        agraph () => (float[4, 6] w) {{
            vt = Transpose <perm = [1, 0]> (v)
            n0 = ReduceL2 <axes = [1]> (vt)
            n = Transpose <perm = [1, 0]> (n0)
            d = Div(v, n)
            w = Mul(g, d)
        }}
    """
    model = onnx_model(text, v=rand(4, 6), g=rand(4, 1))
    (site,) = inspect_onnx(model).sites
    assert site.axes == [0]


def _reshaped_norm() -> onnx.ModelProto:
    """The dynamo form of ``dim=1`` on a 3-d weight: Transpose, Reshape, reduce, back."""
    text = f"""
        {HEADER17}
        agraph () => (float[3, 4, 5] w) {{
            vt = Transpose <perm = [1, 0, 2]> (v)
            r = Reshape(vt, shape)
            n0 = ReduceL2 <axes = [1]> (r)
            n1 = Reshape(n0, back)
            n = Transpose <perm = [1, 0, 2]> (n1)
            d = Div(v, n)
            w = Mul(g, d)
        }}
    """
    shape, back = np.array([4, 15], np.int64), np.array([4, 1, 1], np.int64)
    return onnx_model(text, v=rand(3, 4, 5), g=rand(1, 4, 1), shape=shape, back=back)


def test_axes_of_a_reshaped_norm() -> None:
    """The dynamo form of ``dim=1`` on a 3-d weight: Transpose, Reshape, reduce, back."""
    model = _reshaped_norm()
    (site,) = inspect_onnx(model).sites
    assert site.axes == [0, 2]


def test_a_norm_of_reshaped_v_over_parts_of_an_axis_is_not_reported_as_all() -> None:
    """``g * R(v) / ||R(v)||`` with R a Reshape 4x6 -> 2x12 reduced over axis 1: each norm
    takes two rows of v, no set of v's axes. The report said ``all`` (None: the whole
    tensor); it says so in words, and the site still folds."""
    text = f"""
        {HEADER17}
        agraph () => (float[2, 12] w) {{
            r = Reshape(v, shape)
            n = ReduceL2 <axes = [1]> (r)
            d = Div(r, n)
            w = Mul(g, d)
        }}
    """
    model = onnx_model(text, v=rand(4, 6), g=rand(2, 1), shape=np.array([2, 12], np.int64))
    (site,) = inspect_onnx(model).sites
    assert (site.axes, site.status) == (match.NOT_AXES_OF_V, "foldable")


def test_a_weight_normalized_twice_has_no_wrong_reason() -> None:
    model = onnx_model(TWICE, v=rand(6, 4), g=rand(6, 1), eps=np.array(1e-12, np.float32))
    sites = inspect_onnx(model).sites
    assert [(s.status, s.reason, s.axes) for s in sites] == [("foldable", None, [1])] * 2


# The norm of v in float32, laid out: a float16 Conv weight normed per input channel (dim=1).
CAST_LAYOUT = """
    <ir_version: 8, opset_import: ["" : 18]>
    agraph (float16[1, 6, 8] x) => (float16[1, 4, 6] y) {
        vc = Cast <to = 1> (v)
        vt = Transpose <perm = [1, 0, 2]> (vc)
        vr = Reshape(vt, shape)
        n = ReduceL2 <keepdims = 1> (vr, axis)
        nc = Cast <to = 10> (n)
        nb = Reshape(nc, back)
        d = Div(v, nb)
        w = Mul(d, g)
        y = Conv(x, w)
    }
"""


def _cast_layout() -> onnx.ModelProto:
    return onnx_model(
        CAST_LAYOUT,
        v=rand(4, 6, 3).astype(np.float16),
        g=(np.abs(rand(1, 6, 1)) + 0.5).astype(np.float16),
        shape=np.array([6, -1], np.int64),
        axis=np.array([1], np.int64),
        back=np.array([1, 6, 1], np.int64),
    )


def test_a_cast_before_the_layout_ops_folds_and_reports_its_axes() -> None:
    """The indices run through the layout ops cannot go through a Cast to float (an
    IndexError ended every fold and inspect of such a model): the axes are then g's."""
    model = _cast_layout()
    (site,) = inspect_onnx(model).sites
    assert (site.status, site.axes) == ("foldable", [0, 2])
    _, report = fold_onnx(model)
    assert [(s.status, s.axes) for s in report.sites] == [("folded", [0, 2])]


def test_a_large_v_takes_its_axes_from_the_norms_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """Index arrays of a large v's size cost memory and time (a 128 MiB weight: 1.3 GiB and
    5x the fold): above the limit, the axes are read from the norm's shape as it divides v."""
    model = _reshaped_norm()
    ran: list[object] = []

    def indexed(*args: object) -> list[int]:
        ran.append(args)
        return [0, 2]

    monkeypatch.setattr(match, "_reduced_axes", indexed)
    monkeypatch.setattr(match, "_INDEXED_AXES", 59)
    (site,) = inspect_onnx(model).sites
    assert site.axes == [0, 2] and ran == []


def test_a_reshaped_g_leaves_the_axes_where_v_is_not_indexed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above the index limit the axes come from the norm's shape, whatever shape g has, or
    however it is computed (a Reshape of g was read as "all")."""
    model = onnx_model(
        CAST_LAYOUT.replace("w = Mul(d, g)", "gr = Reshape(g1, back)\n        w = Mul(d, gr)"),
        v=rand(4, 6, 3).astype(np.float16),
        g1=(np.abs(rand(6)) + 0.5).astype(np.float16),
        shape=np.array([6, -1], np.int64),
        axis=np.array([1], np.int64),
        back=np.array([1, 6, 1], np.int64),
    )
    monkeypatch.setattr(match, "_INDEXED_AXES", 10)
    (site,) = inspect_onnx(model).sites
    assert (site.status, site.axes) == ("foldable", [0, 2])


def test_a_gemm_bias_is_named_as_its_input_c_not_by_a_transpose_attribute() -> None:
    """Gemm's third input is C, the bias: transA and transB say nothing about it."""
    text = f"""
        {HEADER17}
        agraph (float[6, 2] x) => (float[2, 4] y) {{
            b = Reshape(b2, s)
            y = Gemm <transA = 1, transB = 1> (x, w, b)
        }}
    """
    model = onnx_model(text, w=rand(4, 6), b2=rand(1, 4), s=np.array([4], np.int64))
    (cone,) = inspect_onnx(model).cones
    assert cone.consumers == ["Gemm(C)"]


NO_EPSILON: dict[str, tuple[str, str, dict[str, Any], str]] = {
    # the epsilon an initializer that a graph input overrides (IR version 4 and above)
    "overridable": (
        "(float[2, 4] x, float e)",
        "m = Add(n, e)",
        {"e": np.array(1e-5, np.float32)},
        "the norm's epsilon 'e' is a graph input",
    ),
    "per-unit": (
        "(float[2, 4] x)",
        "m = Add(n, e)",
        {"e": np.full((3, 1), 1e-5, np.float32)},
        "the norm's epsilon 'e' is not a scalar",
    ),
    "clip-with-a-max": (
        "(float[2, 4] x)",
        "m = Clip(n, lo, hi)",
        {"lo": np.array(1e-5, np.float32), "hi": np.array(2.0, np.float32)},
        "a Clip with a max bounds the norm from above",
    ),
}


@pytest.mark.parametrize("case", NO_EPSILON)
def test_a_norm_whose_epsilon_is_no_constant_scalar_is_declined_as_such(case: str) -> None:
    """A weight-norm site whose epsilon the fold cannot use is declined with that reason, and
    its axes are still the norm's (not the whole tensor's)."""
    inputs, epsilon, arrays, reason = NO_EPSILON[case]
    text = f"""
        {HEADER17}
        agraph {inputs} => (float[2, 3] y) {{
            n = ReduceL2 <axes = [1]> (v)
            {epsilon}
            d = Div(v, m)
            w = Mul(d, g)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, v=rand(3, 4), g=rand(3, 1), **arrays)
    for report in (inspect_onnx(model), fold_onnx(model)[1]):
        (site,) = report.sites
        assert (site.status, site.reason, site.axes) == ("declined", reason, [1])


def test_a_product_of_constants_that_is_no_weight_norm_is_a_computed_weight() -> None:
    """A norm raised to a power the matcher does not read (``Pow(sum of squares, 0.25)``) was a
    declined weight-norm site of axes '?', and an export of it not deployable (t138: a
    max-norm clamp ``v * min(g / ||v||, 1)`` the same): it is no ``g * v / ||v||``, but a
    weight computed from constants, left as it is where the fold cannot compute it exactly,
    under the name its consumer reads."""
    body = "q = ReduceSumSquare <axes = [1]> (v)\n n = Pow(q, p)\n d = Div(v, n)\n w = Mul(d, g)"
    model = gemm_model(body, p=np.array(0.25, np.float32))
    report = inspect_onnx(model)
    assert report.sites == [] and [(c.name, c.status, c.reason) for c in report.cones] == [
        ("w", "declined", "computed by Pow, not by layout, cast or exactly rounded arithmetic ops")
    ]


@pytest.mark.parametrize("axis", [2, -3])
def test_an_axis_out_of_range_is_shown_as_written_not_wrapped(axis: int) -> None:
    """LpNormalization over axis 2 of a 2-D v is declined (ONNX Runtime refuses it); its axes
    column showed 0, the axis modulo the rank, as if it were a norm over the units."""
    body = f"d = LpNormalization <axis = {axis}, p = 2> (v)\n w = Mul(d, g)"
    model = gemm_model(body)
    (site,) = inspect_onnx(model).sites
    assert site.status == "declined" and "out of range" in str(site.reason)
    assert site.axes == [axis]


# The norm of each column of v (its axis 0) through Transposes, with a gain of shape [1, 1].
COLUMNS = f"""
    {HEADER17}
    agraph (float[2, 5] x) => (float[2, 6] y) {{
        vt = Transpose <perm = [1, 0]> (v)
        nt = ReduceL2 <axes = [1]> (vt)
        n = Transpose <perm = [1, 0]> (nt)
        gv = Mul(g, v)
        w = Div(gv, n)
        y = Gemm <transB = 1> (x, w)
    }}
"""


@pytest.mark.parametrize("limit", [2**20, 10], ids=["indexed", "large"])
def test_a_gain_of_one_element_beside_a_norm_of_columns_is_no_whole_tensor_norm(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """Above the index limit (a 1100x1000 v) the axes were read from g: a gain of shape
    [1, 1] made a norm of each column "all", the whole tensor."""
    monkeypatch.setattr(match, "_INDEXED_AXES", limit)
    model = onnx_model(COLUMNS, v=rand(6, 5), g=np.full((1, 1), 1.5, np.float32))
    (site,) = inspect_onnx(model).sites
    assert (site.status, site.axes) == ("foldable", [0])


LP_OF_TRANSPOSED = f"""
    {HEADER17}
    agraph (float[2, 6] x) => (float[2, 5] y) {{
        vt = Transpose <perm = [1, 0]> (v)
        vn = LpNormalization <axis = 0, p = 2> (vt)
        w = Mul(g, vn)
        y = MatMul(x, w)
    }}
"""


def test_lp_normalization_of_a_transposed_v_is_reported_in_terms_of_v() -> None:
    """``g * LpNormalization(T(v), axis=0)`` was reported as the transposed tensor's
    (``vt.folded``, shape ``?``, axes 0) where the same norm written with ReduceL2 is ``v``'s
    (``v.folded``, ``6x5 -> 5x6``, axes 1): each row of the 6x5 ``v`` is normalized."""
    model = onnx_model(LP_OF_TRANSPOSED, v=rand(5, 6), g=rand(1, 5) + 2)
    (site,) = inspect_onnx(model).sites
    assert (site.name, site.shape, site.written_shape, site.axes, site.status) == (
        "v.folded",
        [5, 6],
        [6, 5],
        [1],
        "foldable",
    )
    folded, report = fold_onnx(model)
    assert [s.status for s in report.sites] == ["folded"]
    feeds = {"x": rand(2, 6)}
    assert_close(run(folded, feeds), run(model, feeds))


# g * T(v) / ||T(v)||: the norm of each row of T(v), v's column, divides T(v)
OF_TRANSPOSED = f"""
    {HEADER17}
    agraph (float[2, 6] x) => (float[2, 6] y) <float[6, 1] n> {{
        t = Transpose <perm = [1, 0]> (v)
        n = ReduceL2 <axes = [1]> (t)
        gt = Mul(g, t)
        w = Div(gt, n)
        y = Gemm <transB = 1> (x, w)
    }}
"""


@pytest.mark.parametrize(("limit", "axes"), [(2**20, [0]), (10, "?")], ids=["indexed", "large"])
def test_a_norm_dividing_a_laid_out_v_gives_no_axes_of_v_from_its_shape(
    monkeypatch: pytest.MonkeyPatch, limit: int, axes: list[int] | str
) -> None:
    """Above the index limit the norm's shape, in T(v)'s layout, was read as v's: a norm of
    each column of a square v showed axes [1]; it is not known then, and says so."""
    monkeypatch.setattr(match, "_INDEXED_AXES", limit)
    model = onnx_model(OF_TRANSPOSED, v=rand(6, 6), g=rand(6, 1) + 2)
    (site,) = inspect_onnx(model).sites
    assert (site.status, site.axes) == ("foldable", axes)


_GAINS = {
    "g = Concat <axis = 0> (ga, gb)": {"ga": rand(2, 1), "gb": rand(2, 1)},
    "g = Expand(gs, shape)": {"gs": rand(1, 1), "shape": np.array([4, 1], np.int64)},
    "g = Slice(gl, start, end)": {
        "gl": rand(6, 1), "start": np.array([1], np.int64), "end": np.array([5], np.int64)
    },
}  # fmt: skip


@pytest.mark.parametrize("gain", list(_GAINS))
def test_a_gain_computed_from_constants_is_a_constant(gain: str) -> None:
    """A gain made by Concat, Expand or Slice of initializers was declined as "g 'g' is not a
    constant (computed by Concat)": it is one, and the evaluator computes those ops (t55)."""
    text = f"""
        <ir_version: 8, opset_import: ["" : 18]>
        agraph (float[2, 5] x) => (float[2, 4] y) {{
            {gain}
            n = ReduceL2 <keepdims = 1> (v, axes)
            gv = Mul(g, v)
            w = Div(gv, n)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(text, None, True, v=rand(4, 5), axes=np.array([1], np.int64), **_GAINS[gain])
    (site,) = inspect_onnx(model).sites
    assert site.status == "foldable", site.reason
    folded, report = fold_onnx(model)
    assert [s.status for s in report.sites] == ["folded"]
    feeds = {"x": rand(2, 5)}
    assert_close(run(folded, feeds), run(model, feeds))


def _chained(model: onnx.ModelProto, start: str, end: str, length: int = 10_010) -> None:
    """Put a chain of ``length`` Adds (``start`` + 1e-3, ...) named ``end`` before the graph's
    nodes: a value computed by more than the 10,000 values a cone is read as a constant by."""
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(1e-3, np.float32), "step"))
    chain = [onnx.helper.make_node("Add", [start if i == 0 else f"c{i}", "step"], [f"c{i + 1}"])
             for i in range(length)]  # fmt: skip
    chain[-1].output[0] = end
    nodes = [*chain, *model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


# g * v / ||v|| written (g * v) / n, and v / n * g
_PRODUCTS = {"g": "gv = Mul(g, v)\n w = Div(gv, n)", "v": "d = Div(v, n)\n w = Mul(d, g)"}


@pytest.mark.parametrize("role", ["g", "v"])
def test_a_factor_of_too_many_constant_values_is_declined_as_such(role: str) -> None:
    """A gain computed by 10,010 constant Adds was declined as "not a constant (computed by
    Add)": the walk that reads it as a constant stops at 10,000 values, which the reason now
    says (t58). The same for v: the check that a norm normalizes a constant read a cone too
    large to walk as an activation, and the site was gone (t73)."""
    text = f"""
        <ir_version: 8, opset_import: ["" : 18]>
        agraph (float[2, 5] x) => (float[2, 4] y) {{
            n = ReduceL2 <keepdims = 1> (v, axes)
            {_PRODUCTS[role]}
            y = Gemm <transB = 1> (x, w)
        }}
    """
    other: dict[str, Any] = {"v": rand(4, 5)} if role == "g" else {"g": rand(4, 1)}
    model = onnx_model(text, None, False, axes=np.array([1], np.int64), **other)
    start = rand(4, 1) if role == "g" else rand(4, 5)
    model.graph.initializer.append(onnx.numpy_helper.from_array(start, f"{role}0"))
    _chained(model, f"{role}0", role)
    (site,) = inspect_onnx(model).sites
    assert site.reason == (
        f"{role} '{role}' is computed by more than 10000 values: too many to read as a constant"
    )


def test_scalenorm_deep_in_a_network_is_no_site() -> None:
    """An activation computed by more than 10,000 values (deep in a network), ScaleNorm'd and
    read as an activation: no site, however far its cone is from the graph's input."""
    text = """
        <ir_version: 8, opset_import: ["" : 18]>
        agraph (float[2, 5] x) => (float[2, 4] y) {
            n = ReduceL2 <keepdims = 1> (h, axes)
            d = Div(h, n)
            s = Mul(d, g)
            y = MatMul(s, w)
        }
    """
    model = onnx_model(text, None, False, g=rand(), w=rand(5, 4), axes=np.array([1], np.int64))
    _chained(model, "x", "h")
    assert inspect_onnx(model).sites == []


def test_a_weight_computed_from_activations_is_no_site() -> None:
    """A hypernetwork's weight, ``g * h / ||h||`` of a computed activation, read at Gemm's
    weight input: no weight fed at run time (which a graph input is), no site."""
    text = f"""
        {HEADER17}
        agraph (float[3, 4] z, float[2, 4] x) => (float[2, 3] y) {{
            h = Relu(z)
            n = ReduceL2 <axes = [1]> (h)
            d = Div(h, n)
            w = Mul(d, g)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    assert inspect_onnx(onnx_model(text, g=rand(3, 1))).sites == []


# The norms of a square v's rows, but as the graph broadcasts them against v, each divides a
# column: w[i, j] = g[i] * v[i, j] / ||v[j, :]|| (or ||v[:, j]||), no weight norm of v (t158).
MISBROADCAST = {
    "keepdims=0": "n = ReduceL2 <axes = [1], keepdims = 0> (v)",
    "Transpose, axes [0]": "t = Transpose <perm = [1, 0]> (v)\n n = ReduceL2 <axes = [0]> (t)",
    "Transpose, axes [1]": "t = Transpose <perm = [1, 0]> (v)\n n = ReduceL2 <axes = [1]> (t)",
}
# The same norms where they do divide each unit by its own norm: weight-norm sites, axes.
SQUARE_SITES = {
    "keepdims=0, Unsqueeze": (
        "n0 = ReduceL2 <axes = [1], keepdims = 0> (v)\n n = Unsqueeze(n0, one)",
        (4, 1),
        [1],
    ),
    "keepdims=0 over axis 0": ("n = ReduceL2 <axes = [0], keepdims = 0> (v)", (4,), [0]),
    "keepdims=0, whole tensor": ("n = ReduceL2 <keepdims = 0> (v)", (), None),
    "Transpose, back": (
        "t = Transpose <perm = [1, 0]> (v)\n n0 = ReduceL2 <axes = [0]> (t)\n"
        " n = Transpose <perm = [1, 0]> (n0)",
        (4, 1),
        [1],
    ),
    "of T(v), dividing T(v)": (
        "t = Transpose <perm = [1, 0]> (v)\n n = ReduceL2 <axes = [0]> (t)\n gv = Mul(g, t)",
        (1, 4),
        [1],
    ),
}


def _square(norm: str, g_shape: tuple[int, ...] = (4, 1)) -> onnx.ModelProto:
    """``Div(Mul(g, v), n)`` of a 4x4 v, read by a Gemm, with ``norm`` computing ``n``."""
    product = "" if "gv =" in norm else "gv = Mul(g, v)"
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 4] y) {{
            {norm}
            {product}
            w = Div(gv, n)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    one = np.array([1], np.int64)  # Unsqueeze's axes, where read
    return onnx_model(text, v=rand(4, 4), g=rand(*g_shape) + 2, one=one)


@pytest.mark.parametrize("norm", MISBROADCAST)
def test_a_norm_broadcast_against_other_units_than_its_own_is_no_weight_norm(norm: str) -> None:
    """Such a product was a weight-norm site folded as of axes [1] (the Transpose of axes [1]:
    [0]), a norm of v's units, which it is not: it is a weight computed from constants, left
    as the graph computes it (the cone fold computes no ReduceL2), its outputs bit for bit."""
    model = _square(MISBROADCAST[norm])
    reason = "computed by ReduceL2, not by layout, cast or exactly rounded arithmetic ops"
    folded, report = fold_onnx(model)
    for found in (inspect_onnx(model), report):
        assert found.sites == []
        assert [(c.name, c.status, c.reason) for c in found.cones] == [("w", "declined", reason)]
    feeds = {"x": rand(2, 4)}
    before, after = run_unoptimized(model, feeds), run_unoptimized(folded, feeds)
    assert [a.tobytes() for a in after] == [a.tobytes() for a in before]


@pytest.mark.parametrize("norm", SQUARE_SITES)
def test_a_norm_that_divides_each_unit_of_a_square_v_by_its_own_is_a_site(norm: str) -> None:
    """keepdims=0 with the norm put back on v's axis, broadcast along the axis it reduces, of
    the whole tensor, through Transposes that put it back: weight-norm sites, folded."""
    text, g_shape, axes = SQUARE_SITES[norm]
    model = _square(text, g_shape)
    (site,) = inspect_onnx(model).sites
    assert (site.status, site.axes) == ("foldable", axes)
    _, report = assert_folds(model)
    assert [(s.status, s.axes) for s in report.sites] == [("folded", axes)]


def test_a_norm_of_units_permuted_among_equal_axes_is_no_weight_norm() -> None:
    """The norm of ``T(v)[a, b, :]`` dividing ``v[a, b, :]`` (a Transpose of v's first two
    axes, both of size 3): each norm of the right shape, but of another unit."""
    text = f"""
        {HEADER17}
        agraph (float[1, 3, 5] x) => (float[1, 3, 3] y) {{
            t = Transpose <perm = [1, 0, 2]> (v)
            n = ReduceL2 <axes = [2]> (t)
            gv = Mul(g, v)
            w = Div(gv, n)
            y = Conv(x, w)
        }}
    """
    model = onnx_model(text, v=rand(3, 3, 3), g=rand(3, 1, 1) + 2)
    report = inspect_onnx(model)
    assert report.sites == [] and [c.status for c in report.cones] == ["declined"]


# a Gemm's weight-norm site whose v (or g) an int8 initializer gives, dequantized
_DEQUANTIZED = {
    "v": "vd = DequantizeLinear(q, s, z)\n n = ReduceL2 <axes = [1]> (vd)\n d = Div(vd, n)\n"
    " w = Mul(d, g)",
    "g": "gd = DequantizeLinear(q, s, z)\n n = ReduceL2 <axes = [1]> (v)\n d = Div(v, n)\n"
    " w = Mul(d, gd)",
}


@pytest.mark.parametrize("role", ["v", "g"])
def test_a_site_whose_v_or_g_is_dequantized_is_declined_as_quantized(role: str) -> None:
    """v (or g) given back by DequantizeLinear (a QDQ model's int8 initializer, quantized
    before the weight norm was folded) was declined as "DequantizeLinear in the weight
    computation is not supported", under the DequantizeLinear's output name: the site is
    declined as quantized, and named after the parameter the quantized initializer was
    (ONNX Runtime's quantizer names it so, with a suffix)."""
    prefix = "lin.parametrizations.weight.original"
    names = {"v": f"{prefix}1", "g": f"{prefix}0", "q": f"{prefix}{int(role == 'v')}_quantized"}
    quantized = (
        np.arange(-6, 6, dtype=np.int8).reshape(3, 4)
        if role == "v"
        else np.array([[3], [5], [7]], np.int8)
    )
    model = gemm_model(
        _DEQUANTIZED[role], names=names, q=quantized, s=np.array(0.1, np.float32),
        z=np.array(0, np.int8),
    )  # fmt: skip
    for report in (inspect_onnx(model), fold_onnx(model)[1]):
        (site,) = report.sites
        assert (site.status, site.name, site.shape) == ("declined", "lin.weight", [3, 4])
        assert site.reason == (
            f"{role} is quantized (read through DequantizeLinear); fold before quantizing"
        )


# a Gemm's site as ONNX Runtime's static quantizer leaves a dynamo export quantized before
# folding: v int8, g / ||v|| through QuantizeLinear/DequantizeLinear (in ``{q}``'s domain)
# before v multiplies it; or (QOperator) multiplied by v in a QLinearMul
_STEP_QUANTIZED = """
    <ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
    agraph (float[2, 4] x) => (float[2, 3] y) {{
        vd = {q}DequantizeLinear(vq, s, z)
        n = ReduceL2 <axes = [1]> (vd)
        d = Div(g, n)
        dq = {q}QuantizeLinear(d, ds, z)
        {product}
        y = Gemm <transB = 1> (x, w)
    }}
"""
_QDQ_PRODUCT = "dd = {q}DequantizeLinear(dq, ds, z)\n w = Mul(vd, dd)"
_QOPERATOR_PRODUCT = (
    "wq = com.microsoft.QLinearMul(vq, s, z, dq, ds, z, ws, z)\n w = DequantizeLinear(wq, ws, z)"
)


@pytest.mark.parametrize(
    ("q", "product", "consumer"),
    [
        ("", _QDQ_PRODUCT, "Gemm(transB=1)"),
        ("com.microsoft.", _QDQ_PRODUCT, "Gemm(transB=1)"),
        ("", _QOPERATOR_PRODUCT, "QuantizeLinear"),
    ],
    ids=["qdq", "contrib qdq", "qoperator"],
)
def test_a_site_with_g_over_its_norm_quantized_is_declined_by_name(
    q: str, product: str, consumer: str
) -> None:
    """With ONNX Runtime's contrib Q/DQ ops (``UseQDQContribOps``) or its QOperator format, a
    model quantized before folding said "no weight-norm sites", ``ok`` true, and ran its norm
    at every inference (t308); ONNX's own Q/DQ were followed. The site is found in each,
    named after its parameter, and declined for the step quantized."""
    text = _STEP_QUANTIZED.format(q=q, product=product.format(q=q))
    model = onnx_model(
        text,
        names={"vq": "lin.parametrizations.weight.original1_quantized"},
        vq=np.arange(-6, 6, dtype=np.int8).reshape(3, 4),
        g=rand(3, 1) + 0.5,
        s=np.array(0.1, np.float32),
        ds=np.array(0.01, np.float32),
        ws=np.array(0.05, np.float32),
        z=np.array(0, np.int8),
    )
    for report in (inspect_onnx(model), fold_onnx(model)[1]):
        (site,) = report.sites
        assert (site.status, site.name, site.consumers) == ("declined", "lin.weight", [consumer])
        assert site.reason == (
            "QuantizeLinear quantizes 'd', a step of its computation; fold before quantizing"
        )


def test_a_site_whose_norm_is_quantized_is_declined_by_name() -> None:
    """Told to quantize ``Div`` (``op_types_to_quantize``, as QNN's configuration does), ONNX
    Runtime's quantizer puts QuantizeLinear/DequantizeLinear between ``||v||`` and the
    ``Div``: "no weight-norm sites" while the norm ran (t311)."""
    text = f"""
        {HEADER17}
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            n = ReduceL2 <axes = [1]> (v)
            nq = QuantizeLinear(n, s, z)
            nd = DequantizeLinear(nq, s, z)
            d = Div(v, nd)
            w = Mul(d, g)
            y = Gemm <transB = 1> (x, w)
        }}
    """
    model = onnx_model(
        text, names={"v": "lin.weight_v", "g": "lin.weight_g"}, v=rand(3, 4), g=rand(3, 1),
        s=np.array(0.01, np.float32), z=np.array(0, np.uint8),
    )  # fmt: skip
    for report in (inspect_onnx(model), fold_onnx(model)[1]):
        (site,) = report.sites
        assert (site.status, site.name, site.consumers) == (
            "declined",
            "lin.weight",
            ["Gemm(transB=1)"],
        )
        assert site.reason == (
            "QuantizeLinear quantizes 'n', a step of its computation; fold before quantizing"
        )


# ONNX Runtime's quantizer told to quantize ReduceL2 (its input through Q/DQ), and with
# AddQDQPairToWeight (a float v through Q/DQ wherever it is read)
_V_QUANTIZED = {
    "the norm's input": """
        r = Reshape(v, flat)
        rq = QuantizeLinear(r, s, z)
        rd = DequantizeLinear(rq, s, z)
        n = ReduceL2 <keepdims = 0> (rd)
        d = Div(v, n)
        w = Mul(d, g)
    """,
    "v wherever it is read": """
        vq = QuantizeLinear(v, s, z)
        vd = DequantizeLinear(vq, s, z)
        n = ReduceL2 <axes = [1]> (vd)
        d = Div(vd, n)
        w = Mul(d, g)
    """,
}


@pytest.mark.parametrize("case", _V_QUANTIZED)
def test_a_site_whose_v_is_quantized_in_the_graph_is_declined_by_its_name(case: str) -> None:
    """t313: with the norm's input quantized the site was missed ("no weight-norm sites",
    written, exit 0); with a float v quantized in the graph it was named ``mul``, shape ``?``."""
    model = gemm_model(
        _V_QUANTIZED[case], names={"v": "lin.weight_v", "g": "lin.weight_g"},
        flat=np.array([-1], np.int64), s=np.array(0.01, np.float32), z=np.array(0, np.int8),
    )  # fmt: skip
    for report in (inspect_onnx(model), fold_onnx(model)[1]):
        (site,) = report.sites
        assert (site.status, site.name, site.shape) == ("declined", "lin.weight", [3, 4])
        assert (
            site.reason
            == {
                "the norm's input": "QuantizeLinear quantizes 'r', a step of its computation; fold "
                "before quantizing",
                "v wherever it is read": "v is quantized (read through DequantizeLinear); fold "
                "before quantizing",
            }[case]
        )
