"""Register weight norm on one tensor of a module, the way PyTorch does, but picklable.

Equivalent to ``torch.nn.utils.parametrizations.weight_norm(module, name, dim)``: the same
``_WeightNorm`` parametrization (``original0`` is ``g``, ``original1`` is ``v``, PyTorch's own
``right_inverse`` sets ``g = ||w||``, ``v = w``) and the same load-time renaming of legacy
``<name>_g``/``<name>_v`` keys; but the renaming hook is a module-level class rather than a local
closure, and the module gets :func:`wnpass.fx.pickling.make_picklable`, so ``pickle`` and
``torch.save(model)`` work. :func:`remove_legacy_keys` takes the renaming hook off again once the
weight is plain (a fold). PyTorch appends a weight made plain again after the module's other
parameters (``weight, bias`` becomes ``bias, weight``), so an optimizer state or a list of
parameters saved from the plain model would no longer line up; the module's order before its
first weight norm is kept, and :func:`restore_order` gives it back.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.nn.utils.parametrizations import _WeightNorm

from wnpass.fx.pickling import make_picklable
from wnpass.report import listed

__all__ = [
    "LegacyKeys",
    "added_here",
    "own_class",
    "parametrized_here",
    "register_weight_norm",
    "remove_legacy_keys",
    "restore_order",
    "stored_unit_dim",
    "unit_norm_problem",
    "units_text",
    "unregister_weight_norm",
]


class LegacyKeys:
    """Load-state-dict pre-hook: legacy ``<name>_g/_v`` keys -> ``parametrizations.<name>``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        g_key, v_key = f"{prefix}{self.name}_g", f"{prefix}{self.name}_v"
        if g_key in state_dict and v_key in state_dict:
            base = f"{prefix}parametrizations.{self.name}"
            state_dict[f"{base}.original0"] = state_dict.pop(g_key)
            state_dict[f"{base}.original1"] = state_dict.pop(v_key)


def parametrized_here(module: nn.Module) -> bool:
    """Whether ``module`` itself holds parametrizations. A wrapper that hands attribute reads on
    to the module it wraps (``torch.compile``'s ``OptimizedModule``) would show that module's
    as its own (``parametrize.is_parametrized`` reads the attribute), and ``named_modules``
    yields both: the wrapped module alone is the layer."""
    modules = module._modules  # a TorchScript module's is no dict (no .get)
    return "parametrizations" in modules and isinstance(modules["parametrizations"], nn.ModuleDict)


def own_class(module: nn.Module) -> None:
    """Give a parametrized module a class of its own before adding or removing a
    parametrization.

    PyTorch keeps parametrized tensors as properties of a class made for the module, and
    ``copy.deepcopy`` shares that class between the copy and the original: adding a property
    to the copy's class, or removing one, would break the other model (t244: an orthogonal
    GRU copied before apply_weight_norm raised KeyError 'weight_ih_l0'). A sibling class with
    the same contents keeps the two apart.
    """
    cls = module.__class__
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))


_ORDER = "_wnpass_parameter_order"  # the module's parameter names before its first weight norm


def register_weight_norm(module: nn.Module, name: str, dim: int | None) -> None:
    """Weight norm on ``module.<name>`` keeping axis ``dim`` (None: one scalar g), in place."""
    module.__dict__.setdefault(_ORDER, tuple(module._parameters))
    if parametrized_here(module):  # its class may be a copy's too
        own_class(module)
    parametrize.register_parametrization(module, name, _WeightNorm(dim), unsafe=True)
    parametrizations: Any = module.parametrizations  # made in training mode: in the module's
    parametrizations.train(module.training)  # (t247: in eval inside a model in eval)
    module._register_load_state_dict_pre_hook(LegacyKeys(name))
    make_picklable(module)


def remove_legacy_keys(module: nn.Module, name: str) -> None:
    """Take the renaming hook of a weight norm on ``module.<name>`` off ``module``:
    :func:`register_weight_norm`'s, or that of PyTorch's own ``weight_norm`` (transformers'
    wav2vec2 ``pos_conv``), which would rename a plain weight's ``_g``/``_v`` keys to a
    parametrization the module no longer has, and which pickle cannot save (a local function:
    ``torch.save(model)`` of a folded model failed, t95). PyTorch keeps each load-state-dict
    pre-hook wrapped, the hook itself as ``.hook``."""
    hooks = module._load_state_dict_pre_hooks
    for key, wrapped in list(hooks.items()):
        hook = getattr(wrapped, "hook", None)
        if (isinstance(hook, LegacyKeys) and hook.name == name) or _torch_renames(hook, name):
            del hooks[key]


def added_here(module: nn.Module, name: str) -> bool:
    """Whether the weight norm on ``module.<name>`` is one :func:`register_weight_norm` put
    there (``apply_weight_norm``'s), not the model's own: its renaming hook is wnpass's."""
    hooks = module._load_state_dict_pre_hooks.values()
    return any(
        isinstance(hook := getattr(wrapped, "hook", None), LegacyKeys) and hook.name == name
        for wrapped in hooks
    )


def _torch_renames(hook: object, name: str) -> bool:
    """Whether ``hook`` is the key-renaming hook ``torch.nn.utils.parametrizations.weight_norm``
    puts on a module for its weight ``name`` (a closure over that name)."""
    code = getattr(hook, "__code__", None)
    module = getattr(hook, "__module__", "")
    if code is None or code.co_name != "_weight_norm_compat_hook" or "name" not in code.co_freevars:
        return False
    if module != "torch.nn.utils.parametrizations":
        return False
    cells = dict(zip(code.co_freevars, getattr(hook, "__closure__", None) or (), strict=False))
    return "name" in cells and cells["name"].cell_contents == name


def unregister_weight_norm(module: nn.Module, name: str, original: nn.Parameter) -> None:
    """Undo :func:`register_weight_norm` on ``module.<name>``, which nothing trained yet: the
    module holds ``original``, the very parameter it held before (what else holds it, a list
    or a closure, holds it still), in its place among the others."""
    own_class(module)  # a copy made since may share its class
    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    setattr(module, name, original)
    remove_legacy_keys(module, name)
    restore_order(module)


def restore_order(module: nn.Module) -> None:
    """Put ``module``'s parameters back in the order they had before :func:`register_weight_norm`
    (those it did not have then after them, as they are); once no weight of it is
    parametrized any more, forget that order."""
    order: tuple[str, ...] | None = module.__dict__.get(_ORDER)
    if order is None:
        return
    params = module._parameters
    for name in [n for n in order if n in params] + [n for n in params if n not in order]:
        params[name] = params.pop(name)
    if not parametrized_here(module):
        del module.__dict__[_ORDER]


def stored_unit_dim(dim: int, ndim: int) -> int | None:
    """The unit axis of PyTorch's stored ``dim`` (of a ``_WeightNorm`` or a legacy hook) for a
    weight of ``ndim`` dimensions: -1 means the whole tensor (``dim=None`` at creation); any
    other negative axis counts from the end, as ``norm_except_dim`` reads it."""
    return None if dim == -1 else dim % ndim


def units_text(indices: list[int], count: int, dim: int) -> str:
    """``unit 3 of 8 along axis 0``; ``units 0, 1, 2 and 5 more of 8 along axis 0``."""
    units = "unit" if len(indices) == 1 else "units"
    return f"{units} {listed([str(i) for i in indices])} of {count} along axis {dim}"


def unit_norm_problem(weight: torch.Tensor, dim: int) -> str | None:
    """Why weight norm at axis ``dim`` would not give ``weight`` back; None when it would.

    ``g = ||w||``, ``v = w`` recompute ``w`` as ``g * v / ||v||`` per unit: a unit that is all
    zero (a zero-initialised layer, an embedding's ``padding_idx`` row) is ``0 * 0/0 = NaN``
    there, in the outputs and in the gradients of ``g`` and ``v``; a unit whose norm is not a
    positive finite number in the weight's dtype (NaN/Inf, overflow, underflow) is not exact
    either. The norm is PyTorch's own (``norm_except_dim``, what ``_weight_norm`` divides by).
    The reason names the units in parentheses (a report groups reasons without them). A weight
    with no elements (a layer with no output units, ``nn.Linear(4, 0)``, or no inputs) has
    nothing to normalize (and PyTorch's norm cannot reshape it).
    """
    if weight.is_meta or weight.dim() == 0:
        return None
    if weight.numel() == 0:
        shape = "x".join(map(str, weight.shape))
        return f"weight with no elements ({shape}): nothing to normalize"
    with torch.no_grad():
        norms = torch.norm_except_dim(weight.detach(), 2, dim).flatten()
        bad = ~(torch.isfinite(norms) & (norms > 0))
        if not bool(bad.any()):
            return None
        indices = [int(i) for i in bad.nonzero().flatten()]
        rows = weight.detach().movedim(dim, 0).reshape(weight.shape[dim], -1)
        zero = [i for i in indices if not bool(rows[i].any())]
    count = weight.shape[dim]
    if zero:
        return (
            f"all-zero output units ({units_text(zero, count, dim)}): g*v/||v|| would be 0/0 there"
        )
    dtype, where = str(weight.dtype).removeprefix("torch."), units_text(indices, count, dim)
    return (
        f"output units with a norm of 0, NaN or Inf in {dtype} ({where}): "
        "g*v/||v|| would not be the weight there"
    )
