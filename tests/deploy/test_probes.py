"""PyTorch at other sizes than the example's, with dynamic axes: the doubled and doubled plus
one probes, each axis resized alone where resizing them all fails PyTorch, and one shorter;
what the report says where PyTorch cannot run there, or the file takes the wrong branch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from tests.deploy.helpers import ROOT
from tests.helpers import run
from wnpass.deploy import export
from wnpass.errors import InvalidArgumentError
from wnpass.fx.forward import Batch
from wnpass.fx.loading import load_model_py


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


class _AtMostThree(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 3:
            raise ValueError("at most 3 rows")
        return self.fc(x)


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
