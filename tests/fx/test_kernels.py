"""Which parameters the kernels of a forward read outside any torch function."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from wnpass.fx.forward import Batch, RngSnapshot
from wnpass.fx.kernels import TensorReads, calls_torchscript, kernel_reads


@torch.jit.script
def _scaled(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return x * alpha


class _Half(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)
        self.alpha = nn.Parameter(torch.ones(3))
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _scaled(self.linear(x), self.alpha)


def test_only_the_kernels_no_torch_function_runs_are_counted() -> None:
    """A scripted function's multiply reads ``alpha``; the linear's kernels run inside
    ``F.linear``, the recorder's to see; nothing reads ``unused``."""
    model = _Half()
    batch = Batch((torch.randn(2, 3),), {})
    names = ["linear.weight", "linear.bias", "alpha", "unused"]
    found = kernel_reads(model, batch, names, RngSnapshot.take(model, batch))
    assert found == {"alpha": ["mul"]}
    assert model.training  # its mode given back


@torch.jit.script
def _as_kernel(w: torch.Tensor) -> torch.Tensor:
    return w.unsqueeze(-1)


class _Viewed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.randn(3, 3))
        self.eager = nn.Parameter(torch.randn(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.conv1d(x, _as_kernel(self.proj))
        return nn.functional.conv1d(y, self.eager.t().unsqueeze(-1))


def test_a_view_made_inside_torchscript_is_read_where_an_eager_layer_reads_it() -> None:
    """t285: a scripted ``w.unsqueeze(-1)`` read by an eager ``F.conv1d``: the view is no
    read, the convolution runs inside a torch function, so ``proj`` was said not used. The
    kernels reading such a view count, wherever they run; an eager view of ``eager`` read by
    the same op is the recorder's."""
    model = _Viewed()
    batch = Batch((torch.randn(1, 3, 5),), {})
    found = kernel_reads(model, batch, ["proj", "eager"], RngSnapshot.take(model, batch))
    assert found == {"proj": ["convolution"]}


def test_a_forward_naming_a_scripted_function_is_told() -> None:
    """``_Half.forward`` calls the scripted ``_scaled``; a plain linear calls none."""
    assert calls_torchscript(_Half())
    assert not calls_torchscript(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))


class _Attribute(nn.Module):
    """Calls a scripted function kept as its own attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.op = _scaled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x, x)


_LIBRARY = types.ModuleType("scriptlib")  # a module of scripted functions
_LIBRARY.mixed = _scaled  # type: ignore[attr-defined]


class _Qualified(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LIBRARY.mixed(x, x)


_PACKAGE = types.ModuleType("pkg")  # a package holding that module
_PACKAGE.scriptlib = _LIBRARY  # type: ignore[attr-defined]


class _Nested(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PACKAGE.scriptlib.mixed(x, x)


class _OnItsClass(nn.Module):
    op = _scaled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x, x)


def test_a_scripted_function_reached_through_an_attribute_is_told() -> None:
    """t286, t287: ``self.op(...)`` (the instance's or its class's), ``scriptlib.mixed(...)``
    and ``pkg.scriptlib.mixed(...)`` name a scripted function too."""
    for model in (_Attribute(), _OnItsClass(), _Qualified(), _Nested()):
        assert calls_torchscript(model), type(model).__name__


class _Reader(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)  # read through a view: F.linear's addmm reads W.t()
        self.lstm = nn.LSTM(3, 3)  # its weights given to one kernel as a list
        self.alpha = nn.Parameter(torch.ones(3))  # read inside TorchScript
        self.shaped = nn.Parameter(torch.ones(3))  # its layout read, no value
        self.idle = nn.Linear(3, 3)  # never called

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(_scaled(self.linear(x), self.alpha).unsqueeze(0))
        return y + torch.zeros_like(self.shaped)


def test_tensor_reads_names_every_tensor_a_kernel_reads_whatever_runs_it() -> None:
    """What ``fold --model`` tells of the folded weights the forward reads: a weight read
    through a view, inside TorchScript or as one of a kernel's list of weights is read; one
    whose layout alone is read (``zeros_like``), or whose layer is never called, is not."""
    model = _Reader().eval()
    reads = TensorReads(dict(model.state_dict(keep_vars=True)))
    with reads, torch.no_grad():
        model(torch.randn(2, 3))
    unread = sorted(set(model.state_dict()) - reads.read)
    assert unread == ["idle.bias", "idle.weight", "shaped"]


def test_weights_that_are_views_of_one_tensor_are_read_apart() -> None:
    """Two weights in one flat tensor (a fused parameter's halves): reading one was taken for
    reading both, as they share a storage (t293). Each is read where its own bytes are."""
    flat = torch.randn(12)
    a, b = flat[:6].view(2, 3), flat[6:].view(2, 3)
    reads = TensorReads({"a": a, "b": b})
    with reads:
        nn.functional.linear(torch.randn(1, 3), a)
    assert reads.read == {"a"}


class _Exits(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise SystemExit(3)


def test_a_sys_exit_under_the_watch_stops_the_run() -> None:
    """t346: a failure under the watch is the watch's (nothing found), but a ``sys.exit()``
    of the model's stops the run, as in any forward."""
    from wnpass.fx.forward import ModelExitedError

    model, batch = _Exits(2, 2), Batch((torch.ones(1, 2),))
    with pytest.raises(ModelExitedError, match=r"called sys\.exit\(3\)"):
        kernel_reads(model, batch, ["weight"], RngSnapshot.take(model, batch))
