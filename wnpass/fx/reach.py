"""Whether the model's forward reaches each weight norm just put on it, and the parameter
given back where it does not.

Weight norm replaces a parameter on its module only. A forward that reads the old tensor some
other way (a closure, a ``functools.partial``, an object that keeps it or a view of it) trains
neither g nor v; nor does one that never computes the weight (the model keeps what it computed
from it on its first call). A forward on the example inputs after a first call shows both
(:func:`wnpass.fx.observe.forward_reads`), in eval mode as the plan's forward ran, drawing the
random numbers it drew (a random route takes the same experts): a weight norm whose
parametrization it did not compute, or whose old parameter it read, is taken off again, and
the module holds the very parameter it held before, which those holders hold too; the reason
says which.

Only what that forward does is seen: a cache the model keeps in eval mode only makes a weight
look unread (it is given back: skipped with the reason, never left untrained), and a holder
read in training mode only is not seen.
"""

from __future__ import annotations

import logging
from typing import Any

import torch.nn.utils.parametrize as parametrize
from torch import nn

from wnpass.fx.analyse import owner_of
from wnpass.fx.forward import Batch, RngSnapshot
from wnpass.fx.observe import forward_reads
from wnpass.fx.register import unregister_weight_norm
from wnpass.fx.rnn_cache import remove_rnn_cache

__all__ = ["NOT_COMPUTED", "OLD_READ", "WRITES_PAIR", "give_back_unreached"]

logger = logging.getLogger(__name__)

# Why a weight norm was taken off again, by what the forward after a first call did.
OLD_READ = (
    "the forward reads the old tensor, held elsewhere (a closure, a functools.partial, an "
    "object keeps it or a view of it): weight norm would never train what it reads"
)
WRITES_PAIR = (
    "the forward writes g or v in place (it sets the weight, as torch.func.functional_call "
    "does with a weight of its own, and the parametrization writes what it is set to into g "
    "and v): every call would overwrite what training learns in them"
)
NOT_COMPUTED = (
    "the model's eval forward does not compute this weight (it keeps what it computed from "
    "it on a first call or in an eval-only cache, or only training uses it): weight norm "
    "might never train it"
)


def give_back_unreached(
    model: nn.Module,
    batch: Batch,
    originals: dict[str, nn.Parameter],
    rng: RngSnapshot | None = None,
    *,
    computed: bool = True,
) -> dict[str, str]:
    """Run ``model`` on ``batch`` in eval mode (from ``rng``: the plan's forward's draws); take
    the weight norm off each weight of ``originals`` (by name: the parameter it replaced) whose
    old parameter the forward read, whose g or v it wrote in place (t240), or (``computed``:
    the plan came from a forward like this one) whose weight it did not compute; the module
    holds that parameter again, untouched. Returns their names, each with why
    (:data:`OLD_READ`, :data:`WRITES_PAIR`, :data:`NOT_COMPUTED`); none where the forward
    failed (nothing is known then)."""
    rng = rng if rng is not None else RngSnapshot.take(model, batch)
    norms, pairs = {}, {}
    for name in originals:
        owner, leaf = owner_of(model, name)
        parametrizations: Any = owner.parametrizations  # a ModuleDict of ParametrizationLists
        norms[name] = parametrizations[leaf][0]
        prefix = name.removesuffix(leaf)
        pairs[name] = {f"{prefix}parametrizations.{leaf}.original{i}" for i in (0, 1)}
    discarded = set().union(*pairs.values())  # taken off if written: the rest comes back
    found = forward_reads(model, batch, originals, norms, rng=rng, discarded=discarded)
    if found is None:
        return {}
    old_read, ran, written = found
    given_back = {}
    for name in originals:
        if name in old_read:
            given_back[name] = OLD_READ
        elif pairs[name] & written:
            given_back[name] = WRITES_PAIR
        elif computed and name not in ran:
            given_back[name] = NOT_COMPUTED
    for name, why in given_back.items():
        owner, leaf = owner_of(model, name)
        unregister_weight_norm(owner, leaf, originals[name])
        if isinstance(owner, nn.RNNBase) and not parametrize.is_parametrized(owner):
            remove_rnn_cache(owner)
        logger.warning("%s: %s", name, why)
    return given_back
