"""Random draws (wnpass.verify.draws): a candidate that draws where the reference does not, or
draws otherwise, fails whatever its runs showed; Dropout, RandomNormal(Like), RandomUniform(Like),
Bernoulli and Multinomial, in local functions and their overloads; an op ONNX Runtime aborts on
is never run."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.helpers import onnx_model
from tests.verify.helpers import one_output_model, one_output_text
from wnpass.errors import InvalidModelError
from wnpass.verify.check import check
from wnpass.verify.draws import aborting_op
from wnpass.verify.report import CANDIDATE_FAILED


def test_a_candidate_that_adds_a_random_op_fails_whatever_its_runs_draw(tmp_path: Path) -> None:
    """``y = x + 100 * (RandomUniformLike(x) > 0.99)`` against ``y = x`` passed in 9 checks of
    10 (t96): a draw that changes an element seldom matches every run the check makes. The
    models say it: the candidate holds a random op the reference does not."""
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(one_output_model("float[N, 8] x", "y = Identity(x)"), reference)
    body = """r = RandomUniformLike (x)
            c = Greater(r, rare)
            f = Cast <to = 1> (c)
            s = Mul(f, hundred)
            y = Add(x, s)"""
    constants = {"rare": np.array(1.0, np.float32), "hundred": np.array(100.0, np.float32)}
    # never draws above 1
    onnx.save(one_output_model("float[N, 8] x", body, **constants), candidate)
    report = check(reference, candidate, runs=1, warmup=0)
    assert all(run.passed for run in report.runs)  # every run matched ...
    assert not report and not report.compared_nothing()  # ... and the check fails, saying why
    assert report.differences == [
        "the candidate holds random ops the reference does not (1 RandomUniformLike (then "
        "Greater(1), Cast, Mul(100))): its outputs may change from run to run, which no run of "
        "the check shows equivalent"
    ]
    assert report.failures() == report.differences
    assert check(candidate, candidate, runs=1, warmup=0).differences == []  # as many in both


def test_only_random_ops_that_reach_an_output_count(tmp_path: Path) -> None:
    """A reference with a RandomUniformLike that reaches no output matched, by count, the
    candidate's that does: equivalent, exit 0, where 18 of 5000 runs were off by 1000 (t130).
    Only draws that reach an output count (tests/onnx/test_reach.py)."""
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    dead = """r = RandomUniformLike (x)
            y = Identity(x)"""
    onnx.save(one_output_model("float[N, 8] x", dead), reference)
    live = """r = RandomUniformLike (x)
            c = Greater(r, rare)
            f = Cast <to = 1> (c)
            y = Add(x, f)"""
    onnx.save(one_output_model("float[N, 8] x", live, rare=np.array(1.0, np.float32)), candidate)
    assert _random_added_to(reference, candidate) == [
        "the candidate holds random ops the reference does not (1 RandomUniformLike (then "
        "Greater(1), Cast)): its outputs may change from run to run, which no run of the check "
        "shows equivalent"
    ]
    assert _random_added_to(candidate, reference) == []  # the dead one changes nothing


@pytest.mark.parametrize("mode", ["absent", "false", "fed", "ratio 0"])
def test_a_dropout_counts_as_random_only_where_it_may_train(mode: str, tmp_path: Path) -> None:
    """A Dropout draws only in training mode: without a training_mode input, or with a
    constant false one, the candidate adds nothing random; with one the caller feeds, it may.
    With a ratio of 0, ONNX Runtime returns its input unchanged, training or not (t99)."""
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(one_output_model("float[N, 8] x", "y = Identity(x)"), reference)
    inputs, body = "float[N, 8] x", "y = Dropout(x)"
    constants: dict[str, np.ndarray] = {}
    if mode == "false":
        body, constants = "y = Dropout(x, ratio, off)", {"off": np.array(False)}
    if mode == "fed":
        inputs, body = "float[N, 8] x, bool on", "y = Dropout(x, ratio, on)"
    if mode == "ratio 0":
        body, constants = "y = Dropout(x, zero, on)", {"on": np.array(True)}
        constants["zero"] = np.array(0.0, np.float32)
    ratio = np.array(0.5, np.float32)
    onnx.save(one_output_model(inputs, body, ratio=ratio, **constants), candidate)
    assert bool(_random_added_to(reference, candidate)) is (mode == "fed")


AFTER_DROPOUT = "y = Relu(d)"  # the Dropout gives no graph output: ONNX Runtime takes it out


@pytest.mark.parametrize(
    ("theirs", "said"),
    [
        ("d = Dropout(h, high, on)", "1 Dropout (ratio=0.9, training_mode=True)"),
        (
            "d = Dropout <seed = 3> (h, ratio, on)",
            "1 Dropout (seed=3, ratio=0.1, training_mode=True)",
        ),
        ("d = Dropout(h, fed, on)", "1 Dropout (ratio input fed, training_mode=True)"),
        ("d = Dropout(h, ratio, on)", None),
        ("d = Dropout(h, same, on)", None),  # a Constant of the ratio's value: as given
        ("d = Dropout(h, half, on)", "1 Dropout (ratio=0.5, training_mode=True)"),
    ],
    ids=["ratio", "seed", "ratio fed", "same", "same value", "half"],
)
def test_a_random_op_that_draws_otherwise_counts(
    tmp_path: Path, theirs: str, said: str | None
) -> None:
    """A training-mode Dropout of ratio 0.1 made 0.9 was called equivalent (t139): from
    ``basic`` up ONNX Runtime takes out a Dropout that neither reads a graph input nor gives
    a graph output, training mode or not, and both models ran as ``Relu(Relu(x))``, every run
    alike. How an op draws is part of what the reference must hold."""
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    constants: dict[str, np.ndarray] = {
        "ratio": np.array(0.1, np.float32),
        "high": np.array(0.9, np.float32),
        "half": np.array(0.5, np.float64),
        "on": np.array(True),
    }
    onnx.save(
        one_output_model(
            "float[N, 8] x",
            f"h = Relu(x)\n d = Dropout(h, ratio, on)\n {AFTER_DROPOUT}",
            **constants,
        ),
        reference,
    )
    inputs = "float[N, 8] x, float fed" if "fed" in theirs else "float[N, 8] x"
    if "same" in theirs:
        theirs = "same = Constant <value = float {0.1}> ()\n " + theirs
    onnx.save(
        one_output_model(inputs, f"h = Relu(x)\n {theirs}\n {AFTER_DROPOUT}", **constants),
        candidate,
    )
    expected = (
        []
        if said is None
        else [
            f"the candidate holds random ops the reference does not ({said}): its outputs may "
            "change from run to run, which no run of the check shows equivalent"
        ]
    )
    assert _random_added_to(reference, candidate) == expected
    if said == "1 Dropout (ratio=0.9, training_mode=True)":
        report = check(reference, candidate, runs=1, warmup=0)
        assert all(run.passed for run in report.runs)  # ran alike, every draw taken out
        lost = (  # and the reference's 0.1 is held by no Dropout of the candidate
            "the reference holds random ops the candidate does not (1 Dropout (ratio=0.1, "
            "training_mode=True)): its outputs may change from run to run where the "
            "candidate's do not, which no run of the check shows equivalent"
        )
        assert not report and report.differences == [*expected, lost]


@pytest.mark.parametrize(
    "theirs",
    ["y = Relu(h)", "d = Dropout(h, zero, on)", "d = Dropout(h, ratio, off)", "d = Dropout(h)"],
    ids=["taken out", "ratio 0", "training_mode false", "eval"],
)
def test_a_random_op_the_candidate_lost_counts(tmp_path: Path, theirs: str) -> None:
    """t151: a training-mode reference against a candidate whose Dropout was taken out, made
    to draw nothing, or exported in eval mode was called equivalent: ONNX Runtime takes the
    reference's Dropout out, so every run matched. What the reference draws, the candidate
    must hold too."""
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    constants: dict[str, np.ndarray] = {
        "ratio": np.array(0.1, np.float32),
        "zero": np.array(0.0, np.float32),
        "on": np.array(True),
        "off": np.array(False),
    }
    trained = f"h = Relu(x)\n d = Dropout(h, ratio, on)\n {AFTER_DROPOUT}"
    onnx.save(one_output_model("float[N, 8] x", trained, **constants), reference)
    body = f"h = Relu(x)\n {theirs}\n {AFTER_DROPOUT if theirs.startswith('d') else ''}"
    used = {k: v for k, v in constants.items() if re.search(rf"\b{k}\b", body)}
    onnx.save(one_output_model("float[N, 8] x", body, **used), candidate)
    report = check(reference, candidate, runs=1, warmup=0)
    assert all(run.passed for run in report.runs)  # ran alike, the reference's draw taken out
    assert not report and report.differences == [
        "the reference holds random ops the candidate does not (1 Dropout (ratio=0.1, "
        "training_mode=True)): its outputs may change from run to run where the candidate's "
        "do not, which no run of the check shows equivalent"
    ]
    assert _random_differences(reference, reference) == []


def test_random_ops_that_draw_alike_are_held_alike(tmp_path: Path) -> None:
    """The check of a file against itself failed where a Dropout's ratio is computed (a key
    of the value's identity, never the same in two models), and so did a RandomNormalLike
    with its default attributes written out against one without (t141). What computes a
    draw input, and an attribute's default, count as what they are; the same for a ratio of
    0.5 not given, given as float32 or float64."""
    texts = {
        "computed": ("float[N, 8] x, float p", "r = Clip(p, lo, hi)\n y = Dropout(x, r, on)"),
        "other bound": ("float[N, 8] x, float p", "r = Clip(p, lo, lo)\n y = Dropout(x, r, on)"),
        "plain": ("float[N, 8] x", "y = RandomNormalLike(x)"),
        "defaults": ("float[N, 8] x", "y = RandomNormalLike <mean = 0.0, scale = 1.0> (x)"),
        "other mean": ("float[N, 8] x", "y = RandomNormalLike <mean = 1.0> (x)"),
        "no ratio": ("float[N, 8] x", "y = Dropout(x, , on)"),
        "float32": ("float[N, 8] x", "y = Dropout(x, f32, on)"),
        "float64": ("float[N, 8] x", "y = Dropout(x, f64, on)"),
    }
    constants: dict[str, np.ndarray] = {
        "lo": np.array(0.0, np.float32),
        "hi": np.array(0.9, np.float32),
        "on": np.array(True),
        "f32": np.array(0.5, np.float32),
        "f64": np.array(0.5, np.float64),
    }
    paths = {}
    for name, (inputs, body) in texts.items():
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.onnx"
        used = {k: v for k, v in constants.items() if re.search(rf"\b{k}\b", body)}
        onnx.save(one_output_model(inputs, body, **used), paths[name])
    alike = [("computed", "computed"), ("plain", "defaults"), ("no ratio", "float32")]
    alike += [("float32", "float64"), ("defaults", "plain")]
    for reference, candidate in alike:
        assert _random_added_to(paths[reference], paths[candidate]) == [], (reference, candidate)
    for reference, candidate in [("computed", "other bound"), ("plain", "other mean")]:
        assert _random_added_to(paths[reference], paths[candidate]), (reference, candidate)


def _in_function(ratio: float) -> onnx.ModelProto:
    """A training-mode Dropout inside a local function, its ratio passed by the caller."""
    make = onnx.helper
    body = [make.make_node("Dropout", ["x", "r", "t"], ["y"])]
    function = make.make_function(
        "local", "F", ["x", "r", "t"], ["y"], body, [make.make_opsetid("", 18)]
    )
    text = f"""
        <ir_version: 10, opset_import: ["" : 18, "local" : 1]>
        agraph (float[4, 8] x) => (float[4, 8] y) {{
            r = Constant <value = float {{{ratio}}}> ()
            t = Constant <value = bool {{1}}> ()
            h = Relu(x)
            d = local.F(h, r, t)
            y = Relu(d)
        }}
    """
    model = onnx.parser.parse_model(text)
    model.functions.append(function)
    return model


def test_draws_in_functions_and_of_any_constants_are_held_by_what_they_draw(
    tmp_path: Path,
) -> None:
    """t144: a Dropout in a local function, its ratio a function input, was keyed by the
    input's name, and 0.1 made 0.9 passed; a constant of more than one element on the way
    to a ratio was an internal error (a list as a key); a large one was keyed by numpy's
    shortened repr (one 0.9 among 5000 0.1 passed) or, as an initializer, apart from itself
    (a file against itself failed). Each call's draw is read inlined, each constant whole."""
    paths = {}
    for name, ratio in (("f1", 0.1), ("f9", 0.9)):
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(_in_function(ratio), paths[name])
    assert _random_added_to(paths["f1"], paths["f1"]) == []
    (said,) = _random_added_to(paths["f1"], paths["f9"])
    assert "(1 Dropout (ratio=0.9, training_mode=True))" in said
    big = np.full(5000, 0.1, np.float32)
    other = big.copy()
    other[2500] = 0.9
    for name, values, constant in (("k1", big, True), ("k9", other, True), ("ki", big, False)):
        body = """r = ReduceMax <keepdims = 0> (k)
            on = Constant <value = bool {1}> ()
            y = Dropout(x, r, on)"""
        model = onnx_model(  # a Constant goes in before the check
            one_output_text("float[N, 8] x", body),
            None,
            not constant,
            **({} if constant else {"k": values}),
        )
        if constant:
            tensor = onnx.numpy_helper.from_array(values, "k")
            model.graph.node.insert(0, onnx.helper.make_node("Constant", [], ["k"], value=tensor))
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(model, paths[name])
    assert _random_added_to(paths["k1"], paths["k1"]) == []
    assert _random_added_to(paths["ki"], paths["ki"]) == []
    assert _random_added_to(paths["k1"], paths["k9"])
    axes = """a = Constant <value = int64[1] {0}> ()
            r = Squeeze(p, a)
            on = Constant <value = bool {1}> ()
            y = Dropout(x, r, on)"""
    paths["sq"] = tmp_path / "sq.onnx"
    onnx.save(one_output_model("float[N, 8] x, float[1] p", axes), paths["sq"])
    assert _random_added_to(paths["sq"], paths["sq"]) == []


def _drop_in_if(ratio: float, opset: int = 18) -> onnx.ModelProto:
    """``_in_function``'s Dropout inside an If of the function's body (``opset``: the
    function's, 17 for one the model imports otherwise, which onnx-ir cannot inline)."""
    make, info = onnx.helper, onnx.helper.make_tensor_value_info
    branches = {
        f"{side}_branch": make.make_graph(
            [make.make_node("Dropout", ["x", "r", "t"], [side])], side, [], [info(side, 1, [4, 8])]
        )
        for side in ("then", "else")
    }
    body = [make.make_node("If", ["t"], ["y"], **branches)]
    function = make.make_function(
        "local", "F", ["x", "r", "t"], ["y"], body, [make.make_opsetid("", opset)]
    )
    model = _in_function(ratio)
    del model.functions[:]
    model.functions.append(function)
    return model


def _ratio_by_function(ratio: float) -> onnx.ModelProto:
    """A Dropout of the main graph whose ratio a local function computes (a Constant)."""
    make = onnx.helper
    text = """
        <ir_version: 10, opset_import: ["" : 18, "local" : 1]>
        agraph (float[4, 8] x) => (float[4, 8] y) {
            t = Constant <value = bool {1}> ()
            r = local.R()
            h = Relu(x)
            d = Dropout(h, r, t)
            y = Relu(d)
        }
    """
    model = onnx.parser.parse_model(text)
    constant = make.make_node("Constant", [], ["r"], value_float=ratio)
    opset = [make.make_opsetid("", 18)]
    model.functions.append(make.make_function("local", "R", [], ["r"], [constant], opset))
    return model


@pytest.mark.parametrize(
    "build",
    [_drop_in_if, _ratio_by_function, lambda ratio: _drop_in_if(ratio, opset=17)],
    ids=["in a function's If", "ratio from a function", "not inlined"],
)
def test_draws_functions_hide_are_told_apart(
    tmp_path: Path, build: Callable[[float], onnx.ModelProto]
) -> None:
    """0.1 made 0.9 passed where the Dropout sat in an If of a function, or a function
    computed its ratio (only functions that drew at their top were inlined), or onnx-ir
    could not inline them (an opset the function imports otherwise), t147. Where it
    cannot, what a call passes is not known: the draw is held by none, a verdict refused."""
    paths = {}
    for ratio in (0.1, 0.9):
        paths[ratio] = tmp_path / f"{ratio}.onnx"
        onnx.save(build(ratio), paths[ratio])
    assert _random_added_to(paths[0.1], paths[0.9])
    same = _random_added_to(paths[0.1], paths[0.1])
    inlined = onnx.load(paths[0.1]).functions[0].opset_import[0].version == 18
    assert same == [] if inlined else "ratio given by a function's caller" in same[0]


def _deep_ratio(depth: int, first: str = "Sigmoid") -> str:
    """A Dropout ratio computed from a graph input p by ``first`` then ``depth`` steps of
    ``Mul(r, r)``."""
    steps = "\n ".join(f"r{i + 1} = Mul(r{i}, r{i})" for i in range(depth))
    return f"r0 = {first}(p)\n {steps}\n on = Constant <value = bool {{1}}> ()\n" + (
        f" y = Dropout(x, r{depth}, on)"
    )


def test_draws_read_whole_and_in_time(tmp_path: Path) -> None:
    """t148: a ratio computed through a value read twice at every step made keys of 2**depth
    tuples (26 steps took 33 s); a ratio given as a graph input with a default was keyed by
    its name alone, and a Bernoulli by its type alone (0 against 1e-6 passed); t149: a NaN
    among constant probabilities kept a file from matching itself; t168: a ratio computed
    through more than 64 nodes was keyed by nothing, and a file held draws itself did not."""
    fed = "on = Constant <value = bool {1}> ()\n y = Dropout(x, r, on)"
    drawn = "b = Bernoulli(q)\n y = Add(x, b)"
    given, ratio = "float[N, 8] x, float r", "float[N, 8] x"
    texts = {
        "deep": ("float[N, 8] x, float p", _deep_ratio(2000), {}),
        "deep other": ("float[N, 8] x, float p", _deep_ratio(2000, first="Tanh"), {}),
        "default 0": (given, fed, {"r": np.array(0.0, np.float32)}),
        "default 1e-6": (given, fed, {"r": np.array(1e-6, np.float32)}),
        "bernoulli 0": (ratio, drawn, {"q": np.zeros((1, 8), np.float32)}),
        "bernoulli 1e-6": (ratio, drawn, {"q": np.full((1, 8), 1e-6, np.float32)}),
        "bernoulli nan": (ratio, drawn, {"q": np.array([[0.0] * 7 + [np.nan]], np.float32)}),
    }
    paths = {}
    for name, (inputs, body, constants) in texts.items():
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.onnx"
        onnx.save(one_output_model(inputs, body, **constants), paths[name])
    assert _random_added_to(paths["deep"], paths["deep"]) == []  # 2**40 tuples never ended
    assert _random_added_to(paths["deep"], paths["deep other"])  # 2000 nodes up, unlike
    for kind in ("default", "bernoulli"):
        zero, small = paths[f"{kind} 0"], paths[f"{kind} 1e-6"]
        assert _random_added_to(zero, zero) == [] and _random_added_to(zero, small)
    (said,) = _random_added_to(paths["default 0"], paths["default 1e-6"])
    assert "(1 Dropout (ratio input r (default 1e-06), training_mode=True))" in said  # t151
    nan = paths["bernoulli nan"]  # a NaN equals no NaN: the file failed against itself (t149)
    assert _random_added_to(nan, nan) == []


@pytest.mark.parametrize(
    "body",
    [
        "z = Mul(x, zero)\n q = Add(z, p)\n b = Bernoulli(q)\n y = Add(x, b)",
        "z = Mul(x, zero)\n q = Add(z, p)\n m = Multinomial <sample_size = 8> (q)\n"
        " c = Cast <to = 1> (m)\n y = Add(x, c)",
    ],
    ids=["bernoulli", "multinomial"],
)
def test_probabilities_computed_otherwise_draw_otherwise(body: str, tmp_path: Path) -> None:
    """t200: Bernoulli probabilities (and Multinomial logits) computed at run time were
    keyed as "computed", whatever computed them: ``x * 0 + 1`` against ``x * 0 + 0.999``
    passed every run. They are keyed op by op, as a Dropout's ratio is."""
    paths = {}
    for name, p in (("one", 1.0), ("less", 0.999)):
        constants = {"zero": np.array(0.0, np.float32), "p": np.array(p, np.float32)}
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(one_output_model("float[N, 8] x", body, **constants), paths[name])
    assert _random_added_to(paths["one"], paths["one"]) == []
    (said,) = _random_added_to(paths["one"], paths["less"])
    assert re.search(r"(probabilities|logits) computed(, then Cast)?\)", said)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("r = RandomNormalLike <scale = 0.0> (x)", "RandomNormalLike has a scale of 0"),
        ("r = RandomNormal <scale = -1.0, shape = [2, 8]> ()", "RandomNormal has a scale of -1"),
        (
            "r = RandomUniformLike <low = 1.0, high = 0.0> (x)",
            "RandomUniformLike has low 1 and high 0",
        ),
    ],
)
def test_a_random_op_onnx_runtime_aborts_on_is_never_run(
    body: str, said: str, tmp_path: Path
) -> None:
    """t200: a RandomNormal of scale 0 (or a RandomUniform whose low is above its high) is a
    valid model on which ONNX Runtime's C++ library aborts the whole process: exit 134, no
    report, the staging folder left. The reference is bad input; a candidate fails unrun."""
    plain, drawing = tmp_path / "plain.onnx", tmp_path / "drawing.onnx"
    onnx.save(one_output_model("float[2, 8] x", "y = Identity(x)"), plain)
    onnx.save(one_output_model("float[2, 8] x", f"{body}\n y = Add(x, r)"), drawing)
    with pytest.raises(InvalidModelError, match=f"drawing.onnx: its {said}, on which onnxrun"):
        check(drawing, plain, runs=1, warmup=0)
    report = check(plain, drawing, runs=1, warmup=0)
    assert not report
    (run,) = report.runs
    assert run.status == CANDIDATE_FAILED and said in str(run.error)


_LOCAL = [onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("local", 1)]


def _reference(name: str, to: str) -> onnx.AttributeProto:
    """A float attribute ``name`` that takes the calling function's attribute ``to``."""
    return onnx.AttributeProto(name=name, ref_attr_name=to, type=onnx.AttributeProto.FLOAT)


def _noisy_function(name: str, attribute: str, opset: int) -> onnx.FunctionProto:
    """``c = a + RandomNormalLike(a, scale=@attribute)``, importing ``opset`` (one the main
    graph does not import: onnx-ir cannot inline it)."""
    noise = onnx.helper.make_node("RandomNormalLike", ["a"], ["b"])
    noise.attribute.append(_reference("scale", attribute))
    nodes = [noise, onnx.helper.make_node("Add", ["a", "b"], ["c"])]
    opsets = [onnx.helper.make_opsetid("", opset)]
    return onnx.helper.make_function("local", name, ["a"], ["c"], nodes, opsets, [attribute])


def _calling(*functions_then_name: Any, **attributes: float) -> onnx.ModelProto:
    """A model of opset 18 holding the functions given, whose graph calls the one named last
    with ``attributes``: ``y = F(x)``."""
    *functions, name = functions_then_name
    call = onnx.helper.make_node(name, ["x"], ["y"], domain="local")
    call.attribute.extend(onnx.helper.make_attribute(k, v) for k, v in attributes.items())
    graph = onnx.helper.make_graph(
        [call],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 8])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 8])],
    )
    opsets = [onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid("local", 1)]
    return onnx.helper.make_model(graph, opset_imports=opsets, functions=functions, ir_version=9)


@pytest.mark.parametrize("function_opset", [18, 17], ids=["inlined", "not-inlined"])
def test_a_random_op_onnx_runtime_aborts_on_through_a_function_is_never_run(
    function_opset: int, tmp_path: Path
) -> None:
    """t201: a local function's RandomNormalLike of scale ``@s``, called with s = 0, was read
    with its default scale (1): ONNX Runtime inlines the call and aborted the process; t203:
    where onnx-ir cannot inline it (the function imports another opset), read call by call."""
    function = _noisy_function("Noisy", "s", function_opset)
    model = _calling(function, "Noisy", s=0.0)
    drawing, plain = tmp_path / "drawing.onnx", tmp_path / "plain.onnx"
    onnx.save(model, drawing)
    onnx.save(one_output_model("float[2, 8] x", "y = Identity(x)"), plain)
    with pytest.raises(InvalidModelError, match=r"RandomNormalLike( 'node')? has a scale of 0"):
        check(drawing, plain, runs=1, warmup=0)
    report = check(plain, drawing, runs=1, warmup=0)
    assert not report and report.runs[0].status == CANDIDATE_FAILED


def test_random_ops_onnx_runtime_runs_are_not_refused(tmp_path: Path) -> None:
    """An infinite scale, and a low equal to its high, are no assertion's: they run."""
    path = tmp_path / "m.onnx"
    body = (
        "a = RandomNormalLike <scale = 1e38> (x)\n b = RandomUniformLike <low = 1.0, high = 1.0>"
        " (x)\n s = Add(a, b)\n y = Add(x, s)"
    )
    onnx.save(one_output_model("float[2, 8] x", body), path)
    from wnpass.onnx import io as onnx_io

    assert aborting_op(onnx_io.load(path)) is None


def _random_differences(reference: Path, candidate: Path) -> list[str]:
    from wnpass.onnx import io as onnx_io
    from wnpass.verify.draws import random_differences

    return random_differences(onnx_io.load(reference), onnx_io.load(candidate))


def _random_added_to(reference: Path, candidate: Path) -> list[str]:
    """The line on the random ops the candidate holds and the reference does not, if any."""
    lines = _random_differences(reference, candidate)
    return [line for line in lines if line.startswith("the candidate holds")]


LOST = (
    "the reference holds random ops the candidate does not (1 Dropout (ratio=0.1, "
    "training_mode=True)): its outputs may change from run to run where the candidate's do "
    "not, which no run of the check shows equivalent"
)


@pytest.mark.parametrize(
    ("ours", "theirs", "differences"),
    [
        (AFTER_DROPOUT, "s = Shape(d)\n r = Reshape(h, s)\n y = Relu(r)", [LOST]),
        (AFTER_DROPOUT, "y = CastLike(h, d)", [LOST]),
        (
            "z = NonZero(d)\n s = Shape(z)\n f = Cast <to = 1> (s)\n m = ReduceSum(f)"
            "\n y = Add(h, m)",
            "q = Shape(d)\n r = Reshape(h, q)\n z = NonZero(r)\n s = Shape(z)"
            "\n f = Cast <to = 1> (s)\n m = ReduceSum(f)\n y = Add(h, m)",
            [LOST],
        ),
        (
            "s = Shape(d)\n y = Reshape(h, s)",
            "s = If (c) <then_branch = g1 () => (int64[2] t) { t = Shape (d) }, "
            "else_branch = g2 () => (int64[2] e) { e = Shape (d) }>\n y = Reshape(h, s)",
            [],
        ),
    ],
    ids=["a shape read", "a type read", "a size it decides", "a shape read in a body"],
)
def test_only_draws_that_can_change_an_output_count(
    tmp_path: Path, ours: str, theirs: str, differences: list[str]
) -> None:
    """t154: a candidate whose Dropout only gave a Reshape its shape always gives what an
    eval export gives, and held the reference's Dropout, read by value: equivalent; so did
    one whose Dropout only gave CastLike a type, and one whose Dropout's shape, not values,
    went through a NonZero, against a reference counting the Dropout's kept elements
    (t156). A Shape read in a body counted by value (t156). A draw counts where its values
    can change an output: by value, or through a size its values decide."""
    constants: dict[str, np.ndarray] = {"ratio": np.array(0.1, np.float32), "on": np.array(True)}
    drawn = "h = Relu(x)\n d = Dropout(h, ratio, on)\n"
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    inputs = "float[N, 8] x, bool c" if "If" in theirs else "float[N, 8] x"
    for path, body in ((reference, ours), (candidate, theirs)):
        text = one_output_text(inputs, f"{drawn} {body}")
        onnx.save(onnx_model(text, None, True, **constants), path)
    assert _random_differences(reference, candidate) == differences
    assert _random_differences(candidate, candidate) == []
    assert _random_differences(reference, reference) == []


def test_a_draw_moved_to_another_output_counts(tmp_path: Path) -> None:
    """The reference draws for z, the candidate for y: as many ops of the type in both, and
    check said equivalent (t137). Each output is held to the reference's of its name."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N, 8] x) => (float[N, 8] y, float[N, 8] z) {{
            r = RandomUniformLike (x)
            c = Greater (r, rare)
            f = Cast <to = 1> (c)
            {drawn} = Add (x, f)
            {plain} = Identity (x)
        }}
    """
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    rare = {"rare": np.array(1.0, np.float32)}
    for path, drawn, plain in ((reference, "z", "y"), (candidate, "y", "z")):
        onnx.save(onnx_model(text.format(drawn=drawn, plain=plain), None, True, **rare), path)
    assert _random_added_to(reference, candidate) == [
        "the candidate holds random ops the reference does not (1 RandomUniformLike (then "
        "Greater(1), Cast)): its outputs may change from run to run, which no run of the check "
        "shows equivalent"
    ]
    assert _random_added_to(reference, reference) == []


# A draw thresholded by a constant, as torch's exporter writes ``rand_like(x) < p`` (a Bernoulli
# of p), and by a second threshold read from the same draw
THRESHOLDED = """
    u = RandomUniformLike (x)
    {first}
    {second}
    a = Cast <to = 1> (m)
    b = Cast <to = 1> (n)
    s = Add(a, b)
    y = Add(x, s)
"""
LESS, GREATER = "m = Less(u, p)", "n = Greater(u, q)"


def test_what_a_draw_is_read_through_with_constants_is_part_of_how_it_draws(
    tmp_path: Path,
) -> None:
    """``x + (rand_like(x) < p)`` with p = 0 against p = 1e-4 drew alike by the op alone and
    passed every check, while one run in 150 differs (t310; as one Bernoulli op, the same draw
    failed). What a draw is read through with small constants alone is part of its key, by
    the constants' values: a threshold computed in one model and given in the other, or two
    readers written in another order, draw alike."""
    paths = {}
    variants = {
        "p 0": (LESS, GREATER, {"p": 0.0}),
        "p 1e-4": (LESS, GREATER, {"p": 1e-4}),
        "p computed": ("pc = Sub(p, p)\n m = Less(u, pc)", GREATER, {"p": 0.5}),
        "reordered": (GREATER, LESS, {"p": 0.0}),
        "q other": (LESS, GREATER, {"p": 0.0, "q": 0.5}),
    }
    for name, (first, second, values) in variants.items():
        constants = {"p": 0.0, "q": 1.0, **values}  # u < 0 and u > 1: never, so runs agree
        arrays = {key: np.array(value, np.float32) for key, value in constants.items()}
        body = THRESHOLDED.format(first=first, second=second)
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(one_output_model("float[N, 8] x", body, **arrays), paths[name])
    zero = paths["p 0"]
    assert _random_differences(zero, paths["p 1e-4"]) == [
        "the candidate holds random ops the reference does not (1 RandomUniformLike (then "
        "Less(0.0001), Cast, Greater(1))): its outputs may change from run to run, which no "
        "run of the check shows equivalent",
        "the reference holds random ops the candidate does not (1 RandomUniformLike (then "
        "Less(0), Cast, Greater(1))): its outputs may change from run to run where the "
        "candidate's do not, which no run of the check shows equivalent",
    ]
    assert _random_differences(zero, paths["q other"])  # the second threshold counts too
    for alike in ("p computed", "reordered"):
        assert _random_differences(zero, paths[alike]) == [], alike
        assert check(zero, paths[alike], runs=1, warmup=0)


def test_a_random_op_aborting_through_a_function_s_function_is_never_run(tmp_path: Path) -> None:
    """t205: Outer<s=0> calls Inner<t=@s> whose RandomNormalLike takes scale=@t; where onnx-ir
    cannot inline them (opset 17 inside, 18 outside), one level of calls was bound, the scale
    read as its default, and ONNX Runtime aborted the process."""
    inner = _noisy_function("Inner", "t", 17)
    call = onnx.helper.make_node("Inner", ["a"], ["c"], domain="local")
    call.attribute.append(_reference("t", "s"))
    outer = onnx.helper.make_function("local", "Outer", ["a"], ["c"], [call], _LOCAL, ["s"])
    model = _calling(inner, outer, "Outer", s=0.0)
    onnx.save(model, drawing := tmp_path / "nested.onnx")
    from wnpass.onnx import io as onnx_io

    assert "RandomNormalLike has a scale of 0" in (aborting_op(onnx_io.load(drawing)) or "")


def test_an_attribute_a_caller_leaves_unset_leaves_the_called_function_s_default(
    tmp_path: Path,
) -> None:
    """t209: Inner's scale ``@t`` defaults to 0; Outer declares ``s`` without a default and
    calls Inner<t=@s>; the graph calls Outer without ``s``. ONNX Runtime takes Inner's default
    (and aborted the process); the unset ``s`` was read as binding ``t``, so the op's own
    default scale (1) was read."""
    inner = _noisy_function("Inner", "t", 17)
    del inner.attribute[:]
    inner.attribute_proto.append(onnx.helper.make_attribute("t", 0.0))
    call = onnx.helper.make_node("Inner", ["a"], ["c"], domain="local")
    call.attribute.append(_reference("t", "s"))
    outer = onnx.helper.make_function("local", "Outer", ["a"], ["c"], [call], _LOCAL, ["s"])
    onnx.save(_calling(inner, outer, "Outer"), drawing := tmp_path / "unset.onnx")
    from wnpass.onnx import io as onnx_io

    assert "RandomNormalLike has a scale of 0" in (aborting_op(onnx_io.load(drawing)) or "")


@pytest.mark.parametrize("opset", [18, 17], ids=["inlined", "not-inlined"])
@pytest.mark.parametrize("called", ["z", ""], ids=["calls-z", "calls-plain"])
def test_a_call_inside_a_function_is_read_as_onnx_runtime_runs_it(
    called: str, opset: int, tmp_path: Path
) -> None:
    """t209: G<s> calls F by overload ``called`` with ``s=@s``, the graph calls G<s=0>. Of F's
    two overloads, ``""`` draws with scale ``@s`` and ``"z"`` with scale 1. Inside a function
    ONNX Runtime runs the overload ``""`` whatever the call names (and aborted the process
    where the call named ``z``, which onnx-ir's inlining and the call-by-call walk followed):
    both are read; a call of ``""`` alone reads ``""``, and the model that calls ``z``
    directly from the graph is not refused."""
    steady = _noisy_function("F", "s", opset)
    steady.node[0].attribute[0].CopyFrom(onnx.helper.make_attribute("scale", 1.0))
    steady.overload = "z"
    noisy = _noisy_function("F", "s", opset)
    call = onnx.helper.make_node("F", ["a"], ["c"], domain="local", overload=called)
    call.attribute.append(_reference("s", "s"))
    opsets = [onnx.helper.make_opsetid("", opset), onnx.helper.make_opsetid("local", 1)]
    outer = onnx.helper.make_function("local", "G", ["a"], ["c"], [call], opsets, ["s"])
    model = _calling(steady, noisy, outer, "G", s=0.0)
    model.ir_version = 10  # overloads
    onnx.save(model, drawing := tmp_path / "overloads.onnx")
    from wnpass.onnx import io as onnx_io

    said = aborting_op(onnx_io.load(drawing)) or ""
    assert "has a scale of 0, on which onnxruntime aborts" in said
    # the graph calling the steady overload itself: ONNX Runtime follows it there
    direct = _calling(steady, noisy, "F", s=0.0)
    direct.ir_version, direct.graph.node[0].overload = 10, "z"
    onnx.save(direct, direct_path := tmp_path / "direct.onnx")
    assert aborting_op(onnx_io.load(direct_path)) is None


def _overloads_of_f() -> tuple[onnx.FunctionProto, onnx.FunctionProto]:
    """F's two overloads: ``""`` draws (a Dropout of ratio 0.5 in training mode), ``z`` is an
    Identity."""
    ratio = onnx.helper.make_tensor("r", onnx.TensorProto.FLOAT, [], [0.5])
    mode = onnx.helper.make_tensor("t", onnx.TensorProto.BOOL, [], [True])
    drawing = [
        onnx.helper.make_node("Constant", [], ["r"], value=ratio),
        onnx.helper.make_node("Constant", [], ["t"], value=mode),
        onnx.helper.make_node("Dropout", ["a", "r", "t"], ["c"]),
    ]
    opsets = [onnx.helper.make_opsetid("", 18)]
    noisy = onnx.helper.make_function("local", "F", ["a"], ["c"], drawing, opsets)
    identity = [onnx.helper.make_node("Identity", ["a"], ["c"])]
    steady = onnx.helper.make_function("local", "F", ["a"], ["c"], identity, opsets)
    steady.overload = "z"
    return noisy, steady


def _calling_z(steady: onnx.FunctionProto) -> onnx.ModelProto:
    """A model whose graph calls F by its overload ``z`` (which draws nothing)."""
    plain = _calling(steady, "F")
    plain.ir_version, plain.graph.node[0].overload = 10, "z"
    return plain


def test_a_draw_in_the_overload_onnx_runtime_runs_inside_a_function_counts(
    tmp_path: Path,
) -> None:
    """t212: G calls F by overload ``z`` (an Identity); F's overload ``""``, which ONNX
    Runtime runs there, holds a Dropout that draws. Only the named overload was read: the
    candidate was "equivalent" to a plain model."""
    opsets = [onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid("local", 1)]
    noisy, steady = _overloads_of_f()
    call = onnx.helper.make_node("F", ["a"], ["c"], domain="local", overload="z")
    outer = onnx.helper.make_function("local", "G", ["a"], ["c"], [call], opsets)
    model = _calling(noisy, steady, outer, "G")
    model.ir_version = 10  # overloads
    onnx.save(model, candidate := tmp_path / "cand.onnx")
    onnx.save(_calling_z(steady), reference := tmp_path / "ref.onnx")
    assert _random_added_to(reference, candidate) == [
        "the candidate holds random ops the reference does not (1 Dropout (ratio=0.5, "
        "training_mode=True)): its outputs may change from run to run, which no run of the "
        "check shows equivalent"
    ]


def test_a_call_in_an_if_body_inside_a_function_runs_the_overload_it_names(
    tmp_path: Path,
) -> None:
    """t216: in a function's If body ONNX Runtime runs the overload named (``z``, plain), not
    ``""`` (a Dropout that never runs): reading ``""`` there too failed a model that draws
    nothing ("NOT EQUIVALENT")."""
    opsets = [onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid("local", 1)]
    noisy, steady = _overloads_of_f()
    branches = {}
    for branch, node in (
        ("then", onnx.helper.make_node("F", ["a"], ["o"], domain="local", overload="z")),
        ("else", onnx.helper.make_node("Identity", ["a"], ["o"])),
    ):
        output = onnx.helper.make_tensor_value_info("o", onnx.TensorProto.FLOAT, [2, 8])
        branches[f"{branch}_branch"] = onnx.helper.make_graph([node], branch, [], [output])
    true = onnx.helper.make_tensor("b", onnx.TensorProto.BOOL, [], [True])
    body = [
        onnx.helper.make_node("Constant", [], ["b"], value=true),
        onnx.helper.make_node("If", ["b"], ["c"], **branches),
    ]
    outer = onnx.helper.make_function("local", "G", ["a"], ["c"], body, opsets)
    model = _calling(noisy, steady, outer, "G")
    model.ir_version = 10  # overloads
    onnx.save(model, candidate := tmp_path / "cand.onnx")
    onnx.save(_calling_z(steady), reference := tmp_path / "ref.onnx")
    assert _random_added_to(reference, candidate) == []
    assert check(reference, candidate, runs=1, warmup=0)


def test_a_chain_of_functions_longer_than_any_bound_is_followed_to_its_end(
    tmp_path: Path,
) -> None:
    """t207: calls were followed 16 deep; a chain of 17 functions passing ``t=@t`` down to a
    RandomNormalLike of scale ``@t`` (0 at the top) aborted the process."""
    depth = 20
    functions = [_noisy_function("F0", "t", 17)]
    for i in range(1, depth):
        call = onnx.helper.make_node(f"F{i - 1}", ["a"], ["c"], domain="local")
        call.attribute.append(_reference("t", "t"))
        functions.append(
            onnx.helper.make_function("local", f"F{i}", ["a"], ["c"], [call], _LOCAL, ["t"])
        )
    model = _calling(*functions, f"F{depth - 1}", t=0.0)
    onnx.save(model, drawing := tmp_path / "chain.onnx")
    from wnpass.onnx import io as onnx_io

    assert "RandomNormalLike has a scale of 0" in (aborting_op(onnx_io.load(drawing)) or "")


def test_functions_calling_the_next_twice_are_each_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """t208: each function calling the next twice, 20 deep (not inlined: opset 17 inside),
    was read once per path of calls, 2**20 times: check hung on a 1 KB model. (12 deep here:
    loading such a model takes onnx's own checks time of the same order.)"""
    from wnpass.onnx import io as onnx_io
    from wnpass.verify import draws

    depth, read = 12, []
    functions = [_noisy_function("F0", "t", 17)]
    for i in range(1, depth):
        calls = []
        for j in (0, 1):
            call = onnx.helper.make_node(f"F{i - 1}", ["a"], [f"c{j}"], domain="local")
            call.attribute.append(_reference("t", "t"))
            calls.append(call)
        calls.append(onnx.helper.make_node("Add", ["c0", "c1"], ["c"]))
        functions.append(
            onnx.helper.make_function("local", f"F{i}", ["a"], ["c"], calls, _LOCAL, ["t"])
        )
    onnx.save(_calling(*functions, f"F{depth - 1}", t=1.0), path := tmp_path / "twice.onnx")
    aborts = draws._aborts

    def counted(node: Any, bound: Any) -> str | None:
        read.append(node)
        return aborts(node, bound)

    monkeypatch.setattr(draws, "_aborts", counted)
    assert aborting_op(onnx_io.load(path)) is None
    assert len(read) < 10 * depth  # each function's nodes once: 3 each and the noise's 2


def test_a_draw_is_read_elementwise_only_and_the_same_way_as_a_ratio(tmp_path: Path) -> None:
    """t311: a sample picking a row of an embedding (``Gather(table, Multinomial(...))``) was
    keyed with the table's values, an ulp apart once the table was folded: a right fold failed
    its check. Only elementwise readers are part of how a model draws; a draw read twice
    (``u * u < p``) and a threshold given as an input with a default are read (each matched
    a threshold of another value); a chain past the readers read matches itself."""
    table = np.arange(12, dtype=np.float32).reshape(3, 4)
    sampled = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[1, 3] logits) => (float[1, 2, 4] y) {
            m = Multinomial <sample_size = 2, seed = 1.0> (logits)
            y = Gather(table, m)
        }
    """
    paths = {}
    for name, values in (("table", table), ("table moved", np.nextafter(table, np.inf))):
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(onnx_model(sampled, table=values), paths[name])
    assert _random_differences(paths["table"], paths["table moved"]) == []
    squared = (
        "u = RandomUniformLike (x)\n q = Mul(u, u)\n m = Less(q, p)\n f = Cast <to = 1> (m)\n"
        " y = Add(x, f)"
    )
    for name, p in (("squared 0", 0.0), ("squared tiny", 1e-12)):
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(
            one_output_model("float[N, 8] x", squared, p=np.array(p, np.float32)), paths[name]
        )
    assert _random_differences(paths["squared 0"], paths["squared tiny"])
    long = (
        "u = RandomUniformLike (x)\n"
        + "".join(f" u{i + 1} = Mul({'u' if i == 0 else f'u{i}'}, one)\n" for i in range(300))
        + " y = Add(x, u300)"
    )
    paths["long"] = tmp_path / "long.onnx"
    onnx.save(one_output_model("float[N, 8] x", long, one=np.array(1.0, np.float32)), paths["long"])
    assert _random_differences(paths["long"], paths["long"]) == []


def test_a_threshold_given_as_an_input_with_a_default_is_keyed_with_it(tmp_path: Path) -> None:
    """t311: ``Less(u, p)`` with p an input whose default is 0 against one whose default is
    1e-6 drew alike."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N, 8] x, float p) => (float[N, 8] y) {
            u = RandomUniformLike (x)
            m = Less(u, p)
            f = Cast <to = 1> (m)
            y = Add(x, f)
        }
    """
    paths = {}
    for name, p in (("0", 0.0), ("1e-6", 1e-6)):
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(onnx_model(text, p=np.array(p, np.float32)), paths[name])
    (said,) = _random_added_to(paths["0"], paths["1e-6"])
    assert "then Less(input p (default 1e-06)), Cast" in said
    assert _random_differences(paths["0"], paths["0"]) == []


def test_a_threshold_computed_is_keyed_as_the_graph_holds_it(tmp_path: Path) -> None:
    """``Less(u, Div(1, 1e4))`` against ``Less(u, 1e-4)``, one float32 value: the computed one
    was keyed unrounded, in float64, and the two drew apart, both said ``Less(0.0001)``
    (t313)."""
    paths = {}
    bodies = {
        "literal": "m = Less(u, p)",
        "computed": "q = Div(one, tenk)\n m = Less(u, q)",
        "other": "q = Div(one, nine)\n m = Less(u, q)",
    }
    for name, first in bodies.items():
        body = f"u = RandomUniformLike (x)\n {first}\n f = Cast <to = 1> (m)\n y = Add(x, f)"
        arrays = {
            key: np.array(value, np.float32)
            for key, value in (("p", 1e-4), ("one", 1.0), ("tenk", 1e4), ("nine", 9999.0))
        }
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(one_output_model("float[N, 8] x", body, **arrays), paths[name])
    assert _random_differences(paths["literal"], paths["computed"]) == []
    assert _random_differences(paths["literal"], paths["other"])
