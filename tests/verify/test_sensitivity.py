"""The reference's weights moved by one ulp: which initializers are weights, each element
moved by exactly one ulp up or down (both, seeded), what may not move, and the size bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from tests.helpers import onnx_model
from wnpass.verify import sensitivity

MODEL = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[2, 8] x, float[8, 4] fed) => (float[2, 4] y, float16[2, 4] h, int64[2, 2] k) {
        a = MatMul(x, w)
        b = Add(a, bias)
        c = Mul(b, scale)
        e = MatMul(x, fed)
        y = Add(c, e)
        x16 = Cast <to = 10> (x)
        h = MatMul(x16, half)
        k = Add(ints, ints)
    }
"""


def _model(**changed: np.ndarray) -> ir.Model:
    rng = np.random.default_rng(1)
    arrays: dict[str, np.ndarray] = {
        "w": rng.standard_normal((8, 4)).astype(np.float32),
        "bias": rng.standard_normal(4).astype(np.float32),
        "scale": np.array(2.0, np.float32),
        "fed": np.zeros((8, 4), np.float32),  # a default of an input: the user may feed it
        "half": rng.standard_normal((8, 4)).astype(np.float16),
        "ints": np.arange(4).reshape(2, 2),
    }
    arrays.update(changed)
    return ir.serde.deserialize_model(onnx_model(MODEL, None, True, **arrays))


def test_every_weight_of_two_dimensions_and_up_moves_by_one_ulp_either_way() -> None:
    model = _model()
    moved = sensitivity.moved_weights(model)
    assert moved is not None
    # not the 1-D bias, the 0-D scale, an input's default or integers
    assert sorted(moved) == ["half", "w"]
    for name in moved:
        before = model.graph.initializers[name].const_value.numpy()  # type: ignore[union-attr]
        assert moved[name].dtype == before.dtype and moved[name].shape == before.shape
        up = moved[name] == np.nextafter(before, np.array(np.inf, before.dtype))
        down = moved[name] == np.nextafter(before, np.array(-np.inf, before.dtype))
        assert np.all(up | down) and up.any() and down.any()
    again = sensitivity.moved_weights(_model())
    assert again is not None and all(np.array_equal(again[n], moved[n]) for n in moved)


def test_whole_numbers_inf_and_nan_stay() -> None:
    """No rounding moves an exact zero; one moved to a subnormal changed what a mask's
    ``Equal(m, 0)`` or a ``Log`` read (t182), and a whole number cast to an index moved
    to the one below (t184)."""
    special = np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4) + np.float32(0.01)
    special[0, :4] = [np.inf, -np.inf, np.nan, 0.0]
    special[1, :3] = [6.0, -2.0, 2**30]  # indices cast to int64: 6 one ulp down is 5 (t184)
    moved = sensitivity.moved_weights(_model(w=special))
    assert moved is not None
    assert np.isposinf(moved["w"][0, 0]) and np.isneginf(moved["w"][0, 1])
    assert np.isnan(moved["w"][0, 2]) and moved["w"][0, 3] == 0
    assert moved["w"][1, :3].tolist() == [6.0, -2.0, 2**30]
    assert np.all(moved["w"][1, 3:] != special[1, 3:]) and np.all(moved["w"][2:] != special[2:])


def test_whole_numbers_and_shadowed_names_are_no_weights() -> None:
    """t182: a causal mask of ones and zeros (read as ``Equal(mask, 0)``), a table of indices
    cast to integers (one ulp down truncates 2 to 1), and an initializer a body's own one
    shadows (ONNX Runtime replaces both) made "fails it too" of models that do not amplify
    rounding."""
    mask = np.tril(np.ones((8, 4), np.float32))
    indices = np.arange(32, dtype=np.float16).reshape(8, 4)
    moved = sensitivity.moved_weights(_model(w=mask, half=indices))
    assert moved is None
    own = ", ".join(["1.5"] * 32)
    shadowing = f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 8] x, bool c) => (float[2, 4] y) {{
            a = MatMul(x, w)
            y = If(c) <then_branch = t () => (float[2, 4] o) <float[8, 4] w = {{{own}}}> {{
                    o = MatMul(x, w)
                }}, else_branch = e () => (float[2, 4] o) {{ o = Identity(a) }}>
        }}
    """
    rng = np.random.default_rng(2)
    model = onnx_model(shadowing, w=rng.standard_normal((8, 4)).astype(np.float32))
    assert sensitivity.moved_weights(ir.serde.deserialize_model(model)) is None


def test_nothing_moves_past_the_bound_or_where_there_is_no_weight(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sensitivity, "MOVED_BYTES", 8 * 4 * 4 + 8 * 4 * 2 - 1)
    assert sensitivity.moved_weights(_model()) is None
    monkeypatch.setattr(sensitivity, "MOVED_BYTES", 8 * 4 * 4 + 8 * 4 * 2)
    assert sensitivity.moved_weights(_model()) is not None
    plain = onnx.parser.parse_model(
        '<ir_version: 8, opset_import: ["" : 17]> g (float[2] x) => (float[2] y) { y = Relu(x) }'
    )
    assert sensitivity.moved_weights(ir.serde.deserialize_model(plain)) is None
