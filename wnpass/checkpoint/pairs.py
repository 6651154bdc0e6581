"""Find the weight-norm pairs of a state dict from its names, shapes and dtypes (torch-free).

A pair is ``g`` and ``v`` of one weight in one key form (:mod:`wnpass.rules`). What is found:

- a complete pair whose axis :func:`wnpass.rules.dim_from_shapes` reads from ``g``'s shape:
  ``ok`` (its values are checked when it is folded: NaN/Inf, a zero norm);
- a broken pair, reported and never changed: ``g`` without ``v`` or ``v`` without ``g`` in the
  parametrize form (in the legacy form only for a parameter named ``weight``: ``X.weight_g``
  without ``X.weight_v``; a lone ``gate_v`` is an ordinary name), shapes that do not fit, a
  dtype other than float64/32/16 and bfloat16, or ``g`` and ``v`` of two dtypes (when the
  pairs are to be folded: ``convert`` renames keys of any dtype), a plain ``X.weight``
  stored beside the pair (a tensor or any other entry: folding would replace it), the same
  weight stored in both key forms, or another parametrization stacked on the weight
  (``m.parametrizations.weight.1._u`` beside ``original0``/``original1``: the weight is that
  parametrization of ``g * v / ||v||``, which neither a fold nor a renaming into the legacy
  form keeps), or a parametrization of more
  tensors than two (``original2`` too: the weight is some function of the three);
- not a pair at all: spectral norm's legacy keys (``X.weight_orig``, ``X.weight_u`` and
  ``X.weight_v``, its power-iteration vector, which ends like weight norm's ``v``), as
  HiFi-GAN's and VITS' discriminators store them;
- a legacy pair of one element per unit of ``v`` (:func:`wnpass.rules.unit_size`: ``g`` and
  ``v`` of one shape, ``1x1xC`` or ``Cx1``) but a layer's weight beside its bias: its weight
  would be ``g * sign(v)``, so nothing tells it from two plain parameters that happen to end
  in ``_g`` and ``_v`` (RWKV-5's ``time_mix_g`` and ``time_mix_v``), and folding or renaming
  those would break the model. It is left alone, unless the model the fold is checked
  against holds that weight as a plain tensor (``model_keys``: its state dict with weight
  norm folded out, so the checkpoint fits it only as a pair). The parametrize form's keys,
  and the legacy ``X.weight_g``/``X.weight_v`` beside the layer's ``X.bias`` (a WaveNet's
  ``Conv1d(1, C, 1)`` under PyTorch's ``weight_norm``, t253), are weight norm's own and
  need no model (:func:`weight_norms_own`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Collection, Iterable, Sequence

from wnpass.checkpoint.reading import TensorInfo
from wnpass.rules import PairKeys, dim_from_shapes, parse_key, unit_size

__all__ = ["FOLDABLE_DTYPES", "Pair", "dtypes_reason", "find_pairs", "weight_norms_own"]

logger = logging.getLogger(__name__)

FOLDABLE_DTYPES = ("float64", "float32", "float16", "bfloat16")

# State of a weight's parametrization beyond weight norm's g and v, by the
# ``m.parametrizations.weight`` it belongs to: that of another parametrization stacked on it
# (``m.parametrizations.weight.1._u``: a spectral norm), or an original past the second
# (``.original2``: a parametrization of three tensors, ``g * v / ||v|| + delta``, say).
# (Matched as wnpass.rules matches keys: whole, a newline like any other character.)
_STACKED = re.compile(r"(?P<base>(?:.*\.)?parametrizations\.[^.]+)\.\d+\.", re.DOTALL)
_MORE_ORIGINALS = re.compile(
    r"(?P<base>(?:.*\.)?parametrizations\.[^.]+)\.original(?!0\Z|1\Z)", re.DOTALL
)


@dataclasses.dataclass
class Pair:
    """One weight-norm pair of a state dict, complete or not."""

    keys: PairKeys
    g: TensorInfo | None
    v: TensorInfo | None
    first: str  # the key of whichever half comes first: the folded weight takes its place
    dim: int | None = None  # the axis g keeps; None: the whole tensor (or unknown if broken)
    reason: str | None = None  # why it cannot be folded; None: it can (values permitting)

    @property
    def weight(self) -> str:
        return self.keys.weight

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def present(self) -> list[str]:
        """The keys of the halves that are there."""
        return [info.key for info in (self.g, self.v) if info is not None]


def weight_norms_own(weight: str, form: str, keys: Collection[str]) -> bool:
    """Whether the keys of ``weight`` in ``form`` are weight norm's own whatever their shapes,
    among the state dict's ``keys``: the parametrize form's
    (``X.parametrizations.weight.original0``), and the legacy ones of a layer's weight
    (``X.weight_g``, ``X.weight_v`` beside the layer's ``X.bias``: PyTorch's ``weight_norm``
    on a WaveNet's ``Conv1d(1, C, 1)``, t253); not ``time_mix_g``/``time_mix_v``, nor a
    ``weight_g``/``weight_v`` without a bias, as likely two plain parameters (t255)."""
    if form == "parametrize":
        return True
    module, _, name = weight.rpartition(".")
    return name == "weight" and (f"{module}.bias" if module else "bias") in keys


def _lone_counts(keys: PairKeys) -> bool:
    """Whether one half alone is a broken pair (else an ordinary tensor): module docstring."""
    return keys.form == "parametrize" or keys.weight.rpartition(".")[2] == "weight"


def _spectral_norm(keys: PairKeys, by_key: Collection[str]) -> bool:
    """Whether a lone legacy ``X.weight_v`` is spectral norm's (``torch.nn.utils.spectral_norm``
    stores ``X.weight_orig``, ``X.weight_u`` and ``X.weight_v``, its power-iteration vector):
    no half of a weight-norm pair, but a tensor like any other."""
    return keys.form == "legacy" and all(
        f"{keys.weight}_{part}" in by_key for part in ("orig", "u")
    )


def _stacked(keys: Iterable[str]) -> dict[str, str]:
    """Why a parametrized weight is not ``g * v / ||v||``, naming the first key of the state
    beyond ``g`` and ``v`` its parametrization holds, by the base it belongs to."""
    found: dict[str, str] = {}
    for key in keys:
        if match := _STACKED.match(key):
            found.setdefault(match["base"], f"another parametrization is stacked on it ({key})")
        elif match := _MORE_ORIGINALS.match(key):
            found.setdefault(match["base"], f"its parametrization holds more than g and v ({key})")
    return found


def dtypes_reason(g_dtype: str, v_dtype: str, scalar_g: bool) -> str | None:
    """Why a pair of these dtypes (torch's names) is not folded, or None: each a float type
    the fold computes, and one dtype for both but for a 0-d g (``scalar_g``)."""
    for role, dtype in (("g", g_dtype), ("v", v_dtype)):
        if dtype not in FOLDABLE_DTYPES:
            return f"{role} is {dtype}, not a float type that is folded"
    # t153: folded to v's dtype, said nothing. A 0-d g (dim=None) takes no part in type
    # promotion: PyTorch's weight is of v's dtype, as the fold's (t183)
    if g_dtype != v_dtype and not scalar_g:
        return (
            f"g is {g_dtype} and v {v_dtype}: PyTorch makes no weight of one dtype of them "
            "(at the first and last axis it refuses two dtypes; at another, its weight takes "
            "the promoted one)"
        )
    return None


def find_pairs(
    tensors: Sequence[TensorInfo],
    others: Collection[str] = (),
    *,
    folding: bool = True,
    model_keys: Collection[str] = (),
) -> list[Pair]:
    """The pairs among ``tensors`` (one state dict), in the order of their first key.
    ``others``: the names of the dict's entries that are not tensors (a plain ``X.weight``
    among them declines pair ``X.weight`` as a tensor does: folding would replace it).
    ``folding``: the pairs' values are to be read (fold, inspect), so a dtype that is not
    folded declines them; a renaming (``convert``) moves tensors of any dtype as they are.
    ``model_keys``: the keys of a model's plain state dict (``conv.weight``): a legacy pair of
    one element per unit whose weight is among them is a pair (module docstring)."""
    by_key = {info.key: info for info in tensors}
    stacked = _stacked([*by_key, *others])
    pairs: dict[tuple[str, str], Pair] = {}
    for info in tensors:
        parsed = parse_key(info.key)
        if parsed is None:
            continue
        keys, _ = parsed
        if (keys.weight, keys.form) in pairs:
            continue
        g, v = by_key.get(keys.g), by_key.get(keys.v)
        if (g is None or v is None) and not _lone_counts(keys):
            continue
        if g is None and _spectral_norm(keys, by_key):
            continue
        pair = Pair(keys, g, v, info.key)
        checked = _checked(pair, by_key, others, stacked, folding, model_keys)
        pairs[(keys.weight, keys.form)] = checked
    found = list(pairs.values())
    for pair in found:  # the same weight in both forms: neither is folded
        other = "legacy" if pair.keys.form == "parametrize" else "parametrize"
        if pair.reason is None and (pair.weight, other) in pairs:
            pair.reason = "stored in both key forms"
    for pair in found:
        if pair.reason is not None:
            logger.info("%s: pair declined: %s", pair.weight, pair.reason)
    return found


def _checked(
    pair: Pair,
    by_key: dict[str, TensorInfo],
    others: Collection[str],
    stacked: dict[str, str],
    folding: bool,
    model_keys: Collection[str],
) -> Pair:
    """``pair`` with the reason it cannot be folded (or renamed), if any: module docstring."""
    g, v = pair.g, pair.v
    if g is None or v is None:
        missing = pair.keys.v if v is None else pair.keys.g
        if missing in others:  # stored, but no tensor: a number, a list (t339)
            pair.reason = f"{missing} is no tensor"
            return pair
        role = "v" if v is None else "g"
        pair.reason = f"{'g' if g is not None else 'v'} without {role} ({pair.first})"
        return pair
    base = pair.keys.g.removesuffix(".original0")
    if pair.keys.form == "parametrize" and base in stacked:
        pair.reason = f"{stacked[base]}: the weight is not g * v / ||v||"
        return pair
    if pair.weight in by_key or pair.weight in others:
        pair.reason = f"{pair.weight} is stored too"
        return pair
    if folding and (reason := dtypes_reason(g.dtype, v.dtype, len(g.shape) == 0)):
        pair.reason = reason
        return pair
    try:
        pair.dim = dim_from_shapes(g.shape, v.shape)
    except ValueError as error:
        pair.reason = f"shapes do not fit: {error}"
        return pair
    if (
        unit_size(v.shape, pair.dim) == 1
        and pair.weight not in model_keys
        and not weight_norms_own(pair.weight, pair.keys.form, by_key.keys() | set(others))
    ):
        pair.reason = (
            "one element per unit of v (the weight would be g * sign(v)): as likely two plain "
            f"parameters {g.key} and {v.key}; left alone"
        )
    return pair
