"""Add weight normalization to the plain weights of an ONNX graph: ``AddWeightNormPass``.

The inverse of folding, for ONNX-based training and round-trip tests. Each constant weight
``W`` of a Conv, ConvTranspose, Gemm or MatMul becomes ``Mul(Div(v, ReduceL2(v, axes)), g)``
with ``v = W`` (bit for bit) and ``g = ||W||`` over ``axes`` (every axis but the output-unit
axis), computed in float64 and rounded once, so folding gives ``W`` back within one ulp. The
initializers are named ``<W>_v`` and ``<W>_g`` (PyTorch's legacy names), so the fold names
the weight ``<W>`` again. Output-unit axis per op, from the table every side shares
(:func:`wnpass.axes.unit_axis`): Conv 0, ConvTranspose 1 (not for ``group > 1``, where that
axis mixes groups), Gemm 0 with ``transB=1`` else 1, MatMul the last axis of ``B``.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import onnx_ir as ir

from wnpass.axes import OpKind
from wnpass.axes import unit_axis as table_axis
from wnpass.onnx import evaluate as ev
from wnpass.onnx import naming

__all__ = ["AddResult", "AddWeightNormPass", "AddedSite", "unit_axis"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class AddedSite:
    """A weight that got (or did not get) weight normalization."""

    name: str
    ops: list[str]
    shape: list[int]
    axis: int | None
    reason: str | None = None


@dataclasses.dataclass
class AddResult(ir.passes.PassResult):
    sites: list[AddedSite] = dataclasses.field(default_factory=list)


_KINDS: dict[str, OpKind] = {
    "Conv": "conv",
    "ConvTranspose": "conv_transpose",
    "Gemm": "gemm",
    "MatMul": "matmul_right",
}


def unit_axis(node: ir.Node, index: int, shape: list[int]) -> int | str:
    """The output-unit axis of the weight at ``node.inputs[index]``, or why there is none."""
    op = node.op_type
    if op not in _KINDS or index != 1:
        return f"{op} input {index} is not a weight this pass normalises"
    group = node.attributes.get("group")
    trans_b = node.attributes.get("transB")
    axis = table_axis(
        _KINDS[op],
        shape,
        groups=int(group.value) if group is not None else 1,
        trans_b=bool(trans_b is not None and trans_b.value),
    )
    if isinstance(axis, str) and op == "ConvTranspose":
        return f"grouped ConvTranspose: the output-unit axis would mix groups ({axis})"
    return axis


class AddWeightNormPass(ir.passes.InPlacePass):
    """Rewrite plain constant weights of Conv/ConvTranspose/Gemm/MatMul as ``g * v / ||v||``."""

    def __init__(
        self, ops: frozenset[str] = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
    ):
        super().__init__()
        self.ops = ops

    def call(self, model: ir.Model) -> AddResult:
        graph = model.graph
        opset = model.opset_imports.get("", 1)
        weights: dict[ir.Value, list[ir.Node]] = {}
        for node in graph:
            if node.op_type not in self.ops or node.domain not in ("", "ai.onnx"):
                continue
            if len(node.inputs) > 1 and (weight := node.inputs[1]) is not None:
                weights.setdefault(weight, []).append(node)
        sites = []
        taken = naming.taken_names(model)
        for weight, nodes in weights.items():
            site = self._check(weight, nodes)
            sites.append(site)
            if site.reason is None:
                assert site.axis is not None
                self._rewrite(graph, weight, site.axis, opset, taken)
            else:
                logger.debug("not adding weight norm to %s: %s", site.name, site.reason)
        added = sum(site.reason is None for site in sites)
        logger.info("added weight norm to %d of %d weights", added, len(sites))
        return AddResult(model, modified=added > 0, sites=sites)

    @staticmethod
    def _check(weight: ir.Value, nodes: list[ir.Node]) -> AddedSite:
        const = weight.const_value
        name = weight.name or "?"
        ops = sorted({n.op_type for n in nodes})
        if const is None or not weight.is_initializer():
            return AddedSite(name, ops, [], None, "not an initializer")
        shape = list(const.shape.numpy())
        site = AddedSite(name, ops, shape, None)
        if weight.is_graph_input():
            site.reason = "a graph input (can be overridden at run time)"
        elif weight.is_graph_output():
            site.reason = "also a graph output"
        elif const.dtype not in ev.FLOAT_TYPES:
            site.reason = f"{const.dtype.name.lower()} weights are not normalised"
        elif any(use.node not in nodes for use in weight.uses()):
            site.reason = "also used by other ops"
        else:
            axes = {unit_axis(node, 1, shape) for node in nodes}
            if len(axes) != 1:
                site.reason = "consumers disagree on the output-unit axis"
            elif isinstance(axis := axes.pop(), str):
                site.reason = axis
            else:
                site.axis = axis
                array = ev.tensor_array(const)[0]
                reduce = tuple(a for a in range(array.ndim) if a != axis)
                if np.any(ev.sum_of_squares(array, reduce, keepdims=False) == 0):
                    site.reason = "has all-zero output units (g would be 0 and v/||v|| NaN)"
        return site

    @staticmethod
    def _rewrite(graph: ir.Graph, weight: ir.Value, axis: int, opset: int, taken: set[str]) -> None:
        const = weight.const_value
        assert const is not None and weight.name is not None
        name = weight.name

        def fresh(suffix: str) -> str:
            return naming.unique(f"{name}_{suffix}", taken)

        array, dtype = ev.tensor_array(const)
        reduce = [a for a in range(array.ndim) if a != axis]
        g = ev.round_to(np.sqrt(ev.sum_of_squares(array, tuple(reduce), keepdims=True)), dtype)
        g_name = fresh("g")
        g_value = ir.Value(name=g_name, const_value=ir.Tensor(g, dtype=dtype, name=g_name))
        g_value.shape, g_value.type = ir.Shape(g.shape), ir.TensorType(dtype)
        graph.register_initializer(g_value)
        output = ir.Value(name=fresh("wn"), shape=weight.shape, type=weight.type)
        weight.replace_all_uses_with(output)
        weight.name = fresh("v")
        if opset >= 18:
            axes = ir.Value(
                name=fresh("axes"), const_value=ir.tensor(reduce, dtype=ir.DataType.INT64)
            )
            axes.shape, axes.type = ir.Shape([len(reduce)]), ir.TensorType(ir.DataType.INT64)
            graph.register_initializer(axes)
            norm = ir.node("ReduceL2", [weight, axes], attributes={"keepdims": 1})
        else:
            norm = ir.node("ReduceL2", [weight], attributes={"axes": reduce, "keepdims": 1})
        div = ir.node("Div", [weight, norm.outputs[0]])
        mul = ir.node("Mul", [div.outputs[0], g_value], outputs=[output])
        for node, suffix in ((norm, "norm"), (div, "div"), (mul, "mul")):
            node.name = f"{name}_wn_{suffix}"
            if node is not mul:
                node.outputs[0].name = fresh(f"wn_{suffix}")
        graph.insert_before(graph[0], [norm, div, mul])
