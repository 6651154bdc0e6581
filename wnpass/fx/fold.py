"""Fold weight normalization out of a PyTorch model in place: ``fold_weight_norm``.

Whatever put weight norm there: PyTorch's parametrization (``parametrizations.weight_norm``,
any ``dim``, which is also what wnpass's ``apply_weight_norm`` registers) or the legacy
forward-pre-hook API (``torch.nn.utils.weight_norm``), or a model that mixes both. Each site
becomes a plain ``nn.Parameter`` named as before (``conv.weight``), holding
``w = g * v / ||v||`` computed by :func:`wnpass.rules.weight_from` (float64, numpy: the same
function every fold uses), rounded once to the parameter's dtype. The norm
runs over every axis but ``dim`` (PyTorch stores ``dim=None`` as ``-1``, meaning the whole
tensor there). A site held otherwise than PyTorch's weight norm holds it (stacked with other
parametrizations, a subclass of its weight norm, a ``g`` not shaped as it stores one, ``g``
and ``v`` of two dtypes or of one the fold does not compute) is left alone, with the reason.
A module with no parametrization left is given back plain: the hooks wnpass added with weight
norm (legacy key renaming, an RNN's parametrization cache) go too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, NamedTuple

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.nn.utils.parametrizations import _WeightNorm
from torch.nn.utils.weight_norm import WeightNorm

from wnpass.arguments import require_flag
from wnpass.axes import is_legacy_hook
from wnpass.fx.arguments import require_module, require_values
from wnpass.fx.memory import is_wrapper
from wnpass.fx.pickling import unmake_picklable
from wnpass.fx.register import (
    added_here,
    own_class,
    parametrized_here,
    remove_legacy_keys,
    restore_order,
    stored_unit_dim,
)
from wnpass.fx.rnn_cache import remove_rnn_cache
from wnpass.rounding import round_to_torch
from wnpass.rules import weight_from

__all__ = ["FoldedSite", "TorchFoldReport", "fold_weight_norm", "folded_weight"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FoldedSite:
    """One weight-normed parameter and what became of it."""

    name: str  # "conv.weight"
    api: str  # "parametrization" or "legacy hook"
    dim: int | None  # the unit axis; None: the whole tensor
    shape: list[int]
    status: str  # "folded" or "declined"
    reason: str | None = None


@dataclasses.dataclass
class TorchFoldReport:
    """What ``fold_weight_norm`` found and did (or :func:`check_weight_norm` found: every site
    ``kept`` for the ONNX fold, or ``declined``)."""

    sites: list[FoldedSite] = dataclasses.field(default_factory=list)
    kept: bool = False  # check_weight_norm's: weight norm kept in the model, values checked

    @property
    def declined(self) -> list[FoldedSite]:
        return [site for site in self.sites if site.status == "declined"]

    @property
    def folded(self) -> int:
        return sum(site.status == "folded" for site in self.sites)

    def __bool__(self) -> bool:
        """True when no weight-norm site was declined: a fold left none in the model (a
        check kept them all, values fit to fold)."""
        return not self.declined

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "folded": self.folded, "ok": bool(self)}


def folded_weight(g: torch.Tensor, v: torch.Tensor, dim: int | None) -> torch.Tensor:
    """``g * v / ||v||`` by :func:`wnpass.rules.weight_from`, as a tensor like ``v``.

    The tensors go to numpy as float64 (exact for every float dtype, bfloat16 included), the
    product is computed there in float64, and the result is rounded once to ``v``'s dtype by
    :func:`wnpass.rounding.round_to_torch` (torch's own cast would round float16 and bfloat16
    twice, through float32). Memory: a few float64 copies of one weight at a time.
    """
    v64 = v.detach().to("cpu", torch.float64).numpy()
    g64 = g.detach().to("cpu", torch.float64).numpy()
    return round_to_torch(weight_from(g64, v64, dim), v).to(v.device)


def _declined(site: FoldedSite, g: torch.Tensor, v: torch.Tensor) -> bool:
    """Decline ``site`` where its values give no exact, finite weight (the checkpoint fold's
    rule, :func:`wnpass.checkpoint.fold.check_pair`: NaN or Inf in g or v, a unit of v with
    zero norm, where PyTorch computes NaN, norms that overflow or underflow): it stays weight
    norm, with the reason and a warning, rather than become a weight of NaN or Inf."""
    from wnpass.checkpoint.fold import check_pair

    reason = check_pair(g, v, site.dim)
    if reason is None:
        return False
    site.status, site.reason = "declined", reason
    logger.warning("not folding %s: %s", site.name, reason)
    return True


STACKED = "stacked with other parametrizations"


class _Stored(NamedTuple):
    """One weight-norm site of a module, as PyTorch holds it."""

    name: str  # the weight's, in its module
    api: str  # "parametrization" or "legacy hook"
    dim: int | None  # the unit axis; None: the whole tensor
    g: torch.Tensor
    v: torch.Tensor
    # why it is no plain weight norm, seen from how it is held: other parametrizations on the
    # weight (or on g or v) too, a subclass of PyTorch's weight norm
    held_otherwise: str | None = None
    hook: int | None = None  # the legacy hook's key in the module's forward pre-hooks


def _stored(module: nn.Module) -> list[_Stored]:
    """The module's own weight-norm sites: its weight-norm parametrizations, then its legacy
    hooks (one walk for :func:`fold_weight_norm` and :func:`check_weight_norm`)."""
    found = []
    if parametrized_here(module):
        parametrizations: Any = module.parametrizations  # a ModuleDict of ParametrizationLists
        for name, plist in parametrizations.items():
            norms = [p for p in plist if isinstance(p, _WeightNorm)]
            if not norms:
                continue
            # g and v are the originals only where weight norm is the first parametrization
            # (below another, its input is that one's output: t214)
            g, v = (getattr(plist, half, None) for half in ("original0", "original1"))
            if g is None or v is None:
                g = v = plist.original
            dim = stored_unit_dim(norms[0].dim, v.dim())
            why = (
                STACKED if len(plist) != 1 else _subclass(norms[0], _WeightNorm, "parametrization")
            )
            found.append(_Stored(name, "parametrization", dim, g, v, why))
    hooks: list[tuple[int, Any]] = list(module._forward_pre_hooks.items())
    for key, hook in hooks:
        if is_legacy_hook(hook):
            # g or v itself parametrized (a spectral norm on weight_v): stacked as well, and
            # read as stored (computing it would run the parametrization: a power iteration
            # that changes its buffers in training mode)
            # g or v not a parameter of its own (parametrized, or another legacy hook's
            # result: weight norm on weight_v too) is stacked, which folding it would break
            halves = [f"{hook.name}_{half}" for half in "gv"]
            g, v = (_as_stored(module, half) for half in halves)
            stacked = any(half not in module._parameters for half in halves)
            dim = stored_unit_dim(hook.dim, v.dim())
            why = STACKED if stacked else _subclass(hook, WeightNorm, "hook")
            found.append(_Stored(hook.name, "legacy hook", dim, g, v, why, key))
    return found


def _subclass(norm: object, pytorch_s: type, what: str) -> str | None:
    """Why a subclass of PyTorch's weight norm (its parametrization, or the legacy ``hook``)
    is not folded as it: it computes the weight its own way (a ``2 * g * v / ||v||`` was
    folded as ``g * v / ||v||``, t214, t216)."""
    if type(norm) is pytorch_s:
        return None
    return f"its {what} {type(norm).__qualname__} is a subclass of PyTorch's weight norm"


def _layout_reason(stored: _Stored) -> str | None:
    """Why a site's g and v make no weight the fold computes as PyTorch does, or None: a dtype
    the fold does not compute or two of them (the checkpoint fold's rule,
    :func:`wnpass.checkpoint.pairs.dtypes_reason`), or a g not shaped as weight norm stores it
    (v's shape, 1 on every axis but ``dim``; 0-d for the whole tensor): PyTorch broadcasts any
    other against the norm as it finds it (t214: a 1-D g of 4 by a 4x4 v was folded per
    column, its forward took it per row)."""
    from wnpass.checkpoint.pairs import dtypes_reason

    g, v = stored.g, stored.v
    if (wrapper := next((t for t in (g, v) if is_wrapper(t)), None)) is not None:
        return (
            f"g or v is a {type(wrapper).__name__} (a tensor subclass wrapping others): the fold "
            "computes plain tensors (a DTensor's full_tensor() is one)"
        )
    g_dtype, v_dtype = (str(t.dtype).removeprefix("torch.") for t in (g, v))
    if reason := dtypes_reason(g_dtype, v_dtype, g.dim() == 0):
        return reason
    ones = [1] * v.dim()
    kept = (
        ones
        if stored.dim is None
        else [*ones[: stored.dim], v.shape[stored.dim], *ones[stored.dim + 1 :]]
    )
    # one g for the whole tensor or a single unit: any one element broadcasts alike (t216)
    single = math.prod(kept) == 1 and g.numel() == 1 and g.dim() <= v.dim()
    if list(g.shape) == kept or single:
        return None
    axis = "the whole tensor" if stored.dim is None else f"axis {stored.dim}"
    return f"g has shape {list(g.shape)}, not {kept}: weight norm over {axis} of v {list(v.shape)}"


def _as_stored(module: nn.Module, name: str) -> torch.Tensor:
    """Tensor ``name`` of ``module`` as stored: the original of a parametrized one; where
    its parametrization holds several originals (weight norm on ``weight_g``), the tensor it
    computes, as for one that another legacy hook computes (a stacked site: only its shape is
    read, t110)."""
    if parametrize.is_parametrized(module, name):
        parametrizations: Any = module.parametrizations
        original: torch.Tensor | None = getattr(parametrizations[name], "original", None)
        if original is not None:
            return original
    value: torch.Tensor = getattr(module, name)
    return value


def _fold(module: nn.Module, stored: _Stored) -> None:
    """Replace one site by a plain parameter holding its weight (``g * v / ||v||``)."""
    name, v = stored.name, stored.v
    weight = folded_weight(stored.g, v, stored.dim)
    requires_grad = v.requires_grad or stored.g.requires_grad  # trained where either half was
    if stored.hook is None:
        parametrize.remove_parametrizations(module, name, leave_parametrized=True)
        setattr(module, name, nn.Parameter(weight, requires_grad=requires_grad))
        remove_legacy_keys(module, name)
        restore_order(module)
        return
    del module._forward_pre_hooks[stored.hook]
    del module._parameters[f"{name}_g"], module._parameters[f"{name}_v"]
    if hasattr(module, name):
        delattr(module, name)  # the plain tensor the hook last computed
    module.register_parameter(name, nn.Parameter(weight, requires_grad=requires_grad))


@torch.no_grad()
def check_weight_norm(model: nn.Module) -> TorchFoldReport:
    """Every weight-norm site of ``model``, changing nothing: ``kept`` (weight norm stays, for
    an exporter and the ONNX fold), or ``declined`` where :func:`fold_weight_norm` would
    decline its values (NaN or Inf, a zero-norm unit): PyTorch computes NaN there, which an
    exporter may fold into a plain initializer that no fold of the graph sees again."""
    require_values(require_module(model))
    report = TorchFoldReport(kept=True)
    for prefix, module in model.named_modules():
        report.sites += [_judged(prefix, stored, "kept") for stored in _stored(module)]
    return report


def _judged(prefix: str, stored: _Stored, status: str, check_values: bool = True) -> FoldedSite:
    """``stored``'s report entry, ``status`` unless it is declined: stacked with another
    parametrization, or (``check_values``) values that give no finite weight. One verdict for
    :func:`fold_weight_norm` and :func:`check_weight_norm`."""
    site = _site(prefix, stored, status)
    if reason := stored.held_otherwise or _layout_reason(stored):
        site.status, site.reason = "declined", reason
        logger.warning("not folding %s: %s", site.name, reason)
    elif check_values:
        _declined(site, stored.g, stored.v)
    return site


MODEL_S_OWN = (
    "the model's own weight norm, not added by apply_weight_norm (added_only=True keeps it)"
)


def _added(module: nn.Module, stored: _Stored) -> bool:
    """Whether ``stored`` is a site ``apply_weight_norm`` added (never a legacy hook)."""
    return stored.hook is None and added_here(module, stored.name)


def _site(prefix: str, stored: _Stored, status: str, reason: str | None = None) -> FoldedSite:
    """``stored``'s report entry under its name in the model (``prefix``: its module's)."""
    name = f"{prefix}.{stored.name}" if prefix else stored.name
    return FoldedSite(name, stored.api, stored.dim, list(stored.v.shape), status, reason)


@torch.no_grad()
def fold_weight_norm(
    model: nn.Module, *, check_values: bool = True, added_only: bool = False
) -> TorchFoldReport:
    """Replace every weight-norm site of ``model`` by a plain parameter, in place. A site
    whose values give no finite weight (NaN or Inf in g or v, a zero-norm unit) is declined
    and left as it is; with ``check_values=False`` every site is folded whatever its values:
    for a model whose values are replaced next (a checkpoint loaded into the plain model).
    ``added_only=True`` folds only the sites ``apply_weight_norm`` added: weight norm the
    model has of its own (HuBERT's positional convolution, EnCodec's convolutions) is
    ``kept``, so that the state dict has the keys of the model as it was built (what
    ``from_pretrained`` loads; folding it too made keys it could not load, t218)."""
    require_flag("check_values", check_values)
    require_flag("added_only", added_only)
    require_values(require_module(model))
    report = TorchFoldReport()
    walked: list[tuple[nn.Module, list[_Stored]]] = []
    for prefix, module in model.named_modules():
        stored = _stored(module)
        if added_only:  # the model's own sites are kept, said so
            added = [_added(module, one) for one in stored]
            report.sites += [
                _site(prefix, one, "kept", MODEL_S_OWN)
                for one, ours in zip(stored, added, strict=True)
                if not ours
            ]
            stored = [one for one, ours in zip(stored, added, strict=True) if ours]
        sites = [_judged(prefix, one, "folded", check_values) for one in stored]
        report.sites += sites
        folding = [one for one, site in zip(stored, sites, strict=True) if site.status == "folded"]
        walked.append((module, folding))
    for module, folding in walked:  # every site judged first: a failure there changes nothing
        if not folding:
            continue
        parametrized = parametrized_here(module)
        if parametrized:
            own_class(module)
        for site in folding:
            _fold(module, site)
        if parametrized:
            if not parametrized_here(module):
                remove_rnn_cache(module)
            unmake_picklable(module)
    logger.info("folded %d of %d weight-norm sites in PyTorch", report.folded, len(report.sites))
    return report
