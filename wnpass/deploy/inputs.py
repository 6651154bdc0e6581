"""The model's inputs as the exporters see them: ``forward``'s parameter names, which arguments
become graph inputs (and in which order), and the dynamic axes asked for, checked against
both before and after the export.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import onnx_ir as ir
import torch
from torch import nn

from wnpass.deploy.report import ExportError
from wnpass.errors import InvalidArgumentError
from wnpass.fx.forward import Batch

logger = logging.getLogger(__name__)


def traced_arguments(model: nn.Module, inputs: Batch, dynamo: bool) -> dict[str, Any]:
    """The values the exporter traces ``forward`` with, by ``forward``'s parameter names and in
    the order they become graph inputs, so ``--dynamic mel=0,2`` reads as the model's code does
    (``input_<i>`` where the signature says nothing). The positional inputs come first. Then
    the dynamo exporter takes the keyword inputs in their own order; the TorchScript exporter
    takes every parameter after the positional ones in the signature's order, the keyword
    input of its name or else its default, each as an argument of its own (measured with torch
    2.13; the dynamo exporter leaves the defaults to ``forward``, which bakes them into the
    graph)."""
    parameters = forward_parameters(model)
    args, kwargs = inputs.args, dict(inputs.kwargs)
    named = dict(zip(positional_names(parameters, len(args)), args, strict=True))
    if dynamo:
        return named | kwargs
    rest = [p for p in parameters[len(args) :] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if unknown := [name for name in kwargs if name not in {p.name for p in rest}]:
        raise InvalidArgumentError(
            f"{', '.join(unknown)}: not a parameter of forward after the positional inputs, "
            "the only keyword inputs the TorchScript exporter passes on; give it "
            "positionally, or use the dynamo exporter",
            parameter="example_inputs",
        )
    given = {p.name: kwargs.get(p.name, p.default) for p in rest}
    return named | {
        name: value for name, value in given.items() if value is not inspect.Parameter.empty
    }


def no_generators(arguments: dict[str, Any], inputs: Batch) -> None:
    """Refuse an argument that holds a ``torch.Generator``: ONNX has no type for one, and the
    exporters failed on it with messages that do not name it (t191). One of ``forward``'s own
    defaults, which only the TorchScript exporter passes on, is said to be one (t192)."""
    given = set(list(arguments)[: len(inputs.args)]) | set(inputs.kwargs)  # the rest: defaults
    for name, value in arguments.items():
        leaves = torch.utils._pytree.tree_leaves(value)
        if not any(isinstance(leaf, torch.Generator) for leaf in leaves):
            continue
        if name in given:
            raise InvalidArgumentError(
                f"{name}: holds a torch.Generator, which no ONNX graph takes as an input; draw "
                "from torch's generator in the model, or give the noise as a tensor input",
                parameter="example_inputs",
            )
        raise InvalidArgumentError(
            f"forward's default of {name} is a torch.Generator, which the TorchScript exporter "
            "passes on as an input and no ONNX graph takes: give it a default of None (drawing "
            "from torch's generator then)"
        )


def forward_parameters(model: nn.Module) -> list[inspect.Parameter]:
    """``forward``'s parameters; none where its signature cannot be read."""
    try:
        return list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return []


def positional_names(parameters: list[inspect.Parameter], count: int) -> list[str]:
    """The names of ``count`` positional inputs: their parameters', ``input_<i>`` past them."""
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [positional[i].name if i < len(positional) else f"input_{i}" for i in range(count)]


def _input_count(value: Any, dynamo: bool) -> int:
    """How many graph inputs an argument becomes (measured with torch 2.13): a tensor one,
    under either exporter; a Python bool, int or float one under TorchScript (dynamo bakes it
    into the graph); None and str none (TorchScript's flattening drops them); a tuple, list or
    dict the sum of its items'."""
    kinds = (torch.Tensor,) if dynamo else (torch.Tensor, bool, int, float)
    return sum(isinstance(leaf, kinds) for leaf in torch.utils._pytree.tree_leaves(value))


def graph_arguments(
    arguments: dict[str, Any], dynamo: bool
) -> tuple[dict[str, Any], tuple[str, int] | None]:
    """The arguments that become the exported graph's inputs, in the graph's order, by the
    name to give that input. An exporter takes input names as a list and gives them to its
    inputs in order, so an argument that becomes no input must not be named (``x, mask=None,
    scale=2.0``: naming ``mask`` would call the graph's ``scale`` input ``mask``). Naming
    stops at an argument that becomes several inputs (a tuple of tensors): those, and the
    inputs after them, keep the exporter's own names; that argument and its count of inputs
    come second (None when there is none). TorchScript drops an input that ``forward`` never
    reads after naming, so such an argument keeps its place here."""
    named: dict[str, Any] = {}
    for name, value in arguments.items():
        count = _input_count(value, dynamo)
        if count > 1:
            return named, (name, count)
        if count == 1:
            named[name] = value
    return named, None


def several_inputs(name: str, count: int, verify: bool) -> None:
    """An argument that becomes ``count`` graph inputs (:func:`graph_arguments`): the example
    inputs are fed to the graph by name, and the exporter's names of those inputs say which
    is which only by its own rules, so verification is declined before anything is exported.
    An export without verification goes on, and says the names are the exporter's."""
    if verify:
        raise InvalidArgumentError(
            f"cannot verify: {name} becomes {count} graph inputs, which (with the inputs after "
            "it) keep the exporter's names, and the example inputs are fed by name; give its "
            "tensors to forward one by one, or export without verification"
        )
    logger.warning(
        "%s becomes %d graph inputs: it and the inputs after it keep the exporter's names",
        name,
        count,
    )


def check_dynamic(
    dynamic: dict[str, dict[int, str]] | None,
    arguments: dict[str, Any],
    graph_inputs: dict[str, Any],
) -> None:
    """Every dynamic axis names an example tensor by ``forward``'s parameter name that becomes a
    graph input of that name, and lies in its rank: an exporter would otherwise ignore it, and
    the file keep that axis fixed."""
    for name, axes in (dynamic or {}).items():
        # a name with a space or other character no parameter has, quoted to be seen (t225)
        shown = name if name.isidentifier() else repr(name)
        if name not in arguments:
            raise InvalidArgumentError(
                f"{shown}: the model's inputs are {', '.join(arguments)}", parameter="dynamic"
            )
        value = arguments[name]
        if not isinstance(value, torch.Tensor):
            raise InvalidArgumentError(
                f"{shown}: its example input is not a tensor ({type(value).__name__}); "
                "only a tensor has axes",
                parameter="dynamic",
            )
        if name not in graph_inputs:
            raise InvalidArgumentError(
                f"{shown}: not a graph input of that name (the graph's named inputs are "
                f"{', '.join(graph_inputs)})",
                parameter="dynamic",
            )
        outside = sorted(a for a in axes if not 0 <= a < value.dim())
        if outside:
            raise InvalidArgumentError(
                f"{shown}: axis {outside[0]} is outside its {value.dim()} dimensions "
                f"(shape {list(value.shape)})",
                parameter="dynamic",
            )


def dynamic_shapes_for(
    model: nn.Module, inputs: Batch, dynamic: dict[str, dict[int, str]], arguments: dict[str, Any]
) -> dict[str, Any] | tuple[Any, ...]:
    """The dynamic axes as torch.export takes them: keyed by ``forward``'s parameters, the
    inputs bound to them as Python binds them (``*args`` a tuple by position, ``**kwargs`` a
    dict by keyword), each entry the axes asked for by the input's name (:func:`traced_arguments`).
    Where the signature cannot bind the inputs, one entry per argument in order. Inputs that
    ``**kwargs`` takes cannot be given dynamic axes: torch.export (2.13) fails on them with an
    AssertionError, so such a call is refused before anything is exported."""
    try:
        signature = inspect.signature(model.forward)
        bound = signature.bind(*inputs.args, **inputs.kwargs).arguments
    except (TypeError, ValueError):
        return tuple(dynamic.get(name) for name in arguments)
    shapes: dict[str, Any] = {}
    position = 0
    for name, value in bound.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            shapes[name] = tuple(
                _spec(item, dynamic.get(f"input_{position + i}")) for i, item in enumerate(value)
            )
        elif kind is inspect.Parameter.VAR_KEYWORD:
            raise InvalidArgumentError(
                f"the dynamo exporter gives no dynamic axes to a forward that takes inputs "
                f"through **{name} ({', '.join(value)}): name them as forward's parameters",
                parameter="dynamic",
            )
        else:
            shapes[name] = _spec(value, dynamic.get(name))
            position += kind is not inspect.Parameter.KEYWORD_ONLY
    return shapes


def _spec(value: Any, axes: dict[int, str] | None) -> Any:
    """One input's entry: its axes for a tensor; for a container (a dict of tensors), the same
    structure of Nones, which torch.export requires (``inputs['d'] is a dict, but
    dynamic_shapes['d'] is not``); ``check_dynamic`` gives axes only to tensors."""
    if isinstance(value, torch.Tensor):
        return axes
    return torch.utils._pytree.tree_map(lambda _: None, value)


def check_dynamic_made(
    model: ir.Model, dynamic: dict[str, dict[int, str]] | None, exporter: str
) -> None:
    """Every axis asked to be dynamic is a symbolic dimension of the graph input of its name:
    an exporter that fixed it (or gave it to another input) made a file that fails on other
    sizes, which no verification on the example inputs would show."""
    inputs = {value.name: value for value in model.graph.inputs}
    for name, axes in (dynamic or {}).items():
        value = inputs.get(name)
        if value is None:
            raise ExportError(
                f"the {exporter} exporter made no graph input of {name} (the forward does not "
                "read it), so none of its axes is dynamic"
            )
        shape = value.shape
        for axis in sorted(axes):
            size = None if shape is None or axis >= len(shape) else shape[axis]
            if size is None or isinstance(size, int):
                fixed = "" if size is None else f" (fixed at {size})"
                raise ExportError(
                    f"the {exporter} exporter did not make axis {axis} of {name} dynamic{fixed}"
                )
