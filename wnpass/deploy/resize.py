"""Example inputs made another length along their dynamic axes, and PyTorch run on them: the
probes of other sizes (:mod:`wnpass.deploy.probes`) and of the sizes just outside a range
(:mod:`wnpass.deploy.ranges`) both take their inputs from here.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from wnpass.deploy.inputs import forward_parameters, positional_names
from wnpass.fx.forward import Batch, ForwardFailedError, ModelExitedError, call_model

# A probe of PyTorch just outside an axis's range feeds at most this many elements in all.
_PROBE_ELEMENTS = 1 << 24


def runs_at(
    model: nn.Module,
    inputs: Batch,
    arguments: dict[str, Any],
    sizes: dict[tuple[str, int], int | None],
) -> Batch | bool | str:
    """The inputs resized (``sizes``: each input axis's length) where PyTorch's forward runs on
    them; False where it fails; why it was not tried, where it was not: a length tied to
    another dynamic size, an input wnpass cannot resize (an empty axis, one torch.export names
    otherwise), or inputs too large to try."""
    if None in sizes.values():
        return "its length also depends on another dynamic size"
    if any(size is not None and size < 0 for size in sizes.values()):
        return "a length below 0"
    if 0 in sizes.values():  # a length derived from the one tried (a mask of b * t elements)
        return "an empty input (a length of 0)"
    resized = _resized(model, inputs, arguments, cast(dict[tuple[str, int], int], sizes))
    if resized is None:
        return "an input wnpass cannot resize"
    leaves = torch.utils._pytree.tree_leaves((resized.args, dict(resized.kwargs)))
    if sum(t.numel() for t in leaves if isinstance(t, torch.Tensor)) > _PROBE_ELEMENTS:
        return "too large"
    try:
        call_model(model, resized)
    except ModelExitedError:
        raise
    except ForwardFailedError:
        return False
    return resized


def _resized(
    model: nn.Module, inputs: Batch, arguments: dict[str, Any], sizes: dict[tuple[str, int], int]
) -> Batch | None:
    """The example inputs with each ``(input, axis)`` of ``sizes`` made that long: repeated
    along it and cut (``torch.cat([x, x, ...], axis)[:size]``, float copies scaled:
    :func:`grown`). An input not passed is given
    by its name where it is a parameter's default. None where an axis to grow is empty, or an
    input is not one of the model's."""
    names = positional_names(forward_parameters(model), len(inputs.args))
    axes_of: dict[str, dict[int, int]] = {}
    for (name, axis), size in sizes.items():
        axes_of.setdefault(name, {})[axis] = size

    def resize(name: str, value: Any) -> Any:
        for axis, size in sorted(axes_of.get(name, {}).items()):
            if size > value.shape[axis] and not value.shape[axis]:
                raise _CannotResize
            value = grown(value, axis, size)
        return value

    try:
        with torch.no_grad():
            args = tuple(resize(n, v) for n, v in zip(names, inputs.args, strict=True))
            kwargs = {name: resize(name, value) for name, value in inputs.kwargs.items()}
            for name in axes_of:
                if name not in names and name not in kwargs:
                    if name not in arguments:
                        return None
                    kwargs[name] = resize(name, arguments[name])
    except _CannotResize:
        return None
    return Batch(args, kwargs)


class _CannotResize(Exception):
    """An empty axis cannot be grown by repeating it."""


def grown(value: torch.Tensor, axis: int, size: int, *, midpoints: bool = False) -> torch.Tensor:
    """``value`` made ``size`` long along ``axis`` (not empty there): cut, or repeated and
    cut, each copy after the first of a float or complex tensor holding values the example
    does not, so that a branch that drops or treats the added elements otherwise shows behind
    a max, a min or a sort (copies of the example's values leave a max over them as it was:
    an odd length that drops its last element was verified, t98): scaled towards 0 (copy k
    times 1 - k/8: 0.875, 0.75), which keeps each value's sign and reaches past every other
    point; or, with ``midpoints``, the midpoints of the example's elements with those k
    further along (``(x + x.roll(-k, axis)) / 2``), which stay within the example's bounds
    (``x >= 1`` for ``acosh``, which a scaled copy leaves: t100). Integers and bools (token
    ids, masks) are repeated as they are: any other value may be out of the model's range."""
    length = value.shape[axis]
    copies = -(-size // length) if size > length else 1
    varied = value.is_floating_point() or value.is_complex()

    def copy(k: int) -> torch.Tensor:
        if not varied or k == 0:
            return value
        return (value + value.roll(-k, axis)) / 2 if midpoints else value * (1 - k / 8)

    return torch.cat([copy(k) for k in range(copies)], dim=axis).narrow(axis, 0, size)
