"""Names for folded weights: the PyTorch parameter's name, unique in the model, stable."""

from __future__ import annotations

import onnx_ir as ir

from wnpass.onnx.graphs import graphs_of
from wnpass.rules import parse_key

__all__ = ["parameter_name", "taken_names", "unique"]


def parameter_name(v_name: str | None, fallback: str | None) -> str:
    """The PyTorch parameter that a weight-norm ``v`` stands for; else a name from ``fallback``."""
    # `conv.parametrizations.weight.original1` (parametrization API) and `conv.weight_v` (legacy
    # hook API) both hold the direction v of the parameter `conv.weight` (wnpass.rules).
    if v_name:
        if (parsed := parse_key(v_name)) is not None:
            return parsed[0].weight
        return f"{v_name}.folded"
    return f"{fallback or 'weight'}.folded"


def taken_names(model: ir.Model) -> set[str]:
    """Every value name used anywhere in the model (all graphs, subgraphs and functions)."""
    names: set[str] = set()
    for graph in graphs_of(model):
        names.update(v.name for v in graph.inputs if v.name)
        names.update(v.name for v in graph.outputs if v.name)
        if isinstance(graph, ir.Graph):
            names.update(graph.initializers)
        for node in graph:
            names.update(v.name for v in node.outputs if v.name)
    return names


def unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name__1``, ``name__2`` ... the first one not in ``taken``; reserves it."""
    candidate, k = name, 0
    while candidate in taken:
        k += 1
        candidate = f"{name}__{k}"
    taken.add(candidate)
    return candidate
