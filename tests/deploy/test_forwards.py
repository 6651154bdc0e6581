"""The caller's model across wnpass's forwards: the file is the model as given, whatever those
forwards write, and the model comes back as it came (buffers, plain attributes, parameters
and training flags), also where it cannot be copied, has lazy layers, or builds itself on its
first call."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from tests.deploy.helpers import unused_first
from tests.helpers import run, sites_left
from wnpass.deploy import ModelRunError, export


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


@pytest.mark.parametrize("fails", [False, True], ids=["exported", "forward-raised"])
def test_every_submodule_keeps_its_training_flag(tmp_path: Path, fails: bool) -> None:
    """The pipeline runs the model in eval mode, then gives each submodule its own flag back
    (the root training, its dropout not: ``train(True)`` would not restore that), also when
    the model raises."""
    model, inputs = unused_first()
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
