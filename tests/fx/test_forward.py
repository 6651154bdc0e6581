"""The forwards wnpass runs on a user's model: its state stays whole and consistent, each
forward has its own copy of the inputs, and its errors (sys.exit() too) are the model's."""

from __future__ import annotations

import random
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from wnpass import apply_weight_norm
from wnpass.fx import forward
from wnpass.fx.attributes import OpaqueTensorError
from wnpass.fx.forward import (
    Batch,
    ForwardFailedError,
    RngSnapshot,
    buffer_values,
    evaluating,
    moved_buffers,
    run_forward,
    state_given_back,
)


class _GrowingCache(nn.Module):
    """A rotary-style cache: the forward re-registers a buffer for longer inputs and records
    its length in a plain attribute (transformers' dynamic RoPE does this)."""

    table: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.cached = 2
        self.register_buffer("table", torch.ones(2, 4), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.cached:
            self.cached = x.shape[0]
            self.register_buffer("table", torch.full((x.shape[0], 4), 0.5), persistent=False)
        return self.lin(x) * self.table[: x.shape[0]]


def test_a_forward_that_rebuilds_its_cache_is_left_consistent() -> None:
    """wnpass's forwards give back what the model's forward wrote, buffer and attribute
    together: putting the buffer back alone made the outputs differ (reported NOT EQUIVALENT)
    and left the model inconsistent. The table registered again is the very one registered
    before."""
    model, x = _GrowingCache(), torch.randn(6, 4)
    table = model.table
    report = apply_weight_norm(model, x)
    assert report.applied == 1 and report.status == "ok", report.reason
    assert model.cached == 2 and model.table is table and torch.equal(table, torch.ones(2, 4))
    with torch.no_grad():
        model(x)  # still runs


def test_a_lazy_model_is_rewritten() -> None:
    """A lazy module's first forward gives its parameters and buffers their values: that
    forward may be wnpass's."""
    model = nn.Sequential(nn.LazyLinear(4), nn.LazyBatchNorm1d())
    report = apply_weight_norm(model, torch.randn(8, 3))
    assert report.applied == 1 and report.max_rel_error is not None


class _Exits(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise SystemExit(0)


def test_a_sys_exit_in_forward_is_the_models_error() -> None:
    """``sys.exit()`` in the model's forward is one line naming the model (exit 2), never the
    end of wnpass with the model's exit code."""
    with pytest.raises(ForwardFailedError, match=r"^_Exits: .* called sys\.exit\(0\)$"):
        run_forward(_Exits(2, 2), Batch((torch.ones(1, 2),)))


class _ScalesItsInput(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(2)  # in-place input scaling
        return super().forward(x)


def test_each_forward_gets_its_own_copy_of_the_inputs() -> None:
    """A forward that changes its input in place changes a copy: the next forward, and the
    caller, see the inputs as they were."""
    model, x = _ScalesItsInput(4, 3), torch.randn(2, 4)
    given = x.clone()
    first, second = run_forward(model, Batch((x,))), run_forward(model, Batch((x,)))
    assert torch.equal(first[0], second[0]) and torch.equal(x, given)


class _ReadsItsCache(nn.Module):
    """A forward that extends a transformers cache and reads everything in it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, cache: Any) -> torch.Tensor:
        keys, _ = cache.update(x.view(1, 1, -1, 4), x.view(1, 1, -1, 4), layer_idx=0)
        return self.fc(keys.sum(2).view(1, 4))


def test_each_forward_gets_its_own_copy_of_a_transformers_cache() -> None:
    """A cache was passed on uncopied: each forward extended the same one, the outputs
    drifted, and a correct rewrite was called NOT EQUIVALENT."""
    transformers = pytest.importorskip("transformers")
    model, x, cache = _ReadsItsCache(), torch.randn(1, 4), transformers.DynamicCache()
    first, second = run_forward(model, Batch((x, cache))), run_forward(model, Batch((x, cache)))
    assert torch.equal(first[0], second[0]) and cache.get_seq_length() == 0
    report = apply_weight_norm(_ReadsItsCache(), (x, cache))
    assert report.applied == 1 and report.equivalent and cache.get_seq_length() == 0


class _Flag:
    """An object a forward tests by identity."""


class _TestsItsFlag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.flag = nn.Linear(4, 3), _Flag()

    def forward(self, x: torch.Tensor, flag: _Flag) -> torch.Tensor:
        return self.fc(x) if flag is self.flag else -self.fc(x)


def test_an_input_object_other_than_a_cache_is_passed_on_as_it_is() -> None:
    """A forward may test an input by identity: a copy would take the other branch."""
    model, x = _TestsItsFlag(), torch.randn(2, 4)
    (out,) = run_forward(model, Batch((x, model.flag)))
    assert torch.equal(out, model.fc(x).detach())


def test_replayed_forwards_draw_the_same_numbers_and_leave_the_callers_alone() -> None:
    """Blocks replayed from one snapshot draw the same random numbers; afterwards the
    generator is where the caller left it."""
    model = nn.Linear(2, 2)
    snapshot = RngSnapshot.take(model, Batch((torch.ones(1, 2),)))
    state = torch.get_rng_state()
    with snapshot.replayed():
        first = torch.randn(5)
    with snapshot.replayed():
        second = torch.randn(5)
    assert torch.equal(first, second) and torch.equal(torch.get_rng_state(), state)


def test_pythons_and_numpys_random_numbers_are_replayed_too() -> None:
    """A forward drawing from ``random`` or ``np.random`` drew other numbers before and after
    the rewrite, though the README says the forwards compared draw the same ones."""
    snapshot = RngSnapshot.take(nn.Linear(2, 2), None)
    python, numpy = random.getstate(), np.random.get_state()
    with snapshot.replayed():
        first = (random.random(), np.random.rand())
    with snapshot.replayed():
        second = (random.random(), np.random.rand())
    assert first == second
    assert random.getstate() == python
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy, strict=True))


class _NoiseFromItsInput(nn.Module):
    """``forward(x, rng)``: noise from a generator the caller passes, of any kind."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, rng: Any) -> torch.Tensor:
        if isinstance(rng, torch.Generator):
            return self.lin(x) + float(torch.rand((), generator=rng))
        if isinstance(rng, np.random.RandomState):
            return self.lin(x) + float(rng.random_sample())
        return self.lin(x) + float(rng.random())


_INPUT_RNGS = {
    "torch": lambda: torch.Generator().manual_seed(0),
    "random": lambda: random.Random(0),
    "numpy": lambda: np.random.default_rng(0),
    "numpy-legacy": lambda: np.random.RandomState(np.random.PCG64(0)),  # not MT19937 (t198)
}


@pytest.mark.parametrize("kind", list(_INPUT_RNGS))
def test_a_random_generator_among_the_inputs_is_replayed_and_given_back(kind: str) -> None:
    """t198: a NumPy Generator or random.Random among the inputs moved with each forward (a
    torch.Generator did not): apply_weight_norm called the model not deterministic and left
    the caller's generator moved. A RandomState on another bit generator than MT19937 made
    NumPy warn at each read of its state (an error under ``-W error``)."""
    rng, x = _INPUT_RNGS[kind](), torch.randn(8, 4)
    model = _NoiseFromItsInput()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = apply_weight_norm(model, (x, rng))
    assert report.equivalent and not report.not_deterministic
    fresh = _INPUT_RNGS[kind]()  # the caller's next number is its first
    assert torch.equal(model(x, rng), model(x, fresh))


class _MergesInEval(nn.Linear):
    """A LoRA-like layer: eval mode merges an update into its weight, training mode takes it
    out again (loralib's ``train()``)."""

    def __init__(self) -> None:
        super().__init__(3, 3)
        self.update = torch.ones(3, 3)
        self.merged = False

    def train(self, mode: bool = True) -> _MergesInEval:
        super().train(mode)
        with torch.no_grad():
            if mode and self.merged:
                self.weight -= self.update
            elif not mode and not self.merged:
                self.weight += self.update
        self.merged = not mode
        return self


def test_the_modes_come_back_through_train_so_a_merged_update_is_taken_out() -> None:
    """The mode was given back by setting the flag: the layer stayed merged in training mode,
    and train-rewrite saved its update twice (t60)."""
    layer, norm = _MergesInEval(), nn.BatchNorm1d(3)
    model = nn.Sequential(layer, norm)
    norm.eval()
    weight = layer.weight.detach().clone()
    with evaluating(model):
        assert layer.merged
    assert not layer.merged and torch.allclose(layer.weight, weight, atol=1e-6)
    assert layer.training and not norm.training  # each back in its own mode


class _GrowsItsTable(nn.Module):
    """Registers its position table again, longer, for an input longer than it."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pe", torch.arange(4.0)[:, None].repeat(1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > len(self.get_buffer("pe")):
            self.register_buffer("pe", torch.arange(float(x.shape[0]))[:, None].repeat(1, 3))
        return x + self.get_buffer("pe")[: x.shape[0]]


def test_a_buffer_the_forward_registered_again_at_another_shape_is_registered_back() -> None:
    """A table wnpass's forwards grew was saved grown, and the file did not load into the
    model (t60); shrunk back in memory alone, it disagreed with an attribute that says how
    long it is (t61). The very tensor registered before is registered again (and an attribute
    beside it is given back with it: test_a_forward_that_rebuilds_its_cache_is_left_consistent);
    one grown outside wnpass's forwards is named as moved."""
    model = _GrowsItsTable()
    table, values = model.get_buffer("pe"), buffer_values(model)
    with state_given_back(model):
        run_forward(model, Batch((torch.ones(10, 3),)))
    assert model.get_buffer("pe") is table and moved_buffers(model, values) == []
    run_forward(model, Batch((torch.ones(10, 3),)))
    assert moved_buffers(model, values) == ["pe"]


class _RaisesOnTrain(nn.Linear):
    def train(self, mode: bool = True) -> _RaisesOnTrain:
        if mode:
            raise RuntimeError("inference only")
        return super().train(mode)


def test_a_train_override_that_raises_as_the_block_ends_is_a_warning() -> None:
    """An inference-only module built in training mode: its ``train(True)`` raised out of the
    block's end, an internal error (exit 3) of a run that had succeeded (t61)."""
    model = nn.Sequential(_RaisesOnTrain(2, 2), nn.Linear(2, 2))
    with evaluating(model):
        pass
    assert model[0].training and model[1].training


class _RaisesOnEval(nn.Linear):
    def train(self, mode: bool = True) -> _RaisesOnEval:
        if not mode:
            raise RuntimeError("training only")
        return super().train(mode)


def test_a_train_override_that_raises_as_the_block_starts_is_the_model_s_error() -> None:
    model = nn.Sequential(nn.Linear(2, 2), _RaisesOnEval(2, 2))
    with pytest.raises(ForwardFailedError, match="training only"), evaluating(model):
        pass
    assert model[0].training and model[1].training


def test_parameters_made_of_one_tensor_are_given_back_together() -> None:
    """Two parameters sliced from one tensor share its version counter: a write to one moved
    the other's, which then read as written without a copy, and nothing was given back; the
    copies went by storage, so the one written was not copied at all (t116)."""
    flat = torch.ones(6)
    module = nn.Module()
    module.a, module.b = nn.Parameter(flat[:3]), nn.Parameter(flat[3:])
    with torch.no_grad(), state_given_back(module) as given:
        module.a.mul_(5)
    assert given.whole
    assert module.a.tolist() == [1.0] * 3 and module.b.tolist() == [1.0] * 3


class _Flagged(nn.Module):
    """A module of the model's own (PyTorch's own modules' attributes are never given back)
    with one weight and a flag a forward may set."""

    def __init__(self, shape: tuple[int, ...] = (3,)) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(shape))
        self.done = False


def test_a_forward_that_builds_the_model_further_keeps_what_it_wrote() -> None:
    """Nothing is given back where the block built the model further: the copies were written
    back all the same, so the first forward computed with a doubled weight and every later
    one with the weight as given, its flag saying it was doubled (t116)."""
    module = _Flagged()
    with torch.no_grad(), state_given_back(module) as given:
        module.w.mul_(2)
        module.added = nn.Linear(1, 1)  # a submodule made on the first call
        module.done = True
    assert not given.whole
    assert module.w.tolist() == [2.0] * 3 and module.done is True


def test_an_op_called_through_torch_ops_is_a_write_copied_first() -> None:
    """``torch.ops.aten.add_.Tensor`` is named ``add_.Tensor``: it was no write, and its
    parameter read as written without a copy (the model's state kept, with a warning)."""
    module = nn.Module()
    module.w = nn.Parameter(torch.ones(3))
    with torch.no_grad(), state_given_back(module) as given:
        torch.ops.aten.add_.Tensor(module.w, torch.ones(3))
    assert given.whole and module.w.tolist() == [1.0] * 3


@pytest.mark.parametrize("how", ["unsqueeze_", ".data ="])
def test_a_write_no_copy_can_give_back_keeps_the_state_whole(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A parameter given another shape (``unsqueeze_``) came back with its values but not its
    shape; one whose elements moved (``w.data = x``) was taken for another tensor later
    written at the old address, and 'given back' as it was, its flag given back (t117). The
    state stays whole as the forward left it, with a warning naming the parameter."""
    module = _Flagged((2, 2))
    logs = caplog.at_level("WARNING", logger="wnpass")
    with logs, torch.no_grad(), state_given_back(module) as given:
        if how == "unsqueeze_":
            module.w.unsqueeze_(0)
        else:
            module.w.data = module.w.data / 2
            torch.empty(4).fill_(0)  # may be given the freed address
        module.done = True
    assert not given.whole and module.done is True
    assert any("the forward wrote w in a way" in r.getMessage() for r in caplog.records)


@torch.jit.script
def _halved(w: torch.Tensor) -> None:
    w.mul_(0.5)


def test_a_write_seen_after_one_in_torchscript_keeps_the_state_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A write in TorchScript code (no op of it seen), then one seen: the copy, made at the
    second, held the value the first wrote, and was 'given back' with the flag (t118)."""
    module = _Flagged()
    logs = caplog.at_level("WARNING", logger="wnpass")
    with logs, torch.no_grad(), state_given_back(module) as given:
        _halved(module.w)
        module.w.clamp_(-1, 1)
        module.done = True
    assert not given.whole and module.done is True and module.w.tolist() == [0.5] * 3
    assert any("the forward wrote w in a way" in r.getMessage() for r in caplog.records)
    with torch.no_grad(), state_given_back(module) as given:  # a flag given back with it
        module.w.clamp_(-0.25, 0.25)
        module.done = False
    assert given.whole and module.done is True and module.w.tolist() == [0.5] * 3


@pytest.mark.parametrize("kind", [nn.Embedding, nn.EmbeddingBag])
def test_a_table_max_norm_renormalizes_is_given_back(kind: type[nn.Module]) -> None:
    """``F.embedding_bag`` with ``max_norm`` renormalizes its table inside the call, as
    ``F.embedding`` does: it was no write copied first, so nothing was given back (t118)."""
    torch.manual_seed(0)
    table: Any = kind(10, 4, max_norm=0.5)
    weight = table.weight.detach().clone()
    with torch.no_grad(), state_given_back(table) as given:
        table(torch.tensor([[1, 2, 3]]))
    assert given.whole and torch.equal(table.weight, weight)


class _Buffered(_Flagged):
    """A weight, a flag, a buffer and a tensor held as a plain attribute."""

    table: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", torch.zeros(3))
        self.held = torch.zeros(2)


@pytest.mark.parametrize("how", ["resize_", "-0.0", "requires_grad_", "held -0.0"])
def test_what_a_forward_changes_besides_values_is_given_back(how: str) -> None:
    """A buffer grown in place (``resize_``) kept its new shape, a buffer or a tensor attribute
    made -0.0 compared equal to 0.0, and a weight's ``requires_grad`` turned off stayed off,
    each with the rest of the state given back (t119)."""
    module = _Buffered()
    with torch.no_grad(), state_given_back(module) as given:
        if how == "resize_":
            module.table.resize_(6)
        elif how == "-0.0":
            module.table.mul_(-1)
        elif how == "held -0.0":
            module.held.mul_(-1)
        else:
            module.w.requires_grad_(False)
        module.done = True
    assert given.whole and module.done is False
    assert module.table.shape == (3,) and not module.table.signbit().any()
    assert not module.held.signbit().any() and module.w.requires_grad


def _changed(module: Any, how: str) -> None:
    """What a forward may do to the state of a :class:`_Buffered` with more in it."""
    if how == "buffer registered":  # a running count made on the first call
        module.register_buffer("count", torch.ones(3))
    elif how == "transient buffer deleted":
        del module.transient
    elif how == "held resize_":
        module.held.resize_(5).fill_(1.0)
    elif how == "held nested":
        module.ragged.mul_(2.0)
    elif how == "held sparse":
        module.edges.mul_(2.0)
    elif how == "sparse buffer coalesced":
        coalesced = module.doubled.coalesce()
        module.doubled.resize_as_sparse_(coalesced)
        module.doubled.copy_(coalesced)
    else:  # an expanded view of a buffer or a plain tensor, whose memory the forward scales
        module.base.mul_(0.5)
        module.rows._base.mul_(0.5)  # the tensor it views, which no module holds


@pytest.mark.parametrize(
    "how",
    [
        "buffer registered",
        "transient buffer deleted",
        "held resize_",
        "held nested",
        "held sparse",
        "sparse buffer coalesced",
        "expanded views",
    ],
)
def test_what_a_forward_adds_or_changes_in_odd_tensors_is_given_back(how: str) -> None:
    """t226: a buffer the forward registered on its first call stayed (the rewritten model's
    first call then differed from the model's by it, reported equal); a non-persistent buffer
    deleted came back persistent; a tensor attribute grown in place stayed grown; a nested or
    sparse one changed stayed changed (t223); an expanded view of a buffer or of a plain
    tensor the forward scaled raised as it was written back ("more than one element of the
    written-to tensor refers to a single memory location"), the state left changed; a sparse
    buffer with an edge listed twice, coalesced in place, counted as unchanged (t224)."""
    module: Any = _Buffered()
    module.register_buffer("transient", torch.ones(2), persistent=False)
    module.register_buffer("base", torch.ones(1))
    module.register_buffer("expanded", module.base.expand(3))
    module.rows = torch.ones(2, 1).expand(2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: nested tensors are a prototype
        module.ragged = torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])
    module.edges = torch.eye(3).to_sparse()
    twice = torch.tensor([[0, 0, 1], [1, 1, 2]])
    module.register_buffer("doubled", torch.sparse_coo_tensor(twice, torch.ones(3), (3, 3)))
    keys = list(module.state_dict())
    with torch.no_grad(), state_given_back(module) as given:
        _changed(module, how)
        module.done = True
    assert given.whole and module.done is False
    assert list(module.state_dict()) == keys and "count" not in module._buffers
    assert module.held.shape == (2,) and not module.held.any()
    assert module.base.tolist() == [1.0] and module.expanded.tolist() == [1.0] * 3
    assert module.rows.tolist() == [[1.0] * 4] * 2
    assert [part.tolist() for part in module.ragged.unbind()] == [[1.0] * 2, [1.0] * 3]
    assert torch.equal(module.edges.to_dense(), torch.eye(3))
    assert not module.doubled.is_coalesced() and module.doubled._indices().tolist() == [
        [0, 0, 1],
        [1, 1, 2],
    ]


@pytest.mark.parametrize("held_as", ["attribute", "buffer first", "buffer after"])
def test_a_sparse_tensor_over_a_buffer_still_views_it(held_as: str) -> None:
    """A COO tensor whose values are a buffer, the forward scaling the buffer: written back
    by ``resize_as_sparse_`` and ``copy_``, the sparse tensor held a copy (a plain attribute,
    or a buffer registered before the one it views), cut off from the buffer: the model's
    next call differed by 1 from an untouched one, reported unchanged (t231)."""
    module: Any = _Buffered()
    scale = torch.ones(3)
    diagonal = torch.sparse_coo_tensor(torch.tensor([[0, 1, 2], [0, 1, 2]]), scale, (3, 3))
    if held_as == "buffer first":
        module.register_buffer("diagonal", diagonal)
    module.register_buffer("scale", scale)
    if held_as == "buffer after":
        module.register_buffer("diagonal", diagonal)
    if held_as == "attribute":
        module.diagonal = diagonal
    with torch.no_grad(), state_given_back(module) as given:
        module.scale.mul_(2.0)
    assert given.whole and module.scale.tolist() == [1.0] * 3
    assert module.diagonal._values().data_ptr() == module.scale.data_ptr()


def test_a_sparse_buffer_over_a_buffer_of_indices_still_views_it() -> None:
    """A COO buffer whose indices are a buffer the forward rewires in place, registered before
    it: its indices changed took the ``resize_as_sparse_`` path, a copy, and it no longer
    viewed the buffer; the model's second call differed by 1.2, reported equivalent (t234).
    Parts of one shape each are written in place, indices too."""
    module: Any = _Buffered()
    index = torch.tensor([[0, 1, 2], [0, 1, 2]])
    module.register_buffer("perm", torch.sparse_coo_tensor(index, torch.ones(3), (3, 3)))
    module.register_buffer("index", index)
    with torch.no_grad(), state_given_back(module) as given:
        module.index[1].copy_(module.index[1].roll(1))
    assert given.whole and module.index.tolist() == [[0, 1, 2], [0, 1, 2]]
    assert module.perm._indices().data_ptr() == module.index.data_ptr()


def test_a_wrapping_tensor_subclass_is_given_back_by_what_it_wraps() -> None:
    """A ``TwoTensor`` buffer and plain attribute whose second tensor the forward changes:
    ``torch.equal`` compares the first alone, and they are compared (and given back) tensor by
    tensor."""
    from torch.testing._internal.two_tensor import TwoTensor

    module: Any = _Buffered()
    module.register_buffer("pair", TwoTensor(torch.zeros(3), torch.zeros(3)))
    module.held = TwoTensor(torch.zeros(2), torch.zeros(2))
    with torch.no_grad(), state_given_back(module) as given:
        module.pair.b.add_(1.0)
        module.held.b.add_(1.0)
    assert given.whole and not module.pair.b.any() and not module.held.b.any()


class _Counted(nn.Module):
    """A layer beside a DTensor count the forward moves."""

    count: torch.Tensor

    def __init__(self, count: torch.Tensor) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("count", count)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count.add_(1)
        return self.fc(x)


def test_a_dtensor_buffer_is_given_back() -> None:
    """A DTensor's ``__tensor_flatten__`` names its device mesh beside its local tensor: read
    as a wrapped tensor, it raised "type object 'DeviceMesh' has no attribute
    '__torch_dispatch__'" before any forward (t227). A world of one process, in this one."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, distribute_tensor

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        model = _Counted(distribute_tensor(torch.zeros(4), mesh, [Replicate()]))
        report = apply_weight_norm(model, (torch.randn(8, 4),))
        count: Any = model.count
        assert report and not count.to_local().any()
    finally:
        dist.destroy_process_group()


class _LazyMasked(LazyModuleMixin, nn.Module):
    """A lazy layer of the user's: its first forward makes its weight and registers a mask
    buffer of the input's size."""

    weight: UninitializedParameter
    mask: torch.Tensor

    def __init__(self, out: int) -> None:
        super().__init__()
        self.out = out
        self.weight = UninitializedParameter()

    def initialize_parameters(self, x: torch.Tensor) -> None:
        if self.has_uninitialized_params():
            with torch.no_grad():
                self.weight.materialize((self.out, x.shape[-1]))
                nn.init.normal_(self.weight)
                self.register_buffer("mask", torch.ones(x.shape[-1]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x * self.mask, self.weight)


def test_a_buffer_a_lazy_layer_registers_on_its_first_forward_stays() -> None:
    """It was removed with the buffers a forward registers, the weight it made kept: the
    next forward failed, "'LazyMasked' object has no attribute 'mask'", blamed on the model
    (t227)."""
    model = nn.Sequential(_LazyMasked(3), nn.Tanh(), nn.Linear(3, 2))
    report = apply_weight_norm(model, (torch.randn(8, 5),))
    assert [(s.name, s.status) for s in report.sites][:2] == [
        ("0.weight", "applied"),
        ("2.weight", "applied"),
    ]
    assert "mask" in model[0]._buffers and "mask" in model[0]._non_persistent_buffers_set


def test_a_plain_view_of_what_a_wrapper_weight_wraps_is_the_weight_s() -> None:
    """A wrapper parameter holds no bytes of its own, so a plain attribute viewing what it
    wraps was the module's state, written back after a write the block keeps: the wrapper's
    first tensor came back, its second stayed written (t235)."""
    from torch.testing._internal.two_tensor import TwoTensor

    module: Any = _Buffered()  # a module of the user's: its plain attributes are its state
    module.w = nn.Parameter(TwoTensor(torch.ones(3), torch.ones(3)))
    module.inner = module.w.a
    with state_given_back(module, unless_written=False), torch.no_grad():
        module.w.mul_(5.0)
    assert module.w.a.tolist() == module.w.b.tolist() == [5.0] * 3
    # a write through the view is the weight's: copied first and given back (t236: it stayed)
    with state_given_back(module) as given, torch.no_grad():
        module.inner[:2].mul_(7.0)
    assert given.whole and module.w.a.tolist() == [5.0] * 3


@pytest.mark.parametrize(
    "write",
    [
        lambda w: w.data.mul_(7.0),
        lambda w: w.detach().mul_(7.0),
        lambda w: w[:2].mul_(7.0),
        lambda w: w.view(-1).mul_(7.0),
    ],
    ids=["data", "detach", "slice", "view"],
)
def test_a_write_through_a_new_wrapper_over_a_wrapper_weight_is_the_weight_s(
    write: Callable[[torch.Tensor], object],
) -> None:
    """``w.data`` of a wrapper weight is a new wrapper over the same tensors, in no storage of
    the weight's: its write stayed, and the state was called whole (t237; a forward's
    ``self.scale.data.mul_(2)`` made a TwoTensor scale 64 over apply_weight_norm's runs)."""
    from torch.testing._internal.two_tensor import TwoTensor

    module: Any = nn.Module()
    module.w = nn.Parameter(TwoTensor(torch.ones(3), torch.ones(3)))
    with state_given_back(module) as given, torch.no_grad():
        write(module.w)
    assert given.whole and module.w.a.tolist() == module.w.b.tolist() == [1.0] * 3


def test_a_sparse_buffer_with_an_expanded_part_is_given_back() -> None:
    """Its values one element expanded: every part was copied back, the unchanged expanded
    one too, which raised "more than one element of the written-to tensor refers to a single
    memory location" (t236). A part that did not change is left as it is."""
    module: Any = _Buffered()
    index = torch.tensor([[0, 1, 2], [0, 1, 2]])
    module.register_buffer("s", torch.sparse_coo_tensor(index, torch.ones(1).expand(3), (3, 3)))
    with torch.no_grad(), state_given_back(module) as given:
        module.s._indices()[1].copy_(torch.tensor([2, 1, 0]))
    assert given.whole and module.s._indices().tolist() == [[0, 1, 2], [0, 1, 2]]
    assert torch.equal(module.s.to_dense(), torch.eye(3))


@pytest.mark.parametrize("where", ["buffer", "attribute"])
def test_a_tensor_subclass_that_says_not_what_it_holds_is_refused_first(where: str) -> None:
    """A ``MaskedTensor``: comparing it after the forward raised a TypeError (an internal
    error), the rest of the state left as the forward changed it (t226). It is refused before
    the block runs, naming it."""
    from torch.masked import masked_tensor

    module: Any = _Buffered()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: MaskedTensor is a prototype
        masked = masked_tensor(torch.zeros(3), torch.tensor([True, False, True]))
    if where == "buffer":
        module.register_buffer("masked", masked)
    else:
        module.masked = masked
    ran = []
    refused = pytest.raises(OpaqueTensorError, match=f"^{where} masked is a MaskedTensor, a ")
    with refused, state_given_back(module):
        ran.append(True)
    assert ran == []


def test_buffers_of_any_kind_are_compared_and_a_new_dtype_given_back() -> None:
    """Comparing a quantized buffer by its bytes crashed the process and a conjugate view's
    raised (t121); a buffer the forward made float64 through ``.data`` stayed so, with the
    rest of the state given back."""
    module: Any = _Flagged()
    with warnings.catch_warnings():  # quantized tensors are deprecated, not gone
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.quint8)
    module.register_buffer("q", quantized)
    module.register_buffer("c", torch.tensor([1 + 2j, 3 - 1j]).conj())
    module.register_buffer("scale", torch.ones(2))
    with torch.no_grad(), state_given_back(module) as given:
        module.scale.data = module.scale.to(torch.float64) * 2
        module.done = True
    assert given.whole and module.done is False
    assert module.scale.dtype == torch.float32 and module.scale.tolist() == [1.0, 1.0]
    assert torch.equal(module.q.int_repr(), quantized.int_repr())


class _CountsInInference(nn.Module):
    """A counter buffer made, and moved by the forward, under inference mode."""

    calls: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        with torch.inference_mode():
            self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            self.calls.add_(1)
        return x


def test_a_buffer_made_under_inference_mode_is_given_back_there() -> None:
    """Written back outside inference mode, it raised "Inplace update to inference tensor
    outside InferenceMode": an internal error (exit 3) of inspect and data init (t131)."""
    from wnpass.fx.forward import state_given_back

    model = _CountsInInference()
    with state_given_back(model):
        model(torch.ones(1))
    assert int(model.calls) == 0


def test_a_write_through_an_old_alias_after_data_is_assigned_is_never_given_back_wrong() -> None:
    """``w.data = w.data * 2``, then a write through an alias of the old elements: the copy
    made at that write was of the new elements, and the take-down gave it back over the old
    ones, so the weight came back doubled, called whole (t249). No copy of it as it was can
    be made then: the state is kept, and said."""
    module: Any = nn.Linear(2, 2)
    old, weight = module.weight.data, module.weight.detach().clone()
    with torch.no_grad(), state_given_back(module, undo_building=True) as given:
        module.weight.data = module.weight.data * 2
        old.mul_(0.5)
    assert not given.whole or torch.equal(module.weight, weight)
    assert not torch.equal(module.weight, weight * 2)


def test_parameter_prints_are_crc32_of_every_byte_read_in_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A parameter's print is the CRC-32 of all its bytes, however many chunks it is read in
    (a GPU's copied to the host a chunk at a time); one swap of two rows changes it (a sum of
    the bytes, tried for other devices, would not see it: t254); a wrapper's or a sparse
    one's are its parts', one with PyTorch's negation bit its values' (it raised: t254)."""
    weight = torch.randn(6, 5)
    whole = zlib.crc32(weight.numpy().tobytes())
    monkeypatch.setattr(forward, "_PRINT_CHUNK", 7)
    layer = nn.Linear(5, 6)
    layer.weight = nn.Parameter(weight.clone())
    assert forward.parameter_prints(layer)["weight"] == whole
    with torch.no_grad():
        layer.weight[[0, 1]] = layer.weight[[1, 0]].clone()
    assert forward.parameter_prints(layer)["weight"] != whole
    layer.weight = nn.Parameter(torch.complex(torch.zeros(6, 5), weight).conj().imag)
    assert layer.weight.is_neg()
    assert forward.parameter_prints(layer)["weight"] == zlib.crc32((-weight).numpy().tobytes())
    sparse = torch.randn(4, 4).to_sparse()
    before = forward._print(sparse)
    assert isinstance(before, tuple) and len(before) == 2  # its indices' and values'
    sparse._values().mul_(2)
    assert forward._print(sparse) != before
