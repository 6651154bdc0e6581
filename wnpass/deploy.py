"""The deployment pipeline: fold in PyTorch, export to ONNX, fold what is left, verify.

``export(model, example_inputs, path)``:

1. copies the model as given, before any forward of its own (what a forward writes, a buffer
   or a plain attribute such as a streaming state, is exported as the caller set it), and
   folds weight norm out of the copy (``fold_weight_norm``; the caller's model keeps training
   as it was), unless ``fold_in_torch=False``;
2. exports with ``torch.onnx.export`` (the dynamo exporter by default, the TorchScript one on
   request), with dynamic axes on request;
3. folds whatever weight norm is still in the graph (``fold_onnx``: all of it when PyTorch did
   not fold first) into the output file, written atomically;
4. with ``verify`` (the default), compares the PyTorch model's outputs (a Python number it
   returns as the 0-d output the exporter makes of it) with ONNX Runtime's on the example
   inputs, each fed to the graph input of its name, on every available provider (or those
   asked for), and times the ONNX model there. PyTorch runs twice on the same inputs first:
   a model whose outputs differ between the two (it draws random numbers, counts its calls)
   has no outputs to verify against, and the verification fails without comparing. With
   dynamic axes, ONNX Runtime is also compared with PyTorch with every dynamic axis doubled
   (each input repeated along it), where a size the trace fixed shows, and doubled plus one,
   where a branch on the size's parity does (:data:`PROBES`). Where torch.export held an
   axis to a range of sizes and PyTorch runs just outside it, the export is refused unless
   the range is accepted (``accept_ranges``); below a range from 2 up (torch's 0/1
   specialization), ONNX Runtime is compared with PyTorch at 1, and so it is at the sizes
   nearest the example's where a condition torch.export took on a size fails
   (:mod:`wnpass.assumed`).

A warning of the exporter that its result may be wrong (TorchScript's ``TracerWarning``: a
Python value the trace fixed) is logged and listed in the report.

PyTorch's forward and the exporter each run on a copy of the example inputs, so a forward
that changes its input in place leaves ONNX Runtime the inputs as given.

The caller's model comes back as it came: its weight norm (unless it cannot be copied: its own
``__deepcopy__`` refuses; it is then folded in place, and the report says so), the training
flag of every submodule (the pipeline runs it in eval mode), and its state: each of the
pipeline's forwards gives back the buffers and plain attributes it wrote
(:func:`~wnpass.fx.forward.state_given_back`), and the parameters it wrote (an init on the
first call), which a warning names. The report says what was folded where,
whether every initializer carries its PyTorch parameter's name, and, when verified, whether
the outputs matched (``verified=False``: ``matches`` is None, nothing was compared).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import ctypes
import dataclasses
import errno
import functools
import inspect
import itertools
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple, cast

import ml_dtypes
import numpy as np
import onnx_ir as ir
import torch
from torch import nn

from wnpass import assumed
from wnpass.arguments import require_flag, whole
from wnpass.axes import is_legacy_hook
from wnpass.errors import (
    InvalidArgumentError,
    OutputError,
    WnpassError,
    printable,
    shortened,
)
from wnpass.fx.analyse import materialize_lazy
from wnpass.fx.fold import TorchFoldReport, check_weight_norm, fold_weight_norm
from wnpass.fx.forward import (
    Batch,
    ForwardFailedError,
    GivenBack,
    as_batch,
    buffer_values,
    call_model,
    cloned,
    evaluating,
    moved_buffers,
    parameter_prints,
    state_given_back,
    what_it_did,
    written_parameters,
)
from wnpass.interrupts import STOPS
from wnpass.onnx import io
from wnpass.onnx.api import fold_onnx
from wnpass.onnx.naming import taken_names
from wnpass.plan import IOPlan, as_path, as_plan, user_code
from wnpass.report import Anchored, FoldReport, SiteReport, model_files, write_json
from wnpass.rules import parse_key
from wnpass.verify import providers as prov
from wnpass.verify.compare import OutputComparison, compare_outputs, nothing_compared
from wnpass.verify.options import DEFAULT_RUNS, DEFAULT_WARMUP, CheckOptions, refuse_unused
from wnpass.verify.report import LatencyStats, comparison_data
from wnpass.verify.timing import FailedInTiming, timed_runs

__all__ = [
    "ExportError",
    "ExportReport",
    "ModelRunError",
    "export",
    "exporters_silenced",
    "opset_range",
]

logger = logging.getLogger(__name__)


class ExportError(WnpassError):
    """torch.onnx.export failed on the model."""


# The user's model raised (or called sys.exit()) when run on its example inputs: the error of
# every forward wnpass runs (wnpass.fx.forward), under the name this module has always given it.
ModelRunError = ForwardFailedError

# The sizes --verify tries every dynamic axis at besides the example's n, by name: 2n (the
# inputs repeated along the axis, a float copy scaled: _grown), where a size the trace fixed
# shows (TorchScript takes ``len(x)`` as the example's); 2n + 1 (and the first element once
# more), where a branch on
# the size's parity shows (``if t % 2: pad``), which 2n never changes from the example's. A
# remainder by more, or a parity after a stride, may show at neither: with the dynamo
# exporter, torch.export's condition on it is read instead (:mod:`wnpass.assumed`).
PROBES = {"doubled": 0, "doubled plus one": 1}
# Where PyTorch fails at both (a position table shorter than twice the example's length), the
# axes are tried one shorter, n - 1: another size, and the other parity.
SHORTER = "one shorter"


@dataclasses.dataclass
class DynamicProbe:
    """ONNX Runtime against PyTorch with every dynamic axis at one other size (``sizes``, a
    name of :data:`PROBES`), or with the axes of one size (``axes``: ``axis 1 of x``) at 1
    (``size``), below the range from 2 up that torch.export held them to (``bound``), or at a
    size within it where a condition torch.export took on their size does not hold
    (``condition``), where PyTorch runs (``sizes``: each axis resized, with its length: ``axis
    1 of x at 1``): a branch on the size shows there as values that do not match, and the
    verification fails, as it does where nothing can be compared there (``not_verified`` says
    why)."""

    sizes: str
    inputs: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # by graph input
    comparisons: dict[str, list[OutputComparison]] = dataclasses.field(default_factory=dict)
    # why ONNX Runtime failed there where PyTorch ran: the graph is wrong at those sizes, and
    # the verification failed; for a probe outside a range, also why nothing could be compared
    not_verified: str | None = None
    # why nothing could be compared there: PyTorch itself fails at those sizes, or returns
    # another count of outputs (the dynamic axes are not verified there; this fails nothing)
    unchecked: str | None = None
    bound: str | None = None  # the range torch.export held the axes to, for a probe outside it
    axes: str | None = None  # those axes, for a probe outside their range
    size: int | None = None  # their size there
    # a condition that ties sizes (a mask's length to its input's) that the probe's sizes
    # break: where ONNX Runtime refuses such inputs, they do not go together in the file,
    # said in ``unchecked`` (which fails nothing); where it computes them, they are compared
    ties: str | None = None
    # for a probe within the range where a condition torch.export took on the axes' size does
    # not hold: the condition, with their size as n ("2*(n // 8) == n // 4")
    condition: str | None = None
    # the axes of one length in the example that the probe resized, the others kept at the
    # example's ("axis 0 of ids"): tried where nothing could be compared with every dynamic
    # axis at the probe's sizes (:func:`_alone`)
    alone: str | None = None
    # the dynamic axes a probe of the sizes of PROBES or SHORTER resized, each as said
    resized: list[str] = dataclasses.field(default_factory=list)

    @property
    def compared(self) -> bool:
        """Whether some element of some output was compared at these sizes (not so where
        every output was NaN or Inf alike in both, or nothing ran)."""
        return any(nothing_compared(c) is None for c in self.comparisons.values() if c)

    @property
    def where(self) -> str:
        """The sizes, as said after "with": ``every dynamic axis doubled``, ``axis 0 of ids
        doubled``, ``axis 1 of x at 1``."""
        if self.bound is not None:
            return self.sizes
        return f"{self.alone or 'every dynamic axis'} {self.sizes}"


@dataclasses.dataclass
class ExportReport(Anchored):
    """What the deployment pipeline did, and whether the ONNX model matches PyTorch.

    ``bool(report)``: nothing was left to fold and, when verified, the outputs matched; an
    export without verification is true without any comparison, so read :attr:`verified` (or
    :attr:`matches`, None then) before calling the model equivalent to PyTorch.
    """

    output: str
    exporter: str
    torch_fold: TorchFoldReport | None
    onnx_fold: FoldReport
    folded_in_place: bool = False  # the model could not be copied (its __deepcopy__ refused)
    data_files: list[str] = dataclasses.field(default_factory=list)  # the output's, written
    names_missing: list[str] = dataclasses.field(default_factory=list)
    # weights whose initializer, named after them, holds them transposed (as MatMul reads a
    # Linear's weight): square ones show it by no shape
    names_transposed: list[str] = dataclasses.field(default_factory=list)
    # weights whose initializer, named after them, holds them in another layout of their
    # elements: an LSTM's gates reordered (Slice/Concat), a slice, a padding
    names_laid_out: list[str] = dataclasses.field(default_factory=list)
    # weights held with others in one initializer that the ONNX fold wrote, named after them
    # all (a bidirectional LSTM's two directions, gates reordered), by that initializer
    names_held_together: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    verified: bool = False  # ONNX Runtime's outputs were compared with PyTorch's
    comparisons: dict[str, list[OutputComparison]] = dataclasses.field(default_factory=dict)
    latency: dict[str, LatencyStats] = dataclasses.field(default_factory=dict)
    not_available: list[str] = dataclasses.field(default_factory=list)
    fell_back: list[str] = dataclasses.field(default_factory=list)  # asked for, ran elsewhere
    # the outputs that differed between two PyTorch runs on the same inputs: nothing to verify
    # against, so nothing was compared and the verification failed
    not_deterministic: list[str] = dataclasses.field(default_factory=list)
    # with dynamic axes: ONNX Runtime against PyTorch with every dynamic axis at other sizes
    # than the example's (:data:`PROBES`), one probe each
    dynamic: list[DynamicProbe] = dataclasses.field(default_factory=list)
    # why ONNX Runtime could not load or run the exported graph on the example inputs, where
    # PyTorch ran (the graph is wrong: the verification failed)
    ort_failed: str | None = None
    # output axes the graph's shape info declares of a fixed size that ONNX Runtime computed
    # at another (the dynamo exporter's LSTM with dynamic axes): the values were compared and
    # may match, but a runtime that trusts the shape info may fail
    shape_info_wrong: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)  # the exporter's (above)
    # what wnpass found of the dynamic sizes: the ranges and conditions torch.export held
    # them to, where PyTorch runs beyond them, and whether the file is compared there
    sizes: list[str] = dataclasses.field(default_factory=list)
    # every dynamic axis, as said ("axis 1 of ids"), where verified with dynamic axes
    dynamic_axes: list[str] = dataclasses.field(default_factory=list)
    # parameters a forward of the model's wrote (an init on its first call behind a plain flag,
    # a merge, an embedding's max_norm): the file holds them as the exporter's own run of the
    # forward left them; those the caller's model got back from the copy
    parameters_written: list[str] = dataclasses.field(default_factory=list)
    parameters_given_back: list[str] = dataclasses.field(default_factory=list)
    published: bool = True  # False: the check failed and nothing was written

    @property
    def matches(self) -> bool | None:
        """None when not verified; else whether PyTorch gave the same outputs twice, outputs
        were compared on every provider (some element of some output:
        :func:`~wnpass.verify.compare.nothing_compared`), all matched PyTorch's (with dynamic
        axes, also at each probe's sizes), and no provider asked for fell back to another
        (what ``verify`` requires before the file is published)."""
        if not self.verified:
            return None
        compared = [
            c
            for results in (self.comparisons, *(probe.comparisons for probe in self.dynamic))
            for comparisons in results.values()
            for c in comparisons
        ]
        return (
            bool(compared)
            and all(compared)
            and not self.nothing_compared
            and not self.fell_back
            and not self.not_deterministic
            and all(probe.not_verified is None for probe in self.dynamic)
            and self.ort_failed is None
        )

    @property
    def nothing_compared(self) -> dict[str, str]:
        """The providers that compared nothing (every output empty, or NaN alike), and why."""
        return {
            provider: vacuous
            for provider, comparisons in self.comparisons.items()
            if (vacuous := nothing_compared(comparisons))
        }

    @property
    def compared_at_example_only(self) -> list[str]:
        """The dynamic axes that no probe of other sizes compared (PyTorch failed at every
        size they were tried at): verified at the example's length only."""
        compared = {axis for p in self.dynamic if p.compared for axis in p.resized}
        return [axis for axis in self.dynamic_axes if axis not in compared]

    @property
    def folded_whole(self) -> bool:
        """Whether no weight-norm site was declined, by the ONNX fold or in PyTorch. A site
        PyTorch declines (NaN, a zero-norm unit) may never reach the ONNX fold: the dynamo
        exporter computes it into a plain initializer itself, NaN included. A site whose
        weight the model computes from its own inputs (:attr:`run_time_weights`) holds no
        weight of the model's, and counts for nothing."""
        torch_whole = self.torch_fold is None or not self.torch_fold.declined
        declined = self.onnx_fold.declined - len(self.run_time_weights)
        return torch_whole and declined == 0

    @property
    def run_time_weights(self) -> list[SiteReport]:
        """The ONNX sites declined because v is one of the model's inputs (their ``fed_by``):
        a filter the caller passes to ``forward``, normalized there, is computed at run time
        on every call, and no fold can make it a constant."""
        return [s for s in self.onnx_fold.sites if s.status == "declined" and s.fed_by]

    def __bool__(self) -> bool:
        """Nothing left to fold (:attr:`folded_whole`), and the outputs matched where verified
        (:attr:`matches`)."""
        return self.folded_whole and self.matches is not False

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        tables = [(self.comparisons, data["comparisons"])] + [
            (probe.comparisons, raw["comparisons"])
            for probe, raw in zip(self.dynamic, data["dynamic"], strict=True)
        ]
        for results, raw_results in tables:  # as wnpass check writes them
            for provider, comparisons in results.items():
                for c, raw in zip(comparisons, raw_results[provider], strict=True):
                    comparison_data(c, raw)
        data["matches"] = self.matches
        data["nothing_compared"] = self.nothing_compared
        data["compared_at_example_only"] = self.compared_at_example_only
        data["run_time_weights"] = [site.name for site in self.run_time_weights]
        data["ok"] = bool(self)
        return data

    def write_json(self, path: str | Path, plan: IOPlan | None = None) -> None:
        """Write the report as JSON (:func:`wnpass.report.write_json`); without ``plan``, never
        onto the exported model or its data file."""
        write_json(
            path,
            self.to_dict(),
            plan,
            lambda: model_files(
                self.anchored(self.output),
                "the exported model",
                [self.anchored(file) for file in self.data_files],
            ),
        )


# What an exporter makes a graph output of, in the order torch's pytree flattens the result:
# a tensor, and a Python number as a 0-d tensor: ``x.shape[0]`` under TorchScript, ``.item()``
# under dynamo (each fails on the other; measured with torch 2.13). None, a string and other
# objects become no output.
Output = np.ndarray | bool | int | float


def _outputs(result: Any) -> list[Output]:
    """The forward's ``result`` as the exported graph's outputs will be: each tensor as an
    array (:func:`_to_numpy`: a dtype that cannot be verified is refused here, before anything
    is exported), each Python number as it is, until the graph says its type
    (:func:`_expected`)."""
    leaves = torch.utils._pytree.tree_leaves(result)
    return [  # copies: a buffer forward returns, and changes in place on its next run, stays
        _to_numpy(leaf).copy() if isinstance(leaf, torch.Tensor) else leaf
        for leaf in leaves
        if isinstance(leaf, torch.Tensor | bool | int | float)
    ]


def _expected(graph: ir.Graph, outputs: list[Output]) -> list[np.ndarray]:
    """What each graph output must hold: the forward's outputs paired with the graph's in
    order, each number as a 0-d array of its graph output's type (TorchScript makes an ``int``
    int64, a ``float`` float64; dynamo a ``.item()`` the type of its tensor), exactly or not
    at all. Where the counts differ the pairing is unknown, and verification is declined."""
    if len(graph.outputs) != len(outputs):
        raise InvalidArgumentError(
            f"cannot verify: the exported graph has {len(graph.outputs)} outputs where the "
            f"forward returned {len(outputs)} tensors and numbers; which is which is unknown"
        )
    return [
        _as_pairs(output, value)
        if isinstance(output, np.ndarray)
        else _scalar(f"output {value.name}", output, value)
        for value, output in zip(graph.outputs, outputs, strict=True)
    ]


# The real type an exporter stores each complex type's parts in.
_COMPLEX_PARTS = {
    np.dtype(np.complex64): ir.DataType.FLOAT,
    np.dtype(np.complex128): ir.DataType.DOUBLE,
}


def _as_pairs(output: np.ndarray, value: ir.Value) -> np.ndarray:
    """A complex output as the graph holds it where the exporter made it real pairs (the
    dynamo exporter: ``torch.view_as_real``, a last axis of 2 in the parts' type); any other
    output as it is."""
    parts = _COMPLEX_PARTS.get(output.dtype)
    shape = value.shape
    if (
        parts is None
        or value.dtype != parts
        or (shape is not None and len(shape) != output.ndim + 1)
    ):
        return output
    return np.stack([output.real, output.imag], axis=-1)


def _array(tensor: torch.Tensor) -> np.ndarray | None:
    """``tensor`` as the array ONNX Runtime and onnx-ir take or give for it; None where numpy
    has no such type (float8, complex32, ...). numpy has no bfloat16 either: a bfloat16 tensor
    goes through float32 (which holds every bfloat16 value exactly) to ml_dtypes' bfloat16,
    the type ONNX Runtime's and onnx-ir's bfloat16 arrays have."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy().astype(ml_dtypes.bfloat16)
    try:
        return tensor.numpy()
    except TypeError:
        return None


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """``tensor`` as ONNX Runtime takes or gives it, to verify with. A dtype its Python API
    cannot exchange (bfloat16: it neither takes ml_dtypes' arrays nor gives any; float8,
    complex32, ...: numpy has no such type) is declined before anything is exported."""
    array = _array(tensor) if tensor.dtype != torch.bfloat16 else None
    if array is None:
        raise InvalidArgumentError(
            f"cannot verify: onnxruntime's Python API takes and gives no "
            f"{str(tensor.dtype).removeprefix('torch.')} arrays; export without verification"
        )
    return array


def _copy(model: nn.Module, fold: bool) -> tuple[nn.Module, bool]:
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


def _arguments(model: nn.Module, inputs: Batch, dynamo: bool) -> dict[str, Any]:
    """The values the exporter traces ``forward`` with, by ``forward``'s parameter names and in
    the order they become graph inputs, so ``--dynamic mel=0,2`` reads as the model's code does
    (``input_<i>`` where the signature says nothing). The positional inputs come first. Then
    the dynamo exporter takes the keyword inputs in their own order; the TorchScript exporter
    takes every parameter after the positional ones in the signature's order, the keyword
    input of its name or else its default, each as an argument of its own (measured with torch
    2.13; the dynamo exporter leaves the defaults to ``forward``, which bakes them into the
    graph)."""
    parameters = _parameters(model)
    args, kwargs = inputs.args, dict(inputs.kwargs)
    named = dict(zip(_positional_names(parameters, len(args)), args, strict=True))
    if dynamo:
        return named | kwargs
    rest = [p for p in parameters[len(args) :] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if unknown := [name for name in kwargs if name not in {p.name for p in rest}]:
        raise InvalidArgumentError(
            f"{', '.join(unknown)}: not a parameter of forward after the positional inputs, "
            "the only keyword inputs the TorchScript exporter passes on; give it "
            "positionally, or use the dynamo exporter",
            parameter="example_inputs",
        )
    given = {p.name: kwargs.get(p.name, p.default) for p in rest}
    return named | {
        name: value for name, value in given.items() if value is not inspect.Parameter.empty
    }


def _parameters(model: nn.Module) -> list[inspect.Parameter]:
    """``forward``'s parameters; none where its signature cannot be read."""
    try:
        return list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return []


def _positional_names(parameters: list[inspect.Parameter], count: int) -> list[str]:
    """The names of ``count`` positional inputs: their parameters', ``input_<i>`` past them."""
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [positional[i].name if i < len(positional) else f"input_{i}" for i in range(count)]


def _input_count(value: Any, dynamo: bool) -> int:
    """How many graph inputs an argument becomes (measured with torch 2.13): a tensor one,
    under either exporter; a Python bool, int or float one under TorchScript (dynamo bakes it
    into the graph); None and str none (TorchScript's flattening drops them); a tuple, list or
    dict the sum of its items'."""
    kinds = (torch.Tensor,) if dynamo else (torch.Tensor, bool, int, float)
    return sum(isinstance(leaf, kinds) for leaf in torch.utils._pytree.tree_leaves(value))


def _graph_inputs(
    arguments: dict[str, Any], dynamo: bool
) -> tuple[dict[str, Any], tuple[str, int] | None]:
    """The arguments that become the exported graph's inputs, in the graph's order, by the
    name to give that input. An exporter takes input names as a list and gives them to its
    inputs in order, so an argument that becomes no input must not be named (``x, mask=None,
    scale=2.0``: naming ``mask`` would call the graph's ``scale`` input ``mask``). Naming
    stops at an argument that becomes several inputs (a tuple of tensors): those, and the
    inputs after them, keep the exporter's own names; that argument and its count of inputs
    come second (None when there is none). TorchScript drops an input that ``forward`` never
    reads after naming, so such an argument keeps its place here."""
    named: dict[str, Any] = {}
    for name, value in arguments.items():
        count = _input_count(value, dynamo)
        if count > 1:
            return named, (name, count)
        if count == 1:
            named[name] = value
    return named, None


def _several_inputs(name: str, count: int, verify: bool) -> None:
    """An argument that becomes ``count`` graph inputs (:func:`_graph_inputs`): the example
    inputs are fed to the graph by name, and the exporter's names of those inputs say which
    is which only by its own rules, so verification is declined before anything is exported.
    An export without verification goes on, and says the names are the exporter's."""
    if verify:
        raise InvalidArgumentError(
            f"cannot verify: {name} becomes {count} graph inputs, which (with the inputs after "
            "it) keep the exporter's names, and the example inputs are fed by name; give its "
            "tensors to forward one by one, or export without verification"
        )
    logger.warning(
        "%s becomes %d graph inputs: it and the inputs after it keep the exporter's names",
        name,
        count,
    )


def _check_dynamic(
    dynamic: dict[str, dict[int, str]] | None,
    arguments: dict[str, Any],
    graph_inputs: dict[str, Any],
) -> None:
    """Every dynamic axis names an example tensor by ``forward``'s parameter name that becomes a
    graph input of that name, and lies in its rank: an exporter would otherwise ignore it, and
    the file keep that axis fixed."""
    for name, axes in (dynamic or {}).items():
        if name not in arguments:
            raise InvalidArgumentError(
                f"{name}: the model's inputs are {', '.join(arguments)}", parameter="dynamic"
            )
        value = arguments[name]
        if not isinstance(value, torch.Tensor):
            raise InvalidArgumentError(
                f"{name}: its example input is not a tensor ({type(value).__name__}); "
                "only a tensor has axes",
                parameter="dynamic",
            )
        if name not in graph_inputs:
            raise InvalidArgumentError(
                f"{name}: not a graph input of that name (the graph's named inputs are "
                f"{', '.join(graph_inputs)})",
                parameter="dynamic",
            )
        outside = sorted(a for a in axes if not 0 <= a < value.dim())
        if outside:
            raise InvalidArgumentError(
                f"{name}: axis {outside[0]} is outside its {value.dim()} dimensions "
                f"(shape {list(value.shape)})",
                parameter="dynamic",
            )


def _export(
    model: nn.Module,
    inputs: Batch,
    names: list[str],
    path: Path,
    *,
    dynamo: bool,
    dynamic: dict[str, dict[int, str]] | None,
    shapes: dict[str, Any] | tuple[Any, ...] | None,
    opset: int | None,
) -> tuple[list[str], list[_Range], list[assumed.Condition] | None]:
    """Run torch.onnx.export, naming the graph's inputs ``names``; the warnings it gave that
    say its result may be wrong (:func:`_warned`), and (dynamo) the sizes torch.export holds
    each dynamic axis to and the conditions it took on them that no range says
    (:func:`wnpass.assumed.conditions`; :func:`_check_ranges` judges both).

    The dynamo exporter is given the dynamic axes as ``shapes`` (:func:`_dynamic_shapes`):
    given as ``dynamic_axes``, torch hands them out by position, not by name (``--dynamic y=0``
    of ``forward(x, y)`` made x's axis dynamic). Both exporters read a dict at the end of the
    positional inputs as the keyword inputs, so a dict that is a positional input gets an empty
    dict after it, which is how torch.onnx says "no keyword inputs".
    """
    options: dict[str, Any] = {"input_names": names, "dynamo": dynamo, "verbose": False}
    if opset is not None:
        options["opset_version"] = opset
    if shapes is not None:
        options["dynamic_shapes"] = shapes
    elif dynamic:
        options["dynamic_axes"] = dynamic
    args = inputs.args
    if not inputs.kwargs and args and isinstance(args[-1], dict):
        args += ({},)
    # the exporters run the user's forward (tracing it), which may read files
    # recorded, not printed; the filters in force stay (the user's, PYTHONWARNINGS)
    captured: contextlib.AbstractContextManager[list[assumed.Captured]] = (
        assumed.captured() if dynamo and dynamic else contextlib.nullcontext([])
    )
    with (
        warnings.catch_warnings(record=True) as caught,
        _exporter_quiet(),
        user_code(),
        captured as programs,
    ):
        try:
            program = torch.onnx.export(
                model, args, str(path), kwargs=dict(inputs.kwargs) or None, **options
            )
        except STOPS:
            raise
        except SystemExit:
            raise  # the model's sys.exit(), which the command line names
        except BaseException as error:  # the exporter's, or the model's code while traced
            _warned(caught, failed=True)
            logger.info("torch.onnx.export failed", exc_info=error)  # -v: the traceback
            if (full := _disk_full(error, path.parent)) is not None:  # not the model's
                raise OutputError(
                    f"{path}: cannot write ({full.strerror or full})", parameter="output"
                ) from None
            raise ExportError(f"torch.onnx.export failed: {_failure(error)}") from None
    if not (dynamo and dynamic):
        return _warned(caught), [], []
    ranges = list(_dynamic_ranges(program, model, inputs))
    conditions = assumed.conditions(programs[0]) if programs else None
    return _warned(caught), ranges, conditions  # None: another torch, said by the caller


class _Range(NamedTuple):
    """The sizes torch.export holds a dynamic axis's ``symbol`` to (shared by every input axis
    it sizes): ``lower`` up to ``upper`` (None: unbounded); the axis is ``expr`` of it (the
    symbol itself, or a size derived from it: ``2*s0`` for an input twice as long)."""

    name: str
    axis: int
    symbol: Any
    lower: int
    upper: int | None
    expr: Any


def _size_at(bounded: _Range, size: int) -> int | None:
    """The axis's length where its symbol is ``size``; None where it depends on another
    dynamic size too (no one length to give it)."""
    if bounded.expr.free_symbols != {bounded.symbol}:
        return None
    return int(bounded.expr.subs(bounded.symbol, size))


# A probe of PyTorch just outside an axis's range feeds at most this many elements in all.
_PROBE_ELEMENTS = 1 << 24


def _moved_by_trace(target: nn.Module, loaded: Mapping[str, torch.Tensor]) -> list[str]:
    """The buffers the TorchScript exporter's trace moved: it runs the forward once more and
    reads the buffers after that run, and it may have folded them into other constants, so the
    file holds what that run left and cannot be given the value as set afterwards."""
    return [
        f"its trace ran the forward, which moved buffer {name}: the file holds the value that "
        "run left, not the one set (the dynamo exporter exports it as set)"
        for name in moved_buffers(target, loaded)
    ]


class _Beyond(NamedTuple):
    """PyTorch ran with the axes of one dynamic size (``axes``: ``axis 1 of x``) at ``size``
    (their size's; ``sizes``: each axis resized with its length, other dynamic axes of the
    example's length included where PyTorch ran only with them), just below the range
    torch.export held them to (``bound``), or within it where a condition torch.export took
    on their size does not hold (``condition``, said with the size as n), on ``inputs`` (the
    example's, resized); named as :class:`DynamicProbe` names them."""

    axes: str
    bound: str
    size: int
    inputs: Batch
    resized: tuple[str, ...]  # the graph inputs resized
    sizes: str  # "axis 2 of x at 1 and axis 2 of y at 2"
    condition: str | None = None
    ties: str | None = None  # the condition, where it ties sizes (:attr:`DynamicProbe.ties`)


def _check_ranges(
    model: nn.Module,
    inputs: Batch,
    arguments: dict[str, Any],
    ranges: list[_Range],
    conditions: list[assumed.Condition],
    verify: bool,
    accept: bool,
) -> tuple[list[str], list[_Beyond]]:
    """The sizes torch.export holds each dynamic axis to, checked: it narrows an axis, without
    a word, where the model's code branches on its size (``if x.shape[2] > 10``) or requires
    one (``assert t <= block_size``), or where one of torch's decompositions does (wav2vec2's
    reshapes: its frames from 2 up), and the ONNX graph keeps the axis symbolic. PyTorch is
    run just outside each bound, at the nearest size where it runs of :data:`_PAST` (the
    inputs repeated along the axis and cut; where it fails so, with the other dynamic axes
    resized too: :func:`_run_at`). Where it fails at all, or is not tried (more than
    ``_PROBE_ELEMENTS``), the bound is taken as the model's own: a warning (PyTorch may run
    further out: a lengths input, which repeating does not resize; the range is said).

    Where PyTorch runs outside a range, the file may compute such inputs otherwise, and no
    probe can tell at which sizes: an ``ExportError`` unless ``accept`` (the file is then for
    those sizes only: a warning). A lower bound of 2 is torch's 0/1 specialization, which
    older versions give every dynamic axis: a warning; with ``verify`` the size below is
    returned instead (:class:`_Beyond`) for the file to be compared with PyTorch there, and
    the probe says how that went. One of 1 is not probed (an empty input, where a model's
    loop may never end).

    A condition torch.export took on a size that no range says (``conditions``: a block that
    pads an odd count of frames, ``n != 1``) is tried as a bound is, at the sizes nearest the
    example's where it fails (:data:`wnpass.assumed.FAILING`), and judged as a lower bound
    of 2 is: where PyTorch runs there, a warning, or with ``verify`` the file compared there;
    with ``accept``, the file is for the sizes where it holds. A tie (a mask's length to its
    input's) is compared too; where ONNX Runtime refuses the inputs that break it, the probe
    says they do not go together (:attr:`DynamicProbe.ties`)."""
    said: list[str] = []
    beyond: list[_Beyond] = []
    grouped: dict[object, list[_Range]] = {}
    for bounded in ranges:
        grouped.setdefault(bounded.symbol, []).append(bounded)
    for symbol, axes in grouped.items():
        first = axes[0]
        sizes = _span(first.lower, first.upper)
        where, held, bound = _held(axes, sizes)
        companions = _companions(axes, [r for r in ranges if r.symbol != symbol], arguments)
        tried = _Tries(model, inputs, arguments, axes, companions)
        fails: list[str] = []
        notes: list[str] = []
        # each side's sizes, the nearest first: a model of lengths a multiple of 2, 4 or 8
        # fails at the others
        sides = [[first.upper + d for d in _PAST]] if first.upper is not None else []
        sides += [[first.lower - d for d in _PAST if first.lower - d > 0]]  # not 0: empty
        for side in filter(None, sides):
            size, ran, lengths, failed, _ = tried.nearest(side)
            if ran is False:
                fails.append(_spanned(failed))
                continue
            at = _at(size, lengths)
            compared = size < first.lower == 2  # 0/1 specialization: compared, or said
            if not isinstance(ran, Batch):
                notes.append(f"not tried at {at}: {ran}")
            elif accept:
                notes.append(f"PyTorch runs at {at} too: accepted, the file is for these sizes")
            elif compared and verify:  # the probe says how it went: no warning of its own
                beyond.append(_Beyond(where, bound, size, ran, *_resized_said(lengths)))
            elif compared:
                notes.append(
                    f"PyTorch runs at {at} too, where the file is not compared without verification"
                )
            else:
                raise ExportError(
                    f"not given: the dynamo exporter made {where} dynamic for {held} "
                    f"only, and PyTorch runs at {at}: where the model's code, or one of "
                    "torch's decompositions, branches on the size, the file computes such "
                    "inputs with the example's branch, at sizes no probe can list; accept the "
                    "range to export the file for those sizes only",
                    parameter="accept_ranges",
                )
        notes += [f"PyTorch fails at {' and '.join(fails)} too"] if fails else []
        if notes:
            said.append(f"{where} is exported for {held} only ({'; '.join(notes)})")
        for condition in (c for c in conditions if c.symbol == str(symbol)):
            breaks = functools.partial(_breaks, condition, ranges)
            size, ran, lengths, failed, kept = tried.nearest(condition.failing, breaks)
            at = _at(size, lengths)
            if ran is False:
                ways = [f"PyTorch fails at {_spanned(failed)} too, where it does not hold"]
                ways = ways if failed else []
                if kept:  # a size it involves resized in proportion (x <= c, c twice x)
                    ways.append(f"PyTorch runs at {_spanned(kept)} only with other sizes "
                                "resized so that it holds")  # fmt: skip
                note = "; ".join(ways)
            elif not isinstance(ran, Batch):
                note = f"not tried at {at}, where it does not hold: {ran}"
            elif accept:
                note = f"PyTorch runs at {at} too: accepted, the file is for these sizes"
            elif verify:  # the probe says how it went: no warning of its own
                if all(o.size != size or o.axes != where for o in beyond):  # once a size
                    resized, each = _resized_said(lengths)
                    tie = _tie_said(condition, ranges) if condition.tie else None
                    beyond.append(
                        _Beyond(where, bound, size, ran, resized, each, condition.text, tie)
                    )
                continue
            else:
                note = (
                    f"PyTorch runs at {at}, where it does not hold: the file takes the "
                    "example's branch there, and may compute such inputs otherwise; not "
                    "compared without verification"
                )
            named = _size_named(axes, condition)
            if condition.tie and ran is False:  # PyTorch keeps it too: no size is lost
                said.append(
                    f"{where} goes with other dynamic sizes: torch.export took "
                    f"{condition.text} ({named}), which PyTorch keeps too ({note}); the file "
                    "is for inputs that keep it"
                )
                continue
            said.append(
                f"{where} is exported for sizes where {condition.text} only, a condition "
                f"torch.export took that no range says ({named}; {note})"
            )
    return said, beyond


def _tie_said(tie: assumed.Condition, ranges: list[_Range]) -> str:
    """A condition that ties sizes, as said: its text, and what ``n`` is in it."""
    axes = [r for r in ranges if str(r.symbol) == tie.symbol]
    return f"{tie.text} ({_size_named(axes, tie)})"


class _Tries:
    """PyTorch run with the axes of one dynamic size at other sizes (:func:`_run_at`), each
    size once."""

    def __init__(
        self,
        model: nn.Module,
        inputs: Batch,
        arguments: dict[str, Any],
        axes: list[_Range],
        companions: list[_Companion],
    ) -> None:
        self._run = functools.partial(_run_at, model, inputs, arguments, axes, companions)
        self._runs: dict[int, tuple[Batch | bool | str, dict[tuple[str, int], int | None]]] = {}

    def nearest(
        self, sizes: Sequence[int], counts: Callable[[_Lengths], bool] | None = None
    ) -> _Tried:
        """The first of ``sizes`` where PyTorch does not fail (or the last), what it gave
        there (:func:`_runs_at`), the lengths given, and where it failed before (each as
        said). A run where ``counts`` says the lengths given miss what is probed (the other
        sizes resized with it make a condition hold) is passed over too, as ``held``."""
        failed: list[tuple[int, str]] = []
        held: list[tuple[int, str]] = []
        for size in sizes:
            if size not in self._runs:
                self._runs[size] = self._run(size)
            ran, lengths = self._runs[size]
            if ran is False:
                failed.append((size, _at(size, lengths)))
            elif counts is not None and isinstance(ran, Batch) and not counts(lengths):
                held.append((size, _at(size, lengths)))
            else:
                return _Tried(size, ran, lengths, failed, held)
        return _Tried(size, False, lengths, failed, held)


_Lengths = dict[tuple[str, int], int | None]  # each input axis resized, with its length


class _Tried(NamedTuple):
    """Where :meth:`_Tries.nearest` ran PyTorch (``size``, ``lengths``), what it gave there
    (``ran``: False where it failed at every size), and the sizes passed over before."""

    size: int
    ran: Batch | bool | str
    lengths: _Lengths
    failed: list[tuple[int, str]]
    held: list[tuple[int, str]]


# The sizes past a bound PyTorch is run at, the nearest first, until it runs at one.
_PAST = range(1, 9)


def _breaks(condition: assumed.Condition, ranges: list[_Range], lengths: _Lengths) -> bool:
    """Whether ``condition`` fails with the input axes at ``lengths`` (the sizes they are of
    theirs, where an axis is a size itself; the other sizes at the example's): a run there
    probes it. With a mask resized with its input it does; with another size it involves
    resized in proportion, it may hold again (``x <= c``, c twice as long)."""
    return not condition.holds_at(_symbol_sizes(ranges, lengths.get))


def _symbol_sizes(
    ranges: list[_Range], length: Callable[[tuple[str, int]], int | None]
) -> dict[str, int]:
    """Each dynamic size, by torch.export's name, at the ``length`` of an input axis that is
    that size itself (not ``2*s0``), where one is given."""
    return {
        str(r.symbol): n
        for r in ranges
        if r.expr == r.symbol and (n := length((r.name, r.axis))) is not None
    }


def _listed(said: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return ", ".join(said[:-1]) + " and " + said[-1] if len(said) > 1 else "".join(said)


def _spanned(failed: list[tuple[int, str]]) -> str:
    """The sizes PyTorch was run at (each with how it is said), in order: ``17 and 18``;
    eight in a row, ``17 to 24``; else each (``9, 11, 13 and 15``: not every size between)."""
    ordered = sorted(failed)
    said = [at for _, at in ordered]
    sizes = [size for size, _ in ordered]
    if len(said) > 2 and sizes == list(range(sizes[0], sizes[-1] + 1)):
        return f"{said[0]} to {said[-1]}"
    return _listed(said)


def _resized_said(lengths: dict[tuple[str, int], int | None]) -> tuple[tuple[str, ...], str]:
    """The graph inputs resized, and their axes with their lengths as said (:class:`_Beyond`)."""
    return tuple(dict.fromkeys(name for name, _ in lengths)), _lengths_said(lengths.items())


def _size_named(axes: list[_Range], condition: assumed.Condition) -> str:
    """What ``n`` is in a condition's text: the length of an axis that is the size itself,
    ``n: the length of axis 2 of x``, or torch.export's name of the size where every axis is
    another length of it; with the other dynamic sizes at the example's where it involves
    them."""
    own = [r for r in axes if r.expr == r.symbol]
    named = f"axis {own[0].axis} of {own[0].name}" if own else f"torch.export's {condition.symbol}"
    others = "" if condition.alone else ", the other dynamic sizes at the example's"
    return f"n: the length of {named}{others}"


def _held(axes: list[_Range], sizes: str) -> tuple[str, str, str]:
    """The axes of one size, the sizes they are held to (``sizes``: their size's), and those
    sizes as a probe's ``bound``, as the messages say them: ``axis 2 of x``, ``sizes 0 to
    10``, ``0 to 10``; where one is another length (``y`` twice ``x``'s: ``2*s0``), each with
    its own, ``axis 2 of x (0 to 10) and axis 2 of y (0 to 20)``, ``those sizes``, ``0 to 10
    for axis 2 of x and 0 to 20 for axis 2 of y``."""
    if all(r.expr == r.symbol for r in axes):
        return " and ".join(f"axis {r.axis} of {r.name}" for r in axes), f"sizes {sizes}", sizes
    first = axes[0]
    parts = []
    for r in axes:
        low = _size_at(r, first.lower)
        high = None if first.upper is None else _size_at(r, first.upper)
        unknown = low is None or (first.upper is not None and high is None)
        parts.append(("?" if low is None or unknown else _span(low, high), r))
    where = " and ".join(f"axis {r.axis} of {r.name} ({own})" for own, r in parts)
    bound = " and ".join(f"{own} for axis {r.axis} of {r.name}" for own, r in parts)
    return where, "those sizes", bound


def _span(lower: int, upper: int | None) -> str:
    """A range of sizes as the messages say it: ``0 to 10``, ``from 30 up``."""
    return f"{lower} to {upper}" if upper is not None else f"from {lower} up"


def _lengths_said(lengths: Iterable[tuple[tuple[str, int], int | None]]) -> str:
    """Input axes with their lengths: ``axis 2 of x at 1 and axis 2 of y at 2``."""
    return " and ".join(f"axis {axis} of {name} at {n}" for (name, axis), n in lengths)


def _at(size: int, lengths: dict[tuple[str, int], int | None]) -> str:
    """Where PyTorch was run, as said: ``11``, the size, where every axis resized is that
    long; else with each axis's length, ``11 (axis 2 of x at 11 and axis 2 of y at 22)`` (an
    axis that is another length of the size, or resized with it in proportion)."""
    if all(length == size for length in lengths.values()):
        return str(size)
    return f"{size} ({_lengths_said(lengths.items())})"


class _Companion(NamedTuple):
    """Another dynamic axis resized with the axes of one size where PyTorch fails with those
    alone (:func:`_companions`): its example ``length``, and that length's ``ratio`` to
    theirs."""

    axis: _Range
    length: int
    ratio: Fraction


def _companions(
    axes: list[_Range], others: list[_Range], arguments: dict[str, Any]
) -> list[_Companion]:
    """The other dynamic axes resized with ``axes`` where PyTorch fails with those alone, each
    with its example length's ratio to theirs: of another size, which torch.export need not
    tie to theirs (``x`` and its ``mask``, ratio 1; an input at half the rate, ``cond`` to a
    stride-2 ``x``, ratio 2), where both are sizes themselves (not ``2*s0``)."""

    def length(bounded: _Range) -> int | None:
        value = arguments.get(bounded.name)
        return int(value.shape[bounded.axis]) if isinstance(value, torch.Tensor) else None

    first = axes[0]
    if first.expr != first.symbol or not (own := length(first)):
        return []
    return [
        _Companion(r, other, Fraction(other, own))
        for r in others
        if r.expr == r.symbol and (other := length(r))
    ]


def _run_at(
    model: nn.Module,
    inputs: Batch,
    arguments: dict[str, Any],
    axes: list[_Range],
    companions: list[_Companion],
    size: int,
) -> tuple[Batch | bool | str, dict[tuple[str, int], int | None]]:
    """:func:`_runs_at` with the axes of one size at ``size``; where PyTorch fails there, with
    the ``companions`` of their example length at ``size`` too, and then with every companion
    resized in proportion (its length at ``size`` times its ratio, rounded). The lengths
    given, as the second item."""
    lengths = {(r.name, r.axis): _size_at(r, size) for r in axes}
    ran = _runs_at(model, inputs, arguments, lengths)
    same: _Lengths = {(c.axis.name, c.axis.axis): size for c in companions if c.ratio == 1}
    scaled: _Lengths = {(c.axis.name, c.axis.axis): _scaled(size, c.ratio) for c in companions}
    example = {(c.axis.name, c.axis.axis): c.length for c in companions}
    tries: list[_Lengths] = []
    for more in (same, scaled):  # each once, and not where all are at their example length
        if more and more not in tries and any(example[k] != n for k, n in more.items()):
            tries.append(more)
    for more in tries:
        if ran is not False:
            break
        again = _runs_at(model, inputs, arguments, lengths | more)
        if isinstance(again, Batch):
            return again, lengths | more
    return ran, lengths


def _scaled(size: int, ratio: Fraction) -> int:
    """A companion's length where its ratio to the axes resized is ``ratio``: ``size`` times
    it, halves rounded up (``round`` takes 22.5 to 22 and 23.5 to 24), at least 1."""
    return max(1, math.floor(size * ratio + Fraction(1, 2)))


def _runs_at(
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
    except ForwardFailedError:
        return False
    return resized


def _resized(
    model: nn.Module, inputs: Batch, arguments: dict[str, Any], sizes: dict[tuple[str, int], int]
) -> Batch | None:
    """The example inputs with each ``(input, axis)`` of ``sizes`` made that long: repeated
    along it and cut (``torch.cat([x, x, ...], axis)[:size]``, float copies scaled:
    :func:`_grown`). An input not passed is given
    by its name where it is a parameter's default. None where an axis to grow is empty, or an
    input is not one of the model's."""
    names = _positional_names(_parameters(model), len(inputs.args))
    axes_of: dict[str, dict[int, int]] = {}
    for (name, axis), size in sizes.items():
        axes_of.setdefault(name, {})[axis] = size

    def resize(name: str, value: Any) -> Any:
        for axis, size in sorted(axes_of.get(name, {}).items()):
            if size > value.shape[axis] and not value.shape[axis]:
                raise _CannotResize
            value = _grown(value, axis, size)
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


def _grown(value: torch.Tensor, axis: int, size: int, *, midpoints: bool = False) -> torch.Tensor:
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


def _dynamic_ranges(program: Any, model: nn.Module, inputs: Batch) -> Iterator[_Range]:
    """Each dynamic axis of the exported program's inputs (``torch.onnx.export``'s
    ``ONNXProgram``), with the sizes torch.export holds it to, by the graph input's name
    (:func:`_graph_input_names`)."""
    exported = getattr(program, "exported_program", None)
    if exported is None:
        return
    user_inputs = set(exported.graph_signature.user_inputs)
    # torch.export's own name where no call's input pairs with it: resizing it then fails,
    # and its bound is said "not tried" (never dropped without a word)
    named = {name: name for name in user_inputs} | _graph_input_names(exported, model, inputs)
    for node in exported.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        for axis, size in enumerate(getattr(node.meta.get("val"), "shape", ())):
            if not isinstance(size, torch.SymInt):
                continue
            for symbol in size.node.expr.free_symbols:
                bounds = exported.range_constraints.get(symbol)
                if bounds is not None:
                    upper = assumed.upper_bound(bounds.upper)
                    lower = int(bounds.lower)
                    name = named[node.name]
                    yield _Range(name, axis, symbol, lower, upper, size.node.expr)


def _graph_input_names(exported: Any, model: nn.Module, inputs: Batch) -> dict[str, str]:
    """torch.export's name of each tensor input the model was called with, to the graph
    input's (forward's parameter; ``input_<i>`` past the named positional ones; a keyword
    input's key). torch.export makes its own: it lowercases them (``melSpec`` is ``melspec``)
    and names ``*xs``'s items ``xs_0, xs_1``; its inputs are paired with the call's by their
    place in it. A tensor inside a container (which takes no dynamic axes) has none."""
    names = list(exported.graph_signature.user_inputs)
    try:
        args, kwargs = torch.utils._pytree.tree_unflatten(names, exported.call_spec.in_spec)
    except (ValueError, TypeError, AttributeError):  # not as torch 2.13 gives them
        return {}
    positional = _positional_names(_parameters(model), len(inputs.args))
    pairs = [*zip(args, positional, strict=False), *((kwargs[k], k) for k in kwargs)]
    return {leaf: name for leaf, name in pairs if isinstance(leaf, str)}


def _disk_full(error: BaseException, staging: Path) -> OSError | None:
    """The write error that ended an export, where the disk or a limit on it did (a full
    disk, a file size limit, a quota) as the exporter wrote its file in ``staging``, found
    along the exporter's chain of causes; not one of a file the model's own code wrote."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL:
            name = current.filename
            if name is None or Path(os.fsdecode(name)).parent == staging:
                return current
        current = current.__cause__ or current.__context__
    return None


_DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


# The warnings an exporter gives that say its result may be wrong: TorchScript's tracer turned
# a Python value into a constant (``len(x)``, ``int(t)``, a branch on a tensor), which holds
# for the example inputs only.
_WRONG_RESULT_WARNINGS: tuple[type[Warning], ...] = (torch.jit.TracerWarning,)


def _warned(caught: Sequence[warnings.WarningMessage], *, failed: bool = False) -> list[str]:
    """The warnings of :data:`_WRONG_RESULT_WARNINGS` about the model's code among ``caught``,
    each once, as ``file:line: Category: message`` (the line it is about), for the report to
    show (none when the export ``failed``: its error is the one line to say); each is logged at
    INFO (``-v``). The others (deprecations, notes, and tracer warnings about torch's own
    modules) are torch's own business: logged at INFO too."""
    said: list[str] = []
    noted: set[str] = set()
    for caught_warning in caught:
        category = caught_warning.category
        line = f"{category.__name__}: {_trimmed(str(caught_warning.message), 400)}"
        # torch's own modules (nn.LSTM's and attention's checks of their input sizes) trace
        # Python values of the example on every export: no news of the model's code
        if not issubclass(category, _WRONG_RESULT_WARNINGS) or _in_torch(caught_warning):
            if line not in noted:
                noted.add(line)
                logger.info("the exporter warned: %s", line)
            continue
        line = f"{caught_warning.filename}:{caught_warning.lineno}: {line}"
        if line not in said:  # the report shows it: logged at INFO, not said twice
            said.append(line)
            logger.info("the exporter warned: %s", line)
    return said if not failed else []


_TORCH_FOLDER = os.path.dirname(torch.__file__) + os.sep


def _in_torch(caught: warnings.WarningMessage) -> bool:
    """Whether the warning is about a line of torch's own code."""
    return os.path.abspath(caught.filename).startswith(_TORCH_FOLDER)


def _dynamic_shapes(
    model: nn.Module, inputs: Batch, dynamic: dict[str, dict[int, str]], arguments: dict[str, Any]
) -> dict[str, Any] | tuple[Any, ...]:
    """The dynamic axes as torch.export takes them: keyed by ``forward``'s parameters, the
    inputs bound to them as Python binds them (``*args`` a tuple by position, ``**kwargs`` a
    dict by keyword), each entry the axes asked for by the input's name (:func:`_arguments`).
    Where the signature cannot bind the inputs, one entry per argument in order. Inputs that
    ``**kwargs`` takes cannot be given dynamic axes: torch.export (2.13) fails on them with an
    AssertionError, so such a call is refused before anything is exported."""
    try:
        signature = inspect.signature(model.forward)
        bound = signature.bind(*inputs.args, **inputs.kwargs).arguments
    except (TypeError, ValueError):
        return tuple(dynamic.get(name) for name in arguments)
    shapes: dict[str, Any] = {}
    position = 0
    for name, value in bound.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            shapes[name] = tuple(
                _spec(item, dynamic.get(f"input_{position + i}")) for i, item in enumerate(value)
            )
        elif kind is inspect.Parameter.VAR_KEYWORD:
            raise InvalidArgumentError(
                f"the dynamo exporter gives no dynamic axes to a forward that takes inputs "
                f"through **{name} ({', '.join(value)}): name them as forward's parameters",
                parameter="dynamic",
            )
        else:
            shapes[name] = _spec(value, dynamic.get(name))
            position += kind is not inspect.Parameter.KEYWORD_ONLY
    return shapes


def _spec(value: Any, axes: dict[int, str] | None) -> Any:
    """One input's entry: its axes for a tensor; for a container (a dict of tensors), the same
    structure of Nones, which torch.export requires (``inputs['d'] is a dict, but
    dynamic_shapes['d'] is not``); ``_check_dynamic`` gives axes only to tensors."""
    if isinstance(value, torch.Tensor):
        return axes
    return torch.utils._pytree.tree_map(lambda _: None, value)


def _check_dynamic_made(
    model: ir.Model, dynamic: dict[str, dict[int, str]] | None, exporter: str
) -> None:
    """Every axis asked to be dynamic is a symbolic dimension of the graph input of its name:
    an exporter that fixed it (or gave it to another input) made a file that fails on other
    sizes, which no verification on the example inputs would show."""
    inputs = {value.name: value for value in model.graph.inputs}
    for name, axes in (dynamic or {}).items():
        value = inputs.get(name)
        if value is None:
            raise ExportError(
                f"the {exporter} exporter made no graph input of {name} (the forward does not "
                "read it), so none of its axes is dynamic"
            )
        shape = value.shape
        for axis in sorted(axes):
            size = None if shape is None or axis >= len(shape) else shape[axis]
            if size is None or isinstance(size, int):
                fixed = "" if size is None else f" (fixed at {size})"
                raise ExportError(
                    f"the {exporter} exporter did not make axis {axis} of {name} dynamic{fixed}"
                )


# The colours torch.export puts in its messages (``\x1b[96m``): not for a one-line error.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CAUSE_CHARACTERS = 240  # of the innermost exception's message
_WRAPPER_CHARACTERS = 160  # of the outermost's, after it


def _failure(error: BaseException) -> str:
    """An exporter's failure as one line: the innermost exception of its chain (the cause,
    ``'int' object has no attribute 'name'``) first, with its type, then the first line of
    the outermost's message (which step failed), each trimmed. The exporters wrap the cause
    in messages long enough that a line cut at their start lost it."""
    chain = [error]
    # the explicit causes (raise ... from) while there are any, else what each was raised
    # while handling: a forward's ``raise ValueError(hint)`` inside ``except KeyError`` is
    # the cause torch wraps, and its KeyError only the context of the hint
    follow = (lambda e: e.__cause__) if _has_cause(error) else _context
    while (inner := follow(chain[-1])) is not None and len(chain) < 16:
        chain.append(inner)
    if len(chain) == 1:
        return _cause(error) or type(error).__name__
    cause = f"{type(chain[-1]).__name__}: {_cause(chain[-1])}"
    first = _ANSI.sub("", str(error)).strip().split("\n")[0]
    return f"{cause} (in: {_trimmed(first, _WRAPPER_CHARACTERS)})" if first else cause


def _has_cause(error: BaseException) -> bool:
    return error.__cause__ is not None


def _context(error: BaseException) -> BaseException | None:
    """The exception ``error`` was raised while handling, unless it said ``from None``."""
    return None if error.__suppress_context__ else error.__context__


def _cause(error: BaseException) -> str:
    """An exception's message as one printable line, its start and its end kept (torch.export
    names the input and axis at the end: ``... for dimension inputs['x'].shape[2].``)."""
    return printable(shortened(_one_line(str(error)), _CAUSE_CHARACTERS))


def _trimmed(text: str, characters: int) -> str:
    """``text`` as one printable line of at most ``characters`` (and "...")."""
    text = _one_line(text)
    return printable(text[:characters] + "..." if len(text) > characters else text)


def _one_line(text: str) -> str:
    """``text`` without torch.export's colours, its whitespace runs one space each."""
    return " ".join(_ANSI.sub("", text).split())


def _examples(graph_inputs: dict[str, Any]) -> dict[str, Any]:
    """The example inputs by graph input name (:func:`_graph_inputs`), each tensor as the array
    to feed."""
    return {
        name: _to_numpy(value) if isinstance(value, torch.Tensor) else value
        for name, value in graph_inputs.items()
    }


def _feeds(graph: ir.Graph, examples: dict[str, Any]) -> dict[str, np.ndarray]:
    """The example inputs for the graph's inputs, paired by name: TorchScript drops inputs
    that ``forward`` never reads, so the graph's inputs are a subset of the named ones
    (:func:`_graph_inputs`), not a prefix. A Python number the graph takes (TorchScript
    ``bool``, ``int``, ``float``) is fed as a scalar of the input's type. An input that has an
    initializer is a weight, not one of forward's: below IR version 4 (opsets 7 and 8 of the
    TorchScript exporter) every initializer is also listed as a graph input."""
    feeds = {}
    for value in graph.inputs:
        if value.name in graph.initializers:
            continue
        if value.name not in examples:
            raise InvalidArgumentError(
                f"cannot verify: the exported graph takes an input {value.name!r} that is "
                f"none of the inputs named after forward's parameters ({', '.join(examples)})"
            )
        example = examples[value.name]
        if isinstance(example, np.ndarray):
            feeds[value.name] = example
        elif isinstance(example, (bool, int, float)) and value.dtype is not None:
            feeds[value.name] = _scalar(f"input {value.name}", example, value)
        else:
            raise InvalidArgumentError(
                f"cannot verify: input {value.name}: ONNX Runtime takes no "
                f"{type(example).__name__}; give tensors as example inputs"
            )
    return feeds


def _scalar(what: str, example: bool | float, value: ir.Value) -> np.ndarray:
    """A Python number as the 0-d array of graph input or output ``value``'s type, exactly or
    not at all (``what`` names it)."""
    dtype = value.dtype
    if dtype is None:
        raise InvalidArgumentError(f"cannot verify: {what} has no type in the graph")
    try:
        scalar = np.array(example, dtype=dtype.numpy())
    except (OverflowError, ValueError, TypeError):
        scalar = None
    if scalar is None or scalar.item() != example:
        raise InvalidArgumentError(
            f"cannot verify: {what}: {example!r} is not exactly a "
            f"{dtype.name.lower()}, its type in the graph"
        )
    return scalar


class _Weights(NamedTuple):
    """A model's weights by deployed name (:func:`_weight_names`); ``aliases``: the names of a
    weight held under another name too (tied: ``lm_head.weight`` of ``embed.weight``), each
    with the name listed first."""

    values: dict[str, torch.Tensor]
    aliases: dict[str, str]


def _weight_names(model: nn.Module) -> _Weights:
    """Each weight (a parameter of 2-D and up with ``weight`` in its name: ``conv.weight``,
    ``lstm.weight_ih_l0``, ``attn.in_proj_weight``) by its deployed name, with the value it
    computes with: ``conv.weight`` also for weight-normed
    ``conv.parametrizations.weight.original0/1`` and (legacy hook) ``conv.weight_g/_v``. A
    weight under several names (tied, or one module under two) is listed under each."""
    legacy = {
        f"{prefix}.{hook.name}" if prefix else hook.name
        for prefix, module in model.named_modules(remove_duplicate=False)
        for hook in module._forward_pre_hooks.values()
        if is_legacy_hook(hook)
    }
    weights: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[int, str] = {}  # by the parameter's identity
    for name, value in model.named_parameters(remove_duplicate=False):
        parsed = parse_key(name)
        param = value
        if parsed is not None and (parsed[0].form == "parametrize" or parsed[0].weight in legacy):
            name = parsed[0].weight
            module, _, attribute = name.rpartition(".")
            value = getattr(model.get_submodule(module), attribute)
        if value.dim() < 2 or "weight" not in name.rpartition(".")[2] or name in weights:
            continue
        if (named := first.setdefault(id(param), name)) != name:
            aliases[name] = named
        weights[name] = value.detach()
    return _Weights(weights, aliases)


def _restore_names(model: ir.Model, weights: _Weights) -> tuple[list[str], list[str]]:
    """Rename initializers the exporter named itself (``onnx::MatMul_12``, ``mul_1``) after the
    PyTorch weight they hold, found by shape and value (also transposed, as Linear feeds
    MatMul; within float32 rounding, as an exporter may have folded weight norm in float32).
    Returns the weights that still have no initializer of their name, and those whose
    initializer holds them transposed. A name of a weight held under another (tied) names a
    copy of it the exporter made (the tied head's ``W.T`` for a MatMul); with none, the weight
    is the initializer of its other name, and none is missing. A name some other value of
    the model holds (a graph input ``weight``, the filter the caller passes in) is given to
    none: two values of one name read as one, the input's."""
    named = model.graph.initializers
    taken = taken_names(model)
    arrays = {name: _array(w) for name, w in weights.values.items() if name not in named}
    missing = {name: a for name, a in arrays.items() if a is not None}
    transposed = []
    for init_name, value in list(model.graph.initializers.items()):
        tensor = value.const_value
        if not missing or tensor is None or init_name in weights.values or tensor.size < 2:
            continue
        shape = tuple(tensor.shape.numpy())
        for name, weight in missing.items():
            if name in taken:
                continue
            if weight.shape == shape and _close(tensor.numpy(), weight):
                value.name = name
            elif weight.ndim == 2 and weight.T.shape == shape and _close(tensor.numpy(), weight.T):
                value.name = name
                transposed.append(name)
            else:
                continue
            del missing[name]
            break
    unnamed = [name for name, a in arrays.items() if a is None] + list(missing)
    # after the renaming above; a tied weight is held under any of its names (the dynamo
    # exporter keeps the last: an embedding's table as the tied head's ``head.weight``)
    held = {weights.aliases.get(name, name) for name in named if name in weights.values}
    return [n for n in unnamed if weights.aliases.get(n, n) not in held], transposed


# Layout ops that move a weight's elements (``Reshape``, ``Unsqueeze``, a ``Cast`` keep their
# order: a shape tells those).
_MOVING = frozenset({"Transpose", "Slice", "Concat", "Split", "Gather", "Pad", "Expand"})


def _folded_layouts(
    fold: FoldReport, weights: _Weights
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """The weights the ONNX fold wrote under their own name through layout ops that move
    their elements (a weight-norm site's ``Transpose`` in front of a ``MatMul``, a cone's):
    those held transposed (one 2-D ``Transpose``), and those laid out otherwise (an LSTM's
    gates reordered); and the weights a cone wrote together under a name of them all (a
    bidirectional LSTM's two directions, ``lstm.weight_ih_l0+weight_ih_l0_reverse``), by that
    name, where it holds them all and nothing else (as many elements as they have, and no
    other source). ``_restore_names`` sees only the initializers the exporter named."""
    transposed: list[str] = []
    laid_out: list[str] = []
    together: dict[str, list[str]] = {}
    entries = [(s.name, s.layout) for s in fold.sites if s.status == "folded"]
    entries += [(c.name, c.ops) for c in fold.cones if c.status == "folded"]
    for name, ops in dict(entries).items():  # a name once (a shared weight is written once)
        weight = weights.values.get(name)
        moving = [op for op in ops if op in _MOVING]
        if weight is None or not moving:
            continue
        (transposed if moving == ["Transpose"] and weight.dim() == 2 else laid_out).append(name)
    for cone in fold.cones:
        held = [weights.values.get(source) for source in cone.sources]
        whole = cone.shape is not None and all(w is not None for w in held)
        if whole and sum(w.numel() for w in held if w is not None) != math.prod(cone.shape or ()):
            whole = False  # some element of some weight is not in it (a slice of each)
        if cone.status == "folded" and cone.name not in weights.values and whole:
            together[cone.name] = list(cone.sources)
    return transposed, laid_out, together


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to a few float32 roundings (weight norm folded in another order)."""
    if a.dtype != b.dtype:
        return False
    a, b = a.astype(np.float64), b.astype(np.float64)  # ml_dtypes' bfloat16 too
    scale = float(np.abs(b).max(initial=0.0)) or 1.0
    return bool(np.allclose(a, b, rtol=1e-5, atol=1e-6 * scale))


# The opsets each torch.onnx exporter writes: the dynamo exporter starts at 18 (its op library
# needs it); the TorchScript one covers 7 to its own maximum.
def opset_range(exporter: str) -> tuple[int, int]:
    from torch.onnx import _constants

    if exporter == "dynamo":
        return 18, _constants.ONNX_MAX_OPSET
    return _constants.ONNX_MIN_OPSET, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET


_DEFAULT_CHECK = CheckOptions()


def _require_export_arguments(fold_in_torch: object, verify: object, opset: object) -> int | None:
    """The Python API's arguments of :func:`export` of the types it takes (the CLI's parsing
    gives no other): ``verify="no"`` would count as true, ``dynamic=["x"]`` fail deep inside.
    Returns ``opset`` as a Python int (``np.int64(17)`` is one), or None."""
    require_flag("fold_in_torch", fold_in_torch)
    require_flag("verify", verify)
    if opset is None:
        return None
    if (number := whole(opset)) is None:
        raise InvalidArgumentError(
            f"must be a whole number or None, not {opset!r}", parameter="opset"
        )
    return number


def _required_dynamic(dynamic: object) -> dict[str, dict[int, str]] | None:
    """``dynamic`` as a dict of input names to ``{axis: name}`` dicts, each axis a Python int
    (``np.int64(0)`` is one); refused where it is not one."""
    if dynamic is None:
        return None
    shape = "a dict of input names to {axis: name} dicts, e.g. {'mel': {0: 'batch', 2: 'frames'}}"
    if not isinstance(dynamic, Mapping):
        raise InvalidArgumentError(f"must be {shape}, not {dynamic!r}", parameter="dynamic")
    checked: dict[str, dict[int, str]] = {}
    for name, axes in dynamic.items():
        ok = isinstance(name, str) and isinstance(axes, Mapping)
        ok = ok and all(
            whole(axis) is not None and isinstance(label, str) for axis, label in axes.items()
        )
        if not ok:
            raise InvalidArgumentError(
                f"must be {shape}, not {{{name!r}: {axes!r}}}", parameter="dynamic"
            )
        if not axes:  # probes would say "every dynamic axis doubled" of unchanged inputs
            raise InvalidArgumentError(f"{name!r} names no axis", parameter="dynamic")
        checked[name] = {int(axis): label for axis, label in axes.items()}  # whole numbers
    return checked


def validate_export_options(exporter: str, opset: int | None, options: CheckOptions | None) -> None:
    """Every export option (``options``: the check's, when verifying), checked before anything
    runs or is written."""
    if exporter not in ("dynamo", "torchscript"):
        raise InvalidArgumentError(
            f"{exporter!r}: choose dynamo or torchscript", parameter="exporter"
        )
    if opset is not None:
        low, high = opset_range(exporter)
        if not low <= opset <= high:
            raise InvalidArgumentError(
                f"{opset}: the {exporter} exporter writes opsets {low} to {high}",
                parameter="opset",
            )
    if options is not None:
        options.validate()


def export(
    model: nn.Module,
    example_inputs: torch.Tensor | Sequence[Any] | Mapping[str, Any] | Batch,
    path: str | os.PathLike[str],
    *,
    exporter: str = "dynamo",
    fold_in_torch: bool = True,
    dynamic: dict[str, dict[int, str]] | None = None,
    accept_ranges: bool = False,
    opset: int | None = None,
    verify: bool = True,
    providers: Sequence[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    threads: int | None = None,
    plan: IOPlan | None = None,
) -> ExportReport:
    """Export ``model`` to a clean ONNX file at ``path``, verified unless ``verify=False``; see
    the module docstring.

    Every option and path is checked before anything is written (``plan``: the caller's, with
    its other files). With ``verify``, the model is published under ``path`` only when ONNX
    Runtime's outputs match PyTorch's and no weight-norm site was declined; otherwise nothing
    appears there and the report says why. ``accept_ranges``: export a dynamic axis that
    torch.export holds to a range of sizes, outside which PyTorch runs too, for that range
    only (refused otherwise: :func:`_check_ranges`).
    """
    plan = as_plan(plan)
    opset = _require_export_arguments(fold_in_torch, verify, opset)
    require_flag("accept_ranges", accept_ranges)
    dynamic = _required_dynamic(dynamic)
    if plan is None:  # the model's code may read files: none of them may be the output
        plan = IOPlan()
        plan.watch_user_code()
        try:  # the plan's watch (an inotify instance: a few per user) ends with the call
            return export(
                model,
                example_inputs,
                path,
                exporter=exporter,
                fold_in_torch=fold_in_torch,
                dynamic=dynamic,
                accept_ranges=accept_ranges,
                opset=opset,
                verify=verify,
                providers=providers,
                rtol=rtol,
                atol=atol,
                runs=runs,
                warmup=warmup,
                threads=threads,
                plan=plan,
            )
        finally:
            plan.close()
    options = CheckOptions(
        providers=providers, rtol=rtol, atol=atol, runs=runs, warmup=warmup, threads=threads
    )
    if not verify:  # the options given other values than their defaults
        refuse_unused(
            {
                f.name: value
                for f in dataclasses.fields(options)
                if (value := getattr(options, f.name)) != getattr(_DEFAULT_CHECK, f.name)
            },
            "verify=True",
        )
    validate_export_options(exporter, opset, options if verify else None)
    if isinstance(model, torch.jit.ScriptModule):  # TorchScript submodules are exported as they are
        raise InvalidArgumentError(
            f"{type(model).__name__}: a TorchScript module (torch.jit.script or trace): wnpass "
            "exports the Python nn.Module it was made from (it folds weight norm there); or "
            "export it with torch.onnx.export and fold the file with wnpass fold"
        )
    inputs = as_batch(example_inputs)
    dynamo = exporter == "dynamo"
    arguments = _arguments(model, inputs, dynamo)
    graph_inputs, several = _graph_inputs(arguments, dynamo)
    _check_dynamic(dynamic, arguments, graph_inputs)
    if several is not None:
        _several_inputs(*several, verify=verify)
    shapes = _dynamic_shapes(model, inputs, dynamic, arguments) if dynamic and dynamo else None
    _check_values(model, inputs)
    path = as_path("path", path)
    if not plan.planned(path, "output"):  # the CLI plans it with its other files
        plan.write(path, "output")
    plan.check()  # the output's data file, if any, is planned once the model is known
    chosen = prov.resolve(list(providers) if providers else None) if verify else []
    loaded = buffer_values(model)  # as the caller set them, before wnpass's forwards
    # the deployed behaviour; every submodule's flag comes back
    with evaluating(model), state_given_back(model):
        # what is exported is a copy of the model as given, taken before any of wnpass's
        # forwards, and after lazy layers take their shapes (and give back what that forward
        # wrote: not the parameters it wrote, which there is no copy of yet)
        lazy_wrote = materialize_lazy(model, inputs)
        target, itself = _copy(model, fold_in_torch)
        forwards = _Forwards(model, None if itself else target, lazy_wrote)
        with forwards.given_back():
            result = call_model(model, inputs)  # the model's own error, before any exporter's
            outputs = _outputs(result) if verify else []  # read before it is given back
        changed = []
        if verify:
            with forwards.given_back():
                changed = _changed(outputs, _outputs(call_model(model, inputs)))
        examples = _examples(graph_inputs) if verify else {}
        probed = []
        for sizes in PROBES if verify and dynamic else ():
            assert dynamic is not None  # for the type checker
            with forwards.given_back():
                probed.append(_probed(model, inputs, dynamic, arguments, dynamo, sizes))
        if forwards.written:  # at INFO, as what else the report says: the command line prints it
            logger.info("%s", parameters_written_line(forwards.written, forwards.given))
        # kept for the ONNX fold, its values are still checked here: the dynamo exporter
        # computes a small site into a plain initializer, NaN and all, which no fold sees
        torch_report = fold_weight_norm(target) if fold_in_torch else check_weight_norm(target)
        # named as the exporter sees them: a deep copy holds a torch.compile'd layer unwrapped
        # (its bias is "b.bias", not "b._orig_mod.bias"), and its weight must match
        weights = _weight_names(target)
        with plan.staging(path) as staging:
            raw = staging / "exported.onnx"
            with _named_as(raw, f"the {exporter} exporter's output for {path}"):
                warned, ranges, conditions = _export(
                    target,
                    cloned(inputs),  # a forward that changes its inputs changes a copy
                    list(graph_inputs),
                    raw,
                    dynamo=dynamo,
                    dynamic=dynamic,
                    shapes=shapes,
                    opset=opset,
                )
                exported = io.load(raw)
            with forwards.given_back():
                ranged, beyond = _check_ranges(
                    model, inputs, arguments, ranges, conditions or [], verify, accept_ranges
                )
            if conditions is None:  # another torch: said, never passed over
                ranged.append(assumed.UNREAD)
            accepted = [c for c in conditions or [] if c.tie or accept_ranges]
            probed = [_within(probe, ranges, accepted, accept_ranges) for probe in probed]
            for sizes in [p.sizes for p in probed if p.outputs is None]:
                assert dynamic is not None  # for the type checker
                for axes in _alone(dynamic, arguments):
                    with forwards.given_back():
                        alone = _probed(model, inputs, dynamic, arguments, dynamo, sizes, axes)
                    probed.append(_within(alone, ranges, accepted, accept_ranges))
            every = dynamic or {}
            for axes in _shorter(probed, every, arguments):
                with forwards.given_back():
                    shorter = _probed(model, inputs, every, arguments, dynamo, SHORTER, axes)
                probed.append(_within(shorter, ranges, accepted, accept_ranges))
            for where in beyond:  # compared at the gate, as the probes above are
                with forwards.given_back():
                    probed.append(_probed_beyond(model, where, dynamo))
            warned += [] if dynamo else _moved_by_trace(target, loaded)
            # what the forward read while the exporter traced it: the plan.check() below,
            # before anything is written, refuses an output onto one of those files
            plan.record_user_reads()
            _check_opset(exported, opset)
            _check_dynamic_made(exported, dynamic, exporter)
            _, onnx_report = fold_onnx(exported, in_place=True)
            in_place = itself and fold_in_torch
            report = ExportReport(str(path), exporter, torch_report, onnx_report, in_place)
            report.warnings, report.sizes = warned, ranged
            report.parameters_written = forwards.written
            report.parameters_given_back = forwards.given
            report.names_missing, report.names_transposed = _restore_names(exported, weights)
            transposed, report.names_laid_out, together = _folded_layouts(onnx_report, weights)
            report.names_held_together = together
            held = {name for names in together.values() for name in names}
            report.names_missing = [name for name in report.names_missing if name not in held]
            report.names_transposed += [n for n in transposed if n not in report.names_transposed]
            report.verified = verify
            if verify and dynamic:
                report.dynamic_axes = [_axes_said([axis]) for axis in _every_axis(dynamic)]
            report.not_available = (  # not checked for lack of them, where not chosen
                [p for p in prov.PROVIDERS if p not in prov.available()]
                if verify and not providers
                else []
            )
            feeds = _feeds(exported.graph, examples) if verify else {}
            expected = _expected(exported.graph, outputs) if verify else []
            report.not_deterministic = [exported.graph.outputs[i].name or str(i) for i in changed]
            if report.not_deterministic:
                logger.info(
                    "cannot verify: PyTorch gave other values of output %s on a second run "
                    "on the same inputs (the model is not deterministic)",
                    ", ".join(report.not_deterministic),
                )

            at_sizes = [_at_sizes(report, exported.graph, probe) for probe in probed]

            def gate(staged: Path) -> bool:
                if report.not_deterministic:  # no reference to compare with
                    return False
                with _named_as(staged, str(path)):
                    _compare(report, staged, chosen, (feeds, expected), at_sizes, options)
                    _check_shape_info(report, exported.graph)
                return bool(report)  # matched, and nothing was left to fold

            save_target = io.plan_save(plan, exported, path)
            plan.check()
            published = io.save(exported, save_target, plan, gate=gate if verify else None)
    report.published = published
    report.data_files = [str(path) for path in save_target.data_written(plan)]
    report.onnx_fold.left = list(plan.left)
    report.onnx_fold.removed = [str(path) for path in plan.removed]
    return report


@dataclasses.dataclass(frozen=True)
class _Probed:
    """PyTorch with every dynamic axis at a probe's sizes (:func:`_probed`), or with one
    size's axes outside the range torch.export held them to (:func:`_probed_beyond`)."""

    sizes: str  # a name of PROBES, or the axes and their size: "axis 1 of x at 1"
    shapes: dict[str, list[int]]  # of the graph inputs made larger
    examples: dict[str, Any]  # by graph input name, as :func:`_examples` gives them
    outputs: list[Output] | None  # None: PyTorch's forward failed on them
    failure: str | None = None  # how
    beyond: _Beyond | None = None  # for a probe outside a range, or where a condition fails
    ties: str | None = None  # a condition that ties sizes its sizes break (DynamicProbe.ties)
    alone: str | None = None  # the axes it resized, where not every one (DynamicProbe.alone)
    resized: tuple[str, ...] = ()  # the axes it resized, each as said (DynamicProbe.resized)


def _probed(
    model: nn.Module,
    inputs: Batch,
    dynamic: dict[str, dict[int, str]],
    arguments: dict[str, Any],
    dynamo: bool,
    sizes: str,
    alone: list[tuple[str, int]] | None = None,
) -> _Probed:
    """PyTorch's outputs with every dynamic axis of the example inputs (or those ``alone``, by
    input name and axis) at the probe ``sizes`` (:data:`PROBES`): each input repeated along it
    (``torch.cat([x, 0.875 * x], axis)`` for a float one, or its midpoints where PyTorch
    gives NaN or Inf so: :func:`_grown`), and one element more for ``doubled plus one``.
    A size the exporter fixed in the graph, or a branch it took on the example's size, gives
    other outputs there. A dynamic input that is a parameter's default (which the TorchScript
    exporter passes on) is given by its name."""
    names = _positional_names(_parameters(model), len(inputs.args))
    resized = set(_every_axis(dynamic) if alone is None else alone)

    def grown_batch(midpoints: bool) -> Batch:
        def grow(name: str, value: Any) -> Any:
            for axis in sorted(a for a in dynamic.get(name, {}) if (name, a) in resized):
                if value.shape[axis]:  # an empty axis stays empty: said, nothing compared
                    length = _probe_length(sizes, value.shape[axis])
                    value = _grown(value, axis, length, midpoints=midpoints)
            return value

        with torch.no_grad():
            args = tuple(grow(name, value) for name, value in zip(names, inputs.args, strict=True))
            kwargs = {name: grow(name, value) for name, value in inputs.kwargs.items()}
            for name in dynamic:
                if name not in names and name not in kwargs:
                    kwargs[name] = grow(name, arguments[name])
        return Batch(args, kwargs)

    batch = grown_batch(midpoints=False)
    graph_inputs, _ = _graph_inputs(_arguments(model, batch, dynamo), dynamo)
    shapes = {name: list(graph_inputs[name].shape) for name in dynamic}
    said = None if alone is None else _axes_said(alone)
    each = tuple(_axes_said([axis]) for axis in sorted(resized))
    probe = _Probed(sizes, shapes, {}, None, alone=said, resized=each)
    if empty := sorted((n, a) for n, a in resized if not shapes[n][a]):
        name, axis = empty[0]
        failure = f"axis {axis} of {name} is 0 in the example"
        return dataclasses.replace(probe, failure=failure)
    ran = _run_probe(model, batch, graph_inputs, probe)
    if ran.outputs is None or all(_finite(o) for o in ran.outputs):
        return ran
    # NaN or Inf: the scaled copies may have left the model's domain (acosh of x >= 1)
    batch = grown_batch(midpoints=True)
    graph_inputs, _ = _graph_inputs(_arguments(model, batch, dynamo), dynamo)
    again = _run_probe(model, batch, graph_inputs, probe)
    return again if again.outputs is not None and all(_finite(o) for o in again.outputs) else ran


def _finite(output: Output) -> bool:
    """Whether an output of PyTorch's holds no NaN or Inf (a number or an integer array:
    yes)."""
    if isinstance(output, np.ndarray) and output.dtype.kind in "fc":
        return bool(np.isfinite(output).all())
    return not isinstance(output, float) or math.isfinite(output)


def _probe_length(sizes: str, length: int) -> int:
    """An axis's length at a probe's ``sizes`` (a name of :data:`PROBES`, or
    :data:`SHORTER`), from its example's ``length``."""
    return length - 1 if sizes == SHORTER else 2 * length + PROBES[sizes]


def _shorter(
    probed: list[_Probed], dynamic: dict[str, dict[int, str]], arguments: dict[str, Any]
) -> list[list[tuple[str, int]]]:
    """The groups of axes (:func:`_alone`, or every axis as one) that no probe compared
    because PyTorch failed at every size they were tried at (a table of fixed size: twice the
    example's length is past it), each of an example length of 3 or more: tried one shorter
    (:data:`SHORTER`), where a size the trace fixed and a parity branch show too."""
    groups = _alone(dynamic, arguments) or [_every_axis(dynamic)]
    chosen = []
    for axes in groups:
        said = _axes_said(axes)
        tried = [p for p in probed if p.beyond is None and p.alone in (None, said)]
        failed = all(p.outputs is None and _pytorch_failed(p) for p in tried)
        if tried and failed and all(arguments[n].shape[a] >= 3 for n, a in axes):
            chosen.append(axes)
    return chosen


def _pytorch_failed(probe: _Probed) -> bool:
    """Whether nothing could be compared at a probe's sizes because PyTorch's forward failed
    there (not because they are past a range, or break a condition)."""
    return (probe.failure or "").startswith("PyTorch's forward")


def _alone(
    dynamic: dict[str, dict[int, str]], arguments: dict[str, Any]
) -> list[list[tuple[str, int]]]:
    """The dynamic axes in groups of one length in the example, by input name and axis (a
    mask's with its input's), where there are two groups or more: each group is resized alone
    where nothing could be compared with every axis resized (a position table shorter than
    twice the example's length fails PyTorch there, and a branch on the batch size would go
    unseen)."""
    groups: dict[int, list[tuple[str, int]]] = {}
    for name, axes in dynamic.items():
        for axis in sorted(axes):
            groups.setdefault(int(arguments[name].shape[axis]), []).append((name, axis))
    return list(groups.values()) if len(groups) > 1 else []


def _every_axis(dynamic: dict[str, dict[int, str]]) -> list[tuple[str, int]]:
    """Every dynamic axis, by input name and axis, in the order given."""
    return [(name, axis) for name, axes in dynamic.items() for axis in sorted(axes)]


def _axes_said(axes: list[tuple[str, int]]) -> str:
    """Axes by input name and axis, as said: ``axis 1 of ids and axis 1 of mask``."""
    return " and ".join(f"axis {axis} of {name}" for name, axis in axes)


def _within(
    probe: _Probed, ranges: list[_Range], accepted: list[assumed.Condition], accept: bool
) -> _Probed:
    """``probe`` with nothing to compare where it gives an axis a size outside those
    torch.export held it to (the file is for those only: an accepted range, or one where
    PyTorch fails outside; longer, or one shorter: :data:`SHORTER`), or a size where an
    ``accepted`` condition on it does not hold (a tie, which breaking makes inputs that do
    not go together, among them); as it was otherwise."""
    for bounded in ranges:
        shape = probe.shapes.get(bounded.name)
        if probe.outputs is None or shape is None or bounded.expr != bounded.symbol:
            continue
        size = shape[bounded.axis]
        if size < bounded.lower or (bounded.upper is not None and size > bounded.upper):
            failure = (
                f"axis {bounded.axis} of {bounded.name} is {size} there, outside the sizes "
                f"it is exported for ({_span(bounded.lower, bounded.upper)})"
            )
            return dataclasses.replace(probe, examples={}, outputs=None, failure=failure)

    def length(axis: tuple[str, int]) -> int | None:
        shape = probe.shapes.get(axis[0])
        return None if shape is None else shape[axis[1]]

    sizes = _symbol_sizes(ranges, length)
    for condition in accepted if probe.outputs is not None else ():
        if condition.holds_at(sizes):
            continue
        if condition.tie and not accept:  # compared: ONNX Runtime may refuse such inputs
            probe = dataclasses.replace(probe, ties=_tie_said(condition, ranges))
            continue
        named = [r for r in ranges if str(r.symbol) == condition.symbol and r.expr == r.symbol]
        axis = f"axis {named[0].axis} of {named[0].name}" if named else condition.symbol
        failure = (
            f"torch.export's condition {condition.text} (n: the length of {axis}) does not "
            "hold there: the file is exported for the sizes where it holds"
        )
        return dataclasses.replace(probe, examples={}, outputs=None, failure=failure)
    return probe


def _probed_beyond(model: nn.Module, beyond: _Beyond, dynamo: bool) -> _Probed:
    """PyTorch's outputs where it ran beyond the sizes torch.export held an axis to (outside
    its range, or where a condition on it fails)
    (:func:`_check_ranges`)."""
    graph_inputs, _ = _graph_inputs(_arguments(model, beyond.inputs, dynamo), dynamo)
    shapes = {name: list(graph_inputs[name].shape) for name in beyond.resized}
    probe = _Probed(beyond.sizes, shapes, {}, None, beyond=beyond)
    return _run_probe(model, beyond.inputs, graph_inputs, probe)


def _run_probe(
    model: nn.Module, batch: Batch, graph_inputs: dict[str, Any], probe: _Probed
) -> _Probed:
    """``probe`` with PyTorch's outputs on ``batch`` and its examples (``graph_inputs``), or
    how PyTorch's forward failed on them."""
    try:
        outputs = _outputs(call_model(model, batch))
    except ForwardFailedError as error:
        how = what_it_did(error.__cause__) if error.__cause__ is not None else str(error)
        return dataclasses.replace(probe, failure=f"PyTorch's forward {how}")
    return dataclasses.replace(probe, examples=_examples(graph_inputs), outputs=outputs)


def _at_sizes(report: ExportReport, graph: ir.Graph, probed: _Probed) -> _Reference | None:
    """The feeds and expected outputs at a probe's sizes, its entry added to
    ``report.dynamic``; None where they cannot be had, and the entry says why
    (:attr:`DynamicProbe.unchecked`): PyTorch failed there (a length tied to values, as
    ``lengths.max()``, a table of fixed size, a model that takes even lengths only), or
    returned another count of outputs than the graph has. The export may be right: the
    dynamic axes are then said to be unverified there, which fails nothing; but below a
    range (:func:`_probed_beyond`), where PyTorch ran, nothing shows which branch the file
    takes there: ``not_verified``, which fails the verification."""
    probe = DynamicProbe(probed.sizes, probed.shapes)
    if (beyond := probed.beyond) is not None:
        probe.bound, probe.axes, probe.size = beyond.bound, beyond.axes, beyond.size
        probe.condition, probe.ties = beyond.condition, beyond.ties
    probe.ties, probe.alone = probe.ties or probed.ties, probed.alone
    probe.resized = list(probed.resized)
    report.dynamic.append(probe)
    failure = probed.failure
    if probed.outputs is not None:
        try:
            return _feeds(graph, probed.examples), _expected(graph, probed.outputs)
        except InvalidArgumentError as error:
            failure = error.detail.removeprefix("cannot verify: ")
    if probe.bound is not None:  # where PyTorch ran: whether the file branches there is unknown
        probe.not_verified = f"nothing could be compared: {failure}"
    else:
        probe.unchecked = failure
    logger.info("the dynamic axes could not be verified with %s: %s", probe.where, failure)
    return None


def _changed(first: list[Output], second: list[Output]) -> list[int]:
    """The outputs (by position) of two PyTorch runs on the same inputs that are not the same
    bit for bit: such an output is no reference, as the model gives another each time (random
    numbers, however small: a tolerance would pass noise below it). Every output where the
    runs returned other counts."""
    if len(first) != len(second):
        return list(range(len(first)))
    return [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if not _same(a, b)]


def _same(a: Output, b: Output) -> bool:
    """The same value: arrays of one dtype, shape and bytes (NaN where the other has NaN);
    numbers of one type and value (NaN alike)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and (a.dtype, a.shape) == (b.dtype, b.shape)
            and a.tobytes() == b.tobytes()
        )
    return type(a) is type(b) and (a == b or (a != a and b != b))


class _Forwards:
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
            with state_given_back(self.model) as done:
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


def _check_values(model: nn.Module, inputs: Batch) -> None:
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


@contextlib.contextmanager
def _named_as(staged: Path, name: str) -> Iterator[None]:
    """Errors about a staged file call it ``name`` instead, which the user knows (the output,
    or what the exporter wrote for it): the staging folder is wnpass's own, and gone once the
    error is shown."""
    try:
        yield
    except WnpassError as error:
        if str(staged) in error.detail:
            error.detail = error.detail.replace(str(staged), name)
            error.args = (error.render(),)
        raise


# Whether the exporters' printing is silenced at the file descriptors: a command line's
# choice (:func:`exporters_silenced`), never a library call's (it is the whole process's).
_SILENCED: contextvars.ContextVar[bool] = contextvars.ContextVar("silenced", default=False)


@contextlib.contextmanager
def exporters_silenced() -> Iterator[None]:
    """For a command line, whose stdout and stderr are its own: while the block runs, what the
    exporters print from C++ (the TorchScript exporter's whole graph on stdout when it fails,
    torch.export's graph on stderr) goes to the null device, unless wnpass logs at INFO
    (``-v``). A library call leaves the process's file descriptors alone."""
    token = _SILENCED.set(True)
    try:
        yield
    finally:
        _SILENCED.reset(token)


@contextlib.contextmanager
def _exporter_quiet() -> Iterator[None]:
    """What the exporters say besides their error, shown only when wnpass itself logs at INFO
    (``-v``): torch.onnx logs its progress and notes (``torchvision is not installed``) as
    warnings; within :func:`exporters_silenced`, what C++ prints is silenced too, at the file
    descriptors, for the whole process while the export runs (C++ writes there directly).
    The error itself is the one line wnpass raises (:func:`_export`)."""
    if logger.isEnabledFor(logging.INFO):
        yield
        return
    exporter = logging.getLogger("torch.onnx")
    level = exporter.level
    exporter.setLevel(logging.ERROR)
    try:
        with contextlib.ExitStack() as silenced:
            if _SILENCED.get():
                silenced.enter_context(_silenced(sys.stdout, 1))
                silenced.enter_context(_silenced(sys.stderr, 2))
            yield
    finally:
        exporter.setLevel(level)


@contextlib.contextmanager
def _silenced(stream: Any, fd: int) -> Iterator[None]:
    """File descriptor ``fd`` (``stream``'s) writes to the null device for the block. What
    Python and C buffered meanwhile is flushed before it is put back, so none of it comes
    out later. Where ``fd`` is not open there is nothing to silence."""
    try:
        saved = os.dup(fd)
    except OSError:
        saved = -1
    if saved < 0:
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        _flush(stream)
        os.dup2(null, fd)
        yield
    finally:
        _flush(stream)
        os.dup2(saved, fd)
        os.close(saved)
        os.close(null)


def _flush(stream: Any) -> None:
    """Flush ``stream`` and C's stdio buffers (where C++ ``std::cout`` writes)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        stream.flush()
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).fflush(None)


def _check_opset(model: ir.Model, opset: int | None) -> None:
    written = model.opset_imports.get("", None)
    if opset is not None and written != opset:
        raise InvalidArgumentError(
            f"{opset}: torch.onnx wrote opset {written} instead; refused", parameter="opset"
        )


# Feeds by graph input name, and the outputs PyTorch gave on them.
_Reference = tuple[dict[str, np.ndarray], list[np.ndarray]]


def _compare(
    report: ExportReport,
    staged: Path,
    chosen: list[str],
    example: _Reference,
    at_sizes: list[_Reference | None],
    options: CheckOptions,
) -> None:
    """ONNX Runtime against PyTorch on each provider in ``chosen``: on the example inputs, timed,
    and at each dynamic probe's sizes (``at_sizes``, by ``report.dynamic``; None: nothing to
    compare there). ONNX Runtime failing at a probe's sizes is a failed verification (the graph
    is wrong there), not an error: :attr:`DynamicProbe.not_verified` says it."""
    feeds = example[0]
    for provider in chosen:
        try:
            session = prov.open_session(staged, provider, threads=options.threads)
            compared = (
                None if session.fell_back else _run_compared(session, staged, example, options)
            )
        except prov.SessionError as error:  # where PyTorch ran: the exported graph is wrong
            said = error.reason
            if isinstance(error, prov.RunFailedError):
                said = f"onnxruntime failed to run it: {said}"
            report.ort_failed = f"on {provider}, {report.output}: {said}"
            logger.info("the exported graph failed on %s: %s", provider, said)
            return
        if compared is None:
            logger.info("%s fell back to %s: not compared", provider, session.actual)
            report.fell_back.append(provider)
            continue
        report.comparisons[provider] = compared
        for probe, reference in zip(report.dynamic, at_sizes, strict=True):
            if reference is None or probe.not_verified is not None:
                continue
            try:
                with _named_as(staged, report.output):
                    compared = _run_compared(session, staged, reference, options)
            except WnpassError as error:  # ONNX Runtime's whole reason, where it gave one
                said = str(error)
                if isinstance(error, prov.RunFailedError):
                    said = f"{report.output}: onnxruntime failed to run it: {error.reason}"
                if probe.ties is not None and isinstance(error, prov.RunFailedError):
                    probe.unchecked = (  # refused, not computed otherwise: fails nothing
                        f"on {provider}, ONNX Runtime refuses these sizes, which break "
                        f"torch.export's condition {probe.ties}, which ties them: in the file "
                        "such inputs do not go together"
                    )
                    continue
                probe.not_verified = f"on {provider}, {said}"
                logger.info("the dynamic axes failed with %s: %s", probe.where, error)
            else:
                probe.comparisons[provider] = compared
                vacuous = nothing_compared(compared) if probe.bound is not None else None
                if vacuous is not None:  # no evidence the file takes PyTorch's branch there
                    probe.not_verified = f"on {provider}, {vacuous}"
        try:
            (report.latency[provider],) = timed_runs(
                [(session, staged)], feeds, options.runs, options.warmup
            )
        except FailedInTiming as error:  # after the compared run: as check has it
            said = f"onnxruntime failed to run it {error.reason}"
            report.ort_failed = f"on {provider}, {report.output}: {said}"
            logger.info("the exported graph failed on %s: %s", provider, said)
            return


def _check_shape_info(report: ExportReport, graph: ir.Graph) -> None:
    """Set ``report.shape_info_wrong``: each output axis the graph declares of a fixed size
    that a compared run computed at another (on the example inputs, or with every dynamic axis
    at a probe's sizes), once."""
    declared = {value.name: value.shape for value in graph.outputs}
    runs = [("on the example inputs", report.comparisons)] + [
        (f"with {probe.where}", probe.comparisons) for probe in report.dynamic
    ]
    seen: set[tuple[str, int]] = set()  # (output, axis): said at the first run that shows it
    for where, results in runs:
        for comparison in (c for compared in results.values() for c in compared):
            shape, actual = declared.get(comparison.name), comparison.shape
            if shape is None or actual is None or len(shape) != len(actual):
                continue
            for axis, (size, computed) in enumerate(zip(shape, actual, strict=True)):
                if not isinstance(size, int) or size == computed or (comparison.name, axis) in seen:
                    continue
                seen.add((comparison.name, axis))
                said = (
                    f"the graph declares axis {axis} of output {comparison.name} as {size}, "
                    f"but it is {computed} {where}"
                )
                report.shape_info_wrong.append(said)
                logger.info("%s", said)


def _run_compared(
    session: prov.Session, staged: Path, reference: _Reference, options: CheckOptions
) -> list[OutputComparison]:
    feeds, expected = reference
    actual = prov.run(session, staged, feeds)
    out_names = [o.name for o in session.session.get_outputs()]
    return compare_outputs(
        out_names, expected, out_names, actual, rtol=options.rtol, atol=options.atol
    )
