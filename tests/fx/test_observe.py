"""Analysis by observation: one forward on the example inputs shows every weight's consumer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.fx.helpers import Functional
from tests.fx.standins import Conv1D, Looped, TinyGPT
from wnpass import WnpassError, apply_weight_norm
from wnpass.fx.analyse import UnknownLayerTypeError, analyse_sites, layer_type
from wnpass.fx.compare import result_tensors
from wnpass.fx.forward import ForwardFailedError
from wnpass.fx.observe import ALSO_UNOBSERVED, UNOBSERVED
from wnpass.fx.report import ParamSite

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class OneWeight(nn.Module):
    """A single parameter ``w`` consumed by ``use(x, w)``."""

    def __init__(self, shape: tuple[int, ...], use: Forward) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(shape))
        self.use = use

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.use(x, self.w)


def _observed(model: nn.Module, inputs: object, **options: object) -> dict[str, ParamSite]:
    sites, mode, _ = analyse_sites(model, inputs, **options)  # type: ignore[arg-type]
    assert mode == "observed"
    return {site.name: site for site in sites}


X2, X3 = torch.randn(2, 6), torch.randn(1, 2, 5)
X_TBC = torch.randn(5, 1, 2)  # (time, batch, channels), as fairseq's ConvTBC takes it

# (case, weight shape, forward, input, expected parameter axis or words of the reason)
CASES: list[tuple[str, tuple[int, ...], Forward, torch.Tensor, int | str]] = [
    ("x @ W.t()", (4, 6), lambda x, w: x @ w.t(), X2, 0),
    ("F.linear(W.T)", (6, 4), lambda x, w: F.linear(x, w.T), X2, 1),
    ("F.linear(W.mT)", (6, 4), lambda x, w: F.linear(x, w.mT), X2, 1),
    ("transpose", (6, 4), lambda x, w: F.linear(x, w.transpose(0, 1)), X2, 1),
    ("permute", (3, 2, 4), lambda x, w: F.conv1d(x, w.permute(2, 1, 0)), X3, 2),
    # fairseq's ConvTBC: weight (k, in, out), its units the last axis (t291: not known, skipped)
    # fairseq's LightweightConv softmaxes its kernel: said as what it is, not elementwise
    (
        "softmax of the kernel",
        (2, 1, 3),
        lambda x, w: F.conv1d(x, torch.softmax(w, dim=-1).expand(2, 1, 3), groups=2),
        X3,
        "normalized by softmax: no layer's unit axis",
    ),
    ("torch.conv_tbc", (3, 2, 4), lambda x, w: torch.conv_tbc(x, w, torch.ones(4), 1), X_TBC, 2),
    (
        "torch.conv_tbc of a permuted weight",
        (4, 2, 3),
        lambda x, w: torch.conv_tbc(x, w.permute(2, 1, 0), torch.ones(4), 1),
        X_TBC,
        0,
    ),
    ("movedim", (2, 3, 4), lambda x, w: F.conv1d(x, w.movedim(-1, 0)), X3, 2),
    ("torch.moveaxis", (6, 4), lambda x, w: F.linear(x, torch.moveaxis(w, 0, 1)), X2, 1),
    # a transposed convolution written as a convolution of the flipped kernel: every axis kept
    ("flip the kernel", (4, 2, 3), lambda x, w: F.conv1d(x, w.flip(2)), X3, 0),
    ("flip the units", (4, 6), lambda x, w: F.linear(x, torch.flip(w, (0, 1))), X2, 0),
    ("fliplr", (6, 4), lambda x, w: x @ w.fliplr(), X2, 1),
    ("roll along the kernel", (4, 2, 3), lambda x, w: F.conv1d(x, w.roll(1, 2)), X3, 0),
    ("roll flattened", (4, 6), lambda x, w: F.linear(x, w.roll(1)), X2, "units mix"),
    # no dims is none (t212: it was followed as a reorder, and g was no unit's)
    ("roll of dims=()", (4, 6), lambda x, w: F.linear(x, torch.roll(w, 1, dims=())), X2, "mix"),
    (
        "roll by keywords",
        (4, 6),
        lambda x, w: F.linear(x, torch.roll(input=w, shifts=1, dims=1)),
        X2,
        0,
    ),
    ("transpose by keywords", (6, 4), lambda x, w: F.linear(x, w.transpose(dim0=0, dim1=1)), X2, 1),
    (
        "repeat_interleave",
        (2, 6),
        lambda x, w: F.linear(x, w.repeat_interleave(2, dim=0)),
        X2,
        "joined or repeated by repeat_interleave",
    ),
    ("view", (4, 2, 3), lambda x, w: F.linear(x, w.view(4, 6)), X2, 0),
    ("reshape merging units", (2, 2, 6), lambda x, w: F.linear(x, w.reshape(4, 6)), X2, "reshaped"),
    ("to(dtype)", (4, 6), lambda x, w: F.linear(x.double(), w.to(torch.float64)).float(), X2, 0),
    (
        "chunk rows",
        (8, 6),
        lambda x, w: F.linear(x, w.chunk(2, 0)[0]) + F.linear(x, w.chunk(2, 0)[1]),
        X2,
        0,
    ),
    (
        "split columns",
        (4, 12),
        lambda x, w: F.linear(x, w.split(6, dim=1)[0]) + F.linear(x, w.split(6, dim=1)[1]),
        X2,
        "sliced or joined along axis 1",
    ),
    ("rows by index", (8, 6), lambda x, w: F.linear(x, w[:4]), X2, 0),
    # rows split by a view, the other part indexed away: DBRX's experts, a fused qkv (t218)
    ("an expert's rows", (6, 6), lambda x, w: F.linear(x, w.view(3, 2, 6)[1]), X2, 0),
    ("q of a fused qkv", (12, 6), lambda x, w: x @ w.view(3, 4, 6).select(0, 0).t(), X2, 0),
    ("a row of each expert", (6, 6), lambda x, w: F.linear(x, w.view(3, 2, 6)[:, 0]), X2, 0),
    # DBRX's experts are picked by a 0-d tensor, which selects as an int does (t233)
    (
        "an expert picked by a 0-d tensor",
        (6, 6),
        lambda x, w: F.linear(x, w.view(3, 2, 6)[torch.tensor(1)]),
        X2,
        0,
    ),
    # one view splits the rows and the columns: each axis's parts are a split of their own
    (
        "rows and columns split by one view",
        (4, 6),
        lambda x, w: F.conv1d(x, w.view(2, 2, 2, 3)[1]),
        torch.randn(1, 2, 5),
        0,
    ),
    # chunk leaves a part of one element: one index, no other part of the rows (t233)
    ("q of a fused qkv by chunk", (12, 6), lambda x, w: x @ w.view(3, 4, 6).chunk(3)[0].mT, X2, 0),
    (
        "an expert's columns",
        (6, 4),
        lambda x, w: x @ w.view(3, 2, 4)[1],
        X2[:, :2],
        "sliced or joined along axis 0",
    ),
    (
        "split rows, both parts kept",
        (6, 6),
        lambda x, w: torch.einsum("bi,eoi->bo", x, w.view(3, 2, 6)),
        X2,
        "reshaped before einsum",
    ),
    (
        "split rows merged again across the split",
        (6, 3),
        lambda x, w: F.linear(x, w.view(3, 2, 3).transpose(0, 1).reshape(2, 9)[:, :6]),
        X2,
        "reshaped before F.linear",
    ),
    # a slice that keeps every column is no cut (it was "sliced along axis 1")
    ("every column by index", (8, 6), lambda x, w: F.linear(x, w[:, :6]), X2, 0),
    ("every column, a step of 1", (8, 6), lambda x, w: F.linear(x, w[:, 0:99:1]), X2, 0),
    ("einsum (out, in)", (4, 6), lambda x, w: torch.einsum("bi,oi->bo", x, w), X2, 0),
    ("einsum (in, out)", (6, 4), lambda x, w: torch.einsum("bi,io->bo", x, w), X2, 1),
    ("einsum batch axis", (2, 6, 4), lambda x, w: torch.einsum("bi,bio->bo", x, w), X2, "batch"),
    # contractions read as the einsum they are
    ("inner", (4, 6), lambda x, w: torch.inner(x, w), X2, 0),
    ("W.inner(x)", (4, 6), lambda x, w: w.inner(x).T, X2, 0),
    ("tensordot dims=1", (6, 4), lambda x, w: torch.tensordot(x, w, 1), X2, 1),
    ("tensordot of lists", (4, 6), lambda x, w: torch.tensordot(x, w, dims=([1], [1])), X2, 0),
    (
        "tensordot of a tensor's count",
        (6, 4),
        lambda x, w: torch.tensordot(x, w, dims=torch.tensor([1])),
        X2,
        1,
    ),
    (
        "tensordot of 3-D, dims=2",
        (2, 5, 3),
        lambda x, w: torch.tensordot(x, w, dims=2),
        X3,
        2,
    ),
    (
        "tensordot keeping two axes",
        (6, 2, 2),
        lambda x, w: torch.tensordot(x, w, dims=([1], [0])),
        X2,
        "tensordot as einsum 'ab,bcd->acd': the weight has 2 output axes, not one",
    ),
    ("multi_dot, the last", (6, 4), lambda x, w: torch.linalg.multi_dot([x, w]), X2, 1),
    (
        "multi_dot, inside the chain",
        (6, 4),
        lambda x, w: torch.linalg.multi_dot([x, w, torch.ones(4, 3)]),
        X2,
        "multi_dot as einsum 'ab,bc,cd->ad': the weight has 0 output axes, not one",
    ),
    ("mm", (6, 4), lambda x, w: torch.mm(x, w), X2, 1),
    ("W @ x", (4, 6), lambda x, w: (w @ x.T).T, X2, 0),
    ("bmm (1, in, out)", (1, 6, 4), lambda x, w: torch.bmm(x.unsqueeze(0), w), X2, 2),
    (
        "bmm per head",
        (3, 6, 4),
        lambda x, w: torch.bmm(x.unsqueeze(0).expand(3, -1, -1), w),
        X2,
        "batched",
    ),
    (  # one weight for every batch (t157: it was an elementwise use)
        "bmm of W expanded",
        (6, 4),
        lambda x, w: torch.bmm(x.unsqueeze(0).expand(3, -1, -1), w.unsqueeze(0).expand(3, -1, -1)),
        X2,
        1,
    ),
    (  # expand's broadcast axis is no unit of the parameter: its rows repeat one row
        "F.linear of a row expanded",
        (1, 6),
        lambda x, w: F.linear(x, w.expand(4, -1)),
        X2,
        "its unit axis is no single axis of the parameter",
    ),
    (
        "baddbmm",
        (1, 6, 4),
        lambda x, w: torch.baddbmm(torch.zeros(1, 2, 4), x.unsqueeze(0), w),
        X2,
        2,
    ),
    ("grouped conv", (4, 1, 3), lambda x, w: F.conv1d(x, w, groups=2), X3, 0),
    ("conv transpose", (2, 3, 3), lambda x, w: F.conv_transpose1d(x, w), X3, 1),
    ("depthwise conv transpose", (2, 1, 3), lambda x, w: F.conv_transpose1d(x, w, groups=2), X3, 0),
    (
        "grouped conv transpose",
        (2, 2, 3),
        lambda x, w: F.conv_transpose1d(x, w, groups=2),
        X3,
        "groups=2",
    ),
    (
        "shape read for the padding",
        (4, 1, 3),
        lambda x, w: F.conv1d(x, w, padding=w.shape[-1] - 1, groups=2),
        X3,
        0,
    ),
    (
        "size() and stride() read",
        (4, 1, 3),
        lambda x, w: F.conv1d(x, w, padding=w.size()[-1] - w.stride()[-1], groups=2),
        X3,
        0,
    ),
    (
        "values read with tolist",
        (4, 1, 3),
        lambda x, w: F.conv1d(x, w, groups=2) * len(w.tolist()),
        X3,
        "used by tolist",
    ),
    ("elementwise", (2, 6), lambda x, w: x * w, X2, "elementwise"),
    # StyleGAN's equalized learning rate: the weight scaled by one number keeps its axes
    ("W * scale", (4, 6), lambda x, w: F.linear(x, w * 0.5), X2, 0),
    ("scale * W.t()", (6, 4), lambda x, w: x @ (0.5 * w), X2, 1),
    ("W / 0-d tensor", (4, 1, 3), lambda x, w: F.conv1d(x, w / torch.tensor(3.0), groups=2), X3, 0),
    ("one-element tensor * W", (4, 6), lambda x, w: F.linear(x, torch.ones(1) * w), X2, 0),
    ("number / W", (4, 6), lambda x, w: F.linear(x, 1 / w), X2, "elementwise"),
    ("W * a row", (4, 6), lambda x, w: F.linear(x, w * torch.ones(6)), X2, "elementwise"),
    ("lookup", (10, 6), lambda x, w: w[torch.tensor([1, 2])] + x, X2, "lookup"),
    # one expert of stacked weights (MoE): said to be a gather, and why no axis would do (it
    # was called a lookup table alone)
    (
        "one expert by a tensor index",
        (3, 4, 6),
        lambda x, w: F.linear(x, w[torch.tensor([1])][0]),
        X2,
        "stacked weights, not one layer's weight); sliced or joined along axis 0 before "
        "F.linear (via __getitem__.__getitem__): units would share a norm",
    ),
    # a 0-d uint8 index is a mask, as a bool one is: it adds an axis, and is not followed
    # as a select (it was: row 1 taken for the weight, where torch gives all of it)
    (
        "a uint8 0-d index",
        (4, 6),
        lambda x, w: F.linear(x, w[torch.tensor(1, dtype=torch.uint8)][0]),
        X2,
        "indexed with a tensor",
    ),
    # by a 0-d tensor, a select as by an int (t233): the slice alone is the reason
    (
        "one expert by a 0-d tensor",
        (3, 4, 6),
        lambda x, w: F.linear(x, w[torch.tensor(1)]),
        X2,
        "sliced or joined along axis 0 before F.linear (via __getitem__): units would share",
    ),
    (
        "rows gathered by a tensor index",
        (8, 6),
        lambda x, w: F.linear(x, w[:, :][torch.tensor([0, 2])]),
        X2,
        "indexed with a tensor (a lookup table or stacked weights, not one layer's weight)",
    ),
    (
        "a mask",
        (4, 6),
        lambda x, w: w[w > 0].sum() * x,
        X2,
        "indexed with a tensor (a lookup table or stacked weights, not one layer's weight)",
    ),
    (
        "cat rows (fused q/k/v)",
        (4, 6),
        lambda x, w: F.linear(x, torch.cat([w, torch.ones(2, 6)])),
        X2,
        0,
    ),
    (
        "cat columns",
        (4, 3),
        lambda x, w: F.linear(x, torch.cat([w, w.detach()], dim=1)),
        X2,
        "sliced or joined along axis 1",
    ),
    (
        "clamped in place",
        (4, 6),
        lambda x, w: F.linear(x, w.data.clamp_(-9, 9)),
        X2,
        "modified in place in the forward (clamp_)",
    ),
]


@pytest.mark.parametrize(
    ("case", "shape", "use", "x", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_consumers_and_views_map_to_the_parameter_axis(
    case: str, shape: tuple[int, ...], use: Forward, x: torch.Tensor, expected: int | str
) -> None:
    """The unit axis on what the op saw, mapped back through the views to the parameter."""
    torch.manual_seed(0)
    model = OneWeight(shape, use)
    site = _observed(model, (x,))["w"]
    if isinstance(expected, int):
        assert (site.status, site.axis) == ("planned", expected), site.reason
        report = apply_weight_norm(model, (x,))  # and the outputs are unchanged
        assert report.applied == 1 and report.equivalent
    else:
        assert site.status == "skipped" and expected in (site.reason or ""), site.reason


def test_gpt2_like_model_conv1d_tied_head_cache_and_control_flow() -> None:
    """addmm Conv1D weights at their last axis; the tied head stays tied and is reported;
    a cache object, a dict-like output and value-dependent control flow change nothing."""
    torch.manual_seed(0)
    model, ids = TinyGPT(), torch.randint(0, 16, (2, 5))
    before = result_tensors(model.eval()(ids))
    assert len(before) == 4  # logits, two cached keys, the dataclass's hidden
    model.train()
    report = apply_weight_norm(model, {"input_ids": ids})
    sites = {s.name: s for s in report.sites}
    conv = [n for n in sites if n.endswith(("c_attn.weight", "c_proj.weight"))]
    assert len(conv) == 4
    assert all((sites[n].status, sites[n].axis) == ("applied", 1) for n in conv)
    assert sites["blocks.0.c_attn.weight"].op == "Conv1D (addmm)"
    assert "tied weight (also lm_head.weight)" in (sites["wte.weight"].reason or "")
    assert model.lm_head.weight is model.wte.weight and model.training
    assert report.traced_with == "observed" and report.equivalent and report.status == "ok"
    after = result_tensors(model.eval()(ids))
    assert all(
        torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(after, before, strict=True)
    )
    # the static tracers cannot follow this model: module types only, Conv1D unseen
    static, mode, note = analyse_sites(TinyGPT(), None)
    assert mode == "module types" and "example inputs" in (note or "")
    assert not any(s.status == "planned" for s in static)


@pytest.mark.parametrize(
    "layer",
    [
        lambda: nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True),
        lambda: nn.GRU(4, 6, batch_first=True),
        lambda: nn.MultiheadAttention(4, 2, batch_first=True),
        lambda: nn.MultiheadAttention(4, 2, kdim=3, vdim=5, batch_first=True),
    ],
    ids=["lstm", "gru", "mha", "mha-separate-projections"],
)
def test_rnn_flat_weights_and_attention_projections(layer: Callable[[], nn.Module]) -> None:
    """Every 2-D weight at axis 0, every bias left alone; outputs unchanged after applying."""

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if isinstance(self.layer, nn.MultiheadAttention):
                k = torch.randn(2, 3, self.layer.kdim, generator=torch.Generator().manual_seed(1))
                v = torch.randn(2, 3, self.layer.vdim, generator=torch.Generator().manual_seed(2))
                return self.layer(x, k, v)[0]
            return self.layer(x)[0]

    torch.manual_seed(0)
    model, x = Wrap(), torch.randn(2, 3, 4)
    sites = _observed(model, (x,))
    weights = [s for s in sites.values() if len(s.shape or ()) == 2]
    assert weights and all((s.status, s.axis) == ("planned", 0) for s in weights)
    assert all(s.status == "skipped" for s in sites.values() if len(s.shape or ()) == 1)
    report = apply_weight_norm(model, (x,))
    assert report.applied == len(weights) and report.equivalent


class LearnedStates(nn.Module):
    """RNNs fed learned tensors: initial states ``(h0, c0)`` and ``hx`` (also beside a packed
    sequence), a cell's ``(h, c)``, and a learned input sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 5, num_layers=2, proj_size=3, batch_first=True)
        self.gru = nn.GRU(4, 5, bias=False, batch_first=True)
        self.cell = nn.LSTMCell(4, 5)
        self.h0, self.c0 = nn.Parameter(torch.randn(2, 1, 3)), nn.Parameter(torch.randn(2, 1, 5))
        self.hx = nn.Parameter(torch.randn(1, 1, 5))
        self.cell_h, self.cell_c = nn.Parameter(torch.randn(1, 5)), nn.Parameter(torch.randn(1, 5))
        self.queries = nn.Parameter(torch.randn(1, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lstm(x, (self.h0, self.c0))[0].sum() + self.lstm(self.queries)[0].sum()
        packed = nn.utils.rnn.pack_padded_sequence(x, [3], batch_first=True)
        out = out + self.gru(packed, self.hx)[1].sum() + self.gru(x, self.hx)[0].sum()
        return out + self.cell(x[:, 0], (self.cell_h, self.cell_c))[0].sum()


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_learned_rnn_states_and_inputs_are_not_weights() -> None:
    """A learned h0/c0, hx or input sequence fed to an RNN got weight norm at axis 0 as if it
    were one of the RNN's weights; only the RNN's own weights (by their position in the call)
    are: every one at axis 0, projections too, and every bias left alone."""
    torch.manual_seed(0)
    model, x = LearnedStates(), torch.randn(1, 3, 4)
    sites = _observed(model, (x,))
    states = ["h0", "c0", "hx", "cell_h", "cell_c", "queries"]
    for name in states:
        assert sites[name].status == "skipped", sites[name]
        assert "input or state of" in (sites[name].reason or ""), sites[name]
    own = [s for s in sites.values() if s.name not in states]
    weights = [s for s in own if "weight" in s.name]
    assert len(weights) == 10 and all((s.status, s.axis) == ("planned", 0) for s in weights)
    assert all((s.status, s.reason) == ("skipped", "bias") for s in own if "bias" in s.name)
    report = apply_weight_norm(model, (x,))
    assert report.applied == len(weights) and report.equivalent


class ExportedStates(nn.Module):
    """Learned RNN states and inputs in a model torch.fx cannot trace (a branch on a shape),
    so that the static analysis reads torch.export's graph."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 5, num_layers=2, proj_size=3, batch_first=True)
        self.gru = nn.GRU(4, 5, bias=False, batch_first=True)
        self.h0, self.c0 = nn.Parameter(torch.randn(2, 1, 3)), nn.Parameter(torch.randn(2, 1, 5))
        self.hx = nn.Parameter(torch.randn(1, 1, 5))
        self.queries = nn.Parameter(torch.randn(1, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 0:  # torch.fx cannot trace this branch; torch.export takes it
            x = x * 1
        out = self.lstm(x, (self.h0, self.c0))[0].sum() + self.lstm(self.queries)[0].sum()
        return out + self.gru(x, self.hx)[0].sum()


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_learned_rnn_states_are_not_weights_in_torch_exports_graph_either() -> None:
    """The static analysis's torch.export path read every parameter an RNN took as one of
    its weights (h0 at axis 0); there too only the flat weights are, biases by position."""
    torch.manual_seed(0)
    model, x = ExportedStates(), torch.randn(1, 3, 4)
    static, mode, _ = analyse_sites(model, (x,), tracer="static")
    assert mode == "export"
    sites = {s.name: s for s in static}
    for name in ("h0", "c0", "hx", "queries"):
        assert sites[name].status == "skipped", sites[name]
        assert "input or state of" in (sites[name].reason or ""), sites[name]
    observed = _observed(model, (x,))
    assert {
        n: (s.status, s.axis) for n, s in sites.items() if n not in ("h0", "c0", "hx", "queries")
    } == {
        n: (s.status, s.axis) for n, s in observed.items() if n not in ("h0", "c0", "hx", "queries")
    }


def test_observation_agrees_with_fx_where_fx_works() -> None:
    """On models torch.fx can trace, both analyses plan the same axes."""
    models = [
        (Functional(), (torch.randn(4, 5),)),
        (
            nn.Sequential(
                nn.Conv1d(2, 4, 3), nn.ConvTranspose1d(4, 2, 3), nn.Flatten(), nn.Linear(10, 3)
            ),
            (torch.randn(2, 2, 5),),
        ),
    ]
    for model, inputs in models:
        observed = _observed(model, inputs)
        static, mode, _ = analyse_sites(model, inputs, tracer="static")
        assert mode == "fx"
        assert {s.name: (s.status, s.axis) for s in static} == {
            n: (s.status, s.axis) for n, s in observed.items()
        }


def test_loop_reused_weights() -> None:
    """A layer called three times and a weight reused in a loop: one weight norm each."""
    torch.manual_seed(0)
    model, x = Looped(), torch.randn(3, 6)
    report = apply_weight_norm(model, (x,))
    sites = {s.name: s for s in report.sites}
    assert (sites["step.weight"].axis, sites["w"].axis) == (0, 1)
    assert report.applied == 2 and report.equivalent


def test_frozen_parameters_are_left_alone() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[0].weight.requires_grad_(False)
    sites = _observed(model, (torch.randn(2, 3),))
    assert sites["0.weight"].reason == "frozen (requires_grad=False)"
    assert sites["1.weight"].status == "planned"


def test_model_errors_become_a_wnpass_error_naming_the_model() -> None:
    """An exception in the user's forward: ForwardFailedError (exit 2); the mode is restored."""

    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise KeyError("no such layer")

    model = Broken().train()
    with pytest.raises(ForwardFailedError, match=r"Broken: .*KeyError") as caught:
        analyse_sites(model, (torch.randn(1, 3),))
    assert isinstance(caught.value, WnpassError) and caught.value.exit_code == 2
    assert model.training and not torch.nn.utils.parametrize.is_parametrized(model.lin)


def test_include_exclude_by_layer_type_name() -> None:
    """A class name selects that class and its subclasses: the model's own, or torch.nn's."""
    ids = {"input_ids": torch.randint(0, 16, (1, 4))}
    assert layer_type(TinyGPT(), "Conv1D") is Conv1D
    assert layer_type(TinyGPT(), "Linear") is nn.Linear
    assert layer_type(TinyGPT(), "Conv2d") is nn.Conv2d
    with pytest.raises(UnknownLayerTypeError, match=r"Conv1D, .*TinyGPT") as caught:
        layer_type(TinyGPT(), "Conv7d")
    assert caught.value.exit_code == 2
    only = _observed(TinyGPT(), ids, include="Conv1D")
    assert {n for n, s in only.items() if s.status == "planned"} == {
        f"blocks.{i}.{m}.weight" for i in range(2) for m in ("c_attn", "c_proj")
    }
    none = _observed(TinyGPT(), ids, exclude=[Conv1D])
    assert not any(s.status == "planned" for s in none.values())


def test_applying_nothing_is_a_failure_unless_selected_on_purpose(tmp_path: Path) -> None:
    """Nothing to apply: falsy, with the reason (JSON too); include/exclude leaving nothing
    out on purpose: truthy 'nothing selected'."""

    class Norms(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(5, 4)
            self.norm = nn.LayerNorm(4)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.norm(self.emb(ids))

    report = apply_weight_norm(Norms(), (torch.tensor([[1, 2]]),))
    assert not report and report.status == "nothing applied"
    assert "1-D parameter" in (report.reason or "") and "opt-in" in (report.reason or "")
    report.write_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert (data["ok"], data["status"], data["reason"]) == (False, "nothing applied", report.reason)
    model = nn.Sequential(nn.Linear(3, 3))
    chosen = apply_weight_norm(model, (torch.randn(1, 3),), exclude="Linear")
    assert chosen and chosen.status == "nothing selected" and chosen.applied == 0
    assert apply_weight_norm(nn.Sequential(nn.Linear(3, 3)), (torch.randn(1, 3),)).status == "ok"


class _Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.inner(x, self.W)  # x @ W.T: W's rows are the units, not its columns


class _CatAxis(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.randn(3, 4))
        self.B = nn.Parameter(torch.randn(3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        joined = torch.cat([self.A, self.B], axis=1)  # type: ignore[call-arg]  # numpy spelling
        return F.linear(x, joined)  # joined along the input axis


class _Reversed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(3, 4, 5))  # stored (k, in, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.W.T)  # .T reverses every dimension: (out, in, k)


def test_views_that_are_easy_to_misread() -> None:
    """inner is read as x @ W.T (not taken for x @ W), cat's axis= keyword is read, and .T on
    a 3-D weight reverses all its dimensions."""
    import warnings

    sites, _, _ = analyse_sites(_Inner(), (torch.randn(2, 4),))
    assert [(s.name, s.axis, s.status) for s in sites] == [("W", 0, "planned")]
    sites, _, _ = analyse_sites(_CatAxis(), (torch.randn(2, 8),))
    assert {s.status for s in sites} == {"skipped"}
    assert all("sliced or joined along axis 1" in (s.reason or "") for s in sites)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sites, _, _ = analyse_sites(_Reversed(), (torch.randn(1, 4, 10),))
    assert [(s.name, s.axis, s.status) for s in sites] == [("W", 2, "planned")]


def test_each_submodule_gets_its_own_mode_back() -> None:
    """A BatchNorm kept in eval inside a model in training stays in eval after the analysis,
    the forward and apply_weight_norm."""
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model.train()
    model[1].eval()
    analyse_sites(model, (torch.randn(3, 4),))
    apply_weight_norm(model, (torch.randn(3, 4),))
    assert model.training and model[0].training and not model[1].training


@pytest.mark.parametrize(
    ("name", "norm"),
    [
        ("layer_norm", lambda w: F.layer_norm(w, (4,))),
        ("layer_norm", lambda w: F.layer_norm(input=w, normalized_shape=(4,))),
        ("group_norm", lambda w: F.group_norm(w, 2)),
    ],
)
def test_a_parameter_a_norm_normalizes_is_its_input_not_its_scale(
    name: str, norm: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    """SEW-D's relative-position embeddings go through LayerNorm as its input: they were
    declined as the norm's "scale or shift", which they are not; nor "not a weight", which
    a conv's weight standardized by batch_norm before the conv reads it is (timm's StdConv2d,
    t312)."""

    class NormedTable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.randn(6, 4))
            self.scale = nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ norm(self.table).T + F.layer_norm(x, (4,), self.scale).sum()

    sites = _observed(NormedTable(), (torch.randn(2, 4),))
    assert sites["table"].status == "skipped"
    assert sites["table"].reason == f"normalized by {name}, not weight-normed"
    assert sites["scale"].reason == "1-D parameter (a scale or shift)"


class _Renormed(nn.Module):
    """Three tables read with max_norm, which renormalizes the rows read in place at every
    forward, and one read without."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Embedding(10, 4, max_norm=1.0)
        self.functional = nn.Parameter(torch.randn(10, 4))
        self.bag = nn.Parameter(torch.randn(10, 4))
        self.plain = nn.Embedding(10, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.layer(ids) + F.embedding(ids, self.functional, max_norm=2.0)
        return (
            rows.sum(1)
            + F.embedding_bag(ids, self.bag, mode="sum", max_norm=2.0)
            + self.plain(ids).sum(1)
        )


@pytest.mark.parametrize("tracer", ["observe", "static"])
def test_an_embedding_with_max_norm_is_left_alone(tracer: str) -> None:
    """Under weight norm the renormalization would land on the computed weight, never on g
    and v: the constraint would silently stop holding in training."""
    model = _Renormed()
    ids = torch.randint(0, 10, (3, 5))
    sites, _, _ = analyse_sites(model, (ids,), embeddings=True, tracer=tracer)  # type: ignore[arg-type]
    found = {site.name: site for site in sites}
    # torch.fx reads F.embedding's max_norm too (F.embedding_bag is no op it knows)
    renormed = (
        ["layer.weight", "functional"]
        if tracer == "static"
        else ["layer.weight", "functional", "bag"]
    )
    for name in renormed:
        assert found[name].axis is None, name
        assert "max_norm renormalizes" in str(found[name].reason), name
    assert found["plain.weight"].axis == 0


class _LearnedInputs(nn.Module):
    """Learned queries into a Linear, a learned image into a Conv2d, prefix tokens joined to
    the input into a Bilinear's first input and a ConvTranspose1d's input."""

    def __init__(self) -> None:
        super().__init__()
        self.queries, self.proj = nn.Parameter(torch.randn(4, 8)), nn.Linear(8, 6)
        self.image, self.conv = nn.Parameter(torch.randn(1, 3, 8, 8)), nn.Conv2d(3, 4, 3)
        self.prefix, self.pair = nn.Parameter(torch.randn(2, 8)), nn.Bilinear(8, 8, 3)
        self.frames, self.up = nn.Parameter(torch.randn(1, 8, 5)), nn.ConvTranspose1d(8, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        joined = torch.cat([self.prefix, x])
        return (
            self.proj(self.queries).sum()
            + self.conv(self.image).sum()
            + self.pair(joined, joined).sum()
            + self.up(self.frames).sum()
        )


def test_a_learned_input_of_a_layer_is_said_to_be_its_input() -> None:
    """A parameter fed to a Linear or a Conv as its input was said to be "not used in the
    observed forward" (t197)."""
    sites = _observed(_LearnedInputs(), (torch.randn(3, 8),))
    expected = {
        "queries": "F.linear",
        "image": "F.conv2d",
        "prefix": "bilinear",
        "frames": "F.conv_transpose1d",
    }
    for name, op in expected.items():
        assert sites[name].reason == f"the input of {op}, not a weight", name
    assert {sites[name].axis for name in ("proj.weight", "conv.weight", "pair.weight")} == {0}
    assert sites["up.weight"].axis == 1


class _FunctionalInputs(nn.Module):
    """Parameters given to F.linear and F.conv2d as their inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.rows, self.w = nn.Parameter(torch.randn(4, 8)), nn.Parameter(torch.randn(6, 8))
        self.image, self.k = (
            nn.Parameter(torch.randn(1, 3, 5, 5)),
            nn.Parameter(torch.randn(2, 3, 3, 3)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.rows, self.w).sum() + F.conv2d(self.image, self.k).sum() + x.sum()


@pytest.mark.parametrize("tracer", ["observe", "static"])
def test_a_parameter_given_as_a_functional_layer_s_input_is_said_so(tracer: str) -> None:
    """torch.fx said F.linear's input was a bias (t201)."""
    sites, _, _ = analyse_sites(_FunctionalInputs(), (torch.randn(2),), tracer=tracer)  # type: ignore[arg-type]
    found = {site.name: site for site in sites}
    assert found["rows"].reason == "the input of F.linear, not a weight"
    assert found["image"].reason == "the input of F.conv2d, not a weight"
    assert found["w"].axis == found["k"].axis == 0


class _NotElementwise(nn.Module):
    """Weights repeated, stacked and reduced: no elementwise use."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(torch.randn(4, 4)), nn.Parameter(torch.randn(4, 4))
        self.c, self.d = nn.Parameter(torch.randn(4, 4)), nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = torch.stack([self.b, self.c])
        return x @ self.a.repeat(1, 2) + both.sum() + self.d.norm()


def test_a_weight_joined_or_reduced_is_said_to_be_so() -> None:
    """W.repeat, torch.stack and W.norm were said to be elementwise uses (t197)."""
    sites = _observed(_NotElementwise(), (torch.randn(2, 4),))
    assert sites["a"].reason == "joined or repeated by repeat: axis not followed"
    assert (
        sites["b"].reason == sites["c"].reason == "joined or repeated by stack: axis not followed"
    )
    assert sites["d"].reason == "reduced by norm: no layer's unit axis"


class _Sparse(nn.Module):
    """Tables read with sparse=True (a sparse gradient), and one read without."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Embedding(10, 4, sparse=True)
        self.bags = nn.EmbeddingBag(10, 4, sparse=True)
        self.functional = nn.Parameter(torch.randn(10, 4))
        self.aten = nn.Parameter(torch.randn(10, 4))
        self.plain = nn.Embedding(10, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.layer(ids) + F.embedding(ids, self.functional, sparse=True)
        rows = rows + torch.embedding(self.aten, ids, -1, False, True)  # t201
        return rows.sum(1) + self.bags(ids) + self.plain(ids).sum(1)


@pytest.mark.parametrize("tracer", ["observe", "static"])
def test_an_embedding_with_a_sparse_gradient_is_left_alone(tracer: str) -> None:
    """t197: ``embeddings=True`` normed a sparse=True table, said "ok", and the first
    backward failed (a sparse gradient cannot reach g and v)."""
    model, ids = _Sparse(), torch.randint(0, 10, (3, 5))
    sites, _, _ = analyse_sites(model, (ids,), embeddings=True, tracer=tracer)  # type: ignore[arg-type]
    found = {site.name: site for site in sites}
    # torch.fx knows no EmbeddingBag layer: skipped as such
    sparse = ["layer.weight", "functional", "aten"]
    sparse += [] if tracer == "static" else ["bags.weight"]
    for name in sparse:
        assert str(found[name].reason).startswith("takes a sparse gradient"), name
    assert found["bags.weight"].axis is None
    assert found["plain.weight"].axis == 0
    apply_weight_norm(model, (ids,), embeddings=True, tracer=tracer)  # type: ignore[arg-type]
    model(ids).square().mean().backward()


class _CondConv(nn.Module):
    """timm's CondConv2d: per-sample kernels mixed from E experts' stacked weights,
    ``routing @ W`` read by a grouped conv through ``how`` (a view, one sample's kernels, an
    unbind, a scaling, added to a static kernel, computed as ``(W.t() @ routing.t()).t()``);
    its bias mixed likewise; a plain conv after."""

    def __init__(self, how: str, experts: int = 3) -> None:
        super().__init__()
        self.how = how
        self.weight = nn.Parameter(torch.randn(experts, 4 * 2 * 3 * 3))
        self.bias = nn.Parameter(torch.randn(experts, 4))
        self.base = nn.Parameter(torch.randn(4, 2, 3, 3))
        self.route = nn.Linear(2, experts)
        self.plain = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        routing = torch.sigmoid(self.route(x.mean((2, 3))))
        if self.how == "left":
            mixed = (self.weight.t() @ routing.t()).t()
        else:
            mixed = torch.matmul(routing, self.weight)
        bias = torch.matmul(routing, self.bias)
        if self.how in ("view", "scaled", "left"):
            kernels = mixed.reshape(batch * 4, 2, 3, 3) * (0.5 if self.how == "scaled" else 1)
            flat = x.reshape(1, batch * 2, *x.shape[2:])
            out = F.conv2d(flat, kernels, bias.view(batch * 4), groups=batch)
            out = out.view(batch, 4, *out.shape[2:])
        else:
            each = mixed.unbind(0) if self.how == "unbind" else [mixed[i] for i in range(batch)]
            convs = [
                F.conv2d(x[i : i + 1], self._kernel(k.view(4, 2, 3, 3)), bias[i])
                for i, k in enumerate(each)
            ]
            out = torch.cat(convs)
        return self.plain(out)

    def _kernel(self, mixed: torch.Tensor) -> torch.Tensor:
        return self.base + mixed if self.how == "based" else mixed


@pytest.mark.parametrize("batch", [2, 18])
@pytest.mark.parametrize("how", ["view", "scaled", "unbind", "indexed", "based", "left"])
def test_experts_mixed_into_a_layer_s_weight_are_no_units_of_it(how: str, batch: int) -> None:
    """CondConv's stacked expert weights were weight-normed at axis 1 of ``routing @ W``: one
    unit per kernel element across the experts, no filter normalized (t261), also where one
    sample's kernels are taken, unbound or scaled first (t265). What a layer op computes
    from a weight and another layer reads as its weight, with the units' axis split across
    that weight's axes, is mixed into it: skipped, saying so. Its bias (a unit per output
    channel), the router and the plain conv after are ordinary layers.

    t270: the test compared the size of the units' axis (72) with the kernels' shape, which
    a batch of 18 makes ``[72, 2, 3, 3]``: weight-normed at axis 1; so did a routed kernel
    added to a static one (not followed through ``+``) and ``routing @ W`` computed with
    ``W`` as the left operand (its units on the result's last axis, taken as the batch's)."""
    sites = _observed(_CondConv(how), (torch.randn(batch, 2, 5, 5),))
    assert sites["weight"].status == "skipped"
    assert (
        "mixed into another layer's weight (matmul of it, then F.conv2d, its units split "
        "across that weight's axes 0, 1, 2 and 3" in (sites["weight"].reason or "")
    )
    assert "mixed" not in (sites["bias"].reason or "")
    assert sites["route.weight"].axis == 0 and sites["plain.weight"].axis == 0


class _TracedCondConv(nn.Module):
    """CondConv as torch.fx traces it (a batch of 2, no shapes read): ``routing @ W`` viewed
    as a grouped conv's kernels, scaled first or not."""

    def __init__(self, scaled: bool) -> None:
        super().__init__()
        self.scaled = scaled  # scaled: through a tanh and a scaling (t331: planned at axis 1)
        self.weight = nn.Parameter(torch.randn(3, 4 * 2 * 3 * 3))
        self.route = nn.Linear(2, 3)
        self.plain = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.matmul(torch.sigmoid(self.route(x.mean((2, 3)))), self.weight)
        kernels = (torch.tanh(mixed) * 0.5 if self.scaled else mixed).view(-1, 2, 3, 3)
        out = F.conv2d(x.view(1, -1, 5, 5), weight=kernels, groups=2)
        return self.plain(out.view(2, 4, 3, 3))


@pytest.mark.parametrize("scaled", [False, True])
def test_experts_mixed_into_a_layer_s_weight_are_skipped_when_traced_too(scaled: bool) -> None:
    """t327: without example inputs (traced by torch.fx), CondConv's experts were weight-normed
    at axis 1 where a forward declines them (90 layers applied against 66 in timm's
    efficientnet_cc_b0_4e, said nowhere). A product of a weight that a layer reads as its
    weight is declined there too: the trace has no values to tell its units' axes by."""
    sites, mode, _ = analyse_sites(_TracedCondConv(scaled))
    by_name = {site.name: site for site in sites}
    assert mode == "fx" and by_name["weight"].status == "skipped"
    assert "mixed into another layer's weight (matmul of it, then F.conv2d reads it as its " in (
        by_name["weight"].reason or ""
    )
    assert by_name["route.weight"].axis == 0 and by_name["plain.weight"].axis == 0


class _CondConvThrough(nn.Module):
    """CondConv traced, some op between ``routing @ W`` (or ``addmm(b, routing, W)``) and the
    kernel's view."""

    def __init__(self, between: str) -> None:
        super().__init__()
        self.between = between
        self.weight = nn.Parameter(torch.randn(3, 4 * 2 * 3 * 3))
        self.route, self.bias = nn.Linear(2, 3), nn.Parameter(torch.zeros(72))
        self.gelu, self.drop = nn.GELU(), nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        routing = torch.sigmoid(self.route(x.mean((2, 3))))
        if self.between == "addmm":
            mixed = torch.addmm(self.bias, routing, self.weight)
        else:
            mixed = _BETWEEN[self.between](self, routing @ self.weight)
        return F.conv2d(x.reshape(1, -1, 5, 5), mixed.reshape(-1, 2, 3, 3), groups=2)


_BETWEEN: dict[str, Callable[[_CondConvThrough, torch.Tensor], torch.Tensor]] = {
    "nn.GELU()": lambda m, k: m.gelu(k),
    "nn.Dropout()": lambda m, k: m.drop(k),
    "F.silu": lambda m, k: F.silu(k),
    ".T.T": lambda m, k: k.T.T,
    "masked_fill": lambda m, k: k.masked_fill(k > 10, 0.0),
    "softmax": lambda m, k: torch.softmax(k, -1),
}


@pytest.mark.parametrize("between", [*_BETWEEN, "addmm"])
def test_experts_mixed_into_a_kernel_are_skipped_traced_whatever_op_comes_between(
    between: str,
) -> None:
    """t333: the trace followed the product only through ops it listed by name, and planned
    the experts at axis 1 (g of 1 x 72, across them) where an ``nn.GELU()``, a dropout
    module, ``F.silu``, ``.T`` or a ``masked_fill`` came between, as a forward does not; an
    ``addmm`` of it was not followed at all. Every op but another layer's is followed."""
    traced, mode, _ = analyse_sites(_CondConvThrough(between))
    observed, _, _ = analyse_sites(_CondConvThrough(between), torch.randn(2, 2, 5, 5))
    plan = {site.name: (site.status, site.axis) for site in traced}
    assert mode == "fx" and plan["weight"][0] == "skipped"
    assert plan == {site.name: (site.status, site.axis) for site in observed}


class _ProtoNet(nn.Module):
    """A few-shot cosine classifier: prototypes the mean over 3 shots of ``support @ W``."""

    def __init__(self) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(32, 16) * 0.1)

    def forward(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        prototypes = (support @ self.W).view(5, 3, -1).mean(1)
        return F.linear(F.normalize(query @ self.W, dim=-1), F.normalize(prototypes, dim=-1))


def test_a_product_reduced_before_a_layer_reads_it_is_planned_traced() -> None:
    """t336: followed through every op, the mean over the shots of a viewed ``support @ W``
    reached F.linear's weight slot, and W was skipped traced where a forward plans it: a
    reduction's elements are no longer the product's own."""
    traced, mode, _ = analyse_sites(_ProtoNet())
    observed, _, _ = analyse_sites(_ProtoNet(), (torch.randn(4, 32), torch.randn(15, 32)))
    plan = {site.name: (site.status, site.axis) for site in traced}
    assert mode == "fx" and plan["W"][0] == "planned"
    assert plan == {site.name: (site.status, site.axis) for site in observed}


class _PerSampleCondConv(nn.Module):
    """CondConv unrolled over a batch of 40: one ``getitem`` of the product per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 4 * 2 * 3 * 3))
        self.route = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.sigmoid(self.route(x.mean((2, 3)))) @ self.weight
        return torch.cat([F.conv2d(x[i : i + 1], mixed[i].view(4, 2, 3, 3)) for i in range(40)])


def test_a_products_many_users_do_not_use_up_the_walk_to_a_kernel() -> None:
    """t333: one ``getitem`` per sample (40 of them) used up the walk's 64 nodes before any
    reached its view, and the experts were planned at axis 1: a walk bounded by steps, each
    sample's kernel one step further."""
    sites, mode, _ = analyse_sites(_PerSampleCondConv())
    assert mode == "fx" and {s.name: s.status for s in sites}["weight"] == "skipped"


class _StemThenCondConv(nn.Module):
    """A raw-parameter stem, ``x @ embed``, in front of a CondConv head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Parameter(torch.randn(2, 2))
        self.head = _TracedCondConv(scaled=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((x.permute(0, 2, 3, 1) @ self.embed).permute(0, 3, 1, 2).contiguous())


def test_a_weight_whose_product_feeds_a_condconv_as_its_input_is_planned_traced() -> None:
    """t332: traced, the walk from ``x @ embed`` went on through the CondConv's router and
    its experts' product into the kernel's reshape, and skipped the stem's weight (and every
    weight of a transformer block before such a head); the product's elements stop being its
    own at another layer or product."""
    traced, mode, _ = analyse_sites(_StemThenCondConv())
    observed, _, _ = analyse_sites(_StemThenCondConv(), torch.randn(2, 2, 5, 5))
    plan = {site.name: (site.status, site.axis) for site in traced}
    assert mode == "fx" and plan == {site.name: (site.status, site.axis) for site in observed}
    assert plan["embed"] == ("planned", 1) and plan["head.weight"][0] == "skipped"


class _Factorized(nn.Module):
    """A factorized Linear, ``F.linear(x, U @ V)``, and LoRA merged into a Linear's weight,
    ``F.linear(x, W + (B @ A) * s)``: products read as a weight with their units whole."""

    def __init__(self) -> None:
        super().__init__()
        self.U, self.V = nn.Parameter(torch.randn(6, 2)), nn.Parameter(torch.randn(2, 4))
        self.W = nn.Parameter(torch.randn(6, 6))
        self.B, self.A = nn.Parameter(torch.randn(6, 2)), nn.Parameter(torch.randn(2, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.U @ self.V), self.W + (self.B @ self.A) * 0.5)


def test_products_read_as_a_weight_unshaped_are_planned_when_traced_as_with_inputs() -> None:
    """t330: the trace declined every product of a weight that reached a layer's weight slot
    (a factorized Linear's U and V, LoRA's A and B), where a forward plans them: only a
    product reshaped into the kernel is declined."""
    traced, mode, _ = analyse_sites(_Factorized())
    observed, _, _ = analyse_sites(_Factorized(), torch.randn(3, 4))
    assert mode == "fx"

    def plan(sites: list[ParamSite]) -> dict[str, tuple[str, int | None]]:
        return {site.name: (site.status, site.axis) for site in sites}

    assert plan(traced) == plan(observed)
    assert plan(traced)["U"] == ("planned", 0) and plan(traced)["A"] == ("planned", 1)


class _Correlation(nn.Module):
    """A siamese tracker's depthwise cross-correlation (pysot's ``xcorr_depthwise``): each
    channel of the template's features is a kernel over that channel of the search image's,
    the batch merged with the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.template, self.search = nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        kernel, search = self.template(z), self.search(x)
        batch, channels = kernel.shape[:2]
        kernel = kernel.view(batch * channels, 1, *kernel.shape[2:])
        flat = search.view(1, batch * channels, *search.shape[2:])
        return F.conv2d(flat, kernel, groups=batch * channels)


@pytest.mark.parametrize("batch", [1, 2])
def test_a_layer_s_units_merged_with_the_batch_into_a_kernel_s_filters_stay_whole(
    batch: int,
) -> None:
    """t270: a siamese tracker's template conv, whose channels become one kernel each
    (``[B * C, 1, h, w]``), was skipped as CondConv's experts at a batch of 2 (its units'
    axis, 4, no axis of a weight of 8 rows) and weight-normed at a batch of 1: each of its
    units is one filter of the correlation at any batch (merged with the batch, not split)."""
    sites = _observed(_Correlation(), (torch.randn(batch, 4, 5, 5), torch.randn(batch, 4, 9, 9)))
    assert (sites["template.weight"].status, sites["template.weight"].axis) == ("planned", 0)


class _Hyper(nn.Module):
    """A hypernetwork: a Linear's 216 outputs are a 6x4x3x3 kernel's elements, through
    ``shape`` (an activation, a sum, a concatenation, an expansion) before the view."""

    def __init__(self, shape: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.shape = shape
        self.z = nn.Parameter(torch.randn(1, 3))
        self.h = nn.Linear(3, 6 * 4 * 3 * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.shape(self.h(self.z)).view(6, 4, 3, 3))


HYPER: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "neg": lambda t: -t,
    "relu": F.relu,
    "where": lambda t: torch.where(t > 0, t, 0.1 * t),
    "expand": lambda t: t.expand(2, -1)[0],
    "repeat": lambda t: t.repeat(2, 1)[1],
    "cat": lambda t: torch.cat([t[:, :108], t[:, 108:]], 1),
    "stack": lambda t: torch.stack([t, t])[0],
    "flip": lambda t: t.flip(1),
    "masked_fill_": lambda t: t.masked_fill_(t > 1, 0),
    "clamp_": lambda t: t.clamp_(min=torch.full_like(t, -1)),
    "cat axis=": lambda t: torch.cat([t[:, :108], t[:, 108:]], axis=1),  # type: ignore[call-arg]
    "hstack": lambda t: torch.hstack([t[:, :108], t[:, 108:]]),
    "tile": lambda t: t.tile(2, 1)[1:],
}


@pytest.mark.parametrize("shape", list(HYPER))
def test_a_kernel_computed_through_other_ops_is_still_mixed(shape: str) -> None:
    """t272: a hypernetwork's kernel through ``tanh``, a negation, a ``relu``, ``cat`` or
    ``expand`` before its view was weight-normed one kernel element per unit, reported
    applied (the layout was followed through views and arithmetic only). Ops that keep each
    element where it is, join or repeat tensors keep the layout; so do ops in place with
    other tensors (a masked kernel) and ``cat`` given ``axis=`` (t274)."""
    sites = _observed(_Hyper(HYPER[shape]), (torch.randn(1, 4, 5, 5),))
    assert "its units split across that weight's axes 0, 1, 2 and 3" in str(
        sites["h.weight"].reason
    )


class _FirstTemplates(nn.Module):
    """SiamFC's kernels from the first two templates of a batch, flattened with the
    channels first: ``conv(z).flatten(0, 1)[:8].view(2, 4, 3, 3)``; and keys transposed in
    place, ``k.t_()``, read as a linear's weight."""

    def __init__(self) -> None:
        super().__init__()
        self.f, self.keys = nn.Conv2d(3, 4, 3), nn.Linear(5, 6)

    def forward(self, z: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        kernels = self.f(z).flatten(0, 1)[:8].view(2, 4, 3, 3)
        keys = self.keys(y).t_()
        return F.conv2d(x, kernels).sum() + F.linear(y[:, :3], keys).sum()


@pytest.mark.parametrize("batch", [2, 3])
def test_a_slice_of_units_merged_with_the_batch_and_an_in_place_transpose_keep_them_whole(
    batch: int,
) -> None:
    """t272: the slice of ``[B * 4]`` made one stretch of the batch and the units, which the
    view then split across two axes: skipped as mixed at a batch of 3 only; ``t_()`` left
    the layout of the tensor before it. A slice from a multiple of the units' size keeps
    them whole, and an op in place is followed or forgets the layout."""
    inputs = (torch.randn(batch, 3, 5, 5), torch.randn(1, 4, 9, 9), torch.randn(3, 5))
    sites = _observed(_FirstTemplates(), inputs)
    assert (sites["f.weight"].status, sites["f.weight"].axis) == ("planned", 0)
    assert (sites["keys.weight"].status, sites["keys.weight"].axis) == ("planned", 0)


class _TwoTemplates(nn.Module):
    """SiamFC with two templates whose kernels, merged with the batch, are joined: by ``cat``
    or picked by ``index_select`` in whole blocks of channels."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how, self.f = how, nn.Conv2d(3, 4, 3)

    def forward(self, z0: torch.Tensor, z1: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        first, second = self.f(z0).flatten(0, 1), self.f(z1).flatten(0, 1)
        if self.how == "cat":
            kernels = torch.cat([first, second])
        else:
            kernels = first.index_select(0, torch.arange(first.shape[0]).repeat(2))
        return F.conv2d(x, kernels.view(-1, 4, 3, 3))


@pytest.mark.parametrize("how", ["cat", "index_select"])
@pytest.mark.parametrize("batch", [1, 2])
def test_kernels_merged_with_the_batch_and_joined_keep_their_units_whole(
    how: str, batch: int
) -> None:
    """t274: ``cat`` made the joined axis one stretch of the batch and the units, which the
    view split across two axes (skipped as mixed); ``index_select``, a copy, did too. Inner
    stretches each piece holds whole, and blocks an index takes whole, are kept."""
    inputs = (torch.randn(batch, 3, 5, 5), torch.randn(batch, 3, 5, 5), torch.randn(1, 4, 9, 9))
    sites = _observed(_TwoTemplates(how), inputs)
    assert (sites["f.weight"].status, sites["f.weight"].axis) == ("planned", 0)


class _Bank(nn.Module):
    """Keys from two projections joined into one bank, read as a linear's weight (a memory or
    prototype bank: attention written ``F.linear(q, k)``); and kernels joined with a copy of
    themselves flipped along the channels by ``flip(dims)`` given as separate arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.f = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        bank = torch.cat([self.a(x), self.b(x)], 0)
        k = self.f(z)
        kernels = torch.cat([k, k.flip(0, 1)], 1).view(2, 4, 3, 3)
        return F.linear(self.q(x), bank).sum() + F.conv2d(y, kernels).sum()


def test_joins_of_different_layers_stay_whole_and_a_flip_of_several_dims_is_read_whole() -> None:
    """t277: a join of two layers' outputs (``{a}`` beside ``{b}``) was taken as pieces laid
    out differently, and both weights skipped as mixed; ``k.flip(0, 1)`` was read as a flip
    of axis 0 alone, and a kernel joined with it weight-normed per mixed unit."""
    inputs = (torch.randn(3, 4), torch.randn(1, 3, 5, 5), torch.randn(1, 4, 9, 9))
    sites = _observed(_Bank(), inputs)
    for name in ("a.weight", "b.weight", "q.weight"):
        assert (sites[name].status, sites[name].axis) == ("planned", 0), name
    assert "split across that weight's axes 0 and 1" in str(sites["f.weight"].reason)


class _Halves(nn.Module):
    """Keys from a fused projection, its halves joined into a bank read as a linear's weight:
    ``how`` says which halves."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how, self.q, self.a = how, nn.Linear(4, 8), nn.Linear(4, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys = self.a(x)
        heads = keys.view(keys.shape[0], 2, 8)
        halves = {
            "chunks": list(keys.chunk(2, -1)),
            "heads unbound": list(heads.unbind(1)),
            "heads flattened": list(heads.flatten(1).chunk(2, -1)),
            "heads indexed": [heads[:, 0], heads[:, 1]],
            "strided": [keys[:, ::2], keys[:, 1::2]],
            "same": [keys[:, :8], keys[:, :8]],
            "repeated": [keys[:, :8], keys[:, 1:2].repeat(1, 8)],
        }[self.how]
        return F.linear(self.q(x), torch.cat(halves, 0))


@pytest.mark.parametrize(
    ("how", "mixed"),
    [
        ("chunks", True),
        ("strided", True),
        ("same", False),
        ("repeated", True),
        ("heads unbound", True),
        ("heads flattened", True),
        ("heads indexed", True),
    ],
)
def test_slices_of_one_output_joined_are_told_apart_by_where_they_start(
    how: str, mixed: bool
) -> None:
    """t278: ``keys[:, :8]`` and ``keys[:, 8:]`` were both one stretch of 8 units: joined as
    a bank, ``a``'s unit ``j`` lands at ``(j // 8, j % 8)`` (a head split), and ``a`` was
    weight-normed as if whole. A slice is told by where it starts; one unit repeated is held
    there too. Two slices from one start are the same units. t279: heads viewed apart and
    unbound, indexed, or flattened back and chunked, are told apart by the head taken."""
    sites = _observed(_Halves(how), (torch.randn(3, 4),))
    assert ("split across that weight's axes 0 and 1" in str(sites["a.weight"].reason)) is mixed
    if not mixed:
        assert (sites["a.weight"].status, sites["a.weight"].axis) == ("planned", 0)


class _ConvLoRA(nn.Module):
    """loralib's ConvLoRA: ``W + (B @ A).view(W.shape) * scaling`` with ``B`` of
    ``[out * k, r]`` and ``A`` of ``[r, in * k]``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3)
        self.lora_a = nn.Parameter(torch.randn(2, 4 * 3))
        self.lora_b = nn.Parameter(torch.randn(6 * 3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = (self.lora_b @ self.lora_a).view(self.conv.weight.shape) * 0.5
        return F.conv2d(x, self.conv.weight + delta, self.conv.bias)


def test_low_rank_factors_split_across_a_conv_kernel_s_axes_are_mixed() -> None:
    """t270: loralib's ConvLoRA weight-normed ``A`` at axis 1 and ``B`` at axis 0 (the sum
    with the conv's weight was not followed): ``B @ A`` of ``[18, 12]`` viewed as ``[6, 4, 3,
    3]`` spreads each row of ``B`` over the kernels' output channels, input channels and
    rows, and each column of ``A`` over the input channels, rows and columns: no filter."""
    sites = _observed(_ConvLoRA(), (torch.randn(1, 4, 5, 5),))
    assert "split across that weight's axes 0, 1 and 2" in str(sites["lora_b"].reason)
    assert "split across that weight's axes 1, 2 and 3" in str(sites["lora_a"].reason)


class _ReadAsWeights(nn.Module):
    """Layer outputs read as another layer's weight with their units' axis whole: attention
    written ``F.linear(q, k)``, rows of a table looked up as a linear's rows (sampled
    softmax), a low-rank weight ``U @ V``, a FiLM projection as a conv's bias."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.film = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)
        self.table = nn.Parameter(torch.randn(10, 4))
        self.u, self.v = nn.Parameter(torch.randn(4, 2)), nn.Parameter(torch.randn(2, 4))
        self.conv = nn.Conv1d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = F.linear(self.q(x), self.k(x))
        rows = F.linear(x, F.embedding(torch.tensor([1, 5, 7]), self.table))
        low_rank = F.linear(x, self.u @ self.v)
        film = F.conv1d(x.unsqueeze(-1), self.conv.weight, self.film(x[0]).view(-1))
        return scores.sum() + rows.sum() + low_rank.sum() + film.sum()


def test_a_layer_s_output_read_as_a_weight_with_its_units_whole_is_not_mixed() -> None:
    """A first version called every layer output read as a weight mixed: ``k.weight``,
    the looked-up table and a FiLM projection were skipped as CondConv's experts (t265)."""
    sites = _observed(_ReadAsWeights(), (torch.randn(3, 4),), embeddings=True)
    for name in ("q.weight", "k.weight", "film.weight", "table", "u", "v"):
        assert "mixed" not in (sites[name].reason or ""), name
    assert (sites["k.weight"].status, sites["k.weight"].axis) == ("planned", 0)
    assert (sites["film.weight"].status, sites["film.weight"].axis) == ("planned", 0)


class _Templates(nn.Module):
    """A Linear whose weight the forward also reads for its dtype, device or shape only."""

    def __init__(self, use: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.use = use

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.use(x, self.fc.weight))


@pytest.mark.parametrize(
    "use",
    [
        lambda x, w: x.type_as(w),
        lambda x, w: x.to(w),
        lambda x, w: x + torch.zeros_like(w)[0],
        lambda x, w: x + w.new_zeros(4),
        lambda x, w: x.view_as(torch.empty_like(x)).expand_as(w[:1]).reshape_as(x),
    ],
    ids=["type_as", "to", "zeros_like", "new_zeros", "view_as"],
)
def test_a_weight_read_for_its_dtype_or_shape_only_is_still_a_layer_s(
    use: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> None:
    """``x.type_as(W)``, ``x.to(W)``, ``zeros_like(W)``: no element of W read, and weight norm
    computes one of the same dtype, device and shape. They skipped the layer, "used by type_as,
    which wnpass does not know" (t261)."""
    sites = _observed(_Templates(use), (torch.randn(1, 4),))
    assert (sites["fc.weight"].status, sites["fc.weight"].axis) == ("planned", 0)


@torch.jit.script
def _snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """DAC's and SNAC's Snake activation, scripted as they script it."""
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


@torch.jit.script
def _scripted_conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv1d(x, w)


class _Scripted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.rand(1, 4, 1) + 0.5)
        self.w = nn.Parameter(torch.randn(4, 4, 3))
        self.conv = nn.Conv1d(4, 4, 3)
        self.spare = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _scripted_conv(_snake(self.conv(x), self.alpha), self.w)
        return y + _layout_only(self.spare, y)


@torch.jit.script
def _layout_only(w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(w).new_zeros(y.shape) + w.t().shape[0]


def test_a_parameter_used_inside_torchscript_is_said_so() -> None:
    """t280: a weight used only inside a ``@torch.jit.script`` function (DAC's and SNAC's
    Snake ``alpha``, a kernel a scripted function convolves with) calls no torch function
    the recorder sees, and was said "not used in the observed forward". It is skipped with
    the kernels that read it; a parameter no kernel reads the values of (a template of
    ``zeros_like``, a view) is still not used."""
    sites = _observed(_Scripted(), (torch.randn(1, 4, 16),))
    for name, kernels in (("alpha", "add, mul"), ("w", "convolution")):
        assert (sites[name].status, sites[name].reason) == ("skipped", UNOBSERVED)
        assert sites[name].op == f"{kernels} (kernels)"
    assert (sites["spare"].status, sites["spare"].reason) == (
        "skipped",
        "not used in the observed forward",
    )
    assert sites["conv.weight"].status == "planned" and sites["conv.weight"].axis == 0


@torch.jit.script
def _routed(x: torch.Tensor, experts: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """A scripted router that samples an expert."""
    index = int(torch.randint(0, len(experts), (1,)).item())
    return x @ experts[index], index


_PICKED: list[int] = []  # the experts each forward sampled (a model's own list is given back)


class _Sampled(nn.Module):
    """Experts a scripted router samples from, and eager reads of a weight's layout."""

    def __init__(self) -> None:
        super().__init__()
        self.experts = nn.ParameterList([nn.Parameter(torch.randn(4, 4)) for _ in range(8)])
        self.w = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, index = _routed(x, list(self.experts))
        _PICKED.append(index)
        return y * self.w.T.contiguous().shape[0] * self.w.double().shape[1]


@pytest.mark.parametrize("seed", range(4))
def test_the_kernels_watched_are_those_of_the_first_forward_outside_torch_functions(
    seed: int,
) -> None:
    """t283: the forward watching kernels drew other random numbers than the recorder's, so
    a sampled expert the first forward never reached was said used inside TorchScript and
    the one it reached not used; and kernels run inside a torch function the recorder saw
    (``w.T.contiguous().shape``, ``w.double().shape``: a layout read) were counted as reads.
    It replays the first forward's draws and counts only kernels no torch function runs."""
    torch.manual_seed(seed)
    _PICKED.clear()
    sites = _observed(_Sampled(), (torch.randn(2, 4),))
    reached = [n for n in sites if n.startswith("experts.") and sites[n].reason == UNOBSERVED]
    assert _PICKED[1] == _PICKED[0]  # the watching forward, after the recorder's
    assert reached == [f"experts.{_PICKED[0]}"]
    assert sites["w"].reason == "not used in the observed forward"


@torch.jit.script
def _scripted_product(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x @ w


class _AlsoScripted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + _scripted_product(x, self.fc.weight)


def test_a_layer_s_weight_a_scripted_function_also_reads_is_skipped() -> None:
    """t285: ``fc(x) + scripted(x, fc.weight)`` (the script reading the weight with its units
    on the other axis) was planned at the linear's axis, where the same forward written
    eagerly is skipped as used at different axes: only weights the recorder did not see were
    watched. A model whose forward calls TorchScript has every weight watched."""
    sites = _observed(_AlsoScripted(), (torch.randn(2, 4),))
    assert (sites["fc.weight"].status, sites["fc.weight"].reason) == ("skipped", ALSO_UNOBSERVED)
    assert sites["fc.weight"].op == "Linear, mm (kernels)"
