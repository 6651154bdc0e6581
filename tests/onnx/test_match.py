"""The matcher: the axes a norm really reduces, and a weight normalized twice."""

from __future__ import annotations

import numpy as np

from tests.helpers import onnx_model, rand
from tests.onnx.helpers import HEADER17, TWICE
from wnpass import inspect_onnx


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


def test_axes_of_a_reshaped_norm() -> None:
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
    model = onnx_model(text, v=rand(3, 4, 5), g=rand(1, 4, 1), shape=shape, back=back)
    (site,) = inspect_onnx(model).sites
    assert site.axes == [0, 2]


def test_a_weight_normalized_twice_has_no_wrong_reason() -> None:
    model = onnx_model(TWICE, v=rand(6, 4), g=rand(6, 1), eps=np.array(1e-12, np.float32))
    sites = inspect_onnx(model).sites
    assert [(s.status, s.reason, s.axes) for s in sites] == [("foldable", None, [1])] * 2
