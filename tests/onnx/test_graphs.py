"""The constant a value holds is the one onnx-ir gives, for every form a Constant takes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from tests.helpers import onnx_model, rand
from wnpass.onnx.graphs import const_tensor

TEXT = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[3] x) => (float[3] y) {
        t = Constant <value = float[3] {1.0, 2.0, 3.0}> ()
        f = Constant <value_float = 2.5> ()
        fs = Constant <value_floats = [1.5, 2.5]> ()
        i = Constant <value_int = 7> ()
        s = Constant <value_string = "word"> ()
        a = Add(x, t)
        b = Mul(a, w)
        y = Identity(b)
    }
"""


PROTO = onnx_model(TEXT, w=rand(3))


def _values() -> dict[str, ir.Value]:
    model = ir.serde.deserialize_model(PROTO)
    found = {"x": model.graph.inputs[0], "w": model.graph.initializers["w"]}
    for node in model.graph:
        found.update((out.name, out) for out in node.outputs if out.name)
    return found


@pytest.mark.parametrize("name", ["x", "w", "t", "f", "fs", "i", "s", "a", "b"])
def test_the_same_constant_as_onnx_ir(name: str) -> None:
    mine, theirs = _values()[name], _values()[name]
    expected = ir.convenience.get_const_tensor(theirs)
    got = const_tensor(mine)
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert (got.dtype, got.name) == (expected.dtype, expected.name)
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_a_malformed_constant_is_refused_as_onnx_ir_refuses_it() -> None:
    value = _values()["t"]
    node = value.producer()
    assert node is not None
    node.attributes["extra"] = ir.AttrInt64("extra", 1)
    with pytest.raises(ValueError, match="exactly one attribute"):
        ir.convenience.get_const_tensor(value)
    with pytest.raises(ValueError, match="exactly one attribute"):
        const_tensor(value)
