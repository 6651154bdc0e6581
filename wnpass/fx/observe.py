"""Find every parameter's consuming ops by running the model once and watching what it calls.

The model runs on its example inputs (eval mode, no grad, then its mode is restored) under a
``TorchFunctionMode`` that sees each torch call at the level the model's code made it:
``F.linear``, ``torch.addmm``, ``x @ W``, ``F.conv2d``, ``torch.einsum``, ``F.embedding``,
``_VF.lstm``, ``F.multi_head_attention_forward`` ... (calls made inside those are not seen).
Caches, ``ModelOutput``/dict outputs and data-dependent control flow do not matter: nothing is
traced, the forward just runs. A tied weight is one tensor object, so its uses under every name
are seen as uses of one parameter.

What happens to a parameter before it is consumed is followed: ``.t()``, ``.T``, ``.mT``,
``transpose``, ``permute``, ``movedim``, ``view``/``reshape``/``flatten``/``(un)squeeze``,
``.to(dtype)`` and other copies, ``flip``/``roll`` along axes (elements reordered within their
axes), ``chunk``/``split``/``unbind``/``narrow``/``select``, basic indexing and ``torch.cat``
(q, k and v weights fused each forward), rows split by a view with the other parts indexed
away (:class:`_Part`). Each derived tensor carries, per parameter it comes
from, the parameter axis each of its axes is (None where a reshape merged or split axes), and
the parameter axes it was sliced or joined along. At the consumer the table of
:mod:`wnpass.axes` gives the unit axis on the derived tensor, which maps back to the parameter's
axis; a unit axis that is no single parameter axis, or a slice along another axis, is declined
with the reason. What a layer op computes from weights and another layer reads as its weight
(CondConv's ``routing @ W``) is followed by :mod:`wnpass.fx.mixing`; the ops are told by name
as :mod:`wnpass.fx.calls` groups them.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import logging
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.overrides import TorchFunctionMode

from wnpass.axes import DimPolicy, OpKind, contraction_equation, einsum_unit_axis, unit_axis
from wnpass.fx.arguments import is_lazy
from wnpass.fx.attributes import Attributes
from wnpass.fx.axes import READ_INTO_WRITTEN, RENORMED, SPARSE, Use, renormed_table, sparse_table
from wnpass.fx.calls import (
    CONV,
    CONV_T,
    CONV_TBC,
    DIVISIONS,
    ELEMENTWISE,
    IDENTITY,
    LABELS,
    LAYER_OPS,
    MATMUL,
    PERMUTES,
    REORDERS,
    RESHAPE,
    RNN,
    SCALINGS,
    SLICE_DROP,
    SLICE_KEEP,
    dim_arg,
    name_of,
    permutation,
    rolled_flat,
)
from wnpass.fx.elements import Elements
from wnpass.fx.forward import (
    Batch,
    ForwardFailedError,
    GivenBack,
    ModelExitedError,
    RngSnapshot,
    call_model,
    evaluating,
    run_forward,
    state_given_back,
    tensors_in,
    training,
    written_by,
)
from wnpass.fx.kernels import calls_torchscript, kernel_reads
from wnpass.fx.mixing import MixedWeights

__all__ = ["Trained", "forward_reads", "in_training", "observe_uses", "rnn_roles"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Origin:
    """A tensor derived from parameter ``param``: the parameter axis each of its axes is (a
    :class:`_Part` of one where a reshape split it)."""

    param: str
    axes: tuple[int | _Part | None, ...]
    sliced: frozenset[int | None] = frozenset()  # parameter axes it was sliced along
    path: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Part:
    """An axis a reshape split parameter axis ``axis`` into, with the other parts of
    ``split``: ``W.view(E, F, D)`` of a ``(E*F, D)`` expert weight (DBRX), ``W.view(3, H, D)``
    of a fused qkv. Where every other part was indexed away (``[e]``), each element along it
    is one element of the parameter axis: a unit of the op is a unit of the parameter."""

    axis: int
    split: tuple[int, int]  # the reshape, and the input axis of it that was split


def _parameter_axis(axis: int | _Part | None) -> int | None:
    return axis.axis if isinstance(axis, _Part) else axis


@dataclasses.dataclass(frozen=True)
class _Piece:
    """An axis of a reshape's result that is one of the several axes the reshape split input
    axis ``axis`` into (:func:`_reshape_axes`)."""

    axis: int


# Contractions read as the einsum they are (``inner(x, W)`` is ``x @ W.T``)
_CONTRACTIONS = {"tensordot": "tensordot", "inner": "inner", "linalg_multi_dot": "multi_dot"}
# Arguments that an op reads only the dtype, device or shape of, by position (and keyword):
# ``x.type_as(w)``, ``x.to(w)``, ``x.view_as(w)``, ``torch.zeros_like(w)``, ``w.new_zeros(n)``.
# No use of the weight's values (weight norm computes one of the same dtype, device and shape),
# and the result holds none of its elements (t261: a Linear whose forward also did
# ``x.type_as(W)`` was skipped, "used by type_as, which wnpass does not know").
_TEMPLATES: dict[str, tuple[int, str]] = {
    **dict.fromkeys(("type_as", "view_as", "reshape_as", "expand_as", "to"), (1, "other")),
    **dict.fromkeys(
        ("zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like"),
        (0, "input"),
    ),
    "randint_like": (0, "input"),
    **dict.fromkeys(("new_zeros", "new_ones", "new_empty", "new_full"), (0, "self")),
}
# Reductions: one whose result is one number is a statistic (a norm of a weight logged into a
# Parameter, t259), holding none of the weight's elements; one over another axis holds them
# (``torch.stack([t, s]).mean(0)``, an average of two weights, t260).
_STATISTICS = {
    "sum", "mean", "norm", "linalg_vector_norm", "linalg_norm", "prod", "std", "var", "amax",
    "amin", "logsumexp", "count_nonzero", "argmax", "argmin", "max", "min",
}  # fmt: skip
_NORMS = {"layer_norm", "group_norm", "batch_norm", "instance_norm", "rms_norm"}
# Uses that reduce a weight (a norm of its own, a sum) or join or repeat it with others: no
# unit axis of a layer's (said as what they are, not as elementwise uses: t197)
_REDUCTIONS = {"sum", "mean", "norm"}
_JOINS = {"stack", "repeat", "repeat_interleave"}
_MHA_ROLES = {
    "in_proj_weight": "linear", "q_proj_weight": "linear", "k_proj_weight": "linear",
    "v_proj_weight": "linear", "out_proj_weight": "linear", "in_proj_bias": "bias",
    "out_proj_bias": "bias", "bias_k": "bias", "bias_v": "bias",
}  # fmt: skip


def _without_template(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` of op ``name`` (:data:`_TEMPLATES`) without the tensor whose
    dtype, device or shape alone it reads."""
    position, keyword = _TEMPLATES[name]
    if isinstance(kwargs.get(keyword), torch.Tensor):
        return args, {k: v for k, v in kwargs.items() if k != keyword}
    if len(args) > position and isinstance(args[position], torch.Tensor):
        return (*args[:position], None, *args[position + 1 :]), kwargs
    return args, kwargs


def _metadata(name: str, result: Any) -> bool:
    """Whether a call that read a parameter only asked about its layout: no use of its values.

    ``.shape``, ``.size()`` (a ``torch.Size``, which is a tuple) and ``.stride()`` (a tuple of
    ints) as much as ``.dtype``, ``.dim()``, ``.size(-1)``: a padding computed from
    ``w.shape[-1]`` does not stop ``w`` from being a layer weight. A list or tuple of anything
    else (``.tolist()``: the values) and any tensor are uses.
    """
    if isinstance(result, torch.Size):
        return True
    if name == "stride" and isinstance(result, tuple):
        return True
    return not any(True for _ in tensors_in(result)) and not isinstance(result, list | tuple)


def _expand_axes(src: Sequence[int], dst: Sequence[int]) -> list[int | None]:
    """The input axis each axis of ``expand``'s result is: the new leading ones none, and
    one of size 1 broadcast none either (its elements repeat one slice): a weight shared
    across a batch, ``W.unsqueeze(0).expand(B, -1, -1)`` before ``bmm``, keeps its axes
    (t157: it was an elementwise use)."""
    new = len(dst) - len(src)
    return [None] * new + [a if size == dst[new + a] else None for a, size in enumerate(src)]


def _reshape_axes(src: Sequence[int], dst: Sequence[int]) -> list[int | _Piece | None]:
    """For each axis of ``dst``, the axis of ``src`` it is the same as, a :class:`_Piece` of
    the one it was split from, or None (merged, new).

    Size-1 axes carry no units and are skipped; the rest are grouped into runs whose sizes
    multiply to the same number; a run of one axis on each side is the same axis, of one on the
    input's side and several on the result's a split.
    """
    out: list[int | _Piece | None] = [None] * len(dst)
    si = [i for i, size in enumerate(src) if size != 1]
    di = [j for j, size in enumerate(dst) if size != 1]
    a = b = 0
    while a < len(si) and b < len(di):
        group_s, group_d = [si[a]], [di[b]]
        ps, pd = src[si[a]], dst[di[b]]
        while ps != pd:
            if ps < pd and a + 1 < len(si):
                a += 1
                group_s.append(si[a])
                ps *= src[si[a]]
            elif pd < ps and b + 1 < len(di):
                b += 1
                group_d.append(di[b])
                pd *= dst[di[b]]
            else:
                return out
        if len(group_s) == 1 and len(group_d) == 1:
            out[group_d[0]] = group_s[0]
        elif len(group_s) == 1:
            for j in group_d:
                out[j] = _Piece(group_s[0])
        a, b = a + 1, b + 1
    return out


def _index_axes(index: Any, shape: Sequence[int]) -> tuple[list[int | None], set[int]] | None:
    """Indexing: for each output axis the input axis (None: new), and the sliced axes (a slice
    that keeps every element of its axis, ``W[:, :8]`` of a 10x8 ``W``, cuts none). One integer
    tensor among the indices gathers along its axis (``W[expert]``, ``W[ids]``): cut, its own
    axes in place of it (a 1-D one keeps the axis, in another order); None for other advanced
    indexing (several tensors, a mask, a list)."""
    ndim = len(shape)
    items = list(index) if isinstance(index, tuple) else [index]
    if any(_is_scalar(i) and not _is_integer(i) for i in items):
        return None  # a 0-d bool is a mask: it adds an axis
    gathers = [i for i in items if isinstance(i, torch.Tensor) and not _is_scalar(i)]
    if any(isinstance(i, list | bool) for i in items) or len(gathers) > 1:
        return None
    if gathers and not _is_integer(gathers[0]):
        return None
    real = sum(1 for i in items if i is not None and i is not Ellipsis)
    out: list[int | None] = []
    sliced: set[int] = set()
    axis = 0
    for item in items:
        if item is None:
            out.append(None)
        elif item is Ellipsis:
            for _ in range(ndim - real):
                out.append(axis)
                axis += 1
        elif isinstance(item, int) or _is_scalar(item):  # a 0-d integer tensor selects too
            sliced.add(axis)
            axis += 1
        elif isinstance(item, torch.Tensor):
            sliced.add(axis)
            out.extend([axis] if item.dim() == 1 else [None] * item.dim())
            axis += 1
        elif isinstance(item, slice):
            if axis >= ndim:
                return None  # more indices than axes: torch raises
            if range(*item.indices(shape[axis])) != range(shape[axis]):
                sliced.add(axis)
            out.append(axis)
            axis += 1
        else:
            return None
    out.extend(range(axis, ndim))
    return out, sliced


def _carried(
    axes: Sequence[int | _Part | None],
    mapping: Sequence[int | _Piece | None],
    cut: set[int],
    shape: Sequence[int],
    split: int,
) -> tuple[int | _Part | None, ...]:
    """The parameter axes of an op's result, from those of its input (``axes``, of ``shape``)
    and the input axis each result axis is (``mapping``): a :class:`_Piece` of a parameter axis
    a :class:`_Part` of ``split``, of a part one of that part's split. Where a part of more
    than one element goes but not indexed away (``cut``: merged by a reshape), its split's
    other parts are no parameter axis any more: a unit along one would span several."""
    out: list[int | _Part | None] = []
    for m in mapping:
        if isinstance(m, _Piece):
            base = axes[m.axis]
            out.append(base if not isinstance(base, int) else _Part(base, (split, m.axis)))
        else:
            out.append(None if m is None else axes[m])
    kept = {m.axis if isinstance(m, _Piece) else m for m in mapping}
    broken = {
        axis.split
        for at, axis in enumerate(axes)
        if isinstance(axis, _Part) and at not in kept and at not in cut and shape[at] > 1
    }
    return tuple(None if isinstance(a, _Part) and a.split in broken else a for a in out)


def _gathers(index: Any) -> bool:
    """Whether ``index`` holds a tensor of one or more axes (advanced indexing: a gather, not
    a view; a 0-d integer one selects, as an int does: DBRX's experts, ``w[expert_hit[i][0]]``,
    t233)."""
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and not _is_scalar(i) for i in items)


def _is_scalar(item: Any) -> bool:
    return isinstance(item, torch.Tensor) and item.dim() == 0


def _is_integer(tensor: torch.Tensor) -> bool:
    """An index tensor PyTorch reads as positions: not a float, and not a bool or a uint8,
    which it reads as a mask (a 0-d one adds an axis)."""
    if tensor.is_floating_point() or tensor.is_complex():
        return False
    return tensor.dtype not in (torch.bool, torch.uint8)


# Why a weight indexed with a tensor is left alone: a gather of some of its units (a lookup
# table's rows, one expert's weights of a stacked tensor), not one layer's weight as a whole.
LOOKUP = "indexed with a tensor (a lookup table or stacked weights, not one layer's weight)"


def _sets_data(func: Any) -> bool:
    """Whether ``func`` is ``Tensor.data``'s setter (``w.data = x``; not ``w.grad = x``)."""
    setter = getattr(func, "__name__", "") == "__set__"
    return setter and getattr(getattr(func, "__self__", None), "__name__", "") == "data"


def _rebinds(args: Sequence[Any]) -> bool:
    """Whether ``w.data = x`` (``args``: ``w``, ``x``) gives ``w`` other elements: not where
    ``x`` is ``w``'s own (``Module.to`` to the dtype it has, as Switch Transformers' router
    calls on every forward, binds each parameter's ``.data`` to itself)."""
    if len(args) != 2 or not all(isinstance(arg, torch.Tensor) for arg in args):
        return False
    target, value = args
    if value is target:
        return False
    try:
        before = (target.data_ptr(), target.shape, target.stride(), target.dtype)
        return (value.data_ptr(), value.shape, value.stride(), value.dtype) != before
    except (RuntimeError, ValueError, NotImplementedError):  # no elements to compare (meta,
        return True  # sparse, a lazy parameter taking its shape): other ones


class _Recorder(TorchFunctionMode):
    """Records each op that consumes a (tensor derived from a) parameter."""

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        owners: dict[str, tuple[str, str | None]],
        policy: DimPolicy,
        embeddings: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        self.policy, self.embeddings, self.owners = policy, embeddings, owners
        self.params = {id(p): (p, _Origin(n, tuple(range(p.dim())))) for n, p in params.items()}
        # derived tensor -> the parameters it comes from (several after a cat)
        self.derived: dict[int, tuple[weakref.ref[torch.Tensor], tuple[_Origin, ...]]] = {}
        self.uses: dict[Use, None] = {}
        self.splits = itertools.count()  # an identity for each reshape's splits
        # tensor -> the parameters whose elements went into it through ops that are no layer
        # (:data:`LAYER_OPS`: ``t * m + s * (1 - m)``, ``torch.lerp(t, s, w)``, ``s.data``):
        # what a write of a parameter from it reads (t256)
        self.read_from: dict[int, tuple[weakref.ref[torch.Tensor], frozenset[str]]] = {}
        # the memory of the parameters an op took, the model's or not (a teacher kept in a
        # plain list): a write there, through ``.data``, ``.detach()`` or a state dict's
        # tensor, is a write of a parameter (t259); by their bytes (a buffer beside a weight
        # in one allocation is none of it, t260), by storage where they have none to compare
        self.parameter_memory: Elements[int] = Elements({})
        # what layer ops computed from parameters (``routing @ W``), which another layer may
        # read as its weight
        self.mixed = MixedWeights()

    def origins(self, value: Any) -> tuple[_Origin, ...]:
        """The parameters ``value`` is (derived from); empty for any other value."""
        if not isinstance(value, torch.Tensor):
            return ()
        if (entry := self.params.get(id(value))) is not None and entry[0] is value:
            return (entry[1],)
        if (derived := self.derived.get(id(value))) is not None and derived[0]() is value:
            return derived[1]
        return ()

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:  # fmt: skip
        kwargs = kwargs or {}
        # ``w.data = x`` (not ``w.grad = x``), told before it binds (after, ``x`` is ``w``'s)
        rebinds = _sets_data(func) and _rebinds(args)
        for param in (t for v in args for t in tensors_in(v) if isinstance(t, nn.Parameter)):
            if not self.parameter_memory.of(param):  # the model's or another's, once
                self.parameter_memory.add(id(param), param)
        result = func(*args, **kwargs)
        name = name_of(func)
        if name in _TEMPLATES:  # only its dtype, device or shape read: no use of it
            args, kwargs = _without_template(name, args, kwargs)
        if self.mixed:
            with torch._C.DisableTorchFunction():  # its reads of shapes and strides: not ops
                for weight, op, reason in self.mixed.follow(func, name, args, kwargs, result):
                    self._use(_Origin(weight, ()), op, None, reason)
        values = [*args, *kwargs.values()]
        tensors = [t for v in values for t in tensors_in(v)]
        found = [self.origins(t) for t in tensors]
        read = [self._read_of(t, origins) for t, origins in zip(tensors, found, strict=True)]
        if not any(read):
            return result
        targets = [tensors[0]] if rebinds else written_by(func, args, kwargs)
        if targets and self._written(name, targets, tensors, read):
            return result
        if _metadata(name, result):
            return result
        if any(found):
            try:
                self._record(func, name, args, kwargs, result)
            except Exception as error:  # never break the user's forward: record why instead
                logger.debug("could not follow %s: %s", name, error)
                for t in {id(t): t for t in tensors}.values():
                    for origin in self.origins(t):
                        self._use(origin, name, None, f"used by {name}: not followed")
            # what a layer op computes from those weights, which a layer may read as its weight
            self.mixed.computed(name, args, kwargs, result, self._params)
        statistic = name in _STATISTICS and isinstance(result, torch.Tensor) and result.numel() == 1
        if name not in LAYER_OPS and not statistic:  # what the result holds was read from
            # those parameters
            lineage = frozenset().union(*read)
            for tensor in tensors_in(result):
                self.read_from[id(tensor)] = (weakref.ref(tensor), lineage)
        return result

    def _params(self, value: Any) -> list[str]:
        return [o.param for o in self.origins(value)]

    def _written(
        self,
        name: str,
        targets: Sequence[torch.Tensor],
        tensors: Sequence[torch.Tensor],
        read: Sequence[frozenset[str]],
    ) -> bool:
        """Record a write of ``targets`` by op ``name`` that reads ``tensors`` (those
        parameters' elements each holds: ``read``). A parameter written is used so; the
        parameters read into one (ours or another's: a teacher kept in a plain list, t258)
        are read into a weight written in place: a mean teacher's update reads the student's
        weights elementwise (under weight norm, zipped by ``parameters()``, it read g and v:
        t251), also through other ops first (MoCo's ``t.data = t.data * m + s.data * (1 -
        m)``, ``t.copy_(torch.lerp(t, s, w))``: t256). Another tensor written holds what it
        read from then on (``tmp[...] = q``, ``buf[0].copy_(q)``: t257). Returns whether a
        parameter of ours was written (the op is then no use of any other kind)."""
        ids = {id(tensor) for tensor in targets}
        ours = [tensor for tensor in targets if self.origins(tensor)]
        own = {origin.param for tensor in ours for origin in self.origins(tensor)}
        for origin in (origin for tensor in ours for origin in self.origins(tensor)):
            self._use(origin, name, None, f"modified in place in the forward ({name})")
        sources = [
            params - own for t, params in zip(tensors, read, strict=True) if id(t) not in ids
        ]
        lineage = frozenset().union(*sources)
        if ours or any(self.parameter_memory.of(t) for t in targets):
            for param in sorted(lineage):
                self._use(_Origin(param, ()), name, None, f"{READ_INTO_WRITTEN} ({name})")
        elif lineage:
            for tensor in (
                t for target in targets for t in (target, target._base) if t is not None
            ):
                self.read_from[id(tensor)] = (weakref.ref(tensor), self.read_of(tensor) | lineage)
        return bool(ours)

    def read_of(self, value: torch.Tensor) -> frozenset[str]:
        """The parameters whose elements went into ``value`` (:attr:`read_from`): itself, or
        those it was derived from."""
        return self._read_of(value, self.origins(value))

    def _read_of(self, value: torch.Tensor, origins: tuple[_Origin, ...]) -> frozenset[str]:
        """:meth:`read_of`, with ``value``'s :meth:`origins` known."""
        params = frozenset(origin.param for origin in origins)
        if (entry := self.read_from.get(id(value))) is not None and entry[0]() is value:
            return params | entry[1]
        return params

    # -- derived tensors -------------------------------------------------------------------------

    def _track(self, result: Any, origins: tuple[_Origin, ...]) -> None:
        for tensor in tensors_in(result):
            self.derived[id(tensor)] = (weakref.ref(tensor), origins)

    def _scaled(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> bool:
        """Track ``W * c``, ``c * W`` and ``W / c`` for one number ``c`` (a Python number or a
        one-element tensor that is no parameter): the result has W's axes."""
        if len(args) != 2 or kwargs or not isinstance(result, torch.Tensor):
            return False
        pairs = [args] if name in DIVISIONS else [args, args[::-1]]
        for tensor, factor in pairs:
            sources = self.origins(tensor)
            if sources and _one_number(factor) and not self.origins(factor):
                if result.shape != tensor.shape:
                    return False
                path = (*sources[0].path, name)
                self._track(result, tuple(dataclasses.replace(s, path=path) for s in sources))
                return True
        return False

    def _concatenated(self, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> bool:
        """``torch.cat`` of weights (fused q/k/v): each keeps its axes; joined along ``dim``,
        which counts as a slice (units along another axis would span several weights)."""
        parts = list(args[0]) if args and isinstance(args[0], list | tuple) else []
        tracked = [t for t in parts if self.origins(t)]
        if not tracked or not isinstance(result, torch.Tensor):
            return False
        dim = dim_arg(args, kwargs, 1, result.dim())
        joined = tuple(
            dataclasses.replace(
                o, sliced=o.sliced | {_parameter_axis(o.axes[dim])}, path=(*o.path, "cat")
            )
            for t in tracked
            for o in self.origins(t)
        )
        self._track(result, joined)
        return True

    def _derive(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
    ) -> bool:
        """Track ``result`` when ``name`` is a view, copy or concatenation of tracked tensors."""
        if name in ("cat", "concat", "concatenate"):
            return self._concatenated(args, kwargs, result)
        if name in SCALINGS:
            return self._scaled(name, args, kwargs, result)
        if not args and "input" in kwargs:  # torch.roll(input=w, ...): the tensor as the first
            args, kwargs = (kwargs["input"],), {k: v for k, v in kwargs.items() if k != "input"}
        sources = self.origins(args[0]) if args else ()
        if not sources:
            return False
        tensor, ndim = args[0], args[0].dim()
        mapping: Sequence[int | _Piece | None] | None = None  # output axis -> input axis
        cut: set[int] = set()  # input axes sliced
        if name in IDENTITY:
            mapping = list(range(ndim))
        elif name in RESHAPE and isinstance(result, torch.Tensor):
            mapping = _reshape_axes(list(tensor.shape), list(result.shape))
        elif name in ("expand", "expand_as") and isinstance(result, torch.Tensor):
            mapping = _expand_axes(list(tensor.shape), list(result.shape))
        elif name in PERMUTES:
            mapping = list(permutation(name, args, kwargs, ndim))
        elif name in REORDERS and (name != "roll" or not rolled_flat(args, kwargs)):
            mapping = list(range(ndim))
        elif name in SLICE_KEEP or name in SLICE_DROP:
            position = 1 if name in ("narrow", "select", "unbind") else 2
            dim = dim_arg(args, kwargs, position, ndim)
            mapping = [a for a in range(ndim) if name in SLICE_KEEP or a != dim]
            cut = {dim}
        elif name == "__getitem__":
            parsed = _index_axes(args[1], list(tensor.shape))
            if parsed is None:
                return False
            mapping, cut = parsed
            if _gathers(args[1]):  # never one layer's weight; followed to say more of it
                for source in sources:
                    self._use(source, name, None, LOOKUP)
        if mapping is None:
            return False
        split = next(self.splits)
        self._track(
            result,
            tuple(
                dataclasses.replace(
                    source,
                    axes=_carried(source.axes, mapping, cut, list(tensor.shape), split),
                    sliced=source.sliced | {_parameter_axis(source.axes[c]) for c in cut},
                    path=(*source.path, name),
                )
                for source in sources
            ),
        )
        return True

    # -- consumers -------------------------------------------------------------------------------

    def _use(self, origin: _Origin, op: str, axis: int | None, reason: str | None) -> None:
        owner, label = self.owners.get(origin.param, ("", None))
        if label is not None and op != "MultiheadAttention":
            op = label if label.startswith("torch.nn.") else f"{label} ({op})"
            op = op.removeprefix("torch.nn.")
        use = Use(origin.param, op, owner, axis, reason)
        self.uses.setdefault(use, None)

    def _consume(self, tensor: Any, op: str, kind: OpKind | str, **options: Any) -> None:
        """``tensor`` consumed as a weight of ``kind`` (or "bias"); map its unit axis back."""
        origins = self.origins(tensor)
        if not origins:
            return
        if kind == "bias":
            for origin in origins:
                self._use(origin, op, None, "bias")
            return
        # an axis of stride 0 repeats one slice (expand): one unit's, as a size of 1 (t157)
        sizes = [
            1 if step == 0 else size
            for size, step in zip(tensor.shape, tensor.stride(), strict=True)
        ]
        if kind == "einsum":
            axis: int | str = einsum_unit_axis(
                options["equation"], options["operand"], options["shapes"]
            )
            if isinstance(axis, str) and op != "einsum":  # a contraction read as an einsum
                axis = f"{op} as {axis}"
        else:
            op_kind = cast(OpKind, kind)
            axis = unit_axis(
                op_kind, sizes, policy=self.policy, embeddings=self.embeddings, **options
            )
        for origin in origins:
            if isinstance(axis, str):
                self._use(origin, op, None, axis)
            else:
                self._map_back(origin, op, axis, sizes)

    def _map_back(self, origin: _Origin, op: str, axis: int, sizes: Sequence[int]) -> None:
        """The consumer's unit axis ``axis`` on the derived tensor (whose axes hold ``sizes``
        elements each, an expanded one 1), as the parameter's axis: a :class:`_Part` of one
        is it where no other part of its split holds more than one element (t233: a part of
        size 1, left by ``chunk``, is one index)."""
        param_axis = _parameter_axis(origin.axes[axis])
        part = origin.axes[axis]
        if isinstance(part, _Part) and any(
            isinstance(other, _Part) and other.split == part.split and sizes[at] > 1
            for at, other in enumerate(origin.axes)
            if at != axis
        ):
            param_axis = None
        via = f" (via {'.'.join(origin.path)})" if origin.path else ""
        if param_axis is None:
            reason = f"reshaped before {op}{via}: its unit axis is no single axis of the parameter"
            self._use(origin, op, None, reason)
        elif origin.sliced - {param_axis}:
            axes = sorted(str(a) for a in origin.sliced - {param_axis})
            reason = (
                f"sliced or joined along axis {', '.join(axes)} before {op}{via}: units would "
                "share a norm"
            )
            self._use(origin, op, None, reason)
        else:
            self._use(origin, op, param_axis, None)

    def _record(
        self, func: Callable[..., Any], name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        result: Any,
    ) -> None:  # fmt: skip
        if self._derive(name, args, kwargs, result):
            return
        op = LABELS.get(name, f"F.{name}" if name in CONV | CONV_T else name)

        def arg(position: int, keyword: str) -> Any:
            return kwargs.get(keyword, args[position] if len(args) > position else None)

        if name in ("linear", "bilinear"):
            weight_at = 2 if name == "bilinear" else 1
            self._consume(arg(weight_at, "weight"), op, "linear")
            self._consume(arg(weight_at + 1, "bias"), op, "bias")
            inputs = [arg(0, "input1"), arg(1, "input2")] if weight_at == 2 else [arg(0, "input")]
            self._inputs(op, inputs)
        elif name in CONV:
            self._consume(arg(1, "weight"), op, "conv")
            self._consume(arg(2, "bias"), op, "bias")
            self._inputs(op, [arg(0, "input")])
        elif name in CONV_T:
            groups = int(arg(6, "groups") or 1)
            self._consume(arg(1, "weight"), op, "conv_transpose", groups=groups)
            self._consume(arg(2, "bias"), op, "bias")
            self._inputs(op, [arg(0, "input")])
        elif name == CONV_TBC:
            self._consume(arg(1, "weight"), op, "conv_tbc")
            self._consume(arg(2, "bias"), op, "bias")
            self._inputs(op, [arg(0, "input")])
        elif name == "convolution":
            groups = int(arg(8, "groups") or 1)
            kind = "conv_transpose" if arg(6, "transposed") else "conv"
            self._consume(arg(1, "weight"), op, kind, groups=groups)
            self._consume(arg(2, "bias"), op, "bias")
        elif name in ("addmm", "baddbmm", "addbmm", "addmv"):
            self._consume(arg(0, "input"), op, "bias")
            self._consume(arg(1, "mat1" if name == "addmm" else "batch1"), op, "matmul_left")
            self._consume(arg(2, "mat2" if name == "addmm" else "batch2"), op, "matmul_right")
        elif name in MATMUL:
            left, right = (args[1], args[0]) if name == "__rmatmul__" else (args[0], args[1])
            self._consume(left, op, "matmul_left")
            self._consume(right, op, "matmul_right")
        elif name == "einsum":
            self._einsum(op, args)
        elif name in _CONTRACTIONS:
            self._contraction(name, args, kwargs)
        elif name in ("embedding", "embedding_bag"):
            functional = func in (F.embedding, F.embedding_bag)
            table = arg(1, "weight") if functional else arg(0, "weight")
            if renormed_table(func, args, kwargs) is not None:
                for origin in self.origins(table):
                    self._use(origin, op, None, RENORMED)
            elif sparse_table(func, args, kwargs):
                for origin in self.origins(table):
                    self._use(origin, op, None, SPARSE)
            else:
                self._consume(table, op, "embedding")
        elif name in RNN:
            self._rnn(op, args, kwargs)
        elif name in ("multi_head_attention_forward", "_native_multi_head_attention"):
            self._mha(func, op, args, kwargs)
        else:
            self._other(name, args, kwargs)

    def _einsum(self, op: str, args: tuple[Any, ...]) -> None:
        equation = str(args[0])
        operands = (
            list(args[1])
            if len(args) == 2 and isinstance(args[1], list | tuple)
            else list(args[1:])
        )
        shapes = [list(t.shape) for t in operands]
        for index, tensor in enumerate(operands):
            self._consume(tensor, op, "einsum", equation=equation, operand=index, shapes=shapes)

    def _contraction(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        op = _CONTRACTIONS[name]
        if op == "multi_dot":
            operands = list(kwargs.get("tensors", args[0] if args else ()))
        else:
            operands = [kwargs.get("input", args[0] if args else None)]
            operands.append(kwargs.get("other", args[1] if len(args) > 1 else None))
        dims = kwargs.get("dims", args[2] if len(args) > 2 else 2)
        if isinstance(dims, torch.Tensor):  # as tensordot reads one: one number, or two lists
            dims = int(dims.item()) if dims.numel() == 1 else dims.tolist()
        if not isinstance(dims, int):  # one axis each may be given as a number
            dims = [[d] if isinstance(d, int) else list(d) for d in dims]
        shapes = [list(t.shape) for t in operands]
        equation = contraction_equation(op, [len(shape) for shape in shapes], dims)
        if equation is None:
            self._other(name, args, kwargs)
            return
        for index, tensor in enumerate(operands):
            self._consume(tensor, op, "einsum", equation=equation, operand=index, shapes=shapes)

    def _rnn(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Only the RNN's own weights and biases, by their position in the call, are weights;
        a tracked input, initial state (a learned ``h0``/``c0``) or ``batch_sizes`` is not."""
        roles = rnn_roles(op, args, kwargs)
        for tensor, role in roles:
            self._consume(tensor, op, role)
        weights = {id(tensor) for tensor, _ in roles}
        values = [t for v in [*args, *kwargs.values()] for t in tensors_in(v)]
        self._not_weights(op, [t for t in values if id(t) not in weights], "input or state")

    def _mha(
        self, func: Callable[..., Any], op: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        if func is F.multi_head_attention_forward:
            bound = inspect.signature(func).bind(*args, **kwargs).arguments
            roles = {name: bound.get(name) for name in _MHA_ROLES}
        else:  # _native_multi_head_attention(q, k, v, dim, heads, qkv_w, qkv_b, proj_w, proj_b)
            roles = dict(
                zip(
                    ("in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias"),
                    args[5:9],
                    strict=False,
                )
            )
        for role, tensor in roles.items():
            self._consume(tensor, op, _MHA_ROLES[role])
        weights = {id(t) for t in roles.values()}
        others = [v for v in [*args, *kwargs.values()] if isinstance(v, torch.Tensor)]
        others = [t for t in others if id(t) not in weights]
        self._not_weights(op, others, "query, key, value or mask")

    def _inputs(self, op: str, inputs: list[Any]) -> None:
        """A layer's inputs: a learned one (Perceiver's latents, prefix tokens) is data, not a
        weight (it was said to be unused, t197)."""
        self._not_weights(op, [t for t in inputs if isinstance(t, torch.Tensor)], "the input")

    def _not_weights(self, op: str, tensors: Sequence[torch.Tensor], role: str) -> None:
        """Tracked tensors an op consumes as data, not as its weights: declined, saying so."""
        for tensor in {id(t): t for t in tensors}.values():
            for origin in self.origins(tensor):
                self._use(origin, op, None, f"{role} of {op}, not a weight")

    def _other(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if name in _NORMS:  # its input is data it normalizes; the other tensors scale or shift
            data = args[0] if args else kwargs.get("input")
            if isinstance(data, torch.Tensor):
                # a learned input (SEW-D's relative positions), or a weight standardized before
                # its layer reads it (timm's StdConv2d: "not a weight" was untrue there, t312)
                for origin in self.origins(data):
                    self._use(origin, name, None, f"normalized by {name}, not weight-normed")
            args = args[1:] if args else args
            kwargs = {key: value for key, value in kwargs.items() if key != "input"}
            reason = f"normalization scale or shift ({name})"
        elif name == "softmax":  # along an axis: no elementwise use (t291, LightweightConv)
            reason = "normalized by softmax: no layer's unit axis"
        elif name in ELEMENTWISE:
            reason = f"elementwise use ({name})"
        elif name in _REDUCTIONS:
            reason = f"reduced by {name}: no layer's unit axis"
        elif name in _JOINS:
            reason = f"joined or repeated by {name}: axis not followed"
        elif name == "__getitem__":
            reason = LOOKUP
        elif name == "roll" and rolled_flat(args, kwargs):  # with dims: a reorder, followed
            reason = "rolled as one flat tensor (roll without dims): units mix"
        else:
            reason = f"used by {name}, which wnpass does not know"
        seen: set[int] = set()
        for value in [*args, *kwargs.values()]:
            for tensor in tensors_in(value):
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    for origin in self.origins(tensor):
                        self._use(origin, name, None, reason)


# RNN cells: ``_VF.lstm_cell(input, hx, w_ih, w_hh, b_ih, b_hh)`` (GRU and RNN cells alike).
_CELL_WEIGHTS = (("w_ih", "linear"), ("w_hh", "linear"), ("b_ih", "bias"), ("b_hh", "bias"))


def rnn_roles(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[Any, str]]:
    """The weights of an RNN call, each with its role ("linear" or "bias"), by position.

    A cell takes them at positions 2 to 5. A whole RNN, ``_VF.lstm(input, hx, params,
    has_biases, num_layers, dropout, train, bidirectional, batch_first)`` or, for a packed
    sequence, ``(data, batch_sizes, hx, params, has_biases, num_layers, dropout, train,
    bidirectional)``, takes the flat weights ``params`` just before ``has_biases``, its first
    bool; per layer and direction they are ``w_ih, w_hh``, then ``b_ih, b_hh`` with biases,
    then ``w_hr`` with projections. A call of another form raises (the caller then declines
    every tracked tensor in it as not followed).
    """
    if name.endswith("_cell"):
        found = [
            (kwargs.get(key, args[2 + i] if len(args) > 2 + i else None), role)
            for i, (key, role) in enumerate(_CELL_WEIGHTS)
        ]
        return [(tensor, role) for tensor, role in found if isinstance(tensor, torch.Tensor)]
    at = next(i for i, value in enumerate(args) if isinstance(value, bool))
    params, has_biases = list(args[at - 1]), args[at]
    num_layers, bidirectional = int(args[at + 1]), bool(args[at + 4])
    per_layer = len(params) // (num_layers * (2 if bidirectional else 1))
    return [
        (tensor, "bias" if has_biases and index % per_layer in (2, 3) else "linear")
        for index, tensor in enumerate(params)
    ]


def _one_number(value: Any) -> bool:
    """A Python number, or a tensor holding one element."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, int | float) and not isinstance(value, bool)


def _owners(model: nn.Module) -> dict[str, tuple[str, str | None]]:
    """Parameter -> (its module's name, the label of its module's class; None for the root).

    The label is ``torch.nn.<Class>`` for PyTorch's own layers (shown as the op: ``Conv1d``),
    else the class name, shown with the op it called (``Conv1D (addmm)``).
    """
    owners: dict[str, tuple[str, str | None]] = {}
    for name, _ in model.named_parameters():
        prefix = name.rpartition(".")[0]
        if not prefix:
            owners[name] = ("", None)
            continue
        cls = parametrize.type_before_parametrizations(model.get_submodule(prefix))
        own = cls.__module__.startswith("torch.nn.")
        owners[name] = (prefix, f"torch.nn.{cls.__name__}" if own else cls.__name__)
    return owners


def observe_uses(
    model: nn.Module, batch: Batch, policy: DimPolicy = "unit", embeddings: bool = False
) -> tuple[list[Use], list[Any]]:
    """Every parameter use seen while running ``model`` on ``batch``, and the outputs. Where
    the forward built the model further with parameters of its own (a head made on its first
    call), they are observed in a second forward, on the model as it built it."""
    rng = RngSnapshot.take(model, batch)
    uses, outputs, params, built = _observed(model, batch, policy, embeddings)
    if built and {name for name, _ in model.named_parameters()} - params:
        logger.debug("the forward made parameters: observed again")
        rng = RngSnapshot.take(model, batch)
        uses, outputs, params, _ = _observed(model, batch, policy, embeddings)
    unseen = params - {use.param for use in uses}
    if unseen or calls_torchscript(model):
        uses += _unobserved(model, batch, params, unseen, rng)
    logger.debug("observed %d uses of %d parameters", len(uses), len(params))
    return uses, outputs


UNOBSERVED = (
    "used only inside TorchScript or other compiled code, where wnpass cannot tell its layer"
)
ALSO_UNOBSERVED = (
    "also used inside TorchScript or other compiled code, where wnpass cannot tell its layer"
)


def _unobserved(
    model: nn.Module,
    batch: Batch,
    params: Collection[str],
    unseen: Collection[str],
    rng: RngSnapshot,
) -> list[Use]:
    """Uses of the ``params`` that the recorder did not see, since the code making them calls
    no torch function it can watch: a ``@torch.jit.script`` function (DAC's and SNAC's Snake
    activation, t280: said "not used"), found by the kernels that read them
    (:func:`~wnpass.fx.kernels.kernel_reads`). Those the recorder saw no use of (``unseen``)
    are used only there; the others there too (an eager layer's weight a script reads as
    well: planned at the layer's axis, t285)."""
    owners = _owners(model)
    return [
        Use(name, f"{', '.join(kernels)} (kernels)", owners.get(name, ("", None))[0],
            None, UNOBSERVED if name in unseen else ALSO_UNOBSERVED)
        for name, kernels in kernel_reads(model, batch, params, rng).items()
    ]  # fmt: skip


def _observed(
    model: nn.Module, batch: Batch, policy: DimPolicy, embeddings: bool
) -> tuple[list[Use], list[Any], set[str], bool]:
    """The uses one forward of ``model`` makes, its outputs, the names of the parameters
    watched, and whether the forward built the model further (its state then stays as the
    forward left it)."""
    params = {n: p for n, p in model.named_parameters() if not is_lazy(p)}  # none: no shape
    recorder = _Recorder(params, _owners(model), policy, embeddings)
    # eval mode is entered before the uses are recorded: a train() override's own ops (a LoRA
    # layer merging B @ A into its weight) are no uses of the forward's; and after the state
    # is taken, so that they are given back (the merge and unmerge moved the weight by an
    # ulp, t256)
    with state_given_back(model) as given, evaluating(model), recorder:
        outputs = run_forward(model, batch)
    return list(recorder.uses), outputs, set(params), not given.whole


@dataclasses.dataclass
class Trained:
    """What the training-mode forward of the plan showed (:func:`in_training`)."""

    written: list[str]  # the parameters it wrote in place, took off their layer or replaced
    uses: list[Use]  # every parameter use it made (none where it did not run)


def in_training(
    model: nn.Module, batch: Batch, policy: DimPolicy = "unit", embeddings: bool = False
) -> Trained:
    """The parameters a forward in training mode writes in place, switching to it and back
    included (a LoRA layer's ``train()`` that unmerges its update into the weight, t243),
    and the uses that forward makes (a mean teacher's update reads the student's weights
    elementwise, in training only: t251). It runs without grad, drawing from the generators
    as they are (which are as they were afterwards), on the model itself: what it builds (a
    layer made on the first step, a hook, ``.data =``) is taken down and everything else
    given back (:func:`state_given_back` with ``undo_building``: t243, t247), but a write no
    copy can be made before (in TorchScript code), which a warning names. A copy of the model
    would not do: ``copy.deepcopy`` keeps closures and weak references to the original,
    which the copy's forward then writes, and unties parameters that share memory (t246).
    Nothing where that forward fails (a model that wants labels in training, a BatchNorm
    over one value): nothing is known of it then."""
    params = {n: p for n, p in model.named_parameters() if not is_lazy(p)}
    recorder = _Recorder(params, _owners(model), policy, embeddings)
    rng = RngSnapshot.take(model, batch)
    try:
        # from eval mode, so that a switch either way is watched, and given back; the uses
        # are recorded once in training mode (a train() override's own ops are none)
        given_back = state_given_back(model, undo_building=True)
        with rng.replayed(), given_back as given, evaluating(model), training(model), recorder:
            call_model(model, batch)
    except ModelExitedError:
        raise
    except ForwardFailedError as error:
        logger.info("no training-mode forward on the example inputs: %s", error)
        return Trained([], [])
    if not given.whole:
        logger.warning(
            "the training-mode forward on the example inputs wrote a parameter in a way no "
            "copy can give back: the model keeps its state as that forward left it"
        )
    return Trained(given.written, list(recorder.uses))


class _Reads(TorchFunctionMode):
    """Records which watched tensors (the very objects) each op reads, outside the forwards of
    the modules it is told are opaque."""

    def __init__(self, watched: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.watched = {id(tensor): name for name, tensor in watched.items()}
        self.held = list(watched.values())  # an id is only theirs while they live
        self.read: set[str] = set()
        self.inside = 0  # opaque forwards running

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:  # fmt: skip
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if self.inside or _metadata(name_of(func), result):  # .dtype, .shape: no values read
            return result
        for value in (*args, *kwargs.values()):
            for tensor in tensors_in(value):
                for seen in (tensor, tensor._base):  # the tensor, or what it views
                    if seen is not None and (name := self.watched.get(id(seen))):
                        self.read.add(name)
        return result


class _SecondFailed(Exception):
    """A second forward failed where the first ran (:func:`forward_reads` runs both again)."""

    def __init__(self, error: ForwardFailedError) -> None:
        super().__init__(str(error))
        self.error = error


def forward_reads(
    model: nn.Module,
    batch: Batch,
    watched: Mapping[str, torch.Tensor],
    opaque: Mapping[str, nn.Module],
    *,
    rng: RngSnapshot,
    discarded: Collection[str] = (),
) -> tuple[set[str], set[str], set[str]] | None:
    """The names of the ``watched`` tensors that a second forward of ``model`` reads (the very
    objects, or views made of them: a weight norm's ``v``, made from the old weight, shares
    its elements but is no view of it), the names of the ``opaque`` modules that ran, whose
    own forwards are not watched, and the names of the parameters either forward wrote in
    place. ``discarded``: parameters the caller throws away if written (the new g and v), whose
    writes leave the rest of the state given back (:func:`state_given_back`). The first forward
    is the model's first call, as training's first step: what it caches (a table computed from a
    weight once), the second reads from the cache. Both run in eval mode without grad, each
    drawing from ``rng``; afterwards every module's mode, its state (buffers and plain
    attributes: the cache made) and the random generators are as they were. Where the second
    fails on the state the first left (a streaming model's "call reset() first", t344), both
    run again, the plain attributes that hold no tensor given back between them (the flag, not
    the cache). None where a forward fails still: nothing is known of it then."""
    reads, ran = _Reads(watched), set()
    hooks = []
    for name, module in opaque.items():

        def enter(module: nn.Module, args: Any) -> None:
            reads.inside += 1

        def leave(module: nn.Module, args: Any, output: Any, name: str = name) -> None:
            reads.inside -= 1
            ran.add(name)

        hooks.append(module.register_forward_pre_hook(enter))
        hooks.append(module.register_forward_hook(leave, always_call=True))

    def twice(between: bool) -> GivenBack:
        with state_given_back(model, discarded=discarded) as given, evaluating(model):
            first = Attributes(model) if between else None
            with rng.replayed():
                call_model(model, batch)
            if first is not None:
                first.give_back(tensors_kept=True)
            ran.clear()
            with rng.replayed(), reads:
                try:
                    call_model(model, batch)
                except ForwardFailedError as error:
                    if between or isinstance(error, ModelExitedError):
                        raise
                    raise _SecondFailed(error) from error
        return given

    try:
        try:
            given = twice(between=False)
        except _SecondFailed as failed:  # a streaming model's "call reset() first" (t344)
            logger.info("a second forward on the state the first left failed: %s", failed.error)
            given = twice(between=True)
    except ModelExitedError:
        raise
    except ForwardFailedError as error:
        logger.warning(
            "not checked whether the forward reads each weight norm (run twice with them on, it "
            "failed: %s): a layer whose forward reads its old tensor, or a weight cached on "
            "its first call, would not train",
            error,
        )
        return None
    finally:
        for hook in hooks:
            hook.remove()
    return reads.read, ran, set(given.written)
