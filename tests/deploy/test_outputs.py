"""Values between PyTorch and ONNX Runtime: a number and a complex output compared as the graph
outputs they become, outputs that cannot be paired, bfloat16, an opset whose graph lists its
weights as inputs, and whether two PyTorch runs gave the same."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from tests.deploy.helpers import unused_first
from wnpass.deploy import export
from wnpass.errors import InvalidArgumentError


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


class _Returns(nn.Module):
    """Computes a layer's output and returns what it is given: nothing of it."""

    def __init__(self, returned: object) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(4, 4))
        self.returned = returned

    def forward(self, x: torch.Tensor) -> object:
        self.fc(x)
        return self.returned


@pytest.mark.parametrize(
    ("returned", "said"),
    [(None, "None"), ((), "a tuple holding no tensor"), ({"a": "b"}, "a dict holding no tensor")],
    ids=["None", "empty tuple", "dict of a string"],
)
@pytest.mark.parametrize("verify", [False, True])
def test_a_forward_that_returns_no_tensor_is_refused(
    returned: object, said: str, verify: bool, tmp_path: Path
) -> None:
    """The exporters made a graph of no outputs, written with exit 0, or, verified, an ONNX
    Runtime load error blamed on the exporter (t110): refused before anything is exported."""
    with pytest.raises(InvalidArgumentError) as caught:
        export(_Returns(returned), (torch.randn(3, 4),), tmp_path / "m.onnx", verify=verify)
    assert str(caught.value) == (
        f"the model's forward returns {said}: an exported graph would have no output"
    )
    assert list(tmp_path.iterdir()) == []


@dataclasses.dataclass
class _Out:
    hidden: torch.Tensor
    logits: torch.Tensor


def test_a_forward_that_returns_an_object_the_exporters_cannot_take_apart_says_so(
    tmp_path: Path,
) -> None:
    """t164: a dataclass of two tensors was refused as "a _Out holding no tensor", which sent
    the user looking for the wrong problem: it is an object the exporters cannot take apart."""
    x = torch.randn(3, 4)
    with pytest.raises(InvalidArgumentError, match="a _Out, an object the exporters cannot"):
        export(_Returns(_Out(x, x)), (x,), tmp_path / "m.onnx", verify=False)
    assert list(tmp_path.iterdir()) == []


def test_a_sparse_example_input_is_said_to_be_sparse(tmp_path: Path) -> None:
    """Verifying with a sparse example input said "no float32 arrays" (t110)."""
    model = nn.Sequential(weight_norm(nn.Linear(4, 4)))
    x = torch.randn(3, 4).to_sparse()
    with pytest.raises(InvalidArgumentError) as caught:
        export(model, (x,), tmp_path / "m.onnx", exporter="torchscript")
    assert str(caught.value) == (
        "cannot verify: a sparse_coo tensor, which ONNX Runtime neither takes nor gives "
        "(give dense tensors: .to_dense())"
    )
    assert list(tmp_path.iterdir()) == []


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
        deploy.expected_outputs(graph, [np.zeros((2, 3), np.float32)])


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
    (made, _) = deploy.expected_outputs(graph, deploy.forward_outputs(model(x)))
    assert made.tobytes() == expected.tobytes() and made.dtype == expected.dtype


class _OfComplex(nn.Module):
    """A complex input (a spectrum in, as an inverse-STFT vocoder takes one)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = weight_norm(nn.Linear(4, 3))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z.real) + self.fc(z.imag)


def test_a_complex_input_is_fed_as_the_real_pairs_the_exporter_declares(tmp_path: Path) -> None:
    """t164: the dynamo exporter declares a complex64 [2, 4] input as float [2, 4, 2]; fed the
    complex array, ONNX Runtime failed to run it and a correct file was called not
    deployable (exit 1). It is fed as ``torch.view_as_real`` gives it."""
    torch.manual_seed(0)
    z = torch.randn(2, 4, dtype=torch.complex64)
    report = export(_OfComplex(), (z,), tmp_path / "m.onnx", runs=1)
    assert report.matches and report.published, report.to_dict()


def test_an_opset_whose_graph_lists_its_weights_as_inputs_is_verified(tmp_path: Path) -> None:
    """Below IR version 4 (the TorchScript exporter's opsets 7 and 8) every initializer is
    also a graph input: those are weights, not inputs to feed, and verification goes on (it
    was refused: "takes an input 'fc.bias' that is none of the inputs named after forward's
    parameters", exit 2)."""
    model, inputs = unused_first()
    out = tmp_path / "m.onnx"
    report = export(model, inputs, out, exporter="torchscript", opset=7, runs=1)
    assert report.matches is True and report.published, report.to_dict()
    proto = onnx.load(out)
    assert proto.ir_version == 3 and "fc.bias" in [i.name for i in proto.graph.input]


def test_two_runs_are_the_same_only_bit_for_bit() -> None:
    """An output is the same in two PyTorch runs when its every bit is (NaN where the other
    has NaN too); a difference of one ulp, or of a number's type, is a change."""
    from wnpass.deploy.outputs import changed_outputs

    a = np.array([1.0, np.nan], np.float32)
    assert changed_outputs([a, 3, float("nan")], [a.copy(), 3, float("nan")]) == []
    ulp = np.nextafter(a, np.float32(2.0))
    assert changed_outputs([a, 3, 1.0], [ulp, 3.0, 1.0]) == [0, 1]
    assert changed_outputs([a], [a, a]) == [0]
