"""The sizes torch.export holds a dynamic axis to, and the conditions it takes on them: read
from the exported program and tried in PyTorch just outside them; refused unless accepted
where PyTorch runs there, compared there where verified, and said in the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from wnpass.deploy import ExportError, export
from wnpass.fx.forward import Batch


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

    from wnpass.deploy.ranges import Range, check_ranges

    t = sympy.Symbol("t", integer=True)
    model, x = _Lengths(), torch.randn(2, 4, 5)
    said, outside = check_ranges(
        model, Batch((x,), {}), {"x": x}, [Range("x", 2, t, 1, None, t)], [], True, False
    )
    assert (said, outside, model.seen) == ([], [], [])
    # from 3 up, it runs at 2 and is refused: the same check, one size up
    with pytest.raises(ExportError, match=r"sizes from 3 up only, and PyTorch runs at 2"):
        check_ranges(
            model, Batch((x,), {}), {"x": x}, [Range("x", 2, t, 3, None, t)], [], True, False
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
    from wnpass.deploy.ranges import Range, check_ranges

    t, u = sympy.Symbol("t", integer=True), sympy.Symbol("u", integer=True)
    model, x, c = _NeedsTwice(), torch.randn(1, 4, 16), torch.randn(1, 4, 32)
    shorter = Condition(str(t), "n <= 32", False, (17, 18), lambda n: n <= 16,
                        lambda sizes: sizes.get(str(t), 16) <= sizes.get(str(u), 32))  # fmt: skip
    ranges = [Range("x", 2, t, 1, None, t), Range("c", 2, u, 1, None, u)]
    said, beyond = check_ranges(
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
    from wnpass.deploy.ranges import Range, check_ranges

    t = sympy.Symbol("t", integer=True)
    model, x = _Lengths(), torch.randn(2, 4, 16)

    def condition(failing: tuple[int, ...]) -> Condition:
        return Condition(str(t), f"n in {failing}", True, failing, lambda n: n not in failing,
                         lambda sizes: sizes.get(str(t), 16) not in failing)  # fmt: skip

    said, beyond = check_ranges(
        model, Batch((x,), {}), {"x": x}, [Range("x", 2, t, 1, None, t)],
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

    from wnpass.deploy.ranges import Range, _companions, _run_at

    t, u = sympy.Symbol("t", integer=True), sympy.Symbol("u", integer=True)
    model, x, mask = _Fails(), torch.randn(1, 4, 16), torch.randn(1, 4, 1)
    axes, others = [Range("x", 2, t, 1, 16, t)], [Range("mask", 2, u, 1, None, u)]
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
