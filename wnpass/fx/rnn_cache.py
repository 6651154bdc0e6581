"""Compute each weight-normed RNN weight once per forward instead of once per read.

``nn.RNNBase.forward`` re-reads its flat weights several times per call (``_update_flat_weights``
compares them to weak references, then rebuilds the list), and with
``torch.nn.utils.parametrize`` every read recomputes ``g * v / ||v||``: measured with torch 2.13,
a 2-layer ``nn.LSTM`` with its 4 weights weight-normed runs the weight-norm forward 10 times per
model forward. Two hooks put the module's forward inside PyTorch's own
``parametrize.cached()`` scope (entered by a forward pre-hook, left by an always-called forward
hook, so an exception cannot leave the cache on): each weight is computed once per forward and
the autograd graph is the same. Under tracing or compilation (TorchScript ``jit.trace`` and the
TorchScript ONNX exporter, ``torch.compile``, ``torch.export`` and the dynamo ONNX exporter) the
hooks stay out of the way: PyTorch refuses to trace with the cache on, and a compiler computes
each weight once anyway. Whether a forward entered the cache is kept per module, so the leaving
hook undoes exactly what the entering one did. After an eager forward the hook also drops the
computed weights that ``RNNBase`` keeps in ``_flat_weights`` (non-leaf tensors, which make
``copy.deepcopy`` of a weight-normed RNN fail after its first forward; marked as changed, the
next forward rebuilds them, inside a caller's ``cached()`` scope too: t157). State-dict keys,
pickling and ``remove_parametrizations`` are untouched; the hooks are module-level functions, so
deepcopy and pickle keep working. :func:`remove_rnn_cache` takes them off again (a folded RNN
is plain: ``torch.jit.script`` refuses a module with hooks). A forward of an RNN that also has
another parametrization (spectral norm) runs without the cache: caching would change how often
that one computes.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.nn.utils.parametrizations import _WeightNorm

__all__ = ["has_rnn_cache", "install_rnn_cache", "remove_rnn_cache"]

logger = logging.getLogger(__name__)


_ENTERED = "_wnpass_cache_entered"  # per-module stack: did this forward enable the cache?


def _eager() -> bool:
    """A plain eager run: not traced, scripted, compiled or exported."""
    if torch.jit.is_scripting() or torch._C._get_tracing_state() is not None:
        return False
    return not torch.compiler.is_compiling()


def _weight_norm_only(module: nn.Module) -> bool:
    """Every parametrization of ``module`` is weight norm: the cache is PyTorch's for all of
    them at once, and another (spectral norm's power iteration, run on each read in training)
    would then compute once per forward instead of once per read, as it does without wnpass."""
    lists: Any = getattr(module, "parametrizations", {})
    return all(isinstance(p, _WeightNorm) for plist in lists.values() for p in plist)


def _weight_normed(module: nn.Module, name: str) -> bool:
    lists: Any = getattr(module, "parametrizations", {})
    return name in lists and isinstance(lists[name][0], _WeightNorm)


def _enter_cache(module: nn.Module, args: Any) -> None:
    entered = _eager() and _weight_norm_only(module)
    module.__dict__.setdefault(_ENTERED, []).append(entered)
    if entered:
        parametrize._cache_enabled += 1


def _leave_cache(module: nn.Module, args: Any, output: Any) -> None:
    stack: list[bool] = module.__dict__.get(_ENTERED) or [False]
    if not stack.pop():  # traced, compiled, or another parametrization: as without wnpass
        return
    parametrize._cache_enabled -= 1
    if not parametrize._cache_enabled:
        parametrize._cache = {}
    _drop_computed_flat_weights(module)


class _Gone:
    """Nothing refers to an instance: a weak reference to one is dead from the start."""


# What ``RNNBase._weights_have_changed`` reads as "this weight changed": a dead reference is
# never the tensor ``getattr`` returns (CPython frees the instance at once).
_CHANGED: weakref.ref[Any] = weakref.ref(_Gone())


def _drop_computed_flat_weights(module: nn.Module) -> None:
    """Drop the computed (non-leaf) weights ``RNNBase`` keeps in ``_flat_weights`` after a
    forward, and mark each dropped one as changed so that the next forward rebuilds the list.
    Outside any ``cached()`` scope the dropped tensors die and their weak references with them,
    but inside an outer one (a siamese model calling one RNN twice in the caller's
    ``parametrize.cached()``) the next forward gets the same cached tensors back, their weak
    references were still alive, ``_weights_have_changed()`` said no, and ``check_input`` read
    the dropped ``None``: AttributeError on the second call (t157)."""
    flat: list[Any] | None = module.__dict__.get("_flat_weights")
    if flat is None:
        return
    refs: list[Any] | None = module.__dict__.get("_flat_weight_refs")
    dropped = [w is not None and not w.is_leaf for w in flat]
    module.__dict__["_flat_weights"] = [
        None if d else w for w, d in zip(flat, dropped, strict=True)
    ]
    if refs is not None and len(refs) == len(flat):
        module.__dict__["_flat_weight_refs"] = [
            _CHANGED if d else ref for ref, d in zip(refs, dropped, strict=True)
        ]


def _drop_stale_flat_weights(module: nn.RNNBase) -> None:
    """Drop from ``module``'s ``_flat_weights`` the tensors weight norm has just replaced:
    ``RNNBase`` keeps the old parameters there until its next forward rebuilds the list, and a
    forward that first calls ``flatten_parameters()`` reads them."""
    flat: list[Any] | None = module.__dict__.get("_flat_weights")
    names: list[str] = module.__dict__.get("_flat_weights_names", [])
    if flat is not None and len(flat) == len(names):
        module.__dict__["_flat_weights"] = [
            None if _weight_normed(module, name) else w for w, name in zip(flat, names, strict=True)
        ]


def has_rnn_cache(module: nn.Module) -> bool:
    return any(hook is _enter_cache for hook in module._forward_pre_hooks.values())


def install_rnn_cache(module: nn.RNNBase) -> bool:
    """Install the caching hooks on ``module`` once, as weight norm goes on one of its weights
    (each time, the old tensors it replaced leave ``_flat_weights``:
    :func:`_drop_stale_flat_weights`); True when the hooks were added now."""
    _drop_stale_flat_weights(module)
    if has_rnn_cache(module):
        return False
    module.register_forward_pre_hook(_enter_cache)
    module.register_forward_hook(_leave_cache, always_call=True)
    logger.debug("parametrization cache hooks on %s", type(module).__name__)
    return True


def remove_rnn_cache(module: nn.Module) -> bool:
    """Take the caching hooks (and their per-module state) off ``module``; True when it had
    them. For a module whose weights are plain again: the cache has nothing left to cache."""
    if not has_rnn_cache(module):
        return False
    for key in [k for k, hook in module._forward_pre_hooks.items() if hook is _enter_cache]:
        del module._forward_pre_hooks[key]
    for key in [k for k, hook in module._forward_hooks.items() if hook is _leave_cache]:
        del module._forward_hooks[key]
        module._forward_hooks_always_called.pop(key, None)
    module.__dict__.pop(_ENTERED, None)
    logger.debug("parametrization cache hooks off %s", type(module).__name__)
    return True
