"""The deployment pipeline on every example model: both exporters, folding in PyTorch first
or not; the ONNX output has no weight-norm site left, matches PyTorch, and names its weights
after the PyTorch parameters. Also ``export``'s arguments, checked before anything runs or is
written, and what it publishes, removes and leaves open."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from tests.deploy.helpers import ROOT, unused_first
from tests.helpers import sites_left
from wnpass.deploy import ModelRunError, export
from wnpass.errors import InvalidArgumentError, UsageError, WnpassError
from wnpass.fx.loading import load_model_py

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


def test_a_failed_verification_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When ONNX Runtime's outputs differ from PyTorch's (here: PyTorch's are shifted), the
    staged model is checked, found different, and never appears under the output's name."""
    export_module = importlib.import_module("wnpass.deploy.pipeline")

    real = export_module.expected_outputs
    monkeypatch.setattr(
        export_module,
        "expected_outputs",
        lambda graph, outputs: [a + 1.0 for a in real(graph, outputs)],
    )
    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    out = tmp_path / "mlp.onnx"
    report = export(model, inputs, out, exporter="torchscript", runs=1)
    assert not report and not report.matches and report.published is False
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.setattr(export_module, "expected_outputs", real)
    report = export(model, inputs, out, exporter="torchscript", runs=1)
    assert report and report.published and out.exists()


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


@pytest.mark.parametrize("where", ["model", "inputs"])
def test_meta_tensors_are_refused(where: str, tmp_path: Path) -> None:
    model, inputs = unused_first()
    if where == "model":
        model = model.to("meta")
    else:
        inputs = tuple(t.to("meta") for t in inputs)
    with pytest.raises(InvalidArgumentError, match="on the meta device, which hold"):
        export(model, inputs, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


class _Exits(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise SystemExit(0)


def test_a_sys_exit_in_forward_is_the_models_error(tmp_path: Path) -> None:
    """``sys.exit()`` in the forward is the model's error (exit 2), nothing is written."""
    with pytest.raises(ModelRunError, match=r"called sys\.exit\(0\)"):
        export(_Exits(2, 2), (torch.ones(1, 2),), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


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
    model, inputs = unused_first()
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

    model, inputs = unused_first()
    before = _inotify_instances()
    with pytest.raises(WnpassError) as kept:  # the model's own error, after the plan was made
        export(Fails(), inputs, tmp_path / "m.onnx")
    assert "RuntimeError: no" in str(kept.value) and _inotify_instances() == before
    export(model, inputs, tmp_path / "m.onnx", exporter="torchscript", verify=False)
    assert _inotify_instances() == before


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
    ("given", "said"),
    [
        ({}, "goes with dynamic axes: with none given"),
        ({"exporter": "torchscript", "dynamic": {"x": {0: "n"}}}, "goes with the dynamo exporter"),
    ],
)
def test_accept_ranges_where_no_range_can_be_accepted_is_refused_not_ignored(
    given: dict[str, Any], said: str, tmp_path: Path
) -> None:
    """``accept_ranges=True`` with no dynamic axis, or with the TorchScript exporter (which
    holds no axis to a range), exported without a word (t124): a user who gives it may
    believe a range was accepted."""
    model, inputs = load_model_py(ROOT / "models" / "mlp.py")
    assert inputs is not None
    out = tmp_path / "mlp.onnx"
    with pytest.raises(UsageError, match=rf"^accept_ranges {said}"):
        export(model, inputs, out, accept_ranges=True, verify=False, **given)
    assert list(tmp_path.iterdir()) == []


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


@pytest.mark.parametrize("model", [lambda t: t * 2, None, "mlp.py", torch.relu])
def test_export_of_what_is_no_module_names_the_model(model: Any, tmp_path: Path) -> None:
    """A function given as the model was an AttributeError from the inputs' analysis
    (``'function' object has no attribute 'forward'``, t138)."""
    out = tmp_path / "m.onnx"
    with pytest.raises(InvalidArgumentError) as caught:
        export(model, (torch.randn(2, 4),), out)
    assert caught.value.parameter == "model" and not out.exists()
    assert str(caught.value) == f"model must be a torch.nn.Module, not {type(model).__name__}"


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


class _MaxNorm(nn.Module):
    """A max-norm constraint, ``v * min(g / ||v||, 1)``: a weight computed from constants, no
    weight norm."""

    def __init__(self) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.randn(8, 4) * 0.01)
        self.g = nn.Parameter(torch.rand(8, 1) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.v.norm(dim=1, keepdim=True)
        return nn.functional.linear(x, self.v * (self.g / norm).clamp(max=1.0))


def test_a_max_norm_constraint_is_no_declined_weight_norm_site(tmp_path: Path) -> None:
    """TorchScript's export of it held a weight-norm site, declined ("the normalised tensor
    is not v itself"), and the export was NOT DEPLOYABLE though ONNX Runtime matched (t138;
    the dynamo exporter computes it into an initializer). It is a weight computed from
    constants, left as it is, named as the graph names the value its MatMul reads."""
    torch.manual_seed(0)
    out = tmp_path / "maxnorm.onnx"
    report = export(_MaxNorm().eval(), (torch.randn(2, 4),), out, exporter="torchscript")
    assert report and report.published and report.onnx_fold.sites == []
    (cone,) = report.onnx_fold.cones
    assert cone.status == "declined" and "computed by ReduceL2" in (cone.reason or "")
    held = {v for n in onnx.load(out).graph.node for v in (*n.input, *n.output)}
    assert cone.name in held


class _RareNoise(nn.Module):
    """Adds 1000 where a draw falls below 1e-9: a forward that almost never shows it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return y + 1000 * (torch.rand_like(y) < 1e-9).float()


def test_an_export_whose_graph_draws_random_values_is_not_deployable(tmp_path: Path) -> None:
    """A forward whose rare draw matched on every run was published as deployable (t130): the
    exported graph is read for random ops reaching its outputs, as check reads its models."""
    torch.manual_seed(0)
    out = tmp_path / "noise.onnx"
    report = export(_RareNoise(), (torch.randn(2, 4),), out, exporter="torchscript", runs=1)
    assert not report and not report.published and not out.exists()
    (ops,) = report.draws_random.values()
    assert ops == ["RandomUniformLike"] and not report.not_deterministic
    plain = export(nn.Linear(4, 3), (torch.randn(2, 4),), out, exporter="torchscript", runs=1)
    assert plain and plain.draws_random == {}
