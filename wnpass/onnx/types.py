"""The element type of a value the model may declare no type for, read from what computes it.

Exporters declare no type for most values inside a graph (TorchScript none at all): a fold
needs the type of a weight it computes, and a check the precision an output was computed at.
Both read it here, from the ops that make the value, each op by ONNX's schema: the input that
gives its output its type (the first, but for ``Where``, ``CastLike``, ``OneHot`` and
``DequantizeLinear``; an attribute where it is set: ``EyeLike``'s ``dtype``), or the one type
it gives (``ArgMax``'s int64, a comparison's bool, ``Cast``'s ``to``); ONNX Runtime's fused
layers (``FusedMatMul``, ``SkipLayerNormalization``, ...) by its own schemas."""

from __future__ import annotations

import onnx_ir as ir

from wnpass.onnx.graphs import const_tensor

__all__ = ["cast_to", "declared_dtype", "element_type"]

# ops whose first output has their type input's element type (:data:`_TYPED_BY`, else the
# first), each checked against every version of its ONNX schema: arithmetic, activations,
# layers, layout ops, reductions, selections
_SAME_TYPE = frozenset(
    {"Add", "Sub", "Mul", "Div", "Pow", "Neg", "Abs", "Sqrt", "Exp", "Log", "Reciprocal"}
    | {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Elu", "Selu", "Softplus", "Clip"}
    | {"HardSigmoid", "HardSwish", "Mish", "Erf", "Sin", "Cos", "Max", "Min", "Sum", "Mean"}
    | {"MatMul", "Gemm", "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization"}
    | {"LayerNormalization", "Softmax", "LogSoftmax", "Pad", "Slice", "Concat", "Gather"}
    | {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2", "Dropout", "Tile"}
    | {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "Resize"}
    | {"Upsample", "CumSum", "Floor", "Ceil", "Round", "Sign", "Split", "TopK", "Where"}
    | {"GatherElements", "GatherND", "ScatterElements", "ScatterND", "Mod", "Unique"}
    | {"ReduceProd", "ReduceL1", "ReduceSumSquare", "ReduceLogSumExp", "Einsum", "Trilu"}
    | {"PRelu", "DepthToSpace", "SpaceToDepth", "ThresholdedRelu", "Celu", "Softsign", "Shrink"}
    | {"Tan", "Atan", "Asin", "Acos", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "ReduceLogSum"}
    | {"GroupNormalization", "LRN", "MeanVarianceNormalization", "Compress", "ReverseSequence"}
    | {"Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Expand"}
    | {"CastLike", "OneHot", "DequantizeLinear", "EyeLike"}
    | {"SimplifiedLayerNormalization"}  # ONNX Runtime's own, in the ONNX domain
)
# the inputs whose type an op's first output has, where not its first (Where's condition,
# OneHot's indices, a quantized tensor; a norm's scale: ONNX Runtime's own LayerNormalization,
# before ONNX's at opset 17, and its SimplifiedLayerNormalization give theirs the scale's type)
_TYPED_BY: dict[str, tuple[int, ...]] = {
    "Where": (1, 2),
    "CastLike": (1,),
    "OneHot": (2,),
    "DequantizeLinear": (1,),
    "LayerNormalization": (1,),
    "SimplifiedLayerNormalization": (1,),
}
# the attribute that gives an op's output its type where it is set (not 0), over its input's
_TYPED_BY_ATTRIBUTE = {"EyeLike": "dtype", "DequantizeLinear": "output_dtype"}
# ONNX Runtime's own ops (domain ``com.microsoft``), which its transformers optimizer writes
# into the models it converts to float16, whose first output has the type of the input given
# (by ONNX Runtime's schemas): the layers and activations it fuses
_CONTRIB = "com.microsoft"
_CONTRIB_TYPED_BY: dict[str, int] = {
    op: 0
    for op in (
        *("Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention"),
        *("PackedMultiHeadAttention", "DecoderMaskedMultiHeadAttention", "SparseAttention"),
        *("LongformerAttention", "RotaryEmbedding", "RelativePositionBias", "BiasAdd"),
        *("GatedRelativePositionBias", "BiasDropout", "BiasGelu", "BiasSoftmax", "FastGelu"),
        *("BiasSplitGelu", "FusedConv", "FusedGemm", "FusedMatMul", "Gelu", "GemmFastGelu"),
        *("GroupNorm", "SkipGroupNorm", "NhwcConv", "QuickGelu", "SkipLayerNormalization"),
        *("SkipSimplifiedLayerNormalization", "TransposeMatMul", "MatMulNBits", "SwiGLU"),
    )
} | {"EmbedLayerNormalization": 2, "GemmaRotaryEmbedding": 1}
# ops every output of which has their input's type
_ALL_SAME = frozenset({"Split"})
# ops whose outputs after the first are int64 indices (their first has their input's type)
_INDICES_SECOND = frozenset({"TopK", "MaxPool", "Unique"})
# ops whose output's type is theirs whatever they read: indices, sizes, truths
_GIVES = (
    {
        op: ir.DataType.INT64
        for op in ("ArgMax", "ArgMin", "Shape", "Size", "NonZero", "NonMaxSuppression")
    }
    | {
        op: ir.DataType.BOOL
        for op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or")
    }
    | {"IsNaN": ir.DataType.BOOL, "IsInf": ir.DataType.BOOL}
)


_INT = ir.AttributeType.INT


def element_type(value: ir.Value, *, any_op: bool = False) -> ir.DataType | None:
    """``value``'s element type: as declared; a constant's; as the ``Cast``, the
    ``ConstantOfShape`` (float32 where it has no value) or an op that gives one type
    (:data:`_GIVES`, the indices of :data:`_INDICES_SECOND`) says; else the type input's of
    an op that keeps its type (:data:`_SAME_TYPE`, ONNX Runtime's :data:`_CONTRIB_TYPED_BY`),
    walked back. None where that is not known: another op, another domain's, another op's
    later output; with ``any_op``, those are taken
    to keep their type input's too (a weight is computed by ops that do)."""
    while value.dtype is None:
        if (const := const_tensor(value)) is not None:
            return const.dtype
        node = value.producer()
        if node is None:
            return None
        standard = node.domain in ("", "ai.onnx")
        op = node.op_type if standard else ""
        contrib = _CONTRIB_TYPED_BY.get(node.op_type) if node.domain == _CONTRIB else None
        if contrib is not None and value.index() == 0:
            if contrib >= len(node.inputs) or (read := node.inputs[contrib]) is None:
                return None
            value = read
            continue
        if op == "Cast":
            return cast_to(node)
        if op == "ConstantOfShape":
            filled = node.attributes.get("value")
            return ir.DataType.FLOAT if filled is None else filled.as_tensor().dtype
        if op in _GIVES:
            return _GIVES[op]
        if value.index() != 0 and op not in _ALL_SAME:
            if op in _INDICES_SECOND:  # TopK's, MaxPool's, Unique's indices
                return ir.DataType.INT64
            if not any_op:
                return None
        elif op not in _SAME_TYPE and not any_op:
            return None
        typed = node.attributes.get(_TYPED_BY_ATTRIBUTE.get(op, ""))
        if typed is not None and typed.type == _INT and typed.as_int() != 0:
            return ir.DataType(typed.as_int())
        typed_by = _TYPED_BY.get(node.op_type, (0,)) if standard else (0,)
        reads = [node.inputs[i] for i in typed_by if i < len(node.inputs)]
        held = [t for read in reads if read is not None and (t := _held_type(read)) is not None]
        if held:
            return held[0]
        if not reads or reads[0] is None:
            return None
        value = reads[0]
    return value.dtype


def cast_to(cast: ir.Node) -> ir.DataType | None:
    """The type a ``Cast`` gives (its ``to``); None where it names it by a string (opset 5:
    ``"FLOAT16"``, which ONNX Runtime refuses) or names none."""
    to = cast.attributes.get("to")
    return ir.DataType(to.as_int()) if to is not None and to.type == _INT else None


def declared_dtype(value: ir.Value) -> ir.DataType | None:
    """The dtype a weight's value ``value`` has in the graph: :func:`element_type`, any op
    taken to keep its type input's (the ops a weight is computed by do)."""
    return element_type(value, any_op=True)


def _held_type(value: ir.Value) -> ir.DataType | None:
    """``value``'s type where it is declared or a constant holds it, without a walk."""
    if value.dtype is not None:
        return value.dtype
    const = const_tensor(value)
    return None if const is None else const.dtype
