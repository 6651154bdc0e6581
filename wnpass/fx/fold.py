"""Fold weight normalization out of a PyTorch model in place: ``fold_weight_norm``.

Whatever put weight norm there: PyTorch's parametrization (``parametrizations.weight_norm``,
any ``dim``, which is also what wnpass's ``apply_weight_norm`` registers) or the legacy
forward-pre-hook API (``torch.nn.utils.weight_norm``), or a model that mixes both. Each site
becomes a plain ``nn.Parameter`` named as before (``conv.weight``), holding
``w = g * v / ||v||`` computed by :func:`wnpass.rules.weight_from` (float64, numpy: the same
function every fold uses), rounded once to the parameter's dtype. The norm
runs over every axis but ``dim`` (PyTorch stores ``dim=None`` as ``-1``, meaning the whole
tensor there). A parametrization stacked with others on the same tensor is left alone, with the
reason. A module with no parametrization left is given back plain: the hooks wnpass added with
weight norm (legacy key renaming, an RNN's parametrization cache) go too.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.nn.utils.parametrizations import _WeightNorm

from wnpass.axes import is_legacy_hook
from wnpass.fx.arguments import require_module, require_values
from wnpass.fx.pickling import unmake_picklable
from wnpass.fx.register import parametrized_here, remove_legacy_keys
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


def _unit_dim(dim: int, ndim: int) -> int | None:
    """PyTorch's stored ``dim``: -1 means the whole tensor (``dim=None`` at creation)."""
    return None if dim == -1 else dim % ndim


def _own_class(module: nn.Module) -> None:
    """Give a parametrized module a class of its own before removing a parametrization.

    PyTorch keeps parametrized tensors as properties of a class made for the module, and
    ``copy.deepcopy`` shares that class between the copy and the original: removing the
    property from the copy's class would break the original model. A sibling class with the
    same contents keeps the two apart.
    """
    cls = module.__class__
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))


def _fold_parametrized(
    module: nn.Module, prefix: str, report: TorchFoldReport, check_values: bool
) -> None:
    _own_class(module)
    parametrizations: Any = module.parametrizations  # a ModuleDict of ParametrizationLists
    for name, plist in list(parametrizations.items()):
        full = f"{prefix}{name}"
        norms = [p for p in plist if isinstance(p, _WeightNorm)]
        if not norms:
            continue
        g: torch.Tensor = plist.original0
        v: torch.Tensor = plist.original1
        dim = _unit_dim(norms[0].dim, v.dim())
        site = FoldedSite(full, "parametrization", dim, list(v.shape), "folded")
        report.sites.append(site)
        if len(plist) != 1:
            site.status, site.reason = "declined", "stacked with other parametrizations"
            continue
        if check_values and _declined(site, g, v):
            continue
        weight = folded_weight(g, v, dim)
        requires_grad = v.requires_grad
        parametrize.remove_parametrizations(module, name, leave_parametrized=True)
        setattr(module, name, nn.Parameter(weight, requires_grad=requires_grad))
        remove_legacy_keys(module, name)
    if not parametrized_here(module):
        remove_rnn_cache(module)


def _fold_legacy(
    module: nn.Module, prefix: str, report: TorchFoldReport, check_values: bool
) -> None:
    hooks: list[tuple[int, Any]] = list(module._forward_pre_hooks.items())
    for key, hook in hooks:
        if not is_legacy_hook(hook):
            continue
        g, v = getattr(module, f"{hook.name}_g"), getattr(module, f"{hook.name}_v")
        dim = _unit_dim(hook.dim, v.dim())
        site = FoldedSite(f"{prefix}{hook.name}", "legacy hook", dim, list(v.shape), "folded")
        report.sites.append(site)
        if check_values and _declined(site, g, v):
            continue
        weight = folded_weight(g, v, dim)
        requires_grad = v.requires_grad
        del module._forward_pre_hooks[key]
        del module._parameters[f"{hook.name}_g"], module._parameters[f"{hook.name}_v"]
        if hasattr(module, hook.name):
            delattr(module, hook.name)  # the plain tensor the hook last computed
        module.register_parameter(hook.name, nn.Parameter(weight, requires_grad=requires_grad))


@torch.no_grad()
def check_weight_norm(model: nn.Module) -> TorchFoldReport:
    """Every weight-norm site of ``model``, changing nothing: ``kept`` (weight norm stays, for
    an exporter and the ONNX fold), or ``declined`` where :func:`fold_weight_norm` would
    decline its values (NaN or Inf, a zero-norm unit): PyTorch computes NaN there, which an
    exporter may fold into a plain initializer that no fold of the graph sees again."""
    require_values(require_module(model))
    report = TorchFoldReport()
    for prefix, module in model.named_modules():
        prefix = f"{prefix}." if prefix else ""
        found: list[tuple[str, str, int, torch.Tensor, torch.Tensor]] = []
        if parametrized_here(module):
            parametrizations: Any = module.parametrizations
            for name, plist in parametrizations.items():
                norms = [p for p in plist if isinstance(p, _WeightNorm)]
                if norms:
                    g, v = plist.original0, plist.original1
                    found.append((name, "parametrization", norms[0].dim, g, v))
        for hook in module._forward_pre_hooks.values():
            if is_legacy_hook(hook):
                g, v = getattr(module, f"{hook.name}_g"), getattr(module, f"{hook.name}_v")
                found.append((hook.name, "legacy hook", hook.dim, g, v))
        for name, api, dim, g, v in found:
            unit = _unit_dim(dim, v.dim())
            site = FoldedSite(f"{prefix}{name}", api, unit, list(v.shape), "kept")
            report.sites.append(site)
            _declined(site, g, v)
    return report


@torch.no_grad()
def fold_weight_norm(model: nn.Module, *, check_values: bool = True) -> TorchFoldReport:
    """Replace every weight-norm site of ``model`` by a plain parameter, in place. A site
    whose values give no finite weight (NaN or Inf in g or v, a zero-norm unit) is declined
    and left as it is; with ``check_values=False`` every site is folded whatever its values:
    for a model whose values are replaced next (a checkpoint loaded into the plain model)."""
    require_values(require_module(model))
    report = TorchFoldReport()
    for prefix, module in model.named_modules():
        prefix = f"{prefix}." if prefix else ""
        if parametrized_here(module):
            _fold_parametrized(module, prefix, report, check_values)
            unmake_picklable(module)
        _fold_legacy(module, prefix, report, check_values)
    logger.info("folded %d of %d weight-norm sites in PyTorch", report.folded, len(report.sites))
    return report
