"""The deployment pipeline on every example model: both exporters, folding in PyTorch first
or not; the ONNX output has no weight-norm site left, matches PyTorch, and names its weights
after the PyTorch parameters."""

from __future__ import annotations

import copy
import importlib
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from tests.helpers import onnx_model, run, sites_left
from wnpass.deploy import ExportError, ModelRunError, export, exporters_silenced
from wnpass.deploy.exporter import _failure
from wnpass.errors import InvalidArgumentError, InvalidModelError, UsageError, WnpassError
from wnpass.fx.forward import Batch
from wnpass.fx.loading import load_model_py
from wnpass.verify import providers
from wnpass.verify.options import DEFAULT_RUNS, DEFAULT_WARMUP

ROOT = Path(__file__).resolve().parents[1]

MODELS = sorted(p.stem for p in (ROOT / "models").glob("*.py") if not p.name.startswith("_"))
# ONNX's LSTM/GRU/RNN take the gate weights reordered and stacked: no initializer can carry
# the PyTorch name of one of them.
RECURRENT = (".weight_ih_l", ".weight_hh_l")


# A dynamo export of a vocoder takes 12-22 s on two cores. Folding in PyTorch first exports a
# plain model, whose weights the exporter names as any other's: that path runs on every model
# under TorchScript and on the small ones under dynamo. Every model goes through dynamo with
# the ONNX fold, where the exporter's own weight-norm graph is what is folded.
_SLOW_UNDER_DYNAMO = {"dac", "encodec", "hifigan"}
DEPLOYS = [
    pytest.param(name, exporter, in_torch, id=f"{name}-{exporter}-{where}-fold")
    for name in MODELS
    for exporter in ("torchscript", "dynamo")
    for in_torch, where in ((True, "torch"), (False, "onnx"))
    if not (in_torch and exporter == "dynamo" and name in _SLOW_UNDER_DYNAMO)
]


@pytest.mark.parametrize(("name", "exporter", "fold_in_torch"), DEPLOYS)
def test_example_model_deploys_clean(
    name: str, exporter: str, fold_in_torch: bool, tmp_path: Path
) -> None:
    model, inputs = load_model_py(ROOT / "models" / f"{name}.py")
    assert inputs is not None
    out = tmp_path / f"{name}.onnx"
    report = export(model, inputs, out, exporter=exporter, fold_in_torch=fold_in_torch, runs=1)
    assert report, report.to_dict()
    assert sites_left(out) == 0
    onnx.checker.check_model(out, full_check=True)
    assert report.comparisons["cpu"] and all(report.comparisons["cpu"])
    assert [n for n in report.names_missing if not any(r in n for r in RECURRENT)] == []
    if fold_in_torch:
        assert report.torch_fold is not None and report.torch_fold.folded > 0
        assert report.onnx_fold.folded == 0
    else:
        assert report.onnx_fold.folded > 0
    model(*inputs)  # the caller's model still runs, weight norm and all


class _Attention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.kv = torch.nn.MultiheadAttention(8, 2, kdim=6, vdim=4, batch_first=True)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        y, _ = self.mha(x, x, x)
        return self.kv(y, k, v)[0]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_attention_projection_weights_are_named(exporter: str, tmp_path: Path) -> None:
    """``in_proj_weight`` (and ``q/k/v_proj_weight`` with kdim/vdim) were written as ``val_0``
    or ``onnx::MatMul_146`` while the export said every weight was named after its parameter:
    only names starting with ``weight`` were looked for."""
    torch.manual_seed(0)
    model = _Attention().eval()
    g = torch.Generator().manual_seed(1)
    inputs = tuple(torch.randn(1, n, d, generator=g) for n, d in ((5, 8), (3, 6), (3, 4)))
    out = tmp_path / "attention.onnx"
    report = export(model, inputs, out, exporter=exporter, verify=False)
    assert report.names_missing == []
    names = {init.name for init in onnx.load(out).graph.initializer}
    projections = ("mha.in_proj_weight", "kv.q_proj_weight", "kv.k_proj_weight")
    assert {*projections, "kv.v_proj_weight", "mha.out_proj.weight"} <= names


class _TiedHead(torch.nn.Module):
    """An embedding whose table the output projection reads too (tied, as language models)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(12, 8)
        self.head = torch.nn.Linear(8, 12, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embed(ids)))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_tied_weights_copy_is_named_after_it(exporter: str, tmp_path: Path) -> None:
    """Both exporters read the tied head through a transposed copy of the table, which kept the
    exporter's name (``val_3``) while the export said every weight was named: only the first
    name of a tied weight was looked for. The copy is named after the other name."""
    torch.manual_seed(0)
    out, model = tmp_path / "tied.onnx", _TiedHead().eval()
    report = export(model, (torch.tensor([[1, 5, 7]]),), out, exporter=exporter, verify=False)
    assert report.names_missing == []
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    table = model.embed.weight
    for name in {"embed.weight", "head.weight"} & set(weights):
        expected = table.T if name in report.names_transposed else table
        np.testing.assert_array_equal(weights[name], expected.detach().numpy())
    assert set(weights) == {"embed.weight", "head.weight"}  # the copy too, by its own name


class _TiedUnread(_TiedHead):
    """A table tied to a head that this forward does not use: only the embedding reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embed(ids))


@pytest.mark.parametrize(
    ("case", "exporter"),
    [("pair", "torchscript"), ("pair", "dynamo"), ("embedding", "dynamo")],
)
def test_a_tied_weight_with_one_initializer_for_both_names_is_not_missing(
    case: str, exporter: str, tmp_path: Path
) -> None:
    """Two layers reading one weight the same way, or one of two tied layers reading it: the
    exporter writes it once, under one of the names, and the other name has no copy to be
    given (it is not missing). The dynamo exporter names the table after the tied head, the
    name listed last, and the embedding's was said missing (t85)."""
    torch.manual_seed(0)
    model: nn.Module
    if case == "pair":
        pair = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Tanh(), torch.nn.Linear(6, 6))
        pair[2].weight = pair[0].weight
        model, names, inputs = pair, ("0.weight", "2.weight"), (torch.randn(2, 6),)
    else:
        model, names = _TiedUnread(), ("embed.weight", "head.weight")
        inputs = (torch.tensor([[1, 5]]),)
    out = tmp_path / "pair.onnx"
    report = export(model.eval(), inputs, out, exporter=exporter, verify=False)
    weights = {i.name for i in onnx.load(out).graph.initializer if len(i.dims) == 2}
    assert len(weights & set(names)) == 1
    assert report.names_missing == []


def test_an_output_axis_declared_fixed_at_another_size_is_said() -> None:
    """The dynamo exporter declares an LSTM's output ``[tokens_0, 16, 100]`` where ONNX Runtime
    computes 32 for axis 1 at the doubled size: the values matched and nothing said the file's
    shape info was wrong, which a runtime trusting it may fail on."""
    from wnpass.deploy import DynamicProbe, ExportReport
    from wnpass.deploy.compare import _check_shape_info
    from wnpass.verify.compare import compare_outputs

    model = ir.from_proto(onnx_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N, 4] x) => (float[N, 3] y) { y = Concat <axis = 1> (x, x) }
    """, check=False))  # fmt: skip
    y, wide, odd = (np.ones((n, w), np.float32) for n, w in ((2, 8), (4, 8), (5, 9)))
    report = ExportReport("m.onnx", "dynamo", None, None, False)  # type: ignore[arg-type]
    report.comparisons["cpu"] = compare_outputs(["y"], [y], ["y"], [y])
    report.dynamic = [DynamicProbe("doubled"), DynamicProbe("doubled plus one")]
    report.dynamic[0].comparisons["cpu"] = compare_outputs(["y"], [wide], ["y"], [wide])
    report.dynamic[1].comparisons["cpu"] = compare_outputs(["y"], [odd], ["y"], [odd])
    _check_shape_info(report, model.graph)
    assert report.shape_info_wrong == [  # each axis once, at the first run that shows it
        "the graph declares axis 1 of output y as 3, but it is 8 on the example inputs",
    ]


@pytest.mark.parametrize("fails", ["load", "run", "timed run"])
def test_a_graph_onnx_runtime_cannot_load_or_run_fails_the_verification(
    fails: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dynamo exporter writes an LSTM with ``proj_size`` that ONNX Runtime cannot run
    (torch 2.13): that was exit 2, bad input, where the same failure at the doubled size
    fails the verification (exit 1). The exported graph is the exporter's, not the user's."""
    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    if fails == "load":

        def refuse(model: Path, *args: Any, **kwargs: Any) -> Any:
            raise providers.SessionError(model, "onnxruntime cannot load it: Type Error")

        monkeypatch.setattr(providers, "open_session", refuse)
    else:
        run, calls = providers.run, [0]

        def fail(session: Any, model: Path, feeds: Any) -> Any:
            calls[0] += 1
            if fails == "timed run" and calls[0] == 1:  # the compared run succeeds
                return run(session, model, feeds)
            raise providers.RunFailedError(model, "Input initial_c must have shape {1,2,6}")

        monkeypatch.setattr(providers, "run", fail)
    out = tmp_path / "mlp.onnx"
    report = export(model, inputs, out, exporter="torchscript", runs=1)
    assert not report and report.matches is False and not report.published
    said = {
        "load": "onnxruntime cannot load it: Type Error",
        "run": "onnxruntime failed to run it: Input initial_c must have shape {1,2,6}",
        "timed run": f"onnxruntime failed to run it on its timed run 1 of {DEFAULT_WARMUP + 1} "
        "(warm-up included), after the run compared had succeeded: Input initial_c must have "
        "shape {1,2,6}",
    }[fails]
    assert report.ort_failed == f"on cpu, {out}: {said}"
    assert report.to_dict()["ort_failed"] == report.ort_failed and not out.exists()


def test_dynamic_batch_axis(tmp_path: Path) -> None:
    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    out = tmp_path / "mlp.onnx"
    report = export(
        model,
        inputs,
        out,
        exporter="torchscript",
        dynamic={"x": {0: "batch"}},
        runs=1,
    )
    doubled, odd = report.dynamic
    assert report and (doubled.inputs, odd.inputs) == ({"x": [8, 64]}, {"x": [9, 64]})
    assert all(doubled.comparisons["cpu"]) and all(odd.comparisons["cpu"])
    batch = np.random.default_rng(0).standard_normal((7, 64)).astype(np.float32)
    (result,) = run(out, {"x": batch})
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(InvalidArgumentError, match=r"the model.s inputs are x"):
        export(model, inputs, out, dynamic={"mel": {0: "b"}})


class _Branches(nn.Module):
    """A weight-normed convolution whose forward branches on its input's length: below
    ``above`` (``mode="below"``) or from ``above`` up."""

    def __init__(self, mode: str, above: int) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(4, 6, 1))
        self.mode, self.above = mode, above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        longer = x.shape[2] > self.above
        if longer if self.mode == "below" else not longer:
            return h.mean(-1)
        return h[..., :3].mean(-1)


def _refusal(where: str, sizes: str, runs_at: int) -> str:
    return (
        f"accept_ranges not given: the dynamo exporter made {where} dynamic for sizes {sizes} "
        f"only, and PyTorch runs at {runs_at}: where the model's code, or one of torch's "
        "decompositions, branches on the size, the file computes such inputs with the "
        "example's branch, at sizes no probe can list; accept the range to export the file "
        "for those sizes only"
    )


@pytest.mark.parametrize(
    ("mode", "above", "sizes", "runs_at"),
    [("below", 10, "0 to 10", 11), ("from", 4, "from 5 up", 4)],
)
def test_an_axis_the_dynamo_exporter_bounds_at_a_branch_is_refused_unless_accepted(
    mode: str, above: int, sizes: str, runs_at: int, tmp_path: Path
) -> None:
    """torch.export holds the axis to the sizes of the branch it traced, and the ONNX graph
    keeps it symbolic: the file was written, verified (a doubled length took the other branch
    in PyTorch, whose mean over ``cat([x, x])`` is the example's), and computed every input
    past the bound with the example's branch. PyTorch runs just past it: refused, verified or
    not (one size compared, or every size below a bound, let branches through: t77, t80);
    accepted, the file is written for those sizes, with a warning."""
    out = tmp_path / "m.onnx"
    inputs, dynamic = Batch((torch.randn(2, 4, 7),), {}), {"x": {2: "t"}}
    for verify in (False, True):
        with pytest.raises(ExportError) as caught:
            export(_Branches(mode, above), inputs, out, dynamic=dynamic, verify=verify)
        assert str(caught.value).endswith(_refusal("axis 2 of x", sizes, runs_at))
        assert not out.exists()
    report = export(
        _Branches(mode, above), inputs, out, dynamic=dynamic, accept_ranges=True, runs=1
    )
    assert report and report.published
    assert report.sizes == [
        f"axis 2 of x is exported for sizes {sizes} only (PyTorch runs at {runs_at} too: "
        "accepted, the file is for these sizes)"
    ]
    # the doubled length, 14, is outside 0 to 10: nothing to compare there (it failed there)
    doubled = report.dynamic[0]
    outside = "axis 2 of x is 14 there, outside the sizes it is exported for (0 to 10)"
    assert doubled.unchecked == (outside if mode == "below" else None)


class _OneConv(nn.Module):
    """A weight-normed convolution, 4 channels to 6 (kernel 1): the models below branch on
    their input's length around it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(4, 6, 1))


class _Clamps(_OneConv):
    """Inputs cut to 32 where longer: at 32 both branches compute the same, at 33 they do
    not (t77)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] >= 32:
            x = x[:, :, :32]
        return self.conv(x).mean(-1)


def test_an_upper_bound_whose_branches_agree_just_past_it_is_refused(tmp_path: Path) -> None:
    """One comparison at 32 passed the file, wrong from 33 up (t77)."""
    with pytest.raises(ExportError, match=r"sizes 0 to 31 only, and PyTorch runs at 32: where"):
        export(
            _Clamps(), Batch((torch.randn(2, 4, 8),), {}), tmp_path / "m.onnx",
            dynamic={"x": {2: "t"}}, runs=1,
        )  # fmt: skip


class _EvenOnly(_OneConv):
    """Frame pairs (even lengths only), and the first 8 pairs of inputs over 16: PyTorch fails
    at 17 and runs at 18 (t80)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        h = h.reshape(h.shape[0], 6, x.shape[2] // 2, 2).mean(-1)
        return (h[..., :8] if x.shape[2] > 16 else h).sum(-1)


def test_a_model_of_even_lengths_is_probed_two_sizes_out(tmp_path: Path) -> None:
    """The bound was taken as the model's own ("PyTorch fails at 17 too") and the file, wrong
    from 18 up, published (t80)."""
    with pytest.raises(ExportError, match=r"sizes 0 to 16 only, and PyTorch runs at 18: where"):
        export(
            _EvenOnly(), Batch((torch.randn(2, 4, 8),), {}), tmp_path / "m.onnx",
            dynamic={"x": {2: "t"}}, verify=False,
        )  # fmt: skip


class _FramesOf4(_OneConv):
    """Frames of 4 samples (lengths a multiple of 4 only), and the first 2 frames of inputs
    over 40: PyTorch fails at 41 to 43 and runs at 44 (t84)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        h = h.reshape(h.shape[0], 6, -1, 4).mean(-1)
        return (h.mean(-1) if x.shape[2] > 40 else h[..., :2].mean(-1)).sum(-1)


class _TwoRates(nn.Module):
    """``x`` at twice the rate of ``cond`` (a stride-2 convolution brings it to cond's length),
    and a branch on cond's length: resized alone, or with x at cond's length, PyTorch fails;
    with x twice as long, it runs past the bound (t84)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(4, 6, 2, stride=2))
        self.cond = nn.Conv1d(4, 6, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv(x) + self.cond(cond)
        return h.mean(-1) if cond.shape[2] > 10 else h[..., :3].mean(-1)


@pytest.mark.parametrize("case", ["multiple of 4", "two rates"])
def test_a_bound_is_probed_past_lengths_pytorch_fails_at(case: str, tmp_path: Path) -> None:
    """Both were published with "PyTorch fails at 41 and 42 too" (11 and 12), and wrong at 44
    (cond at 11 with x at 22): up to 8 sizes are tried past a bound, and the other dynamic
    axes resized in proportion to the example's lengths where PyTorch fails without."""
    x = torch.randn(2, 4, 16)
    model, inputs, dynamic, said = {
        "multiple of 4": (_FramesOf4(), (x,), {"x": {2: "t"}}, "sizes 0 to 40 only, and PyTorch runs at 44:"),  # noqa: E501
        "two rates": (_TwoRates(), (x, x[..., :8]), {"x": {2: "t"}, "cond": {2: "c"}}, "axis 2 of cond dynamic for sizes 1 to 10 only, and PyTorch runs at 11 (axis 2 of cond at 11 and axis 2 of x at 22):"),  # noqa: E501
    }[case]  # fmt: skip
    with pytest.raises(ExportError) as caught:
        export(model, inputs, tmp_path / "m.onnx", dynamic=dynamic, verify=False)
    assert said in str(caught.value)


class _Derived(_OneConv):
    """``y`` twice as long as ``x``, and a branch on ``x``'s length: torch.export sizes ``y``
    as ``2*s0``."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).repeat_interleave(2, dim=2) + self.conv(y)
        return h.mean(-1) if x.shape[2] > 10 else h[..., :3].mean(-1)


class _Star(_OneConv):
    """A branch on the length of the first of ``*xs`` (torch.export names it ``xs_0``)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        h = self.conv(xs[0])
        return h.mean(-1) if xs[0].shape[2] > 10 else h[..., :3].mean(-1)


class _Capitalized(_OneConv):
    """A branch on the length of an input whose name torch.export lowercases (``melspec``)."""

    def forward(self, melSpec: torch.Tensor) -> torch.Tensor:
        h = self.conv(melSpec)
        return h.mean(-1) if melSpec.shape[2] > 10 else h[..., :3].mean(-1)


@pytest.mark.parametrize("case", ["derived", "star", "capitalized"])
def test_a_branch_is_found_through_derived_sizes_and_star_inputs(case: str, tmp_path: Path) -> None:
    """The probe gave ``y`` (``2*s0``) x's length, so PyTorch failed at it and the file was
    published with a warning; ``*xs``'s ``xs_0`` was not found ("not tried: too large") (t41),
    nor ``melspec``, which the model calls ``melSpec`` ("an input wnpass cannot resize", t77)."""
    x = torch.randn(2, 4, 7)
    model, inputs, dynamic, name = {
        "derived": (_Derived(), Batch((x, torch.cat([x, x], 2)), {}), {"x": {2: "t"}, "y": {2: "u"}}, "x"),  # noqa: E501
        "star": (_Star(), Batch((x,), {}), {"input_0": {2: "t"}}, "input_0"),
        "capitalized": (_Capitalized(), Batch((x,), {}), {"melSpec": {2: "t"}}, "melSpec"),
    }[case]  # fmt: skip
    with pytest.raises(ExportError, match=r" only, and PyTorch runs at 11") as caught:
        export(model, inputs, tmp_path / "m.onnx", dynamic=dynamic, verify=False)
    # the axis is named as the graph input and --dynamic name it: input_0, not xs_0 (t75)
    assert f"axis 2 of {name} " in str(caught.value)
    # y, twice as long, with its own sizes: they were x's, 0 to 10, and "runs at 11" (t82)
    assert (
        "made axis 2 of x (0 to 10) and axis 2 of y (0 to 20) dynamic for those sizes only, "
        "and PyTorch runs at 11 (axis 2 of x at 11 and axis 2 of y at 22)"
        if case == "derived"
        else f"made axis 2 of {name} dynamic for sizes 0 to 10 only, and PyTorch runs at 11:"
    ) in str(caught.value)


def test_a_range_of_an_input_not_paired_with_the_call_is_said_not_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where torch.export's inputs cannot be paired with the call's (a torch of another tree
    spec), the range is said under torch.export's name, not tried; it is never dropped."""
    monkeypatch.setattr("wnpass.deploy.ranges._graph_input_names", lambda *_: {})
    x = torch.randn(2, 4, 7)
    report = export(
        _Capitalized(), Batch((x,), {}), tmp_path / "m.onnx", dynamic={"melSpec": {2: "t"}},
        verify=False,
    )  # fmt: skip
    assert report.sizes == [
        "axis 2 of melspec is exported for sizes 0 to 10 only (not tried at 11: an input wnpass "
        "cannot resize)"
    ]


class _Pair(nn.Module):
    """An input and its mask, each given a dynamic axis of its own, and a branch on the
    input's length: resized alone, the mask no longer fits it and PyTorch fails (t77)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = weight_norm(nn.Linear(4, 3))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        if x.shape[1] <= 8:
            h = h / 8
        last = mask.sum(-1).long() - 1
        return h[torch.arange(h.shape[0]), last]


def test_an_axis_the_size_of_another_is_resized_with_it_where_alone_pytorch_fails(
    tmp_path: Path,
) -> None:
    """The bound was said to be the model's own ("PyTorch fails at 8 too"), and the file,
    wrong below it, published."""
    inputs = Batch((torch.randn(2, 12, 4), torch.ones(2, 12)), {})
    dynamic = {"x": {1: "t"}, "mask": {1: "m"}}
    with pytest.raises(ExportError, match=r"axis 1 of x dynamic for sizes from 9 up only, and "):
        export(_Pair(), inputs, tmp_path / "m.onnx", dynamic=dynamic, runs=1)


class _SmoothsLonger(_OneConv):
    """A branch at a length of 1: torch.export holds the axis to 2 and up (t77)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return h - h.mean(-1, keepdim=True) if x.shape[2] > 1 else h


def test_a_lower_bound_of_2_is_compared_below_where_verified(tmp_path: Path) -> None:
    """A lower bound of 2 is torch's 0/1 specialization in older versions, for every dynamic
    axis: unverified, a warning; verified, the file is compared at 1, and fails there."""
    inputs, dynamic = Batch((torch.randn(2, 4, 5),), {}), {"x": {2: "t"}}
    out = tmp_path / "m.onnx"
    report = export(_SmoothsLonger(), inputs, out, dynamic=dynamic, verify=False)
    assert report.published and report.sizes == [
        "axis 2 of x is exported for sizes from 2 up only (PyTorch runs at 1 too, where the "
        "file is not compared without verification)"
    ]
    accepted = export(_SmoothsLonger(), inputs, out, dynamic=dynamic, accept_ranges=True, runs=1)
    assert accepted.published and not [p for p in accepted.dynamic if p.bound is not None]
    assert accepted.sizes == [
        "axis 2 of x is exported for sizes from 2 up only (PyTorch runs at 1 too: accepted, "
        "the file is for these sizes)"
    ]  # compared nothing outside the range accepted (t81, t82)
    report = export(_SmoothsLonger(), inputs, out, dynamic=dynamic, runs=1)
    assert report.matches is False and not report.published
    (below,) = [probe for probe in report.dynamic if probe.bound is not None]
    assert (below.sizes, below.axes, below.size, below.bound) == (
        "axis 2 of x at 1",
        "axis 2 of x",
        1,
        "from 2 up",
    )
    assert below.inputs == {"x": [2, 4, 1]} and not all(below.comparisons["cpu"])


class _Lengths(nn.Module):
    """Records the length of each input it is run on."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.shape[2])
        return x.sum(-1)


def test_a_lower_bound_of_1_is_not_probed() -> None:
    """Below it is an empty input, where a model's loop (tiling to a minimum length) may never
    end (t80): no forward runs there, and nothing is said of it. (torch 2.13 gives no such
    bound from a model's code, so the range is made here.)"""
    import sympy

    from wnpass.deploy.ranges import _check_ranges, _Range

    t = sympy.Symbol("t", integer=True)
    model, x = _Lengths(), torch.randn(2, 4, 5)
    said, outside = _check_ranges(
        model, Batch((x,), {}), {"x": x}, [_Range("x", 2, t, 1, None, t)], [], True, False
    )
    assert (said, outside, model.seen) == ([], [], [])
    # from 3 up, it runs at 2 and is refused: the same check, one size up
    with pytest.raises(ExportError, match=r"sizes from 3 up only, and PyTorch runs at 2"):
        _check_ranges(
            model, Batch((x,), {}), {"x": x}, [_Range("x", 2, t, 3, None, t)], [], True, False
        )
    assert model.seen == [2]


class _Upsampled(nn.Module):
    """``x`` twice ``cond``'s length (cond stretched to it), and a branch at cond's length of
    1: torch.export holds cond from 2 up and x from 4 up (t84)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(4, 6, 1))
        self.cond = nn.Conv1d(4, 6, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv(x) + self.cond(cond).repeat_interleave(2, dim=2)
        return (h - h.mean(-1, keepdim=True)).abs().sum(-1) if cond.shape[2] > 1 else h.sum(-1)


def test_a_probe_below_derived_ranges_says_each_axis_s_own(tmp_path: Path) -> None:
    """The probe's bound was cond's range alone ("from 2 up"), for x too (t84)."""
    x = torch.randn(2, 4, 16)
    report = export(
        _Upsampled(), (x, x[..., :8]), tmp_path / "m.onnx", runs=1,
        dynamic={"x": {2: "t"}, "cond": {2: "c"}},
    )  # fmt: skip
    assert report.matches is False and not report.published
    (below,) = [probe for probe in report.dynamic if probe.bound is not None]
    assert (below.sizes, below.bound) == (
        "axis 2 of x at 2 and axis 2 of cond at 1",
        "from 4 up for axis 2 of x and from 2 up for axis 2 of cond",
    )


class _VacuousBelow(_OneConv):
    """Held to 2 and up by a branch at 1, where both PyTorch and the file divide by 0: every
    element is Inf in both, and nothing can be compared there (t79)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).abs() + 1
        t = x.shape[2]
        return h / (t - 1 if t > 1 else 0)


class _FewerOutputsAtOne(_OneConv):
    """One output fewer at a length of 1: the graph's two cannot be paired with PyTorch's."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.conv(x)
        return (h.sum(-1), h.mean(-1)) if x.shape[2] > 1 else (h.sum(-1),)


@pytest.mark.parametrize("model", [_VacuousBelow, _FewerOutputsAtOne])
def test_a_size_below_a_bound_where_nothing_can_be_compared_fails(
    model: type[nn.Module], tmp_path: Path
) -> None:
    """No evidence that the file takes PyTorch's branch there: every element Inf in both was
    a match, and the file published (t79); so for another count of outputs (t81)."""
    out = tmp_path / "m.onnx"
    report = export(model(), (torch.randn(2, 4, 16),), out, dynamic={"x": {2: "t"}}, runs=1)
    assert report.matches is False and not report.published and not out.exists()
    (below,) = [probe for probe in report.dynamic if probe.bound is not None]
    assert below.not_verified is not None and below.unchecked is None


class _CountsCalls(nn.Module):
    """A forward that counts its calls in a buffer, as a streaming state does, and a branch
    at a length of 1 whose two sides agree there."""

    calls: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(4, 6, 1))
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = self.conv(x)
        return (h - h.mean(-1, keepdim=True) if x.shape[2] > 1 else h * 0) + self.calls


def test_the_forwards_outside_a_range_give_the_model_back(tmp_path: Path) -> None:
    """The size below the bound is one more forward (two where compared), each from the
    model as set (as the file computes it: one more call than the buffer says); the model
    comes back with the buffer as set."""
    model = _CountsCalls()
    report = export(
        model, (torch.randn(2, 4, 16),), tmp_path / "m.onnx", dynamic={"x": {2: "t"}}, runs=1
    )
    assert report.published and int(model.calls) == 0
    (below,) = [probe for probe in report.dynamic if probe.bound is not None]
    assert all(below.comparisons["cpu"])


class _PadsOddFrames(nn.Module):
    """Frames of 4 samples, pooled by 2 and stretched back, the last frame padded where their
    count is odd (SEW's feature extractor): torch.export keeps ``2*(n // 8) == n // 4`` of an
    even count, and the file never pads (t82)."""

    def __init__(self) -> None:
        super().__init__()
        self.front = weight_norm(nn.Conv1d(1, 6, 4, stride=4))
        self.mid = nn.Conv1d(6, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.front(x)
        u = self.mid(F.avg_pool1d(h, 2)).repeat_interleave(2, -1)
        if u.shape[-1] < h.shape[-1]:
            u = F.pad(u, (0, 1))
        return u + h


_CONDITION = (
    "axis 2 of x is exported for sizes where (n // 4) <= 2*(n // 8) and (2*(n // 8)) == "
    "(n // 4) only, a condition torch.export took that no range says (n: the length of axis 2 "
    "of x; "
)


def test_a_condition_torch_export_took_on_a_size_is_compared_where_it_fails(
    tmp_path: Path,
) -> None:
    """Verified at 16 samples, 32 and 33 (every frame count even), the file was published
    and failed at every odd count (t82). The condition is read from torch.export's program
    and the file compared at 15, the nearest size where it fails: it fails the verification.
    Unverified, a warning; accepted, the file is for the sizes where it holds, and the probes
    compare nothing where it does not."""
    inputs, dynamic, out = Batch((torch.randn(1, 1, 16),), {}), {"x": {2: "t"}}, tmp_path / "m.onnx"
    report = export(_PadsOddFrames(), inputs, out, dynamic=dynamic, runs=1)
    assert report.matches is False and not report.published and not out.exists()
    (probe,) = [p for p in report.dynamic if p.condition is not None]
    assert (probe.sizes, probe.size, probe.inputs) == ("axis 2 of x at 15", 15, {"x": [1, 1, 15]})
    assert probe.condition == "(n // 4) <= 2*(n // 8) and (2*(n // 8)) == (n // 4)"
    assert probe.not_verified is not None or not all(probe.comparisons["cpu"])
    assert not [w for w in report.sizes if "condition" in w]  # the probe says it
    unverified = export(_PadsOddFrames(), inputs, out, dynamic=dynamic, verify=False)
    assert (
        unverified.published
        and _CONDITION
        + (
            "PyTorch runs at 15, where it does not hold: the file takes the example's branch "
            "there, and may compute such inputs otherwise; not compared without verification)"
        )
        in unverified.sizes
    )
    accepted = export(_PadsOddFrames(), inputs, out, dynamic=dynamic, accept_ranges=True, runs=1)
    assert accepted and accepted.published
    assert _CONDITION + "PyTorch runs at 15 too: accepted, the file is for these sizes)" in (
        accepted.sizes
    )
    assert not [p for p in accepted.dynamic if p.condition is not None]


class _Eighths(_OneConv):
    """Frame pairs (even lengths only), and a branch on the length's remainder by 8: the
    sizes nearest 16 where ``n % 8 == 0`` fails, 17 and 15, are odd, where PyTorch fails, as
    it does where the parity condition fails (t87)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        h = h.reshape(h.shape[0], 6, -1, 2).mean(-1)
        return h.mean(-1) if x.shape[2] % 8 == 0 else h.sum(-1)


def test_a_condition_is_tried_past_sizes_pytorch_fails_at(tmp_path: Path) -> None:
    """Tried at 17 and 15 only, the remainder by 8 was taken as the model's own (merged with
    the parity, which fails at the same two), and the file, wrong at every even length not a
    multiple of 8, said deployable. Up to 8 sizes are tried: 18 runs, and the file fails
    there."""
    report = export(
        _Eighths(), (torch.randn(2, 4, 16),), tmp_path / "m.onnx", dynamic={"x": {2: "t"}},
        runs=1,
    )  # fmt: skip
    assert report.matches is False and not report.published
    (probe,) = [p for p in report.dynamic if p.condition is not None]
    assert (probe.size, probe.condition) == (18, "(n % 8) == 0")


class _FrontEnd(nn.Module):
    """A speech front end of three convolutions (wav2vec2's, tiny)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = weight_norm(nn.Conv1d(1, 16, 10, stride=5, bias=False))
        self.norm = nn.GroupNorm(16, 16)
        self.c2 = nn.Conv1d(16, 16, 3, stride=2, bias=False)
        self.c3 = nn.Conv1d(16, 16, 3, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.norm(self.c1(x[:, None])))
        return self.c3(F.gelu(self.c2(h)))


def test_no_condition_of_torch_onnx_s_own_passes_is_said(tmp_path: Path) -> None:
    """torch.onnx's passes after torch.export run in its shape environment, and a fake
    convolution's choice of kernel keeps ``batch < 16``: it was said of every wav2vec2-like
    front end with a dynamic batch, and its probes compared nothing past it (t87)."""
    report = export(
        _FrontEnd().eval(), (torch.randn(2, 1600),), tmp_path / "m.onnx", verify=False,
        dynamic={"x": {0: "b", 1: "t"}},
    )  # fmt: skip
    assert not [w for w in report.sizes if "axis 0" in w or "condition" in w]


class _AdaptivePool(_OneConv):
    """Six frames from any length: torch's decomposition of adaptive pooling (not the model's
    code, nor torch.export's trace) keeps ``n % 6 != 0`` and ``6 % (n % 6) == 0`` (t89)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool1d(self.conv(x), 6)


class _Saturates(_OneConv):
    """A branch at 10000 frames, far from the example's 16: ``min(10000, n) == n``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return h.mean(-1) if min(x.shape[2], 10000) == x.shape[2] else h.sum(-1)


@pytest.mark.parametrize("model", [_AdaptivePool, _Saturates])
def test_conditions_of_decompositions_and_far_ones_are_compared(
    model: type[nn.Module], tmp_path: Path
) -> None:
    """Both were deployable and wrong: the decomposition's conditions were read before it
    ran, and a condition was looked for within 8192 sizes of the example's only (t89)."""
    size = 13 if model is _AdaptivePool else 16
    report = export(
        model(), (torch.randn(1, 4, size),), tmp_path / "m.onnx", dynamic={"x": {2: "t"}},
        runs=1,
    )  # fmt: skip
    assert report.matches is False and not report.published
    probes = [p for p in report.dynamic if p.condition is not None]
    assert probes and (model is _AdaptivePool or probes[0].size == 10001)


class _Masked(nn.Module):
    """An input and its mask, each given dynamic axes of their own, the mask read in the
    input's batch (``reshape(batch, -1)``): torch.export ties their sizes by conditions (the
    mask's elements a multiple of the batch, its length the input's), not one size (t89)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = weight_norm(nn.Linear(1, 3))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.reshape(x.shape[0], -1)
        return self.lin((x * m).unsqueeze(-1)).sum(1)


def test_a_condition_that_ties_two_sizes_fails_no_correct_file(tmp_path: Path) -> None:
    """A mask of another batch or length than its input was tried where PyTorch broadcast it
    and ONNX Runtime refused it: a correct file failed its verification (t89). Where ONNX
    Runtime refuses inputs that break a tie, they do not go together in the file: said, and
    nothing fails."""
    inputs = (torch.randn(2, 8), torch.ones(2, 8))
    report = export(
        _Masked(), inputs, tmp_path / "m.onnx", runs=1, dynamic={"x": {0: "b", 1: "t"},
        "mask": {0: "mb", 1: "mt"}},
    )  # fmt: skip
    assert report and report.published


class _DividesOrNot(nn.Module):
    """A branch on whether one input's length divides the other's: a condition on two sizes
    of the form a tie takes, which PyTorch runs on both sides of (t92)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(4, 6, 1))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return h + c.mean() if c.shape[2] % x.shape[2] == 0 else h - c.mean()


def test_a_branch_on_a_condition_of_a_tie_s_form_is_compared(tmp_path: Path) -> None:
    """Taken for a tie by its form, it was never tried, and the file, wrong at c = 17,
    published (t92)."""
    inputs = (torch.randn(1, 4, 8), torch.randn(1, 4, 16))
    report = export(
        _DividesOrNot(), inputs, tmp_path / "m.onnx", runs=1,
        dynamic={"x": {2: "t"}, "c": {2: "u"}},
    )  # fmt: skip
    assert report.matches is False and not report.published


class _SameEitherWay(_OneConv):
    """A branch on the length's parity whose two sides compute the same values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return h * 1.0 if x.shape[2] % 2 == 0 else h + 0.0


def test_a_condition_whose_branches_agree_passes_where_compared(tmp_path: Path) -> None:
    """The file computes an odd length with the even branch, which gives the same values:
    compared at 7 and published, the probe said as one that passed."""
    report = export(
        _SameEitherWay(), (torch.randn(2, 4, 8),), tmp_path / "m.onnx", dynamic={"x": {2: "t"}},
        runs=1,
    )  # fmt: skip
    assert report and report.published
    (probe,) = [p for p in report.dynamic if p.condition is not None]
    assert (probe.size, probe.inputs) == (9, {"x": [2, 4, 9]}) and all(probe.comparisons["cpu"])


class _Positions(_OneConv):
    """A table of 12 positions added to the frames: torch.export keeps ``min(12, n) == n``,
    which no range says, and PyTorch fails past it."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(6, 12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.table[:, : x.shape[2]]


def test_a_condition_pytorch_fails_past_is_said_as_the_model_s_own(tmp_path: Path) -> None:
    """Nothing to compare where PyTorch fails: the file is for the sizes where the condition
    holds, which a warning says, and it is published."""
    report = export(
        _Positions(), (torch.randn(2, 4, 8),), tmp_path / "m.onnx", dynamic={"x": {2: "t"}},
        runs=1,
    )  # fmt: skip
    assert report and report.published
    assert not [p for p in report.dynamic if p.condition is not None]
    (said,) = [w for w in report.sizes if "condition" in w]
    assert said.endswith(
        "(n: the length of axis 2 of x; PyTorch fails at 13 to 20 too, where it does not hold)"
    )


class _PadsOddTotal(nn.Module):
    """A prompt and an input joined along time, the total padded where odd: the condition is
    on the sum of two dynamic sizes (t82, t84)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(4, 6, 2, stride=2))

    def forward(self, prompt: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([prompt, x], 2)
        if h.shape[2] % 2:
            h = F.pad(h, (0, 1))
        return self.conv(h)


def test_a_condition_on_two_sizes_is_tried_on_each(tmp_path: Path) -> None:
    """Every probe kept the total even (8 + 16, and 17 + 33 doubled plus one): verified and
    wrong at every odd total. Each size is varied with the other at the example's."""
    inputs = (torch.randn(1, 4, 8), torch.randn(1, 4, 16))
    report = export(
        _PadsOddTotal(), inputs, tmp_path / "m.onnx", dynamic={"prompt": {2: "p"}, "x": {2: "t"}},
        runs=1,
    )  # fmt: skip
    assert report.matches is False and not report.published
    probes = {p.sizes: p for p in report.dynamic if p.condition is not None}
    assert set(probes) == {"axis 2 of prompt at 9", "axis 2 of x at 17"}


class _PadsTotalTo4(_PadsOddTotal):
    """The prompt and the input joined and padded to a multiple of 4: 8 + 16 and doubled,
    48, are; 17 + 33, doubled plus one, is not (t88)."""

    def forward(self, prompt: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([prompt, x], 2)
        if h.shape[2] % 4:
            h = F.pad(h, (0, 4 - h.shape[2] % 4))
        return self.conv(h)


@pytest.mark.parametrize("model", ["parity", "sum"])
def test_an_accepted_condition_leaves_the_probes_where_it_fails_unchecked(
    model: str, tmp_path: Path
) -> None:
    """Accepted, the file is for the sizes where the conditions hold: the doubled plus one
    probe, where they fail (an odd length; a sum of two sizes not a multiple of 4), compares
    nothing. The condition on two sizes was not checked there, and the export failed (t88)."""
    if model == "parity":
        built: nn.Module = _Parity()
        inputs: tuple[torch.Tensor, ...] = (torch.randn(2, 4, 8),)
        dynamic = {"x": {2: "t"}}
    else:
        built, inputs = _PadsTotalTo4(), (torch.randn(1, 4, 8), torch.randn(1, 4, 16))
        dynamic = {"prompt": {2: "p"}, "x": {2: "t"}}
    report = export(built, inputs, tmp_path / "m.onnx", dynamic=dynamic, accept_ranges=True, runs=1)
    assert report and report.published
    probes = {p.sizes: p for p in report.dynamic}
    assert probes["doubled"].unchecked is None and all(probes["doubled"].comparisons["cpu"])
    unchecked = probes["doubled plus one"].unchecked
    assert unchecked is not None and unchecked.startswith("torch.export's condition ")
    assert unchecked.endswith(
        "does not hold there: the file is exported for the sizes where it holds"
    )


class _Parity(_OneConv):
    """A branch on the length's parity whose two sides differ."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return h.mean(-1) if x.shape[2] % 2 == 0 else h.sum(-1)


class _Cropped(nn.Module):
    """A conditioning input cropped to the input's length: torch.export keeps ``x <= c``, and
    resizing c in proportion with x keeps it holding (t88)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(4, 6, 1))
        self.cond = nn.Conv1d(4, 6, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.cond(c)[..., : x.shape[2]]


def test_a_condition_a_crop_takes_is_said_where_pytorch_runs_only_with_it(
    tmp_path: Path,
) -> None:
    """PyTorch ran x at 33 only with c at 66, where x <= c holds: it was said to run where the
    condition does not hold, and compared there as if it did not (t88)."""
    x = torch.randn(1, 4, 16)
    report = export(
        _Cropped(), (x, torch.randn(1, 4, 32)), tmp_path / "m.onnx", runs=1,
        dynamic={"x": {2: "t"}, "c": {2: "u"}},
    )  # fmt: skip
    assert report and report.published
    assert not [p for p in report.dynamic if p.condition is not None]
    (said,) = [w for w in report.sizes if w.startswith("axis 2 of x ")]
    # a tie PyTorch keeps too: said as one, not as sizes the file is for only (t98)
    assert said.startswith("axis 2 of x goes with other dynamic sizes: torch.export took ")
    assert said.endswith(
        "(n: the length of axis 2 of x, the other dynamic sizes at the example's), which "
        "PyTorch keeps too (PyTorch runs at 33 (axis 2 of x at 33 and axis 2 of c at 66) to 40 "
        "(axis 2 of x at 40 and axis 2 of c at 80) only with other sizes resized so that it "
        "holds); the file is for inputs that keep it"
    )


class _NeedsTwice(nn.Module):
    """Runs only where ``c`` is twice as long as ``x``."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        self.seen.append((x.shape[2], c.shape[2]))
        if c.shape[2] != 2 * x.shape[2]:
            raise ValueError("c is not twice x")
        return x.sum(-1)


def test_a_run_where_other_sizes_make_a_condition_hold_is_no_probe_of_it() -> None:
    """``x <= 16`` (with c at the example's 32: ``x <= c``): alone, PyTorch fails at 17; with
    c in proportion (34) it runs, and the condition holds there, so it probes nothing: it was
    compared as if it failed there (t88)."""
    import sympy

    from wnpass.assumed import Condition
    from wnpass.deploy.ranges import _check_ranges, _Range

    t, u = sympy.Symbol("t", integer=True), sympy.Symbol("u", integer=True)
    model, x, c = _NeedsTwice(), torch.randn(1, 4, 16), torch.randn(1, 4, 32)
    shorter = Condition(str(t), "n <= 32", False, (17, 18), lambda n: n <= 16,
                        lambda sizes: sizes.get(str(t), 16) <= sizes.get(str(u), 32))  # fmt: skip
    ranges = [_Range("x", 2, t, 1, None, t), _Range("c", 2, u, 1, None, u)]
    said, beyond = _check_ranges(
        model, Batch((x, c), {}), {"x": x, "c": c}, ranges, [shorter], True, False
    )
    assert beyond == [] and model.seen[:2] == [(17, 32), (17, 34)]
    (line,) = said
    assert line.endswith(
        "PyTorch runs at 17 (axis 2 of x at 17 and axis 2 of c at 34) and 18 (axis 2 of x at 18 "
        "and axis 2 of c at 36) only with other sizes resized so that it holds)"
    )


def test_conditions_that_cannot_be_read_are_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torch that keeps them otherwise: the file was published as verified, wrong at every
    odd frame count, and only a log line at INFO said why (t88)."""
    monkeypatch.setattr("wnpass.assumed.conditions", lambda program: None)
    inputs = Batch((torch.randn(1, 1, 16),), {})
    report = export(_PadsOddFrames(), inputs, tmp_path / "m.onnx", dynamic={"x": {2: "t"}}, runs=1)
    from wnpass.assumed import UNREAD

    assert UNREAD in report.sizes


def test_each_size_is_run_once_and_compared_once() -> None:
    """Two conditions failing at 15 (not said as one: they fail at other sizes after it):
    PyTorch runs there once, and the file is to be compared there once."""
    import sympy

    from wnpass.assumed import Condition
    from wnpass.deploy.ranges import _check_ranges, _Range

    t = sympy.Symbol("t", integer=True)
    model, x = _Lengths(), torch.randn(2, 4, 16)

    def condition(failing: tuple[int, ...]) -> Condition:
        return Condition(str(t), f"n in {failing}", True, failing, lambda n: n not in failing,
                         lambda sizes: sizes.get(str(t), 16) not in failing)  # fmt: skip

    said, beyond = _check_ranges(
        model, Batch((x,), {}), {"x": x}, [_Range("x", 2, t, 1, None, t)],
        [condition((15, 14)), condition((15, 17))], True, False,
    )  # fmt: skip
    assert model.seen == [15] and [b.size for b in beyond] == [15] and said == []


class _Fails(nn.Module):
    """Records the shapes it is run on, and fails."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.seen.append((x.shape[2], mask.shape[2]))
        raise ValueError("no")


def test_a_companion_resized_back_to_its_example_length_is_not_run_again() -> None:
    """``mask`` a sixteenth of x: at x = 17 its length rounds to its example's, 1, and the
    run with it "resized" was the first run again (t89)."""
    import sympy

    from wnpass.deploy.ranges import _companions, _Range, _run_at

    t, u = sympy.Symbol("t", integer=True), sympy.Symbol("u", integer=True)
    model, x, mask = _Fails(), torch.randn(1, 4, 16), torch.randn(1, 4, 1)
    axes, others = [_Range("x", 2, t, 1, 16, t)], [_Range("mask", 2, u, 1, None, u)]
    arguments = {"x": x, "mask": mask}
    companions = _companions(axes, others, arguments)
    _run_at(model, Batch((x, mask), {}), arguments, axes, companions, 17)
    _run_at(model, Batch((x, mask), {}), arguments, axes, companions, 40)
    assert model.seen == [(17, 1), (40, 1), (40, 3)]


def test_sizes_tried_are_said_each_unless_in_a_row() -> None:
    from wnpass.deploy.ranges import _spanned

    assert _spanned([(s, str(s)) for s in (18, 17, 19)]) == "17 to 19"
    assert _spanned([(s, str(s)) for s in (9, 11, 13)]) == "9, 11 and 13"  # not 9 to 13


def test_a_companion_s_length_rounds_halves_up() -> None:
    from fractions import Fraction

    from wnpass.deploy.ranges import _scaled

    assert (_scaled(9, Fraction(5, 2)), _scaled(11, Fraction(5, 2))) == (23, 28)
    assert _scaled(1, Fraction(1, 4)) == 1


def test_wav2vec2_with_a_dynamic_length_is_exported_for_its_range_when_accepted(
    tmp_path: Path,
) -> None:
    """A tiny wav2vec2 (random weights, a weight-normed positional convolution): torch's
    reshape decomposition holds the samples to 30 and up (2 frames), and PyTorch runs at 29
    (1 frame); refused, unless the range is accepted (t75)."""
    transformers = pytest.importorskip(
        "transformers", reason="transformers not installed (pip install -e '.[dev]')"
    )
    config = transformers.Wav2Vec2Config(
        vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.Wav2Vec2Model(config).eval()
    inputs, dynamic = Batch((), {"input_values": torch.randn(2, 400)}), {"input_values": {1: "t"}}
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"sizes from 30 up only, and PyTorch runs at 29"):
        export(model, inputs, out, dynamic=dynamic, runs=1)
    report = export(model, inputs, out, dynamic=dynamic, accept_ranges=True, runs=1)
    assert report and report.published
    assert report.sizes == [
        "axis 1 of input_values is exported for sizes from 30 up only (PyTorch runs at 29 "
        "too: accepted, the file is for these sizes)"
    ]


class _GivenFilter(nn.Module):
    """A filter the caller passes in, normalized to unit norm before the convolution, with a
    learned gain: no parameter is weight-normed (dynamic filtering, t75)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv1d(4, 4, 1)
        self.gain = nn.Parameter(torch.rand(4, 1, 1) + 0.5)

    def forward(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        k = self.gain * F.normalize(kernel, dim=(1, 2))  # type: ignore[arg-type]  # (stub: int)
        return self.proj(F.conv1d(x, k, padding=1))


class _GivenAndOwn(nn.Module):
    """A projection the caller passes in as ``weight`` and the module's own ``self.weight``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight) + F.linear(x, self.weight)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_weight_is_not_named_after_a_graph_input_of_its_name(
    exporter: str, tmp_path: Path
) -> None:
    """The initializer holding ``self.weight`` was renamed ``weight``, the graph input's name:
    both MatMuls read what the caller feeds, the file was wrong (or failed the checker) and
    its verification failed (t82). It keeps the exporter's name, and is said to."""
    torch.manual_seed(0)
    out = tmp_path / "m.onnx"
    report = export(
        _GivenAndOwn(), (torch.randn(2, 4), torch.randn(4, 4)), out, exporter=exporter, runs=1
    )
    assert report and report.published and report.names_missing == ["weight"]
    model = onnx.load(out)
    assert [i.name for i in model.graph.input] == ["x", "weight"]
    assert "weight" not in {i.name for i in model.graph.initializer}


class _TimesItsDirection(nn.Module):
    """``(x * v) / ||v||``, as written: the norm of a weight inside an activation's product."""

    def __init__(self) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.randn(1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.v) / self.v.norm(dim=1, keepdim=True)


def test_a_site_declined_over_a_weight_of_the_models_keeps_the_file_from_deploying(
    tmp_path: Path,
) -> None:
    """TorchScript keeps ``(x * v) / ||v||``: a declined site whose v is the model's weight,
    not given at run time, is no weight computed at run time (t79: no test told them apart)."""
    out = tmp_path / "m.onnx"
    report = export(_TimesItsDirection(), (torch.randn(2, 4),), out, exporter="torchscript", runs=1)
    (site,) = report.onnx_fold.sites
    assert (site.status, site.fed_by) == ("declined", None)
    assert report.run_time_weights == [] and not report.folded_whole and not report.published


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_filter_given_at_run_time_does_not_keep_the_file_from_deploying(
    exporter: str, tmp_path: Path
) -> None:
    """The norm of the filter is a site whose v is a graph input: declined, as nothing can fold
    it, and the export said NOT DEPLOYABLE and wrote nothing though ONNX Runtime matched."""
    inputs = Batch((torch.randn(2, 4, 32), torch.randn(4, 4, 3)), {})
    out = tmp_path / "m.onnx"
    report = export(_GivenFilter(), inputs, out, exporter=exporter, runs=1)
    assert report and report.folded_whole and report.published and out.exists()
    (site,) = report.run_time_weights
    assert (site.status, site.fed_by) == ("declined", "kernel")
    assert report.to_dict()["run_time_weights"] == [site.name]


class _Requires(nn.Module):
    """A weight-normed convolution that asserts its input's length, as nanoGPT's
    ``assert t <= block_size`` does: torch.export bounds the axis, and PyTorch fails past it."""

    def __init__(self, low: int, high: int) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(4, 6, 1))
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._check(x.shape[2] >= self.low)
        torch._check(x.shape[2] <= self.high)
        return self.conv(x)


def test_an_axis_bounded_by_what_the_model_requires_is_exported_with_a_warning(
    tmp_path: Path,
) -> None:
    """The first version refused every bound: a model that asserts its largest length, right
    at every length it accepts, could not be exported with a dynamic length."""
    report = export(
        _Requires(5, 16), Batch((torch.randn(2, 4, 7),), {}), tmp_path / "m.onnx",
        dynamic={"x": {2: "t"}}, runs=1,
    )  # fmt: skip
    assert report and report.published
    assert report.sizes == [
        "axis 2 of x is exported for sizes 5 to 16 only (PyTorch fails at 17 to 24 and 1 to 4 too)"
    ]


def test_an_empty_dynamic_axis_is_not_verified_where_doubled(tmp_path: Path) -> None:
    """Doubled, a length of 0 stays 0 (and has no first element to add): "also with every
    dynamic axis doubled" was said of a run at the example's size, and the JSON said ok."""

    class Counts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = weight_norm(nn.Linear(4, 3))

        def forward(self, x: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
            return self.lin(x) + extra.sum(0).sum() + extra.shape[0]

    inputs = Batch((torch.randn(2, 4), torch.zeros(0, 4)), {})
    report = export(
        Counts(), inputs, tmp_path / "m.onnx", exporter="torchscript",
        dynamic={"extra": {0: "n"}}, runs=1,
    )  # fmt: skip
    assert [(p.sizes, p.inputs, p.unchecked, p.comparisons) for p in report.dynamic] == [
        (sizes, {"extra": [0, 4]}, "axis 0 of extra is 0 in the example", {})
        for sizes in ("doubled", "doubled plus one")
    ]


def test_a_dynamic_input_the_exporter_drops_is_named_so(tmp_path: Path) -> None:
    class Unread(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = weight_norm(nn.Linear(4, 3))

        def forward(self, x: torch.Tensor, unused: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

    inputs = Batch((torch.randn(2, 4), torch.randn(3)), {})
    with pytest.raises(
        ExportError,
        match="the torchscript exporter made no graph input of "
        r"unused \(the forward does not read it\), so none of its axes is dynamic",
    ):
        export(Unread(), inputs, tmp_path / "m.onnx", exporter="torchscript",
               dynamic={"unused": {0: "n"}}, verify=False)  # fmt: skip


def test_an_exporter_failure_keeps_the_end_of_its_cause() -> None:
    """torch.export names the input and axis at the end of a long message, which was cut."""
    try:
        try:
            raise ValueError("Found the following conflicts: " + "x" * 300 + " for dimension "
                             "inputs['hidden_states'].shape[2].")  # fmt: skip
        except ValueError as inner:
            raise RuntimeError("Failed to export the model with torch.export.") from inner
    except RuntimeError as error:
        said = _failure(error)
    assert said.startswith("ValueError: Found the following conflicts: xxx")
    assert "... " in said and "for dimension inputs['hidden_states'].shape[2]. (in: " in said


def test_a_failed_verification_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When ONNX Runtime's outputs differ from PyTorch's (here: PyTorch's are shifted), the
    staged model is checked, found different, and never appears under the output's name."""
    export_module = importlib.import_module("wnpass.deploy.pipeline")

    real = export_module._expected
    monkeypatch.setattr(
        export_module, "_expected", lambda graph, outputs: [a + 1.0 for a in real(graph, outputs)]
    )
    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    out = tmp_path / "mlp.onnx"
    report = export(model, inputs, out, exporter="torchscript", runs=1)
    assert not report and not report.matches and report.published is False
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.setattr(export_module, "_expected", real)
    report = export(model, inputs, out, exporter="torchscript", runs=1)
    assert report and report.published and out.exists()


class _WithEmpty(nn.Module):
    """Also returns an output empty by construction (``y[:0]``); ``only_empty``: nothing else."""

    def __init__(self, only_empty: bool) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(8, 4))
        self.only_empty = only_empty

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = self.fc(x)
        return (y[:0],) if self.only_empty else (y, y[:0])


@pytest.mark.parametrize("only_empty", [False, True], ids=["beside-a-real-one", "alone"])
def test_an_empty_output_is_not_compared_and_only_fails_when_alone(
    only_empty: bool, tmp_path: Path
) -> None:
    """An output empty by construction beside a compared one does not block the export; a
    model whose every output is empty proved nothing and is not published."""
    torch.manual_seed(0)
    out = tmp_path / "m.onnx"
    report = export(_WithEmpty(only_empty), (torch.randn(2, 8),), out, runs=1)
    assert report.matches is (not only_empty) and out.exists() is (not only_empty)
    assert any(c.uncompared for comparisons in report.comparisons.values() for c in comparisons)
    assert bool(report.to_dict()["nothing_compared"]) is only_empty


class _UnusedFirst(nn.Module):
    """``mask`` is never read: the TorchScript exporter drops it from the graph's inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(8, 6))
        self.drop = nn.Dropout(0.5)

    def forward(self, mask: torch.Tensor, x: torch.Tensor, scale: int = 1) -> torch.Tensor:
        return self.drop(self.fc(x)) * scale


def _unused_first() -> tuple[_UnusedFirst, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return _UnusedFirst(), (torch.zeros(3), torch.randn(2, 8))


def test_an_unverified_export_says_it_compared_nothing(tmp_path: Path) -> None:
    """Without verification nothing was compared: ``matches`` is None, not True, and the
    JSON says so; the export itself succeeded, so the report is still true."""
    model, inputs = _unused_first()
    report = export(model, inputs, tmp_path / "m.onnx", verify=False)
    assert report.verified is False and report.matches is None and report.comparisons == {}
    assert report and report.published and (tmp_path / "m.onnx").exists()
    data = report.to_dict()
    assert data["verified"] is False and data["matches"] is None and data["ok"] is True


@pytest.mark.parametrize(
    "first",
    ["", "import wnpass.deploy", "from wnpass.deploy import ExportReport", "import wnpass.cli"],
)
def test_wnpass_export_is_the_function_whatever_was_imported_first(first: str) -> None:
    """Python binds an imported submodule as the package's attribute of its name, over a lazy
    name: no lazily loaded name may be a submodule's (``wnpass.export`` was both, and ``from
    wnpass import export``, the README's line, gave the module once the CLI had imported it).
    A fresh interpreter for each order, so no earlier import in this process decides it."""
    code = f"""
{first}
import importlib, types
import wnpass
from wnpass import export
assert isinstance(export, types.FunctionType), export
assert wnpass.export is export and export.__name__ == "export"
for name, module in wnpass._LAZY.items():
    importlib.import_module(module)
    assert not isinstance(getattr(wnpass, name), types.ModuleType), name
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("fails", [False, True], ids=["exported", "forward-raised"])
def test_every_submodule_keeps_its_training_flag(tmp_path: Path, fails: bool) -> None:
    """The pipeline runs the model in eval mode, then gives each submodule its own flag back
    (the root training, its dropout not: ``train(True)`` would not restore that), also when
    the model raises."""
    model, inputs = _unused_first()
    model.train()
    model.drop.eval()
    if fails:
        inputs = (inputs[0], torch.randn(2, 5))  # does not fit fc: forward raises
    before = [m.training for m in model.modules()]
    if fails:
        with pytest.raises(ModelRunError):
            export(model, inputs, tmp_path / "m.onnx", runs=1)
    else:
        export(model, inputs, tmp_path / "m.onnx", runs=1)
    assert [m.training for m in model.modules()] == before
    assert model.training and model.fc.training and not model.drop.training


@pytest.mark.parametrize("scale", [(3,), ()], ids=["given", "default"])
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_inputs_are_fed_by_name(exporter: str, scale: tuple[int, ...], tmp_path: Path) -> None:
    """The TorchScript exporter drops the unused first input and takes a Python int, given
    or the parameter's default, as a scalar input; each graph input gets the example input
    of its name."""
    model, inputs = _unused_first()
    report = export(model, (*inputs, *scale), tmp_path / "m.onnx", exporter=exporter, runs=1)
    assert report.matches is True and report.published, report.to_dict()
    names = [i.name for i in onnx.load(tmp_path / "m.onnx").graph.input]
    assert names == (["x", "scale"] if exporter == "torchscript" else ["mask", "x"])


class _Optional(nn.Module):
    """A ``None`` default before a number default: TorchScript makes ``scale`` a graph input
    and ``mask`` none; dynamo bakes both into the graph."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(8, 6))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, scale: float = 2.0
    ) -> torch.Tensor:
        y = self.fc(x)
        if mask is not None:
            y = y * mask
        return y * scale


def _graph_inputs(path: Path) -> list[tuple[str, str]]:
    return [
        (i.name, onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type))
        for i in onnx.load(path).graph.input
    ]


@pytest.mark.parametrize("verify", [False, True], ids=["unverified", "verified"])
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_none_default_names_no_graph_input(exporter: str, verify: bool, tmp_path: Path) -> None:
    """``mask=None`` becomes no graph input, so it is given no name: the TorchScript graph's
    double scalar is ``scale`` (it was called ``mask``, and verifying it was refused), and
    feeding it another scale computes what the model does with that scale."""
    torch.manual_seed(0)
    model, x = _Optional(), torch.randn(2, 8)
    out = tmp_path / "m.onnx"
    runs = 1 if verify else DEFAULT_RUNS  # a check option is refused where no check runs
    report = export(model, (x,), out, exporter=exporter, verify=verify, runs=runs)
    assert report.matches is (True if verify else None) and report.published
    if exporter == "dynamo":
        assert _graph_inputs(out) == [("x", "FLOAT")]
        return
    assert _graph_inputs(out) == [("x", "FLOAT"), ("scale", "DOUBLE")]
    (result,) = run(out, {"x": x.numpy(), "scale": np.array(3.0)})
    with torch.no_grad():
        expected = model.eval()(x, None, 3.0).numpy()
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


class _ScaleBetween(nn.Module):
    """A Python number given between two tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(8, 6))

    def forward(self, x: torch.Tensor, scale: float, bias: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * scale + bias


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_given_number_is_named_only_where_it_is_a_graph_input(
    exporter: str, tmp_path: Path
) -> None:
    """The dynamo exporter bakes a given Python number into the graph: ``bias`` keeps its
    name (it was called ``scale``); TorchScript takes the number as an input of its own."""
    torch.manual_seed(0)
    inputs = (torch.randn(2, 8), 2.0, torch.randn(6))
    out = tmp_path / "m.onnx"
    report = export(_ScaleBetween(), inputs, out, exporter=exporter, runs=1)
    assert report.matches is True, report.to_dict()
    names = [name for name, _ in _graph_inputs(out)]
    assert names == (["x", "scale", "bias"] if exporter == "torchscript" else ["x", "bias"])


class _Keywords(nn.Module):
    """Keyword inputs, as transformers' models take them; ``scale`` is never given."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(8, 6))

    def forward(
        self,
        x: torch.Tensor,
        scale: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        y = self.fc(x)
        y = y if scale is None else y * scale
        y = y if mask is None else y * mask
        return y if bias is None else y + bias


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_keyword_inputs_are_exported_named_and_fed_by_name(exporter: str, tmp_path: Path) -> None:
    """Keyword inputs (given in another order than forward's) reach ``forward`` by keyword,
    become the graph inputs of their names, in the order each exporter gives them, with the
    dynamic axis asked for; ONNX Runtime matches PyTorch, and each input fed by name computes
    what the model does with it. A dict of keywords alone is the same call."""
    torch.manual_seed(0)
    model, x, mask, bias = _Keywords(), torch.randn(2, 8), torch.randn(2, 6), torch.randn(6)
    out = tmp_path / "m.onnx"
    inputs = Batch((x,), {"bias": bias, "mask": mask})
    dynamic = {"x": {0: "batch"}, "mask": {0: "batch"}}
    report = export(model, inputs, out, exporter=exporter, dynamic=dynamic, runs=1)
    assert report.matches is True, report.to_dict()
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in onnx.load(out).graph.input
    }
    order = ["x", "mask", "bias"] if exporter == "torchscript" else ["x", "bias", "mask"]
    assert list(dims) == order
    assert dims["x"][0] == dims["mask"][0] == "batch" and dims["bias"] == [6]
    x3, mask3, bias3 = torch.randn(3, 8), torch.randn(3, 6), torch.randn(6)
    (result,) = run(out, {"x": x3.numpy(), "mask": mask3.numpy(), "bias": bias3.numpy()})
    with torch.no_grad():
        expected = model.eval()(x3, mask=mask3, bias=bias3).numpy()
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
    alone = export(model, {"x": x}, tmp_path / "k.onnx", exporter=exporter, runs=1)
    assert alone.matches is True and _graph_inputs(tmp_path / "k.onnx") == [("x", "FLOAT")]


def test_torchscript_refuses_keywords_forward_does_not_name(tmp_path: Path) -> None:
    """The TorchScript exporter passes a keyword input on only as the parameter of its name:
    one that ``**kwargs`` would take is refused before anything is written."""

    class Anything(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 6)

        def forward(self, x: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
            return self.fc(x) + sum(extra.values(), torch.zeros(()))

    inputs = Batch((torch.randn(2, 8),), {"shift": torch.randn(6)})
    with pytest.raises(InvalidArgumentError, match="example_inputs shift: not a parameter"):
        export(Anything(), inputs, tmp_path / "m.onnx", exporter="torchscript")
    assert list(tmp_path.iterdir()) == []
    report = export(Anything(), inputs, tmp_path / "m.onnx", exporter="dynamo", runs=1)
    assert report.matches is True


class _DictFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(batch["x"]) * batch["m"]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_dict_given_positionally_stays_positional(exporter: str, tmp_path: Path) -> None:
    """torch.onnx's exporters read a dict at the end of the positional inputs as the keyword
    inputs (``forward() missing 1 required positional argument: 'batch'``): the pipeline
    passes it on as the positional input it is."""
    torch.manual_seed(0)
    model, batch = _DictFirst(), {"x": torch.randn(2, 4), "m": torch.randn(2, 3)}
    out = tmp_path / "m.onnx"
    report = export(model, (batch,), out, exporter=exporter, verify=False)
    assert report.published
    names = [i.name for i in onnx.load(out).graph.input]
    (result,) = run(out, dict(zip(names, [batch["x"].numpy(), batch["m"].numpy()], strict=True)))
    with torch.no_grad():
        np.testing.assert_allclose(result, model(batch).numpy(), rtol=1e-6, atol=1e-7)


class _Varargs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(4, 4))

    def forward(self, *xs: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        return self.fc(xs[0]) + xs[1] + sum(extra.values(), torch.zeros(()))


def test_dynamic_axes_reach_inputs_that_star_args_take(tmp_path: Path) -> None:
    """``forward(*xs, **extra)``: the dynamo exporter takes the axes of ``*xs`` by position
    (a dict keyed by names it cannot read failed with "top-level keys must be the arg names");
    inputs ``**extra`` takes get none from torch.export (an AssertionError there): refused
    before anything is exported."""
    torch.manual_seed(0)
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    out = tmp_path / "m.onnx"
    dynamic = {"input_0": {0: "n"}, "input_1": {0: "n"}}
    report = export(_Varargs(), (x, y), out, dynamic=dynamic, runs=1)
    assert report.matches is True
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in onnx.load(out).graph.input]  # fmt: skip
    assert dims == [["n", 4], ["n", 4]]
    with pytest.raises(InvalidArgumentError, match=r"inputs through \*\*extra \(z\)"):
        export(_Varargs(), Batch((x, y), {"z": y}), tmp_path / "k.onnx", dynamic=dynamic)
    assert not (tmp_path / "k.onnx").exists()


class _PairFirst(nn.Module):
    def forward(self, pair: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return pair[0] + pair[1] + x


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_dynamic_axis_after_a_tuple_input_is_refused(exporter: str, tmp_path: Path) -> None:
    """A tuple of tensors becomes several graph inputs, which one name cannot label: ``x``
    after it keeps the exporter's name, so an axis asked for on ``x`` would be ignored."""
    inputs = ((torch.ones(2), torch.ones(2)), torch.ones(2))
    with pytest.raises(InvalidArgumentError, match="dynamic x: not a graph input of that name"):
        export(
            _PairFirst(), inputs, tmp_path / "m.onnx", exporter=exporter, dynamic={"x": {0: "b"}}
        )
    assert list(tmp_path.iterdir()) == []


def test_ort_errors_name_the_output_not_the_staging_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(session: object, model: Path, feeds: object) -> list[object]:
        raise InvalidModelError(f"{model}: onnxruntime failed to run it: boom")

    monkeypatch.setattr(providers, "run", fail)
    model, inputs = _unused_first()
    out = tmp_path / "m.onnx"
    with pytest.raises(InvalidModelError) as raised:
        export(model, inputs, out, exporter="torchscript", runs=1)
    assert str(raised.value) == f"{out}: onnxruntime failed to run it: boom"
    assert list(tmp_path.iterdir()) == []


def _bf16() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    model = nn.Sequential(weight_norm(nn.Linear(8, 6)), nn.ReLU()).to(torch.bfloat16)
    return model, (torch.randn(2, 8, dtype=torch.bfloat16),)


def test_bfloat16_is_exported_and_its_verification_declined(tmp_path: Path) -> None:
    """onnxruntime's Python API takes and gives no bfloat16 arrays: verifying is declined
    before anything is exported; without it the model exports, weights named by value."""
    model, inputs = _bf16()
    with pytest.raises(InvalidArgumentError, match=r"cannot verify: .* no bfloat16 arrays"):
        export(model, inputs, tmp_path / "m.onnx", exporter="torchscript")
    assert list(tmp_path.iterdir()) == []
    report = export(model, inputs, tmp_path / "m.onnx", exporter="torchscript", verify=False)
    assert report and report.names_missing == []
    assert "0.weight" in {i.name for i in onnx.load(tmp_path / "m.onnx").graph.initializer}


@pytest.mark.parametrize("where", ["model", "inputs"])
def test_meta_tensors_are_refused(where: str, tmp_path: Path) -> None:
    model, inputs = _unused_first()
    if where == "model":
        model = model.to("meta")
    else:
        inputs = tuple(t.to("meta") for t in inputs)
    with pytest.raises(InvalidArgumentError, match="on the meta device, which hold"):
        export(model, inputs, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("dynamic", "message"),
    [
        ({"x": {2: "b"}}, r"dynamic x: axis 2 is outside its 2 dimensions \(shape \[2, 8\]\)"),
        ({"scale": {0: "b"}}, r"dynamic scale: its example input is not a tensor \(int\)"),
        ({"y": {0: "b"}}, "dynamic y: the model's inputs are mask, x, scale"),
    ],
)
def test_dynamic_axes_must_fit_the_inputs(
    dynamic: dict[str, dict[int, str]], message: str, tmp_path: Path
) -> None:
    model, inputs = _unused_first()
    with pytest.raises(InvalidArgumentError, match=message):
        export(model, (*inputs, 2), tmp_path / "m.onnx", dynamic=dynamic)
    assert list(tmp_path.iterdir()) == []


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(4, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + y.sum()


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_dynamic_axis_goes_to_the_input_of_its_name(exporter: str, tmp_path: Path) -> None:
    """``--dynamic y=0`` of ``forward(x, y)``: y's axis 0 is symbolic and x keeps its shape
    (torch gave the dynamo exporter's axes out by position: x's axis 0 was made dynamic)."""
    torch.manual_seed(0)
    out = tmp_path / "m.onnx"
    inputs = (torch.randn(2, 4), torch.randn(5, 3))
    export(_TwoInputs(), inputs, out, exporter=exporter, dynamic={"y": {0: "batch"}}, runs=1)
    shapes = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in onnx.load(out).graph.input
    }
    assert shapes["x"] == [2, 4] and isinstance(shapes["y"][0], str) and shapes["y"][1] == 3


def test_an_axis_the_exporter_left_fixed_is_refused() -> None:
    from wnpass.deploy import ExportError
    from wnpass.deploy.inputs import _check_dynamic_made

    model = ir.serde.deserialize_model(
        onnx.parser.parse_model(
            '<ir_version: 8, opset_import: ["" : 18]> g (float[2, 4] x) => (float[2, 4] y) '
            "{ y = Relu(x) }"
        )
    )
    with pytest.raises(ExportError, match=r"did not make axis 0 of x dynamic \(fixed at 2\)"):
        _check_dynamic_made(model, {"x": {0: "batch"}}, "dynamo")
    _check_dynamic_made(model, None, "dynamo")


class _DictAfter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(4, 3))

    def forward(self, x: torch.Tensor, d: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(x).sum(0, keepdim=True) + d["a"]


def test_a_dynamic_axis_beside_a_dict_input_under_dynamo(tmp_path: Path) -> None:
    """torch.export wants a dict input's entry as a dict of the same keys (``inputs['d'] is
    a dict, but dynamic_shapes['d'] is not``): the dict gets one of Nones."""
    torch.manual_seed(0)
    out = tmp_path / "m.onnx"
    inputs = (torch.randn(5, 4), {"a": torch.randn(1, 3)})
    report = export(_DictAfter(), inputs, out, dynamic={"x": {0: "b"}}, verify=False)
    assert report.published
    (x_input, *_) = onnx.load(out).graph.input
    assert x_input.type.tensor_type.shape.dim[0].dim_param == "b"


class _WithNumber(nn.Module):
    """Returns a Python number beside its tensor: the batch size (TorchScript makes it an
    int64 output), or ``.item()`` of a tensor (dynamo makes it an output of that tensor's
    dtype, float32 here)."""

    def __init__(self, item: bool) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(4, 3))
        self.item = item

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int | float]:
        y = self.fc(x)
        return y, (y.sum().item() if self.item else x.shape[0])


@pytest.mark.parametrize(
    ("exporter", "item", "dtype"),
    [("torchscript", False, "int64"), ("dynamo", True, "float32")],
    ids=["torchscript-int", "dynamo-item"],
)
def test_a_number_the_forward_returns_is_verified_as_the_output_it_becomes(
    exporter: str, item: bool, dtype: str, tmp_path: Path
) -> None:
    """The exporter makes a returned number a 0-d output: it is compared with the number as a
    0-d array of that output's type (a number was left out of the expected outputs, and
    pairing them failed with an internal error), as any output of that type is: an int
    exactly, a float within its tolerance (ONNX sums in its own order)."""
    torch.manual_seed(0)
    out = tmp_path / "m.onnx"
    report = export(_WithNumber(item), (torch.randn(2, 4),), out, exporter=exporter, runs=1)
    assert report.matches and out.exists(), report.to_dict()
    number = report.comparisons["cpu"][1]
    assert (number.shape, number.dtype) == ([], dtype)
    assert (number.rtol, number.atol) == ((1e-4, 1e-5) if item else (None, None))


def test_outputs_that_cannot_be_paired_are_not_verified(tmp_path: Path) -> None:
    """When the graph has another count of outputs than the forward returned tensors and
    numbers, which is which is unknown: verification is declined, nothing is paired."""
    import wnpass.deploy.outputs as deploy

    torch.manual_seed(0)
    out = tmp_path / "m.onnx"
    export(_WithNumber(False), (torch.randn(2, 4),), out, exporter="torchscript", verify=False)
    graph = ir.load(out).graph
    with pytest.raises(InvalidArgumentError, match=r"cannot verify: .* 2 outputs where .* 1 "):
        deploy._expected(graph, [np.zeros((2, 3), np.float32)])


class _Spectrum(nn.Module):
    """A complex output (a spectrum, as STFT-based vocoders and codecs return) beside a real one."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.fc(x)
        return torch.complex(y, 2 * y), y


def test_a_complex_output_is_verified_as_the_real_pairs_the_exporter_makes(
    tmp_path: Path,
) -> None:
    """The dynamo exporter makes a complex output real pairs (a last axis of 2): it failed as
    "shape [2, 4, 2] != reference [2, 4]"; now PyTorch's output is taken as those pairs,
    exactly as ``torch.view_as_real`` gives them, and compared element by element."""
    torch.manual_seed(0)
    model, x = _Spectrum(), torch.randn(2, 8)
    report = export(model, (x,), tmp_path / "m.onnx", runs=1)
    assert report.matches, report.to_dict()
    pairs, real = report.comparisons["cpu"]
    assert (pairs.shape, pairs.dtype, pairs.total, real.total) == ([2, 4, 2], "float32", 16, 8)
    import wnpass.deploy.outputs as deploy

    expected = torch.view_as_real(model(x)[0]).detach().numpy()
    graph = ir.load(tmp_path / "m.onnx").graph
    (made, _) = deploy._expected(graph, deploy._outputs(model(x)))
    assert made.tobytes() == expected.tobytes() and made.dtype == expected.dtype


class _ScalesItsInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(2)  # in-place input scaling
        return self.fc(x)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_forward_that_changes_its_input_in_place_is_verified(
    exporter: str, tmp_path: Path
) -> None:
    """PyTorch's forward and the exporter's each get a copy of the example inputs, and ONNX
    Runtime is fed the inputs as given: like is compared with like, and the caller's tensor
    is as it was."""
    torch.manual_seed(0)
    x = torch.randn(2, 4)
    given = x.clone()
    report = export(_ScalesItsInput(), (x,), tmp_path / "m.onnx", exporter=exporter, runs=1)
    assert report.matches, report.to_dict()
    assert torch.equal(x, given)


class _Exits(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise SystemExit(0)


def test_a_sys_exit_in_forward_is_the_models_error(tmp_path: Path) -> None:
    """``sys.exit()`` in the forward is the model's error (exit 2), nothing is written."""
    with pytest.raises(ModelRunError, match=r"called sys\.exit\(0\)"):
        export(_Exits(2, 2), (torch.ones(1, 2),), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_tuple_input_is_refused_for_verification_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tuple of tensors becomes graph inputs with the exporter's names, which the example
    inputs cannot be fed by: verification is declined before anything is exported, and the
    refusal is the only thing said (no warning about names before it)."""
    inputs = ((torch.ones(2), torch.ones(2)), torch.ones(2))
    with pytest.raises(InvalidArgumentError, match=r"cannot verify: pair becomes 2 graph inputs"):
        export(_PairFirst(), inputs, tmp_path / "m.onnx", exporter="torchscript")
    assert caplog.records == [] and list(tmp_path.iterdir()) == []


class _ReturnsItsInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, self.fc(x)


def test_an_exported_file_the_checker_rejects_is_named_as_the_user_knows_it(
    tmp_path: Path,
) -> None:
    """The dynamo exporter writes a graph that returns its input under its input's name,
    which the ONNX checker rejects: the error names what the exporter wrote for the output,
    not wnpass's staging file (gone once the error is shown)."""
    out = tmp_path / "m.onnx"
    with pytest.raises(WnpassError) as raised:
        export(_ReturnsItsInput(), (torch.randn(2, 4),), out, verify=False)
    message = str(raised.value)
    assert message.startswith(f"the dynamo exporter's output for {out}: rejected by the ONNX")
    assert ".wnpass-" not in message and list(tmp_path.iterdir()) == []


def test_a_library_export_leaves_the_processs_file_descriptors_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Silencing what the exporters print from C++ redirects the whole process's stdout and
    stderr: a command line's choice (``exporters_silenced``), never a library call's."""
    redirected: list[int] = []
    real = os.dup2

    def dup2(fd: int, to: int) -> None:
        redirected.append(to)
        real(fd, to)

    monkeypatch.setattr(os, "dup2", dup2)
    model = nn.Linear(4, 3)
    export(model, (torch.randn(2, 4),), tmp_path / "a.onnx", exporter="torchscript", verify=False)
    assert redirected == []
    with exporters_silenced():
        export(model, (torch.randn(2, 4),), tmp_path / "b.onnx", exporter="torchscript",
               verify=False)  # fmt: skip
    assert sorted(redirected) == [1, 1, 2, 2]  # to the null device and back, each


def test_an_opset_whose_graph_lists_its_weights_as_inputs_is_verified(tmp_path: Path) -> None:
    """Below IR version 4 (the TorchScript exporter's opsets 7 and 8) every initializer is
    also a graph input: those are weights, not inputs to feed, and verification goes on (it
    was refused: "takes an input 'fc.bias' that is none of the inputs named after forward's
    parameters", exit 2)."""
    model, inputs = _unused_first()
    out = tmp_path / "m.onnx"
    report = export(model, inputs, out, exporter="torchscript", opset=7, runs=1)
    assert report.matches is True and report.published, report.to_dict()
    proto = onnx.load(out)
    assert proto.ir_version == 3 and "fc.bias" in [i.name for i in proto.graph.input]


def test_a_failed_export_says_its_innermost_cause_and_logs_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The dynamo exporter wraps the cause (``'int' object has no attribute 'name'``) in
    messages of several hundred characters: the one line was cut at 240 and lost it. It says
    the innermost exception first, then the first line of the outermost; ``-v`` (INFO) logs
    the traceback, and the tracer's warnings before it (at WARNING they would be more lines
    beside the error's one)."""
    wrapper = "Failed to convert the exported program. \x1b[96mThis is step 3/3\x1b[0m. Next:\n"

    def fail(*args: object, **kwargs: object) -> None:
        warnings.warn("Using len to get tensor shape", torch.jit.TracerWarning, stacklevel=1)
        try:
            raise AttributeError("'int' object has no attribute 'name'")
        except AttributeError as cause:
            try:
                raise RuntimeError("Error when translating node return (linear, 2).") from cause
            except RuntimeError as middle:
                raise RuntimeError(wrapper + "- steps " * 60) from middle

    monkeypatch.setattr(torch.onnx, "export", fail)
    caplog.set_level("INFO", logger="wnpass.deploy")
    with pytest.raises(WnpassError) as raised:
        export(nn.Linear(4, 3), (torch.randn(2, 4),), tmp_path / "m.onnx", verify=False)
    assert str(raised.value) == (
        "torch.onnx.export failed: AttributeError: 'int' object has no attribute 'name' "
        "(in: Failed to convert the exported program. This is step 3/3. Next:)"
    )
    assert len([r for r in caplog.records if r.exc_info]) == 1
    assert [r.levelname for r in caplog.records if "TracerWarning" in r.getMessage()] == ["INFO"]
    assert "'int' object has no attribute 'name'" in caplog.text and "Traceback" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_two_runs_are_the_same_only_bit_for_bit() -> None:
    """An output is the same in two PyTorch runs when its every bit is (NaN where the other
    has NaN too); a difference of one ulp, or of a number's type, is a change."""
    from wnpass.deploy.outputs import _changed

    a = np.array([1.0, np.nan], np.float32)
    assert _changed([a, 3, float("nan")], [a.copy(), 3, float("nan")]) == []
    ulp = np.nextafter(a, np.float32(2.0))
    assert _changed([a, 3, 1.0], [ulp, 3.0, 1.0]) == [0, 1]
    assert _changed([a], [a, a]) == [0]


class _AtMostThree(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 3:
            raise ValueError("at most 3 rows")
        return self.fc(x)


class _FlatByLen(nn.Module):
    """Flattens its output by ``len(x)``, which the TorchScript trace fixes at the example's."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).reshape(len(x) * 3)


def test_dynamic_axes_onnx_runtime_cannot_run_doubled_fail_the_verification(
    tmp_path: Path,
) -> None:
    """Where ONNX Runtime fails on the example inputs with every dynamic axis doubled and
    PyTorch runs, the graph is wrong at that size: the verification fails, saying why with
    ONNX Runtime's whole message, and nothing is written (it passed, verified at the
    example's size only)."""
    out = tmp_path / "m.onnx"
    report = export(
        _FlatByLen(), (torch.randn(2, 4),), out, exporter="torchscript", dynamic={"x": {0: "b"}}
    )
    doubled, odd = report.dynamic
    said = doubled.not_verified or ""
    assert said.startswith(f"on cpu, {out}: onnxruntime failed to run it: ")
    assert said.endswith("requested shape:{6}")  # the whole reason, not cut at 240 characters
    assert doubled.inputs == {"x": [4, 4]} and doubled.comparisons == {}
    assert (odd.not_verified or "").endswith("requested shape:{6}")
    assert all(report.comparisons["cpu"]) and report.matches is False and not report.published
    assert list(tmp_path.iterdir()) == []


def test_dynamic_axes_pytorch_cannot_run_doubled_are_said_unverified(tmp_path: Path) -> None:
    """Where PyTorch itself fails at the doubled size (a length taken from values, a table of
    fixed size), nothing can be compared there, and the export may well be right: it is
    published as verified at the example's size, and the report says the dynamic axes are
    not (such exports were refused, with no way round but dropping the verification)."""
    out = tmp_path / "m.onnx"
    report = export(
        _AtMostThree(), (torch.randn(2, 4),), out, exporter="torchscript", dynamic={"x": {0: "b"}}
    )
    for probe in report.dynamic:
        assert probe.unchecked == "PyTorch's forward raised ValueError: at most 3 rows"
        assert probe.not_verified is None and probe.comparisons == {}
    assert report.matches is True and report.published and out.exists()


class _PositionTable(nn.Module):
    """Token and position embeddings: a position table of 16, so an example of 10 tokens
    fails PyTorch at 20 and 21; ``batch_branch`` scales its output for batches over 3, a
    branch the TorchScript trace fixes at the example's."""

    def __init__(self, batch_branch: bool) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(50, 8), nn.Embedding(16, 8)
        self.fc = weight_norm(nn.Linear(8, 8))
        self.batch_branch = batch_branch

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.fc(self.tokens(ids) + self.positions(torch.arange(ids.shape[1])))
        return h * 2.0 if self.batch_branch and ids.shape[0] > 3 else h


@pytest.mark.parametrize("branch", [False, True])
def test_axes_are_resized_alone_where_every_axis_resized_fails(
    branch: bool, tmp_path: Path
) -> None:
    """Twice the example's 10 tokens is past the position table: PyTorch fails with every
    dynamic axis doubled, and the batch axis was compared at no other size, so a branch on
    the batch size was published as verified at the example's size (t93). Each length of the
    example is now resized alone there: the batch axis is compared doubled and doubled plus
    one (the branch fails the verification), the token axis is said unverified alone too,
    and then compared one shorter, at 9 (t98: a parity branch on it went unseen)."""
    out = tmp_path / "m.onnx"
    ids = torch.randint(0, 50, (2, 10))
    dynamic = {"ids": {0: "batch", 1: "tokens"}}
    report = export(
        _PositionTable(branch), (ids,), out, exporter="torchscript", dynamic=dynamic, runs=1
    )
    said = [(p.where, p.inputs["ids"], p.unchecked is None) for p in report.dynamic]
    assert said == [
        ("every dynamic axis doubled", [4, 20], False),
        ("every dynamic axis doubled plus one", [5, 21], False),
        ("axis 0 of ids doubled", [4, 10], True),
        ("axis 1 of ids doubled", [2, 20], False),
        ("axis 0 of ids doubled plus one", [5, 10], True),
        ("axis 1 of ids doubled plus one", [2, 21], False),
        ("axis 1 of ids one shorter", [2, 9], True),  # where PyTorch failed at every size
    ]
    alone = [p for p in report.dynamic if p.alone == "axis 0 of ids"]
    assert [all(p.comparisons["cpu"]) for p in alone] == [not branch, not branch]
    assert report.matches is (not branch) and out.exists() is (not branch)


class _DropsOddLast(nn.Module):
    """A per-point MLP and a max over the points (PointNet-like); an odd count of points
    drops its last one, a branch both exporters fix at the example's even count."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mlp = nn.Sequential(weight_norm(nn.Conv1d(3, 32, 1)), nn.ReLU(), nn.Conv1d(32, 32, 1))
        self.head = nn.Linear(32, 4)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.shape[2] % 2:
            points = points[:, :, :-1]
        return self.head(self.mlp(points).amax(2))


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_branch_behind_a_max_shows_at_the_probes(exporter: str, tmp_path: Path) -> None:
    """At 2n + 1 points the added point was a copy of the first, which a max over points
    keeps as it was whether the branch drops it or not: the file, wrong at every odd count,
    was published as verified (t98). A float input's added copies are scaled now, so the
    added point is a new one, and the odd probe fails."""
    out = tmp_path / "m.onnx"
    points = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(1))
    dynamic = {"points": {0: "batch", 2: "count"}}
    report = export(_DropsOddLast(), (points,), out, exporter=exporter, dynamic=dynamic, runs=1)
    odd = [p for p in report.dynamic if p.sizes == "doubled plus one" and p.bound is None]
    assert odd and not all(odd[0].comparisons["cpu"])
    assert report.matches is False and not out.exists()


class _MaskedMean(nn.Module):
    """A masked mean of token embeddings, the mask viewed as ``(batch, -1)``, as GPT-2 views
    its attention mask: torch.export derives the mask's batch from the ids' sizes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = weight_norm(nn.Embedding(50, 8))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.view(ids.shape[0], -1)
        h = self.emb(ids) * mask[..., None]
        return h.sum(1) / mask.sum(1, keepdim=True)


def test_a_probe_that_empties_a_derived_axis_is_not_tried(tmp_path: Path) -> None:
    """Below the ids' range, at 1, the mask's derived batch was 0: PyTorch ran on an empty
    mask, both outputs were NaN, nothing was compared there, and the file, right at every
    size, was refused (t98). An input made empty is no probe: not tried, said so."""
    out = tmp_path / "m.onnx"
    mask = torch.ones(2, 10)
    mask[1, 6:] = 0
    ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(1))
    dynamic = {"ids": {0: "b", 1: "t"}, "mask": {0: "mb", 1: "mt"}}
    report = export(_MaskedMean(), (ids, mask), out, dynamic=dynamic, runs=1)
    assert all(0 not in shape for p in report.dynamic for shape in p.inputs.values())
    assert report.matches is True and out.exists()
    assert any("not tried at 0, where it does not hold: an empty input" in s for s in report.sizes)


def test_an_export_over_a_fold_with_external_data_names_the_data_file_it_removed(
    tmp_path: Path,
) -> None:
    """o.onnx, written by ``wnpass fold`` with its weights in o.onnx.data (wnpass's own data
    file): an export over it deletes that file, and its report says so, as a fold's does."""
    from tests.helpers import weight_normed
    from wnpass import fold_onnx

    out, data = tmp_path / "o.onnx", tmp_path / "o.onnx.data"
    fold_onnx(weight_normed(tmp_path, external=True), out)
    assert data.exists()
    model, inputs = _unused_first()
    report = export(model, inputs, out, exporter="torchscript", verify=False)
    assert report.published and not data.exists()
    assert report.onnx_fold.removed == [str(data)]


def _inotify_instances() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except OSError:  # the descriptor os.listdir itself used, closed since
            continue
    return count


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_library_export_closes_the_watch_of_its_own_plan(tmp_path: Path) -> None:
    """An export given no plan makes one that watches the model's reads with an inotify
    instance (a few per user); a failed export whose exception was kept held it open."""

    class Fails(nn.Module):
        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no")

    model, inputs = _unused_first()
    before = _inotify_instances()
    with pytest.raises(WnpassError) as kept:  # the model's own error, after the plan was made
        export(Fails(), inputs, tmp_path / "m.onnx")
    assert "RuntimeError: no" in str(kept.value) and _inotify_instances() == before
    export(model, inputs, tmp_path / "m.onnx", exporter="torchscript", verify=False)
    assert _inotify_instances() == before


def test_a_failure_says_the_innermost_explicit_cause() -> None:
    """A forward's hint raised inside ``except KeyError`` (no ``from``), wrapped by torch
    with ``raise ... from``: the hint is the cause to say, its KeyError only its context."""
    from wnpass.deploy.exporter import _failure

    def wrapped() -> BaseException:
        try:
            try:
                raise KeyError("export_mode")
            except KeyError:
                raise ValueError("set model.cfg['export_mode'] first")  # noqa: B904
        except ValueError as hint:
            try:
                raise RuntimeError("Failed to export the model with torch.export") from hint
            except RuntimeError as top:
                return top
        raise AssertionError

    error = wrapped()
    assert error.__cause__ is not None and error.__cause__.__context__ is not None
    assert _failure(error).startswith("ValueError: set model.cfg['export_mode'] first (in: ")


class _Counter(nn.Module):
    """Returns a buffer it adds to on every run: the same array object both times."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.calls: torch.Tensor
        self.register_buffer("calls", torch.zeros(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.add_(1)
        return self.fc(x), self.calls


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_buffer_the_forward_writes_is_given_back_and_exported_as_set(
    exporter: str, tmp_path: Path
) -> None:
    """An offset the forward adds to its output and then moves: the dynamo exporter read it as
    wnpass's own forwards had left it (1 where the caller set 0), so the file computed other
    outputs than the caller's model; and the caller's model kept the moved value. TorchScript's
    own trace runs the forward once more: its file holds the value after that run (t42: a
    rewrite of the file's value afterwards also rewrote a bias TorchScript merged with it)."""

    class Drifting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = weight_norm(nn.Linear(4, 3))
            self.offset: torch.Tensor
            self.register_buffer("offset", torch.zeros(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fc(x) + self.offset
            with torch.no_grad():
                self.offset += 1
            return y

    torch.manual_seed(0)
    model, x = Drifting(), torch.randn(2, 4)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    model.offset.zero_()
    out = tmp_path / "m.onnx"
    report = export(model, (x,), out, exporter=exporter, verify=False)
    assert model.offset.tolist() == [0.0, 0.0, 0.0]  # the caller's model as it was
    (got,) = run(out, {"x": x.numpy()})
    traced = 1.0 if exporter == "torchscript" else 0.0
    np.testing.assert_allclose(got, expected + traced, rtol=1e-5, atol=1e-6)
    # and the TorchScript file's moved value is said, not left to the README
    moved = [w for w in report.warnings if "moved buffer offset" in w]
    assert len(moved) == (exporter == "torchscript")


def test_an_output_the_forward_changes_in_place_is_read_before_it_is_given_back(
    tmp_path: Path,
) -> None:
    """The first run's output shared the buffer's memory, so the second run changed it too,
    and the model was reported a mismatch of the export. Each run now starts from the buffers
    as set (the count is 1 both times, as in the file) and its outputs are read before the
    count is given back: read after, they held 0 and the export was called a mismatch."""
    model = _Counter()  # dynamo exports the count as set (TorchScript's trace moves it: 2)
    report = export(model, (torch.randn(2, 4),), tmp_path / "m.onnx", exporter="dynamo")
    assert report and report.published and not report.not_deterministic
    assert model.calls.tolist() == [0.0, 0.0, 0.0]


def test_tracer_warnings_about_torch_s_own_modules_are_no_warning_lines(tmp_path: Path) -> None:
    """nn.LSTM checks its input sizes with Python values on every TorchScript export: torch's
    lines, not the model's; and a filter the user set holds (it was overridden)."""
    lstm = nn.LSTM(4, 3, batch_first=True)
    report = export(lstm, (torch.randn(1, 5, 4),), tmp_path / "l.onnx", exporter="torchscript")
    assert report.warnings == []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        report = export(
            _FlatByLen(), (torch.randn(2, 4),), tmp_path / "f.onnx", exporter="torchscript"
        )
    assert report.warnings == []


@pytest.mark.parametrize("fold_in_torch", [True, False])
def test_a_compiled_layer_s_weight_is_named_as_its_bias_is(
    fold_in_torch: bool, tmp_path: Path
) -> None:
    """The copy exported holds a torch.compile'd layer unwrapped, so the exporter names its
    bias "b.bias"; its weight was named from the caller's model: "b._orig_mod.weight". The
    copy is exported whether weight norm is folded in torch or not."""
    prefix = "b."
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("a", weight_norm(nn.Linear(5, 8)))
    compiled: Any = torch.compile(weight_norm(nn.Linear(8, 3)))  # an nn.Module: OptimizedModule
    model.add_module("b", compiled)
    out = tmp_path / "m.onnx"
    report = export(model, (torch.randn(4, 5),), out, fold_in_torch=fold_in_torch, runs=1)
    assert report and report.names_missing == []
    names = sorted(init.name for init in onnx.load(out).graph.initializer)
    assert names == ["a.bias", "a.weight", f"{prefix}bias", f"{prefix}weight"]


class _NoCopy(nn.Linear):
    """A layer whose deep copy raises a BaseException that is no Exception."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        raise GeneratorExit("no copies")


@pytest.mark.parametrize("fold_in_torch", [True, False])
def test_a_model_whose_copy_raises_a_base_exception_is_folded_in_place(
    fold_in_torch: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The deep copy runs the model's own code: a GeneratorExit there was an internal error
    (exit 3); it is a model that cannot be copied, exported itself and folded in place as one
    with legacy hooks (where it is folded in torch at all)."""
    model = weight_norm(_NoCopy(4, 3))
    with caplog.at_level(logging.WARNING, logger="wnpass"):
        report = export(
            model, (torch.randn(2, 4),), tmp_path / "m.onnx", fold_in_torch=fold_in_torch, runs=1
        )
    assert report and report.matches and report.folded_in_place == fold_in_torch
    (said,) = [r.getMessage() for r in caplog.records if "cannot copy" in r.getMessage()]
    assert ("folded in place" in said) == fold_in_torch
    assert hasattr(model, "parametrizations") != fold_in_torch


def test_an_export_reports_json_never_replaces_the_exported_model(tmp_path: Path) -> None:
    """``ExportReport.write_json`` without a plan wrote over the model it reported on."""
    from wnpass.errors import OutputError

    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    out = tmp_path / "mlp.onnx"
    report = export(model, inputs, out, exporter="torchscript", verify=False)
    before = out.read_bytes()
    with pytest.raises(OutputError, match=r"the exported model .*which the report is about"):
        report.write_json(out)
    assert out.read_bytes() == before
    report.write_json(tmp_path / "r.json")


@pytest.mark.parametrize(
    ("given", "name"),
    [({"rtol": 1e-3}, "rtol"), ({"runs": 5}, "runs"), ({"providers": ["cpu"]}, "providers")],
)
def test_check_options_without_verify_are_refused_not_ignored(
    given: dict[str, Any], name: str, tmp_path: Path
) -> None:
    """``export(verify=False, rtol=...)`` ran without a word, where the command line and
    ``fold_checkpoint`` refuse a check option no check uses."""
    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    out = tmp_path / "mlp.onnx"
    with pytest.raises(UsageError, match=rf"^{name} goes with verify=True: no check runs"):
        export(model, inputs, out, exporter="torchscript", verify=False, **given)
    assert not out.exists()


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ({"opset": "x"}, "opset"),
        ({"opset": 20.0}, "opset"),
        ({"opset": True}, "opset"),
        ({"dynamic": ["x"]}, "dynamic"),
        ({"dynamic": {"x": {"0": "b"}}}, "dynamic"),
        ({"dynamic": {"x": {True: "b"}}}, "dynamic"),
        ({"dynamic": {"x": None}}, "dynamic"),
        ({"dynamic": {"x": {}}}, "dynamic"),  # probed unchanged as "doubled" (t84)
        ({"verify": "no"}, "verify"),
        ({"fold_in_torch": "no"}, "fold_in_torch"),
    ],
)
def test_export_refuses_arguments_of_other_types_naming_them(
    given: dict[str, Any], name: str, tmp_path: Path
) -> None:
    """``export(opset="x")`` was a TypeError deep inside, ``dynamic=["input"]`` an
    AttributeError, and ``verify="no"`` counted as true, verifying and reporting
    ``verified='no'`` (t47): each is now one error naming the parameter, nothing written."""
    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    out = tmp_path / "mlp.onnx"
    with pytest.raises(InvalidArgumentError) as caught:
        export(model, inputs, out, **given)
    assert caught.value.parameter == name
    assert not out.exists()


def test_an_export_path_named_as_another_kind_of_file_is_refused(tmp_path: Path) -> None:
    """``wnpass export mlp.py -o trained.pt`` replaced the checkpoint trained.pt with the ONNX
    model (exit 0, t105): ``path`` must end with .onnx, checked before anything runs."""
    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    (tmp_path / "trained.pt").write_bytes(b"kept")
    with pytest.raises(UsageError) as caught:
        export(model, inputs, tmp_path / "trained.pt", verify=False)
    assert caught.value.parameter == "path"
    assert str(caught.value).endswith("trained.pt: an ONNX output's name must end with .onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["trained.pt"]
    assert (tmp_path / "trained.pt").read_bytes() == b"kept"


def test_export_takes_numpy_whole_numbers_as_ints() -> None:
    """``np.int64`` is a whole number for ``opset`` and a ``dynamic`` axis, as for the check's
    options (the review: one was refused, the other passed through unconverted)."""
    from wnpass.deploy.pipeline import _require_export_arguments, _required_dynamic

    assert _require_export_arguments(True, True, np.int64(17)) == 17
    axes = _required_dynamic({"x": {np.int64(0): "batch"}})
    assert axes == {"x": {0: "batch"}} and type(next(iter(axes["x"]))) is int


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_zero_norm_unit_kept_for_the_onnx_fold_is_not_deployable(
    exporter: str, tmp_path: Path
) -> None:
    """``--keep-weight-norm`` with a unit of v all zero: the dynamo exporter computed the site
    into a plain initializer of NaN, which no fold sees, and the NaN output matched PyTorch's
    NaN: "deployable", exit 0. The values are checked in PyTorch whether it folds or not."""
    torch.manual_seed(0)
    model = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(8, 6))
    with torch.no_grad():
        model.parametrizations.weight.original1[2].zero_()
    out = tmp_path / "m.onnx"
    report = export(model, (torch.randn(3, 8),), out, exporter=exporter, fold_in_torch=False)
    assert report.torch_fold is not None
    assert [(s.name, s.status) for s in report.torch_fold.sites] == [("weight", "declined")]
    assert not report and not report.folded_whole and not report.published and not out.exists()
    assert hasattr(model, "parametrizations")  # the caller's model is left as it was


def test_a_full_disk_while_exporting_is_the_outputs_not_the_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter's write failing on a full disk (or a file size limit) read
    "model.py: torch.onnx.export failed: [Errno 28] ...", blamed on the model."""
    import errno

    from wnpass.deploy import ExportError
    from wnpass.errors import OutputError

    def full(*args: Any, **kwargs: Any) -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as error:
            raise RuntimeError("the exporter's own wrapper") from error

    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    monkeypatch.setattr(torch.onnx, "export", full)
    out = tmp_path / "mlp.onnx"
    with pytest.raises(OutputError, match=r"cannot write \(No space left on device\)$") as e:
        export(model, inputs, out, exporter="torchscript", verify=False)
    assert e.value.parameter == "output" and str(out) in str(e.value)
    assert list(tmp_path.iterdir()) == []

    def model_writes(*args: Any, **kwargs: Any) -> None:  # the model's own file, elsewhere
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "log.txt"))

    monkeypatch.setattr(torch.onnx, "export", model_writes)
    with pytest.raises(ExportError, match=r"torch.onnx.export failed"):
        export(model, inputs, out, exporter="torchscript", verify=False)


def test_a_weight_held_transposed_is_said_so(tmp_path: Path) -> None:
    """The dynamo exporter feeds MatMul a square Linear weight's transpose; named after the
    parameter, the initializer read as the weight itself (its shape shows nothing), and
    nothing said otherwise."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8)).eval()
    out = tmp_path / "m.onnx"
    report = export(model, (torch.randn(2, 3, 8),), out, verify=False)
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    weight = model.get_submodule("0").weight.detach().numpy()  # type: ignore[operator]
    assert np.array_equal(initializers["0.weight"], weight.T)  # torch 2.13's dynamo exporter
    assert report.names_transposed == ["0.weight"]


def test_a_probe_that_cannot_be_run_says_why() -> None:
    """A derived length below 0 (``s0 - 3`` probed at 2) would have reached torch.narrow and
    ended the export with an internal error; a length tied to two sizes has no one value."""
    from wnpass.deploy.resize import _runs_at

    assert _runs_at(nn.Identity(), Batch((torch.ones(1, 4),), {}), {}, {("x", 1): -1}) == (
        "a length below 0"
    )
    assert _runs_at(nn.Identity(), Batch((torch.ones(1, 4),), {}), {}, {("x", 1): None}) == (
        "its length also depends on another dynamic size"
    )


def test_a_traced_submodule_is_shared_with_the_copy_the_export_folds(tmp_path: Path) -> None:
    """The PyTorch fold works on a deep copy, and a deep copy of a traced module holds its
    parameters as plain tensors, which torch.export refuses (SpecViolationError, exit 2 from
    the CLI): a traced layer beside a weight-normed one could not be exported folded."""
    torch.manual_seed(0)
    traced = torch.jit.trace(nn.Linear(16, 16), torch.randn(2, 16))
    normed = weight_norm(nn.Linear(8, 16))
    model = nn.Sequential(normed, traced, nn.Tanh())
    x = torch.randn(3, 8)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    out = tmp_path / "m.onnx"
    export(model, (x,), out, exporter="dynamo", verify=False)
    assert sites_left(out) == 0
    (got,) = run(out, {"input": x.numpy()})  # nn.Sequential's name
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert model[1] is traced and isinstance(traced.weight, nn.Parameter)  # the caller's, as it was
    assert isinstance(normed.parametrizations, nn.ModuleDict)  # folded on the copy only


class _PadsOddLengths(nn.Module):
    """A U-Net-like block: an odd length is padded to even before a stride-2 convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.down = weight_norm(nn.Conv1d(2, 4, 4, stride=2, padding=1))
        self.up = weight_norm(nn.ConvTranspose1d(4, 2, 4, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2:
            x = torch.nn.functional.pad(x, (0, 1))
        return self.up(self.down(x))


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_branch_on_the_parity_of_a_dynamic_size_fails_the_verification(
    exporter: str, tmp_path: Path
) -> None:
    """Both exporters keep the branch the even example took (dynamo's guard
    ``x.size()[2] % 2 != 1`` is dropped from the file, TorchScript traces it away): the file
    was wrong at every odd length, and verified ("also with every dynamic axis doubled": 2n
    is even whenever n is) and published (t53). The odd probe (2n + 1) sees it."""
    out = tmp_path / "m.onnx"
    report = export(
        _PadsOddLengths(), (torch.randn(1, 2, 16),), out, exporter=exporter,
        dynamic={"x": {2: "t"}}, runs=1,
    )  # fmt: skip
    doubled, odd, *below = report.dynamic  # and those below a range torch.export gave
    assert all(probe.bound is not None for probe in below)
    assert (doubled.sizes, doubled.inputs) == ("doubled", {"x": [1, 2, 32]})
    assert all(doubled.comparisons["cpu"])
    assert (odd.sizes, odd.inputs) == ("doubled plus one", {"x": [1, 2, 33]})
    assert not all(odd.comparisons["cpu"])
    assert not report and report.matches is False and not report.published and not out.exists()


def test_what_the_report_says_failed_is_not_logged_as_a_warning_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The command line prints the report's failures as its summary: the same news logged as
    a warning came out twice, once as a raw log line, also with --quiet (t53)."""
    with caplog.at_level("INFO", logger="wnpass.deploy"):
        report = export(
            _FlatByLen(), (torch.randn(2, 4),), tmp_path / "m.onnx", exporter="torchscript",
            dynamic={"x": {0: "b"}}, runs=1,
        )  # fmt: skip
    assert report.dynamic[0].not_verified is not None
    said = [r for r in caplog.records if "the dynamic axes failed" in r.getMessage()]
    assert said and all(r.levelname == "INFO" for r in said)


class _Streaming(nn.Module):
    """A streaming causal convolution: it keeps its input's last frames in a plain attribute
    (no buffer) between calls, and starts from zeros where it has none."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(4, 4, 3))
        self.state: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev = self.state if self.state is not None else x.new_zeros(x.shape[0], x.shape[1], 2)
        x = torch.cat([prev, x], -1)
        self.state = x[..., -2:].detach()
        return self.conv(x)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("fold_in_torch", [True, False])
def test_the_file_is_the_model_as_given_whatever_wnpass_s_forwards_leave_in_it(
    exporter: str, fold_in_torch: bool, tmp_path: Path
) -> None:
    """wnpass's own forward (the model's errors before the exporter's) ran before the copy it
    exports, so the file baked in the example's last frames as the streaming state: 0.48 off
    the model's first call, published without verification (t60). The file is now the model
    as the caller gave it."""
    torch.manual_seed(0)
    model, x = _Streaming(), torch.randn(1, 4, 10)
    with torch.no_grad():
        expected = copy.deepcopy(model).eval()(x).numpy()
    out = tmp_path / "s.onnx"
    export(model, (x,), out, exporter=exporter, fold_in_torch=fold_in_torch, verify=False)
    (got,) = run(out, {"x": x.numpy()})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


class _GrownTable(nn.Module):
    """A position table registered again, longer, where an input is longer than it."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.out = nn.Linear(8, 16), nn.Linear(16, 8)
        self.pe: torch.Tensor
        self.register_buffer("pe", self.table(12))

    @staticmethod
    def table(rows: int) -> torch.Tensor:
        return torch.arange(rows * 16.0).reshape(rows, 16).sin()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.pe.shape[0]:
            self.register_buffer("pe", self.table(length))
        return self.out(torch.relu(self.inp(x) + self.pe[:length]))


def test_the_probes_of_dynamic_axes_do_not_change_the_file_they_verify(tmp_path: Path) -> None:
    """The 2n + 1 probe grew the model's table to 21 rows before the copy was exported: the
    file held a table the caller never set, the probes passed by their own side effect and it
    was published as deployable, to fail at 22 (t60). The file is now the caller's model, its
    12 rows, and the probes past them fail."""
    torch.manual_seed(0)
    model, x = _GrownTable(), torch.randn(2, 10, 8)
    report = export(
        model, (x,), tmp_path / "t.onnx", exporter="torchscript", dynamic={"x": {1: "time"}}
    )
    assert report.comparisons["cpu"] and all(report.comparisons["cpu"])  # at the example's size
    assert [probe.not_verified is not None for probe in report.dynamic] == [True, True]
    assert not report.published


def test_a_lazy_layer_takes_its_shapes_before_the_copy_is_exported(tmp_path: Path) -> None:
    """A copy taken while a layer is still lazy would draw its initial values again in the
    exporter's trace: the file would hold other weights than the caller's model has after."""
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.LazyLinear(3), nn.Tanh()), torch.randn(2, 4)
    export(model, (x,), tmp_path / "l.onnx", verify=False)
    assert not nn.modules.lazy.LazyModuleMixin.has_uninitialized_params(model[0])  # type: ignore[arg-type]
    (got,) = run(tmp_path / "l.onnx", {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-5, atol=1e-6)


class _SharedCounter(nn.Module):
    """A part a deep copy shares rather than copies, scaling by a count of its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.count: torch.Tensor
        self.register_buffer("count", torch.zeros(()))

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedCounter:
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count += 1
        return self.lin(x) * self.count


def test_a_part_the_copy_shares_is_exported_with_its_buffers_as_set(tmp_path: Path) -> None:
    """The copy shares the part, so wnpass's forward had moved its count when it was exported:
    the file scaled by 2 where the model's first call scales by 1 (t64)."""
    torch.manual_seed(0)
    shared = _SharedCounter()
    model = nn.Sequential(weight_norm(nn.Linear(4, 4)), shared)
    x = torch.randn(6, 4)
    with torch.no_grad():
        expected = shared.lin(model[0](x)).numpy()  # count 0 -> 1
    export(model, (x,), tmp_path / "m.onnx", verify=False)
    (got,) = run(tmp_path / "m.onnx", {"input": x.numpy()})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert float(shared.count) == 0


class _ActNorm(nn.Module):
    """Glow's ActNorm: initialized from the first batch it sees, behind a plain flag, through
    ``.data`` (which no version counter sees)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = weight_norm(nn.Linear(4, 4))
        self.loc, self.logs = nn.Parameter(torch.zeros(4)), nn.Parameter(torch.zeros(4))
        self.initialized = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        if not self.initialized:
            with torch.no_grad():
                self.loc.data.copy_(-h.mean(0))
                self.logs.data.copy_(-torch.log(h.std(0) + 1e-6))
            self.initialized = True
        return (h + self.loc) * torch.exp(self.logs)


def test_parameters_a_forward_writes_are_said_and_given_back(tmp_path: Path) -> None:
    """An ActNorm initialized on its first call behind a plain flag: the file holds the init
    the exporter's own run computed from the example inputs, which nothing said (t64); and
    wnpass's forwards left the caller's parameters initialized beside a flag given back. It
    is a warning now (a refusal also refused a LoRA merge and an embedding's max_norm, which
    keep nothing of the inputs: t67), and the caller's parameters come back."""
    torch.manual_seed(0)
    model = _ActNorm()
    report = export(model, (torch.randn(6, 4),), tmp_path / "m.onnx", exporter="torchscript")
    assert report and report.published
    assert report.parameters_written == report.parameters_given_back == ["loc", "logs"]
    assert model.loc.abs().sum() == 0 and model.logs.abs().sum() == 0
    assert model.initialized is False


class _MaxNorm(nn.Module):
    """An embedding whose lookups renormalize the rows they read, in place."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4, max_norm=1.0)
        self.out = weight_norm(nn.Linear(4, 3))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids))


def test_an_embedding_s_max_norm_is_exported_with_the_rows_as_given(tmp_path: Path) -> None:
    """PyTorch's own layer writes its rows as it reads them: no init to refuse (t67)."""
    torch.manual_seed(0)
    model = _MaxNorm()
    with torch.no_grad():
        model.emb.weight.mul_(5)
    rows = model.emb.weight.detach().clone()
    ids = torch.tensor([[1, 2, 3]])  # (dynamo's graph renormalizes like a site it declines)
    report = export(model, (ids,), tmp_path / "m.onnx", exporter="torchscript", runs=1)
    assert report and report.published and report.matches
    assert torch.equal(model.emb.weight, rows)


class _Conv1d(nn.Conv1d):
    """A subclass of a PyTorch layer, as ParallelWaveGAN's ``layers.Conv1d``."""


def test_legacy_weight_norm_built_and_never_run_is_copied_not_folded_in_place(
    tmp_path: Path,
) -> None:
    """The copy is taken before any forward now, and a legacy hook's weight computed as the
    hook went on is no leaf, which deepcopy refused: the caller's weight norm was folded in
    place (EnCodec's 44 g/v pairs gone, t66). The weight is computed again without grad first."""
    torch.manual_seed(0)
    model = nn.Sequential(torch.nn.utils.weight_norm(_Conv1d(2, 3, 3)))
    report = export(model, (torch.randn(1, 2, 8),), tmp_path / "m.onnx", verify=False)
    assert not report.folded_in_place and report.torch_fold is not None
    assert report.torch_fold.folded == 1
    assert {name for name, _ in model.named_parameters()} == {"0.weight_g", "0.weight_v", "0.bias"}


class _Uncopyable(nn.Sequential):
    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        raise RuntimeError("no copies")


def test_a_model_folded_in_place_computes_with_the_parameter_it_was_folded_into(
    tmp_path: Path,
) -> None:
    """Folded in place inside the block whose end gave plain attributes back, the legacy
    hook's last computed weight was bound again over the folded parameter: the forward read
    a tensor no optimizer trains (t66). A block that changes the model's parameters gives no
    attribute back."""
    torch.manual_seed(0)
    model = _Uncopyable(torch.nn.utils.weight_norm(_Conv1d(2, 3, 3)))
    x = torch.randn(1, 2, 8)
    report = export(model, (x,), tmp_path / "m.onnx", verify=False)
    assert report.folded_in_place
    conv: Any = model[0]
    assert "weight" not in vars(conv) and isinstance(conv.weight, nn.Parameter)
    with torch.no_grad():
        conv.weight.zero_()
        assert torch.equal(model(x), conv.bias[None, :, None].expand(1, 3, 6))


class _HooksOnFirstCall(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self._handle: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._handle is None:  # first call: hook its layer once
            self._handle = self.lin.register_forward_hook(lambda mod, inp, out: out + 1.0)
        return self.lin(x)


def test_a_forward_that_builds_the_model_keeps_the_attributes_that_say_so(
    tmp_path: Path,
) -> None:
    """The handle of a hook registered on the first call was given back (None) while the hook
    stayed: each forward hooked the layer again, the export did not match, and the caller's
    model added 1 once more on every call (t66)."""
    torch.manual_seed(0)
    model, x = _HooksOnFirstCall(), torch.randn(2, 4)
    report = export(model, (x,), tmp_path / "m.onnx", runs=1)
    assert report and report.matches
    assert len(model.lin._forward_hooks) == 1 and model._handle is not None


class _MyLazy(nn.LazyLinear):
    """A user's subclass of a lazy layer."""


def test_a_lazy_layer_keeps_the_shapes_its_first_forward_gave_it(tmp_path: Path) -> None:
    """The attributes a lazy layer's first forward sets (``in_features``) were given back
    (0) beside a weight of 4 x 5 (t66)."""
    torch.manual_seed(0)
    model = nn.Sequential(_MyLazy(4))
    export(model, (torch.randn(2, 5),), tmp_path / "m.onnx", verify=False)
    assert model[0].in_features == 5 and model[0].weight.shape == (4, 5)


def test_parameters_the_lazy_layers_first_forward_writes_are_said(tmp_path: Path) -> None:
    """The lazy layers' first forward wrote ActNorm's parameters before they were checked:
    the file held what the example inputs gave them, and nothing said so (t66). Written before
    the copy, they are not given back."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.LazyLinear(4), _ActNorm())
    report = export(model, (torch.randn(6, 3),), tmp_path / "m.onnx", exporter="torchscript")
    assert report.parameters_written == ["1.loc", "1.logs"]
    assert report.parameters_given_back == []


class _GrowsItsParameter(nn.Module):
    """A learned position table it makes longer, through ``.data``, for longer inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(4, 8))
        self.lin = weight_norm(nn.Linear(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.pos.shape[0]:
            extra = torch.zeros(length - self.pos.shape[0], 8)
            self.pos.data = torch.cat([self.pos.data, extra])
        return self.lin(x + self.pos[:length])


def test_a_parameter_the_probes_grow_is_given_back_at_its_shape(tmp_path: Path) -> None:
    """Given back in place at another shape, it raised (exit 3); written by the probes only,
    it was neither said nor given back, and the caller's state dict no longer loaded into a
    fresh model (t67)."""
    torch.manual_seed(0)
    model = _GrowsItsParameter()
    pos = model.pos.detach().clone()
    report = export(
        model,
        (torch.randn(1, 3, 8),),
        tmp_path / "m.onnx",
        exporter="torchscript",
        dynamic={"x": {1: "time"}},
        runs=1,
    )
    assert report.parameters_written == report.parameters_given_back == ["pos"]
    assert torch.equal(model.pos, pos)


class _InitsItsGain(nn.Module):
    """Initializes its weight norm's g on its first call from the batch, behind a plain flag
    (the paper's data-dependent init, done by the model itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = weight_norm(nn.Linear(4, 3))
        self.initialized = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.initialized:
            with torch.no_grad():
                std = self.lin(x).std(0)
                self.lin.parametrizations.weight.original0.data.div_(std[:, None])
            self.initialized = True
        return self.lin(x)


def test_parameters_given_back_after_each_forward_keep_the_model_deterministic(
    tmp_path: Path,
) -> None:
    """The flag came back after each forward, the parameters only after the last: the second
    forward initialized values already initialized, and export called the model not
    deterministic (t68)."""
    torch.manual_seed(0)
    model = _InitsItsGain()
    x = torch.randn(6, 4)  # (dynamo refuses a forward that writes a constant it lifted)
    report = export(
        model, (x,), tmp_path / "m.onnx", exporter="torchscript", fold_in_torch=False, runs=1
    )
    assert not report.not_deterministic and report.published
    assert report.parameters_written == ["lin.parametrizations.weight.original0"]


class _ActNormBesideAHook(nn.Module):
    """An ActNorm initialized on its first call beside a layer hooked on its first call."""

    def __init__(self) -> None:
        super().__init__()
        self.norm, self.tap = _ActNorm(), _HooksOnFirstCall()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tap(self.norm(x))


def test_a_forward_that_builds_the_model_keeps_its_parameters_with_its_flags(
    tmp_path: Path,
) -> None:
    """The hook made the forward a building one, so no flag came back, but the ActNorm's
    parameters did: the next forward saw an initialized flag beside parameters as given, and
    export called the model not deterministic (t69). Parameters follow the flags."""
    torch.manual_seed(0)
    model = _ActNormBesideAHook()
    report = export(model, (torch.randn(6, 4),), tmp_path / "m.onnx", exporter="torchscript")
    assert report and report.published and not report.not_deterministic
    assert report.parameters_written == ["norm.loc", "norm.logs"]
    assert report.parameters_given_back == []
    assert model.norm.initialized and model.norm.loc.abs().sum() > 0


class _ActNormFlaggedByABuffer(_ActNorm):
    """The same ActNorm, its flag a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.inited: torch.Tensor
        self.register_buffer("inited", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        if not self.inited.item():
            with torch.no_grad():
                self.loc.data.copy_(-h.mean(0))
                self.logs.data.copy_(-torch.log(h.std(0) + 1e-6))
                self.inited.add_(1)
        return (h + self.loc) * torch.exp(self.logs)


def test_a_forward_that_builds_the_model_keeps_a_buffer_flag_with_its_parameters(
    tmp_path: Path,
) -> None:
    """Buffer values came back where nothing else did: the flag said not initialized beside
    parameters initialized from the example inputs (t70)."""
    torch.manual_seed(0)
    model = nn.Sequential(_ActNormFlaggedByABuffer(), _HooksOnFirstCall())
    report = export(model, (torch.randn(6, 4),), tmp_path / "m.onnx", exporter="torchscript")
    assert report.parameters_written == ["0.loc", "0.logs"]
    assert report.parameters_given_back == []
    norm: Any = model[0]
    assert norm.inited.item() == 1 and norm.loc.abs().sum() > 0


class _NormedActivations(nn.Module):
    """Norms of activations times a learned constant, beside a weight-normed head: an
    embedding with max_norm (the rows looked up are scaled down, on every call) and ScaleNorm
    (``g * x / ||x||``)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8, max_norm=1.0)
        self.scale = nn.Parameter(torch.tensor(8**0.5))
        self.head = weight_norm(nn.Linear(8, 3))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        return self.head(self.scale * x / x.norm(dim=-1, keepdim=True).clamp(min=1e-5))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_norms_of_activations_are_no_weight_norm_sites(exporter: str, tmp_path: Path) -> None:
    """The dynamo export held a weight-norm site for each of the norms, declined, so the export
    was not deployable; only the head is weight norm."""
    torch.manual_seed(0)
    out = tmp_path / "normed.onnx"
    ids = torch.tensor([[1, 2, 3, 2]])
    report = export(_NormedActivations().eval(), (ids,), out, exporter=exporter, verify=False)
    assert report.folded_whole and report.onnx_fold.sites == []
    assert report.torch_fold is not None and report.torch_fold.folded == 1


class _SquareAndRecurrent(nn.Module):
    """A weight-normed square Linear on 3-D inputs (MatMul reads its weight transposed, which
    no shape shows) and an LSTM (ONNX reads its gates reordered)."""

    def __init__(self) -> None:
        super().__init__()
        self.square = weight_norm(nn.Linear(4, 4))
        self.lstm = nn.LSTM(4, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(torch.relu(self.square(x)))[0]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_weights_the_onnx_fold_writes_laid_out_are_said(exporter: str, tmp_path: Path) -> None:
    """With weight norm kept for the ONNX fold, the fold names the weight it writes after the
    parameter, transposed for MatMul: the export said every weight was named after its
    parameter and listed none as transposed, and the square one loads into PyTorch without an
    error, wrong (t75). An LSTM's reordered gates under the parameter's name are said too."""
    torch.manual_seed(0)
    model, out = _SquareAndRecurrent().eval(), tmp_path / "m.onnx"
    x = torch.randn(2, 3, 4)
    report = export(model, (x,), out, exporter=exporter, fold_in_torch=False, verify=False)
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    square = model.square.weight.detach().numpy()
    assert "square.weight" in report.names_transposed
    np.testing.assert_allclose(weights["square.weight"], square.T, rtol=1e-6)
    assert report.names_laid_out == []  # the exporters reorder the gates into their own names


def test_a_bidirectional_lstms_weights_held_together_are_said(tmp_path: Path) -> None:
    """The dynamo exporter concatenates the two directions' reordered gates (its optimizer
    computes them itself below about a thousand elements, under names of its own); the fold
    writes each pair into one initializer named after both, which the export reported as
    four weights with no initializer (t78). Each is read back from it: the forward
    direction's gates, reordered from PyTorch's i, f, g, o to ONNX's i, o, f, c, first."""
    torch.manual_seed(0)
    model = nn.LSTM(64, 48, batch_first=True, bidirectional=True).eval()
    out = tmp_path / "m.onnx"
    report = export(model, (torch.randn(2, 5, 64),), out, verify=False)
    assert report.names_held_together == {
        "weight_ih_l0+weight_ih_l0_reverse": ["weight_ih_l0", "weight_ih_l0_reverse"],
        "weight_hh_l0+weight_hh_l0_reverse": ["weight_hh_l0", "weight_hh_l0_reverse"],
    }
    assert not [n for n in report.names_missing if n.startswith("weight_")]
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    held = weights["weight_ih_l0+weight_ih_l0_reverse"]
    i, f, g, o = np.split(model.state_dict()["weight_ih_l0"].numpy(), 4)
    np.testing.assert_array_equal(held[0], np.concatenate([i, o, f, g]))


class _Halves(nn.Module):
    """Half of each of two weights, concatenated into one."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(256, 256), nn.Linear(256, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ torch.cat([self.a.weight[:128], self.b.weight[:128]]).T


def test_weights_held_in_part_are_not_said_held_together(tmp_path: Path) -> None:
    """``a.weight+b.weight`` holds half of each: they were said held in it (t82). (Below
    about a thousand elements the exporter computes the Concat itself: no cone.)"""
    report = export(_Halves(), (torch.randn(2, 256),), tmp_path / "m.onnx", verify=False)
    (cone,) = report.onnx_fold.cones
    assert cone.sources == ["a.weight", "b.weight"] and cone.status == "folded"
    assert report.names_held_together == {}
    assert {"a.weight", "b.weight"} <= set(report.names_missing)


def test_a_cone_folded_under_a_weights_name_is_said_laid_out() -> None:
    """The dynamo exporter without its optimizer reorders an LSTM's gates by Slice/Concat, a
    cone the fold writes under the parameter's name: laid out, not transposed; a Reshape
    alone moves no element."""
    from wnpass.deploy.names import _folded_layouts, _Weights
    from wnpass.report import ConeReport, FoldReport

    def cone(name: str, ops: list[str]) -> ConeReport:
        return ConeReport(name, "main", ["LSTM"], None, None, ops, [name], "folded")

    fold = FoldReport(sites=[], cones=[
        cone("lstm.weight_ih_l0", ["Slice", "Concat", "Unsqueeze"]),
        cone("fc.weight", ["Transpose"]),
        cone("conv.weight", ["Reshape"]),
        cone("lstm.bias_ih_l0+bias_hh_l0", ["Concat"]),
    ])  # fmt: skip
    weights = _Weights(
        {n: torch.zeros(8, 4) for n in ("lstm.weight_ih_l0", "fc.weight", "conv.weight")}, {}
    )
    assert _folded_layouts(fold, weights) == (["fc.weight"], ["lstm.weight_ih_l0"], {})


def test_a_probe_whose_every_output_is_nan_in_both_verifies_no_axis() -> None:
    """A probe whose outputs were NaN alike in both compared nothing, yet its axes were said
    verified at another length ("deployable ..., also with every dynamic axis doubled", and
    ``compared_at_example_only`` empty, t100)."""
    from wnpass.deploy import DynamicProbe, ExportReport
    from wnpass.report import FoldReport
    from wnpass.verify.compare import compare_outputs

    nan = np.full(3, np.nan, np.float32)
    vacuous = compare_outputs(["y"], [nan], ["y"], [nan.copy()])
    matched = compare_outputs(["y"], [np.ones(3, np.float32)], ["y"], [np.ones(3, np.float32)])
    report = ExportReport("m.onnx", "dynamo", None, FoldReport())
    report.dynamic_axes = ["axis 0 of x", "axis 1 of x"]
    report.dynamic = [
        DynamicProbe("doubled", comparisons={"cpu": vacuous}, resized=["axis 0 of x"]),
        DynamicProbe("doubled", comparisons={"cpu": matched}, resized=["axis 1 of x"]),
    ]
    assert [p.compared for p in report.dynamic] == [False, True]
    assert report.compared_at_example_only == ["axis 0 of x"]


class _Hyperbolic(nn.Module):
    """``acosh`` of points that must stay at 1 or above, then a max over them."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = weight_norm(nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.acosh(x).amax(1))


def test_added_copies_stay_in_the_inputs_domain_where_scaled_ones_leave_it(
    tmp_path: Path,
) -> None:
    """The added copies scaled towards 0 put points below 1, where ``acosh`` is NaN, and the
    runtimes place a max's NaN differently: a file right at every size was refused (t100).
    Where PyTorch gives NaN or Inf there, the copies are the midpoints of the example's
    points, which stay at 1 or above, and the file is compared and published."""
    out = tmp_path / "m.onnx"
    x = 1 + torch.rand(2, 6, 4, generator=torch.Generator().manual_seed(1)) * 0.1
    report = export(_Hyperbolic(), (x,), out, dynamic={"x": {1: "points"}}, runs=1)
    probes = [p for p in report.dynamic if p.bound is None]
    assert probes and all(p.compared and all(p.comparisons["cpu"]) for p in probes)
    assert report.matches is True and out.exists()
