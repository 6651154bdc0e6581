"""fold_weight_norm: plain weights in place, whatever put weight norm there, outputs kept."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.nn.utils import parametrizations
from torch.nn.utils.weight_norm import WeightNorm

from tests.fx.helpers import SharedBlock
from wnpass import apply_weight_norm
from wnpass.errors import InvalidArgumentError
from wnpass.fx.fold import fold_weight_norm

# Folding rounds g*v/||v|| once from float64 where PyTorch's forward rounds in float32 at each
# step: weights differ by ~1 float32 ulp, outputs of these shallow models by ~1e-7 relative.
RTOL = 1e-5


def legacy(module: nn.Module, dim: int | None = 0) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(module, dim=dim)  # type: ignore[arg-type]  # None: whole


def expected_weight(g: torch.Tensor, v: torch.Tensor, dim: int | None) -> torch.Tensor:
    v64, g64 = v.double(), g.double()
    dims = [d for d in range(v.dim()) if d != dim] if dim is not None else list(range(v.dim()))
    return (g64 * v64 / v64.pow(2).sum(dims, keepdim=True).sqrt()).float()


@pytest.mark.parametrize(
    ("make", "dim"),
    [
        (lambda: nn.Linear(8, 5), 0),
        (lambda: nn.Linear(8, 5), None),
        (lambda: nn.Conv1d(4, 6, 3), 0),
        (lambda: nn.ConvTranspose1d(6, 4, 4, stride=2), 0),
        (lambda: nn.ConvTranspose1d(6, 4, 4, stride=2), 1),
        (lambda: nn.Conv1d(8, 8, 5, groups=2), 2),
    ],
)
@pytest.mark.parametrize("api", ["parametrization", "legacy hook"])
def test_every_api_and_dim_folds_to_the_exact_weight(make, dim, api: str) -> None:
    torch.manual_seed(0)
    module = make()
    wrapped: Any = (
        parametrizations.weight_norm(module, dim=dim)
        if api == "parametrization"
        else legacy(module, dim)
    )
    x = (
        torch.randn(2, 8)
        if isinstance(module, nn.Linear)
        else torch.randn(2, module.in_channels, 12)
    )
    with torch.no_grad():
        before = wrapped(x)
    if api == "parametrization":
        g, v = wrapped.parametrizations.weight.original0, wrapped.parametrizations.weight.original1
    else:
        g, v = wrapped.weight_g, wrapped.weight_v
    exact = expected_weight(g.detach(), v.detach(), dim)
    report = fold_weight_norm(wrapped)
    assert report and report.folded == 1 and report.sites[0].api == api
    assert report.sites[0].dim == dim and report.sites[0].name == "weight"
    assert not parametrize.is_parametrized(wrapped) and not wrapped._forward_pre_hooks
    assert set(wrapped.state_dict()) == {"weight", "bias"}
    assert isinstance(wrapped.weight, nn.Parameter) and wrapped.weight.requires_grad
    assert torch.equal(wrapped.weight.data, exact)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), before, rtol=RTOL, atol=RTOL * before.abs().max())


def test_a_model_mixing_both_apis_and_a_plain_layer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        parametrizations.weight_norm(nn.Linear(6, 8)),
        nn.ReLU(),
        legacy(nn.Linear(8, 8)),
        nn.Linear(8, 2),
    )
    x = torch.randn(4, 6)
    with torch.no_grad():
        before = model(x)
    report = fold_weight_norm(model)
    assert [(s.name, s.api) for s in report.sites] == [
        ("0.weight", "parametrization"),
        ("2.weight", "legacy hook"),
    ]
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=RTOL, atol=1e-6)
    assert sorted(model.state_dict()) == sorted(
        ["0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"]
    )


def test_nothing_to_fold_is_reported_as_such() -> None:
    report = fold_weight_norm(nn.Sequential(nn.Linear(3, 3)))
    assert report and report.folded == 0 and report.sites == []


def test_folding_a_deep_copy_leaves_the_original_working() -> None:
    """PyTorch shares a parametrized module's class between a deepcopy and its original."""
    torch.manual_seed(0)
    original = nn.Sequential(parametrizations.weight_norm(nn.Linear(4, 4)))
    x = torch.randn(1, 4)
    before = original(x).detach()
    fold_weight_norm(copy.deepcopy(original))
    assert parametrize.is_parametrized(original[0])
    torch.testing.assert_close(original(x), before)


def test_a_stacked_parametrization_is_left_alone_with_the_reason() -> None:
    class Double(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return 2 * w

    module = parametrizations.weight_norm(nn.Linear(4, 4))
    parametrize.register_parametrization(module, "weight", Double())
    report = fold_weight_norm(module)
    assert not report and report.sites[0].reason == "stacked with other parametrizations"
    assert parametrize.is_parametrized(module)


class _Twice(parametrizations._WeightNorm):
    """A weight norm of its own: twice PyTorch's."""

    def forward(self, weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(weight_g, weight_v)


class _Double(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return 2 * w


def _g_of_a_vector(layer: Any) -> None:
    layer.weight_g = nn.Parameter(layer.weight_g.detach().reshape(-1))


def _g_of_float64(layer: Any) -> None:
    originals = layer.parametrizations.weight
    originals.original0 = nn.Parameter(originals.original0.detach().double())


def _below_another(layer: nn.Module) -> None:
    parametrize.register_parametrization(layer, "weight", _Double())
    parametrizations.weight_norm(layer)


def _subclass(layer: nn.Module) -> None:
    parametrize.register_parametrization(layer, "weight", _Twice(0), unsafe=True)


class _TwiceHook(WeightNorm):
    """A legacy weight-norm hook of its own: twice PyTorch's."""

    def compute_weight(self, module: nn.Module) -> Any:
        return 2 * super().compute_weight(module)


def _hook_subclass(layer: nn.Module) -> None:
    legacy(layer)
    key, hook = next(iter(layer._forward_pre_hooks.items()))
    assert isinstance(hook, WeightNorm)
    layer._forward_pre_hooks[key] = _TwiceHook(hook.name, hook.dim)


@pytest.mark.parametrize(
    ("held", "reason"),
    [
        (_g_of_a_vector, "g has shape [4], not [4, 1]: weight norm over axis 0 of v [4, 3]"),
        (lambda layer: layer.to(torch.complex64), "g is complex64, not a float type that is"),
        (_g_of_float64, "g is float64 and v float32: PyTorch makes no weight of one dtype"),
        (_below_another, "stacked with other parametrizations"),
        (_subclass, "its parametrization _Twice is a subclass of PyTorch's weight norm"),
        (_hook_subclass, "its hook _TwiceHook is a subclass of PyTorch's weight norm"),
    ],
    ids=["g of a vector", "complex", "g of float64", "below another", "a subclass", "a hook's"],
)
def test_a_site_held_otherwise_than_weight_norm_holds_it_is_declined_first(
    held: Any, reason: str
) -> None:
    """t214: a g reshaped to a vector was folded per column (PyTorch's forward takes it per
    row) and "folded"; complex values and a float64 g raised mid-fold, the first layer folded;
    a parametrization below weight norm raised AttributeError; a subclass computing twice the
    weight was folded as weight norm. Each is declined before anything is folded."""
    torch.manual_seed(0)
    first = parametrizations.weight_norm(nn.Linear(3, 3))
    second = nn.Linear(3, 4)
    if held is _g_of_a_vector:
        legacy(second)
    elif held not in (_below_another, _subclass, _hook_subclass):
        parametrizations.weight_norm(second)
    held(second)
    model = nn.Sequential(first, second)
    keys = list(model.state_dict())
    report = fold_weight_norm(model)
    assert [(site.name, site.status) for site in report.sites] == [
        ("0.weight", "folded"),
        ("1.weight", "declined"),
    ]
    assert reason in (report.sites[1].reason or "")
    after = list(model.state_dict())
    assert sorted(k for k in after if k.startswith("0.")) == ["0.bias", "0.weight"]
    assert [k for k in after if k.startswith("1.")] == [k for k in keys if k.startswith("1.")]


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_one_g_of_any_shape_folds_a_single_unit(shape: tuple[int, ...]) -> None:
    """A layer of one output unit takes any g of one element alike (t216: g of shape [] was
    declined as not [1, 1])."""
    layer = parametrizations.weight_norm(nn.Linear(4, 1))
    originals: Any = layer.parametrizations.weight
    originals.original0 = nn.Parameter(torch.tensor(1.5).reshape(shape))
    x = torch.randn(3, 4)
    before = layer(x)
    assert fold_weight_norm(layer).folded == 1
    torch.testing.assert_close(layer(x), before, rtol=RTOL, atol=0)


class _ShipsWeightNorm(nn.Module):
    """A model built with weight norm of its own (as HuBERT's positional convolution, under
    either PyTorch API), and a plain layer."""

    def __init__(self) -> None:
        super().__init__()
        self.own = parametrizations.weight_norm(nn.Conv1d(4, 4, 3, padding=1), dim=2)
        self.old = legacy(nn.Conv1d(4, 4, 1))
        self.head = nn.Conv1d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.old(self.own(x))))


def test_added_only_folds_what_apply_weight_norm_added() -> None:
    """t218: the fold folded a model's own weight norm too (HuBERT's positional convolution,
    EnCodec's convolutions): its state dict had keys from_pretrained cannot load (outputs NaN
    after a reload). ``added_only=True`` keeps those, said so, and gives the keys back."""
    torch.manual_seed(0)
    model, x = _ShipsWeightNorm(), torch.randn(2, 4, 8)
    built = list(model.state_dict())
    report = apply_weight_norm(model, (x,))
    assert [s.name for s in report.sites if s.status == "applied"] == ["head.weight"]
    before = model(x)
    folded = fold_weight_norm(model, added_only=True)
    assert [(s.name, s.status) for s in folded.sites] == [
        ("own.weight", "kept"),
        ("old.weight", "kept"),
        ("head.weight", "folded"),
    ]
    assert folded and folded.sites[0].reason == (
        "the model's own weight norm, not added by apply_weight_norm (added_only=True keeps it)"
    )
    assert list(model.state_dict()) == built
    torch.testing.assert_close(model(x), before, rtol=RTOL, atol=1e-6)
    every = fold_weight_norm(model)  # the rest, for deployment
    assert [(s.name, s.status) for s in every.sites] == [
        ("own.weight", "folded"),
        ("old.weight", "folded"),
    ]
    with pytest.raises(InvalidArgumentError, match="added_only"):
        fold_weight_norm(model, added_only="yes")  # type: ignore[arg-type]


def test_a_folded_weight_is_trainable_where_g_was() -> None:
    """A frozen v and a trained g (the gains alone fine-tuned) gave a frozen weight (t214)."""
    layer = parametrizations.weight_norm(nn.Linear(4, 3))
    layer.parametrizations.weight.original1.requires_grad_(False)
    fold_weight_norm(layer)
    assert layer.weight.requires_grad
    frozen = parametrizations.weight_norm(nn.Linear(4, 3))
    frozen.requires_grad_(False)
    fold_weight_norm(frozen)
    assert not frozen.weight.requires_grad


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        ("zero unit", "v has a unit with zero norm (PyTorch computes NaN there)"),
        ("nan g", "NaN or Inf in g or v"),
        ("inf g", "NaN or Inf in g or v"),
    ],
)
@pytest.mark.parametrize("api", ["parametrization", "legacy hook"])
def test_values_with_no_finite_weight_are_declined_and_left_weight_normed(
    spoil: str, reason: str, api: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A unit of v that is all zero (pruned), or g with NaN or Inf: the weight would be NaN or
    Inf, so the site is declined with the reason and a warning, as the checkpoint and ONNX
    folds decline it, and the module keeps its weight norm and its tensors."""
    conv = nn.Conv1d(4, 6, 3)
    module = parametrizations.weight_norm(conv) if api == "parametrization" else legacy(conv)
    pair = dict(module.named_parameters())
    g, v = (
        (pair["parametrizations.weight.original0"], pair["parametrizations.weight.original1"])
        if api == "parametrization"
        else (pair["weight_g"], pair["weight_v"])
    )
    with torch.no_grad():
        if spoil == "zero unit":
            v[2].zero_()
        else:
            g[2] = float("nan") if spoil == "nan g" else float("inf")
    before = {k: t.clone() for k, t in module.state_dict().items()}
    report = fold_weight_norm(module)
    assert not report and [(s.status, s.reason) for s in report.sites] == [("declined", reason)]
    assert f"not folding weight: {reason}" in caplog.text
    after = module.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k].nan_to_num(), t.nan_to_num()) for k, t in before.items())


@pytest.mark.parametrize("api", ["parametrization", "legacy hook"])
def test_g_and_v_of_a_wrapping_tensor_subclass_are_declined(api: str) -> None:
    """A DTensor (FSDP2's ``fully_shard``) or any tensor subclass wrapping others: the fold
    raised ".numpy() is not supported for tensor subclasses" (an internal error, t226)."""
    from torch.testing._internal.two_tensor import TwoTensor

    conv = nn.Conv1d(4, 6, 3)
    conv.weight = nn.Parameter(TwoTensor(torch.randn(6, 4, 3), torch.randn(6, 4, 3)))
    module = parametrizations.weight_norm(conv) if api == "parametrization" else legacy(conv)
    before = list(module.state_dict())
    report = fold_weight_norm(module)
    assert [(s.status, s.reason) for s in report.sites] == [
        (
            "declined",
            "g or v is a TwoTensor (a tensor subclass wrapping others): the fold computes plain "
            "tensors (a DTensor's full_tensor() is one)",
        )
    ]
    assert list(module.state_dict()) == before


def test_a_folded_rewritten_model_copies_and_pickles_as_a_plain_one() -> None:
    """After apply_weight_norm then fold: deepcopy and pickle work and give plain modules."""
    import pickle

    from wnpass import apply_weight_norm

    model, x = nn.Sequential(nn.Linear(3, 4), nn.LSTM(4, 4)), torch.randn(2, 3)
    apply_weight_norm(model, (x,))
    fold_weight_norm(model)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert not any(parametrize.is_parametrized(m) for m in clone.modules())
        assert type(clone[0]) is nn.Linear
        assert torch.equal(clone(x)[0], model(x)[0])


def test_a_folded_pytorch_weight_norm_keeps_no_renaming_hook_and_pickles() -> None:
    """PyTorch's own ``weight_norm`` (transformers' wav2vec2 ``pos_conv``) puts a key-renaming
    load-state-dict hook on the module, a local function: left on after the fold, it made
    ``torch.save(model)`` fail (t95), and renamed a plain weight's legacy ``_g``/``_v`` keys
    to a parametrization the module no longer has. The fold takes it off; another weight's
    hook stays."""
    import pickle

    lstm: Any = nn.LSTM(4, 4)
    for name in ("weight_ih_l0", "weight_hh_l0"):
        parametrizations.weight_norm(lstm, name)
    with torch.no_grad():  # a zero unit: weight_hh_l0 is declined, and keeps its hook
        lstm.parametrizations.weight_hh_l0.original1[0].zero_()
    assert len(lstm._load_state_dict_pre_hooks) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the declined site's warning
        fold_weight_norm(lstm)
    kept: Any
    (kept,) = lstm._load_state_dict_pre_hooks.values()
    assert kept.hook.__code__.co_name == "_weight_norm_compat_hook"
    assert kept.hook.__closure__ is not None
    assert "weight_hh_l0" in [c.cell_contents for c in kept.hook.__closure__]
    plain = nn.Conv1d(4, 4, 3, bias=False)
    parametrizations.weight_norm(plain, dim=2)
    fold_weight_norm(plain)
    assert not plain._load_state_dict_pre_hooks
    clone = pickle.loads(pickle.dumps(plain))
    x = torch.randn(1, 4, 8)
    assert torch.equal(clone(x), plain(x))


def test_one_module_under_several_names_folds_once() -> None:
    """A weight-normed module shared under four names is one site; the fold keeps it shared."""
    torch.manual_seed(0)
    model, x = SharedBlock(), torch.randn(2, 16)
    apply_weight_norm(model, (x,))
    before = model(x)
    report = fold_weight_norm(model)
    assert [site.name for site in report.sites] == ["blocks.0.weight", "head.weight"] and report
    assert model.blocks[0] is model.blocks[2] is model.alias
    assert not parametrize.is_parametrized(model.alias)
    assert float(((model(x) - before).abs().max() / before.abs().max()).detach()) <= RTOL


def test_a_folded_model_has_none_of_wnpass_hooks_left() -> None:
    """fold_weight_norm left the RNN cache hooks on a folded LSTM (torch.jit.script then
    failed: "Couldn't find method: 'forward'") and the legacy-key renaming hook on every folded
    module: the folded model is now as plain as the model before apply_weight_norm."""
    torch.manual_seed(0)
    model, x = nn.LSTM(4, 3, batch_first=True), torch.randn(2, 5, 4)
    plain_hooks = (dict(model._forward_pre_hooks), dict(model._forward_hooks))
    plain_load_hooks = dict(model._load_state_dict_pre_hooks)
    apply_weight_norm(model, x)
    model(x)
    fold_weight_norm(model)
    assert (dict(model._forward_pre_hooks), dict(model._forward_hooks)) == plain_hooks
    assert dict(model._load_state_dict_pre_hooks) == plain_load_hooks
    assert not model._forward_hooks_always_called and "_wnpass_cache_entered" not in vars(model)
    torch.jit.script(model)  # as for a plain LSTM (calling either fails in torch 2.13)


def test_a_compiled_layer_inside_a_model_folds_under_its_own_name() -> None:
    """``torch.compile``'s wrapper shows its layer's parametrizations as its own: fold took
    the wrapper for the layer and PyTorch raised AttributeError removing them."""
    torch.manual_seed(0)
    layer = parametrizations.weight_norm(nn.Linear(4, 8))
    compiled: Any = torch.compile(layer, backend="eager")  # an nn.Module: OptimizedModule
    model = nn.Sequential(compiled, nn.Linear(8, 3))
    x = torch.randn(5, 4)
    before = model(x).detach()
    report = fold_weight_norm(model)
    assert [(s.name, s.status) for s in report.sites] == [("0._orig_mod.weight", "folded")]
    assert not parametrize.is_parametrized(layer)
    assert float(((model(x) - before).abs().max() / before.abs().max()).detach()) <= RTOL


def test_a_stacked_site_is_declined_by_the_fold_and_by_the_check_alike() -> None:
    """A legacy weight norm whose ``weight_v`` is spectral-normed crashed the fold half-way
    (``KeyError: 'weight_v'``, weight_g already gone: exit 3), and a weight-norm
    parametrization stacked with another was declined by the fold but "kept" by the check of
    --keep-weight-norm (deployable one way, not the other)."""
    from torch.nn.utils.parametrizations import spectral_norm, weight_norm

    from wnpass.fx.fold import check_weight_norm

    torch.manual_seed(0)
    legacy = torch.nn.utils.weight_norm(nn.Linear(4, 3))
    spectral_norm(legacy, "weight_v")
    stacked = spectral_norm(weight_norm(nn.Linear(4, 3)))
    x = torch.randn(2, 4)
    for model in (legacy, stacked):  # in training mode: reading v must not update it
        state = {k: t.clone() for k, t in model.state_dict().items()}
        for report in (check_weight_norm(model), fold_weight_norm(model)):
            assert [(s.status, s.reason) for s in report.sites] == [
                ("declined", "stacked with other parametrizations")
            ]
        after = model.state_dict()
        assert list(after) == list(state)  # left as it was, buffers and all
        assert all(torch.equal(after[k], t) for k, t in state.items())
        model.eval()
        before = model(x)
        fold_weight_norm(model)
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)


@pytest.mark.parametrize("inner", ["parametrization on weight_g", "legacy hook on weight_v"])
def test_a_legacy_site_whose_g_or_v_is_weight_normed_itself_is_declined(inner: str) -> None:
    """Weight norm on a legacy site's ``weight_g`` (a parametrization of two originals) or its
    ``weight_v`` (a second legacy hook, whose result is no parameter) crashed the fold and the
    check (``AttributeError: ... no attribute 'original'``, ``KeyError: 'weight_v'`` after
    ``weight_g`` was gone: exit 3 from export, t110). The outer site is declined as stacked,
    the inner one folds, and the model computes what it did."""
    from torch.nn.utils.parametrizations import weight_norm

    from wnpass.fx.fold import check_weight_norm

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.nn.utils.weight_norm(nn.Conv1d(4, 6, 3))
        if inner == "parametrization on weight_g":
            weight_norm(model, "weight_g")
            inner_name = "weight_g"
        else:
            torch.nn.utils.weight_norm(model, "weight_v")
            inner_name = "weight_v"
    x = torch.randn(2, 4, 9)
    before = model(x).detach()
    stacked = ("weight", "declined", "stacked with other parametrizations")
    checked = check_weight_norm(model)
    assert sorted((s.name, s.status, s.reason) for s in checked.sites) == sorted(
        [stacked, (inner_name, "kept", None)]
    )
    report = fold_weight_norm(model)
    assert sorted((s.name, s.status, s.reason) for s in report.sites) == sorted(
        [stacked, (inner_name, "folded", None)]
    )
    assert isinstance(model._parameters[inner_name], nn.Parameter)
    torch.testing.assert_close(model(x), before, rtol=RTOL, atol=1e-6)


def test_a_torchscript_submodule_is_left_as_it_is_and_the_rest_folds() -> None:
    """A traced layer beside a weight-normed one: the fold, the check and so export raised an
    AttributeError (a TorchScript module's ``_modules`` has no ``get``), after folding the
    layers before it."""
    from wnpass.fx.fold import check_weight_norm

    torch.manual_seed(0)
    x = torch.randn(5, 8)
    model = nn.Sequential(nn.Linear(8, 16), torch.jit.trace(nn.Linear(16, 3), torch.randn(5, 16)))
    parametrizations.weight_norm(model[0])
    before = model(x)
    assert [site.status for site in check_weight_norm(model).sites] == ["kept"]
    report = fold_weight_norm(model)
    assert [(site.name, site.status) for site in report.sites] == [("0.weight", "folded")]
    assert not parametrize.is_parametrized(model[0])
    torch.testing.assert_close(model(x), before, rtol=RTOL, atol=0)


def test_a_fold_that_fails_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every site is judged before any is folded: a failure judging the second layer left the
    first one folded."""
    import wnpass.fx.fold as fold_module

    model = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 3))
    for layer in model:
        parametrizations.weight_norm(layer)
    judged, calls = fold_module._judged, []

    def fails_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("judging failed")
        return judged(*args, **kwargs)

    monkeypatch.setattr(fold_module, "_judged", fails_second)
    with pytest.raises(RuntimeError, match="judging failed"):
        fold_weight_norm(model)
    assert all(parametrize.is_parametrized(layer) for layer in model)


def test_check_values_must_be_a_flag() -> None:
    from wnpass import WnpassError

    with pytest.raises(WnpassError, match="check_values must be True or False, not 'no'"):
        fold_weight_norm(nn.Linear(2, 2), check_values="no")  # type: ignore[arg-type]


def test_apply_then_fold_keeps_the_order_of_the_parameters() -> None:
    """PyTorch appends a weight made plain again after the other parameters: ``weight, bias``
    came back as ``bias, weight``, and an optimizer state saved from the plain model no longer
    lined up (its next step raised a size mismatch; t54)."""

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.lstm = nn.LSTM(4, 4, num_layers=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(self.lin(x))[0]

    model = Model()
    before = [name for name, _ in model.named_parameters()]
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(3, 2, 4)).sum().backward()
    optimizer.step()
    saved = optimizer.state_dict()
    assert apply_weight_norm(model, torch.randn(3, 2, 4)).applied == 5
    fold_weight_norm(model)
    assert [name for name, _ in model.named_parameters()] == before
    assert list(model.state_dict()) == before
    assert not any("wnpass" in key for m in model.modules() for key in vars(m))
    optimizer = torch.optim.Adam(model.parameters())
    optimizer.load_state_dict(saved)
    model(torch.randn(3, 2, 4)).sum().backward()
    optimizer.step()  # the saved moments line up with the parameters again
