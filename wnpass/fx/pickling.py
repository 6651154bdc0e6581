"""Make modules parametrized by wnpass picklable (``pickle``, ``torch.save(model)``).

PyTorch's parametrized classes are created at run time and refuse pickling ("Serialization of
parametrized modules is only supported through state_dict()"). For each module wnpass
parametrizes, an instance-level ``__reduce_ex__`` pickles the module as its original class, its
``__dict__`` (parameters ``original0``/``original1`` included) and the names of its
parametrized tensors; unpickling rebuilds the object with PyTorch's own ``_inject_new_class`` and
``_inject_property``, so the result is the same parametrized module. ``copy.deepcopy`` uses
PyTorch's ``__deepcopy__`` and is unaffected. This relies on two private helpers of
``torch.nn.utils.parametrize`` (present from torch 1.9 to 2.13); if they disappear, pickling
fails as it does without wnpass and nothing else changes.
"""

from __future__ import annotations

import functools
from typing import Any

import torch.nn.utils.parametrize as parametrize
from torch import nn

__all__ = ["make_picklable", "unmake_picklable"]

_ATTRIBUTE = "__reduce_ex__"


def _reduce(module: nn.Module, protocol: int) -> Any:
    if not parametrize.is_parametrized(module):  # folded or removed since: pickle as usual
        module.__dict__.pop(_ATTRIBUTE, None)
        return module.__reduce_ex__(protocol)
    cls = parametrize.type_before_parametrizations(module)
    state = dict(module.__dict__)
    state.pop(_ATTRIBUTE, None)
    state.pop("_flat_weight_refs", None)  # RNNs: weak references, rebuilt on load
    if "_flat_weights" in state:
        state["_flat_weights"] = [None] * len(state["_flat_weights"])
    names = list(module.parametrizations.keys())  # type: ignore[operator,union-attr]
    return (_rebuild, (cls, state, names))


def _rebuild(cls: type[nn.Module], state: dict[str, Any], names: list[str]) -> nn.Module:
    module = cls.__new__(cls)
    module.__dict__.update(state)
    parametrize._inject_new_class(module)
    for name in names:
        parametrize._inject_property(module, name)
    if isinstance(module, nn.RNNBase):
        module._init_flat_weights()
    make_picklable(module)
    return module


def make_picklable(module: nn.Module) -> None:
    """Give a parametrized ``module`` the instance ``__reduce_ex__`` above (idempotent)."""
    if parametrize.is_parametrized(module):
        object.__setattr__(module, _ATTRIBUTE, functools.partial(_reduce, module))


def unmake_picklable(module: nn.Module) -> None:
    """Drop that ``__reduce_ex__`` once ``module`` is no longer parametrized (after a fold)."""
    if not parametrize.is_parametrized(module):
        module.__dict__.pop(_ATTRIBUTE, None)
