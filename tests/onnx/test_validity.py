"""What a model must be to be read or written: the ONNX checker's view of the output, given
without copying its weights (the input's checks are tested through ``io.load``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir
import pytest

from tests.helpers import onnx_model, rand
from wnpass.onnx import validity


def test_a_large_weight_that_is_also_a_graph_input_is_checked_once_written() -> None:
    """A large initializer the graph also lists as an input (IR version 4 and up, an input
    with a default): checked as that input, not declared a second time (the checker refuses
    two inputs of one name, t91)."""
    text = """
        <ir_version: 8, opset_import: ["" : 18]>
        agraph (float[2, 64] x, float[64, 64] w) => (float[2, 64] y) {
            y = MatMul(x, w)
        }
    """
    model = onnx_model(text, w=rand(64, 64))  # 16 KiB: past what the checker gets whole
    validity.check_output(ir.from_proto(model), Path("m.onnx"))


def test_a_model_with_a_large_weight_in_a_body_is_not_copied_to_be_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its weight would be serialized, and computed where folded, to be checked, and again
    to be written (1.6x the time and memory on a 128 MiB model, t91): not checked."""
    info = onnx.helper.make_tensor_value_info
    weight = onnx.numpy_helper.from_array(rand(64, 64), "w")
    body = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["yb"])], "b", [], [info("yb", 1, [2, 64])],
        [weight],
    )  # fmt: skip
    branches = onnx.helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)
    graph = onnx.helper.make_graph(
        [branches], "main", [info("c", onnx.TensorProto.BOOL, []), info("x", 1, [2, 64])],
        [info("y", 1, [2, 64])],
    )  # fmt: skip
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    model.ir_version = 8

    def copied(*_: Any) -> None:
        raise AssertionError("serialized to be checked")

    monkeypatch.setattr(ir.serde, "serialize_model", copied)
    validity.check_output(ir.from_proto(model), Path("m.onnx"))
