"""Local functions that compute weights from their inputs: inlined, then folded (t104)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from tests.helpers import assert_close, onnx_model, rand, run
from wnpass import fold_onnx, inspect_onnx
from wnpass.cli import main
from wnpass.onnx.functions import weight_functions
from wnpass.report import fold_summary

# ``WnLinear(x, v, g)``: weight norm on the function's inputs, as TorchScript's
# ``export_modules_as_functions`` writes a layer (its parameters passed in by the caller)
WN_FUNCTION = """
    <domain: "local", opset_import: ["" : 17]>
    WnLinear (x, v, g) => (y) {
        n = ReduceL2 <axes = [1], keepdims = 1> (v)
        d = Div(v, n)
        w = Mul(d, g)
        y = Gemm <transB = 1> (x, w)
    }
"""
HEADER = '<ir_version: 8, opset_import: ["" : 17, "local" : 1]>'
X = rand(2, 4)


def _called(main_graph: str, function: str = WN_FUNCTION, **arrays: np.ndarray) -> onnx.ModelProto:
    return onnx_model(f"{HEADER}\n{main_graph}\n{function}", None, True, **arrays)


TWICE = """
    agraph (float[2, 4] x) => (float[2, 3] y) {
        h = local.WnLinear(x, v1, g1)
        h4 = Concat <axis = 1> (h, h)
        hs = Slice(h4, s0, s4, s1)
        y = local.WnLinear(hs, v2, g2)
    }
"""


def test_weight_norm_inside_a_function_called_with_initializers_is_folded() -> None:
    """Inside the function v and g are inputs, so no weight was seen: "no weight-norm sites",
    and ``inspect --strict`` passed a model that runs weight norm on every call (t104). The
    function is inlined and each call's weight folded; the outputs are ONNX Runtime's. The
    nodes counted are those run, a function's at each call ("nodes 79 -> 200" said a fold
    of HiFi-GAN's functions made it 2.5 times larger; it runs 512 nodes before, 200 after:
    t263)."""
    model = _called(
        TWICE,
        v1=rand(3, 4), g1=rand(3, 1), v2=rand(3, 4), g2=rand(3, 1),
        s0=np.array([0]), s4=np.array([4]), s1=np.array([1]),
    )  # fmt: skip
    inspected = inspect_onnx(model)
    assert [s.status for s in inspected.sites] == ["foldable", "foldable"]
    assert inspected.inlined == ["local::WnLinear"]
    assert inspected.nodes_before == inspected.nodes_after == 2 * 4 + 2
    folded, report = fold_onnx(model)
    assert [s.status for s in report.sites] == ["folded", "folded"]
    assert (report.nodes_before, report.nodes_after) == (10, 4)
    assert report.inlined == ["local::WnLinear"] and not folded.functions
    assert {n.op_type for n in folded.graph.node} == {"Gemm", "Concat", "Slice"}
    feeds = {"x": rand(2, 4)}
    assert_close(run(folded, feeds), run(model, feeds))


NESTED = """
    agraph (float[2, 4] x) => (float[2, 3] y) {
        y = local.Net(x, v, g)
    }
    <domain: "local", opset_import: ["" : 17, "local" : 1]>
    Net (x, v, g) => (y) {
        y = local.WnLinear(x, v, g)
    }
"""


def test_a_function_that_passes_its_inputs_on_is_inlined_with_it() -> None:
    """TorchScript's export makes the model a function too (``Net`` calling ``WnLinear``):
    WnLinear's v is Net's input, which the main graph passes an initializer; both go."""
    model = _called(NESTED, v=rand(3, 4), g=rand(3, 1))
    assert {f.name for f in weight_functions(ir.from_proto(model))} == {"Net", "WnLinear"}
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::Net", "local::WnLinear"]
    assert [s.status for s in report.sites] == ["folded"]
    assert [n.op_type for n in folded.graph.node] == ["Gemm"]


def test_a_function_called_with_a_value_fed_at_run_time_stays() -> None:
    """A call that passes a graph input as v (a filter given at run time): its weight is no
    constant, the function is not inlined, and the site inside it is declined as before."""
    text = """
        agraph (float[2, 4] x, float[3, 4] v) => (float[2, 3] y) {
            y = local.WnLinear(x, v, g)
        }
    """
    model = _called(text, g=rand(3, 1))
    folded, report = fold_onnx(model)
    assert report.inlined == [] and len(folded.functions) == 1
    assert [s.reason for s in report.sites] in ([], ["v 'v' is a function input"])


# ``TMatMul(x, w)``: the function transposes its weight for a ``MatMul``
T_MATMUL = """
    <domain: "local", opset_import: ["" : 17]>
    TMatMul (x, w) => (y) {
        wt = Transpose <perm = [1, 0]> (w)
        y = MatMul(x, wt)
    }
"""


def test_a_weight_laid_out_inside_a_function_is_folded_and_not_with_weight_norm_only() -> None:
    """``Transpose(W)`` before ``MatMul`` inside a function: a weight computed from a
    constant at every call. ``--weight-norm-only`` leaves cones, and so the function, alone."""
    text = """
        agraph (float[2, 4] x) => (float[2, 3] y) {
            y = local.TMatMul(x, w)
        }
    """
    model = _called(text, T_MATMUL, w=rand(3, 4))
    _, only = fold_onnx(model, weight_norm_only=True)
    assert only.inlined == []
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::TMatMul"] and report.cones_folded == 1
    assert [n.op_type for n in folded.graph.node] == ["MatMul"]
    feeds = {"x": rand(2, 4)}
    assert_close(run(folded, feeds), run(model, feeds))


def test_a_function_whose_weight_is_its_own_constant_stays() -> None:
    """Weight norm on a function's own constants is folded inside it: nothing is inlined.
    Where only v is its own and g an input its call passes a constant, the site was declined
    (``g 'g' is a function input``): that function is inlined and folded."""
    values = ", ".join(map(str, rand(3, 4).ravel()))
    own_v = f"v = Constant <value = float[3, 4] {{{values}}}> ()\n        n = ReduceL2"
    gains = ", ".join(map(str, rand(3, 1).ravel()))
    own_g = f"g = Constant <value = float[3, 1] {{{gains}}}> ()\n        n = ReduceL2"
    both = WN_FUNCTION.replace("WnLinear (x, v, g)", "WnLinear (x)")
    both = both.replace("n = ReduceL2", own_v).replace("n = ReduceL2", own_g, 1)
    text = """
        agraph (float[2, 4] x) => (float[2, 3] y) {
            y = local.WnLinear(x)
        }
    """
    folded, report = fold_onnx(_called(text, both))
    assert report.inlined == [] and len(folded.functions) == 1
    assert [s.status for s in report.sites] == ["folded"]
    gain_in = WN_FUNCTION.replace("WnLinear (x, v, g)", "WnLinear (x, g)")
    gain_in = gain_in.replace("n = ReduceL2", own_v)
    model = _called(text.replace("(x)", "(x, g)"), gain_in, g=rand(3, 1))
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::WnLinear"] and not folded.functions
    assert [s.status for s in report.sites] == ["folded"]
    feeds = {"x": rand(2, 4)}
    assert_close(run(folded, feeds), run(model, feeds))


def test_inspect_leaves_the_model_and_strict_fails_until_folded(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """``inspect`` folds a copy: the caller's model keeps its functions; ``--strict`` exits 1
    on the exported file and 0 once it is folded, and both say which functions go."""
    model = _called(NESTED, v=rand(3, 4), g=rand(3, 1))
    held = ir.from_proto(model)
    inspect_onnx(held)
    assert len(held.functions) == 2
    path = tmp_path / "m.onnx"  # type: ignore[operator]
    onnx.save(model, path)
    assert main(["--quiet", "inspect", str(path), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "a fold inlines 2 local functions that compute weights from their inputs" in out
    assert main(["--quiet", "fold", str(path)]) == 0
    assert "inlined 2 local functions" in capsys.readouterr().out
    assert main(["--quiet", "inspect", str(path.with_name("m.folded.onnx")), "--strict"]) == 0


def test_a_function_of_another_opset_is_not_inlined(caplog: pytest.LogCaptureFixture) -> None:
    """onnx-ir's inliner refuses a function importing another version of an opset than the
    model, part way: such functions are left, the report says so, and nothing is changed. (A
    file like that is refused on load by the ONNX checker: an onnx-ir model given to the API.)"""
    function = WN_FUNCTION.replace('opset_import: ["" : 17]', 'opset_import: ["" : 18]')
    text = """
        agraph (float[2, 4] x) => (float[2, 3] y) {
            y = local.WnLinear(x, v, g)
        }
    """
    proto = onnx_model(f"{HEADER}\n{text}\n{function}", check=False, v=rand(3, 4), g=rand(3, 1))
    model = ir.from_proto(proto)
    with caplog.at_level(logging.INFO, logger="wnpass.onnx.fold"):
        report = fold_onnx(model, in_place=True)[1]
    assert report.inlined == [] and len(model.functions) == 1
    assert report.not_inlined == ["local::WnLinear imports ai.onnx 18, the model 17"]
    assert not report and report.to_dict()["ok"] is False
    assert (
        "not inlined: local::WnLinear imports ai.onnx 18, the model 17: the weights it "
        "computes from its inputs stay computed at run time"
    ) in fold_summary(report)
    assert "not inlining a local function that computes weights" in caplog.text


def test_a_function_of_an_older_opset_whose_ops_mean_the_same_is_inlined() -> None:
    """t269: an onnxscript function written with ``opset17`` in a model of opset 18 (the
    checker takes it: none of its ops changed between them; ONNX Runtime runs it) kept every
    function from being inlined, and the gate said "no weight-norm sites", exit 0. Its ops
    mean the same at 18: it is inlined with the others, and one fold folds both."""
    old = WN_FUNCTION.replace("WnLinear", "Old").replace(
        "n = ReduceL2 <axes = [1], keepdims = 1> (v)",
        "axes = Constant <value_ints = [1]> ()\n        squares = Mul(v, v)\n"
        "        sums = ReduceSum <keepdims = 1> (squares, axes)\n        n = Sqrt(sums)",
    )
    new = WN_FUNCTION.replace('opset_import: ["" : 17]', 'opset_import: ["" : 18]').replace(
        "n = ReduceL2 <axes = [1], keepdims = 1> (v)",
        "axes = Constant <value_ints = [1]> ()\n        n = ReduceL2 <keepdims = 1> (v, axes)",
    )
    text = """
        agraph (float[2, 4] x) => (float[2, 3] y, float[2, 3] z) {
            y = local.WnLinear(x, v, g)
            z = local.Old(x, v2, g2)
        }
    """
    header = HEADER.replace('"" : 17', '"" : 18')
    model = onnx_model(
        f"{header}\n{text}\n{new}\n{old}", v=rand(3, 4), g=rand(3, 1), v2=rand(3, 4), g2=rand(3, 1)
    )
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::WnLinear", "local::Old"] and report.not_inlined == []
    assert [s.status for s in report.sites] == ["folded", "folded"]
    assert len(folded.functions) == 0 and [n.op_type for n in folded.graph.node] == ["Gemm"] * 2
    onnx.checker.check_model(folded, full_check=True)
    assert_close(run(folded, {"x": X}), run(model, {"x": X}))


def test_a_function_whose_weight_then_declines_is_not_inlined(tmp_path: Path) -> None:
    """Inlining alone folds nothing: a zero-norm unit inside is declined either way. The fold
    said it inlined the function, and wrote the input's bytes, functions and all (t107)."""
    v = rand(3, 4)
    v[1] = 0
    model = _called("""
        agraph (float[2, 4] x) => (float[2, 3] y) {
            y = local.WnLinear(x, v, g)
        }
    """, v=v, g=rand(3, 1))  # fmt: skip
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert inspect_onnx(path).inlined == []
    _, report = fold_onnx(path, tmp_path / "o.onnx")
    assert report.inlined == [] and report.folded == 0
    assert (tmp_path / "o.onnx").read_bytes() == path.read_bytes()


def _if_in_function(
    then_nodes: list, params: list[str], weights: dict[str, np.ndarray]
) -> onnx.ModelProto:
    """A model whose local function ``WN(x, *params, c)`` runs ``then_nodes`` in the then
    branch of an If on ``c`` (``x`` through in the other), called with initializers
    ``weights`` for ``params``, in order."""
    from onnx import TensorProto
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    def out(name: str) -> onnx.ValueInfoProto:
        return oh.make_tensor_value_info(name, TensorProto.FLOAT, [2, 4])

    then = oh.make_graph(then_nodes, "then", [], [out("t")])
    other = oh.make_graph([oh.make_node("Identity", ["x"], ["e"])], "else", [], [out("e")])
    opsets = [oh.make_opsetid("", 18)]
    branch = oh.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
    function = oh.make_function("local", "WN", ["x", *params, "c"], ["y"], [branch], opsets)
    call = oh.make_node("WN", ["x", *weights, "c"], ["y"], domain="local")
    condition = oh.make_tensor_value_info("c", TensorProto.BOOL, [])
    initializers = [nh.from_array(array, name) for name, array in weights.items()]
    graph = oh.make_graph([call], "g", [out("x"), condition], [out("y")], initializers)
    model = oh.make_model(graph, opset_imports=[*opsets, oh.make_opsetid("local", 1)])
    model.functions.append(function)
    model.ir_version = 10
    return model


def _folds_inlined(model: onnx.ModelProto) -> None:
    """The fold inlines ``WN`` and folds its one site; the outputs are the model's, either way
    the If goes."""
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::WN"] and [s.status for s in report.sites] == ["folded"]
    for c in (True, False):
        feeds = {"x": rand(2, 4), "c": np.array(c)}
        assert_close(run(folded, feeds), run(model, feeds))


def test_weight_norm_in_a_body_inside_a_function_is_folded() -> None:
    """The function's If body normalizes its input v (an outer value there): only the
    function's own nodes were read, and the site was never seen (t108)."""
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    then = [
        oh.make_node("Constant", [], ["ax"], value=nh.from_array(np.array([1], np.int64))),
        oh.make_node("ReduceL2", ["v", "ax"], ["n"]),
        oh.make_node("Div", ["v", "n"], ["q"]),
        oh.make_node("Mul", ["g", "q"], ["w"]),
        oh.make_node("Gemm", ["x", "w"], ["t"], transB=1),
    ]
    _folds_inlined(_if_in_function(then, ["v", "g"], {"v1": rand(4, 4), "g1": rand(4, 1)}))


def test_a_gain_input_read_in_a_body_inside_a_function_is_inlined() -> None:
    """The function's own v normalized in its If body, times its input g: the gain was
    looked for only among sites of the function's top level, and the site declined as "g 'g'
    is a graph input" (t109)."""
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    then = [
        oh.make_node("Constant", [], ["v"], value=nh.from_array(rand(4, 4), "v")),
        oh.make_node("Constant", [], ["ax"], value=nh.from_array(np.array([1], np.int64))),
        oh.make_node("ReduceL2", ["v", "ax"], ["n"]),
        oh.make_node("Div", ["v", "n"], ["q"]),
        oh.make_node("Mul", ["g", "q"], ["w"]),
        oh.make_node("Gemm", ["x", "w"], ["t"], transB=1),
    ]
    _folds_inlined(_if_in_function(then, ["g"], {"g1": rand(4, 1)}))


def test_a_weight_computed_from_an_input_and_a_value_fed_at_run_time_stays() -> None:
    """Arithmetic inside a function makes a weight of its inputs (``W * s``): inlined and
    folded where every call passes constants for both; where ``s`` is fed at run time the
    weight is no constant, and the function stays."""
    function = """
        <domain: "local", opset_import: ["" : 17]>
        Scaled (x, w, s) => (y) {
            ws = Mul(w, s)
            y = MatMul(x, ws)
        }
    """
    fed = """
        agraph (float[2, 4] x, float[1] s) => (float[2, 3] y) {
            y = local.Scaled(x, w, s)
        }
    """
    kept, report = fold_onnx(_called(fed, function, w=rand(4, 3)))
    assert report.inlined == [] and len(kept.functions) == 1
    constant = fed.replace(", float[1] s", "")
    model = _called(constant, function, w=rand(4, 3), s=rand(1))
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::Scaled"] and report.cones_folded == 1
    assert [n.op_type for n in folded.graph.node] == ["MatMul"]
    feeds = {"x": rand(2, 4)}
    assert [a.tobytes() for a in run(folded, feeds)] == [a.tobytes() for a in run(model, feeds)]


LIN = """
    <domain: "local", opset_import: ["" : 17]>
    Lin (x, w) => (y) {
        y = Gemm <transB = 1> (x, w)
    }
"""


def _outputs_equal(folded: onnx.ModelProto | ir.Model, model: onnx.ModelProto) -> None:
    feeds = {"x": rand(2, 4)}
    assert [a.tobytes() for a in run(folded, feeds)] == [a.tobytes() for a in run(model, feeds)]


def test_a_weight_a_caller_computes_for_a_function_s_layer_is_folded() -> None:
    """The caller normalizes the weight (a pre-hook's ``F.normalize``), the function's
    ``Gemm`` reads it as its input: a cone across the call, seen by neither scope alone, so
    ``inspect --strict`` passed it (t263). The function is inlined where the caller computes
    the weight, not where every call passes an initializer."""
    computed = """
        agraph (float[2, 4] x) => (float[2, 3] y) {
            d = Div(w, n)
            y = local.Lin(x, d)
        }
    """
    w = rand(3, 4)
    norm = np.linalg.norm(w, axis=1, keepdims=True).astype(np.float32)
    model = _called(computed, LIN, w=w, n=norm)
    assert [(c.name, c.status) for c in inspect_onnx(model).cones] == [("w.folded", "foldable")]
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::Lin"] and report.cones_folded == 1
    assert [n.op_type for n in folded.graph.node] == ["Gemm"] and not folded.functions
    _outputs_equal(folded, model)
    as_is = _called(computed.replace("d = Div(w, n)\n", "").replace("(x, d)", "(x, w)"), LIN, w=w)
    assert weight_functions(ir.from_proto(as_is)) == []
    kept, report = fold_onnx(as_is)
    assert report.inlined == [] and len(kept.functions) == 1


def test_a_weight_a_function_computes_for_its_caller_s_layer_is_folded() -> None:
    """A function computes the weight (a custom parametrization's ``Scale(W) = W * 0.5``) that
    its caller's ``Gemm`` reads: the cone runs through the call (t263). Both functions are
    inlined, and the weight folded."""
    text = """
        agraph (float[2, 4] x) => (float[2, 3] y) {
            y = local.Net(x, w)
        }
        <domain: "local", opset_import: ["" : 17, "local" : 1]>
        Net (x, w) => (y) {
            s = local.Scale(w)
            y = Gemm <transB = 1> (x, s)
        }
        <domain: "local", opset_import: ["" : 17]>
        Scale (w) => (s) {
            half = Constant <value = float {0.5}> ()
            s = Mul(w, half)
        }
    """
    model = _called(text, "", w=rand(3, 4))
    assert {f.name for f in weight_functions(ir.from_proto(model))} == {"Net", "Scale"}
    folded, report = fold_onnx(model)
    assert sorted(report.inlined) == ["local::Net", "local::Scale"] and report.cones_folded == 1
    assert [n.op_type for n in folded.graph.node] == ["Gemm"] and not folded.functions
    _outputs_equal(folded, model)


def test_a_site_s_weight_laid_out_inside_a_function_is_folded_whole() -> None:
    """Weight norm in the caller, its product passed to a function that transposes it for a
    ``MatMul`` (legacy ``weight_norm`` on a Linear fed 3-D inputs, the Linear a function):
    the site folded, the ``Transpose`` left in the function, and a second fold changed the
    file (t263). The site's fold takes in the ``Transpose`` once the function is inlined, so
    the count of weights folded is the same either way: the nodes run decide."""
    text = """
        agraph (float[2, 4] x) => (float[2, 3] y) {
            n = ReduceL2 <axes = [1], keepdims = 1> (v)
            d = Div(v, n)
            w = Mul(d, g)
            y = local.TMatMul(x, w)
        }
    """
    model = _called(text, T_MATMUL, v=rand(3, 4), g=rand(3, 1))
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::TMatMul"] and report.folded == 1
    assert [n.op_type for n in folded.graph.node] == ["MatMul"] and not folded.functions
    assert inspect_onnx(folded).cones == [] and fold_onnx(folded)[1].nodes_after == 1
    assert_close(run(folded, {"x": X}), run(model, {"x": X}))


def test_a_cycle_of_calls_is_walked_once() -> None:
    """``A`` calls ``B`` calls ``A`` (no valid ONNX file holds one, an onnx-ir model can),
    ``B``'s layer reading its input: whether some call computes it was asked around the
    cycle until Python's recursion limit."""
    text = """
        agraph (float[2, 4] x) => (float[2, 3] y) {
            y = local.A(x, w)
        }
        <domain: "local", opset_import: ["" : 17, "local" : 1]>
        A (x, w) => (y) {
            y = local.B(x, w)
        }
        <domain: "local", opset_import: ["" : 17, "local" : 1]>
        B (x, w) => (y) {
            z = local.A(x, w)
            y = Gemm <transB = 1> (z, w)
        }
    """
    model = onnx_model(f"{HEADER}\n{text}", None, False, w=rand(3, 4))
    assert weight_functions(ir.from_proto(model)) == []


HALVED = """
    half = Constant <value = float {0.5}> ()
    s = Mul(w, half)
"""
CROSSINGS = {
    # the model a function too (export_modules_as_functions=True): Net halves its input
    # and passes it to Lin
    "a calling function computes it": f"""
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            y = local.Net(x, w)
        }}
        <domain: "local", opset_import: ["" : 17, "local" : 1]>
        Net (x, w) => (y) {{
            {HALVED}
            y = local.Lin(x, s)
        }}
    """,
    # one function computes it, the main graph passes it to another
    "a sibling function computes it": f"""
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            s = local.Scale(w)
            y = local.Lin(x, s)
        }}
        <domain: "local", opset_import: ["" : 17]>
        Scale (w) => (s) {{
            {HALVED}
        }}
    """,
}


@pytest.mark.parametrize("text", CROSSINGS.values(), ids=CROSSINGS.keys())
def test_every_function_on_a_weight_s_way_is_inlined(text: str) -> None:
    """A weight computed in one function and read by a layer in another, where neither is
    the main graph's: the caller's arithmetic on its input was not followed, nor a sibling
    function's output passed on by the main graph; ``inspect --strict`` passed both and the
    fold changed nothing (t264)."""
    model = _called(text, LIN, w=rand(3, 4))
    assert inspect_onnx(model).remaining == 1
    folded, report = fold_onnx(model)
    assert len(report.inlined) == 2 and report.cones_folded == 1
    assert [n.op_type for n in folded.graph.node] == ["Gemm"] and not folded.functions
    _outputs_equal(folded, model)


LAID_OUT = """
    <domain: "local", opset_import: ["" : 17]>
    Lin (x, w) => (y) {
        wt = Transpose(w)
        y = MatMul(x, wt)
    }
"""
# (main graph and functions, functions) -> the functions a fold inlines; t266
FOUND = {
    # a call that takes a value fed at run time too returns the weight, from its constant
    # input alone: its outputs were constant only where all its inputs were
    "a call returns it beside an activation": (
        """
        agraph (float[2, 4] x) => (float[2, 3] y) {
            y = local.Net(x, w)
        }
        <domain: "local", opset_import: ["" : 17, "local" : 1]>
        Net (x, w) => (y) {
            h, wt = local.Prep(x, w)
            y = MatMul(h, wt)
        }
        <domain: "local", opset_import: ["" : 17]>
        Prep (x, w) => (h, wt) {
            h = Relu(x)
            wt = Transpose(w)
        }
        """,
        ["local::Net", "local::Prep"],
    ),
    # a call leaving out an optional input the output reads (Clip's bound): an absent input
    # is constant, as for any op (t267: IndexError nested, inspect --strict 0 in the main graph)
    **{
        f"an optional input {how}": (
            f"""
            agraph (float[2, 4] x) => (float[2, 3] y) {{
                y = local.Net(x, w)
            }}
            <domain: "local", opset_import: ["" : 17, "local" : 1]>
            Net (x, w) => (y) {{
                wt = local.Prep({arguments})
                y = MatMul(x, wt)
            }}
            <domain: "local", opset_import: ["" : 17]>
            Prep (w, lo) => (wt) {{
                t = Transpose(w)
                wt = Clip(t, lo)
            }}
            """,
            ["local::Net", "local::Prep"],
        )
        for how, arguments in (("left out", "w"), ("given empty", 'w, ""'))
    },
    # a call leaving an output unnamed: the inliner left its node with no output, an invalid
    # model, and the fold ended with exit 3 (t268)
    "a call leaves an output unnamed": (
        """
        agraph (float[2, 4] x) => (float[2, 3] y) {
            wt, "" = local.G(w)
            y = MatMul(x, wt)
        }
        <domain: "local", opset_import: ["" : 17]>
        G (w) => (wt, e) {
            wt = Transpose(w)
            e = Neg(w)
        }
        """,
        ["local::G"],
    ),
    # the weight is the call's attribute, which the function's Constant refers to: known
    # only once inlined
    "a Constant refers to the call's attribute": (
        """
        agraph (float[2, 4] x) => (float[2, 3] y) {
            y = local.Lin <W: tensor = float[3, 4] {1,2,3,4,5,6,7,8,9,10,11,12}> (x)
        }
        <domain: "local", opset_import: ["" : 17]>
        Lin <W> (x) => (y) {
            w = Constant <value: tensor = @W> ()
            wt = Transpose(w)
            y = MatMul(x, wt)
        }
        """,
        ["local::Lin"],
    ),
    # a function nothing calls calls Lin with its own input: not a call the model makes
    "a function nothing calls calls it too": (
        """
        agraph (float[2, 4] x) => (float[2, 3] y) {
            y = local.Lin(x, w)
        }
        <domain: "local", opset_import: ["" : 17, "local" : 1]>
        Dead (x, v) => (y) {
            y = local.Lin(x, v)
        }
        """
        + LAID_OUT,
        ["local::Lin"],
    ),
    # a function's random draw added to the weight: no constant, neither function inlined
    # (they were, said to "compute weights ... from constants"), only the scaled one
    "a random function beside a scaled one": (
        """
        agraph (float[2, 4] x) => (float[2, 3] y, float[2, 3] z) {
            n = local.Noise()
            s = Add(w, n)
            y = local.Noisy(x, s)
            h = local.Scale(w)
            z = local.Lin(x, h)
        }
        <domain: "local", opset_import: ["" : 17]>
        Noise () => (n) {
            n = RandomNormal <shape = [3, 4], seed = 1.0> ()
        }
        <domain: "local", opset_import: ["" : 17]>
        Scale (w) => (s) {
        """
        + HALVED
        + "}\n"
        + LAID_OUT
        + LAID_OUT.replace("Lin (", "Noisy ("),
        ["local::Lin", "local::Scale"],
    ),
}


@pytest.mark.parametrize(("text", "inlined"), FOUND.values(), ids=FOUND.keys())
def test_the_functions_on_a_weight_s_way_are_found(text: str, inlined: list[str]) -> None:
    """``inspect --strict`` passed each and the fold changed nothing, or inlined more than
    the weight's way (t266)."""
    model = onnx_model(f"{HEADER}\n{text}", None, True, w=rand(3, 4))
    assert inspect_onnx(model).remaining >= 1
    folded, report = fold_onnx(model)
    assert sorted(report.inlined) == inlined
    assert inspect_onnx(folded).remaining == 0
    assert "Transpose" not in {n.op_type for n in folded.graph.node}  # the noisy one's stays


# F, weight norm on its inputs with ReduceL2's axes as an input (opset 18), called by G with
# its own constants: G computes no weight from an input and stays
LANDS_IN_G = """
    <ir_version: 8, opset_import: ["" : 18, "local" : 1]>
    agraph (float[2, 4] x) => (float[2, 3] y) {
        y = local.G(x)
    }
    <domain: "local", opset_import: ["" : 17, "local" : 1]>
    G (x) => (y) {
        v = Constant <value = float[3, 4] {1., 2., 3., 4., 5., 6., 7., 8., 9., 1., 2., 3.}> ()
        g = Constant <value = float[3, 1] {1., 2., 3.}> ()
        y = local.F(x, v, g)
    }
    <domain: "local", opset_import: ["" : 18]>
    F (x, v, g) => (y) {
        axes = Constant <value_ints = [1]> ()
        n = ReduceL2 <keepdims = 1> (v, axes)
        d = Div(v, n)
        w = Mul(d, g)
        y = Gemm <transB = 1> (x, w)
    }
"""


def test_a_function_whose_ops_mean_something_else_in_the_function_it_lands_in_is_left() -> None:
    """t273: F (opset 18, ReduceL2 with axes as an input) was inlined into G, which stays and
    imports opset 17, where ReduceL2 takes its axes as an attribute: an invalid model ONNX
    Runtime refuses, written with exit 0. F is left, and said."""
    model = onnx_model(LANDS_IN_G)
    folded, report = fold_onnx(model)
    assert report.inlined == []
    assert report.not_inlined == ["local::F imports ai.onnx 18, local::G 17"]
    onnx.checker.check_model(folded, full_check=True)
    assert_close(run(folded, {"x": X}), run(model, {"x": X}))


def test_onnx_s_domain_spelled_ai_onnx_is_one_opset() -> None:
    """t273: a model importing ``"ai.onnx": 13`` with a function importing ``"": 12`` had the
    function inlined without its ops compared, and a second import of the ONNX domain added:
    ONNX Runtime ran the model's Softmax as version 11, and the fold said ok (128 of 128
    outputs differed). The spellings are one opset: compared, and left where ops differ."""
    text = f"""
        <ir_version: 8, opset_import: ["ai.onnx" : 13, "local" : 1]>
        agraph (float[2, 4] x) => (float[2, 3] y) {{
            z = local.WnLinear(x, v, g)
            y = Softmax <axis = 0> (z)
        }}
        {WN_FUNCTION.replace('"" : 17', '"" : 12')}
    """
    model = onnx_model(text, check=False, v=rand(3, 4), g=rand(3, 1))
    folded, report = fold_onnx(model)
    assert report.not_inlined == ["local::WnLinear imports ai.onnx 12, the model 13"]
    assert [(i.domain, i.version) for i in folded.opset_import] == [("ai.onnx", 13), ("local", 1)]
    assert_close(run(folded, {"x": X}), run(model, {"x": X}))
    same = text.replace('"ai.onnx" : 13', '"ai.onnx" : 17').replace('"" : 12', '"" : 16')
    folded, report = fold_onnx(onnx_model(same, check=False, v=rand(3, 4), g=rand(3, 1)))
    assert report.inlined == ["local::WnLinear"] and report.not_inlined == []
    onnx_imports = [(i.domain, i.version) for i in folded.opset_import if i.domain != "local"]
    assert onnx_imports == [("ai.onnx", 17)]
    onnx.checker.check_model(folded, full_check=True)


def test_a_call_of_a_local_function_means_the_same_at_any_version_of_its_domain() -> None:
    """t273: B imports ``other.dom`` 2, the model 1, and its only op of that domain calls the
    local function ``other.dom::C``: B was left (no schema for a call), C inlined into it,
    and a second fold inlined B. A call has no schema to change: one fold inlines all."""
    text = """
        <ir_version: 8, opset_import: ["" : 17, "local" : 1, "other.dom" : 1]>
        agraph (float[2, 4] x) => (float[2, 3] y) {
            y = local.B(x, v, g)
        }
        <domain: "local", opset_import: ["" : 17, "other.dom" : 2]>
        B (x, v, g) => (y) {
            n = ReduceL2 <axes = [1], keepdims = 1> (v)
            d = Div(v, n)
            w = Mul(d, g)
            y = other.dom.C(x, w)
        }
        <domain: "other.dom", opset_import: ["" : 17]>
        C (x, w) => (y) {
            y = Gemm <transB = 1> (x, w)
        }
    """
    model = onnx_model(text, v=rand(3, 4), g=rand(3, 1))
    folded, report = fold_onnx(model)
    assert sorted(report.inlined) == ["local::B", "other.dom::C"] and report.not_inlined == []
    assert [n.op_type for n in folded.graph.node] == ["Gemm"] and not folded.functions
    onnx.checker.check_model(folded, full_check=True)
    assert_close(run(folded, {"x": X}), run(model, {"x": X}))


def test_an_opset_the_model_lacks_takes_the_version_of_a_function_that_stays() -> None:
    """t275: a model importing no ONNX opset, G (stays, opset 18, ReduceMean with its axes
    as an input) and F (inlined, opset 17): the model was given F's 17, which then governed
    G: an invalid model, exit 3. It gets G's 18 (F's ops mean the same there); an opset a
    function imports and never uses does not keep it from being inlined."""
    text = """
        <ir_version: 8, opset_import: ["local" : 1]>
        agraph (float[2, 4] x) => (float[2, 3] y) {
            h = local.WnLinear(x, v, g)
            y = local.G(h)
        }
        <domain: "local", opset_import: ["" : 18]>
        G (h) => (y) {
            axes = Constant <value_ints = [1]> ()
            m = ReduceMean <keepdims = 1> (h, axes)
            y = Sub(h, m)
        }
    """
    function = WN_FUNCTION.replace('"" : 17', '"" : 17, "com.microsoft" : 1').replace(
        "ReduceL2 <axes = [1], keepdims = 1> (v)", "Sqrt(s)"
    )
    function = function.replace(
        "n = Sqrt(s)",
        "sq = Mul(v, v)\n        s = ReduceSum <keepdims = 1> (sq, ax)\n        n = Sqrt(s)",
    ).replace("{", "{\n        ax = Constant <value_ints = [1]> ()", 1)
    model = onnx_model(f"{text}\n{function}", v=rand(3, 4), g=rand(3, 1))
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::WnLinear"] and report.not_inlined == []
    assert {(i.domain, i.version) for i in folded.opset_import} == {("local", 1), ("", 18)}
    onnx.checker.check_model(folded, full_check=True)
    assert_close(run(folded, {"x": X}), run(model, {"x": X}))


# ``WN(x, v, g)``: a weight-norm conv on the function's inputs, its units along axis 0
WN_CONV = """
    <domain: "local", opset_import: ["" : 17]>
    WN (x, v, g) => (y) {
        n = ReduceL2 <axes = [1, 2], keepdims = 1> (v)
        d = Div(v, n)
        w = Mul(g, d)
        y = Conv <pads = [1, 1]> (x, w)
    }
"""


# A weight-norm conv in ``Outer`` that then calls ``Act`` by its overload ``b`` (Neg; the
# overload "" is Relu): IR version 10
OVERLOADED = """
    <ir_version: 10, opset_import: ["" : 17, "local" : 1]>
    agraph (float[1, 4, 8] x) => (float[1, 4, 8] y) {
        y = local.Outer(x, v, g)
    }
    <domain: "local", opset_import: ["" : 17, "local" : 1]>
    Outer (x, v, g) => (y) {
        n = ReduceL2 <axes = [1, 2], keepdims = 1> (v)
        d = Div(v, n)
        w = Mul(g, d)
        c = Conv <pads = [1, 1]> (x, w)
        y = local.Act(c)
    }
    <domain: "local", opset_import: ["" : 17]>
    Act (x) => (y) { y = Relu(x) }
    <domain: "local", opset_import: ["" : 17]>
    Act (x) => (y) { y = Neg(x) }
"""


def _overloaded(text: str) -> onnx.ModelProto:
    model = onnx_model(text, check=False, v=rand(4, 4, 3), g=rand(4, 1, 1))
    model.functions[2].overload = "b"
    for function in model.functions:
        for node in function.node:
            if node.op_type in ("Act", "WN"):
                node.overload = "b"
    onnx.checker.check_model(model, full_check=True)
    return model


def test_a_function_calling_an_overload_is_not_inlined_into_the_graph() -> None:
    """t281: in a function's own body ONNX Runtime runs the overload "" of a name whatever
    the call names; inlined into the main graph, ``Act:b`` ran instead (Relu became Neg, max
    difference 7.3) and the fold said ok. Outer is left, and said."""
    model = _overloaded(OVERLOADED)
    feeds = {"x": rand(1, 4, 8)}
    folded, report = fold_onnx(model)
    assert report.inlined == []
    assert report.not_inlined == [
        'local::Outer calls local::Act:b from its body, where ONNX Runtime runs the overload ""'
        " of its name instead; inlined, the call would run local::Act:b"
    ]
    assert not report  # not ok
    assert_close(run(folded, feeds), run(model, feeds))


def test_an_overload_called_from_a_function_s_body_is_not_inlined_there() -> None:
    """t281: Outer calls ``WN:b`` (a site), where ONNX Runtime runs ``WN`` (another norm):
    inlining ``WN:b`` into Outer, or Outer into the graph, changed the outputs (1.0)."""
    text = """
        <ir_version: 10, opset_import: ["" : 17, "local" : 1]>
        agraph (float[1, 4, 8] x) => (float[1, 4, 8] y) {
            y = local.Outer(x, v, g)
        }
        <domain: "local", opset_import: ["" : 17, "local" : 1]>
        Outer (x, v, g) => (y) { y = local.WN(x, v, g) }
        <domain: "local", opset_import: ["" : 17]>
        WN (x, v, g) => (y) {
            n = ReduceL2 <axes = [1, 2], keepdims = 1> (v)
            d = Div(v, n)
            w = Mul(g, d)
            y = Conv <pads = [1, 1]> (x, w)
        }
        <domain: "local", opset_import: ["" : 17]>
        WN (x, v, g) => (y) {
            n = ReduceL2 <axes = [0], keepdims = 1> (v)
            d = Div(v, n)
            w = Mul(g, d)
            y = Conv <pads = [1, 1]> (x, w)
        }
    """
    model = _overloaded(text)
    feeds = {"x": rand(1, 4, 8)}
    folded, report = fold_onnx(model)
    assert report.inlined == []
    assert sorted(report.not_inlined) == [  # WN:b never runs: only WN is on the way (t288)
        'local::Outer calls local::WN:b from its body, where ONNX Runtime runs the overload ""'
        " of its name instead; inlined, the call would run local::WN:b",
        "local::WN is what ONNX Runtime runs for the call of local::WN:b in the body of "
        "local::Outer; inlined, it would be gone",
    ]
    assert_close(run(folded, feeds), run(model, feeds))
    # called from the graph, the overload named runs before and after: inlined
    direct = text.replace("y = local.Outer(x, v, g)", "y = local.WN(x, v, g)")
    direct = direct.replace("""Outer (x, v, g) => (y) { y = local.WN(x, v, g) }""", "")
    direct = direct.replace('<domain: "local", opset_import: ["" : 17, "local" : 1]>', "")
    model = onnx_model(direct, check=False, v=rand(4, 4, 3), g=rand(1, 4, 3))  # WN:b's g
    model.functions[1].overload = "b"
    model.graph.node[0].overload = "b"
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::WN:b"] and report.not_inlined == []
    assert_close(run(folded, feeds), run(model, feeds))


# WN's values ``a`` and ``d2``: names a branch after the call defines too (a node's output, a
# body's initializer)
CLASHING = """
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    agraph (float[1, 4, 8] x, bool c) => (float[1, 4, 8] y, float[1, 4, 8] u) {
        y = local.WN(x, v, g)
        u = If (c) <
            then_branch = t () => (float[1, 4, 8] o) { a = Neg(x)  o = Add(a, d2) },
            else_branch = e () => (float[1, 4, 8] o2) { o2 = Identity(y) }
        >
    }
    <domain: "local", opset_import: ["" : 17]>
    WN (x, v, g) => (y) {
        n = ReduceL2 <axes = [1, 2], keepdims = 1> (v)
        d = Div(v, n)
        w = Mul(g, d)
        k = Conv <pads = [1, 1]> (x, w)
        a = Relu(k)
        d2 = Sigmoid(a)
        y = Tanh(d2)
    }
"""


def test_names_inlined_into_a_graph_are_none_of_its_bodies() -> None:
    """t281: onnx-ir's inliner kept WN's names where the main graph had none of them, not
    looking into the branch: ``a`` defined twice (internal error, or from the API a model
    the checker refuses), and ``d2`` shadowed by the branch's initializer (no single
    meaning, the fold said ok). Each inlined value takes a name no other value has."""
    model = onnx_model(CLASHING, check=False, v=rand(4, 4, 3), g=rand(4, 1, 1))
    branch = model.graph.node[1].attribute[0].g
    branch.initializer.append(onnx.numpy_helper.from_array(np.full((1, 4, 8), 100.0, "f"), "d2"))
    onnx.checker.check_model(model, full_check=True)
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::WN"] and [s.status for s in report.sites] == ["folded"]
    onnx.checker.check_model(folded, full_check=True)
    names = [o for n in folded.graph.node for o in n.output]
    inner = [o for n in folded.graph.node[-1].attribute[0].g.node for o in n.output]
    assert not set(names) & {*inner, "d2"}  # the branch's names are the branch's alone
    assert {"y", "u"} <= set(names)  # the graph's outputs keep theirs
    for c in (True, False):
        feeds = {"x": rand(1, 4, 8), "c": np.array(c)}
        assert_close(run(folded, feeds), run(model, feeds))


def test_a_function_s_declared_shapes_are_not_its_calls() -> None:
    """t281: onnxscript declares a function's values of rank 0, and a function called at
    two shapes declares its values at one; inlined, each call's values took those: "differ
    in rank", an internal error (from the API, a model the checker refuses)."""
    text = (
        """
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        agraph (float[1, 4, 8] x) => (float[1, 4, 8] y, float[1, 4, 6] z) {
            c1 = local.WN(x, v1, g1)
            y = Relu(c1)
            c2 = local.WN(x, v2, g2)
            z = Relu(c2)
        }
    """
        + WN_CONV
    )
    model = onnx_model(
        text, check=False, v1=rand(4, 4, 3), g1=rand(4, 1, 1), v2=rand(4, 4, 5), g2=rand(4, 1, 1)
    )
    declared = [("n", [4, 1, 1]), ("w", [4, 4, 3]), ("y", [1, 4, 8]), ("d", [])]
    for name, shape in declared:
        model.functions[0].value_info.append(onnx.helper.make_tensor_value_info(name, 1, shape))
    folded, report = fold_onnx(model)
    assert [s.status for s in report.sites] == ["folded", "folded"]
    onnx.checker.check_model(folded, full_check=True)
    onnx.shape_inference.infer_shapes(folded, check_type=True, strict_mode=True)
    feeds = {"x": rand(1, 4, 8)}
    assert_close(run(folded, feeds), run(model, feeds))


def test_a_function_taking_a_graph_from_its_calls_is_read_and_left(tmp_path: Path) -> None:
    """t281: a function whose If takes its branch from the call (``then_branch = @br``) made
    every command an internal error (onnx-ir's walk of bodies reads the reference as a
    graph). Its body is not walked; onnx-ir's inliner cannot read the model, so no function
    is inlined, and that is said."""
    text = (
        """
        <ir_version: 10, opset_import: ["" : 17, "local" : 1]>
        agraph (float[1, 4, 8] x, bool c) => (float[1, 4, 8] y, float[1, 4, 8] u) {
            h = local.WN(x, v, g)
            y = local.WN2(h, v, g)
            u = local.Pick <br = gb () => (float[1, 4, 8] o) { o = Neg(x) }> (x, c)
        }
        <domain: "local", opset_import: ["" : 17]>
        Pick <br> (x, c) => (y) {
            y = If (c) <
                then_branch : graph = @br,
                else_branch = e () => (float[1, 4, 8] o2) { o2 = Identity(x) }
            >
        }
    """
        + WN_CONV
        + WN_CONV.replace("WN (", "WN2 (")
    )
    model = onnx_model(text, v=rand(4, 4, 3), g=rand(4, 1, 1))
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert main(["inspect", str(path)]) == 0
    assert main(["fold", str(path), "-o", str(tmp_path / "f.onnx")]) == 0
    folded, report = fold_onnx(model)
    assert report.inlined == []
    assert report.not_inlined == [  # each one left, by its name (t282: Pick's, twice)
        f"local::{name}: onnx-ir's inliner cannot read the model (local::Pick takes a graph as "
        "an attribute of its calls)"
        for name in ("WN", "WN2")
    ]
    feeds = {"x": rand(1, 4, 8), "c": np.array(True)}
    assert_close(run(folded, feeds), run(model, feeds))


def _with_s(callee: str) -> str:
    """A graph calling ``WN`` with initializers and ``S`` with a value fed at run time, and
    ``S``, which passes it on to ``callee`` (with a gain of ones): the text before the other
    functions (IR version 10, for overloads)."""
    return f"""
        <ir_version: 10, opset_import: ["" : 17, "local" : 1]>
        agraph (float[1, 4, 8] x, float[4, 4, 3] rt) => (float[1, 4, 8] y, float[1, 4, 8] z) {{
            y = local.WN(x, v, g)
            z = local.S(x, rt)
        }}
        <domain: "local", opset_import: ["" : 17, "local" : 1]>
        S (x, rt) => (y) {{
            h = Constant <value = float[4, 1, 1] {{1, 1, 1, 1}}> ()
            y = local.{callee}(x, rt, h)
        }}
    """


def test_the_overload_a_kept_function_s_body_runs_is_not_inlined() -> None:
    """t282: S calls ``WN:b`` from its body, where ONNX Runtime runs ``WN``; the graph calls
    ``WN`` (a site) with initializers. Inlining ``WN`` removed it from the model: ONNX Runtime
    refused the output ("local:WN(-1) is not a registered function"), the fold said ok.
    ``WN`` is kept: as a function S's call passes a value fed at run time, or, where S passes
    constants, said."""
    text = (
        _with_s("WN")
        + WN_CONV
        + """
        <domain: "local", opset_import: ["" : 17]>
        WN (x, v, g) => (y) { y = Conv <pads = [1, 1]> (x, v) }
    """
    )
    model = onnx_model(text, check=False, v=rand(4, 4, 3), g=rand(4, 1, 1))
    model.functions[2].overload = "b"
    model.functions[0].node[1].overload = "b"
    onnx.checker.check_model(model, full_check=True)
    folded, report = fold_onnx(model)
    # S's call, which runs WN, passes it a value fed at run time: WN stays whole, as any
    # function called so (t288; before, the call was read as one of WN:b, and WN was chosen)
    assert report.inlined == [] and report.not_inlined == []
    assert {f.name for f in folded.functions} == {"S", "WN"}
    feeds = {"x": rand(1, 4, 8), "rt": rand(4, 4, 3)}
    assert_close(run(folded, feeds), run(model, feeds))
    # S's call passing constants: WN is computed from constants at each call ONNX Runtime
    # makes, and inlining it would remove it from under S's call: kept, and said
    constant = onnx.helper.make_node("Constant", [], ["rc"], value=onnx.numpy_helper.from_array(
        rand(4, 4, 3), "rc"))  # fmt: skip
    model.functions[0].node.insert(0, constant)
    model.functions[0].node[2].input[1] = "rc"
    onnx.checker.check_model(model, full_check=True)
    folded, report = fold_onnx(model)
    assert report.inlined == []
    assert report.not_inlined == [
        "local::WN is what ONNX Runtime runs for the call of local::WN:b in the body of "
        "local::S; inlined, it would be gone"
    ]
    assert_close(run(folded, feeds), run(model, feeds))
    # S called by nothing resolves no call: WN is inlined and folded (t285)
    model.graph.node[1].op_type, model.graph.node[1].domain = "Identity", ""
    del model.graph.node[1].input[1:]
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::WN"] and report.not_inlined == []
    assert_close(run(folded, feeds), run(model, feeds))


def test_a_function_run_only_by_overload_resolution_counts_as_run() -> None:
    """t286: S's body calls ``A:b``, where ONNX Runtime runs ``A``, whose body calls ``WN:c``
    (a site, also called from the graph), where it runs ``WN`` (a plain conv). ``A`` was
    taken for a function nothing runs: ``WN:c`` was inlined into it, and the output
    differed (32 of 32 elements), fold said ok. ``WN:c`` stays, and is said."""
    text = (
        _with_s("A")
        + """
        <domain: "local", opset_import: ["" : 17, "local" : 1]>
        A (x, v, g) => (y) {
            t = local.WN(x, v, g)
            y = Sigmoid(t)
        }
        <domain: "local", opset_import: ["" : 17]>
        A (x, v, g) => (y) { y = Neg(x) }
    """
        + WN_CONV
        + """
        <domain: "local", opset_import: ["" : 17]>
        WN (x, v, g) => (y) { y = Conv <pads = [1, 1]> (x, v) }
    """
    )
    model = onnx_model(text, check=False, v=rand(4, 4, 3), g=rand(4, 1, 1))
    model.functions[2].overload, model.functions[3].overload = "b", "c"
    model.functions[0].node[1].overload = "b"
    model.functions[1].node[0].overload = "c"
    model.graph.node[0].overload = "c"
    onnx.checker.check_model(model, full_check=True)
    folded, report = fold_onnx(model)
    assert report.inlined == []
    assert report.not_inlined == [
        "local::WN:c is called from the body of local::A, where ONNX Runtime runs the overload"
        ' "" of its name instead'
    ]
    feeds = {"x": rand(1, 4, 8), "rt": rand(4, 4, 3)}
    assert_close(run(folded, feeds), run(model, feeds))
    # the other way round, the ``A`` calling ``WN:c`` (with constants) is ``A:b``, which S's
    # call never runs: nothing keeps ``WN:c`` from being inlined (t287)
    text = text.replace("t = local.WN(x, v, g)", "t = local.WN(x, v2, g2)").replace(
        "A (x, v, g) => (y) {",
        "A (x, v, g) => (y) {\n v2 = Constant <value = float[4, 4, 3] {" + "1, " * 47 + "1}> ()"
        "\n g2 = Constant <value = float[4, 1, 1] {1, 1, 1, 1}> ()",
        1,
    )
    model = onnx_model(text, check=False, v=rand(4, 4, 3), g=rand(4, 1, 1))
    model.functions[1].overload, model.functions[3].overload = "b", "c"
    model.functions[0].node[1].overload = "b"
    model.functions[1].node[2].overload = "c"
    model.graph.node[0].overload = "c"
    onnx.checker.check_model(model, full_check=True)
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::WN:c"] and report.not_inlined == []
    assert_close(run(folded, feeds), run(model, feeds))


def test_an_overload_a_function_s_body_never_runs_passes_nothing() -> None:
    """t288: S's body calls ``A:b``, where ONNX Runtime runs ``A`` (a Neg); ``A:b`` would call
    ``WN`` (a site, called from the graph with initializers) with values fed at run time.
    That call, which never runs, kept ``WN`` from being inlined: the graph's weight norm
    stayed computed at run time, with no site said. It is inlined and folded."""
    text = (
        _with_s("A")
        + """
        <domain: "local", opset_import: ["" : 17, "local" : 1]>
        A (x, v, g) => (y) { y = local.WN(x, v, g) }
        <domain: "local", opset_import: ["" : 17]>
        A (x, v, g) => (y) { y = Neg(x) }
    """
        + WN_CONV
    )
    model = onnx_model(text, check=False, v=rand(4, 4, 3), g=rand(4, 1, 1))
    model.functions[1].overload = "b"
    model.functions[0].node[1].overload = "b"
    onnx.checker.check_model(model, full_check=True)
    folded, report = fold_onnx(model)
    assert report.inlined == ["local::WN"] and [s.status for s in report.sites] == ["folded"]
    feeds = {"x": rand(1, 4, 8), "rt": rand(4, 4, 3)}
    assert_close(run(folded, feeds), run(model, feeds))
