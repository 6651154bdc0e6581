"""A weight-normed model trains like any other: gradients, optimizers, copies, compile, DDP."""

from __future__ import annotations

import copy
import io
import pickle
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from tests.fx.ddp_worker import MODES, build, reference_state, train_rank
from tests.fx.helpers import KEEP_RTOL, plain, rel_error
from wnpass import apply_weight_norm

# Compiled and eager kernels sum in different orders (fusion, vectorization): float32 results
# differ by a few ulps per op, ~1e-6 relative through a 3-layer MLP; 1e-5 keeps 10x room.
COMPILE_RTOL = 1e-5
DDP_TIMEOUT_S = 300  # the test fails (rather than hangs) if the ranks do not finish


def _normed(name: str) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    model, inputs = plain(name)
    apply_weight_norm(model, inputs)
    return model.train(), inputs


# Not the ResNet: a BatchNorm in training mode right after a conv makes the conv's g irrelevant
# (BN divides the per-channel scale away), so its gradient is 0 up to rounding.
@pytest.mark.parametrize("name", ["vocoder", "lstm_lm", "transformer"])
def test_gradients_reach_g_and_v_and_a_step_changes_them(name: str) -> None:
    """Every g and v gets a nonzero gradient; one SGD step changes every one of them."""
    model, inputs = _normed(name)
    originals = {n: p for n, p in model.named_parameters() if ".original" in n}
    assert originals
    before = {n: p.detach().clone() for n, p in originals.items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(*inputs).float().square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in originals.values())
    optimizer.step()
    assert all(not torch.equal(before[n], p) for n, p in originals.items())


@pytest.mark.parametrize("name", ["mlp", "lstm_lm"])
def test_deepcopy_pickle_and_torch_save_round_trip(name: str) -> None:
    """deepcopy, pickle and torch.save(model) give the same parametrized model and outputs."""
    model, inputs = _normed(name)
    model.eval()
    expected = model(*inputs)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    copies = [
        copy.deepcopy(model),
        pickle.loads(pickle.dumps(model)),
        torch.load(buffer, weights_only=False),
    ]
    for clone in copies:
        assert torch.equal(clone(*inputs), expected)
        assert clone.state_dict().keys() == model.state_dict().keys()
        first = next(n for n, _ in clone.named_parameters() if n.endswith("original0"))
        assert dict(clone.named_parameters())[first] is not dict(model.named_parameters())[first]


def test_state_dict_save_load_round_trip(tmp_path: Path) -> None:
    """A saved state dict loads into a freshly rewritten model; outputs equal bit for bit."""
    model, inputs = _normed("transformer")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    torch.save(model.state_dict(), tmp_path / "wn.pt")
    fresh, _ = _normed("transformer")
    fresh.load_state_dict(torch.load(tmp_path / "wn.pt", weights_only=True))
    assert torch.equal(fresh.eval()(*inputs), model.eval()(*inputs))


def test_legacy_keys_load_through_plain_load_state_dict() -> None:
    """load_state_dict itself maps weight_g/weight_v (the registered pre-hook)."""
    legacy = torch.nn.utils.weight_norm(nn.Linear(3, 4))
    model = nn.Sequential(nn.Linear(3, 4))
    apply_weight_norm(model)
    model.load_state_dict({"0." + k: v for k, v in legacy.state_dict().items()})
    x = torch.randn(2, 3)
    assert rel_error(model(x), legacy(x)) <= KEEP_RTOL


def test_torch_compile_same_outputs() -> None:
    """torch.compile on CPU runs the rewritten MLP, forward and backward, like eager."""
    model: Any
    model, inputs = _normed("mlp")
    compiled = torch.compile(model)
    expected, actual = model(*inputs), compiled(*inputs)
    assert rel_error(actual, expected) <= COMPILE_RTOL
    actual.sum().backward()
    assert model[0].parametrizations.weight.original0.grad is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Data-parallel training sums the ranks' gradients in another order than one process summing
# over the whole batch, and compiled kernels fuse differently: float32 results differ by a few
# ulps per step (measured: <= 1e-6 relative after 3 steps); 1e-5 keeps 10x room, and a wrong
# gradient (a rank not synchronised, g or v not trained) is off by orders of magnitude more.
DIST_RTOL = 1e-5


def test_ddp_compiled_ddp_and_fsdp2_train_like_one_process(tmp_path: Path) -> None:
    """gloo, 2 CPU ranks with their own data: DDP, DDP + torch.compile and FSDP2 each end with
    the weights one process gets from both ranks' batches, equal on both ranks."""
    context = mp.start_processes(
        train_rank,
        args=(2, _free_port(), str(tmp_path)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + DDP_TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"distributed ranks did not finish in {DDP_TIMEOUT_S} s")
    reference = reference_state(2)
    untrained = build().state_dict()
    assert sum("original1" in key for key in reference) == 5
    for mode in MODES:
        states = [torch.load(tmp_path / f"{mode}-{r}.pt", weights_only=True) for r in range(2)]
        assert states[0].keys() == reference.keys(), mode
        for key, expected in reference.items():
            for state in states:
                assert rel_error(state[key], expected) <= DIST_RTOL, (mode, key)
            assert not torch.equal(expected, untrained[key]) or "bias" in key, key
