"""The caller's model across wnpass's forwards: the copy that is exported, and the state each
forward writes given back (buffers, plain attributes, parameters).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from wnpass.axes import is_legacy_hook
from wnpass.errors import InvalidArgumentError, shortened
from wnpass.fx.forward import (
    Batch,
    GivenBack,
    parameter_prints,
    state_given_back,
    written_parameters,
)
from wnpass.interrupts import STOPS

logger = logging.getLogger(__name__)


def copy_to_export(model: nn.Module, fold: bool) -> tuple[nn.Module, bool]:
    """A deep copy to export (and ``fold``), or the model itself when it cannot be copied
    (and whether it is the model itself).

    TorchScript submodules are shared, not copied: no fold touches them, and a deep copy of
    one holds its parameters as plain tensors, which torch.export refuses ("not an instance of
    torch.nn.Parameter")."""
    scripted = {id(sub): sub for sub in model.modules() if isinstance(sub, torch.jit.ScriptModule)}
    _computed_without_grad(model)
    try:
        return copy.deepcopy(model, scripted), False
    except STOPS:
        raise
    except BaseException as error:  # the model's own __deepcopy__ (or one of what it holds)
        folded = ", and its weight norm is folded in place" if fold else ""
        logger.warning(
            "cannot copy the model (%s): it is exported itself (its state given back after "
            "each of wnpass's forwards)%s",
            error,
            folded,
        )
        return model, True


def _computed_without_grad(model: nn.Module) -> None:
    """Compute each weight of a legacy weight-norm hook (``torch.nn.utils.weight_norm``)
    again without grad, as its next forward would: the one computed when the hook was put on
    is no leaf of autograd's graph, which a deep copy refuses."""
    with torch.no_grad():
        for module in model.modules():
            hooks: list[Any] = list(module._forward_pre_hooks.values())
            for hook in hooks:
                if is_legacy_hook(hook):
                    setattr(module, hook.name, hook.compute_weight(module))


class Forwards:
    """Each of wnpass's forwards of ``model`` (:meth:`given_back`) leaves it as given: every
    buffer it writes (a step counter), every plain attribute (a streaming state, a flag)
    (:func:`~wnpass.fx.forward.state_given_back`), and every parameter it writes (an init on
    its first call), from ``copy``, the model as given (None: it could not be copied). A
    forward that builds the model further keeps its attributes and buffers, and then its
    parameters too, as the flags among them say. ``written`` names the parameters the forwards
    wrote (those the lazy layers' first forward wrote, ``lazy_wrote``, first), ``given`` those
    the model got back."""

    def __init__(self, model: nn.Module, copy: nn.Module | None, lazy_wrote: list[str]) -> None:
        self.model, self.copy = model, copy
        self.prints = parameter_prints(model)
        self.written, self.given = list(lazy_wrote), list[str]()

    @contextlib.contextmanager
    def given_back(self) -> Iterator[None]:
        done = GivenBack()
        try:
            with state_given_back(self.model, unless_written=False) as done:
                yield
        finally:
            names = written_parameters(self.model, self.prints)
            back = self._parameters_back(names) if done.whole else []
            self.written += [name for name in names if name not in self.written]
            self.given += [name for name in back if name not in self.given]
            if len(back) < len(names):  # some stay as written: the next forward starts there
                self.prints = parameter_prints(self.model)

    def _parameters_back(self, names: list[str]) -> list[str]:
        """The parameters ``names`` as the copy holds them: in place, or anew where the forward
        gave one another shape through ``.data``. Returns those given back (none without a
        copy; a parameter the copy names otherwise, inside a compiled layer, is not)."""
        if self.copy is None:
            return []
        given = dict(self.copy.named_parameters())
        back = []
        with torch.no_grad():
            for name in names:
                param, value = self.model.get_parameter(name), given.get(name)
                if value is None:
                    continue
                if param.shape == value.shape and param.dtype == value.dtype:
                    param.copy_(value)
                else:
                    param.data = value.detach().clone()
                back.append(name)
        return back


def parameters_written_line(written: Sequence[str], given_back: Sequence[str]) -> str:
    """What the parameters a forward wrote mean for the file, and those of them the caller's
    model got back, in words (the report's fields; the log's and the command line's line)."""
    back = shortened(", ".join(given_back), 200)
    return (
        f"the model's forward wrote its parameters {shortened(', '.join(written), 200)} (an "
        "init on its first call, a merge, an embedding's max_norm): the file holds them as "
        "the exporter's own run of the forward left them, which may be values computed from "
        "the example inputs" + (f"; the model as given has {back} back" if given_back else "")
    )


def check_values(model: nn.Module, inputs: Batch) -> None:
    """Refuse tensors on the meta device (``torch.device("meta")``, lazy initialisation):
    they have shapes but no values, so there is nothing to export or compare."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    if any(t.is_meta for t in tensors):
        raise InvalidArgumentError(
            "the model has parameters or buffers on the meta device, which hold no values; "
            "load its weights (e.g. load_state_dict(..., assign=True)) before exporting"
        )
    given = itertools.chain(inputs.args, inputs.kwargs.values())
    if any(isinstance(t, torch.Tensor) and t.is_meta for t in given):
        raise InvalidArgumentError(
            "the example inputs are on the meta device, which holds no values; give real tensors"
        )
