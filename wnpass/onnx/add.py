"""Add weight normalization to the plain weights of an ONNX graph: ``AddWeightNormPass``.

The inverse of folding, for ONNX-based training and round-trip tests. Each constant weight
``W`` of a Conv, ConvTranspose, Gemm or MatMul becomes ``Mul(Div(v, ReduceL2(v, axes)), g)``
with ``v = W`` (bit for bit) and ``g = ||W||`` over ``axes`` (every axis but the output-unit
axis), computed in float64 and rounded once, so folding gives ``W`` back within one ulp. The
initializers are named ``<W>_v`` and ``<W>_g`` (PyTorch's legacy names), so the fold names
the weight ``<W>`` again. Output-unit axis per op, from the table every side shares
(:func:`wnpass.axes.unit_axis`): Conv 0, ConvTranspose 1 (not for ``group > 1``, where that
axis mixes groups), Gemm 0 with ``transB=1`` else 1, MatMul the last axis of ``B``.

A weight is left as it is, with the reason, where the fold would decline the site written for
it (the fold's own checks decide: one of NaN or Inf in ``W``, a sum of squares outside
float32's normal range, a norm outside float16's or bfloat16's): there the graph's
``g * v / ||v||`` is not ``W`` (an inf norm makes it 0, a 0 norm NaN), and the model's outputs
would change.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from wnpass.axes import OpKind
from wnpass.axes import unit_axis as table_axis
from wnpass.onnx import evaluate as ev
from wnpass.onnx import naming
from wnpass.onnx.graphs import constant_initializers

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
        with constant_initializers(model):  # an IR version 3 model's are constants too
            return self._add(model)

    def _add(self, model: ir.Model) -> AddResult:
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
            gain = (
                None if site.reason is not None or site.axis is None else _gain(weight, site.axis)
            )
            if gain is not None:
                site.reason = _not_folded_back(weight, gain, opset)
            if gain is not None and site.reason is None:
                self._rewrite(graph, weight, gain, opset, taken)
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
    def _rewrite(
        graph: ir.Graph, weight: ir.Value, gain: _Gain, opset: int, taken: set[str]
    ) -> None:
        assert weight.name is not None
        name = weight.name

        def fresh(suffix: str) -> str:
            return naming.unique(f"{name}_{suffix}", taken)

        g_value = _constant(fresh("g"), gain.g, gain.dtype)
        graph.register_initializer(g_value)
        axes = None
        if opset >= 18:
            axes = _constant(fresh("axes"), np.array(gain.reduce, np.int64), ir.DataType.INT64)
            graph.register_initializer(axes)
        output = ir.Value(name=fresh("wn"), shape=weight.shape, type=weight.type)
        weight.replace_all_uses_with(output)
        weight.name = fresh("v")
        nodes = _normed(weight, g_value, axes, gain.reduce, name, output, fresh)
        graph.insert_before(graph[0], nodes)


@dataclasses.dataclass
class _Gain:
    """``g = ||W||`` over the axes ``reduce`` (all but the unit axis), in float64 rounded once
    to W's dtype, shaped to multiply ``v / ||v||``."""

    g: np.ndarray
    dtype: ir.DataType
    reduce: list[int]


def _gain(weight: ir.Value, axis: int) -> _Gain:
    const = weight.const_value
    assert const is not None
    array, dtype = ev.tensor_array(const)
    reduce = [a for a in range(array.ndim) if a != axis]
    with np.errstate(over="ignore"):  # a norm beyond the dtype's range: the fold declines it
        g = ev.round_to(np.sqrt(ev.sum_of_squares(array, tuple(reduce), keepdims=True)), dtype)
    return _Gain(g, dtype, reduce)


def _constant(name: str, array: np.ndarray, dtype: ir.DataType) -> ir.Value:
    """An initializer's value named ``name``, typed and shaped."""
    value = ir.Value(name=name, const_value=ir.Tensor(array, dtype=dtype, name=name))
    value.shape, value.type = ir.Shape(array.shape), ir.TensorType(dtype)
    return value


def _normed(
    v: ir.Value,
    g: ir.Value,
    axes: ir.Value | None,
    reduce: list[int],
    name: str,
    output: ir.Value,
    fresh: Callable[[str], str],
) -> list[ir.Node]:
    """The nodes of ``output = Mul(Div(v, ReduceL2(v, axes)), g)``, named after the weight
    ``name`` (their outputs ``fresh(suffix)``); the axes an input where given (opset 18 on),
    else an attribute."""
    if axes is not None:
        norm = ir.node("ReduceL2", [v, axes], attributes={"keepdims": 1})
    else:
        norm = ir.node("ReduceL2", [v], attributes={"axes": reduce, "keepdims": 1})
    div = ir.node("Div", [v, norm.outputs[0]])
    mul = ir.node("Mul", [div.outputs[0], g], outputs=[output])
    for node, suffix in ((norm, "norm"), (div, "div"), (mul, "mul")):
        node.name = f"{name}_wn_{suffix}"
        if node is not mul:
            node.outputs[0].name = fresh(f"wn_{suffix}")
    return [norm, div, mul]


def _not_folded_back(weight: ir.Value, gain: _Gain, opset: int) -> str | None:
    """Why the fold would decline the site this pass would write for ``weight`` (None: it
    folds it back), decided by the fold's own checks (``weights.decline_reason``) on that
    site, built in a graph of its own: where they decline, the graph does not compute ``W``
    from ``g * v / ||v||`` (a norm whose sum of squares leaves float32's normal range is inf
    or 0, one of NaN or Inf in W makes g or the weight NaN), so the rewrite would change the
    model's outputs."""
    from wnpass.onnx.match import find_sites
    from wnpass.onnx.weights import decline_reason

    assert weight.name is not None and weight.const_value is not None
    v = ir.Value(name=weight.name, const_value=weight.const_value)
    v.shape, v.type = weight.shape, weight.type
    g = _constant("g", gain.g, gain.dtype)
    axes = None
    if opset >= 18:
        axes = _constant("axes", np.array(gain.reduce, np.int64), ir.DataType.INT64)
    output = ir.Value(name="w", shape=weight.shape, type=weight.type)
    nodes = _normed(v, g, axes, gain.reduce, weight.name, output, lambda suffix: suffix)
    leaves = [v, g] if axes is None else [v, g, axes]
    graph = ir.Graph([], [output], nodes=nodes, initializers=leaves, opset_imports={"": opset})
    (site,) = find_sites(ir.Model(graph, ir_version=10))
    reason = decline_reason(site)
    return None if reason is None else f"its weight-norm form would not compute it ({reason})"
