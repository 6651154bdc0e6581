"""Names of the report's rows: unique and true."""

from __future__ import annotations

import onnx
import pytest

from tests.helpers import onnx_model, rand
from tests.onnx.helpers import SHARED_NORM, SHARED_V
from wnpass import fold_onnx, inspect_onnx


def test_a_parameter_folded_and_declined_names_two_rows_apart() -> None:
    """One v (a PyTorch parameter) in a folded site and a declined one: the folded row is the
    parameter, the declined row the weight the model keeps computing (``k = u * s``, s fed at
    run time: the value its Gemm reads)."""
    text = SHARED_NORM
    names = {"v": "fc.weight_v", "g": "fc.weight_g"}
    model = onnx_model(text, names=names, v=rand(3, 4), g=rand(3, 1))
    _, report = fold_onnx(model)
    assert [(s.name, s.status) for s in report.sites] == [
        ("fc.weight", "folded"),
        ("k", "declined"),
    ]
    assert [s.name for s in inspect_onnx(model).sites] == ["fc.weight", "k"]


def test_inspect_names_as_the_fold_names() -> None:
    """Two sites of one v: inspect shows the unique names the fold writes."""
    text = SHARED_V
    model = onnx_model(text, a_v=rand(3, 4), a_g=rand(3, 1), b=rand(3, 1))
    names = [s.name for s in inspect_onnx(model).sites]
    assert names == [s.name for s in fold_onnx(model)[1].sites] == ["a", "a__1"]


# A tied weight: an embedding's Gather reads W, the head's MatMul Transpose(W).
TIED = """
    <ir_version: 8, opset_import: ["" : 18]>
    agraph (int64[3] ids) => (float[3, 8] y) {
        e = Gather(W, ids)
        wt = Transpose <perm = [1, 0]> (W)
        y = MatMul(e, wt)
    }
"""
# An Identity passing W on to the value a layer reads (the TorchScript exporter's alias of
# two parameters of equal values), W read by nothing else.
ALIAS = """
    <ir_version: 8, opset_import: ["" : 18]>
    agraph (float[3, 4] x) => (float[3, 4] y) {
        l2_weight = Identity(W)
        y = MatMul(x, l2_weight)
    }
"""
# A Transpose of W that the head alone reads: the fold frees W's name and takes it.
ALONE = """
    <ir_version: 8, opset_import: ["" : 18]>
    agraph (float[3, 8] x) => (float[3, 4] y) {
        wt = Transpose <perm = [1, 0]> (W)
        y = MatMul(x, wt)
    }
"""


@pytest.mark.parametrize(
    ("text", "shape", "name"),
    [(TIED, (8, 4), "W__1"), (ALIAS, (4, 4), "l2_weight"), (ALONE, (4, 8), "W")],
    ids=["tied", "alias", "alone"],
)
def test_inspect_names_a_computed_weight_as_the_fold_writes_it(
    text: str, shape: tuple[int, int], name: str
) -> None:
    """inspect showed ``W`` where the fold wrote ``W__1`` (the embedding still reads ``W``)
    and where it wrote ``l2_weight`` (the alias folded by renaming ``W``)."""
    model = onnx_model(text, W=rand(*shape))
    folded, report = fold_onnx(model)
    assert isinstance(folded, onnx.ModelProto)
    assert name in {i.name for i in folded.graph.initializer}
    assert [c.name for c in report.cones] == [c.name for c in inspect_onnx(model).cones] == [name]
