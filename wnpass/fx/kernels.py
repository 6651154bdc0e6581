"""Which parameters a forward's kernels read outside any torch function.

The recorder of parameter uses (:mod:`wnpass.fx.observe`) watches the torch functions a
model's code calls. Code that runs without calling them, a ``@torch.jit.script`` function
(DAC's and SNAC's Snake activation) or other compiled code, is invisible to it: a weight
used only there looked unused (t280). :func:`kernel_reads` runs the forward again under a
``TorchDispatchMode``, which sees every kernel, and tells which of some parameters the
kernels run by no torch function read (those a torch function runs are the recorder's to
judge: ``w.item()``, ``w.clone().shape``, t283).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from wnpass.fx.elements import Elements
from wnpass.fx.forward import (
    Batch,
    RngSnapshot,
    evaluating,
    run_forward,
    state_given_back,
    tensors_in,
)

__all__ = ["kernel_reads"]

logger = logging.getLogger(__name__)

# Kernels that read a tensor's layout alone (``torch.zeros_like(W)``, ``W.new_zeros(n)``: no use
# of its values, as for the recorder); views read nothing either
_LAYOUT_KERNELS = {
    "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
    "randint_like", "new_zeros", "new_ones", "new_empty", "new_full", "new_empty_strided",
}  # fmt: skip


def kernel_reads(
    model: nn.Module, batch: Batch, names: Collection[str], rng: RngSnapshot
) -> dict[str, list[str]]:
    """Of the parameters ``names``, those that kernels run by no torch function read in a
    forward of ``model`` on ``batch``, each with those kernels. The forward draws the random
    numbers ``rng`` gives (the recorder's forward's: a routing that samples reaches the same
    layers, t283), in eval mode, and the model's state is given back. Empty where the forward
    fails under the watch (it ran without it: the watch's failure, not the model's)."""
    params = dict(model.named_parameters())
    if not (watched := {name: params[name] for name in names if params[name].numel()}):
        return {}
    reads = _KernelReads(Elements(watched))
    try:
        with rng.replayed(), state_given_back(model), evaluating(model), reads, reads.calls:
            run_forward(model, batch)
    except Exception as error:
        logger.debug("could not watch the kernels of a forward: %s", error)
        return {}
    return reads.kernels


class _KernelReads(TorchDispatchMode):
    """The kernels that read each of the ``watched`` parameters' elements, run by no torch
    function (:attr:`calls` counts those running)."""

    def __init__(self, watched: Elements[str]) -> None:
        super().__init__()
        self.watched = watched
        self.kernels: dict[str, list[str]] = {}
        self.calls = _Calls()

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:  # fmt: skip
        kwargs = kwargs or {}
        kernel = func.overloadpacket.__name__
        if self.calls.running or func.is_view or kernel in _LAYOUT_KERNELS:  # a torch
            return func(*args, **kwargs)  # function's, or no element read
        for tensor in (t for v in [*args, *kwargs.values()] for t in tensors_in(v)):
            for name in self.watched.of(tensor):
                found = self.kernels.setdefault(name, [])
                if kernel not in found:
                    found.append(kernel)
        return func(*args, **kwargs)


class _Calls(TorchFunctionMode):
    """How many torch functions are running (nested: ``F.linear`` calling ``torch.addmm``)."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:  # fmt: skip
        self.running += 1
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.running -= 1
