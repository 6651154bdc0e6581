"""Register weight norm on one tensor of a module, the way PyTorch does, but picklable.

Equivalent to ``torch.nn.utils.parametrizations.weight_norm(module, name, dim)``: the same
``_WeightNorm`` parametrization (``original0`` is ``g``, ``original1`` is ``v``, PyTorch's own
``right_inverse`` sets ``g = ||w||``, ``v = w``) and the same load-time renaming of legacy
``<name>_g``/``<name>_v`` keys; but the renaming hook is a module-level class rather than a local
closure, and the module gets :func:`wnpass.fx.pickling.make_picklable`, so ``pickle`` and
``torch.save(model)`` work.
"""

from __future__ import annotations

from typing import Any

import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.nn.utils.parametrizations import _WeightNorm

from wnpass.fx.pickling import make_picklable

__all__ = ["LegacyKeys", "register_weight_norm"]


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


def register_weight_norm(module: nn.Module, name: str, dim: int | None) -> None:
    """Weight norm on ``module.<name>`` keeping axis ``dim`` (None: one scalar g), in place."""
    parametrize.register_parametrization(module, name, _WeightNorm(dim), unsafe=True)
    module._register_load_state_dict_pre_hook(LegacyKeys(name))
    make_picklable(module)
