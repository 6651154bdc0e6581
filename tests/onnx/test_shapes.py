"""Shapes of values the model declares none for, read from the ops that compute them."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from tests.helpers import onnx_model, rand
from wnpass.onnx.shapes import shape_of

# v[6, 4], g[6, 1]: weight norm as TorchScript writes it (no shapes declared inside), and
# other ops; ``r`` is the value asked about
BODIES = {
    "weight norm": ("n = ReduceL2 <axes = [1]> (v)\n d = Div(v, n)\n r = Mul(g, d)", (6, 4)),
    "a norm kept": ("r = ReduceL2 <axes = [1]> (v)", (6, 1)),
    "a norm dropped": ("r = ReduceL2 <axes = [1], keepdims = 0> (v)", (6,)),
    "a norm of every axis": ("r = ReduceSumSquare (v)", (1, 1)),
    "axes as an input": ("r = ReduceSum(v, one)", (6, 1)),
    "a clip, a cast": ("c = Clip(g, lo)\n r = Cast <to = 11> (c)", (6, 1)),
    "expanded": ("n = ReduceL2 <axes = [1]> (v)\n r = Expand(n, shape)", (6, 4)),
    "a transpose": ("r = Transpose <perm = [1, 0]> (v)", None),
    "no broadcast": ("t = Transpose <perm = [1, 0]> (v)\n r = Add(v, t)", None),
    "an axis out of range": ("r = ReduceL2 <axes = [2]> (v)", None),
    # reshapes, as a view of a unit's g / ||v|| (t316): 0 copies a dimension, -1 is inferred
    "a reshape": ("r = Reshape(v, view)", (6, 4, 1)),
    "a reshape to another count": ("r = Reshape(v, bad)", None),
    "a reshape allowing zero": ("r = Reshape <allowzero = 1> (v, view)", None),
    "an unsqueeze": ("r = Unsqueeze(v, ends)", (1, 6, 4, 1)),
    "a squeeze of every axis of one": ("u = Unsqueeze(v, ends)\n r = Squeeze(u)", (6, 4)),
    "a squeeze of an axis of more": ("r = Squeeze(v, one)", None),
}


@pytest.mark.parametrize("case", BODIES)
def test_the_shape_of_a_computed_value(case: str) -> None:
    body, expected = BODIES[case]
    text = f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 4] x) => (float[2, 4] y) {{
            {body}
            y = Identity(x)
        }}
    """
    model = onnx_model(
        text, check=False, v=rand(6, 4), g=rand(6, 1), lo=np.array(0.0, np.float32),
        one=np.array([1], np.int64), shape=np.array([6, 4], np.int64),
        view=np.array([0, -1, 1], np.int64), bad=np.array([5, -1], np.int64),
        ends=np.array([0, 3], np.int64),
    )  # fmt: skip
    graph = ir.serde.deserialize_model(model).graph
    (value,) = (out for node in graph for out in node.outputs if out.name == "r")
    assert shape_of(value) == expected


def test_a_value_computed_through_too_many_steps_has_no_shape_read() -> None:
    steps = "".join(f" a{i + 1} = Add({'v' if i == 0 else f'a{i}'}, g)\n" for i in range(80))
    text = f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 4] x) => (float[2, 4] y) {{
            {steps}
            y = Identity(x)
        }}
    """
    graph = ir.serde.deserialize_model(onnx_model(text, v=rand(6, 4), g=rand(6, 1))).graph
    values = {out.name: out for node in graph for out in node.outputs}
    assert shape_of(values["a10"]) == (6, 4) and shape_of(values["a80"]) is None
