"""Real exports from both torch exporters fold to plain weights with the same outputs."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations, parametrize

from tests.helpers import assert_close, run, sites_left
from wnpass import fold_onnx, inspect_onnx


def _wn(module: nn.Module, name: str = "weight", dim: int | None = 0) -> nn.Module:
    return parametrizations.weight_norm(module, name=name, dim=dim)  # type: ignore[arg-type]


def _legacy(module: nn.Module, dim: int | None = 0) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(module, dim=dim)  # type: ignore[arg-type]


class Recurrent(nn.Module):
    """An RNN, GRU or LSTM with its input and hidden weights weight-normed."""

    def __init__(self, kind: type[nn.LSTM] | type[nn.GRU] | type[nn.RNN] = nn.LSTM) -> None:
        super().__init__()
        self.rnn = kind(64, 96, batch_first=True)
        for name in ("weight_ih_l0", "weight_hh_l0"):
            _wn(self.rnn, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class PosConv(nn.Module):
    """wav2vec2's positional convolution: weight norm along dim 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = _wn(nn.Conv1d(64, 64, 16, padding=8, groups=4), dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)[..., :-1]


# name -> (build, example input, parameter names the folded model must carry)
CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor], list[str]]] = {
    "linear": (
        lambda: nn.Sequential(_wn(nn.Linear(128, 160))),
        lambda: torch.randn(2, 128),
        ["0.weight"],
    ),
    "linear_legacy_dim_none": (
        lambda: nn.Sequential(_legacy(nn.Linear(128, 160), dim=None)),
        lambda: torch.randn(2, 128),
        ["0.weight"],
    ),
    "conv1d": (
        lambda: nn.Sequential(_wn(nn.Conv1d(32, 64, 7))),
        lambda: torch.randn(1, 32, 40),
        ["0.weight"],
    ),
    "conv2d_legacy": (
        lambda: nn.Sequential(_legacy(nn.Conv2d(16, 32, 5))),
        lambda: torch.randn(1, 16, 12, 12),
        ["0.weight"],
    ),
    "convtranspose1d_dim0": (
        lambda: nn.Sequential(_wn(nn.ConvTranspose1d(128, 96, 8, stride=4))),
        lambda: torch.randn(1, 128, 10),
        ["0.weight"],
    ),
    "convtranspose1d_dim1": (
        lambda: nn.Sequential(_wn(nn.ConvTranspose1d(128, 96, 8, stride=4), dim=1)),
        lambda: torch.randn(1, 128, 10),
        ["0.weight"],
    ),
    "wav2vec2_posconv_dim2": (PosConv, lambda: torch.randn(1, 64, 30), ["conv.weight"]),
    "lstm": (Recurrent, lambda: torch.randn(1, 5, 64), ["rnn.weight_ih_l0", "rnn.weight_hh_l0"]),
    "gru": (
        lambda: Recurrent(nn.GRU),
        lambda: torch.randn(1, 5, 64),
        ["rnn.weight_ih_l0", "rnn.weight_hh_l0"],
    ),
    "rnn": (
        lambda: Recurrent(nn.RNN),
        lambda: torch.randn(1, 5, 64),
        ["rnn.weight_ih_l0", "rnn.weight_hh_l0"],
    ),
    "embedding": (
        lambda: nn.Sequential(_wn(nn.Embedding(200, 64))),
        lambda: torch.tensor([[1, 5, 199, 5]]),
        ["0.weight"],
    ),
}


@pytest.fixture(scope="module", params=["torchscript", "dynamo"])
def exporter(request: pytest.FixtureRequest) -> str:
    return request.param


def export(name: str, exporter: str, folder: Path) -> tuple[Path, dict[str, np.ndarray]]:
    build, example, _ = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    x = example()
    path = folder / f"{name}.{exporter}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, dynamo=exporter == "dynamo", verbose=False)
    input_name = onnx.load(path, load_external_data=False).graph.input[0].name
    return path, {input_name: x.numpy()}


@pytest.mark.parametrize("name", CASES)
def test_export_folds_to_plain_weights(name: str, exporter: str, tmp_path: Path) -> None:
    path, feeds = export(name, exporter, tmp_path)
    before = sites_left(path)
    assert before > 0, "the export should still compute weight norm at run time"
    out = tmp_path / "folded.onnx"
    _, report = fold_onnx(path, out)
    assert report.folded == before and report.declined == 0
    assert sites_left(out) == 0
    assert inspect_onnx(out).computed_weights == []  # LSTM gate reordering folded too
    onnx.checker.check_model(out, full_check=True)
    assert_close(run(out, feeds), run(path, feeds))
    names = {i.name for i in onnx.load(out).graph.initializer}
    expected = [n for n in CASES[name][2] if any(s.name == n for s in report.sites)]
    assert expected and set(expected) <= names


def test_quantize_dynamic_fails_before_folding_and_works_after(tmp_path: Path) -> None:
    """ONNX Runtime's quantizer needs initializer weights: folding is what makes it work."""
    from onnxruntime.quantization import quantize_dynamic

    path, feeds = export("conv1d", "torchscript", tmp_path)
    with pytest.raises(ValueError, match="to be an initializer"):
        quantize_dynamic(path, tmp_path / "q_unfolded.onnx")
    folded = tmp_path / "folded.onnx"
    fold_onnx(path, folded)
    quantize_dynamic(folded, tmp_path / "q.onnx")
    quantized = onnx.load(tmp_path / "q.onnx")
    assert "ConvInteger" in {n.op_type for n in quantized.graph.node}
    (expected,), (actual,) = run(path, feeds), run(tmp_path / "q.onnx", feeds)
    # int8 weights and activations: errors of a few percent of the output range, not of order 1.
    assert np.abs(actual - expected).max() < 0.05 * np.abs(expected).max()


class CosineClassifier(nn.Module):
    """Cosine similarity against normalized class weights (no gain): F.normalize of a weight
    (a gain-less site) and of the activations (not a site)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(10, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


def test_cosine_classifier_folds_its_gainless_weight(exporter: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "cosine.onnx"
    x = torch.randn(3, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(CosineClassifier().eval(), (x,), path, dynamo=exporter == "dynamo")
    feeds = {onnx.load(path).graph.input[0].name: x.numpy()}
    before = inspect_onnx(path)
    if exporter == "torchscript":  # the dynamo exporter folds this small site itself
        assert [s.form.split()[0] for s in before.sites] == ["gain-less"]
    out = tmp_path / "folded.onnx"
    _, report = fold_onnx(path, out)
    assert report.declined == 0 and sites_left(out) == 0
    assert inspect_onnx(out).computed_weights == []
    assert_close(run(out, feeds), run(path, feeds))


@pytest.mark.parametrize(
    ("opset", "as_function"), [(13, False), (17, False), (15, True), (17, True)]
)  # local functions from opset 15
def test_a_normalized_weight_below_opset_18_folds_bit_for_bit(
    opset: int, as_function: bool, tmp_path: Path
) -> None:
    """Below opset 18 the TorchScript exporter's constant folding computes the norm and leaves
    ``W / Expand(Clip(||W||))`` (a weight computed at run time, declined as computed by Div
    before): folded into one initializer named after the parameter, which ONNX Runtime's own
    weight equals bit for bit, and nothing is left to fold. Exported as a local function
    (``export_modules_as_functions``), W, its norm and the Expand's shape are the function's
    inputs: the function was not inlined (Div is no layout op), nothing was reported, and
    ``inspect --strict`` passed a model normalizing its weight on every call."""
    torch.manual_seed(0)
    path, out = tmp_path / "cosine.onnx", tmp_path / "folded.onnx"
    x = torch.randn(3, 64)
    functions = {CosineClassifier} if as_function else False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            CosineClassifier().eval(), (x,), path, dynamo=False, opset_version=opset,
            export_modules_as_functions=functions,
        )  # fmt: skip
    exported = onnx.load(path)
    assert len(exported.functions) == as_function
    feeds = {exported.graph.input[0].name: x.numpy()}
    (computed,) = inspect_onnx(path).cones
    assert (computed.name, computed.status) == ("weight.folded", "foldable")
    _, report = fold_onnx(path, out)
    (cone,) = report.cones
    assert (cone.name, cone.status) == ("weight.folded", "folded")
    assert "Div" in cone.ops and report.declined == 0
    assert len(report.inlined) == as_function
    assert inspect_onnx(out).computed_weights == [] and not onnx.load(out).functions
    assert [a.tobytes() for a in run(out, feeds)] == [a.tobytes() for a in run(path, feeds)]


class _HandWritten(nn.Module):
    """Weight norm written out in the forward, ``g * v / ||v||``: TorchScript's constant
    folding computes ``g * v`` into one initializer."""

    def __init__(self) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.randn(8, 4, 3))
        self.g = nn.Parameter(torch.rand(8, 1, 1) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.g * self.v / self.v.norm(dim=(1, 2), keepdim=True))


class _ScaledDirection(nn.Module):
    """A weight's direction times the input (``x * F.normalize(W)``) and ScaleNorm of the
    input read at its first token: one gain-less site, and norms of activations."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(16))
        self.g = nn.Parameter(torch.tensor(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x * F.normalize(self.w, dim=0)
        h = self.g * h / h.norm(dim=-1, keepdim=True)
        return h[:, 0]


@pytest.mark.parametrize("module", [_HandWritten, _ScaledDirection])
def test_hand_written_forms_fold_whole(
    module: type[nn.Module], exporter: str, tmp_path: Path
) -> None:
    """t72: each left a declined site, so export called the model not deployable."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16) if module is _HandWritten else torch.randn(2, 5, 16)
    path, out = tmp_path / "m.onnx", tmp_path / "folded.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module().eval(), (x,), path, dynamo=exporter == "dynamo")
    feeds = {onnx.load(path).graph.input[0].name: x.numpy()}
    _, report = fold_onnx(path, out)
    assert report.declined == 0 and sites_left(out) == 0
    assert inspect_onnx(out).computed_weights == []
    assert_close(run(out, feeds), run(path, feeds))


class _Halved(nn.Module):
    """A custom parametrization of exact arithmetic: the weight is ``W * 0.5``."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * 0.5


def _halved_linear() -> nn.Module:
    layer = nn.Linear(8, 4)
    parametrize.register_parametrization(layer, "weight", _Halved())
    return nn.Sequential(layer)


class _Recurrent(nn.Module):
    """A GRU whose recurrent weight is weight-normed (legacy hook), its output alone."""

    def __init__(self) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.gru = nn.utils.weight_norm(nn.GRU(8, 4, batch_first=True), "weight_hh_l0")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


@pytest.mark.parametrize(
    ("build", "functions", "shape", "constant_folding"),
    [
        (lambda: nn.Sequential(_legacy(nn.Linear(8, 4))), {nn.Linear}, (2, 5, 8), False),
        (_halved_linear, True, (3, 8), False),
        (_Recurrent, True, (2, 3, 8), True),
    ],
    ids=["site-product-into-a-function", "function-output-into-a-layer", "gru-every-module"],
)
def test_a_weight_whose_cone_crosses_a_call_is_folded(
    build: Callable[[], nn.Module],
    functions: Any,
    shape: tuple[int, ...],
    constant_folding: bool,
    tmp_path: Path,
) -> None:
    """Exported with modules as functions, a weight computed in one scope and read by a
    layer in another: legacy weight norm's product passed into the ``Linear`` function, which
    transposes it for its ``MatMul`` (one fold left the ``Transpose``, a second changed the
    file), and a parametrization's function whose output the caller's ``Gemm`` reads
    (``inspect --strict`` passed it, nothing folded), t263; a weight-normed GRU with every
    module a function: its gates reordered in the GRU's function from the product its
    caller computes (one fold left them, t264)."""
    torch.manual_seed(0)
    path, out = tmp_path / "m.onnx", tmp_path / "folded.onnx"
    x = torch.randn(*shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            build().eval(), (x,), path, dynamo=False, opset_version=18,
            export_modules_as_functions=functions, do_constant_folding=constant_folding,
        )  # fmt: skip
    assert onnx.load(path).functions
    assert inspect_onnx(path).remaining >= 1
    _, report = fold_onnx(path, out)
    assert report.inlined and inspect_onnx(out).remaining == 0
    assert fold_onnx(out)[1].nodes_after == report.nodes_after  # a second fold changes nothing
    feeds = {onnx.load(path).graph.input[0].name: x.numpy()}
    assert_close(run(out, feeds), run(path, feeds))


def test_a_model_quantized_to_qdq_before_folding_has_each_site_declined_by_name(
    exporter: str, tmp_path: Path
) -> None:
    """ONNX Runtime's static quantizer, run before folding, puts QuantizeLinear/
    DequantizeLinear between the steps of ``g * v / ||v||`` (``g / ||v||`` quantized before v
    multiplies it, or ``v / ||v||`` before g does): every site was missed, "no weight-norm
    sites", while the norms ran on every inference (t306). Each is now found, declined for the
    step quantized, named as its PyTorch parameter and shown with the layer that reads it;
    the fold leaves the model as it is."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    path, feeds = export("conv1d", exporter, tmp_path)
    (name, x), rng = next(iter(feeds.items())), np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{name: rng.standard_normal(x.shape, np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    quantized = tmp_path / "qdq.onnx"
    quantize_static(path, quantized, Reader(), quant_format=QuantFormat.QDQ)
    (site,) = inspect_onnx(quantized).sites
    assert site.status == "declined" and site.name == "0.weight" and site.consumers == ["Conv"]
    assert site.reason is not None and site.reason.startswith("QuantizeLinear quantizes '")
    assert site.reason.endswith("a step of its computation; fold before quantizing")
    out = tmp_path / "folded.onnx"
    _, report = fold_onnx(quantized, out)
    assert [s.status for s in report.sites] == ["declined"] and report.folded == 0
    np.testing.assert_array_equal(run(out, feeds)[0], run(quantized, feeds)[0])
