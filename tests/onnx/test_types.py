"""A value's element type, read from the ops that compute it."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.defs
import onnx_ir as ir
import pytest

from tests.helpers import onnx_model
from wnpass.onnx import types


def _versions(op: str) -> list[onnx.defs.OpSchema]:
    """Every version of the standard op's schema."""
    found: dict[int, onnx.defs.OpSchema] = {}
    for version in range(1, onnx.defs.onnx_opset_version() + 1):
        try:
            schema = onnx.defs.get_schema(op, version)
        except onnx.defs.SchemaError:
            continue
        found[schema.since_version] = schema
    return list(found.values())


@pytest.mark.parametrize("op", sorted(types._SAME_TYPE))
def test_an_op_said_to_keep_a_type_gives_its_output_that_inputs_type(op: str) -> None:
    """Each version of each schema: the first output's type is the type input's (by type
    variable, or the same fixed type), or an attribute said to give it names one."""
    typed_by = types._TYPED_BY.get(op, (0,))
    for schema in _versions(op):
        output = schema.outputs[0].type_str
        inputs = [schema.inputs[i].type_str for i in typed_by if i < len(schema.inputs)]
        given = types._TYPED_BY_ATTRIBUTE.get(op) in schema.attributes
        assert output in inputs or given, (op, schema.since_version, output, inputs)


@pytest.mark.parametrize("op", sorted(types._GIVES))
def test_an_op_said_to_give_a_type_gives_it(op: str) -> None:
    name = onnx.helper.tensor_dtype_to_string(types._GIVES[op].value).removeprefix("TensorProto.")
    for schema in _versions(op):
        output = schema.outputs[0].type_str
        allowed = next(
            (c.allowed_type_strs for c in schema.type_constraints if c.type_param_str == output),
            [output],
        )
        assert allowed == [f"tensor({name.lower()})"], (op, schema.since_version, allowed)


def _typed(text: str, **arrays: np.ndarray) -> dict[str, ir.DataType | None]:
    """The element type read of each output of the main graph, strictly and with any op
    taken to keep its type."""
    model = ir.serde.deserialize_model(onnx_model(text, None, False, **arrays))
    return {
        value.name or "": types.element_type(value.producer().outputs[0])  # type: ignore[union-attr]
        for value in model.graph.outputs
    }


def test_onehot_dequantize_and_eyelike_read_their_type_from_what_gives_it() -> None:
    """t326: a weight-norm gain computed by ``OneHot(ArgMax(c))`` was read as int64 (its
    indices' type), a weight read through ``DequantizeLinear`` as int8 (the quantized one)."""
    text = """
        <ir_version: 10, opset_import: ["" : 23]>
        agraph (float[4] x) => (o, d, e, f) {
            a = ArgMax <axis = 0, keepdims = 0> (x)
            o = OneHot (a, depth, values)
            d = DequantizeLinear (q, scale)
            e = EyeLike <dtype = 10> (sq)
            f = EyeLike (sq)
        }
    """
    typed = _typed(
        text,
        depth=np.array(4, np.int64),
        values=np.array([0, 1], np.float16),
        q=np.array([1, 2], np.int8),
        scale=np.array(0.5, np.float32),
        sq=np.eye(2, dtype=np.float64),
    )
    assert typed == {
        "o": ir.DataType.FLOAT16,
        "d": ir.DataType.FLOAT,
        "e": ir.DataType.FLOAT16,
        "f": ir.DataType.DOUBLE,
    }


def test_an_opset_5_cast_names_no_type_that_is_read() -> None:
    """Its ``to`` is a string ("FLOAT16"): no type is read from it (it raised a TypeError, an
    internal error of ``check``, t326)."""
    node = onnx.helper.make_node("Cast", ["x"], ["y"], to="FLOAT16")
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.UNDEFINED, None)],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 5)])
    ir_model = ir.serde.deserialize_model(model)
    (output,) = ir_model.graph.outputs
    output.type = None
    assert types.element_type(output) is None
