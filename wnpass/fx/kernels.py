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
import types
import weakref
from collections.abc import Callable, Collection
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from wnpass.fx.elements import Elements
from wnpass.fx.forward import (
    Batch,
    ModelExitedError,
    RngSnapshot,
    evaluating,
    run_forward,
    state_given_back,
    tensors_in,
)

__all__ = ["TensorReads", "calls_torchscript", "kernel_reads"]

logger = logging.getLogger(__name__)

# Kernels that read a tensor's layout alone (``torch.zeros_like(W)``, ``W.new_zeros(n)``: no use
# of its values, as for the recorder); views read nothing either
_LAYOUT_KERNELS = {
    "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
    "randint_like", "new_zeros", "new_ones", "new_empty", "new_full", "new_empty_strided",
}  # fmt: skip


def calls_torchscript(model: nn.Module) -> bool:
    """Whether a module's ``forward`` names a TorchScript function: a global (DAC's
    ``Snake1d.forward`` calling ``snake``), an attribute of a global module
    (``scriptlib.mixed``, ``pkg.scriptlib.mixed``), an attribute of the module or its class
    (``self.op``) or a value of its closure. Its kernels may read weights an eager layer
    reads too (t285, t286, t287). A call made through a helper function is not seen here."""
    for module in model.modules():
        forward = getattr(type(module), "forward", None)
        code = getattr(forward, "__code__", None)
        if code is None:
            continue
        named = getattr(forward, "__globals__", {})
        values = [named.get(name) for name in code.co_names]
        modules = [v for v in values if isinstance(v, types.ModuleType)]
        for _ in range(3):  # ``pkg.scriptlib.mixed``: modules' attributes, a few levels deep
            found = [vars(m).get(name) for m in modules for name in code.co_names]
            values += found
            modules = [v for v in found if isinstance(v, types.ModuleType)]
        values += list(vars(module).values())  # ``self.op``, an instance's or its class's
        values += [vars(k).get(name) for k in type(module).__mro__ for name in code.co_names]
        values += [cell.cell_contents for cell in getattr(forward, "__closure__", None) or ()
                   if _filled(cell)]  # fmt: skip
        if any(isinstance(v, torch.jit.ScriptFunction | torch.jit.ScriptModule) for v in values):
            return True
    return False


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # a cell not filled yet
        return False
    return True


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
    except ModelExitedError:  # the model's sys.exit(): the run stops (t346)
        raise
    except Exception as error:
        logger.debug("could not watch the kernels of a forward: %s", error)
        return {}
    return reads.kernels


class _KernelReads(TorchDispatchMode):
    """The kernels that read each of the ``watched`` parameters' elements: those run by no
    torch function (:attr:`calls` counts those running), and any reading a view such a kernel
    made (a scripted ``w.unsqueeze(-1)`` that an eager ``F.conv1d`` reads, t285: the recorder
    knows no such view as the weight's)."""

    def __init__(self, watched: Elements[str]) -> None:
        super().__init__()
        self.watched = watched
        self.kernels: dict[str, list[str]] = {}
        self.calls = _Calls()
        # the views made by no torch function, and the parameters whose elements they hold
        self.views: dict[int, tuple[weakref.ref[torch.Tensor], list[str]]] = {}

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:  # fmt: skip
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        kernel = func.overloadpacket.__name__
        if kernel in _LAYOUT_KERNELS:  # no element read
            return result
        tensors = [t for v in [*args, *kwargs.values()] for t in tensors_in(v)]
        names = [n for t in tensors for n in self._names(t, direct=not self.calls.running)]
        if func.is_view:  # what it holds is theirs; read by whatever reads it
            if names and (not self.calls.running or any(self._view(t) for t in tensors)):
                for view in tensors_in(result):
                    self.views[id(view)] = (weakref.ref(view), names)
            return result
        for name in names:
            found = self.kernels.setdefault(name, [])
            if kernel not in found:
                found.append(kernel)
        return result

    def _names(self, tensor: torch.Tensor, *, direct: bool) -> list[str]:
        """The watched parameters ``tensor`` holds the elements of: through a view a kernel
        of no torch function made, or (``direct``) any way."""
        if (view := self._view(tensor)) is not None:
            return view
        return self.watched.of(tensor) if direct else []

    def _view(self, tensor: torch.Tensor) -> list[str] | None:
        entry = self.views.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else None


class TensorReads(TorchDispatchMode):
    """Which of some named tensors the kernels run under it read: a kernel given one, or any
    tensor sharing its elements (``W.t()``, which ``addmm`` reads; :class:`Elements`, so two
    weights that are views of one flat tensor are read apart, t293), whatever code ran it (a
    torch function, TorchScript). Views and layout-only kernels read nothing."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.watched = Elements({name: t for name, t in tensors.items() if t.numel()})
        self.read: set[str] = set()

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:  # fmt: skip
        kwargs = kwargs or {}
        if not func.is_view and func.overloadpacket.__name__ not in _LAYOUT_KERNELS:
            for tensor in (t for v in [*args, *kwargs.values()] for t in tensors_in(v)):
                self.read.update(self.watched.of(tensor))
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
