"""The paper's data-dependent initialization of weight-normed layers (Salimans & Kingma, 2016).

For each weight-normed Linear / Conv / ConvTranspose layer whose ``g`` is per output unit: draw
``v ~ N(0, 0.05^2)`` (``redraw=True``), set ``g = 1`` and ``b = 0``, feed one batch through the
network, and at each layer, in forward order, compute the pre-activation ``t = v . x / ||v||``,
its per-unit mean ``mu`` and (population) standard deviation ``sigma`` over the batch (and
positions), and set ``g = 1/sigma``, ``b = -mu/sigma``.

The pre-activation is the output of the op that consumes the layer's weight (``F.linear``,
``F.conv*d``, ``F.conv_transpose*d``), seen under a ``TorchFunctionMode``, not the module's
output: whatever the layer's forward does around the op (pads before it as a causal conv does,
applies an activation or reshapes after it) and whatever the model's own hooks do with the
module's output, the statistics are the op's own, at the op's unit axis (a Linear output's last
axis; a convolution output's channel axis, 1 batched ``(N, C, ...)`` or 0 unbatched ``(C, ...)``).
The layer's values are reset and initialized when its op runs, and that op gives back its
output of the values now set: the rest of the forward (the layer's own code after the op, the
hooks, every later layer) runs as the model runs, on initialized inputs. One pass, in order.
The op must get the weight as the layer computes it and the layer's own bias (or none): a
forward that changes the weight first (``F.linear(x, self.weight * 2)``, or in place:
``w.mul_(2)``), uses another op or adds another bias is declined with the reason, as is a layer
the batch never reaches, and one whose op runs inside a ``torch.func`` transform (``vmap``,
``grad``: no ``v`` can be drawn there, and ``g`` would be written with batched values); they
keep their values, which are only written once the op runs.
A layer whose op runs more than once in the forward (a layer applied in a loop, a weight read
once and used twice) is declined too: one ``g`` per unit cannot give each call's pre-activation
std 1. That is seen only when the second call runs, after the rest of the forward ran on the
layer's initialized output, so the pass is given back and run again without those layers
(one more forward for each round that finds such a layer). A layer whose ``g``, ``v`` or
bias shares a byte with another parameter or any buffer (a bias shared by two layers, a buffer
viewing it, its own module's too; a flat parameter made of the layers' values excepted:
:class:`_Sharing`), or is a tensor subclass that wraps others, is declined before the pass:
writing it would change that value too, and a shared bias set for one layer's statistics is
rewritten by the other's.

``rescale=True`` (the default) then sets ``v <- v * g/||v||`` per unit, so ``||v|| = g``: ``w``
and the outputs are unchanged, but the gradient step on ``w`` scales with ``(g/||v||)^2``, which
after the paper's init is ~400 in a small CNN's first layer; plain SGD then diverges, and with the
rescale SGD sees plain-sized steps (see docs/train.md for the measured effect).

Only what may change is written: a frozen bias (``requires_grad=False``) keeps its value and the
layer gets its scale only, as a layer without a bias does; a layer whose ``g`` or ``v`` is
frozen is kept. Layers whose ``g`` is not per output unit (RNNs, attention, embeddings,
ConvTranspose with ``dim=0``, ``dim=None``), weights of other modules (a ``ParameterList``,
GPT-2's ``Conv1D``) and the legacy hook keep their values, with a reason; so does, with
``redraw=False``, a layer whose ``v`` has an all-zero unit (0/0 there). ``only`` limits the
init to the weights it names (``apply_weight_norm`` gives those the user selected).
The batch runs in eval mode (dropout off) under ``torch.no_grad`` (an op the forward runs with
gradients enabled gives its output back with them: a force field's ``autograd.grad``), and each
pass gives the model's state back (:func:`~wnpass.fx.forward.state_given_back`: buffers and
plain attributes, a step counter, a stream's flag, a generator of the model's own), so that a
second pass starts
where the first did and the model ends with the state it was given, its ``g``, ``v`` and biases
initialized (a forward that builds the model further keeps what it built). A call that raises
(a batch that gives some layer no statistics, the model's own error, an interrupt) gives every
``g``, ``v`` and bias it wrote its value back: the model is as it was. A refusal raised inside a
layer's op fails the call even when the model's forward catches it (``try: self.a(x) except
Exception: self.b(x)``): the layer was reset for its init, and the batch is no better for it.
An error of the op itself (as it would raise with any values) that the forward catches leaves
that layer as it was, kept with the error as the reason.
A TorchScript module anywhere in the model is refused, as :func:`~wnpass.fx.analyse.require_eager`
says why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable, Collection, Iterator
from typing import Any

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.nn.utils.parametrizations import _WeightNorm
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from wnpass.arguments import require_flag
from wnpass.axes import OpKind, is_legacy_hook, output_unit_axis, unit_axis
from wnpass.errors import InvalidArgumentError, WnpassError
from wnpass.fx.analyse import require_eager
from wnpass.fx.arguments import (
    require_generator,
    require_module,
    require_names,
    require_trainable,
    require_values,
    require_within,
)
from wnpass.fx.attributes import own_generators
from wnpass.fx.axes import layer_kind
from wnpass.fx.forward import (
    Batch,
    GivenBack,
    RngSnapshot,
    as_batch,
    call_model,
    evaluating,
    forward_failed,
    state_given_back,
    what_it_did,
)
from wnpass.fx.memory import Bytes, Spans, is_wrapper
from wnpass.fx.register import (
    parametrized_here,
    stored_unit_dim,
    unit_norm_problem,
    units_text,
)
from wnpass.report import listed

__all__ = [
    "CONSTANT_ULPS",
    "MIN_VALUES",
    "RESCALE_ULPS",
    "V_INIT_STD",
    "V_INIT_STD_RANGE",
    "DataInitReport",
    "data_init",
]

logger = logging.getLogger(__name__)

V_INIT_STD = 0.05  # the paper's v ~ N(0, 0.05^2)
# The std a redrawn v may have. Its scale leaves the output alone (the layer uses v / ||v||)
# and only sets how far the first optimizer steps turn v; beyond these bounds the squares that
# ||v|| sums leave float32's and bfloat16's range (std 1e-25: squares of 1e-50 are 0; std 1e25:
# 1e50 is Inf) and the layer's output is NaN or constant, which read as a bad batch.
V_INIT_STD_RANGE = (1e-6, 1e6)
# Values per output unit (over the batch and positions) its mean and deviation are taken from.
MIN_VALUES = 2
# A unit whose pre-activations spread no more than this many units in the last place (of the
# layer's dtype, at its largest magnitude) over the batch is constant up to rounding (a batch of
# zeros, one example repeated): g = 1/sigma would be unbounded (1e6 with the paper's epsilon,
# and the unit's outputs on any other input as large), so such a batch is refused.
CONSTANT_ULPS = 4
# The init's result, checked on the batch it came from: each unit's pre-activation std 1 (and
# mean 0 where the bias was set) within this, or ``RESULT_ULPS`` of the op's dtype where that
# is coarser (bfloat16's). Ordinary batches land within 1e-6 in float32; one whose spread is at
# the rounding level of its values (``1 + 1e-6 * randn``, 8 float32 ulps: std 1.06, mean -0.09
# measured) passes CONSTANT_ULPS and is refused here instead.
RESULT_TOLERANCE = 1e-3
RESULT_ULPS = 16
# The rescale's check: the weight PyTorch computes from the rescaled v equals the weight
# before within the roundings of computing it: RESCALE_ULPS of the weight's dtype per element
# (v's rounding, the division and the product by g), plus the worst-case relative error of
# the norm PyTorch takes of a unit's n entries, a sum of n squares: n ulps of the type it sums
# in (float32 for the half types). Units of 25088 entries moved the weight PyTorch computes by
# up to 5 ulps in float32 and 30 in float64 when rescaled (measured); a v whose norm left its
# dtype's range gives a weight of 0, Inf or NaN, off by all of it (``_norm_in_range`` also
# refuses squares summed in subnormals, which the worst case here would let through).
RESCALE_ULPS = 4

# the ops whose output is a layer's pre-activation, by the name torch calls them
_OPS: dict[str, OpKind] = {
    "linear": "linear",
    **dict.fromkeys(("conv1d", "conv2d", "conv3d"), "conv"),
    **dict.fromkeys(("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"), "conv_transpose"),
    "conv_tbc": "conv_tbc",
}
_LAYER_WEIGHTS = "Linear, Conv and ConvTranspose weights"
_OP_NAMES: dict[OpKind, str] = {
    "linear": "F.linear",
    "conv": "a convolution",
    "conv_transpose": "a transposed convolution",
    "conv_tbc": "torch.conv_tbc",
}


@dataclasses.dataclass
class DataInitReport:
    """Which weights were data-initialized, and why the others were not."""

    initialized: list[str] = dataclasses.field(default_factory=list)
    kept: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> reason
    # initialized weights whose layer kept its bias (or has none): name -> why ("no bias")
    scale_only: dict[str, str] = dataclasses.field(default_factory=dict)
    rescaled: bool = True

    def __bool__(self) -> bool:
        return bool(self.initialized)


@dataclasses.dataclass(frozen=True)
class _Target:
    """A layer to initialize: its weight's name and the op kind of the table."""

    name: str
    kind: OpKind


def _plist(module: nn.Module, name: str = "weight") -> Any:
    """The ParametrizationList of ``module.<name>`` (typed loosely: nn.Module's __getattr__)."""
    return module.parametrizations[name]  # type: ignore[index]


def _why_not(module: nn.Module, tensor_name: str, redraw: bool) -> str | None:
    """None when ``module.<tensor_name>`` (weight-normed) can be data-initialized; else why."""
    layer = parametrize.type_before_parametrizations(module).__name__
    plist = _plist(module, tensor_name)
    if len(plist) != 1:
        return "stacked with other parametrizations: g and v are not the weight's alone"
    kind = layer_kind(module, tensor_name)
    if isinstance(module, nn.RNNBase):
        return f"{layer}: its gates' pre-activations stay inside the op (no output to normalize)"
    if isinstance(module, nn.MultiheadAttention):
        return f"{layer}: its projections stay inside the op (no output to normalize)"
    if isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear):  # t157
        return (
            "MultiheadAttention's out_proj: its projection stays inside the op (no output to "
            "normalize)"
        )
    if kind == "embedding":
        return f"{layer}: a lookup, no pre-activation"
    if kind is None:
        return f"{layer}.{tensor_name}: data init initializes {_LAYER_WEIGHTS}"
    norm: _WeightNorm = plist[0]
    groups = int(getattr(module, "groups", 1))
    unit = unit_axis(kind, list(plist.original1.shape), groups=groups, advise=False)
    if isinstance(unit, str):
        return f"{unit}: g is not per output unit"
    stored = stored_unit_dim(norm.dim, plist.original1.dim())
    if stored is None:
        return f"g is one number for the whole weight (dim=None), not per output unit (axis {unit})"
    if stored != unit:
        return f"g is per axis {stored}, not per output unit (axis {unit})"
    if not (plist.original0.requires_grad and plist.original1.requires_grad):
        return "g or v frozen (requires_grad=False): not re-initialized"
    held = (plist.original0, plist.original1, getattr(module, "bias", None))
    wrapper = next((t for t in held if isinstance(t, torch.Tensor) and is_wrapper(t)), None)
    if wrapper is not None:
        return (
            f"g, v or its bias is a {type(wrapper).__name__} (a tensor subclass wrapping "
            "others): data init writes plain tensors"
        )
    if not redraw:
        return unit_norm_problem(plist.original1, stored)
    return None


def _candidates(
    model: nn.Module, report: DataInitReport, redraw: bool, only: Collection[str] | None
) -> dict[nn.Module, _Target]:
    """The layers to initialize; every other weight-normed weight (of ``only``, if given) is
    in ``report.kept`` with the reason. A name of ``only`` that is no weight-normed weight of
    the model is an error (a typo would otherwise initialize nothing, silently).

    Without ``redraw`` the init keeps ``v``: a unit of ``v`` with no direction (all zero) has
    pre-activation 0/0 and would get ``g = NaN``; such a layer is kept, with the reason.
    """
    targets: dict[nn.Module, _Target] = {}
    sharing = _Sharing(model)
    normed: set[str] = set()
    # every name of each module (a layer held twice, ``self.alias = self.a``, has two), as
    # ``apply_weight_norm``'s ``include`` takes them; a weight is reported by its first
    prefixes: dict[int, list[str]] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        prefixes.setdefault(id(module), []).append(f"{prefix}." if prefix else "")

    def chosen(module: nn.Module, tensor_name: str) -> bool:
        names = {prefix + tensor_name for prefix in prefixes[id(module)]}
        normed.update(names)
        return only is None or not names.isdisjoint(only)

    for prefix, module in model.named_modules():
        prefix = f"{prefix}." if prefix else ""
        for hook in module._forward_pre_hooks.values():
            if is_legacy_hook(hook) and chosen(module, hook.name):
                report.kept[prefix + hook.name] = "legacy weight_norm hook: not re-initialized"
        if not parametrized_here(module):
            continue
        for tensor_name, plist in module.parametrizations.items():
            name = prefix + tensor_name
            if not any(isinstance(p, _WeightNorm) for p in plist):
                continue
            if not chosen(module, tensor_name):
                continue
            reason = _why_not(module, tensor_name, redraw) or sharing.reason(
                module, prefixes[id(module)]
            )
            if reason is not None:
                report.kept[name] = reason
                continue
            kind = layer_kind(module, tensor_name)
            assert kind is not None
            targets[module] = _Target(name, kind)
    if only is not None and (unknown := sorted(set(only) - normed)):
        raise InvalidArgumentError(
            f"{listed([repr(name) for name in unknown])}: no weight-normed weight of the model",
            parameter="only",
        )
    return targets


class _Sharing:
    """Every parameter and buffer of a model under each of its names (a parametrized weight's
    ``original0``/``original1`` too; a wrapper's by the tensors it wraps) by where it lies in
    memory (:class:`~wnpass.fx.memory.Spans`), the bytes each holds
    (:class:`~wnpass.fx.memory.Bytes`), and which parameters are flat storage: each found once
    for all the layers of a pass (t227: per layer, minutes over a flat parameter)."""

    def __init__(self, model: nn.Module) -> None:
        self.spans = Spans(
            [
                *model.named_parameters(remove_duplicate=False),
                *model.named_buffers(remove_duplicate=False),
            ]
        )
        self.bytes = Bytes()
        self._covered: dict[int, tuple[torch.Tensor, bool]] = {}

    def reason(self, module: nn.Module, names: Collection[str]) -> str | None:
        """None when no value data init would write in ``module`` (``g``, ``v``, its bias)
        shares a byte with a parameter or buffer other than itself under the layer's own
        names (``names``: the module's, ``a.`` and ``alias.`` for one held twice); else why
        the layer is declined: writing the value would change what holds it too (reported
        untouched), two layers sharing a bias would each set it for their own statistics, the
        later one undoing the earlier, and a buffer is given back after the pass, which put
        the old values back under a layer reported initialized (t217: another module's
        buffer; t219: its own, or an alias through another storage; t220: a parameter made of
        the bias's ``.data``; t227: a wrapper's). A bias the layer holds as its own buffer
        ``bias`` is the layer's, and the pass keeps the value it sets (t73); a flat parameter
        that holds the value among others is storage (:meth:`flat_storage`). Bytes are
        compared exactly: columns of one table share none (t220)."""
        originals = _plist(module)
        bias, _ = _writable_bias(module)
        slots = {
            "g": ("parametrizations.weight.original0", originals.original0),
            "v": ("parametrizations.weight.original1", originals.original1),
            "its bias": ("bias", bias),
        }
        for what, (slot, tensor) in slots.items():
            if tensor is None:
                continue
            own = {prefix + slot for prefix in names}
            others = dict.fromkeys(  # once each: a nested buffer has a part per component
                name
                for name, other in self.spans.overlapping(tensor)
                if not (other is tensor and name in own)
                and self.bytes.meet(other, tensor)
                and not self.flat_storage(other, tensor)
            )
            if others:
                return (
                    f"{what} is also {', '.join(others)}: writing it would change "
                    f"{'that' if len(others) == 1 else 'those'} too, not this layer alone"
                )
        return None

    def flat_storage(self, held: torch.Tensor, tensor: torch.Tensor) -> bool:
        """Whether ``held`` is a parameter that holds all of ``tensor``'s bytes and more,
        every byte of it one of the parameters strictly inside it: a flat parameter the
        layers' values are views of, storage rather than a value of its own (its values are
        the ones set: t131). One with bytes no such parameter holds is a value (a fused
        ``qkv`` weight whose rows ``q`` took with ``.data``: writing q's wrote qkv's, t221;
        the rows between a strided ``q``'s, t224); a twin of it, one that holds it in turn,
        or a view of its bytes in another dtype, is no layer's part of it (t222, t224)."""
        if not isinstance(held, nn.Parameter) or not self.bytes.strictly_within(tensor, held):
            return False
        cached = self._covered.get(id(held))
        if cached is None or cached[0] is not held:
            parts = [
                other
                for _, other in self.spans.overlapping(held)
                if isinstance(other, nn.Parameter) and self.bytes.strictly_within(other, held)
            ]
            cached = (held, self.bytes.covered(held, parts))
            self._covered[id(held)] = cached
        return cached[1]


def _unit_shape(tensor: torch.Tensor, axis: int) -> list[int]:
    shape = [1] * tensor.dim()
    shape[axis] = tensor.shape[axis]
    return shape


def _reduce_dims(ndim: int, axis: int) -> list[int]:
    axis %= ndim
    return [d for d in range(ndim) if d != axis]


def _layer(module: nn.Module, name: str) -> str:
    """``layer 0 (Linear)`` for a weight ``0.weight``: how an error names the layer."""
    prefix = name.rpartition(".")[0]
    kind = parametrize.type_before_parametrizations(module).__name__
    return f"layer {prefix} ({kind})" if prefix else f"layer {kind}"


def _statistics(
    t: torch.Tensor, axis: int, layer: str, dtype: torch.dtype, scale_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output unit (``axis``): the mean and standard deviation of ``t`` (the float64 values
    of an op output of ``dtype``) over the batch and positions.

    Refused, naming the layer, when they mean nothing: fewer than ``MIN_VALUES`` values per
    unit (an empty batch, or one example of a Linear layer), NaN/Inf among the pre-activations
    (g and b would be NaN), a unit constant up to rounding (``CONSTANT_ULPS``: g = 1/sigma
    would be unbounded), or one so small that 1/sigma is no number in ``scale_dtype`` (g's).
    """
    dims = _reduce_dims(t.dim(), axis)
    values = t.numel() // max(t.shape[axis], 1)
    if values < MIN_VALUES:
        raise InvalidArgumentError(
            f"gives {layer} {values} value{'s' if values != 1 else ''} per output unit (over "
            f"the batch and positions); each unit's mean and standard deviation need at least "
            f"{MIN_VALUES}: give a batch that brings it more (more examples; where the forward "
            "routes part of the batch to it, as to an expert, a larger or more varied one), or "
            "leave the layer out",
            parameter="batch",
        )
    mu, sigma = t.mean(dim=dims), t.std(dim=dims, unbiased=False)
    if not bool(torch.isfinite(mu).all() and torch.isfinite(sigma).all()):
        raise InvalidArgumentError(
            f"gives {layer} pre-activations that are NaN or Inf: no mean and standard deviation "
            "to initialize it from",
            parameter="batch",
        )
    rounding = CONSTANT_ULPS * torch.finfo(dtype).eps * t.abs().amax(dim=dims)
    for bad, what, why in (
        (sigma <= rounding, f"are the same over the batch and positions (within {CONSTANT_ULPS} "
         f"{_dtype(dtype)} ulps)", ": no spread to scale to 1; give a batch of different examples"),
        (~torch.isfinite((1.0 / sigma).to(scale_dtype)), "spread too little for g = 1/sigma to "
         f"be a {_dtype(scale_dtype)} number", ""),
    ):  # fmt: skip
        if bool(bad.any()):
            where = units_text(
                [int(i) for i in bad.nonzero().flatten()], len(sigma), axis % t.dim()
            )
            raise InvalidArgumentError(
                f"gives {layer} pre-activations that {what} in {where} of its output{why}",
                parameter="batch",
            )
    return mu, sigma


def _computed_in(output: torch.Tensor, kind: OpKind) -> tuple[str, float]:
    """The precision the op computed its float32 output in, as a name and its epsilon: its
    dtype's, or TensorFloat-32's (10 mantissa bits) on CUDA where PyTorch lets the op use it
    (cuDNN convolutions by default, ``torch.backends.cudnn.allow_tf32``; matrix products with
    ``torch.backends.cuda.matmul.allow_tf32``)."""
    if output.is_cuda and output.dtype == torch.float32:
        convolution = kind in ("conv", "conv_transpose")
        allowed = (
            torch.backends.cudnn.allow_tf32
            if convolution
            else torch.backends.cuda.matmul.allow_tf32
        )
        if allowed:
            return "TF32", 2.0**-10
    return _dtype(output.dtype), float(torch.finfo(output.dtype).eps)


def _check_result(
    t: torch.Tensor,
    axis: int,
    layer: str,
    precision: tuple[str, float],
    set_mean: bool,
    offset: float,
) -> None:
    """Refuse an init whose pre-activations (``t``, the float64 values of the op's output on
    the batch, with the values just set) are not what it promises: std 1 per unit, and mean 0
    where the bias was set, within ``RESULT_TOLERANCE`` or ``RESULT_ULPS`` of the
    ``precision`` the op computed in (:func:`_computed_in`), where that is coarser. ``offset``:
    the units' largest mean before the init, in standard deviations, which the op's rounding
    multiplies: what the message blames."""
    dims = _reduce_dims(t.dim(), axis)
    mu, sigma = t.mean(dim=dims), t.std(dim=dims, unbiased=False)
    name, eps = precision
    tolerance = max(RESULT_TOLERANCE, RESULT_ULPS * eps)
    off = (sigma - 1).abs() > tolerance
    if set_mean:
        off |= mu.abs() > tolerance
    off |= ~(torch.isfinite(mu) & torch.isfinite(sigma))
    if bool(off.any()):
        worst = int(off.nonzero().flatten()[0])
        where = units_text([int(i) for i in off.nonzero().flatten()], len(sigma), axis % t.dim())
        raise InvalidArgumentError(
            f"gives {layer} pre-activations that the init cannot bring to std 1"
            f"{' and mean 0' if set_mean else ''} in {where} of its output (unit {worst}: mean "
            f"{float(mu[worst]):.3g}, std {float(sigma[worst]):.3g}, with tolerance "
            f"{tolerance:g}): their mean is up to {offset:.3g} times their spread, which "
            f"{name}'s rounding of the layer's own arithmetic leaves that far off; give "
            "a batch of different examples, or centered ones",
            parameter="batch",
        )


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _operand(args: tuple[Any, ...], kwargs: dict[str, Any], position: int, name: str) -> Any:
    """An op's argument given by position or by keyword."""
    return args[position] if len(args) > position else kwargs.get(name)


def _call_with_weight(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], weight: torch.Tensor
) -> Any:
    """The op called with another weight (its second operand, ``weight=``), on the values
    the layer has now: autocast's cached casts of parameters (a bias cast to bfloat16 before
    it was written) are dropped first, or the op would use the old values."""
    torch.clear_autocast_cache()
    if len(args) > 1:
        return func(args[0], weight, *args[2:], **kwargs)
    return func(*args, **{**kwargs, "weight": weight})


def _written_by_init(module: nn.Module) -> list[torch.Tensor]:
    """What data init writes of a layer: its ``g`` and ``v``, and its bias where it may."""
    originals = _plist(module)
    bias, _ = _writable_bias(module)
    return [originals.original0, originals.original1, *([bias] if bias is not None else [])]


def _writable_bias(module: nn.Module) -> tuple[torch.Tensor | None, str | None]:
    """The layer's bias when data init may set it; else None and why it gets its scale only."""
    bias = getattr(module, "bias", None)
    if not isinstance(bias, torch.Tensor):
        return None, "no bias"
    if not bias.requires_grad:
        return None, "bias frozen"
    return bias, None


class _InitPass(TorchFunctionMode):
    """One forward of the batch that initializes each target layer at its op.

    A forward hook on each target's ``ParametrizationList`` records the weight it computes
    (weakly, with its :func:`_state_of` then: an in-place change before the op shows); an op
    consuming a recorded weight is that layer's. Its first such op resets and initializes the
    layer and gives back its output of the values now set; a later one is counted in
    ``repeated`` (the caller gives the pass back and runs it again without that layer). A
    refusal (or an interrupt) raised while a layer is initialized is kept in ``failure``: the
    forward may catch it, and the call must fail all the same. An error of the op itself (as
    the op would raise with any values) gives the layer its values back and reports it kept,
    in case the forward catches it and goes on.
    """

    def __init__(
        self,
        targets: dict[nn.Module, _Target],
        report: DataInitReport,
        *,
        rescale: bool,
        redraw: bool,
        std: float,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        self.targets, self.report = targets, report
        self.rescale, self.redraw, self.std, self.generator = rescale, redraw, std, generator
        self.weights: Any = WeakIdKeyDictionary()  # computed weight -> (layer, _state_of it)
        self.computed: set[nn.Module] = set()  # layers whose weight was computed
        self.reached: set[nn.Module] = set()  # layers whose op ran: initialized or kept
        self.initialized: set[nn.Module] = set()
        self.repeated: dict[nn.Module, int] = {}  # initialized layer -> how often its op ran
        self.failure: BaseException | None = None
        self.saved: list[tuple[torch.Tensor, torch.Tensor]] = []  # what was written, as it was
        # a bias that is a buffer or a plain tensor, not a parameter, as it was set: the model's
        # state given back after the pass gives it its old value, and it is put again (the
        # parameters set are given back as set: ``GivenBack.keep``)
        self.set: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.given = GivenBack()  # the pass's (:meth:`watching`)
        self.plain: set[int] = set()  # ids of written tensors neither parameters nor buffers
        # each layer v was drawn for, and the generator's state after that draw
        self.draws: list[tuple[nn.Module, torch.Tensor]] = []

    @contextlib.contextmanager
    def watching(self, given: GivenBack) -> Iterator[None]:
        """The weights the targets compute are recorded, and their ops seen, in the block;
        ``given``: the state given back after it, told what the pass sets."""
        self.given = given
        owners = {_plist(module): module for module in self.targets}

        def record(plist: nn.Module, args: Any, weight: torch.Tensor) -> None:
            module = owners[plist]
            self.weights[weight] = (module, _state_of(weight))
            self.computed.add(module)

        handles = [plist.register_forward_hook(record) for plist in owners]
        try:
            with self:
                yield
        finally:
            for handle in handles:
                handle.remove()

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        kind = _OPS.get(getattr(func, "__name__", ""))
        weight = _operand(args, kwargs, 1, "weight") if kind is not None else None
        if not isinstance(weight, torch.Tensor) or (entry := self.weights.get(weight)) is None:
            return func(*args, **kwargs)
        module, state = entry
        if module in self.initialized:
            self.repeated[module] = self.repeated.get(module, 1) + 1
        if module in self.reached:
            return func(*args, **kwargs)
        self.reached.add(module)
        reason = self._why_not_here(module, kind, _changed(weight, state), args, kwargs)
        if reason is not None:
            self.report.kept[self.targets[module].name] = reason
            return func(*args, **kwargs)
        mark, drawn_from = len(self.saved), self.generator.get_state()
        try:
            return self._initialize(module, func, args, kwargs, torch.is_grad_enabled())
        except Exception as error:
            if isinstance(error, WnpassError):  # the batch's refusal: the call fails
                self.failure = error
            else:  # the op's own error, as with any values: the forward may go on without it
                self.give_back(mark)  # its values, and its draw: the next v is the one a
                self.generator.set_state(drawn_from)  # call without it draws (t191)
                self.draws = [(m, state) for m, state in self.draws if m is not module]
                self.report.kept[self.targets[module].name] = (
                    f"{_OP_NAMES[self.targets[module].kind]} of its weight {what_it_did(error)} "
                    "and the forward went on without it: no pre-activation"
                )
            raise
        except BaseException as error:  # an interrupt: the call fails
            self.failure = error
            raise

    def _why_not_here(
        self,
        module: nn.Module,
        kind: OpKind | None,
        changed: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> str | None:
        """None when this op's output is the layer's pre-activation; else why it is not
        (``changed``: the weight was changed in place since the layer computed it)."""
        target = self.targets[module]
        expected = _OP_NAMES[target.kind]
        if kind != target.kind:
            return f"its weight goes to another op than {expected}: no known pre-activation"
        if _in_functorch_transform():
            return (
                f"its {expected} runs inside a torch.func transform (vmap, grad): its values "
                "cannot be drawn or written there"
            )
        if changed:
            return (
                f"its forward changes the weight in place before {expected}: "
                "no known pre-activation"
            )
        bias = getattr(module, "bias", None)
        if _operand(args, kwargs, 2, "bias") is not (
            bias if isinstance(bias, torch.Tensor) else None
        ):
            return f"its forward gives {expected} another bias than the layer's own"
        return None

    @property
    def drawn_to(self) -> torch.Tensor | None:
        """The generator's state after the last v drawn; None where none was (a layer whose
        op failed gives its v back, and its draw too, t190)."""
        return self.draws[-1][1] if self.draws else None

    def _reset(self, module: nn.Module) -> None:
        """``v`` redrawn (``redraw``), ``g = 1``, the bias (where it may change) 0: saved first."""
        originals = _plist(module)
        bias, _ = _writable_bias(module)
        written = _written_by_init(module)
        # as they were before the pass: the copies that give the model's state back, shared
        self.saved += [(tensor, self.given.copy_of(tensor)) for tensor in written]
        buffers = {id(b) for b in module.buffers(recurse=False)}
        self.plain.update(  # neither a parameter nor a buffer: the state given back has none
            id(t) for t in written if not self.given.tracks(t) and id(t) not in buffers
        )
        v = originals.original1
        if self.redraw:  # on the generator's device: a CUDA one draws there (t188)
            drawn = torch.randn(
                v.shape, generator=self.generator, dtype=v.dtype, device=self.generator.device
            )
            v.copy_((drawn * self.std).to(v.device))
            self.draws.append((module, self.generator.get_state()))
        originals.original0.fill_(1.0)
        if bias is not None:
            bias.zero_()

    @torch.no_grad()  # also under a forward's enable_grad(): g, v and b are written in place
    def _initialize(
        self,
        module: nn.Module,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        grad: bool,
    ) -> Any:
        """Reset the layer, run its op on the reset values and set ``g`` (and ``b``) from the
        output's statistics per unit; the op's output of the values now set, computed with
        gradients where the forward computes them (``grad``: a force field's forward takes
        ``autograd.grad`` of its energy through the layer)."""
        originals = _plist(module)
        target = self.targets[module]
        self._reset(module)
        g, v = originals.original0, originals.original1
        weight = originals()
        if self.redraw and not bool(torch.isfinite(weight).all()):
            raise InvalidArgumentError(
                f"{self.std:g} draws a v that {_layer(module, target.name)} cannot "
                f"normalize in {v.dtype} (its entries or their squares overflow or "
                f"underflow); the default is {V_INIT_STD}",
                parameter="std",
            )
        output = _call_with_weight(func, args, kwargs, weight)
        # a convolution's output has its input's rank: (N, C, ...) or unbatched (C, ...)
        axis = output_unit_axis(target.kind, output.dim(), v.dim())
        assert isinstance(axis, int), axis  # the op ran: its input had one of its layouts
        layer = _layer(module, target.name)
        mu, sigma = _statistics(output.double(), axis, layer, output.dtype, g.dtype)
        g.copy_((1.0 / sigma).reshape(g.shape).to(g.dtype))
        bias, why = _writable_bias(module)
        if bias is not None:
            bias.copy_((-mu / sigma).to(bias.dtype))
        else:
            self.report.scale_only[target.name] = str(why)
        if self.rescale:
            self._rescale(module, originals, layer)
        with torch.set_grad_enabled(grad):
            output = _call_with_weight(func, args, kwargs, originals())
        offset = float((mu.abs() / sigma).max())  # how far the bias must cancel, in stds
        precision = _computed_in(output, target.kind)
        _check_result(output.double(), axis, layer, precision, bias is not None, offset)
        if bias is not None and not self.given.tracks(bias):  # given back with the state
            self.set.append((bias, bias.detach().clone()))
        self.given.set_by(_written_by_init(module))  # given back as set, once the pass is done
        self.initialized.add(module)
        self.report.initialized.append(target.name)
        logger.debug("data init %s", target.name)
        return output

    @staticmethod
    def _rescale(module: nn.Module, originals: Any, layer: str) -> None:
        """``v <- v * g/||v||`` per unit: the same weight, its ``||v||`` now ``g``; refused
        where the weight PyTorch computes from them is another (``||v||`` then beyond the
        range of v's dtype: g of 1e20 from a batch of values near 1e-20 makes its squares
        inf, and the weight 0)."""
        g, v = originals.original0, originals.original1
        before = originals()
        dim = originals[0].dim
        v_norm = torch.linalg.vector_norm(v.double(), dim=_reduce_dims(v.dim(), dim), keepdim=True)
        v.copy_((v.double() * (g.double().reshape(_unit_shape(v, dim)) / v_norm)).to(v.dtype))
        after = originals()
        close = _norm_in_range(v, g, dim) and _same_weight(before, after, v.numel() // g.numel())
        if not close:
            raise InvalidArgumentError(
                f"gives {layer} a g of up to {float(g.abs().max()):.3g}: rescaled to ||v|| = g, "
                f"v's norm leaves {_dtype(_summed_in(v.dtype))}'s range (its squares overflow, "
                "or are too small to be summed to the weight's precision) and PyTorch may "
                "compute another weight; give a batch of ordinary scale (or, in Python, "
                "rescale=False)",
                parameter="batch",
            )

    def finish(self) -> None:
        """Report the targets no op of the batch initialized (their values were not written)."""
        for module, target in self.targets.items():
            if module in self.reached:
                continue
            if module in self.computed:
                self.report.kept[target.name] = (
                    f"its weight does not reach {_OP_NAMES[target.kind]} as the layer computes it "
                    "(the forward changes it first, or uses another op): no known pre-activation"
                )
            else:
                self.report.kept[target.name] = "not called on the batch"

    @torch.no_grad()
    def put_set(self) -> None:
        """Write each value the pass set again, in place (after the model's state was given
        back, which gives a bias that is no parameter its old value)."""
        for tensor, value in self.set:
            tensor.copy_(value)

    @torch.no_grad()
    def forget(self) -> None:
        """Drop the values saved of parameters and buffers, given back by the state given
        back; write back the rest (a bias that is a plain tensor of a PyTorch layer, whose
        attributes are not followed, t131)."""
        for tensor, value in reversed(self.saved):
            if id(tensor) in self.plain:
                tensor.copy_(value)
        self.saved.clear()
        torch.clear_autocast_cache()  # no cast of a value written stays in use

    @torch.no_grad()
    def give_back(self, mark: int = 0) -> None:
        """Copy each value saved since the ``mark``-th back, in place: the caller's parameters
        stay the same objects, ``requires_grad`` and all. In reverse order, so that a tensor
        saved twice ends with the value saved first, the one it had before."""
        for tensor, value in reversed(self.saved[mark:]):
            tensor.copy_(value)
        del self.saved[mark:]
        torch.clear_autocast_cache()  # no cast of a value written stays in use


def _in_functorch_transform() -> bool:
    """Whether this runs inside a ``torch.func`` transform (``vmap``, ``grad``): a tensor
    drawn there is a random op vmap refuses, and a parameter written in place there is
    written with batched or traced values."""
    return torch._C._functorch.maybe_current_level() is not None


def _summed_in(dtype: torch.dtype) -> torch.dtype:
    """The type PyTorch sums a norm's squares in: float32 for the half types."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _norm_in_range(v: torch.Tensor, g: torch.Tensor, dim: int) -> bool:
    """Whether the squares PyTorch sums for ``||v||`` of each unit stay in the range of the
    type it sums them in: their sum, ``g**2`` after the rescale, below its largest value, and
    the squares that are subnormal there (each off by up to its smallest subnormal, ``tiny *
    eps``) too few to move the norm by ``RESCALE_ULPS`` ulps of v's dtype (``count * tiny *
    eps <= RESCALE_ULPS * eps(v) * g**2``). A batch far from unit scale gives a g of 1e-20,
    whose units' squares are all subnormal in float32: the norm is then off by percents (5.5%
    for 1e6 entries, t73), within the worst-case rounding ``_same_weight`` allows."""
    info = torch.finfo(_summed_in(v.dtype))
    squares = g.double().reshape(-1) ** 2
    units = v.detach().double().movedim(dim, 0).reshape(g.numel(), -1)
    subnormal = ((units != 0) & (units.abs() < math.sqrt(info.tiny))).sum(dim=1)
    moved = subnormal * info.tiny * info.eps  # the most they move the sum of squares
    allowed = RESCALE_ULPS * torch.finfo(v.dtype).eps * squares
    return bool((squares < info.max).all()) and bool((moved <= allowed).all())


def _same_weight(before: torch.Tensor, after: torch.Tensor, per_unit: int) -> bool:
    """Whether ``after``, the weight PyTorch computes from the rescaled ``v``, is ``before``
    up to the roundings of computing them: ``RESCALE_ULPS`` of the weight's dtype per element,
    plus the worst-case error of a norm of ``per_unit`` squares (``per_unit`` ulps of the type
    they are summed in); finite, and nonzero where ``before`` is (a weight of 0 is off by all
    of it, also where that bound is 1 or more)."""
    rtol = (
        RESCALE_ULPS * torch.finfo(before.dtype).eps
        + per_unit * torch.finfo(_summed_in(before.dtype)).eps
    )
    difference = (after.double() - before.double()).abs()
    return (
        bool(torch.isfinite(after).all())
        and bool((difference <= rtol * before.double().abs()).all())
        and bool(((after != 0) | (before == 0)).all())
    )


def _state_of(weight: torch.Tensor) -> int | torch.Tensor:
    """What shows an in-place change of a computed weight later (:func:`_changed`): its
    version counter, or a copy of its values where it keeps none (computed in a forward that
    enters ``torch.inference_mode()`` itself)."""
    return weight.detach().clone() if weight.is_inference() else weight._version


def _changed(weight: torch.Tensor, state: int | torch.Tensor) -> bool:
    """Whether ``weight`` was changed in place since its :func:`_state_of` was ``state``."""
    if isinstance(state, int):
        return weight._version != state
    same = (weight == state) | (weight.isnan() & state.isnan())
    return not bool(same.all())


def _run_pass(model: nn.Module, inputs: Batch, run: _InitPass) -> None:
    """One forward of ``inputs`` under ``run``. On any exception, and when the forward caught
    one raised while a layer was initialized (that layer is reset, not initialized), every
    value written is given back and the exception raised (the model's own, as
    :func:`call_model` words it): by the state given back, which has each value as it was
    before the pass (before a write of the forward's own too); where that gave nothing back
    (the forward built the model further), from the pass's own copies."""
    given: GivenBack | None = None
    try:
        # not in inference mode, where the computed weights would keep no _version (a forward
        # that enters it itself is seen through copies: _state_of)
        with (
            torch.no_grad(),
            torch.inference_mode(False),
            # each pass starts from the model's state as given, parameters the model's forward
            # writes too, and the switch to eval mode and back (a LoRA layer's merge and
            # unmerge, t256); the parameters the pass sets are given back as set once it is done
            state_given_back(model) as given,
            evaluating(model),
            run.watching(given),
        ):
            call_model(model, inputs, "the batch")  # the model's exception or sys.exit()
            if run.failure is None:  # what the pass set stays; else all comes back as it was
                given.keep()
        if (failure := run.failure) is not None:
            if isinstance(failure, WnpassError):
                raise failure
            raise forward_failed(model, failure, "the batch") from failure
        run.put_set()
    except BaseException:
        if given is not None and given.whole and not given.kept:
            run.forget()  # every parameter came back as it was before the pass
        else:
            run.give_back()
        raise


def data_init(
    model: nn.Module,
    batch: Any,
    *,
    rescale: bool = True,
    redraw: bool = True,
    std: float = V_INIT_STD,
    generator: torch.Generator | None = None,
    only: Collection[str] | None = None,
) -> DataInitReport:
    """Data-dependent init of every weight-normed layer of ``model`` on ``batch``, in place.

    ``only``: the weights (``"0.weight"``; a layer held under two names by either) to
    initialize; None: every one. ``std``: of the
    entries of the redrawn ``v``, within :data:`V_INIT_STD_RANGE`. ``generator``: the one
    ``v`` is drawn from, left after the last ``v`` it gave; by default one of data init's own,
    seeded by one draw of torch's, which is all the caller's generators move by (the
    forward's own draws are replayed and given back). A batch that gives
    a layer no statistics (fewer than ``MIN_VALUES`` values per unit, NaN/Inf pre-activations
    or a constant unit) is an :class:`~wnpass.errors.InvalidArgumentError` about ``batch``
    naming the layer; it is found only by running the batch through the layers before it, so
    on that error (or any other) every value written so far is given back and the model is
    left as it was.
    """
    require_flag("rescale", rescale)
    require_flag("redraw", redraw)
    std = require_within("std", std, *V_INIT_STD_RANGE)
    require_generator("generator", generator)
    names = require_names("only", only)
    require_values(require_module(model))
    require_trainable(model)
    require_eager(model)
    inputs = as_batch(batch, "batch")
    # v is drawn on a generator of its own, seeded by one draw of torch's: the forward's noise
    # (torch's, replayed from where that draw leaves it) is not v's numbers (t187), and the
    # caller's generators move by that draw alone (t180), none where no v is drawn (t188).
    # Torch's own generator passed (random_split's default) is torch's (t184). A generator
    # passed is left after the last v it gave: where the forward draws from it too, no later
    # draw repeats v's numbers (t189). A call that fails gives every generator back
    drawn_from = RngSnapshot.take(model, inputs)
    own = generator is None or generator is torch.default_generator
    if own:  # on the CPU whatever the default device (a meta one had no value to read, t189)
        seed = int(torch.randint(0, 2**63 - 1, (), device="cpu"))
        draws = torch.Generator().manual_seed(seed)
        forward_from = drawn_from.again()  # torch's (also as an input's) after the draw
    else:
        assert generator is not None  # for the type checker
        draws, forward_from = generator, drawn_from
        if (twin := _same_state(generator, model, drawn_from)) is not None:
            logger.warning(
                "data init: the generator passed is in the state of %s: v is drawn as the "
                "numbers the forward draws from it (seed it otherwise)",
                twin,
            )
    start = draws.get_state()

    def rewind() -> None:
        """Each round of the pass draws as the first did: v from where the call started, the
        forward from the generators as the caller left them (t184)."""
        draws.set_state(start)
        forward_from.restore()

    try:
        with forward_from.replayed():
            report, drawn_to = _data_init(model, inputs, rescale, redraw, std, draws, names, rewind)
    except BaseException:
        drawn_from.restore()
        draws.set_state(start)
        raise
    if own and drawn_to is None:  # no v drawn: no seed either
        torch.set_rng_state(drawn_from.cpu)
    elif not own:  # the model's own, given back with the model's state, is set here too
        draws.set_state(start if drawn_to is None else drawn_to)
    return report


def _same_state(generator: torch.Generator, model: nn.Module, now: RngSnapshot) -> str | None:
    """Which other generator a forward may draw from is in ``generator``'s state, if one is:
    torch's of its device, one of the model's own, one among the inputs (t188, t190)."""
    state, device = generator.get_state(), generator.device

    def alike(other: torch.Tensor) -> bool:
        return other.shape == state.shape and torch.equal(other, state)

    if device.type == "cpu" and alike(now.cpu):
        return "torch's"
    if device.type == "cuda" and alike(now.cuda.get(device.index or 0, torch.empty(0))):
        return f"torch's on {device}"

    def twin(other: object) -> bool:
        return (
            isinstance(other, torch.Generator)
            and other is not generator
            and other.device == device
            and alike(other.get_state())
        )

    for name, held in own_generators(model):  # in a list or dict too (t195)
        if twin(held):
            return f"the model's {name}"
    if any(twin(other) for other, _ in now.given):
        return "a generator among the inputs"
    return None


def _data_init(
    model: nn.Module,
    inputs: Batch,
    rescale: bool,
    redraw: bool,
    std: float,
    generator: torch.Generator,
    names: set[str] | None,
    rewind: Callable[[], None],
) -> tuple[DataInitReport, torch.Tensor | None]:
    """The pass, in rounds (see :func:`data_init`); the report, and the state of ``generator``
    after the last v of the last round (None: that round drew none, or there was none)."""
    found = DataInitReport(rescaled=rescale)
    drawn_to: torch.Tensor | None = None
    targets = _candidates(model, found, redraw, names)
    while True:  # each round declines one layer or more: as many rounds as targets at most
        report = dataclasses.replace(found, initialized=[], kept=dict(found.kept), scale_only={})
        if not targets:  # none (left) to initialize: no forward, and no v drawn (t189)
            drawn_to = None
            break
        rewind()
        run = _InitPass(
            targets, report, rescale=rescale, redraw=redraw, std=std, generator=generator
        )
        _run_pass(model, inputs, run)
        drawn_to = run.drawn_to
        if not run.repeated:
            run.finish()
            break
        run.give_back()
        for module, times in run.repeated.items():
            target = targets.pop(module)
            found.kept[target.name] = (
                f"{_OP_NAMES[target.kind]} of its weight runs {times} times in the forward: one "
                "g per unit cannot give each call's pre-activation std 1"
            )
    logger.info(
        "data init: %d layers initialized, %d kept", len(report.initialized), len(report.kept)
    )
    return report, drawn_to
