"""The model's inputs as the exporters see them: which arguments become graph inputs, named
after forward's parameters and fed by name (positional, keyword, defaults, numbers, dicts,
tuples, ``*args``); the dynamic axes asked for, checked against them before and after the
export; and a forward that changes its input in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from tests.deploy.helpers import unused_first
from tests.helpers import run
from wnpass.deploy import ExportError, export
from wnpass.errors import InvalidArgumentError
from wnpass.fx.forward import Batch
from wnpass.verify.options import DEFAULT_RUNS


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


@pytest.mark.parametrize("scale", [(3,), ()], ids=["given", "default"])
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_inputs_are_fed_by_name(exporter: str, scale: tuple[int, ...], tmp_path: Path) -> None:
    """The TorchScript exporter drops the unused first input and takes a Python int, given
    or the parameter's default, as a scalar input; each graph input gets the example input
    of its name."""
    model, inputs = unused_first()
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


def graph_arguments(path: Path) -> list[tuple[str, str]]:
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
        assert graph_arguments(out) == [("x", "FLOAT")]
        return
    assert graph_arguments(out) == [("x", "FLOAT"), ("scale", "DOUBLE")]
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
    names = [name for name, _ in graph_arguments(out)]
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
    assert alone.matches is True and graph_arguments(tmp_path / "k.onnx") == [("x", "FLOAT")]


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


@pytest.mark.parametrize(
    ("dynamic", "message"),
    [
        ({"x": {2: "b"}}, r"dynamic x: axis 2 is outside its 2 dimensions \(shape \[2, 8\]\)"),
        ({"scale": {0: "b"}}, r"dynamic scale: its example input is not a tensor \(int\)"),
        ({"y": {0: "b"}}, "dynamic y: the model's inputs are mask, x, scale"),
        # a name with a space, quoted to be seen (t225: "input : the model's inputs are input")
        ({"x ": {0: "b"}}, "dynamic 'x ': the model's inputs are mask, x, scale"),
    ],
)
def test_dynamic_axes_must_fit_the_inputs(
    dynamic: dict[str, dict[int, str]], message: str, tmp_path: Path
) -> None:
    model, inputs = unused_first()
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
    from wnpass.deploy.inputs import check_dynamic_made

    model = ir.serde.deserialize_model(
        onnx.parser.parse_model(
            '<ir_version: 8, opset_import: ["" : 18]> g (float[2, 4] x) => (float[2, 4] y) '
            "{ y = Relu(x) }"
        )
    )
    with pytest.raises(ExportError, match=r"did not make axis 0 of x dynamic \(fixed at 2\)"):
        check_dynamic_made(model, {"x": {0: "batch"}}, "dynamo")
    check_dynamic_made(model, None, "dynamo")


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
