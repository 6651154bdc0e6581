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
    """The element type read of each output of the main graph."""
    model = ir.serde.deserialize_model(onnx_model(text, None, False, **arrays))
    return {value.name or "": types.element_type(value) for value in model.graph.outputs}


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


def _contrib_schemas() -> dict[str, list[object]]:
    """ONNX Runtime's schemas of its own ops (domain ``com.microsoft``), every version."""
    pytest.importorskip("onnxruntime")
    from onnxruntime.capi import _pybind_state

    found: dict[str, list[object]] = {}
    for schema in _pybind_state.get_all_operator_schema():
        if schema.domain == "com.microsoft":
            found.setdefault(schema.name, []).append(schema)
    return found


def test_onnx_runtimes_ops_said_to_keep_a_type_give_their_output_that_inputs_type() -> None:
    """Each ONNX Runtime op read as typed by an input has, in every version of its schema, a
    first output of that input's type variable."""
    schemas = _contrib_schemas()
    for op, given in types._CONTRIB_TYPED_BY.items():
        assert op in schemas, op
        for schema in schemas[op]:
            output = schema.outputs[0].typeStr  # type: ignore[attr-defined]
            assert output == schema.inputs[given].typeStr, (op, output)  # type: ignore[attr-defined]


def test_onnx_runtimes_own_norms_of_the_onnx_domain_are_typed_by_their_scale() -> None:
    """ONNX Runtime's LayerNormalization (before ONNX's, at opset 17) and its
    SimplifiedLayerNormalization give their output their scale's type (every version of its
    schemas; ONNX's LayerNormalization has its input's, the same as its scale's): a float32
    input normalized with a float16 scale reads as float16, as ONNX Runtime computes it."""
    pytest.importorskip("onnxruntime")
    from onnxruntime.capi import _pybind_state

    for schema in _pybind_state.get_all_operator_schema():
        if schema.domain == "" and schema.name in (
            "LayerNormalization",
            "SimplifiedLayerNormalization",
        ):
            output, scale = schema.outputs[0].typeStr, schema.inputs[1].typeStr
            assert output == scale, (schema.name, schema.since_version, output, scale)
    text = """
        <ir_version: 8, opset_import: ["" : 14]>
        agraph (float[2, 8] x) => (n, r) {
            n = LayerNormalization (x, scale, bias)
            r = SimplifiedLayerNormalization (x, scale)
        }
    """
    half = np.ones(8, np.float16)
    assert _typed(text, scale=half, bias=half) == {
        "n": ir.DataType.FLOAT16,
        "r": ir.DataType.FLOAT16,
    }


def test_onnx_runtimes_fused_layers_are_typed_by_their_schemas() -> None:
    """A model ONNX Runtime's transformers optimizer converted to float16 computes with its own
    ops (``FusedMatMul``, ``SkipLayerNormalization``): their outputs read as float16, as the
    schema says (t330: unknown, so a float16 output cast to float32 was held to float32's
    tolerance); an embedding's by its table, not its ids; a later output, or an op not in
    the table, reads as unknown, as before."""
    text = """
        <ir_version: 10, opset_import: ["" : 17, "com.microsoft" : 1]>
        agraph (float[4, 8] x, int32[1, 4] ids) => (f, s, mean, e, u) {
            h = Cast <to = 10> (x)
            f = com.microsoft.FusedMatMul (h, w)
            s, mean, inv, sum = com.microsoft.SkipLayerNormalization (h, h, gamma)
            e, m = com.microsoft.EmbedLayerNormalization (ids, ids, table, pos, pos, gamma, gamma)
            u = com.microsoft.Unknown (h)
        }
    """
    half = np.ones((8, 8), np.float16)
    typed = _typed(text, w=half, gamma=half[0], table=np.ones((10, 8), np.float16), pos=half)
    assert typed == {
        "f": ir.DataType.FLOAT16,
        "s": ir.DataType.FLOAT16,
        "mean": None,
        "e": ir.DataType.FLOAT16,
        "u": None,
    }
