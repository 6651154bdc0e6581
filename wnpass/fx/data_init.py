"""The paper's data-dependent initialization of weight-normed layers (Salimans & Kingma, 2016).

For each weight-normed Linear / Conv / ConvTranspose layer whose ``g`` is per output unit: draw
``v ~ N(0, 0.05^2)`` (``redraw=True``), set ``g = 1`` and ``b = 0``, feed one batch through the
network, and at each layer, in forward order, compute the pre-activation ``t = v . x / ||v||``,
its per-unit mean ``mu`` and standard deviation ``sigma`` over the batch (and positions), and set
``g = 1/sigma``, ``b = -mu/sigma``. A forward hook does this the moment the layer runs and returns
the layer's output recomputed from the same call (keyword arguments too), so every later layer
sees initialized inputs: one pass, in order. A unit is a Linear output's last axis and a
convolution output's channel axis, 1 batched ``(N, C, ...)`` or 0 unbatched ``(C, ...)``; a
layer whose output has neither layout is declined there and gets its values back, as does one
the batch never reaches.

``rescale=True`` (the default) then sets ``v <- v * g/||v||`` per unit, so ``||v|| = g``: ``w``
and the outputs are unchanged, but the gradient step on ``w`` scales with ``(g/||v||)^2``, which
after the paper's init is ~400 in a small CNN's first layer; plain SGD then diverges, and with the
rescale SGD sees plain-sized steps (see docs/train.md for the measured effect).

Layers whose ``g`` is not per output unit (RNNs, attention, embeddings, ConvTranspose with
``dim=0``, ``dim=None``), functional uses and the legacy hook keep their values, with a reason;
so does, with ``redraw=False``, a layer whose ``v`` has an all-zero unit (0/0 there).
The batch runs in eval mode (dropout off) under ``torch.no_grad``. A call that raises (a batch
that gives some layer no statistics, the model's own error, an interrupt) gives every ``g``,
``v`` and bias it wrote its value back: the model is as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.nn.utils.parametrizations import _WeightNorm

from wnpass.axes import OpKind, is_legacy_hook, output_unit_axis, unit_axis
from wnpass.errors import InvalidArgumentError
from wnpass.fx.arguments import require_module, require_values
from wnpass.fx.axes import layer_kind
from wnpass.fx.forward import as_batch, call_model, evaluating
from wnpass.fx.register import unit_norm_problem

__all__ = ["DATA_INIT_EPS", "MIN_VALUES", "V_INIT_STD", "DataInitReport", "data_init"]

logger = logging.getLogger(__name__)

V_INIT_STD = 0.05  # the paper's v ~ N(0, 0.05^2)
# Added to sigma: a unit that is constant on the batch (sigma = 0, e.g. a dead ReLU input)
# would otherwise get g = inf. 1e-6 is far below any real pre-activation spread in fp32.
# Such a unit gets g = 1/EPS and outputs 0 on the batch, as in the paper's own code (1/sqrt(var +
# 1e-10)); a batch that leaves every unit constant (one example) is refused instead.
DATA_INIT_EPS = 1e-6
# Values per output unit (over the batch and positions) its mean and deviation are taken from.
MIN_VALUES = 2

_INITIALIZABLE = ("linear", "conv", "conv_transpose")  # the layer's output is its pre-activation


@dataclasses.dataclass
class DataInitReport:
    """Which weights were data-initialized, and why the others were not."""

    initialized: list[str] = dataclasses.field(default_factory=list)
    kept: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> reason
    rescaled: bool = True

    def __bool__(self) -> bool:
        return bool(self.initialized)


def _plist(module: nn.Module, name: str = "weight") -> Any:
    """The ParametrizationList of ``module.<name>`` (typed loosely: nn.Module's __getattr__)."""
    return module.parametrizations[name]  # type: ignore[index]


def _weight_norm_of(module: nn.Module) -> _WeightNorm | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    found = [p for p in _plist(module) if isinstance(p, _WeightNorm)]
    return found[0] if len(found) == 1 and len(_plist(module)) == 1 else None


def _why_not(module: nn.Module, norm: _WeightNorm) -> str | None:
    """None when ``module`` can be data-initialized; else the reason."""
    kind = layer_kind(module, "weight")
    if kind not in _INITIALIZABLE or isinstance(module, nn.MultiheadAttention | nn.RNNBase):
        return f"{type(module).__name__}: pre-activations are not the module's output"
    assert kind is not None
    weight = _plist(module).original1
    unit = unit_axis(kind, list(weight.shape), groups=int(getattr(module, "groups", 1)))
    if isinstance(unit, str):
        return f"{unit}: g is not per output unit"
    if norm.dim != unit:
        return f"g is per axis {norm.dim}, not per output unit (axis {unit})"
    return None


# A module to initialize -> (its weight's name, the op kind of the table)
_Targets = dict[nn.Module, tuple[str, OpKind]]
# A module to initialize -> its g, v and bias, each with a copy of its value before the call
_Saved = dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]


def _candidates(model: nn.Module, report: DataInitReport, redraw: bool) -> _Targets:
    """Modules to initialize -> (weight name, op kind).

    Without ``redraw`` the init keeps ``v``: a unit of ``v`` with no direction (all zero) has
    pre-activation 0/0 and would get ``g = NaN``; such a layer is kept, with the reason.
    """
    targets: _Targets = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        for hook in module._forward_pre_hooks.values():
            if is_legacy_hook(hook):
                report.kept[prefix + hook.name] = "legacy weight_norm hook: not re-initialized"
        if not parametrize.is_parametrized(module):
            continue
        for tensor_name in module.parametrizations:
            norm = _weight_norm_of(module) if tensor_name == "weight" else None
            if norm is None:
                if any(isinstance(p, _WeightNorm) for p in _plist(module, tensor_name)):
                    report.kept[prefix + tensor_name] = "not a layer's weight"
                continue
            reason = _why_not(module, norm)
            if reason is None and not redraw:
                reason = unit_norm_problem(_plist(module).original1, norm.dim)
            if reason is not None:
                report.kept[prefix + tensor_name] = reason
                continue
            kind = layer_kind(module, "weight")
            assert kind is not None
            targets[module] = (prefix + "weight", kind)
    return targets


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


def _statistics(t: torch.Tensor, output_axis: int, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output unit: the mean and standard deviation of ``t`` over the batch and positions.

    Refused, naming the layer, when they mean nothing: fewer than 2 values per unit (an empty
    batch, or one example of a Linear layer: sigma would be 0 for every unit, g = 1/EPS), or
    NaN/Inf among the pre-activations (g and b would be NaN).
    """
    dims = _reduce_dims(t.dim(), output_axis)
    values = t.numel() // max(t.shape[output_axis], 1)
    if values < MIN_VALUES:
        raise InvalidArgumentError(
            f"gives {layer} {values} value{'s' if values != 1 else ''} per output unit (over "
            f"the batch and positions); each unit's mean and standard deviation need at least "
            f"{MIN_VALUES}: give a batch of {MIN_VALUES} or more examples",
            parameter="batch",
        )
    mu, sigma = t.mean(dim=dims), t.std(dim=dims, unbiased=False)
    if not bool(torch.isfinite(mu).all() and torch.isfinite(sigma).all()):
        raise InvalidArgumentError(
            f"gives {layer} pre-activations that are NaN or Inf: no mean and standard deviation "
            "to initialize it from",
            parameter="batch",
        )
    return mu, sigma


@torch.no_grad()
def _initialize(
    module: nn.Module, name: str, output: torch.Tensor, output_axis: int, rescale: bool
) -> None:
    originals = _plist(module)
    g, v = originals.original0, originals.original1
    norm: _WeightNorm = originals[0]
    mu, sigma = _statistics(output.double(), output_axis, _layer(module, name))
    sigma = sigma + DATA_INIT_EPS
    g.copy_((1.0 / sigma).reshape(g.shape).to(g.dtype))
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        bias.copy_((-mu / sigma).to(bias.dtype))
    if rescale:
        v_dims = _reduce_dims(v.dim(), norm.dim)
        v_norm = torch.linalg.vector_norm(v.double(), dim=v_dims, keepdim=True)
        v.copy_((v.double() * (g.double().reshape(_unit_shape(v, norm.dim)) / v_norm)).to(v.dtype))


def data_init(
    model: nn.Module,
    batch: Any,
    *,
    rescale: bool = True,
    redraw: bool = True,
    std: float = V_INIT_STD,
    generator: torch.Generator | None = None,
) -> DataInitReport:
    """Data-dependent init of every weight-normed layer of ``model`` on ``batch``, in place.

    A batch that gives a layer no statistics (fewer than ``MIN_VALUES`` values per unit, or
    NaN/Inf pre-activations) is an :class:`~wnpass.errors.InvalidArgumentError` about ``batch``
    naming the layer; it is found only by running the batch through the layers before it, so
    on that error (or any other) every value written so far is given back and the model is
    left as it was.
    """
    require_values(require_module(model))
    inputs = as_batch(batch, "batch")
    report = DataInitReport(rescaled=rescale)
    targets = _candidates(model, report, redraw)
    saved = _saved(targets)
    with _restored_on_error(saved):
        _run(model, inputs, targets, saved, report, rescale, redraw, std, generator)
    logger.info(
        "data init: %d layers initialized, %d kept", len(report.initialized), len(report.kept)
    )
    return report


@torch.no_grad()
def _saved(targets: _Targets) -> _Saved:
    """The tensors data init writes (each target's ``g``, ``v`` and bias) and their values."""
    saved: _Saved = {}
    for module in targets:
        originals = _plist(module)
        bias = getattr(module, "bias", None)
        written = [originals.original0, originals.original1]
        written += [bias] if isinstance(bias, torch.Tensor) else []
        saved[module] = [(tensor, tensor.detach().clone()) for tensor in written]
    return saved


@torch.no_grad()
def _give_back(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Copy each saved value back, in place: the caller's parameters stay the same objects,
    ``requires_grad`` and all."""
    for tensor, value in pairs:
        tensor.copy_(value)


@contextlib.contextmanager
def _restored_on_error(saved: _Saved) -> Iterator[None]:
    """Run the block; if it raises, every written tensor gets its value from before it back."""
    try:
        yield
    except BaseException:
        for pairs in saved.values():
            _give_back(pairs)
        raise


def _run(
    model: nn.Module,
    inputs: Any,
    targets: _Targets,
    saved: _Saved,
    report: DataInitReport,
    rescale: bool,
    redraw: bool,
    std: float,
    generator: torch.Generator | None,
) -> None:
    """Reset the targets (``v`` redrawn, ``g = 1``, ``b = 0``) and initialize each as the
    batch reaches it, filling ``report``; a layer declined there, or one the batch never
    reaches, gets its values back (it is reported as kept: it must be)."""
    with torch.no_grad():
        for module in targets:
            originals = _plist(module)
            if redraw:
                v = originals.original1
                v.copy_(torch.randn(v.shape, generator=generator, dtype=v.dtype).to(v.device) * std)
            originals.original0.fill_(1.0)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.zero_()
    done: set[nn.Module] = set()

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        if module in done:
            return None
        done.add(module)
        name, kind = targets[module]
        axis = _output_axis(module, kind, args[0] if args else kwargs.get("input"), output)
        if isinstance(axis, str):
            report.kept[name] = axis
            _give_back(saved[module])
        else:
            _initialize(module, name, output, axis, rescale)
            report.initialized.append(name)
            logger.debug("data init %s", name)
        # the output of the values now set, from the call as the model made it (keywords too)
        return module.forward(*args, **kwargs)

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in targets]
    try:
        with evaluating(model):
            call_model(model, inputs)  # the model's exception or sys.exit(): one line
    finally:
        for handle in handles:
            handle.remove()
    for module, (name, _) in targets.items():
        if module not in done:
            report.kept[name] = "not called on the batch"
            _give_back(saved[module])


def _output_axis(module: nn.Module, kind: OpKind, given: Any, output: Any) -> int | str:
    """The unit axis of the layer's output on this call, or why it is not known. The layer's
    own forward keeps its input's rank (batched ``(N, C, ...)`` or unbatched ``(C, ...)``, the
    input's rank telling which); an output of another rank or unit count was reshaped by a
    subclass (``(N, C*L)``, whose N may equal C) and has no known unit axis."""
    if not isinstance(output, torch.Tensor):
        return f"output is a {type(output).__name__}, not a tensor of pre-activations"
    if not isinstance(given, torch.Tensor):  # ``given``: the layer's input (``input=`` too)
        return "its input is not a tensor: no known unit axis"
    if given.dim() != output.dim():
        return (
            f"output is {output.dim()}-D where its input is {given.dim()}-D (reshaped): "
            "no known unit axis"
        )
    originals = _plist(module)
    axis = output_unit_axis(kind, given.dim(), originals.original1.dim())
    units = originals.original0.numel()  # g: one entry per output unit
    if isinstance(axis, int) and output.shape[axis] != units:
        return (
            f"output axis {axis % output.dim()} has {output.shape[axis]} entries, not the "
            f"layer's {units} units: no known unit axis"
        )
    return axis
