"""Whether the model's forward reaches each weight norm just put on it, and the parameter
given back where it does not.

Weight norm replaces a parameter on its module only. A forward that reads the old tensor some
other way (a closure, a ``functools.partial``, an object that keeps it) trains neither g nor v;
nor does one that never computes the weight (the model keeps what it computed from it on its
first call). Two forwards on the example inputs show both
(:func:`wnpass.fx.observe.forward_reads`): one of the model in eval mode, drawing the random
numbers the plan's forward drew (a random route takes the same experts), and one in training
mode (what a training step reads: a cache kept in eval mode only is no cache there), of a deep
copy of the model that shares the old tensors, as a training forward may change the model
(data-dependent init, a flag of its own). A weight norm whose parametrization neither forward
computed, or whose old parameter either read, is taken off again, and the module holds the
very parameter it held before, which those holders hold too.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch.nn.utils.parametrize as parametrize
from torch import nn

from wnpass.fx.forward import Batch, RngSnapshot
from wnpass.fx.observe import forward_reads
from wnpass.fx.register import unregister_weight_norm
from wnpass.fx.rnn_cache import remove_rnn_cache
from wnpass.interrupts import STOPS

__all__ = ["NOT_REACHED", "give_back_unreached"]

logger = logging.getLogger(__name__)

NOT_REACHED = (
    "the forward does not read it through its module (it reads the tensor held elsewhere: a "
    "closure, an object, a cache made on its first call): weight norm would never train it"
)


def give_back_unreached(
    model: nn.Module,
    batch: Batch,
    originals: dict[str, nn.Parameter],
    rng: RngSnapshot | None = None,
) -> list[str]:
    """Run ``model`` on ``batch`` in eval mode (from ``rng``: the plan's forward's draws) and
    in training mode; take the weight norm off each weight of ``originals`` (by name: the
    parameter it replaced) that they did not reach, the module holding that parameter again.
    Returns their names; none where no forward ran (nothing is known then)."""
    rng = rng if rng is not None else RngSnapshot.take(model, batch)
    norms = {}
    for name in originals:
        owner, leaf = _owner(model, name)
        parametrizations: Any = owner.parametrizations  # a ModuleDict of ParametrizationLists
        norms[name] = parametrizations[leaf][0]
    found = [forward_reads(model, batch, originals, norms, rng=rng, train=False)]
    copy_and_norms = _copied(model, originals, norms)
    if copy_and_norms is not None:
        copied, copied_norms = copy_and_norms
        found.append(forward_reads(copied, batch, originals, copied_norms, rng=rng, train=True))
    runs = [run for run in found if run is not None]
    if not runs:
        return []
    old_read = set().union(*(read for read, _ in runs))
    ran = set().union(*(ran for _, ran in runs))
    given_back = [name for name in originals if name not in ran or name in old_read]
    for name in given_back:
        owner, leaf = _owner(model, name)
        unregister_weight_norm(owner, leaf, originals[name])
        if isinstance(owner, nn.RNNBase) and not parametrize.is_parametrized(owner):
            remove_rnn_cache(owner)
        logger.warning("%s: %s", name, NOT_REACHED)
    return given_back


def _copied(
    model: nn.Module, originals: dict[str, nn.Parameter], norms: dict[str, nn.Module]
) -> tuple[nn.Module, dict[str, nn.Module]] | None:
    """A deep copy of ``model`` whose holders of the old tensors hold those very tensors, and
    its parametrizations by name; None where the model cannot be copied (the training forward
    is then not run)."""
    memo: dict[int, Any] = {id(tensor): tensor for tensor in originals.values()}
    try:
        copied = copy.deepcopy(model, memo)
    except STOPS:
        raise
    except BaseException as error:  # the model's own __deepcopy__, an object that refuses it
        logger.info("no training forward: the model cannot be copied (%s)", error)
        return None
    return copied, {name: memo[id(norm)] for name, norm in norms.items()}


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    prefix, _, leaf = name.rpartition(".")
    return (model.get_submodule(prefix) if prefix else model), leaf
