"""Find every parameter's consuming ops: torch.fx, else torch.export, else module types.

``torch.fx.symbolic_trace`` sees module calls (``torch.nn`` layers are leaves) and functional
uses (``F.linear(x, self.w)``, ``x @ self.w``). When it cannot trace (control flow on values
or shapes), ``torch.export`` on the example inputs sees the same as ATen ops. When neither works
(no example inputs, data-dependent control flow), the known layer types are read off the module
tree, with a warning naming why: functional uses are then invisible.
"""

from __future__ import annotations

import logging
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from wnpass.errors import one_line
from wnpass.fx.axes import (
    DimPolicy,
    Use,
    bias_use,
    conv_transpose_use,
    module_uses,
    unit_use,
)

__all__ = ["KNOWN_LAYERS", "TraceResult", "find_uses"]

logger = logging.getLogger(__name__)

KNOWN_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Embedding,
    nn.RNNBase,
    nn.MultiheadAttention,
)

TraceResult = tuple[list[Use], str, str | None]  # uses, "fx"/"export"/"module types", note

_LINEAR = {F.linear}
_CONV = {F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d}
_CONV_T = {F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d}
_MATMUL = {operator.matmul, torch.matmul, torch.mm, torch.bmm}
_ELEMENTWISE = {
    operator.add, operator.mul, operator.sub, operator.truediv, operator.neg,
    torch.add, torch.mul, torch.sub, torch.div, torch.tanh, torch.sigmoid, torch.exp,
}  # fmt: skip
_MATMUL_METHODS = {"matmul", "mm", "__matmul__"}


def _arg_index(node: fx.Node, target: fx.Node, keyword: str | None = None) -> int | None:
    for index, arg in enumerate(node.args):
        if arg is target:
            return index
    if keyword is not None and node.kwargs.get(keyword) is target:
        return {"weight": 1, "bias": 2}.get(keyword)
    return None


def _groups(node: fx.Node, position: int) -> int:
    value = node.kwargs.get("groups", node.args[position] if len(node.args) > position else 1)
    return int(value) if isinstance(value, int) else 1


def _matmul_use(param: str, op: str, consumer: str, index: int | None, ndim: int) -> Use:
    if index == 0:  # W @ x: rows of W are the output units
        return unit_use(param, op, consumer, 0)
    return unit_use(param, op, consumer, ndim - 1)  # x @ W: the last axis


def _fx_functional_use(
    param: str, ndim: int, user: fx.Node, attr: fx.Node, policy: DimPolicy, embeddings: bool
) -> Use:
    """One user of a parameter read with ``get_attr``."""
    target, name = user.target, user.name
    index = _arg_index(user, attr, "weight" if user.kwargs.get("weight") is attr else None)
    if user.op == "call_function" and target in _LINEAR:
        op = "F.linear"
        return unit_use(param, op, name, 0) if index == 1 else bias_use(param, op, name)
    if user.op == "call_function" and target in _CONV:
        op = f"F.{getattr(target, '__name__', 'conv')}"
        return unit_use(param, op, name, 0) if index == 1 else bias_use(param, op, name)
    if user.op == "call_function" and target in _CONV_T:
        op = f"F.{getattr(target, '__name__', 'conv_transpose')}"
        if index != 1:
            return bias_use(param, op, name)
        return conv_transpose_use(param, op, name, _groups(user, 6), policy)
    if (user.op == "call_function" and target in _MATMUL) or (
        user.op == "call_method" and target in _MATMUL_METHODS
    ):
        return _matmul_use(param, "matmul", name, index, ndim)
    if user.op == "call_function" and target is torch.addmm:
        if index == 0:
            return bias_use(param, "addmm", name)
        return _matmul_use(param, "addmm", name, 0 if index == 1 else 1, ndim)
    if user.op == "call_function" and target in (F.embedding, torch.embedding):
        weight_index = 1 if target is F.embedding else 0
        if index != weight_index:
            return Use(param, "embedding", name, None, "used as embedding indices")
        if not embeddings:
            return Use(param, "F.embedding", name, None, "embedding: opt-in (embeddings=True)")
        return unit_use(param, "F.embedding", name, 0)
    label = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    if user.op == "call_function" and target in _ELEMENTWISE:
        return Use(param, str(label), name, None, f"elementwise use ({label})")
    if user.op == "call_method":
        return Use(param, str(label), name, None, f"used through .{label}(): axis not followed")
    return Use(param, str(label), name, None, f"used by {label}, which wnpass does not know")


def _fx_uses(model: nn.Module, policy: DimPolicy, embeddings: bool) -> list[Use]:
    graph = fx.symbolic_trace(model).graph
    params = dict(model.named_parameters())
    uses: list[Use] = []
    for node in graph.nodes:
        if node.op == "call_module":
            module = model.get_submodule(str(node.target))
            uses.extend(module_uses(str(node.target), module, policy, embeddings))
        elif node.op == "get_attr" and str(node.target) in params:
            param = str(node.target)
            ndim = params[param].dim()
            for user in node.users:
                uses.append(_fx_functional_use(param, ndim, user, node, policy, embeddings))
    return uses


def _aten_name(target: Any) -> str:
    name = getattr(target, "__name__", str(target))
    return name.split(".")[0]


def _export_use(
    param: str, ndim: int, user: fx.Node, node: fx.Node, policy: DimPolicy, embeddings: bool
) -> Use:
    op = _aten_name(user.target)
    index = _arg_index(user, node)
    name = user.name
    if op == "linear" or op in ("conv1d", "conv2d", "conv3d"):
        return unit_use(param, op, name, 0) if index == 1 else bias_use(param, op, name)
    if op.startswith("conv_transpose"):
        if index != 1:
            return bias_use(param, op, name)
        return conv_transpose_use(param, op, name, _groups(user, 6), policy)
    if op == "convolution":
        if index != 1:
            return bias_use(param, op, name)
        if user.args[6]:
            return conv_transpose_use(param, op, name, _groups(user, 8), policy)
        return unit_use(param, op, name, 0)
    if op in ("matmul", "mm", "bmm"):
        return _matmul_use(param, op, name, index, ndim)
    if op == "addmm":
        if index == 0:
            return bias_use(param, op, name)
        return _matmul_use(param, op, name, 0 if index == 1 else 1, ndim)
    if op == "embedding":
        if index != 0:
            return Use(param, op, name, None, "used as embedding indices")
        if not embeddings:
            return Use(param, op, name, None, "embedding: opt-in (embeddings=True)")
        return unit_use(param, op, name, 0)
    if op in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        leaf = param.rsplit(".", 1)[-1]
        return bias_use(param, op, name) if "bias" in leaf else unit_use(param, op, name, 0)
    if op in ("add", "mul", "sub", "div", "neg", "tanh", "sigmoid", "exp"):
        return Use(param, op, name, None, f"elementwise use ({op})")
    return Use(param, op, name, None, f"used by {op}, which wnpass does not know")


def _export_uses(
    model: nn.Module, inputs: tuple[Any, ...], policy: DimPolicy, embeddings: bool
) -> list[Use]:
    program = torch.export.export(model, inputs, strict=False)
    placeholders = program.graph_signature.inputs_to_parameters
    shapes = {name: p.dim() for name, p in model.named_parameters()}
    uses: list[Use] = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in placeholders:
            continue
        param = placeholders[node.name]
        for user in node.users:
            uses.append(_export_use(param, shapes[param], user, node, policy, embeddings))
    return uses


def _type_uses(model: nn.Module, policy: DimPolicy, embeddings: bool) -> list[Use]:
    uses: list[Use] = []
    inside: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside):
            continue
        if isinstance(module, KNOWN_LAYERS):
            inside.append(name)
            uses.extend(module_uses(name, module, policy, embeddings))
    return uses


def find_uses(
    model: nn.Module,
    example_inputs: tuple[Any, ...] | None,
    policy: DimPolicy = "unit",
    embeddings: bool = False,
) -> TraceResult:
    """Every parameter use the best available tracer sees, the tracer's name, and a note."""
    try:
        return _fx_uses(model, policy, embeddings), "fx", None
    except Exception as error:
        fx_error = one_line(error, with_type=True)
        logger.info("torch.fx cannot trace %s: %s", type(model).__name__, fx_error)
    if example_inputs is not None:
        try:
            uses = _export_uses(model, example_inputs, policy, embeddings)
            return uses, "export", f"torch.fx could not trace ({fx_error}); used torch.export"
        except Exception as error:
            why = f"torch.fx: {fx_error}; torch.export: {one_line(error, with_type=True)}"
    else:
        why = f"torch.fx: {fx_error}; torch.export needs example inputs"
    note = f"traced by module types only, functional uses not seen ({why})"
    logger.warning("%s", note)
    return _type_uses(model, policy, embeddings), "module types", note
