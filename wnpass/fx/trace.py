"""Find every parameter's consuming ops: observed, else torch.fx, torch.export, module types.

With example inputs the model is run once and every op that consumes a parameter is recorded
(:mod:`wnpass.fx.observe`): the primary path. The tracers below remain for models given without
example inputs (``tracer="static"`` forces them). ``torch.fx.symbolic_trace`` sees module
calls (``torch.nn`` layers are leaves) and functional uses (``F.linear(x, self.w)``,
``x @ self.w``). When it cannot trace (control flow on values or shapes), ``torch.export`` on
the example inputs sees the same as ATen ops. When neither works (no example inputs,
data-dependent control flow), the known layer types are read off the module tree, with a
warning naming why: functional uses are then invisible (a layer's weight gets its layer type's
axis even where the forward uses it another way).
"""

from __future__ import annotations

import collections
import logging
import operator
import sys
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import fx, nn

from wnpass.arguments import require_choice
from wnpass.axes import DimPolicy, OpKind
from wnpass.errors import UsageError, one_line
from wnpass.fx.axes import (
    RENORMED,
    SPARSE,
    Use,
    bias_use,
    conv_transpose_use,
    module_uses,
    sparse_table,
    table_use,
)
from wnpass.fx.calls import LAYER_OPS, name_of
from wnpass.fx.forward import Batch, as_batch, state_given_back
from wnpass.fx.mixing import MIXED_TRACED
from wnpass.fx.observe import observe_uses, rnn_roles
from wnpass.interrupts import STOPS

__all__ = ["KNOWN_LAYERS", "TRACERS", "TraceResult", "Tracer", "find_uses"]

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
    nn.RNNCellBase,  # LSTMCell, GRUCell, RNNCell: their weight_ih/weight_hh as RNNBase's (t244)
    nn.MultiheadAttention,
)

TraceResult = tuple[
    list[Use], str, str | None
]  # uses, "observed"/"fx"/"export"/"module types", note
Tracer = Literal["auto", "observe", "static"]
TRACERS: tuple[Tracer, ...] = ("auto", "observe", "static")

_LINEAR = {F.linear}
_CONV = {F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d}
_CONV_T = {F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d}
_CONV_TBC = {torch.conv_tbc, torch.ops.aten.conv_tbc, torch.ops.aten.conv_tbc.default}
_MATMUL = {operator.matmul, torch.matmul, torch.mm, torch.bmm}
_ELEMENTWISE = {
    operator.add, operator.mul, operator.sub, operator.truediv, operator.neg,
    torch.add, torch.mul, torch.sub, torch.div, torch.tanh, torch.sigmoid, torch.exp,
}  # fmt: skip
_MATMUL_METHODS = {"matmul", "mm", "__matmul__"}
# reads of a weight's layout, not its values (``padding=w.shape[-1] - 1``): not uses
_LAYOUT_ATTRS = {"shape", "dtype", "device", "ndim", "layout", "is_cuda", "requires_grad"}
_LAYOUT_METHODS = {"size", "dim", "stride", "numel", "nelement", "ndimension", "is_contiguous"}


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


def _matmul_use(param: str, op: str, consumer: str, index: int | None, shape: list[int]) -> Use:
    kind: OpKind = "matmul_left" if index == 0 else "matmul_right"  # W @ x: rows; x @ W: last
    return table_use(param, op, consumer, kind, shape)


def _fx_functional_use(
    param: str,
    shape: list[int],
    user: fx.Node,
    attr: fx.Node,
    model: nn.Module,
    *,
    policy: DimPolicy,
    embeddings: bool,
) -> Use:
    """One user of a parameter of ``model`` read with ``get_attr``."""
    target, name = user.target, user.name
    index = _arg_index(user, attr, "weight" if user.kwargs.get("weight") is attr else None)
    if user.op == "call_function" and target in _LINEAR:
        op = "F.linear"
        if index == 0:  # as the observer says it (t201)
            return Use(param, op, name, None, f"the input of {op}, not a weight")
        if index != 1:
            return bias_use(param, op, name)
        return table_use(param, op, name, "linear", shape)
    if user.op == "call_function" and target in _CONV:
        op = f"F.{getattr(target, '__name__', 'conv')}"
        if index == 0:
            return Use(param, op, name, None, f"the input of {op}, not a weight")
        if index != 1:
            return bias_use(param, op, name)
        return table_use(param, op, name, "conv", shape)
    if user.op == "call_function" and target in _CONV_TBC:  # fairseq's ConvTBC
        op = "torch.conv_tbc"
        if index == 0:
            return Use(param, op, name, None, f"the input of {op}, not a weight")
        if index != 1:
            return bias_use(param, op, name)
        return table_use(param, op, name, "conv_tbc", shape)
    if user.op == "call_function" and target in _CONV_T:
        op = f"F.{getattr(target, '__name__', 'conv_transpose')}"
        if index != 1:
            return bias_use(param, op, name)
        return conv_transpose_use(param, op, name, _groups(user, 6), policy, shape)
    if (user.op == "call_function" and target in _MATMUL) or (
        user.op == "call_method" and target in _MATMUL_METHODS
    ):
        if (layer := _read_as_weight(user, model)) is not None:
            return Use(param, "matmul", name, None, MIXED_TRACED.format(op="matmul", layer=layer))
        return _matmul_use(param, "matmul", name, index, shape)
    if user.op == "call_function" and target is torch.addmm:
        if index == 0:
            return bias_use(param, "addmm", name)
        if (layer := _read_as_weight(user, model)) is not None:
            return Use(param, "addmm", name, None, MIXED_TRACED.format(op="addmm", layer=layer))
        return _matmul_use(param, "addmm", name, 0 if index == 1 else 1, shape)
    if user.op == "call_function" and target in (F.embedding, torch.embedding):
        weight_index = 1 if target is F.embedding else 0
        if index != weight_index:
            return Use(param, "embedding", name, None, "used as embedding indices")
        max_norm = user.kwargs.get("max_norm", user.args[3] if len(user.args) > 3 else None)
        if target is F.embedding and max_norm is not None:
            return Use(param, "F.embedding", name, None, RENORMED)
        if sparse_table(target, user.args, user.kwargs):
            return Use(param, "F.embedding", name, None, SPARSE)
        return table_use(param, "F.embedding", name, "embedding", shape, embeddings=embeddings)
    label = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    if user.op == "call_function" and target in _ELEMENTWISE:
        return Use(param, str(label), name, None, f"elementwise use ({label})")
    if user.op == "call_method":
        return Use(param, str(label), name, None, f"used through .{label}(): axis not followed")
    return Use(param, str(label), name, None, f"used by {label}, which wnpass does not know")


# The most steps followed from a product of a weight to a layer reading it as its weight, and
# the most nodes so followed in all
_TO_WEIGHT = 64
_FOLLOWED = 4096
# Reductions: each element of their result is made of several of the product's
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "prod", "std", "var", "logsumexp"}
_REDUCTIONS |= {"norm", "median", "nanmean", "nansum"}
# Views that lay a product's elements out as another shape: a kernel's (:func:`_read_as_weight`)
_RESHAPES = {"view", "reshape", "flatten", "unflatten", "view_as", "reshape_as"}


def _read_as_weight(product: fx.Node, model: nn.Module) -> str | None:
    """The layer op that reads ``product`` (a matrix product of a weight), reshaped on the
    way, as its weight: the weight is then mixed into another layer's weight with its units
    laid out over the kernel's axes (CondConv's ``F.conv2d(x, (routing @ W).view(...))``,
    t327), which the trace, with no values, cannot tell the axes of. Followed breadth first
    through every op but another layer's (:func:`_ends_there`: the next block's weights are
    no part of it, t332), whatever its name (an ``nn.GELU()``, ``F.silu``, ``.T``, a
    ``masked_fill`` between, t333), within :data:`_TO_WEIGHT` steps (siblings, a sample's
    kernels each, count once, t333); None where no layer reads it so. A product read as a
    weight with no reshape on the way (a factorized Linear's ``U @ V``, LoRA's ``W + B @ A``)
    keeps its units whole: a forward plans it (t330)."""
    layers = _LINEAR | _CONV | _CONV_T | _CONV_TBC
    queue = collections.deque([(product, False, 0)])
    seen = {product}
    while queue:
        node, reshaped, steps = queue.popleft()
        for user in node.users:
            keyword = "weight" if user.kwargs.get("weight") is node else None
            layer = user.op == "call_function" and user.target in layers
            if layer and reshaped and _arg_index(user, node, keyword) == 1:
                return f"F.{getattr(user.target, '__name__', 'conv')}"
            if user in seen or steps >= _TO_WEIGHT or len(seen) >= _FOLLOWED:
                continue
            if _ends_there(user, model):
                continue
            seen.add(user)
            queue.append((user, reshaped or _called(user) in _RESHAPES, steps + 1))
    return None


def _ends_there(user: fx.Node, model: nn.Module) -> bool:
    """Whether what ``user`` computes is none of its operands' elements, for
    :func:`_read_as_weight`: a layer's output (its op's, :data:`LAYER_OPS`: a product, a
    convolution; a module holding parameters), a reduction's (a prototype's mean over its
    shots, as a forward reads it, t336), the graph's output, or a layout read
    (``w.shape``)."""
    if user.op == "call_module":
        return any(True for _ in model.get_submodule(str(user.target)).parameters())
    if user.op not in ("call_function", "call_method") or _layout_read(user):
        return True
    name = _called(user).strip("_")
    return name in LAYER_OPS or name in _REDUCTIONS


def _called(user: fx.Node) -> str:
    """The name of what ``user`` calls: a function's or a method's (``view``, ``__matmul__``)."""
    return name_of(user.target) if callable(user.target) else str(user.target)


def _layout_read(user: fx.Node) -> bool:
    """``w.shape``, ``w.size()``, ``w.dim()`` ...: the weight's layout is read, not its values."""
    if user.op == "call_method":
        return user.target in _LAYOUT_METHODS
    return (
        user.op == "call_function"
        and user.target is getattr
        and len(user.args) > 1
        and user.args[1] in _LAYOUT_ATTRS
    )


class _Tracer(fx.Tracer):
    """torch.fx's tracer, reading a ``torch.compile``'d submodule as the module it compiles
    (fx refuses to trace dynamo's wrapper, and the whole model was then read by module types
    only); its nodes name that module as its parameters do (``b._orig_mod``)."""

    def call_module(
        self, m: nn.Module, forward: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        eval_frame = sys.modules.get("torch._dynamo.eval_frame")  # none compiled without it
        if eval_frame is not None and isinstance(m, eval_frame.OptimizedModule):
            inner = m._orig_mod
            return self.call_module(inner, inner.forward, args, kwargs)
        return super().call_module(m, forward, args, kwargs)


def _fx_uses(model: nn.Module, policy: DimPolicy, embeddings: bool) -> list[Use]:
    graph = _Tracer().trace(model)
    params = dict(model.named_parameters())
    uses: list[Use] = []
    for node in graph.nodes:
        if node.op == "call_module":
            module = model.get_submodule(str(node.target))
            uses.extend(module_uses(str(node.target), module, policy, embeddings))
        elif node.op == "get_attr" and str(node.target) in params:
            param = str(node.target)
            shape = list(params[param].shape)
            for user in node.users:
                if not _layout_read(user):
                    use = _fx_functional_use(
                        param, shape, user, node, model, policy=policy, embeddings=embeddings
                    )
                    uses.append(use)
    return uses


def _aten_name(target: Any) -> str:
    name = getattr(target, "__name__", str(target))
    return name.split(".")[0]


def _export_use(
    param: str, shape: list[int], user: fx.Node, node: fx.Node, policy: DimPolicy, embeddings: bool
) -> Use:
    op = _aten_name(user.target)
    index = _arg_index(user, node)
    name = user.name
    if op == "linear" or op in ("conv1d", "conv2d", "conv3d"):
        if index != 1:
            return bias_use(param, op, name)
        return table_use(param, op, name, "linear" if op == "linear" else "conv", shape)
    if op.startswith("conv_transpose"):
        if index != 1:
            return bias_use(param, op, name)
        return conv_transpose_use(param, op, name, _groups(user, 6), policy, shape)
    if op == "conv_tbc":
        if index != 1:
            return bias_use(param, op, name)
        return table_use(param, op, name, "conv_tbc", shape)
    if op == "convolution":
        if index != 1:
            return bias_use(param, op, name)
        if user.args[6]:
            return conv_transpose_use(param, op, name, _groups(user, 8), policy, shape)
        return table_use(param, op, name, "conv", shape)
    if op in ("matmul", "mm", "bmm"):
        return _matmul_use(param, op, name, index, shape)
    if op == "addmm":
        if index == 0:
            return bias_use(param, op, name)
        return _matmul_use(param, op, name, 0 if index == 1 else 1, shape)
    if op == "embedding":
        if index != 0:
            return Use(param, op, name, None, "used as embedding indices")
        return table_use(param, op, name, "embedding", shape, embeddings=embeddings)
    if op in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        return _rnn_use(param, op, name, user, node, shape)
    if op in ("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell"):  # (x, h, w_ih, w_hh,
        if index in (2, 3):  # b_ih, b_hh): as the cell modules hold them (t246)
            return table_use(param, op, name, "linear", shape)
        if index in (4, 5):
            return bias_use(param, op, name)
        return Use(param, op, name, None, f"input or state of {op}, not a weight")
    if op in ("add", "mul", "sub", "div", "neg", "tanh", "sigmoid", "exp"):
        return Use(param, op, name, None, f"elementwise use ({op})")
    return Use(param, op, name, None, f"used by {op}, which wnpass does not know")


def _rnn_use(
    param: str, op: str, consumer: str, user: fx.Node, node: fx.Node, shape: list[int]
) -> Use:
    """A parameter an RNN reads: a weight or bias only in its flat weights, by position
    (``rnn_roles``, as a forward observed sees them); a learned input or initial state
    (``h0``, ``c0``) is none."""
    try:
        roles = {id(entry): role for entry, role in rnn_roles(op, tuple(user.args), {})}
    except (StopIteration, IndexError, TypeError, ValueError):
        return Use(param, op, consumer, None, f"{op} called in a form wnpass does not follow")
    role = roles.get(id(node))
    if role is None:
        return Use(param, op, consumer, None, f"input or state of {op}, not a weight")
    if role == "bias":
        return bias_use(param, op, consumer)
    return table_use(param, op, consumer, "linear", shape)


def _export_uses(model: nn.Module, batch: Batch, policy: DimPolicy, embeddings: bool) -> list[Use]:
    program = torch.export.export(model, batch.args, dict(batch.kwargs), strict=False)
    placeholders = program.graph_signature.inputs_to_parameters
    shapes = {name: list(p.shape) for name, p in model.named_parameters()}
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
    example_inputs: Any,
    policy: DimPolicy = "unit",
    embeddings: bool = False,
    tracer: Tracer = "auto",
) -> TraceResult:
    """Every parameter use the best available way sees, its name, and a note.

    ``tracer="auto"``: observe a forward when there are example inputs, else the static chain
    (torch.fx, then module types); ``"observe"`` needs inputs; ``"static"``: torch.fx, then
    torch.export (with inputs), then module types, with a warning.
    """
    require_choice("tracer", tracer, TRACERS)
    batch = None if example_inputs is None else as_batch(example_inputs)
    if tracer == "observe" and batch is None:
        raise UsageError("tracer='observe' needs example inputs")
    if tracer != "static" and batch is not None:
        uses, _ = observe_uses(model, batch, policy, embeddings)
        return uses, "observed", None
    try:
        # a static trace runs the model's code: in place on its buffers, on its attributes too
        with state_given_back(model):
            return _fx_uses(model, policy, embeddings), "fx", None
    except STOPS:
        raise
    except BaseException as error:  # the model's code may call sys.exit() while traced
        fx_error = one_line(error, with_type=True)
        logger.info("torch.fx cannot trace %s: %s", type(model).__name__, fx_error)
    if batch is not None:
        try:
            with state_given_back(model):
                uses = _export_uses(model, batch, policy, embeddings)
            return uses, "export", f"torch.fx could not trace ({fx_error}); used torch.export"
        except STOPS:
            raise
        except BaseException as error:  # the model's code may call sys.exit() while traced
            why = f"torch.fx: {fx_error}; torch.export: {one_line(error, with_type=True)}"
    else:
        why = f"torch.fx: {fx_error}; torch.export needs example inputs"
    advice = "give example inputs to observe a forward" if batch is None else "use tracer='auto'"
    note = (
        "traced by module types only: each layer's weight gets its layer type's axis, as if "
        "only the layer's own forward used it; functional uses (F.linear, x @ W, addmm ...) are "
        "not seen, so a layer weight the forward uses otherwise may get the wrong axis and "
        "weights of no known layer are left alone, nor are writes to a weight (RWKV's forward "
        "rescales weights in place, a write weight norm loses), and no output is compared; "
        f"{advice} ({why})"
    )
    logger.warning("%s", note)
    return _type_uses(model, policy, embeddings), "module types", note
