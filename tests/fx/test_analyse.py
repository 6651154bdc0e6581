"""Site analysis: the output-unit axis per op, and the reason for every parameter left alone."""

from __future__ import annotations

import copy
import logging
import re
import weakref
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from tests.fx.helpers import Functional, SharedBlock
from wnpass import apply_weight_norm
from wnpass.errors import InvalidArgumentError
from wnpass.fx.analyse import NOT_INITIALIZED, analyse_sites
from wnpass.fx.attributes import GlobalHooks
from wnpass.fx.axes import HOOKED, TRAINING_WRITE
from wnpass.fx.report import ParamSite
from wnpass.fx.trace import Tracer


def plan(model: nn.Module, inputs: tuple | None = None, **options) -> dict[str, ParamSite]:
    sites, _, _ = analyse_sites(model, inputs, **options)
    return {site.name: site for site in sites}


def test_layers_get_their_unit_axis() -> None:
    """Linear and (grouped) Conv: axis 0; bias and 1-D parameters skipped with a reason."""
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, groups=2), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 2)
    )
    sites = plan(model)
    assert sites["0.weight"].axis == 0 and sites["0.weight"].status == "planned"
    assert sites["3.weight"].axis == 0 and sites["0.bias"].reason == "bias"
    assert sites["1.weight"].status == "skipped" and "1-D" in (sites["1.weight"].reason or "")


def test_conv_transpose_per_output_unit_or_torch_dim() -> None:
    """ConvTranspose: axis 1 by default, 0 with dim_policy='torch'; grouped declined for 'unit'
    unless depthwise (one input and one output channel per group: axis 0)."""
    model = nn.Sequential(
        nn.ConvTranspose1d(4, 6, 3),
        nn.ConvTranspose1d(6, 4, 3, groups=2),
        nn.ConvTranspose1d(4, 4, 3, groups=4),
    )
    unit, torch_dims = plan(model), plan(model, dim_policy="torch")
    assert unit["0.weight"].axis == 1 and torch_dims["0.weight"].axis == 0
    assert unit["1.weight"].status == "skipped" and "groups=2" in (unit["1.weight"].reason or "")
    assert torch_dims["1.weight"].status == "planned" and torch_dims["1.weight"].axis == 0
    assert (unit["2.weight"].status, unit["2.weight"].axis) == ("planned", 0)


def test_layout_reads_are_not_uses_when_traced() -> None:
    """torch.fx: ``w.shape``, ``w.size()`` and ``w.dim()`` read the layout; the conv is the use."""

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 1, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = self.w
            pad = w.shape[-1] + w.size(-1) - w.dim() - 1
            return F.conv1d(x, w, padding=pad, groups=2)

    sites, mode, _ = analyse_sites(Model())
    assert mode == "fx"
    site = {s.name: s for s in sites}["w"]
    assert (site.status, site.axis) == ("planned", 0), site.reason


def test_a_compiled_submodule_is_traced_as_the_module_it_compiles() -> None:
    """torch.fx refuses dynamo's wrapper: without example inputs the whole model was read by
    module types only, so the compiled block's ``x @ W`` (a weight of no layer) was left out."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(8, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.w

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(5, 8)
            self.b: Any = torch.compile(Block(), backend="eager")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.tanh(self.a(x)))

    sites, mode, _ = analyse_sites(Model())
    assert mode == "fx"
    site = {s.name: s for s in sites}["b._orig_mod.w"]
    assert (site.status, site.axis, site.op) == ("planned", 1, "matmul"), site.reason


def test_functional_uses() -> None:
    """F.linear -> 0, x @ W -> last axis, W @ x -> 0, elementwise use skipped."""
    sites = plan(Functional())
    assert (sites["w_linear"].axis, sites["w_linear"].op) == (0, "F.linear")
    assert (sites["w_right"].axis, sites["w_right"].op) == (1, "matmul")
    assert sites["w_left"].axis == 0
    assert sites["scale"].status == "skipped" and "elementwise" in (sites["scale"].reason or "")


def test_addmm_and_functional_conv() -> None:
    """addmm(b, x, W): W (in, out) at the last axis, b a bias; F.conv1d weight at axis 0."""

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 5))
            self.b = nn.Parameter(torch.randn(5))
            self.k = nn.Parameter(torch.randn(2, 1, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.addmm(self.b, x, self.w)
            return F.conv1d(y.unsqueeze(1), self.k)

    sites = plan(Model())
    assert sites["w"].axis == 1 and sites["b"].reason == "bias" and sites["k"].axis == 0


def test_embeddings_are_opt_in() -> None:
    """nn.Embedding and F.embedding: skipped unless embeddings=True, then per row."""

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.table = nn.Parameter(torch.randn(10, 4))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.emb(ids) + F.embedding(ids, self.table)

    off, on = plan(Model()), plan(Model(), embeddings=True)
    assert off["emb.weight"].status == off["table"].status == "skipped"
    assert "opt-in" in (off["emb.weight"].reason or "")
    assert on["emb.weight"].axis == on["table"].axis == 0


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU, nn.RNN])
def test_rnns_every_layer_and_direction(kind: Any) -> None:
    """All weight_ih/weight_hh of every layer and direction at axis 0; biases skipped."""
    rnn = kind(4, 6, num_layers=2, bidirectional=True)
    sites = plan(nn.Sequential(rnn))
    weights = [n for n in sites if ".weight_" in n]
    assert len(weights) == 8 and all(sites[n].axis == 0 for n in weights)
    assert "0.weight_hh_l1_reverse" in weights
    assert all(sites[n].reason == "bias" for n in sites if ".bias_" in n)


def test_multihead_attention() -> None:
    """MHA: packed in_proj_weight and out_proj.weight at axis 0; biases skipped."""
    sites = plan(nn.Sequential(nn.MultiheadAttention(8, 2)))
    assert sites["0.in_proj_weight"].axis == 0 and sites["0.out_proj.weight"].axis == 0
    assert sites["0.in_proj_bias"].status == "skipped"


def test_tied_weights_are_skipped_not_untied() -> None:
    """One tensor used by an Embedding and a head: skipped with the other name."""

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.emb(ids))

    site = plan(Tied(), embeddings=True)["emb.weight"]
    assert site.status == "skipped" and "tied weight (also head.weight)" in (site.reason or "")


class _BufferToo(nn.Module):
    """``lin.weight`` registered as a buffer of another module too."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.other = nn.Module()
        self.other.register_buffer("w", self.lin.weight)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lin(x) + x @ self.other.get_buffer("w").t())


class _InAList(nn.Module):
    """A hand-written RNN cell keeping its weights in a list (as ``nn.RNNBase`` keeps its
    ``_flat_weights``) and a transposed view of one as a plain attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.w_ih = nn.Parameter(torch.randn(16, 8) * 0.3)
        self.w_hh = nn.Parameter(torch.randn(16, 16) * 0.3)
        self.flat = [self.w_ih, self.w_hh]
        self.head = nn.Linear(16, 2)
        self.head_t = self.head.weight.detach().t()  # shares head.weight's elements

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], 16)
        w_ih, w_hh = self.flat
        for t in range(x.shape[1]):
            h = torch.tanh(F.linear(x[:, t], w_ih) + F.linear(h, w_hh))
        return h @ self.head_t + self.head.bias


def test_a_weight_a_buffer_or_a_plain_attribute_also_holds_is_tied() -> None:
    """Weight norm replaced the parameter on its module only: a buffer holding it kept the old
    tensor (stale after a step, saved beside g and v), and a list holding it made the forward
    read the old tensor (no gradient reached g and v); both were "applied", ok (t54)."""
    sites = plan(_BufferToo(), (torch.randn(4, 8),))
    untie = "one weight norm would untie it"
    assert sites["lin.weight"].status == "skipped"
    assert sites["lin.weight"].reason == f"tied weight (also other.w): {untie}"
    assert sites["head.weight"].status == "planned"
    sites = plan(_InAList(), (torch.randn(2, 5, 8),))
    assert [sites[n].reason for n in ("w_ih", "w_hh", "head.weight")] == [
        f"tied weight (also {other}): {untie}" for other in ("flat[0]", "flat[1]", "head_t")
    ]


def test_an_rnn_s_own_flat_weights_are_no_other_holder() -> None:
    sites = plan(nn.LSTM(4, 6), (torch.randn(3, 2, 4),))
    assert sites["weight_ih_l0"].status == sites["weight_hh_l0"].status == "planned"


def test_one_parameter_two_different_ops_is_skipped() -> None:
    """A weight used by F.linear and elementwise: skipped with both facts."""

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, self.w) * self.w.sum()

    site = plan(Model())["w"]
    assert site.status == "skipped" and "sum" in (site.reason or "")


def test_layers_already_weight_normed_by_either_api() -> None:
    """parametrizations.weight_norm and the legacy hook: 'already', with their dim."""
    legacy = torch.nn.utils.weight_norm(nn.Linear(3, 4))
    new = parametrizations.weight_norm(nn.Conv1d(4, 2, 3), dim=2)
    sites = plan(nn.Sequential(legacy, nn.Unflatten(1, (4, 1)), new))
    assert sites["0.weight"].status == "already" and "legacy" in (sites["0.weight"].reason or "")
    assert sites["2.weight"].status == "already" and sites["2.weight"].axis == 2
    assert not any("original" in name or name.endswith("_g") for name in sites)


@pytest.mark.parametrize("inputs", [None, (torch.randn(3, 4),)], ids=["traced", "observed"])
def test_layers_under_spectral_norm_by_either_api_are_left_alone(inputs: tuple | None) -> None:
    """The legacy spectral_norm hook computes the weight from weight_orig each forward: that
    weight_orig got weight norm, while the parametrized spectral norm was skipped. Both are."""
    torch.manual_seed(0)
    legacy = torch.nn.utils.spectral_norm(nn.Linear(4, 4))
    new = parametrizations.spectral_norm(nn.Linear(4, 2))
    model = nn.Sequential(legacy, nn.Tanh(), new)
    sites = plan(model, inputs)
    for name, kind in (("0.weight", "legacy spectral_norm hook"), ("2.weight", "_SpectralNorm")):
        assert (sites[name].status, sites[name].reason) == (
            "skipped",
            f"already parametrized ({kind})",
        )
    assert not any("orig" in name for name in sites)
    report = apply_weight_norm(model, inputs)
    assert report.applied == 0 and not parametrize.is_parametrized(legacy)


@pytest.mark.parametrize("inputs", [None, (torch.randn(2, 4, dtype=torch.cfloat),)])
def test_complex_parameters_are_left_alone(inputs: tuple | None) -> None:
    """PyTorch's weight norm has no complex kernel: a complex weight got weight norm, and the
    check's forward then failed as if the model's own forward had raised."""
    model = nn.Linear(4, 3, dtype=torch.cfloat)
    sites = plan(model, inputs)
    for name in ("weight", "bias"):
        assert sites[name].status == "skipped"
        assert (
            sites[name].reason
            == "complex64 parameter: weight norm needs a real floating-point weight"
        )
    report = apply_weight_norm(model, inputs)
    assert report.applied == 0 and report.status == "nothing applied"
    assert not parametrize.is_parametrized(model)


def test_an_include_of_types_that_selects_nothing_is_refused() -> None:
    """``--include-type Conv2d`` on an MLP (a slip for GPT-2's ``Conv1D`` as ``Conv1d``) wrote
    the model unchanged as ok ("nothing selected", t105). An include that selects no
    parameter at all is refused; a type the model lacks among others is not (a list written
    for many models), nor is an exclude of one (it keeps nothing out)."""
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with pytest.raises(InvalidArgumentError) as caught:
        apply_weight_norm(model, include=[nn.Conv2d, nn.Conv1d])
    assert str(caught.value) == (
        "include Conv2d, Conv1d selects no parameter: no layer of the model holding one is of "
        "that type or inside one"
    )
    assert caught.value.parameter == "include" and not parametrize.is_parametrized(model)
    assert apply_weight_norm(copy.deepcopy(model), include=[nn.Conv2d, nn.Linear]).applied == 1
    assert apply_weight_norm(model, exclude=nn.Conv2d).applied == 1


def test_an_empty_include_is_refused_an_empty_exclude_keeps_nothing_out() -> None:
    """``include=[]`` (a list a filter left empty) normed every weight and said ok, as None
    does (t140): an include of no pattern selects nothing, and is refused as one that
    matches nothing is."""
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    empties: tuple[list[str], tuple[str, ...]] = ([], ())
    for include in empties:
        with pytest.raises(InvalidArgumentError) as caught:
            apply_weight_norm(model, (torch.randn(2, 3),), include=include)
        assert (
            str(caught.value)
            == "include is empty: it selects no parameter (None selects every one)"
        )
        assert not parametrize.is_parametrized(model)
    assert apply_weight_norm(model, (torch.randn(2, 3),), exclude=[]).applied == 1


def test_the_op_a_models_own_layer_calls_selects_it() -> None:
    """GPT-2's ``Conv1D`` is shown as ``Conv1D (addmm)``, and the README names ``addmm`` as its
    op, but ``--include addmm`` was refused as selecting nothing (t105): the op inside the
    parentheses, and each of several ops, is a name a pattern matches."""
    from tests.fx.standins import Conv1D

    model = nn.Sequential(Conv1D(6, 4), nn.Linear(6, 2))
    x = torch.randn(2, 4)
    sites = {s.name: s for s in analyse_sites(model, (x,), include="addmm")[0]}
    assert sites["0.weight"].op == "Conv1D (addmm)" and sites["0.weight"].status == "planned"
    assert sites["1.weight"].reason == "not included"
    sites = {s.name: s for s in analyse_sites(model, (x,), include="Conv1D")[0]}
    assert sites["0.weight"].status == "planned"


def test_include_exclude_by_pattern_and_type() -> None:
    """exclude by module-name pattern, include by type; others skipped with the reason."""
    model = nn.Sequential(nn.Linear(3, 3), nn.Conv1d(1, 1, 1), nn.Linear(3, 3))
    sites = plan(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3)), exclude="1")
    assert sites["0.weight"].status == "planned" and sites["1.weight"].reason == "excluded (1)"
    by_type = {s.name: s for s in analyse_sites(model, include=nn.Conv1d, exclude=None)[0]}
    assert by_type["1.weight"].status == "planned"
    assert by_type["0.weight"].reason == "not included"


class _Block(nn.Module):
    """A model's own block: it holds no parameter itself, its layers do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x).transpose(1, 2)).transpose(1, 2)


class _Activations(nn.Sequential):
    """A block of layers holding no parameter."""


def test_a_layer_type_selects_the_layers_inside_it_a_name_pattern_its_own_class() -> None:
    """``exclude=MultiheadAttention`` kept its ``in_proj_weight`` out and weight-normed its
    ``out_proj``; a model's own block, which holds no parameter itself, kept nothing out and
    included nothing (t312). A class matches the layers inside it; a name pattern still
    matches the layer's own class only (``"_Block"`` matches no layer holding a weight)."""
    model = nn.Sequential(_Block(), nn.Conv1d(4, 4, 1), _Block())
    x = torch.randn(2, 4, 5)
    sites = plan(model, (x,), exclude=_Block)
    assert sites["0.conv.weight"].reason == "excluded (_Block)"
    assert sites["2.proj.weight"].reason == "excluded (_Block)"
    assert sites["1.weight"].status == "planned"
    sites = plan(model, (x,), include=_Block)
    planned = {name for name, site in sites.items() if site.status == "planned"}
    assert planned == {"0.conv.weight", "0.proj.weight", "2.conv.weight", "2.proj.weight"}
    for pattern in ("_Block", "*Bl?ck"):  # the hint names the class, as a type is named
        with pytest.raises(InvalidArgumentError) as caught:
            plan(model, (x,), include=pattern)
        assert str(caught.value).startswith(f"include {pattern!r} selects no parameter")
        assert str(caught.value).endswith(
            f"; {pattern!r} names _Block, a class of modules holding layers: as a layer type "
            "(_Block), it selects the layers inside them"
        )
    idle = nn.Sequential(_Activations(nn.ReLU(), nn.GELU()), nn.Linear(4, 4))
    with pytest.raises(InvalidArgumentError) as caught:  # no parameter inside: no hint
        plan(idle, (torch.randn(2, 4),), include="_Activations")
    assert str(caught.value).endswith("(a pattern matches a whole name: 'encoder.*', '*attn*')")
    attention = nn.MultiheadAttention(8, 2, batch_first=True)
    q = torch.randn(2, 3, 8)

    class Attending(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention, self.head = attention, nn.Linear(8, 2)

        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return self.head(self.attention(q, q, q, need_weights=False)[0])

    sites = plan(Attending(), (q,), exclude=nn.MultiheadAttention)
    assert sites["attention.in_proj_weight"].reason == "excluded (MultiheadAttention)"
    assert sites["attention.out_proj.weight"].reason == "excluded (MultiheadAttention)"
    assert sites["head.weight"].status == "planned"


@pytest.mark.parametrize("parameter", ["include", "exclude"])
@pytest.mark.parametrize("pattern", ["fc*", "weight", "encoder", "ReLU"])
def test_a_pattern_that_matches_nothing_is_refused(parameter: str, pattern: Any) -> None:
    """``--include 'fc*'`` on a model of ``0`` and ``1`` selected nothing, and the unchanged
    model was written as ok ("nothing selected", t95); an exclude typo would put weight norm
    where the user kept it out. A pattern matches whole names: ``*weight`` matches, and so
    does ``encoder.*``, not ``encoder``; a layer type that holds no parameter selects none."""
    model = nn.Sequential(nn.Linear(3, 3), nn.Conv1d(1, 1, 1), nn.ReLU())
    said = re.escape(f"{parameter} '{pattern}' selects no parameter: it matches no name")
    with pytest.raises(InvalidArgumentError, match=f"^{said}") as caught:
        apply_weight_norm(model, **{parameter: pattern})
    assert caught.value.parameter == parameter
    assert not parametrize.is_parametrized(model)
    by_class: dict[str, Any] = {parameter: nn.ReLU}  # a class: no typo, selects nothing
    if parameter == "exclude":
        assert apply_weight_norm(copy.deepcopy(model), **by_class) is not None
    kept_types: dict[str, Any] = {parameter: [nn.ReLU, nn.Linear]}  # one of a list: no error
    assert apply_weight_norm(copy.deepcopy(model), **kept_types) is not None
    kept: dict[str, Any] = {parameter: ["*weight" if parameter == "include" else "1"]}
    assert apply_weight_norm(model, **kept).applied >= 1  # each matches: applied


class ShapeBranch(nn.Module):
    """Control flow on a shape: torch.fx cannot trace it, torch.export can."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.w = nn.Parameter(torch.randn(4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            x = self.lin(x)
        return x @ self.w


class ValueBranch(ShapeBranch):
    """Control flow on a value: neither tracer works."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = self.lin(x)
        return x @ self.w


def test_falls_back_to_torch_export() -> None:
    """Static tracing: fx fails on shape control flow; torch.export sees Linear and matmul."""
    sites, mode, note = analyse_sites(ShapeBranch(), (torch.randn(2, 4),), tracer="static")
    by_name = {s.name: s for s in sites}
    assert mode == "export" and "torch.fx" in (note or "")
    assert by_name["lin.weight"].axis == 0 and by_name["w"].axis == 1


class _Stateful(nn.Module):
    """A forward that counts its calls in a buffer and flags a stream as started; control flow
    on a shape (``branch``) makes torch.fx fail and torch.export trace it."""

    steps: torch.Tensor

    def __init__(self, branch: bool) -> None:
        super().__init__()
        self.lin, self.branch, self.started = nn.Linear(4, 3), branch, False
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        self.started = True
        if self.branch and x.shape[0] > 1:
            x = 2 * x
        return self.lin(x) * self.steps


@pytest.mark.parametrize(("branch", "traced_with"), [(False, "fx"), (True, "export")])
def test_a_static_trace_leaves_the_models_state_as_given(branch: bool, traced_with: str) -> None:
    """torch.fx runs the forward's code on the real buffers: the counter moved to 1 (t71, as
    apply_weight_norm planned a model without inputs), and both tracers set plain attributes."""
    model = _Stateful(branch)
    inputs = (torch.randn(2, 4),) if branch else None
    _, mode, _ = analyse_sites(model, inputs, tracer="static")
    assert mode == traced_with
    assert float(model.steps) == 0.0 and model.started is False


class _ExitsWhenTraced(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise SystemExit(0)


def test_a_sys_exit_while_traced_is_a_tracer_failure_not_the_callers_exit() -> None:
    """torch.fx runs the forward's code: its ``sys.exit()`` escaped the library call and would
    have ended the caller's process with status 0. With example inputs, the training-mode
    forward runs the model itself, where a ``sys.exit()`` stops the run as in any forward
    (t344), as an error, not the caller's exit."""
    from wnpass.fx.forward import ModelExitedError

    sites, mode, note = analyse_sites(_ExitsWhenTraced(), None, tracer="static")
    assert mode == "module types" and "SystemExit: 0" in (note or "")
    assert {s.name: s.status for s in sites}["lin.weight"] == "planned"
    with pytest.raises(ModelExitedError, match=r"called sys\.exit\(0\)$"):
        analyse_sites(_ExitsWhenTraced(), (torch.randn(2, 4),), tracer="static")


def test_falls_back_to_module_types_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Without inputs only module types are read; the warning says why; functional uses unseen."""
    with caplog.at_level(logging.WARNING, logger="wnpass.fx.trace"):
        sites, mode, note = analyse_sites(ValueBranch())
    by_name = {s.name: s for s in sites}
    assert mode == "module types" and "needs example inputs" in (note or "")
    assert "module types only" in caplog.text
    assert by_name["lin.weight"].status == "planned" and by_name["w"].status == "skipped"


def test_include_and_exclude_match_any_name_of_a_shared_module() -> None:
    """A module under several names is selected by any of them (norming it norms them all)."""
    x = (torch.randn(2, 16),)
    excluded = plan(SharedBlock(), x, exclude="blocks.2")["blocks.0.weight"]
    assert (excluded.status, excluded.reason) == ("skipped", "excluded (blocks.2)")
    included = plan(SharedBlock(), x, include="alias")
    assert included["blocks.0.weight"].status == "planned"
    assert included["head.weight"].reason == "not included"


def test_a_torchscript_model_is_refused_in_one_line() -> None:
    """A scripted model raised PyTorch's RuntimeError ("get_submodule is not supported on
    ScriptModules"; exit 3 from the CLI): now a WnpassError saying what to do, before the
    model runs, from the plan and from the rewrite alike."""
    model = torch.jit.script(nn.Sequential(nn.Linear(4, 3)))
    for call in (lambda: analyse_sites(model, torch.randn(2, 4)), lambda: apply_weight_norm(model)):
        with pytest.raises(InvalidArgumentError, match="a TorchScript module") as caught:
            call()
        assert caught.value.parameter is None and "script or trace it afterwards" in str(
            caught.value
        )


class _ScriptedBody(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Linear(4, 4)
        self.body = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.pre(x))


def test_a_torchscript_submodule_is_refused_naming_it() -> None:
    """A ScriptModule inside a Python model was not refused: its weights were "not used in
    the observed forward" (its forward runs no Python op to see). Now refused, by path."""
    model, x = _ScriptedBody(), torch.randn(8, 4)
    for call in (lambda: analyse_sites(model, x), lambda: apply_weight_norm(model, x)):
        with pytest.raises(InvalidArgumentError) as caught:
            call()
        assert str(caught.value).startswith("body (RecursiveScriptModule): a TorchScript module")


class _LazyBranch(nn.Module):
    """A lazy layer the example inputs do not reach (an auxiliary head)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.aux = nn.LazyLinear(3)

    def forward(self, x: torch.Tensor, with_aux: bool = False) -> torch.Tensor:
        h = self.a(x)
        return self.aux(h) if with_aux else h


def test_a_lazy_layer_the_inputs_do_not_reach_is_skipped_not_a_crash() -> None:
    """Its parameters have no shape: ``inspect`` and ``train-rewrite`` ended in an internal
    error (exit 3), ``apply_weight_norm`` raised a bare ValueError (t57)."""
    sites = plan(_LazyBranch(), (torch.randn(5, 4),))
    assert sites["a.weight"].status == "planned"
    for name in ("aux.weight", "aux.bias"):
        assert (sites[name].status, sites[name].shape) == ("skipped", None)
        assert sites[name].reason == NOT_INITIALIZED
    report = apply_weight_norm(_LazyBranch(), torch.randn(5, 4))
    assert report.applied == 1 and report.status == "ok"


def test_a_lazy_layer_is_selected_by_its_lazy_type() -> None:
    """The forward that initializes a LazyConv1d makes it a Conv1d: ``--exclude-type
    LazyConv1d`` excluded nothing, ``--include-type LazyLinear`` selected nothing (t57)."""

    def lazy() -> nn.Sequential:
        return nn.Sequential(nn.LazyConv1d(4, 3), nn.Flatten(), nn.LazyLinear(3))

    x = (torch.randn(2, 2, 10),)
    sites = plan(lazy(), x, exclude=nn.LazyConv1d)
    assert (sites["0.weight"].reason, sites["2.weight"].status) == (
        "excluded (LazyConv1d)",
        "planned",
    )
    sites = plan(lazy(), x, include="LazyLinear")
    assert (sites["0.weight"].reason, sites["2.weight"].status) == ("not included", "planned")
    sites = plan(lazy(), x, exclude=nn.Conv1d)  # what it became matches too
    assert sites["0.weight"].reason == "excluded (Conv1d)"


def test_a_lazy_layer_draws_its_values_from_the_caller_s_generator_as_a_forward_does() -> None:
    """Its initial values were drawn inside the snapshot that gives the caller's generators
    back: the caller's next layer got the very same values, and two lazy models applied one
    after the other came out identical (t57)."""
    torch.manual_seed(0)
    first, second = nn.Sequential(nn.LazyLinear(5)), nn.Sequential(nn.LazyLinear(5))
    apply_weight_norm(first, torch.randn(2, 6))
    apply_weight_norm(second, torch.randn(2, 6))
    after = nn.Linear(6, 5)
    w1, w2 = (
        model.get_parameter("0.parametrizations.weight.original1") for model in (first, second)
    )
    assert not torch.equal(w1, w2) and not torch.equal(after.weight.detach(), w2)


class _Holders(nn.Module):
    """Weights held in a set, a SimpleNamespace, a list three levels deep, one six levels
    deep, one after 20,000 numbers, and as a dict's key (an L2-SP anchor)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.d, self.e, self.f = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.kept = {self.a.weight}
        self.spec = SimpleNamespace(w=self.b.weight)
        self.deep = [[(self.c.weight,)]]
        self.deeper = [[[[[[self.d.weight]]]]]]
        self.history = {"steps": [0.0] * 20_000, "w": self.e.weight}
        self.anchors = {self.f.weight: self.f.weight.detach().clone()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(self.e(self.d(self.c(self.b(self.a(x))))))


def test_holders_in_sets_namespaces_nested_lists_and_dict_keys_tie() -> None:
    """Holders six levels deep, after 10,000 items or as a dict's key were not searched, and
    weight norm went on weights a training forward then read the old tensor of (t65)."""
    sites = plan(_Holders(), (torch.randn(2, 4),))
    names = ("a.weight", "b.weight", "c.weight", "d.weight", "e.weight", "f.weight")
    assert [sites[n].reason for n in names] == [
        f"tied weight (also {where}): one weight norm would untie it"
        for where in (
            "kept{...}",
            "spec['w']",
            "deep[0][0][0]",
            "deeper[0][0][0][0][0][0]",
            "history['w']",
            "anchors (a key)",
        )
    ]


class _LayerScaled(nn.Module):
    """A block with a layer scale of its own (CaiT, ConvNeXt) beside its Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.gamma = nn.Parameter(torch.full((8,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.fc(x)


class _UnreachedHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.LazyLinear(4), nn.LazyLinear(3)  # b: never reached

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x)


def test_an_include_that_names_only_what_gets_nothing_applies_nothing() -> None:
    """t173: one rule for what an include asks for. A layer weight-normed before, named alone,
    was "nothing selected" (exit 0) beside a plain layer the include left out, "nothing
    applied" without it; a lazy layer the forward never reached, named alone, was "nothing
    selected". Each applies nothing now, saying why, as does a block's own layer scale named
    by the block's name (``0.*`` names its layers); a 0-D scale is no weight (t176)."""
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    mixed = nn.Sequential(parametrizations.weight_norm(nn.Linear(4, 8)), nn.ReLU(), nn.Linear(8, 2))
    report = apply_weight_norm(mixed, x, include="0")
    assert report.status == "nothing applied" and not report
    assert report.reason == (
        "no parameter of those included to apply weight norm to (1x already weight-normed)"
    )
    report = apply_weight_norm(_UnreachedHead(), x, include="b")
    assert report.status == "nothing applied"
    assert "2x lazy parameter the example inputs do not initialize" in (report.reason or "")
    blocks = nn.Sequential(_LayerScaled(), nn.Linear(8, 2))
    report = apply_weight_norm(blocks, torch.randn(4, 8), include="0")
    assert report.status == "nothing applied"
    assert report.reason == (
        "no parameter of those included to apply weight norm to (1x 1-D parameter (a scale or "
        "shift))"
    )
    assert apply_weight_norm(blocks, torch.randn(4, 8), include="0.*").status == "ok"
    scalar = nn.Sequential(_LayerScaled(), nn.Linear(8, 2))
    scalar[0].gamma = nn.Parameter(torch.tensor(0.1))  # ReZero's: 0-D, no weight (t176)
    report = apply_weight_norm(scalar, torch.randn(4, 8), include="0.*", exclude="0.fc.weight")
    assert report.status == "nothing selected"
    plain = nn.Sequential(nn.Linear(4, 2))
    report = apply_weight_norm(plain, x, exclude="0.weight", include="0.*")
    assert report.status == "nothing selected"  # the weight left out on purpose, its bias too
    assert report.reason == "include/exclude left out the 1 weight weight norm fits"


class _ClipsInTraining(nn.Module):
    """Clips a weight in place in training mode only (a critic's weight clipping written in
    its forward); a second layer it never writes."""

    def __init__(self) -> None:
        super().__init__()
        self.clipped, self.kept = nn.Linear(4, 4), nn.Linear(4, 2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.training:
            with torch.no_grad():
                self.clipped.weight.clamp_(-0.01, 0.01)
                self.clipped.bias.clamp_(-0.01, 0.01)
        return self.kept(self.clipped(x))


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_weight_written_in_training_mode_only_is_left_alone(mode: str) -> None:
    """An eval forward shows no write: the weight was weight-normed, and training's clamp_
    landed on the computed weight, lost (RWKV rescales weights in place this way once an
    eval forward ran: its training outputs were 46% off, reported ok; t240). The training-
    mode forward that shows it gives back the model's values, state and modes."""
    torch.manual_seed(0)
    model = _ClipsInTraining().train(mode == "train")
    before = copy.deepcopy(model.state_dict())
    report = apply_weight_norm(model, (torch.randn(3, 4),))
    sites = {site.name: site for site in report.sites}
    assert (sites["clipped.weight"].status, sites["clipped.weight"].reason) == (
        "skipped",
        TRAINING_WRITE,
    )
    assert sites["kept.weight"].status == "applied"
    # a bias written too is still named a bias, not "1-D parameter (a scale or shift)" (t258)
    assert (sites["clipped.bias"].status, sites["clipped.bias"].reason) == ("skipped", "bias")
    assert torch.equal(model.clipped.weight, before["clipped.weight"])
    assert model.training is (mode == "train") and model.calls == 0


class _WritesInTraining(nn.Module):
    """In training: clamps one view of a flat parameter (or the whole flat parameter), and,
    through a weak reference a child holds, another layer's weight; moves BatchNorm's
    statistics; a LoRA-like layer merges its update into its weight in eval mode
    (``train()`` writes it)."""

    def __init__(self, clamped: str) -> None:
        super().__init__()
        self.clamped = clamped
        self.flat = nn.Parameter(torch.randn(2 * 16) * 0.3)
        self.a, self.b, self.far = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.free = nn.Linear(4, 4)  # written by nothing
        self.a.weight = nn.Parameter(self.flat.data[:16].view(4, 4))
        self.b.weight = nn.Parameter(self.flat.data[16:].view(4, 4))
        self.norm = nn.BatchNorm1d(4)
        self.merged = nn.Linear(4, 4)
        self.update = nn.Parameter(torch.randn(4, 4) * 0.1)
        self.child = nn.Identity()
        self.child.__dict__["parent"] = weakref.ref(self)

    def train(self, mode: bool = True) -> _WritesInTraining:
        if mode != self.training:  # merged in eval mode, as loralib does
            with torch.no_grad():
                self.merged.weight.data += self.update if not mode else -self.update
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                (self.flat if self.clamped == "flat" else self.a.weight).clamp_(-0.2, 0.2)
                self.child.__dict__["parent"]().far.weight.mul_(0.5)
        y = self.far(self.norm(self.b(self.a(x))))
        if self.training:
            y = y + x @ self.update.T
        return self.free(self.merged(y))


@pytest.mark.parametrize("clamped", ["view", "flat"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_the_training_mode_forward_sees_exactly_what_it_writes_and_gives_it_back(
    mode: str, clamped: str
) -> None:
    """A clamp of one view of a flat parameter skipped every view of it, and the weight a
    ``train()`` override writes (a LoRA layer's merge) was not seen (t243). Run on a copy, the
    forward wrote the original through a weak reference, and a clamp of the whole flat
    parameter was missed, as the copy untied its views (t246). Everything it wrote or moved
    (BatchNorm's statistics) is given back."""
    torch.manual_seed(0)
    model = _WritesInTraining(clamped).train(mode == "train")
    before = copy.deepcopy(model.state_dict())
    report = apply_weight_norm(model, (torch.randn(3, 4),))
    assert report.status == "ok" and report.equivalent
    status = {site.name: (site.status, site.reason) for site in report.sites}
    written = ["a.weight", "far.weight", "merged.weight"] + (
        ["b.weight"] if clamped == "flat" else []
    )
    for name in ("a.weight", "b.weight", "far.weight", "merged.weight", "free.weight"):
        assert status[name] == (
            ("skipped", TRAINING_WRITE) if name in written else ("applied", None)
        ), name
    assert model.training is (mode == "train")
    after = model.state_dict()
    for name in ("norm.running_mean", "norm.running_var", "norm.num_batches_tracked", "flat"):
        assert torch.equal(after[name], before[name]), name


class _BuildsInTraining(nn.Module):
    """Its first training forward makes a layer and a hook, assigns a weight's ``.data`` and
    moves BatchNorm's statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.norm = nn.Linear(4, 4), nn.Linear(4, 4), nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not hasattr(self, "extra"):
            self.extra = nn.Linear(4, 4)
            self.b.register_forward_hook(lambda module, args, out: out)
            self.a.weight.data = self.a.weight.data.clamp(-0.2, 0.2)
        return self.norm(self.b(self.a(x)))


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_what_the_training_forward_builds_is_taken_down(mode: str) -> None:
    """Nothing was given back where the training-mode forward built the model further: the
    layer it made stayed (and train-rewrite saved it), BatchNorm's statistics moved, and the
    report said ok (t243, t247). What it built is taken down, the rest given back, and the
    weight whose ``.data`` it assigned is skipped."""
    torch.manual_seed(0)
    model = _BuildsInTraining().train(mode == "train")
    weight, before = model.a.weight, copy.deepcopy(model.state_dict())
    report = apply_weight_norm(model, (torch.randn(3, 4),))
    assert report.status == "ok" and report.equivalent
    status = {site.name: (site.status, site.reason) for site in report.sites}
    assert status["a.weight"] == ("skipped", TRAINING_WRITE) and status["b.weight"][0] == "applied"
    assert not hasattr(model, "extra") and not model.b._forward_hooks
    assert model.a.weight is weight and model.training is (mode == "train")
    after = model.state_dict()
    pair = {"b.parametrizations.weight.original0", "b.parametrizations.weight.original1"}
    assert set(after) == set(before) - {"b.weight"} | pair  # no layer of its own
    for name in ("a.weight", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"):
        assert torch.equal(after[name], before[name]), name


class _HooksEveryModuleInTraining(nn.Module):
    """Its first training forward registers a hook on every module at once (a profiler of
    its own), behind a flag of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.calls = nn.Linear(4, 4), [0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not getattr(self, "profiling", False):
            self.profiling = True
            self.handle = nn.modules.module.register_module_forward_hook(self._count)
        return self.a(x)

    def _count(self, module: nn.Module, args: Any, output: Any) -> None:
        if module is self.a:
            self.calls[0] += 1


def test_a_global_hook_the_training_forward_registers_is_taken_down() -> None:
    """A hook registered on every module in the training forward stayed while the flag that
    says so was given back: the model's first training step registered it again, and every
    layer ran two of them (t248 #4). It is taken down with the rest of what was built."""
    torch.manual_seed(0)
    model, x = _HooksEveryModuleInTraining(), torch.randn(3, 4)
    before = [len(hooks) for hooks in GlobalHooks.registries()]
    report = apply_weight_norm(model, (x,))
    status = {site.name: site.status for site in report.sites}
    assert report.status == "ok" and status["a.weight"] == "applied"
    assert [len(hooks) for hooks in GlobalHooks.registries()] == before
    assert not hasattr(model, "profiling")
    try:
        model.train()
        model(x)
        assert model.calls == [1]  # one hook, once
    finally:
        model.handle.remove()


class _HooksALazyLayerInTraining(nn.Module):
    """Its first training forward hooks a lazy layer that only training reaches, behind a
    flag of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.aux, self.calls = nn.Linear(4, 4), nn.LazyLinear(2), [0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.a(x)
        if not getattr(self, "hooked", False):
            self.hooked = True
            self.aux.register_forward_hook(self._count)
        return self.a(x).sum() + self.aux(x).sum()

    def _count(self, module: nn.Module, args: Any, output: Any) -> None:
        self.calls[0] += 1


def test_a_hook_the_training_forward_registers_on_a_lazy_layer_is_taken_down() -> None:
    """A lazy layer keeps what its first forward builds, and so kept a hook the training
    forward registered on it while the flag that says so was given back: the first training
    step hooked it again, and it ran twice (t249 #4)."""
    torch.manual_seed(0)
    model, x = _HooksALazyLayerInTraining(), torch.randn(3, 4)
    report = apply_weight_norm(model, (x,))
    assert report.status == "ok" and not hasattr(model, "hooked")
    assert isinstance(model.aux, nn.Linear) and not model.aux._forward_hooks
    model.train()
    model(x)
    assert model.calls == [1]


class _HooksItsParametersInTraining(nn.Module):
    """Its first training forward scales every parameter's gradient with a hook, behind a
    flag of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.hooked = nn.Linear(4, 4), False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self.hooked:
            self.hooked = True
            self.a.bias.register_hook(lambda grad: grad * 0.5)
            self.a.bias.register_post_accumulate_grad_hook(lambda param: None)
        return self.a(x)


def test_a_parameter_hook_the_training_forward_registers_is_taken_down() -> None:
    """A gradient hook on a parameter stayed while the flag was given back: the first
    training step registered it again, and the gradient was scaled twice (t251: 0.5x)."""
    torch.manual_seed(0)
    model, x = _HooksItsParametersInTraining(), torch.randn(3, 4)
    reference = copy.deepcopy(model)
    report = apply_weight_norm(model, (x,))
    assert report.status == "ok" and not model.hooked
    assert not model.a.bias._backward_hooks and not model.a.bias._post_accumulate_grad_hooks
    for each in (model, reference):
        each.train()
        each(x).sum().backward()
    assert model.a.bias.grad is not None and reference.a.bias.grad is not None
    assert torch.equal(model.a.bias.grad, reference.a.bias.grad)


@torch.library.custom_op("wnpass_tests::decay", mutates_args=("weight",))
def _decay(weight: torch.Tensor, factor: float) -> None:
    """A fused kernel of a model's own that scales a weight in place (its schema says so)."""
    weight.mul_(factor)


class _DecaysInTraining(nn.Module):
    def __init__(self, called: str) -> None:
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)
        ways: dict[str, Callable[..., Any]] = {
            "itself": _decay,
            "overload": torch.ops.wnpass_tests.decay.default,
            "packet": torch.ops.wnpass_tests.decay,
        }
        self.decay = ways[called]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.decay(self.a.weight.detach(), 0.5)
        return self.b(self.norm(self.a(x)))


@pytest.mark.parametrize("called", ["itself", "overload", "packet"])
def test_a_write_a_custom_op_declares_is_seen_and_given_back(called: str) -> None:
    """A custom op that declares it writes a weight (no trailing underscore in its name) got
    no copy first: the weight stayed halved and BatchNorm one step on, reported ok (t251).
    Its schema says what it writes, also called as ``torch.ops.ns.op``, the packet of its
    overloads (t254): the weight is skipped, and everything given back."""
    torch.manual_seed(0)
    model = _DecaysInTraining(called)
    before = copy.deepcopy(model.state_dict())
    report = apply_weight_norm(model, (torch.randn(6, 4),))
    status = {site.name: (site.status, site.reason) for site in report.sites}
    assert report.status == "ok" and status["a.weight"] == ("skipped", TRAINING_WRITE)
    after = model.state_dict()
    for name in ("a.weight", "norm.running_mean", "norm.num_batches_tracked"):
        assert torch.equal(after[name], before[name]), name


class _DecaysThroughNumPyInTraining(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            weight = self.a.weight.detach().numpy()
            weight *= 0.5  # no version counter sees it
        return self.b(self.a(x))


def test_a_write_no_version_counter_sees_in_training_is_seen_by_its_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A weight the training forward halves through NumPy (or an extension's code) got weight
    norm and was reported ok: the model's training then halved the computed weight, lost
    (t251: 0.131 off on the second step). Its bytes say it was written: it is skipped, with
    the warning that no copy could give it back."""
    torch.manual_seed(0)
    model = _DecaysThroughNumPyInTraining()
    with caplog.at_level(logging.WARNING, logger="wnpass"):
        report = apply_weight_norm(model, (torch.randn(6, 4),))
    status = {site.name: (site.status, site.reason) for site in report.sites}
    assert status["a.weight"] == ("skipped", TRAINING_WRITE) and status["b.weight"][0] == "applied"
    assert "wrote a.weight in a way no copy can give back" in caplog.text


class _MeanTeacher(nn.Module):
    """A teacher that follows the student in every training forward (mean teacher, MoCo),
    zipping their parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.student, self.teacher = nn.Linear(4, 4), nn.Linear(4, 4)
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                # as users write it: not strict (under weight norm, the student has three)
                pairs = zip(self.teacher.parameters(), self.student.parameters(), strict=False)
                for mine, theirs in pairs:
                    mine.mul_(0.5).add_(theirs, alpha=0.5)
        return self.student(x) + self.teacher(x)


def test_a_weight_training_reads_into_another_written_in_place_is_left_alone() -> None:
    """Only training reads the student's weight, elementwise, into the teacher's: weight norm
    went on it, reported ok, and the teacher then followed g and v, not the weight (t251:
    1.09 off on the first step; with biases, a shape error). The use is seen in training."""
    torch.manual_seed(0)
    model, x = _MeanTeacher(), torch.randn(6, 4)
    report = apply_weight_norm(model, (x,))
    status = {site.name: (site.status, site.reason) for site in report.sites}
    assert status["student.weight"] == (
        "skipped",
        "read into a weight written in place (add_) (in training)",
    )
    plain = apply_weight_norm(nn.Linear(4, 4), (x,))  # the same layer, no teacher
    assert plain.sites[0].status == "applied"


def _assert_read_into_written(model: nn.Module, weight: str) -> None:
    """``apply_weight_norm`` on ``model`` (inputs of 6x4) skips ``weight`` as read into a
    weight written in place."""
    report = apply_weight_norm(model, (torch.randn(6, 4),))
    status = {site.name: (site.status, site.reason or "") for site in report.sites}
    assert status[weight][0] == "skipped"
    assert status[weight][1].startswith("read into a weight written in place")


class _MomentumEncoder(nn.Module):
    """A key encoder that follows the query encoder in every training forward (MoCo, BYOL),
    by one of the updates their code writes."""

    def __init__(self, update: str) -> None:
        super().__init__()
        self.query, self.key, self.update = nn.Linear(4, 4), nn.Linear(4, 4), update
        self.key.load_state_dict(self.query.state_dict())
        self.key.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                for k, q in zip(self.key.parameters(), self.query.parameters(), strict=False):
                    if self.update == "data":  # MoCo's own
                        k.data = k.data * 0.9 + q.data * 0.1
                    elif self.update == "copy lerp":
                        k.copy_(torch.lerp(k, q, 0.1))
                    else:
                        k[:] = k * 0.9 + q * 0.1
        return self.query(x) + self.key(x)


@pytest.mark.parametrize("update", ["data", "copy lerp", "setitem"])
def test_a_weight_read_into_another_through_other_ops_first_is_left_alone(update: str) -> None:
    """Only an in-place op that read the query's weight itself counted: computed first
    (``k.data = k.data * m + q.data * (1 - m)``, ``k.copy_(torch.lerp(k, q, w))``), the
    update read it all the same, and weight norm went on it, reported ok; the key then
    followed g and v (t256). What a write's value was computed from counts."""
    torch.manual_seed(0)
    _assert_read_into_written(_MomentumEncoder(update), "query.weight")


class _CastsItsRouter(nn.Module):
    """Switch Transformers' router: ``self.classifier = self.classifier.to(self.dtype)`` on
    every call, which binds each parameter's ``.data`` to itself."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.classifier = self.classifier.to(torch.float32)
        return self.classifier(x)


def test_a_parameter_s_data_bound_to_itself_is_no_write() -> None:
    """``.data = x`` became a write where ``x`` is the parameter's own elements: every
    Switch Transformers router was skipped as "modified in place in the forward (__set__)"."""
    report = apply_weight_norm(_CastsItsRouter(), (torch.randn(2, 4),))
    assert {site.name: site.status for site in report.sites}["classifier.weight"] == "applied"


class _DropConnect(nn.Linear):
    """DropConnect: dropout of the weight itself in training, the identity in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.dropout(self.weight, 0.3, self.training), self.bias)


def test_dropout_of_a_weight_keeps_its_axes() -> None:
    """DropConnect's weight was skipped, "used by dropout, which wnpass does not know"
    (t256): a mask of elements, each unit's staying one unit's; weight norm under it trains
    as PyTorch's own put on by hand."""
    torch.manual_seed(0)
    model, x = nn.Sequential(_DropConnect(8, 16), nn.ReLU(), _DropConnect(16, 4)), torch.randn(4, 8)
    by_hand = copy.deepcopy(model)
    for index in (0, 2):
        parametrizations.weight_norm(by_hand[index])
    report = apply_weight_norm(model, (x,))
    assert {s.name: s.axis for s in report.sites if s.status == "applied"} == {
        "0.weight": 0, "2.weight": 0
    }  # fmt: skip
    model.train(), by_hand.train()
    torch.manual_seed(1)
    ours = model(x)
    torch.manual_seed(1)
    assert torch.equal(ours, by_hand(x))


class _TeacherAside(nn.Module):
    """A teacher kept out of the module tree (no state dict, no optimizer: a plain list),
    updated by name from the student in every training forward; or through a temporary."""

    def __init__(self, update: str) -> None:
        super().__init__()
        self.student, self.update = nn.Linear(4, 4, bias=False), update
        self.aside = [copy.deepcopy(self.student).requires_grad_(False)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        teacher = dict(self.aside[0].named_parameters())
        if self.training:
            with torch.no_grad():
                for name, mine in self.student.named_parameters():
                    if name not in teacher:
                        continue
                    if self.update == "by name":
                        teacher[name].mul_(0.9).add_(mine, alpha=0.1)
                    elif self.update == "through .data":
                        teacher[name].data.mul_(0.9).add_(mine.data, alpha=0.1)
                    elif self.update == "state dict":  # timm's ModelEmaV2
                        ema = self.aside[0].state_dict()[name]
                        ema.copy_(ema * 0.9 + mine.detach() * 0.1)
                    elif self.update == "stack mean":
                        teacher[name].copy_(torch.stack([teacher[name], mine]).mean(0))
                    else:  # through a temporary the value is written into first
                        held = torch.empty_like(teacher[name])
                        held[...] = mine
                        teacher[name].mul_(0.9).add_(held, alpha=0.1)
        return self.student(x) + self.aside[0](x)


@pytest.mark.parametrize(
    "update", ["by name", "through .data", "state dict", "stack mean", "through a temporary"]
)
def test_a_weight_read_into_a_parameter_outside_the_model_is_left_alone(update: str) -> None:
    """The teacher's parameters were no model's, so their update was no write of a weight:
    weight norm went on the student, "equivalent", and the teacher never moved again (its
    names no longer matched, t258); through ``.data`` or a state dict's tensor the write
    was of no parameter either (t259); an average over a stack was taken for a statistic
    (t260); through a temporary (``held[...] = q``) the read was
    lost on the way (t257). All read the student's weight into a weight written in place."""
    torch.manual_seed(0)
    _assert_read_into_written(_TeacherAside(update), "student.weight")


class _RunningScaleAfterNoise(nn.Module):
    """NoisyNet's layer without a bias, then a running statistic held as a Parameter and
    updated from the activations in training (as EMA codebooks are)."""

    def __init__(self) -> None:
        super().__init__()
        self.mu, self.sigma = nn.Parameter(torch.randn(6, 4)), nn.Parameter(torch.rand(6, 4))
        self.scale = nn.Parameter(torch.ones(6), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.mu + self.sigma * torch.randn_like(self.mu) if self.training else self.mu
        y = F.linear(x, weight)
        if self.training:
            with torch.no_grad():
                self.scale.mul_(0.9).add_(y.abs().mean(0) * 0.1)
        return y / self.scale


def test_what_a_layer_computes_holds_none_of_its_weight() -> None:
    """A layer whose weight training computes (``mu + sigma * eps``) and that has no bias
    passed ``mu`` on to every later activation, and a running statistic written from them
    skipped it (t257). A layer's output is computed through it: none of its operands'."""
    torch.manual_seed(0)
    report = apply_weight_norm(_RunningScaleAfterNoise(), (torch.randn(5, 4),))
    assert {site.name: site.status for site in report.sites}["mu"] == "applied"


class _LogsItsWeights(nn.Module):
    """In training, the norm of one weight logged into a frozen Parameter, and another
    layer's gradient set from the first weight's shape."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
        self.log = nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.log[0] = self.a.weight.norm()
            self.b.weight.grad = torch.zeros_like(self.a.weight)
        return self.b(self.a(x))


def test_a_statistic_or_a_shape_of_a_weight_is_no_read_of_it() -> None:
    """A norm logged into a Parameter, a gradient set from ``zeros_like(W)``: the first read
    the weight into a parameter written, the second was a write of ``b.weight`` by
    ``__set__`` (t259). Neither holds a weight's elements, and ``.grad = x`` writes none."""
    torch.manual_seed(0)
    report = apply_weight_norm(_LogsItsWeights(), (torch.randn(3, 4),))
    status = {site.name: site.status for site in report.sites}
    assert status["a.weight"] == status["b.weight"] == "applied"


class _AnchorBesideItsWeight(nn.Module):
    """An EWC-style anchor of a weight's values, a buffer in the same allocation as the weight
    (a flat arena), copied from it in training."""

    def __init__(self) -> None:
        super().__init__()
        arena = torch.randn(32)
        self.fc = nn.Linear(4, 4, bias=False)
        self.fc.weight = nn.Parameter(arena[:16].view(4, 4))
        self.anchor: torch.Tensor
        self.register_buffer("anchor", arena[16:].view(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.anchor.copy_(self.fc.weight)
        return self.fc(x)


def test_a_write_beside_a_parameter_in_one_allocation_is_none_of_it() -> None:
    """A write counted as one of a parameter where it was in the same storage, not the same
    bytes: the anchor's copy of the weight skipped it (t260)."""
    torch.manual_seed(0)
    report = apply_weight_norm(_AnchorBesideItsWeight(), (torch.randn(3, 4),))
    assert {site.name: site.status for site in report.sites}["fc.weight"] == "applied"


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_weight_with_a_hook_on_it_is_left_alone(mode: str) -> None:
    """A gradient hook the forward puts on a weight (behind a flag): weight norm went on the
    weight, "equivalent", and the hook sat on a tensor the layer no longer reads: it never
    ran again (a post-accumulate one raised on the first step, t258). Registered by an eval
    forward it stays (building), by the training forward it is taken down: either way the
    weight is left alone."""

    class Hooks(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.hooked = nn.Linear(4, 4), False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.hooked and (mode == "eval" or self.training):
                self.hooked = True
                self.a.weight.register_hook(lambda grad: grad * 0.5)
            return self.a(x)

    torch.manual_seed(0)
    report = apply_weight_norm(Hooks(), (torch.randn(3, 4),))
    site = next(site for site in report.sites if site.name == "a.weight")
    assert site.status == "skipped"
    assert site.reason == (HOOKED if mode == "eval" else TRAINING_WRITE)
    assert "forward" not in site.op  # the column names the layer's ops only


class _ReadsAtAnotherAxisInTraining(nn.Module):
    """A layer, and in training an auxiliary loss term that reads its weight as ``x @ W``
    (the weight's other axis)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        return y + x @ self.a.weight if self.training else y


def test_a_weight_training_uses_at_another_axis_is_left_alone() -> None:
    torch.manual_seed(0)
    report = apply_weight_norm(_ReadsAtAnotherAxisInTraining(), (torch.randn(3, 4),))
    status = {site.name: (site.status, site.reason) for site in report.sites}
    assert status["a.weight"] == ("skipped", "used at different unit axes [0, 1]")


class _NoisyInTraining(nn.Module):
    """NoisyNet's layer: ``mu + sigma * eps`` in training, ``mu`` in eval; and a penalty on a
    weight, and noise of its shape, that only training adds."""

    def __init__(self) -> None:
        super().__init__()
        self.mu, self.sigma = nn.Parameter(torch.randn(3, 4)), nn.Parameter(torch.rand(3, 4))
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.head(F.linear(x, self.mu))
        weight = self.mu + self.sigma * torch.randn_like(self.mu)
        penalty = self.head.weight.pow(2).sum()
        return self.head(F.linear(x, weight)) + penalty + torch.randn_like(self.head.weight).sum()


def test_uses_of_other_kinds_only_training_makes_skip_nothing() -> None:
    """Any use training alone made with a reason skipped the weight: NoisyNet's ``mu``, a
    weight an L2 penalty or ``randn_like`` read (t254). Weight norm keeps those exact (the
    computed weight is read): only a read into a weight written in place, or another axis,
    skips one."""
    torch.manual_seed(0)
    report = apply_weight_norm(_NoisyInTraining(), (torch.randn(2, 4),))
    status = {site.name: site.status for site in report.sites}
    assert status["mu"] == status["head.weight"] == "applied"


class _HooksItsParametersInEval(nn.Module):
    """Its first forward, in any mode, scales a bias's gradient with a hook, behind a flag."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.hooked = nn.Linear(4, 4), False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.hooked:
            self.hooked = True
            self.a.bias.register_hook(lambda grad: grad * 0.5)
        return self.a(x)


def test_a_parameter_hook_an_eval_forward_registers_is_building() -> None:
    """wnpass's eval forwards gave the flag back and left the hook: each registered one more,
    four after apply, and the gradient was scaled five times on the first step (t254). A
    hook registered on a parameter builds the model: its state stays as the forward left
    it, one hook and the flag that says so."""
    torch.manual_seed(0)
    model, x = _HooksItsParametersInEval().eval(), torch.randn(3, 4)
    apply_weight_norm(model, (x,))
    assert model.hooked and len(model.a.bias._backward_hooks or {}) == 1


def test_a_parameter_with_the_negative_bit_is_read() -> None:
    """A weight with PyTorch's lazy negation bit (``.conj().imag`` of a complex tensor): the
    checksum of the training-mode forward raised, "internal error" (t254)."""
    layer = nn.Linear(8, 8)
    layer.weight = nn.Parameter(torch.randn(8, 8, dtype=torch.cfloat).conj().imag)
    assert layer.weight.is_neg()
    report = apply_weight_norm(layer, (torch.randn(2, 8),))
    assert report.status == "ok" and report.equivalent


class _Counts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.calls = nn.Linear(4, 4), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.a(x)


def test_a_user_s_global_hook_that_removes_itself_is_no_building() -> None:
    """A hook of the user's on every module that removes itself after one call made wnpass
    say the model was built further and keep its state (a count left at 1, t254); taken
    down after the training forward, it would have been put back, to fire again."""
    torch.manual_seed(0)
    fired: list[int] = []

    def once(module: nn.Module, args: Any, output: Any) -> None:
        fired.append(1)
        handle.remove()

    handle = nn.modules.module.register_module_forward_hook(once)
    try:
        model = _Counts()
        report = apply_weight_norm(model, (torch.randn(3, 4),))
        assert report.status == "ok" and model.calls == 0
        assert fired == [1] and once not in nn.modules.module._global_forward_hooks.values()
    finally:
        handle.remove()


class _DecoderLoop(nn.Module):
    """A Tacotron2-like decoder: an LSTMCell stepped in a loop, and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.cell, self.head = nn.LSTMCell(4, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = torch.zeros(x.shape[0], 8)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
        return self.head(h)


@pytest.mark.parametrize(
    ("inputs", "tracer", "traced_with"),
    [(True, "auto", "observed"), (False, "auto", "module types"), (True, "static", "export")],
)
def test_a_recurrent_cell_is_a_known_layer(inputs: bool, tracer: Tracer, traced_with: str) -> None:
    """Without example inputs (torch.fx cannot trace the loop: read from module types),
    LSTMCell's weights were skipped as no part of a known layer: a decoder's checkpoint got
    other keys than when observed (t244); through torch.export, "lstm_cell, which wnpass does
    not know" (t246). Every way they are weight-normed at axis 0, the gates' rows."""
    example = (torch.randn(2, 3, 4),) if inputs else None
    sites, mode, _ = analyse_sites(_DecoderLoop(), example, tracer=tracer)
    assert mode == traced_with
    planned = {s.name: s.axis for s in sites if s.status == "planned"}
    assert planned == {"cell.weight_ih": 0, "cell.weight_hh": 0, "head.weight": 0}


class _BuildsWithTorch(nn.Module):
    """Its first training forward puts PyTorch's legacy weight norm on a layer (a plain
    ``weight`` in the layer's attributes) and gives a lazy layer, used in training only, its
    shapes (which removes the lazy layer's own hooks)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.aux = nn.Linear(4, 4), nn.Linear(4, 2), nn.LazyLinear(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not hasattr(self.b, "weight_g"):
            nn.utils.weight_norm(self.b)
        y = self.b(self.a(x))
        return y + self.aux(x) if self.training else y


def test_a_layer_the_model_weight_norms_in_training_is_left_to_it() -> None:
    """The model puts PyTorch's weight norm on ``b`` on its first training step: wnpass's own
    weight norm on it was taken for free, reported ok, and that first step then raised
    KeyError 'weight' (t249). A weight the training forward takes off its module is left."""
    torch.manual_seed(0)
    model, x = _BuildsWithTorch(), torch.randn(3, 4)
    report = apply_weight_norm(model, (x,))
    status = {site.name: (site.status, site.reason) for site in report.sites}
    assert report.status == "ok" and status["b.weight"] == ("skipped", TRAINING_WRITE)
    model.train()
    model(x).sum().backward()
    assert hasattr(model.b, "weight_g")


def test_what_pytorch_builds_in_the_training_forward_is_taken_down_or_kept_whole() -> None:
    """Taking down a legacy weight norm restored the layer's registries but left the plain
    ``weight`` it put among its attributes: the layer read a stale tensor with no grad, and
    apply raised "`weight` is not an nn.Parameter". A lazy layer given its shapes got its
    lazy class and hooks back, and the next training step raised (t248). The attribute goes;
    the lazy layer stays built, as its first forward leaves it."""
    torch.manual_seed(0)
    model, x = _BuildsWithTorch(), torch.randn(3, 4)
    report = apply_weight_norm(model, (x,), exclude=["b.*"])  # the model's own weight norm
    assert report.status == "ok" and "weight" not in vars(model.b)
    assert not hasattr(model.b, "weight_g")
    model.train()
    model(x).sum().backward()  # it raised: no _initialize_hook
    assert isinstance(model.aux, nn.Linear) and not isinstance(model.aux, nn.LazyLinear)


class _ConvTBC(nn.Module):
    """fairseq's ConvTBC: a time-first convolution, weight ``(kernel, in, out)``; with
    ``branch``, a forward torch.fx cannot trace (a branch on a size)."""

    def __init__(self, branch: bool = False, aten: bool = False) -> None:
        super().__init__()
        self.aten = aten
        self.weight = nn.Parameter(torch.randn(3, 4, 6))
        self.bias = nn.Parameter(torch.zeros(6))
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch and x.shape[0] > 100:  # torch.fx cannot branch on a size
            x = x[:100]
        conv_tbc = torch.ops.aten.conv_tbc if self.aten else torch.conv_tbc
        return conv_tbc(x.contiguous(), self.weight, self.bias, 1)


@pytest.mark.parametrize("traced", ["fx", "export", "fx, the aten op"])
def test_a_conv_tbc_weight_is_planned_at_its_output_channels_from_the_graph(traced: str) -> None:
    """Read from the graph (no example inputs: torch.fx; torch.fx failing: torch.export's), a
    weight ``torch.conv_tbc`` reads was said used by an op wnpass does not know (t294)."""
    model = nn.Sequential(_ConvTBC(branch=traced == "export", aten="aten" in traced))
    inputs = (torch.randn(5, 2, 4),) if traced == "export" else None
    sites, mode, _ = analyse_sites(model, inputs, tracer="static")
    assert mode == traced.partition(",")[0]
    named = {site.name: site for site in sites}
    assert (named["0.weight"].axis, named["0.bias"].reason) == (2, "bias")
