"""What a model must be to be read or written: the ONNX checker's view of the output, given
without copying its weights (the input's checks are tested through ``io.load``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir
import pytest

from tests.helpers import onnx_model, rand
from wnpass.errors import InvalidModelError
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


# A LayerNorm and an RMSNorm as ONNX Runtime's transformers optimizer fuses them in a model of
# opset 14: its own ops of the ONNX domain (LayerNormalization before ONNX's, at opset 17;
# SimplifiedLayerNormalization), which ONNX Runtime runs and the ONNX checker has no schema
# for; in a branch and a local function too.
RUNTIMES_OWN = """
    <ir_version: 8, opset_import: ["" : 14, "local" : 1]>
    agraph (float[2, 8] x, bool c) => (float[2, 8] y) {
        n = LayerNormalization <axis = -1, epsilon = 1e-5> (x, scale, bias)
        r = local.rms (n, scale)
        y = If (c) <
            then_branch = g1 () => (float[2, 8] t) { t = SimplifiedLayerNormalization (r, scale) },
            else_branch = g2 () => (float[2, 8] e) { e = OP (r) }
        >
    }
    <domain: "local", opset_import: ["" : 14]>
    rms (a, s) => (b) { b = SimplifiedLayerNormalization <axis = -1> (a, s) }
"""


def _runtimes_own(op: str = "Identity") -> onnx.ModelProto:
    text = RUNTIMES_OWN.replace("OP", op)
    return onnx_model(text, None, False, scale=rand(8), bias=rand(8))


def test_onnx_runtimes_own_ops_of_the_onnx_domain_pass_the_checks() -> None:
    """A model ONNX Runtime's transformers optimizer wrote from an opset-14 export was refused
    whole (`No Op registered for LayerNormalization with domain_version of 14`, exit 2, t336):
    it is read and written, and the model given is left as it was."""
    model = _runtimes_own()
    before = model.SerializeToString()
    validity.check_structure(model, Path("m.onnx"))
    validity.check_output(ir.from_proto(model), Path("m.onnx"))
    assert model.SerializeToString() == before


@pytest.mark.parametrize(
    ("model", "refused"),
    [
        (lambda: _runtimes_own("Foo"), "No Op registered for Foo"),
        (  # ONNX's own from opset 17, checked by its schema: one input short
            lambda: onnx_model(
                """
                <ir_version: 8, opset_import: ["" : 17]>
                agraph (float[2, 8] x) => (float[2, 8] y) { y = LayerNormalization (x) }
                """,
                None,
                False,
            ),
            "LayerNormalization",
        ),
    ],
    ids=["another-unknown-op", "onnx-layernorm-at-17"],
)
def test_other_ops_of_the_onnx_domain_are_still_checked(
    model: Callable[[], onnx.ModelProto], refused: str
) -> None:
    with pytest.raises(InvalidModelError, match=f"rejected by the ONNX checker: .*{refused}"):
        validity.check_structure(model(), Path("m.onnx"))


def test_the_ops_set_apart_are_onnx_runtimes_where_onnx_has_none() -> None:
    """Each is in ONNX Runtime's schemas, in the ONNX domain, and not in ONNX's before the
    opset set (ONNX's own from there on)."""
    pytest.importorskip("onnxruntime")
    from onnxruntime.capi import _pybind_state

    runtimes = {s.name for s in _pybind_state.get_all_operator_schema() if s.domain == ""}
    for op, onnx_from in validity._RUNTIMES_OWN.items():
        assert op in runtimes, op
        last = onnx.defs.onnx_opset_version() if onnx_from is None else onnx_from - 1
        with pytest.raises(onnx.defs.SchemaError):
            onnx.defs.get_schema(op, last, "")
        if onnx_from is not None:
            assert onnx.defs.get_schema(op, onnx_from, "").since_version == onnx_from
