"""The precision outputs are computed at: a float16 model's, cast to float32 at its end."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
import pytest

from tests.helpers import onnx_model
from wnpass.verify.check import check
from wnpass.verify.precision import computed_at
from wnpass.verify.report import comparison_row

# a float16 body, its input and output kept float32 (onnxconverter-common's keep_io_types)
HALF = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[4, 8] x) => (float[4, 8] y, float[4, 8] z, float[8, 4] t, float[4, 8] w,
                               float[4] i, float[2] j, float[4, 8] s, float[4, 3] o,
                               float[4, 3] n, float[4, 4] b2, float[4, 8] wh, float[4] md,
                               float[4, 8] hm, float[4] tr, float[4, 8] pr, float[4] cl,
                               float[4] sh) {
        a = ArgMax <axis = 1, keepdims = 0> (x)
        k = Cast <to = 10> (a)
        i = Cast <to = 1> (k)
        two = Constant <value = int64[1] {2}> ()
        zero = Constant <value = int64[1] {0}> ()
        l = Slice (k, zero, two)
        m = Neg (l)
        j = Cast <to = 1> (m)
        one = Constant <value = int64 {1}> ()
        u = CumSum (x, one)
        h16 = Cast <to = 10> (u)
        s = Cast <to = 1> (h16)
        three = Constant <value = int64[1] {3}> ()
        f16 = Cast <to = 10> (x)
        tv, ti = TopK (f16, three)
        o = Cast <to = 1> (tv)
        t16 = Cast <to = 10> (ti)
        n = Cast <to = 1> (t16)
        h = Cast <to = 10> (x)
        p = Mul(h, c)
        y = Cast <to = 1> (p)
        b = Cast <to = 16> (x)
        z = Cast <to = 1> (b)
        q = Cast <to = 1> (p)
        t = Transpose <perm = [1, 0]> (q)
        w = Mul(x, x)
        fours = Constant <value = int64[2] {4, 4}> ()
        b1, b2h = Split <axis = 1> (p, fours)
        b2 = Cast <to = 1> (b2h)
        pos = Greater (x, x)
        nought = Constant <value = float16 {0}> ()
        whh = Where (pos, nought, p)
        wh = Cast <to = 1> (whh)
        thousand = Constant <value = int64 {997}> ()
        one1 = Constant <value = int64[1] {1}> ()
        mi = Mod (a, thousand)
        mh = Cast <to = 10> (mi)
        md = Cast <to = 1> (mh)
        hx = Hardmax (x)
        hh = Cast <to = 10> (hx)
        hm = Cast <to = 1> (hh)
        ak = Unsqueeze (k, one1)
        ids = Constant <value = int64[4, 2] {0, 0, 1, 0, 2, 0, 3, 0}> ()
        gn = GatherND (ak, ids)
        tr = Cast <to = 1> (gn)
        slope = Constant <value = float[1] {0.25}> ()
        pe = PRelu (x, slope)
        ph = Cast <to = 10> (pe)
        pr = Cast <to = 1> (ph)
        lo = Constant <value = float16 {0}> ()
        hi = Constant <value = float16 {900}> ()
        kc = Clip (k, lo, hi)
        cl = Cast <to = 1> (kc)
        ks = Shrink <lambd = 0.5> (k)
        sh = Cast <to = 1> (ks)
    }
"""


def test_outputs_cast_from_a_narrower_float_are_listed_at_it() -> None:
    """y and t (through a Transpose) hold float16 values, z bfloat16 ones; w is float32 all
    along, and is not listed, nor are i and j: integers cast to float16 (an ArgMax's), also
    sliced and negated, hold them as they are, and an index off by one must not pass as a
    rounding (t319, t321), nor is n, TopK's indices (t322), nor md, a Mod of indices (t323).
    s is a cast of a float32 value of no declared type (a CumSum's): rounded to float16, as a
    model converted with keep_io_types ends (t321); o is TopK's float16 values, b2 a Split's
    second output and wh a Where of a float16 constant (t323). hm is a cast of a value whose
    type wnpass does not read (a Hardmax's): listed, its values decide (t330: a RoiAlign
    kept in float32 by a conversion was refused float16's tolerance); tr holds
    indices in float16 gathered by GatherND, not listed, and pr a PRelu's float32 values
    rounded to float16, listed (t324); cl and sh hold indices clipped and shrunk without a
    bias, which selects them or 0: not listed (t325)."""
    model = onnx_model(HALF, None, True, c=np.full((4, 8), 1.5, np.float16))
    held = computed_at(ir.serde.deserialize_model(model))
    assert held.dtypes == {
        "y": np.dtype(np.float16),
        "z": np.dtype(ml_dtypes.bfloat16),
        "t": np.dtype(np.float16),
        "s": np.dtype(np.float16),
        "o": np.dtype(np.float16),
        "b2": np.dtype(np.float16),
        "wh": np.dtype(np.float16),
        "pr": np.dtype(np.float16),
        "hm": np.dtype(np.float16),
    }


TWO_STEPS = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[4, 8] x) => (float[4, 8] y) {
        h = Cast <to = 10> (x)
        p = Mul(h, c)
        y = Cast <to = 1> (p)
    }
"""


@pytest.mark.parametrize("given", ["none", "both", "rtol"])
def test_a_float16_model_with_float32_outputs_is_held_to_float16s_tolerance(
    tmp_path: Path, given: str
) -> None:
    """Such a model folded differed from itself by float16 roundings, and failed float32's
    default tolerance (1e-4) every time (t316): its outputs are compared at float16's
    (1e-2), said in a note, the table and the JSON (``defaults_of``). A tolerance given is
    used as given, the other one float16's default, as the note says (t319)."""
    c = np.full((4, 8), 1.5, np.float16)
    moved = c.copy()
    moved[0, 0] = np.nextafter(c[0, 0], np.float16(2))  # one float16 step: 1e-3 of it
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(onnx_model(TWO_STEPS, None, True, c=c), reference)
    onnx.save(onnx_model(TWO_STEPS, None, True, c=moved), candidate)
    rtol, atol = {"none": (None, None), "both": (1e-4, 1e-5), "rtol": (1e-3, None)}[given]
    report = check(reference, candidate, runs=1, warmup=0, rtol=rtol, atol=atol)
    (row,) = report.runs[0].comparisons
    noted = "y: float16 values cast to a wider type at the end: compared at float16's default"
    said = [note for note in report.notes if note.startswith(noted)]
    (recorded,) = report.to_dict()["runs"][0]["comparisons"]
    if given == "both":
        assert not report and (row.rtol, row.atol) == (1e-4, 1e-5) and not said
        assert recorded["defaults_of"] is None
        return
    assert said == [noted + (" tolerance" if given == "none" else " atol (rtol as given)")]
    if given == "none":
        assert report and (row.rtol, row.atol) == (1e-2, 1e-3) and row.max_abs > 0
        assert recorded["defaults_of"] == "float16"
        assert comparison_row("cpu", row)[6].endswith(" (float16's)")
    else:  # the note says whose atol it is; the row's mark would cover both (t321)
        assert (row.rtol, row.atol) == (1e-3, 1e-3) and recorded["defaults_of"] is None
        assert not comparison_row("cpu", row)[6].endswith(" (float16's)")


CASTS = """
    <ir_version: 9, opset_import: ["" : 19]>
    agraph (float[4, 8] x) => (float[4] cl, float[4, 8] same, float[4, 8] bf, float[4, 8] f8) {
        a = ArgMax <axis = 1, keepdims = 0> (x)
        like = CastLike (a, half)
        cl = Cast <to = 1> (like)
        h = Cast <to = 10> (x)
        hh = Cast <to = 10> (h)
        same = Cast <to = 1> (hh)
        b = Cast <to = 16> (x)
        bh = Cast <to = 10> (b)
        bf = Cast <to = 1> (bh)
        e = Cast <to = 17> (x)
        eh = Cast <to = 10> (e)
        f8 = Cast <to = 1> (eh)
    }
"""


def test_a_cast_rounds_where_it_narrows_a_float_only() -> None:
    """t326: ``CastLike`` of an ArgMax to float16 holds indices (cl, not listed; a CastLike was
    taken to round); float16 cast to float16 rounds nothing more than before it (same: its
    rounding is the first Cast's, listed); bfloat16 to float16 rounds (bf), float8 widened to
    float16 does not, but the cast into float8 did (f8, listed)."""
    model = onnx_model(CASTS, None, True, half=np.array(0, np.float16))
    held = computed_at(ir.serde.deserialize_model(model))
    assert held.dtypes == {name: np.dtype(np.float16) for name in ("same", "bf", "f8")}


INDEX = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[4, 1000] x) => (float[4, 1] y) {
        xr = Add (x, ramp)
        a = ArgMax <axis = 1> (xr)
        k = Cast <to = 10> (a)
        kd = Dropout (k)
        y = Cast <to = 1> (kd)
    }
"""


def test_an_output_of_whole_numbers_keeps_its_own_types_tolerance(tmp_path: Path) -> None:
    """t326: an index of about 999 held in float16 through an op the graph reading takes to
    round (here Dropout; also TopK's values, MaxPool, Resize, a body, a custom op) was
    compared at float16's tolerance (1e-2), which passed it off by one: every value of the
    reference is a whole number, so float32's applies, as the note and the JSON say."""
    ramp = (np.arange(1000, dtype=np.float32) * 10.0).reshape(1, 1000)
    reference = onnx_model(INDEX, None, True, ramp=ramp)
    held = computed_at(ir.serde.deserialize_model(reference))
    assert held.dtypes == {"y": np.dtype(np.float16)}  # through a Dropout
    candidate = onnx.ModelProto()
    candidate.CopyFrom(reference)
    candidate.graph.node[-1].output[0] = "y0"
    candidate.graph.node.append(onnx.helper.make_node("Add", ["y0", "one"], ["y"]))
    candidate.graph.initializer.append(onnx.numpy_helper.from_array(np.array(1, np.float32), "one"))
    paths = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(reference, paths[0])
    onnx.save(candidate, paths[1])
    failed = check(*paths, runs=1, warmup=0)
    (row,) = failed.runs[0].comparisons
    assert not failed and (row.rtol, row.atol, row.outside) == (1e-4, 1e-5, 4)
    assert (row.whole_numbers, row.defaults_of) == ("float16", None)
    assert failed.to_dict()["runs"][0]["comparisons"][0]["whole_numbers"] == "float16"
    (note,) = [n for n in failed.notes if n.startswith("y: float16 values")]
    assert "every one a whole number (an index, a count): compared at float32's" in note
    assert check(paths[0], paths[0], runs=1, warmup=0)  # the guard fails no equal output
    given = check(*paths, runs=1, warmup=0, rtol=1e-3)  # the note says whose atol, no more
    (note,) = [n for n in given.notes if n.startswith("y: float16 values")]
    assert note.endswith("compared at float32's default atol (rtol as given)")
    both = check(*paths, runs=1, warmup=0, rtol=1e-3, atol=1e-5)
    assert both.runs[0].comparisons[0].whole_numbers is None
    assert not [n for n in both.notes if n.startswith("y: ")]


SURE = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[4] x) => (float[4] y, float[4] k1) {
        h = Cast <to = 10> (x)
        p = Mul (h, a)
        y = Cast <to = 1> (p)
        m = ArgMax <keepdims = 0> (e)
        k = Cast <to = 10> (m)
        kp = Add (k, one)
        k1 = Cast <to = 1> (kp)
    }
"""


def test_the_values_decide_for_every_output_listed(tmp_path: Path) -> None:
    """Two models one float16 step apart, ``Cast(Mul(Cast(x), a))``: listed, float16's
    tolerance where the values hold fractions. A reading of the graph can be fooled into
    taking an index for a rounded value (t330: ``Floor(x * 100) + 500``, a ``Where`` branch
    never taken, a Dropout's computed ratio), so the values decide for every listed output:
    all whole numbers keep float32's tolerance, here failing the step on inputs 600 to 603
    (t329: whole by chance; the stricter side, said in the note). An index plus one is not
    listed at all (k1: integers only)."""
    a = np.array([1.0, 1.0, 1.0, 1.0], np.float16)
    e = np.arange(12, dtype=np.float32).reshape(3, 4)
    one = np.array(1, np.float16)
    model = onnx_model(SURE, None, True, a=a, e=e, one=one)
    assert computed_at(ir.serde.deserialize_model(model)).dtypes == {"y": np.dtype(np.float16)}
    moved = a.copy()
    moved[0] = np.nextafter(a[0], np.float16(2))
    paths = tmp_path / "ref.onnx", tmp_path / "cand.onnx", tmp_path / "x.npz"
    onnx.save(model, paths[0])
    onnx.save(onnx_model(SURE, None, True, a=moved, e=e, one=one), paths[1])
    for x, whole in (([600.5, 601.25, 602.5, 603.75], False), ([600, 601, 602, 603], True)):
        np.savez(paths[2], x=np.array(x, np.float32))
        report = check(paths[0], paths[1], runs=1, warmup=0, inputs=str(paths[2]))
        (y, _) = report.runs[0].comparisons
        assert y.max_abs > 0 and bool(report) is not whole
        assert (y.whole_numbers, y.defaults_of) == (
            ("float16", None) if whole else (None, "float16")
        )


FUSED = """
    <ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
    agraph (float[4, 8] x) => (float[4, 8] y) {
        h = Cast <to = 10> (x)
        p = com.microsoft.FusedMatMul (h, c)
        g = com.microsoft.FastGelu (p)
        y = Cast <to = 1> (g)
    }
"""


def test_onnx_runtimes_fused_layers_at_float16_are_held_to_float16s_tolerance(
    tmp_path: Path,
) -> None:
    """A model ONNX Runtime's optimizer fused and converted to float16, its inputs and outputs
    kept float32, computes in its own ops: the output is listed at float16 (t330
    ``contrib_fusedmatmul``: their type unknown, a right model failed float32's tolerance),
    and one weight a float16 step off passes at it."""
    c = np.full((8, 8), 0.25, np.float16)
    moved = c.copy()
    moved[0, 0] = np.nextafter(c[0, 0], np.float16(1))
    reference, candidate = tmp_path / "ref.onnx", tmp_path / "cand.onnx"
    onnx.save(onnx_model(FUSED, None, False, c=c), reference)
    onnx.save(onnx_model(FUSED, None, False, c=moved), candidate)
    held = computed_at(ir.serde.deserialize_model(onnx.load(reference)))
    assert held.dtypes == {"y": np.dtype(np.float16)}
    report = check(reference, candidate, runs=1, warmup=0)
    (row,) = report.runs[0].comparisons
    assert report and (row.rtol, row.atol) == (1e-2, 1e-3) and row.max_abs > 0


PLUS_CONSTANT = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[2, 4] x, float16[2, 4] h) => (float[2, 5] y) {
        i = ArgMax <axis = 1, keepdims = 1> (x)
        i16 = Cast <to = 10> (i)
        s = Add (i16, c)
        cat = Concat <axis = 1> (h, s)
        y = Cast <to = 1> (cat)
    }
"""


@pytest.mark.parametrize(
    ("given", "listed"),
    [([-np.inf], False), ([np.inf, 2.0], False), ([np.nan, 1.0], False), ([np.inf, 0.5], True)],
)
def test_an_infinity_or_nan_added_to_an_index_is_no_fraction(
    given: list[float], listed: bool
) -> None:
    """An index plus a constant holds no rounding where the constant's finite values are whole
    (an infinity or a NaN added rounds nothing): t333, a constant of -inf was read as holding
    fractions, and an output of float16 inputs copied beside it was compared at float16's
    tolerance, where one scaled by 1.005 passed."""
    model = onnx_model(PLUS_CONSTANT, None, True, c=np.array(given, np.float16).reshape(-1, 1))
    held = computed_at(ir.serde.deserialize_model(model))
    assert held.dtypes == ({"y": np.dtype(np.float16)} if listed else {})


def _saved_by_runtime(b_cast: str, b: str, cast_name: str) -> ir.Model:
    """A float16 model's end as ONNX Runtime saves it: its Gemm computed in float32 between
    the Casts it inserts (``cast_name``), the output's own Cast then of a float32 value; with
    a first layer fed the float32 input beside it where ``b_cast`` says ``x``, its Cast to
    float16 fused away by ONNX Runtime (t347)."""
    text = f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[4, 8] x) => (float[4, 3] y) {{
            h = Cast <to = 10> (x)
            r = Sqrt (h)
            rw = Cast <to = 1> (r)
            {b_cast}
            g = Gemm <transB = 1> (rw, bw)
            s = {"Add (g, g0)" if "g0" in b_cast else "Identity (g)"}
            y = Cast <to = 1> (s)
        }}
    """
    weight: np.ndarray = np.ones((3, 8), np.float16 if b == "w16" else np.float32)
    if b == "InsertedPrecisionFreeCast_w":  # float16's values, or not (1 + 2^-20)
        weight = weight + (0 if "values" in cast_name else 2.0**-20)
    model = ir.serde.deserialize_model(onnx_model(text, None, True, **{b: weight}))
    for node in model.graph:
        if node.op_type == "Cast" and node.outputs[0].name in ("rw", "bw"):
            node.name = f"{cast_name}{node.outputs[0].name}"
    return model


# a first layer fed the float32 input beside the last one
FED_X = "bw = Cast <to = 1> (w16)\n g0 = Gemm <transB = 1> (x, bw)"
# a weight ONNX Runtime's Cast of a float16 initializer was folded into (named as the Cast)
FOLDED = "bw = Identity (InsertedPrecisionFreeCast_w)"


@pytest.mark.parametrize(
    ("b_cast", "b", "cast_name", "held"),
    [
        ("bw = Cast <to = 1> (w16)", "w16", "InsertedPrecisionFreeCast_", "float16"),
        ("bw = Identity (w32)", "w32", "InsertedPrecisionFreeCast_", None),
        ("bw = Cast <to = 1> (w16)", "w16", "/converter/Cast_", None),
        (FOLDED, "InsertedPrecisionFreeCast_w", "InsertedPrecisionFreeCast_values", "float16"),
        (FOLDED, "InsertedPrecisionFreeCast_w", "InsertedPrecisionFreeCast_", None),
        (FED_X, "w16", "InsertedPrecisionFreeCast_", "float16"),
    ],
    ids=[
        "saved by onnx runtime",
        "a float32 weight of its own",
        "the graph's own casts",
        "a cast it folded",
        "float32 values under its name",
        "the float32 input read",
    ],
)
def test_a_float16_model_onnx_runtime_computed_in_float32_is_held_at_float16(
    b_cast: str, b: str, cast_name: str, held: str | None
) -> None:
    """t343: a float16 model saved by ONNX Runtime computes its last Gemm (or LayerNorm) in
    float32 between the Casts it inserts, so its output is a float32 value: held to float32's
    tolerance, a correct fold failed its --verify. Where everything its float32 ops read
    comes through ONNX Runtime's Casts from float16, the output is float16's; a float32
    weight of its own, or the graph's own Casts (a float32 tail a conversion kept, t337),
    keep float32's."""
    found = computed_at(_saved_by_runtime(b_cast, b, cast_name)).dtypes
    assert found == ({} if held is None else {"y": np.dtype(held)})


# a Gemm's weight in ONNX Runtime's float32 region that is none of float16's, and how the
# graph gives it
OWN_WEIGHTS = {
    "an input with a default": "bw = Identity (w32)",
    "made by ConstantOfShape": "sh = Constant <value_ints = [3, 8]> ()\n"
    " bw = ConstantOfShape <value = float[1] {0.5}> (sh)",
    "computed in a branch": "c = Constant <value = bool {1}> ()\n"
    " bw = If (c) <then_branch = t () => (float[3, 8] o) { o = Identity (w32) },"
    " else_branch = e () => (float[3, 8] p) { p = Identity (w32) }>",
}


@pytest.mark.parametrize("b_cast", OWN_WEIGHTS.values(), ids=OWN_WEIGHTS)
def test_a_float32_weight_onnx_runtimes_float32_region_reads_keeps_float32s_tolerance(
    b_cast: str,
) -> None:
    """A weight of the graph's own among the float16 values ONNX Runtime's float32 region
    reads: a weight given as a graph input with a default (as `keep_initializers_as_inputs`
    writes it), floats a ConstantOfShape makes, a value computed in a body (which reads what
    its node's inputs do not list) were passed over, and a candidate whose weight was 0.2%
    off passed at float16's tolerance (t348). They keep float32's."""
    model = _saved_by_runtime(b_cast, "w32", "InsertedPrecisionFreeCast_")
    if "If" in b_cast:  # its output's type declared, as an exporter's value_info says it
        (branches,) = [node for node in model.graph if node.op_type == "If"]
        branches.outputs[0].dtype = ir.DataType.FLOAT
    elif "w32" in b_cast:
        model.graph.inputs.append(model.graph.initializers["w32"])
    assert computed_at(model).dtypes == {}
