"""Load a state dict whatever weight-norm form it was saved in: plain, legacy or parametrized.

Key forms for a weight ``W`` of module ``m``:

- parametrized (``torch.nn.utils.parametrizations.weight_norm``, wnpass):
  ``m.parametrizations.W.original0`` (``g``) and ``m.parametrizations.W.original1`` (``v``)
- legacy (``torch.nn.utils.weight_norm``): ``m.W_g`` and ``m.W_v``
- plain: ``m.W``

:func:`load_state_dict_any` renames or converts each entry to the form the model has: legacy and
parametrized keys are renamed into each other (same tensors); a plain ``W`` loads into a
weight-normed model as ``g = ||W||``, ``v = W`` (PyTorch's own ``right_inverse``); ``g``/``v``
load into a plain model as ``W = g * v / ||v||``, computed in float64 and rounded once, with the
axis read from ``g``'s shape, and into a model normalized at another axis as that ``W`` split at
the model's axis, with a warning. Key forms, the axis and the product are :mod:`wnpass.rules`'.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from wnpass.axes import is_legacy_hook
from wnpass.errors import InvalidArgumentError, WnpassError, one_line
from wnpass.fx.arguments import is_lazy
from wnpass.fx.fold import folded_weight
from wnpass.rules import dim_from_shapes, pair_keys, parse_key

__all__ = [
    "WeightNormPairError",
    "convert_state_dict",
    "load_state_dict_any",
    "restore_weight_norm",
]

logger = logging.getLogger(__name__)


def _split(key: str) -> tuple[str, str]:
    prefix, _, leaf = key.rpartition(".")
    return (prefix + "." if prefix else ""), leaf


def _new_keys(name: str) -> tuple[str, str]:
    keys = pair_keys(name, "parametrize")
    return keys.g, keys.v


def _legacy_keys(name: str) -> tuple[str, str]:
    keys = pair_keys(name, "legacy")
    return keys.g, keys.v


class WeightNormPairError(WnpassError):
    """A stored g/v pair whose shapes do not fit together."""


def _dim(name: str, g: torch.Tensor, v: torch.Tensor) -> int | None:
    """The axis a stored pair's ``g`` keeps (rules); None: the whole tensor."""
    try:
        return dim_from_shapes(g.shape, v.shape)
    except ValueError as error:
        raise WeightNormPairError(f"{name}: {error}") from None


def _weight_from(name: str, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The plain weight of a stored pair, its axis read from ``g``'s shape (rules); a pair
    whose values give no exact, finite weight (NaN or Inf, a unit of ``v`` with zero norm:
    the checkpoint fold's rule) is refused, never loaded as a weight of NaN."""
    from wnpass.checkpoint.fold import check_pair

    dim = _dim(name, g, v)
    if (reason := check_pair(g, v, dim)) is not None:
        raise WeightNormPairError(f"{name}: cannot be folded into a plain weight: {reason}")
    return folded_weight(g, v, dim)


def restore_weight_norm(model: nn.Module, state: Mapping[str, Any]) -> list[str]:
    """Put PyTorch's weight norm (``torch.nn.utils.parametrizations.weight_norm``, at the axis
    the stored ``g`` keeps) on each weight that ``state`` stores as a g/v pair and ``model``
    holds plain, so that the model holds the pair as stored instead of a weight folded while
    loading: its weight norm is then folded, checked and reported with the rest of the
    model's (a pair of NaN or a zero-norm unit is declined there, by name). Returns the
    weights' names."""
    from torch.nn.utils.parametrizations import weight_norm

    from wnpass.fx.analyse import aliases

    plain = dict(model.named_parameters())
    # a tied weight (lm_head.weight is wte.weight; a buffer or a list also holds it) keeps its
    # tie: it is folded as it is loaded, as the rules leave tied weights without weight norm
    _, tied = aliases(model)
    restored = []
    names = _plain_names(state)
    _check_stored_once(state, names)
    for name in sorted(names):
        pair = _get_pair(state, name)
        if pair is None or name not in plain or id(plain[name]) in tied:
            continue
        prefix, leaf = _split(name)
        module = model.get_submodule(prefix[:-1]) if prefix else model
        if parametrize.is_parametrized(module, leaf):
            continue
        dim = _dim(name, *pair)
        if tuple(pair[1].shape) != tuple(plain[name].shape):
            raise WeightNormPairError(
                f"{name}: the checkpoint's v is {tuple(pair[1].shape)}, the model's weight "
                f"{tuple(plain[name].shape)}"
            )
        weight_norm(module, leaf, dim=dim)  # type: ignore[arg-type]  # None: the whole tensor
        restored.append(name)
        logger.info("%s: weight norm put back from the checkpoint's g and v (dim %s)", name, dim)
    return restored


def _plain_names(state: Mapping[str, Any]) -> set[str]:
    """Weight names ``m.W`` that a state dict stores as g/v (either form, both halves present)."""
    names = set()
    for key in state:
        parsed = parse_key(key)
        if parsed is not None and parsed[1] == "g" and parsed[0].v in state:
            names.add(parsed[0].weight)
    return names


def _check_stored_once(state: Mapping[str, Any], names: set[str]) -> None:
    """Refuse a weight the state dict stores twice, as a pair and plain or as a pair in both
    key forms: which one is meant is unknown (the checkpoint commands decline it alike)."""
    for name in sorted(names):
        if name in state:
            raise WeightNormPairError(
                f"{name}: stored both as a g/v pair and as a plain weight; which is meant is "
                "unknown"
            )
        forms = [
            keys for keys in (_new_keys(name), _legacy_keys(name)) if all(k in state for k in keys)
        ]
        if len(forms) > 1:
            raise WeightNormPairError(
                f"{name}: stored as a g/v pair in both key forms ({forms[0][0]}, {forms[1][0]}); "
                "which is meant is unknown"
            )


def _get_pair(state: Mapping[str, Any], name: str) -> tuple[Any, Any] | None:
    for g_key, v_key in (_new_keys(name), _legacy_keys(name)):
        if g_key in state and v_key in state:
            return state[g_key], state[v_key]
    return None


def convert_state_dict(model: nn.Module, state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with its weight-norm entries in the form ``model`` uses; a whole-tensor ``g``
    stored 1x1x1, which PyTorch's weight norm keeps 0-d, in the model's shape (:func:`_shaped`)."""
    state_now = model.state_dict()
    wanted = set(state_now)
    # a lazy layer's tensors have no shape yet (loading gives them the stored ones); no g is one
    shapes = {key: value.shape for key, value in state_now.items() if not is_lazy(value)}
    out = dict(state)
    names = _plain_names(state)
    _check_stored_once(state, names)
    for name in names:
        pair = _get_pair(state, name)
        if pair is None:
            continue
        for key in (*_new_keys(name), *_legacy_keys(name)):
            out.pop(key, None)
        g, v = pair
        keys = _pair_held(name, wanted)
        if keys is None:  # the model holds a plain weight
            out[name] = _weight_from(name, g, v)
            logger.debug("%s: g/v folded into a plain weight", name)
        elif _other_axis(g, v, shapes[keys[0]], shapes[keys[1]]):
            # the weight the pair computes, split at the model's axis below, as a plain one is
            out[name] = _weight_from(name, g, v)
            logger.warning(
                "%s: the checkpoint's g is %s, the model's %s (weight norm at another axis): "
                "loaded as the weight the pair computes, normalized again at the model's axis "
                "(an optimizer state saved with the checkpoint's g does not fit it)",
                name, tuple(g.shape), tuple(shapes[keys[0]]),
            )  # fmt: skip
        else:
            out[keys[0]], out[keys[1]] = _shaped(g, shapes[keys[0]]), v
    for key in list(out):
        new_g, new_v = _new_keys(key)
        old_g, old_v = _legacy_keys(key)
        if key in wanted:
            continue
        if old_g in wanted and (hook := _legacy_hook(model, key)) is not None:
            weight = out.pop(key)  # as PyTorch's legacy weight norm splits it: v = w, g = ||w||
            out[old_g] = torch.norm_except_dim(weight, 2, hook.dim).detach()
            out[old_v] = weight
            logger.debug("%s: plain weight split into legacy g/v", key)
            continue
        if new_g not in wanted:
            continue
        prefix, leaf = _split(key)
        module = model.get_submodule(prefix[:-1]) if prefix else model
        plists: Any = getattr(module, "parametrizations", {})
        plist: Any = plists[leaf] if parametrize.is_parametrized(module, leaf) else ()
        if len(plist) != 1:
            continue
        g, v = plist[0].right_inverse(out.pop(key))
        out[new_g], out[new_v] = g, v
        logger.debug("%s: plain weight split into g/v", key)
    return out


def _pair_held(name: str, wanted: Collection[str]) -> tuple[str, str] | None:
    """The g and v keys under which a model with the keys ``wanted`` holds weight ``name`` as
    a weight-norm pair (PyTorch's parametrization's, else its legacy hook's); None where it
    holds the weight plain."""
    return next((k for k in (_new_keys(name), _legacy_keys(name)) if k[0] in wanted), None)


def stored_pairs(model: nn.Module, state: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The g/v pairs of ``state`` that ``model`` holds as pairs at the same axes and in the
    same dtypes, under the model's keys, as stored: what a training resumed from ``state``
    reads back as it was saved, where a weight loaded plain and normalized again gets ``g =
    ||w||`` and ``v = w`` (the same weight, but not the gains and directions an optimizer's
    state goes with). Also the weights whose pairs fit but for their dtype: a pair of
    bfloat16 computes in a float32 model a weight other than the one loaded, which was
    rounded to bfloat16 (by 3e-3 of the outputs' scale, t318)."""
    now = {k: t for k, t in model.state_dict().items() if not is_lazy(t)}
    out: dict[str, Any] = {}
    other_dtype: list[str] = []
    for name in sorted(_plain_names(state)):
        pair = _get_pair(state, name)
        keys = _pair_held(name, now)
        if pair is None or keys is None or not all(isinstance(t, torch.Tensor) for t in pair):
            continue
        if keys == _legacy_keys(name) and _legacy_hook(model, name) is None:
            continue  # a module's own weight_g and weight_v (a gate, t344): no pair
        g, v = _shaped(pair[0], now[keys[0]].shape), pair[1]
        if (g.shape, v.shape) != (now[keys[0]].shape, now[keys[1]].shape):
            continue  # another axis: loaded as its weight, normalized again (a note says so)
        if (g.dtype, v.dtype) == (now[keys[0]].dtype, now[keys[1]].dtype):
            out[keys[0]], out[keys[1]] = g, v
        else:
            other_dtype.append(name)
    return out, other_dtype


def _legacy_hook(model: nn.Module, key: str) -> Any:
    """The legacy weight-norm hook (``torch.nn.utils.weight_norm``) of parameter ``key``'s
    module that computes it, or None."""
    prefix, leaf = _split(key)
    module = model.get_submodule(prefix[:-1]) if prefix else model
    hooks: list[Any] = list(module._forward_pre_hooks.values())
    return next((h for h in hooks if is_legacy_hook(h) and h.name == leaf), None)


def _other_axis(g: Any, v: Any, g_shape: torch.Size, v_shape: torch.Size) -> bool:
    """Whether a stored pair normalizes ``v`` at another axis than the model's ``g`` (of
    ``g_shape``) does, over a ``v`` of the model's shape: a ConvTranspose normed at PyTorch's
    default axis 0, loaded into one normed per output channel, axis 1. A ``v`` of another
    shape is no such pair: loading it fails, naming the shapes."""
    tensors = isinstance(g, torch.Tensor) and isinstance(v, torch.Tensor)
    return tensors and v.shape == v_shape and _shaped(g, g_shape).shape != g_shape


def _shaped(g: Any, shape: torch.Size) -> Any:
    """A whole-tensor ``g`` (one element: 1x1x1 as stored, 0-d as PyTorch's weight norm holds
    it) in ``shape``; any other ``g`` as it is (a 1x6 ``g`` of dim 1 is no 6x1 ``g`` of dim
    0: :func:`_other_axis`)."""
    if isinstance(g, torch.Tensor) and g.shape != shape and g.numel() == shape.numel() == 1:
        return g.reshape(shape)
    return g


def load_state_dict_any(
    model: nn.Module, state_dict: Mapping[str, Any], *, strict: bool = True
) -> Any:
    """``model.load_state_dict`` after :func:`convert_state_dict`; returns its result. An
    entry that does not fit the model (a shape, a key missing or left over with ``strict``)
    is an :class:`~wnpass.errors.InvalidArgumentError` about ``state_dict``, PyTorch's
    message in one line."""
    converted = convert_state_dict(model, state_dict)
    try:
        return model.load_state_dict(converted, strict=strict)
    except RuntimeError as error:
        raise InvalidArgumentError(
            f"does not fit {type(model).__name__}: {one_line(error)}", parameter="state_dict"
        ) from None
