"""The PyTorch names of the exported weights: initializers the exporter named itself
(``onnx::MatMul_12``) renamed after the weight they hold, and the weights the ONNX fold wrote
transposed, laid out otherwise, or together.
"""

from __future__ import annotations

import functools
import math
import re
from typing import NamedTuple

import numpy as np
import onnx_ir as ir
import torch
from torch import nn

from wnpass.axes import is_legacy_hook
from wnpass.deploy.outputs import as_array
from wnpass.fx.arguments import is_lazy
from wnpass.onnx.naming import taken_names
from wnpass.report import FoldReport
from wnpass.rules import parse_key


class Weights(NamedTuple):
    """A model's weights by deployed name (:func:`weights_by_name`); ``aliases``: the names of a
    weight held under another name too (tied: ``lm_head.weight`` of ``embed.weight``), each
    with the name listed first; ``parameters``: every parameter of 2-D and up by deployed name,
    ``weight`` in its name or not (``proj``, ``rel_attn.o``: weight norm applies to them too)."""

    values: dict[str, torch.Tensor]
    aliases: dict[str, str]
    parameters: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]  # of 2-D and up: what a parameter's values may be too


def weights_by_name(model: nn.Module) -> Weights:
    """Each weight (a parameter of 2-D and up with ``weight`` in its name: ``conv.weight``,
    ``lstm.weight_ih_l0``, ``attn.in_proj_weight``) by its deployed name, with the value it
    computes with: ``conv.weight`` also for weight-normed
    ``conv.parametrizations.weight.original0/1`` and (legacy hook) ``conv.weight_g/_v``. A
    weight under several names (tied, or one module under two) is listed under each."""
    legacy = {
        f"{prefix}.{hook.name}" if prefix else hook.name
        for prefix, module in model.named_modules(remove_duplicate=False)
        for hook in module._forward_pre_hooks.values()
        if is_legacy_hook(hook)
    }
    weights: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    parameters: dict[str, torch.Tensor] = {}
    first: dict[int, str] = {}  # by the parameter's identity
    for name, value in model.named_parameters(remove_duplicate=False):
        parsed = parse_key(name)
        param = value
        if parsed is not None and (parsed[0].form == "parametrize" or parsed[0].weight in legacy):
            name = parsed[0].weight
            module, _, attribute = name.rpartition(".")
            value = getattr(model.get_submodule(module), attribute)
        if value.dim() < 2 or name in parameters:
            continue
        parameters[name] = value.detach()
        if "weight" not in name.rpartition(".")[2]:
            continue
        if (named := first.setdefault(id(param), name)) != name:
            aliases[name] = named
        weights[name] = parameters[name]
    buffers = {
        name: buffer.detach()
        for name, buffer in model.named_buffers()
        if buffer.dim() >= 2 and not is_lazy(buffer)
    }
    return Weights(weights, aliases, parameters, buffers)


def restore_names(model: ir.Model, weights: Weights) -> tuple[list[str], list[str], dict[str, str]]:
    """Rename initializers the exporter named itself (``onnx::MatMul_12``, ``mul_1``) after the
    PyTorch parameter (of 2-D and up) they hold, found by shape and value (also transposed, as
    Linear feeds MatMul; within float32 rounding, as an exporter may have folded weight norm in
    float32).
    Returns the weights that still have no initializer of their name, those whose
    initializer holds them transposed, and those equal to a weight with an initializer, by
    that weight (the dynamo exporter keeps one constant of equal values: ParallelWaveGAN's
    upsampling kernels, all 1/9, t290). A name of a weight held under another (tied) names a
    copy of it the exporter made (the tied head's ``W.T`` for a MatMul); with none, the weight
    is the initializer of its other name, and none is missing. A name some other value of
    the model holds (a graph input ``weight``, the filter the caller passes in) is given to
    none: two values of one name read as one, the input's."""
    named = model.graph.initializers
    taken = taken_names(model)
    outputs = {id(value) for value in model.graph.outputs}  # an output's name is the model's
    arrays = {name: as_array(w) for name, w in weights.values.items() if name not in named}
    missing = {name: a for name, a in arrays.items() if a is not None}
    transposed: list[str] = []
    for init_name, value in list(model.graph.initializers.items()):
        tensor = value.const_value
        if not missing or tensor is None or init_name in weights.values or tensor.size < 2:
            continue
        if id(value) in outputs:  # t205: a returned ``emb.weight.t()`` was renamed
            continue
        shape, values = tuple(tensor.shape.numpy()), functools.cache(tensor.numpy)  # read once
        for name, weight in missing.items():
            if name in taken or not _fits(shape, weight):
                continue
            if (how := _held_as(values(), weight)) is None:
                continue
            value.name = name
            if how == "transposed":
                transposed.append(name)
            del missing[name]
            break
    transposed += _name_other_parameters(model, weights, taken)
    unnamed = [n for n, a in arrays.items() if a is None] + list(missing)
    # after the renaming above; a tied weight is held under any of its names (the dynamo
    # exporter keeps the last: an embedding's table as the tied head's ``head.weight``)
    held = {weights.aliases.get(name, name) for name in named if name in weights.values}
    unnamed = [n for n in unnamed if weights.aliases.get(n, n) not in held]
    shared = _held_by_equals(model, unnamed, arrays, weights)
    return [n for n in unnamed if n not in shared], transposed, shared


def _held_by_equals(
    model: ir.Model, names: list[str], arrays: dict[str, np.ndarray | None], weights: Weights
) -> dict[str, str]:
    """Of weights ``names`` with no initializer of their own, those equal (same shape, same
    values) to a weight that has one, by that weight, where a node reading that initializer
    is the weight's own op: the dynamo exporter keeps one constant for equal values (as it
    holds that weight: as is, or transposed, t294), and says which parameter each node's op
    took (``pkg.torch.onnx.fx_node``: ``%p_b_weight``). A graph that does not say, or reads
    the weight otherwise (``2 * W + 1``, folded into a constant of its own), or not at all,
    gets no claim (t296)."""
    named = {n: w for n, w in weights.values.items() if n in model.graph.initializers}
    shared: dict[str, str] = {}
    for name in names:
        weight = arrays.get(name)
        if weight is None:
            continue
        for other, tensor in named.items():
            if tuple(tensor.shape) != weight.shape:  # before any copy of its values
                continue
            value = as_array(tensor)
            if (
                value is not None
                and np.array_equal(value, weight)
                and _read_as(model, model.graph.initializers[other], name)
            ):
                shared[name] = other
                break
    return shared


_FX_NODE = "pkg.torch.onnx.fx_node"  # the dynamo exporter's record of each node's op


def _read_as(model: ir.Model, initializer: ir.Value, weight: str) -> bool:
    """Whether an op of the exported program that took parameter ``weight`` (its ``%p_<name>``
    placeholder among the op's arguments) reads ``initializer``: one of its nodes does, or
    reads the result of a node of the same op target that does (the exporter computes a
    product once for two equal layers on the same input, t294). A weight-norm weight kept in
    the graph (``--keep-weight-norm``) is taken by its op as the product the graph computes,
    named by no placeholder: no claim (a node of the layer's own module reading the equal
    initializer may take another layer's product, t297, t299, t300)."""
    placeholder = re.compile(r"%p_" + re.escape(re.sub(r"\W", "_", weight)) + r"\b")
    readers = {id(use[0]): use[0] for use in initializer.uses()}
    for node in model.graph:
        record = node.metadata_props.get(_FX_NODE, "")
        if not placeholder.search(record):
            continue
        if id(node) in readers:
            return True
        producers = [value.producer() for value in node.inputs if value is not None]
        if any(
            producer is not None
            and id(producer) in readers
            and _op_target(producer.metadata_props.get(_FX_NODE, "")) == _op_target(record)
            for producer in producers
        ):
            return True
    return False


def _op_target(record: str) -> str | None:
    found = re.search(r"target=([\w.]+)", record)
    return found[1] if found else None


def _fits(shape: tuple[int, ...], weight: np.ndarray) -> bool:
    """Whether an initializer of ``shape`` may hold ``weight``, as is or transposed (2-D)."""
    return weight.shape == shape or (weight.ndim == 2 and weight.T.shape == shape)


def _held_as(held: np.ndarray, weight: np.ndarray) -> str | None:
    """How an initializer's values ``held`` hold ``weight``: ``"as is"``, ``"transposed"``
    (2-D), or None."""
    if weight.shape == held.shape and _close(held, weight):
        return "as is"
    if weight.ndim == 2 and weight.T.shape == held.shape and _close(held, weight.T):
        return "transposed"
    return None


def _name_other_parameters(model: ir.Model, weights: Weights, taken: set[str]) -> list[str]:
    """The parameters of 2-D and up without ``weight`` in their name (a weight-normed
    ``proj`` the dynamo exporter holds as ``t``, t201) given their initializer's name back,
    where that is sure: one initializer the exporter named holds the parameter, and no other
    parameter or buffer holds what it holds (an unused parameter of a weight's values took
    the weight's name, a buffer's, t203); the parameter itself under another name (tied) is
    no other; never a graph output's. Values are compared only where their sums allow it
    (:func:`_fingerprint`): each against each was quadratic in the parameters (t205). Returns
    those held transposed."""
    outputs = {id(value) for value in model.graph.outputs}
    named = model.graph.initializers
    others = {
        name: array
        for name, value in weights.parameters.items()
        if name not in weights.values and name not in named and name not in taken
        if (array := as_array(value)) is not None
    }
    if not others:
        return []
    free = [  # the initializers the exporter named, with their values and fingerprints
        (value, held, _fingerprint(held))
        for init_name, value in named.items()
        if init_name not in weights.parameters and id(value) not in outputs
        if (tensor := value.const_value) is not None and tensor.size >= 2
        if (held := tensor.numpy()) is not None
    ]
    holders = [
        (other, held, array, _fingerprint(array))
        for other, held in {**weights.parameters, **weights.buffers}.items()
        if (array := as_array(held)) is not None
    ]
    transposed = []
    for name, array in others.items():
        mark = _fingerprint(array)
        found = [
            (entry, how)
            for entry in free
            if _may_match(entry[2], mark) and (how := _held_as(entry[1], array)) is not None
        ]
        if len(found) != 1:
            continue
        entry, how = found[0]
        value, values, held_mark = entry
        itself = weights.parameters[name]
        alike = [
            other
            for other, held, other_array, other_mark in holders
            if other != name
            and not _same_tensor(held, itself)
            and _may_match(held_mark, other_mark)
            and _held_as(values, other_array) is not None
        ]
        if alike:
            continue
        value.name = name
        free.remove(entry)
        if how == "transposed":
            transposed.append(name)
    return transposed


_Fingerprint = tuple[tuple[int, ...], complex, float, float]


def _fingerprint(array: np.ndarray) -> _Fingerprint:
    """Its sorted shape (a transpose's is the same), sum, sum of magnitudes and largest
    magnitude, in float64 (complex128 for complex values): what two arrays equal within
    :func:`_close` nearly share."""
    wide = np.asarray(array, dtype=np.complex128 if np.iscomplexobj(array) else np.float64)
    magnitudes = np.abs(wide)
    return (
        tuple(sorted(array.shape)),
        complex(wide.sum()),
        float(magnitudes.sum()),
        float(magnitudes.max(initial=0.0)),
    )


def _may_match(a: _Fingerprint, b: _Fingerprint) -> bool:
    """Whether arrays of these fingerprints may be equal within :func:`_close` (its rtol 1e-5
    and atol 1e-6 of the scale, 1 for all zeros, summed over the elements; and float64's own
    error): where not, they are not, and no element need be compared."""
    if a[0] != b[0]:
        return False
    # _close's scale is its second array's largest magnitude, 1 where that is 0 (t207)
    scale = max(a[3], b[3]) if a[3] and b[3] else max(1.0, a[3], b[3])
    bound = 1e-5 * max(a[2], b[2]) + math.prod(a[0]) * 1e-6 * scale + 1e-9 * (a[2] + b[2])
    return not abs(a[1] - b[1]) > bound


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """One tensor under two names (a tied parameter): the same view of one storage."""
    return (a.untyped_storage().data_ptr(), a.storage_offset(), a.shape, a.stride()) == (
        b.untyped_storage().data_ptr(),
        b.storage_offset(),
        b.shape,
        b.stride(),
    )


# Layout ops that move a weight's elements (``Reshape``, ``Unsqueeze``, a ``Cast`` keep their
# order: a shape tells those).
_MOVING = frozenset({"Transpose", "Slice", "Concat", "Split", "Gather", "Pad", "Expand"})


def folded_layouts(
    fold: FoldReport, weights: Weights
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """The parameters the ONNX fold wrote under their own name (``weight`` in it or not)
    through layout ops that move their elements (a weight-norm site's ``Transpose`` in front
    of a ``MatMul``, a cone's): those held transposed (one 2-D ``Transpose``), and those laid
    out otherwise (an LSTM's gates reordered); and the weights a cone wrote together under a
    name of them all (a bidirectional LSTM's two directions,
    ``lstm.weight_ih_l0+weight_ih_l0_reverse``), by that name, where it holds them all and
    nothing else (as many elements as they have, and no other source), and they are more than
    one (a copy of one weight, ``W__1``, is no weights held together, t301). ``restore_names``
    sees only the initializers the exporter named."""
    transposed: list[str] = []
    laid_out: list[str] = []
    together: dict[str, list[str]] = {}
    entries = [(s.name, s.layout) for s in fold.sites if s.status == "folded"]
    entries += [(c.name, c.ops) for c in fold.cones if c.status == "folded"]
    for name, ops in dict(entries).items():  # a name once (a shared weight is written once)
        weight = weights.parameters.get(name)  # ``weight`` in its name or not (t197)
        moving = [op for op in ops if op in _MOVING]
        if weight is None or not moving:
            continue
        (transposed if moving == ["Transpose"] and weight.dim() == 2 else laid_out).append(name)
    for cone in fold.cones:
        held = [weights.values.get(source) for source in cone.sources]
        whole = cone.shape is not None and all(w is not None for w in held)
        if whole and sum(w.numel() for w in held if w is not None) != math.prod(cone.shape or ()):
            whole = False  # some element of some weight is not in it (a slice of each)
        # one source under another name is a copy of it (W__1, beside W), held with none
        several = len(cone.sources) > 1
        if cone.status == "folded" and cone.name not in weights.values and whole and several:
            together[cone.name] = list(cone.sources)
    return transposed, laid_out, together


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to a few float32 roundings (weight norm folded in another order)."""
    if a.dtype != b.dtype:
        return False
    a, b = a.astype(np.float64), b.astype(np.float64)  # ml_dtypes' bfloat16 too
    scale = float(np.abs(b).max(initial=0.0)) or 1.0
    return bool(np.allclose(a, b, rtol=1e-5, atol=1e-6 * scale))
