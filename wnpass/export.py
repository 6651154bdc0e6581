"""The deployment pipeline: fold in PyTorch, export to ONNX, fold what is left, verify.

``export(model, example_inputs, path)``:

1. folds weight norm out of a copy of the model (``fold_weight_norm``; the caller's model keeps
   training as it was), unless ``fold_in_torch=False``;
2. exports with ``torch.onnx.export`` (the dynamo exporter by default, the TorchScript one on
   request), with dynamic axes on request;
3. folds whatever weight norm is still in the graph (``fold_onnx``: all of it when PyTorch did
   not fold first) into the output file, written atomically;
4. compares the PyTorch model's outputs with ONNX Runtime's on the example inputs, on every
   available provider (or those asked for), and times the ONNX model there.

The report says what was folded where, whether every initializer carries its PyTorch
parameter's name, and whether the outputs matched.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import torch
from torch import nn

from wnpass.axes import is_legacy_hook
from wnpass.errors import InvalidArgumentError, WnpassError, one_line
from wnpass.fx.fold import TorchFoldReport, fold_weight_norm
from wnpass.onnx import io
from wnpass.onnx.api import fold_onnx
from wnpass.plan import IOPlan
from wnpass.report import FoldReport, write_json
from wnpass.rules import parse_key
from wnpass.verify import providers as prov
from wnpass.verify.check import latency_stats
from wnpass.verify.compare import OutputComparison, compare_outputs
from wnpass.verify.options import DEFAULT_RUNS, DEFAULT_WARMUP, CheckOptions
from wnpass.verify.report import LatencyStats

__all__ = ["ExportError", "ExportReport", "ModelRunError", "export", "opset_range"]

logger = logging.getLogger(__name__)


class ExportError(WnpassError):
    """torch.onnx.export failed on the model."""


class ModelRunError(WnpassError):
    """The user's model raised when run on its example inputs."""


@dataclasses.dataclass
class ExportReport:
    """What the deployment pipeline did, and whether the ONNX model matches PyTorch."""

    output: str
    exporter: str
    torch_fold: TorchFoldReport | None
    onnx_fold: FoldReport
    folded_in_place: bool = False  # the model could not be copied (legacy hooks)
    names_missing: list[str] = dataclasses.field(default_factory=list)
    comparisons: dict[str, list[OutputComparison]] = dataclasses.field(default_factory=dict)
    latency: dict[str, LatencyStats] = dataclasses.field(default_factory=dict)
    not_available: list[str] = dataclasses.field(default_factory=list)
    fell_back: list[str] = dataclasses.field(default_factory=list)  # asked for, ran elsewhere
    published: bool = True  # False: the check failed and nothing was written

    @property
    def matches(self) -> bool:
        """The ONNX outputs matched PyTorch's wherever compared, and no provider asked for
        fell back to another (what ``verify`` requires before the file is published)."""
        compared = [c for comparisons in self.comparisons.values() for c in comparisons]
        return all(compared) and not self.fell_back

    def __bool__(self) -> bool:
        """Nothing left to fold, and the outputs matched (:attr:`matches`)."""
        return self.onnx_fold.declined == 0 and self.matches

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ok"] = bool(self)
        return data

    def write_json(self, path: str | Path, plan: IOPlan | None = None) -> None:
        write_json(path, self.to_dict(), plan)


def _numpy_outputs(outputs: Any) -> list[np.ndarray]:
    leaves = torch.utils._pytree.tree_leaves(outputs)
    return [t.detach().cpu().numpy() for t in leaves if isinstance(t, torch.Tensor)]


def _copy(model: nn.Module) -> tuple[nn.Module, bool]:
    """A deep copy to fold, or the model itself when it cannot be copied."""
    try:
        return copy.deepcopy(model), False
    except Exception as error:  # legacy weight_norm hooks refuse deepcopy
        logger.warning("cannot copy the model (%s); folding it in place", error)
        return model, True


def _input_names(model: nn.Module, count: int) -> list[str]:
    """The graph's input names: ``forward``'s parameter names, so ``--dynamic mel=0,2`` reads
    as the model's code does (``input_<i>`` where the signature says nothing)."""
    try:
        parameters = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][
        :count
    ]
    return names + [f"input_{i}" for i in range(len(names), count)]


def _export(
    model: nn.Module,
    inputs: tuple[Any, ...],
    path: Path,
    *,
    dynamo: bool,
    dynamic: dict[str, dict[int, str]] | None,
    opset: int | None,
) -> list[str]:
    """Run torch.onnx.export; returns the graph's input names."""
    names = _input_names(model, len(inputs))
    unknown = sorted(set(dynamic or {}) - set(names))
    if unknown:
        raise InvalidArgumentError(
            f"{unknown[0]}: the model's inputs are {', '.join(names)}", parameter="dynamic"
        )
    kwargs: dict[str, Any] = {"input_names": names, "dynamo": dynamo, "verbose": False}
    if opset is not None:
        kwargs["opset_version"] = opset
    if dynamic:
        kwargs["dynamic_axes"] = dynamic
    try:
        with warnings.catch_warnings(), _exporter_logs_quiet():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, inputs, str(path), **kwargs)
    except Exception as error:
        first = " ".join(str(error).split())[:240]
        raise ExportError(f"torch.onnx.export failed: {first}") from None
    return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def _weight_names(model: nn.Module) -> dict[str, torch.Tensor]:
    """Each weight (2-D and up) by its deployed name, with the value it computes with:
    ``conv.weight`` also for weight-normed ``conv.parametrizations.weight.original0/1`` and
    (legacy hook) ``conv.weight_g/_v``."""
    legacy = {
        f"{prefix}.{hook.name}" if prefix else hook.name
        for prefix, module in model.named_modules()
        for hook in module._forward_pre_hooks.values()
        if is_legacy_hook(hook)
    }
    weights: dict[str, torch.Tensor] = {}
    for name, value in model.named_parameters():
        parsed = parse_key(name)
        if parsed is not None and (parsed[0].form == "parametrize" or parsed[0].weight in legacy):
            name = parsed[0].weight
            module, _, param = name.rpartition(".")
            value = getattr(model.get_submodule(module), param)
        if value.dim() >= 2 and name.rpartition(".")[2].startswith("weight"):
            weights[name] = value.detach()
    return weights


def _restore_names(model: ir.Model, weights: dict[str, torch.Tensor]) -> list[str]:
    """Rename initializers the exporter named itself (``onnx::MatMul_12``, ``mul_1``) after the
    PyTorch weight they hold, found by shape and value (also transposed, as Linear feeds
    MatMul; within float32 rounding, as an exporter may have folded weight norm in float32).
    Returns the weights that still have no initializer of their name."""
    missing = {name: w.cpu().numpy() for name, w in weights.items()}
    for name in list(missing):
        if name in model.graph.initializers:
            del missing[name]
    for init_name, value in list(model.graph.initializers.items()):
        tensor = value.const_value
        if not missing or tensor is None or init_name in weights or tensor.size < 2:
            continue
        shape = tuple(tensor.shape.numpy())
        for name, weight in missing.items():
            layouts = [weight] + ([weight.T] if weight.ndim == 2 else [])
            if any(w.shape == shape and _close(tensor.numpy(), w) for w in layouts):
                value.name = name
                del missing[name]
                break
    return list(missing)


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to a few float32 roundings (weight norm folded in another order)."""
    scale = float(np.abs(b).max(initial=0.0)) or 1.0
    return a.dtype == b.dtype and bool(np.allclose(a, b, rtol=1e-5, atol=1e-6 * scale))


# The opsets each torch.onnx exporter writes: the dynamo exporter starts at 18 (its op library
# needs it); the TorchScript one covers 7 to its own maximum.
def opset_range(exporter: str) -> tuple[int, int]:
    from torch.onnx import _constants

    if exporter == "dynamo":
        return 18, _constants.ONNX_MAX_OPSET
    return _constants.ONNX_MIN_OPSET, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET


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
    example_inputs: Sequence[Any] | torch.Tensor,
    path: str | os.PathLike[str],
    *,
    exporter: str = "dynamo",
    fold_in_torch: bool = True,
    dynamic: dict[str, dict[int, str]] | None = None,
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
    """Export ``model`` to a clean, verified ONNX file at ``path``; see the module docstring.

    Every option and path is checked before anything is written (``plan``: the caller's, with
    its other files). With ``verify``, the model is published under ``path`` only when ONNX
    Runtime's outputs match PyTorch's; otherwise nothing appears there and the report says why.
    """
    options = CheckOptions(
        providers=providers, rtol=rtol, atol=atol, runs=runs, warmup=warmup, threads=threads
    )
    validate_export_options(exporter, opset, options if verify else None)
    path = Path(path)
    plan = plan if plan is not None else IOPlan()
    if not plan.planned(path, "output"):  # the CLI plans it with its other files
        plan.write(path, "output")
    plan.check()  # the output's data file, if any, is planned once the model is known
    inputs = (
        (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    )
    chosen = prov.resolve(list(providers) if providers else None) if verify else []
    expected = _numpy_outputs(_forward(model, inputs))
    target, in_place = _copy(model) if fold_in_torch else (model, False)
    torch_report = fold_weight_norm(target) if fold_in_torch else None
    weights = _weight_names(model)
    with plan.staging(path) as staging:
        raw = staging / "exported.onnx"
        names = _export(
            target, inputs, raw, dynamo=exporter == "dynamo", dynamic=dynamic, opset=opset
        )
        exported = io.load(raw)
        _check_opset(exported, opset)
        _, onnx_report = fold_onnx(exported, in_place=True)
        missing = _restore_names(exported, weights)
        report = ExportReport(str(path), exporter, torch_report, onnx_report, in_place)
        report.names_missing = missing
        report.not_available = (
            [p for p in prov.PROVIDERS if p not in prov.available()] if verify else []
        )
        feeds = {name: t.detach().cpu().numpy() for name, t in zip(names, inputs, strict=False)}

        def gate(staged: Path) -> bool:
            _compare(report, staged, chosen, feeds, expected, options)
            return report.matches

        save_target = io.plan_save(plan, exported, path)
        plan.check()
        published = io.save(exported, save_target, plan, gate=gate if verify else None)
    report.published = published
    report.onnx_fold.left = list(plan.left)
    return report


def _forward(model: nn.Module, inputs: tuple[Any, ...]) -> Any:
    """The model's outputs on its example inputs (eval, no grad); an error is the model's."""
    model.eval()
    try:
        with torch.no_grad():
            return model(*inputs)
    except Exception as error:
        raise ModelRunError(
            f"the model's forward raised {one_line(error, with_type=True)}"
        ) from None


@contextlib.contextmanager
def _exporter_logs_quiet() -> Iterator[None]:
    """torch.onnx logs its own progress and notes (``torchvision is not installed``) as
    warnings; they are shown only when wnpass itself logs at INFO (``-v``)."""
    exporter = logging.getLogger("torch.onnx")
    level = exporter.level
    if not logger.isEnabledFor(logging.INFO):
        exporter.setLevel(logging.ERROR)
    try:
        yield
    finally:
        exporter.setLevel(level)


def _check_opset(model: ir.Model, opset: int | None) -> None:
    written = model.opset_imports.get("", None)
    if opset is not None and written != opset:
        raise InvalidArgumentError(
            f"{opset}: torch.onnx wrote opset {written} instead; refused", parameter="opset"
        )


def _compare(
    report: ExportReport,
    staged: Path,
    chosen: list[str],
    feeds: dict[str, np.ndarray],
    expected: list[np.ndarray],
    options: CheckOptions,
) -> None:
    for provider in chosen:
        session = prov.open_session(staged, provider, threads=options.threads)
        if session.fell_back:
            logger.warning("%s fell back to %s: not compared", provider, session.actual)
            report.fell_back.append(provider)
            continue
        actual = prov.run(session, staged, feeds)
        out_names = [o.name for o in session.session.get_outputs()]
        report.comparisons[provider] = compare_outputs(
            out_names, expected, out_names, actual, rtol=options.rtol, atol=options.atol
        )
        report.latency[provider] = _latency(session, feeds, options.runs, options.warmup)


def _latency(
    session: prov.Session, feeds: dict[str, np.ndarray], runs: int, warmup: int
) -> LatencyStats:
    for _ in range(warmup):
        session.session.run(None, feeds)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        session.session.run(None, feeds)
        seconds.append(time.perf_counter() - start)
    return latency_stats(seconds)
