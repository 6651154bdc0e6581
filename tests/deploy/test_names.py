"""The exported weights' PyTorch names: attention projections, tied weights and compiled
layers named after their parameters, none after a graph input, and the weights the exporter or
the ONNX fold holds transposed, laid out otherwise, or together, said so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from wnpass.deploy import export


class _Attention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.kv = torch.nn.MultiheadAttention(8, 2, kdim=6, vdim=4, batch_first=True)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        y, _ = self.mha(x, x, x)
        return self.kv(y, k, v)[0]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_attention_projection_weights_are_named(exporter: str, tmp_path: Path) -> None:
    """``in_proj_weight`` (and ``q/k/v_proj_weight`` with kdim/vdim) were written as ``val_0``
    or ``onnx::MatMul_146`` while the export said every weight was named after its parameter:
    only names starting with ``weight`` were looked for."""
    torch.manual_seed(0)
    model = _Attention().eval()
    g = torch.Generator().manual_seed(1)
    inputs = tuple(torch.randn(1, n, d, generator=g) for n, d in ((5, 8), (3, 6), (3, 4)))
    out = tmp_path / "attention.onnx"
    report = export(model, inputs, out, exporter=exporter, verify=False)
    assert report.names_missing == []
    names = {init.name for init in onnx.load(out).graph.initializer}
    projections = ("mha.in_proj_weight", "kv.q_proj_weight", "kv.k_proj_weight")
    assert {*projections, "kv.v_proj_weight", "mha.out_proj.weight"} <= names


class _TiedHead(torch.nn.Module):
    """An embedding whose table the output projection reads too (tied, as language models)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(12, 8)
        self.head = torch.nn.Linear(8, 12, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embed(ids)))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_tied_weights_copy_is_named_after_it(exporter: str, tmp_path: Path) -> None:
    """Both exporters read the tied head through a transposed copy of the table, which kept the
    exporter's name (``val_3``) while the export said every weight was named: only the first
    name of a tied weight was looked for. The copy is named after the other name."""
    torch.manual_seed(0)
    out, model = tmp_path / "tied.onnx", _TiedHead().eval()
    report = export(model, (torch.tensor([[1, 5, 7]]),), out, exporter=exporter, verify=False)
    assert report.names_missing == []
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    table = model.embed.weight
    for name in {"embed.weight", "head.weight"} & set(weights):
        expected = table.T if name in report.names_transposed else table
        np.testing.assert_array_equal(weights[name], expected.detach().numpy())
    assert set(weights) == {"embed.weight", "head.weight"}  # the copy too, by its own name


class _TiedUnread(_TiedHead):
    """A table tied to a head that this forward does not use: only the embedding reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embed(ids))


@pytest.mark.parametrize(
    ("case", "exporter"),
    [("pair", "torchscript"), ("pair", "dynamo"), ("embedding", "dynamo")],
)
def test_a_tied_weight_with_one_initializer_for_both_names_is_not_missing(
    case: str, exporter: str, tmp_path: Path
) -> None:
    """Two layers reading one weight the same way, or one of two tied layers reading it: the
    exporter writes it once, under one of the names, and the other name has no copy to be
    given (it is not missing). The dynamo exporter names the table after the tied head, the
    name listed last, and the embedding's was said missing (t85)."""
    torch.manual_seed(0)
    model: nn.Module
    if case == "pair":
        pair = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Tanh(), torch.nn.Linear(6, 6))
        pair[2].weight = pair[0].weight
        model, names, inputs = pair, ("0.weight", "2.weight"), (torch.randn(2, 6),)
    else:
        model, names = _TiedUnread(), ("embed.weight", "head.weight")
        inputs = (torch.tensor([[1, 5]]),)
    out = tmp_path / "pair.onnx"
    report = export(model.eval(), inputs, out, exporter=exporter, verify=False)
    weights = {i.name for i in onnx.load(out).graph.initializer if len(i.dims) == 2}
    assert len(weights & set(names)) == 1
    assert report.names_missing == []


class _GivenAndOwn(nn.Module):
    """A projection the caller passes in as ``weight`` and the module's own ``self.weight``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight) + F.linear(x, self.weight)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_weight_is_not_named_after_a_graph_input_of_its_name(
    exporter: str, tmp_path: Path
) -> None:
    """The initializer holding ``self.weight`` was renamed ``weight``, the graph input's name:
    both MatMuls read what the caller feeds, the file was wrong (or failed the checker) and
    its verification failed (t82). It keeps the exporter's name, and is said to."""
    torch.manual_seed(0)
    out = tmp_path / "m.onnx"
    report = export(
        _GivenAndOwn(), (torch.randn(2, 4), torch.randn(4, 4)), out, exporter=exporter, runs=1
    )
    assert report and report.published and report.names_missing == ["weight"]
    model = onnx.load(out)
    assert [i.name for i in model.graph.input] == ["x", "weight"]
    assert "weight" not in {i.name for i in model.graph.initializer}


@pytest.mark.parametrize("fold_in_torch", [True, False])
def test_a_compiled_layer_s_weight_is_named_as_its_bias_is(
    fold_in_torch: bool, tmp_path: Path
) -> None:
    """The copy exported holds a torch.compile'd layer unwrapped, so the exporter names its
    bias "b.bias"; its weight was named from the caller's model: "b._orig_mod.weight". The
    copy is exported whether weight norm is folded in torch or not."""
    prefix = "b."
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("a", weight_norm(nn.Linear(5, 8)))
    compiled: Any = torch.compile(weight_norm(nn.Linear(8, 3)))  # an nn.Module: OptimizedModule
    model.add_module("b", compiled)
    out = tmp_path / "m.onnx"
    report = export(model, (torch.randn(4, 5),), out, fold_in_torch=fold_in_torch, runs=1)
    assert report and report.names_missing == []
    names = sorted(init.name for init in onnx.load(out).graph.initializer)
    assert names == ["a.bias", "a.weight", f"{prefix}bias", f"{prefix}weight"]


def test_a_weight_held_transposed_is_said_so(tmp_path: Path) -> None:
    """The dynamo exporter feeds MatMul a square Linear weight's transpose; named after the
    parameter, the initializer read as the weight itself (its shape shows nothing), and
    nothing said otherwise."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8)).eval()
    out = tmp_path / "m.onnx"
    report = export(model, (torch.randn(2, 3, 8),), out, verify=False)
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    weight = model.get_submodule("0").weight.detach().numpy()  # type: ignore[operator]
    assert np.array_equal(initializers["0.weight"], weight.T)  # torch 2.13's dynamo exporter
    assert report.names_transposed == ["0.weight"]


class _SquareAndRecurrent(nn.Module):
    """A weight-normed square Linear on 3-D inputs (MatMul reads its weight transposed, which
    no shape shows) and an LSTM (ONNX reads its gates reordered)."""

    def __init__(self) -> None:
        super().__init__()
        self.square = weight_norm(nn.Linear(4, 4))
        self.lstm = nn.LSTM(4, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(torch.relu(self.square(x)))[0]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_weights_the_onnx_fold_writes_laid_out_are_said(exporter: str, tmp_path: Path) -> None:
    """With weight norm kept for the ONNX fold, the fold names the weight it writes after the
    parameter, transposed for MatMul: the export said every weight was named after its
    parameter and listed none as transposed, and the square one loads into PyTorch without an
    error, wrong (t75). An LSTM's reordered gates under the parameter's name are said too."""
    torch.manual_seed(0)
    model, out = _SquareAndRecurrent().eval(), tmp_path / "m.onnx"
    x = torch.randn(2, 3, 4)
    report = export(model, (x,), out, exporter=exporter, fold_in_torch=False, verify=False)
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    square = model.square.weight.detach().numpy()
    assert "square.weight" in report.names_transposed
    np.testing.assert_allclose(weights["square.weight"], square.T, rtol=1e-6)
    assert report.names_laid_out == []  # the exporters reorder the gates into their own names


class _ProjectsTwice(nn.Module):
    """Two square parameters read transposed by MatMul: one without "weight" in its name."""

    def __init__(self) -> None:
        super().__init__()
        # 128x128: the dynamo exporter's optimizer computes smaller sites itself
        self.proj = nn.Parameter(torch.randn(128, 128) * 0.1)
        self.proj_weight = nn.Parameter(torch.randn(128, 128) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.proj.t()) @ self.proj_weight.t()


@pytest.mark.parametrize("fold_in_torch", [False, True])
def test_a_parameter_without_weight_in_its_name_written_transposed_is_said(
    fold_in_torch: bool, tmp_path: Path
) -> None:
    """apply_weight_norm norms any 2-D parameter (``proj``); the ONNX fold wrote ``proj``
    holding ``proj.T``, and only ``proj_weight`` was said to be held transposed (t197); folded
    in PyTorch, the exporter's ``t`` holding ``proj.T`` kept its name, unsaid (t201)."""
    from wnpass import apply_weight_norm

    torch.manual_seed(0)
    model, x, out = _ProjectsTwice().eval(), torch.randn(2, 128), tmp_path / "m.onnx"
    assert apply_weight_norm(model, (x,)).status == "ok"
    report = export(model, (x,), out, exporter="dynamo", fold_in_torch=fold_in_torch, verify=False)
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    proj = model.proj.detach().numpy()
    np.testing.assert_allclose(weights["proj"], proj.T, rtol=1e-6)
    assert sorted(report.names_transposed) == ["proj", "proj_weight"]


def test_a_bidirectional_lstms_weights_held_together_are_said(tmp_path: Path) -> None:
    """The dynamo exporter concatenates the two directions' reordered gates (its optimizer
    computes them itself below about a thousand elements, under names of its own); the fold
    writes each pair into one initializer named after both, which the export reported as
    four weights with no initializer (t78). Each is read back from it: the forward
    direction's gates, reordered from PyTorch's i, f, g, o to ONNX's i, o, f, c, first."""
    torch.manual_seed(0)
    model = nn.LSTM(64, 48, batch_first=True, bidirectional=True).eval()
    out = tmp_path / "m.onnx"
    report = export(model, (torch.randn(2, 5, 64),), out, verify=False)
    assert report.names_held_together == {
        "weight_ih_l0+weight_ih_l0_reverse": ["weight_ih_l0", "weight_ih_l0_reverse"],
        "weight_hh_l0+weight_hh_l0_reverse": ["weight_hh_l0", "weight_hh_l0_reverse"],
    }
    assert not [n for n in report.names_missing if n.startswith("weight_")]
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}
    held = weights["weight_ih_l0+weight_ih_l0_reverse"]
    i, f, g, o = np.split(model.state_dict()["weight_ih_l0"].numpy(), 4)
    np.testing.assert_array_equal(held[0], np.concatenate([i, o, f, g]))


class _Halves(nn.Module):
    """Half of each of two weights, concatenated into one."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(256, 256), nn.Linear(256, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ torch.cat([self.a.weight[:128], self.b.weight[:128]]).T


def test_weights_held_in_part_are_not_said_held_together(tmp_path: Path) -> None:
    """``a.weight+b.weight`` holds half of each: they were said held in it (t82). (Below
    about a thousand elements the exporter computes the Concat itself: no cone.)"""
    report = export(_Halves(), (torch.randn(2, 256),), tmp_path / "m.onnx", verify=False)
    (cone,) = report.onnx_fold.cones
    assert cone.sources == ["a.weight", "b.weight"] and cone.status == "folded"
    assert report.names_held_together == {}
    assert {"a.weight", "b.weight"} <= set(report.names_missing)


def test_a_cone_folded_under_a_weights_name_is_said_laid_out() -> None:
    """The dynamo exporter without its optimizer reorders an LSTM's gates by Slice/Concat, a
    cone the fold writes under the parameter's name: laid out, not transposed; a Reshape
    alone moves no element."""
    from wnpass.deploy.names import Weights, folded_layouts
    from wnpass.report import ConeReport, FoldReport

    def cone(name: str, ops: list[str]) -> ConeReport:
        return ConeReport(name, "main", ["LSTM"], None, None, ops, [name], "folded")

    fold = FoldReport(sites=[], cones=[
        cone("lstm.weight_ih_l0", ["Slice", "Concat", "Unsqueeze"]),
        cone("fc.weight", ["Transpose"]),
        cone("conv.weight", ["Reshape"]),
        cone("lstm.bias_ih_l0+bias_hh_l0", ["Concat"]),
    ])  # fmt: skip
    values = {n: torch.zeros(8, 4) for n in ("lstm.weight_ih_l0", "fc.weight", "conv.weight")}
    weights = Weights(values, {}, values, {})
    assert folded_layouts(fold, weights) == (["fc.weight"], ["lstm.weight_ih_l0"], {})


def test_a_copy_of_one_weight_is_not_said_held_together() -> None:
    """A cone copying one weight under another name (``W__1``: W reshaped for a MatMul while
    a Conv reads W) was listed as weights "held together" in it, of one weight (t301)."""
    from wnpass.deploy.names import Weights, folded_layouts
    from wnpass.report import ConeReport, FoldReport

    copy = ConeReport("d.weight_orig__1", "main", ["MatMul"], [4, 6], None, ["Reshape"],
                      ["d.weight_orig"], "folded")  # fmt: skip
    pair = ConeReport("a.weight+b.weight", "main", ["MatMul"], [8, 6], None, ["Concat"],
                      ["a.weight", "b.weight"], "folded")  # fmt: skip
    values = {"d.weight_orig": torch.zeros(4, 2, 3), "a.weight": torch.zeros(4, 6)}
    values["b.weight"] = torch.zeros(4, 6)
    weights = Weights(values, {}, values, {})
    fold = FoldReport(sites=[], cones=[copy, pair])
    assert folded_layouts(fold, weights)[2] == {"a.weight+b.weight": ["a.weight", "b.weight"]}


class _CopiesAndReturns(nn.Module):
    """An unused parameter ``proj`` of fc's values (declared first), and a parameter ``table``
    the forward returns transposed (a graph output of its values)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.randn(8, 8))
        self.fc = nn.Linear(8, 8, bias=False)
        self.table = nn.Parameter(torch.randn(8, 8))
        with torch.no_grad():
            self.fc.weight.copy_(self.proj)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(x), self.table.T


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_parameter_is_named_back_only_where_that_is_sure(exporter: str, tmp_path: Path) -> None:
    """t203: an unused ``proj`` of fc.weight's values took fc.weight's initializer (then said
    missing), and a graph output holding ``table.T`` was renamed ``table``."""
    torch.manual_seed(0)
    model, out = _CopiesAndReturns().eval(), tmp_path / "m.onnx"
    report = export(model, (torch.randn(2, 3, 8),), out, exporter=exporter, verify=False)
    graph = onnx.load(out).graph
    assert report.names_missing == [] and "fc.weight" in {i.name for i in graph.initializer}
    assert "proj" not in {i.name for i in graph.initializer}
    assert "table" not in {o.name for o in graph.output}


class _TiedProjection(nn.Module):
    """One parameter ``proj`` held by two modules (tied), read transposed; and a weight the
    forward returns transposed (a graph output of its values)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Module(), nn.Module()
        self.a.proj = nn.Parameter(torch.randn(128, 128) * 0.1)
        self.b.proj = self.a.proj
        self.emb = nn.Embedding(16, 8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        proj = self.a.proj
        assert isinstance(proj, torch.Tensor)
        return x @ proj.t(), self.emb.weight.t()


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_tied_parameter_is_named_and_an_output_is_not(exporter: str, tmp_path: Path) -> None:
    """t205: a tied ``proj`` counted its other name as another holder of its values and kept
    the exporter's name; a returned ``emb.weight.t()`` was renamed ``emb.weight`` (the
    model's output name changed) and said to be held transposed."""
    torch.manual_seed(0)
    model, out = _TiedProjection().eval(), tmp_path / "m.onnx"
    report = export(model, (torch.randn(2, 128),), out, exporter=exporter, verify=False)
    graph = onnx.load(out).graph
    assert {"a.proj", "b.proj"} & {i.name for i in graph.initializer}
    assert "emb.weight" not in {o.name for o in graph.output}
    assert "emb.weight" not in report.names_transposed


def test_values_that_close_matches_are_never_kept_apart_by_their_sums() -> None:
    """The sums' filter must pass whatever ``_close`` accepts: an all-zero array's scale is 1
    there (t207: its bound took the largest magnitude, near 0); complex values by modulus."""
    from wnpass.deploy.names import _close, _fingerprint, _may_match

    small, zeros = np.full((10, 10), 5e-7, np.float32), np.zeros((10, 10), np.float32)
    assert _close(small, zeros) and _may_match(_fingerprint(small), _fingerprint(zeros))
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((8, 8)) + 1j * rng.standard_normal((8, 8))).astype(np.complex64)
    b = (a * (1 + 5e-6)).astype(np.complex64)
    assert _may_match(_fingerprint(a), _fingerprint(b))
    assert not _may_match(_fingerprint(a), _fingerprint(a * 2))


class _EqualKernels(nn.Module):
    """ESPnet ParallelWaveGAN's upsampling convolutions: two kernels of equal values (all 1/9)."""

    def __init__(self, equal: bool) -> None:
        super().__init__()
        self.a = nn.Conv1d(1, 1, 9, padding=4, bias=False)
        self.b = nn.Conv1d(1, 1, 9, padding=4, bias=False)
        with torch.no_grad():
            self.a.weight.fill_(1 / 9)
            self.b.weight.fill_(1 / 9 if equal else 1 / 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize(
    ("equal", "kept"),
    [(True, False), (False, False), (True, True)],
    ids=["equal", "unequal", "equal, weight norm kept"],
)
def test_a_weight_held_in_an_equal_weights_initializer_is_said_so(
    tmp_path: Path, equal: bool, kept: bool
) -> None:
    """The dynamo exporter keeps one constant of equal values: ``b.weight`` was said to have no
    initializer of its name, as if the graph did not use it (t290). It is held in
    ``a.weight``'s, and said so; weights of other values each keep their own. With weight norm
    kept, the layer's op takes the product the graph computes, which names no parameter: no
    claim is made (a node of the layer's module reading the equal initializer was taken for
    its op, and a module convolving with another's weight then said to share it, t299, t300),
    the weight is among those with no initializer."""
    model = _EqualKernels(equal).eval()
    if kept:
        for name in ("a", "b"):
            weight_norm(model.get_submodule(name), "weight", dim=0)
    report = export(
        model, (torch.randn(1, 1, 32),), tmp_path / "m.onnx", verify=False, fold_in_torch=not kept
    )
    assert report.names_missing == (["b.weight"] if kept else [])
    assert report.names_shared == ({"b.weight": "a.weight"} if equal and not kept else {})


class _EqualLinears(nn.Module):
    """Two Linear layers of equal weights on an input: the dynamo exporter keeps one MatMul
    initializer, the weight transposed. ``computed``: ``r`` read as ``2 r + 1``, which the
    exporter folds into a constant of its own (``a``'s initializer read by ``a`` alone)."""

    def __init__(self, computed: bool = False) -> None:
        super().__init__()
        self.computed = computed
        self.a, self.r = nn.Linear(8, 6), nn.Linear(8, 6)
        with torch.no_grad():
            self.r.weight.copy_(self.a.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.computed:
            return self.a(x) * F.linear(x, self.r.weight * 2 + 1, self.r.bias)
        return self.a(x) * self.r(x)


def test_a_weight_equal_to_one_held_transposed_is_said_equal(tmp_path: Path) -> None:
    """``names_shared`` compared the missing weight with initializers as they are: one holding
    its equal transposed was missed, and one holding another weight transposed that happened
    to equal it was named (t294). Weights are compared with weights."""
    torch.manual_seed(0)
    report = export(
        _EqualLinears().eval(), (torch.randn(2, 3, 8),), tmp_path / "m.onnx", verify=False
    )
    assert report.names_missing == [] and report.names_shared == {"r.weight": "a.weight"}


def test_an_equal_weight_the_graph_reads_otherwise_is_not_said_shared(tmp_path: Path) -> None:
    """Equal values were taken for a shared initializer where the graph reads ``r`` as a
    constant it folded (t296): only an op of that weight reading the other's initializer is."""
    torch.manual_seed(0)
    model = _EqualLinears(computed=True).eval()
    report = export(model, (torch.randn(2, 8),), tmp_path / "m.onnx", verify=False)
    assert report.names_shared == {} and report.names_missing == ["r.weight"]


class _Given(nn.Module):
    """A module with a weight of its own that convolves with the weight it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((1, 1, 3), 1 / 3))

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, weight, padding=1)


class _Unused(nn.Module):
    """``b.weight`` (and a top-level ``weight``) equal to ``a.weight``, never read: ``b``
    convolves with ``a``'s weight, given to it, as the top module does."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        nn.init.constant_(self.a.weight, 1 / 3)
        self.b = _Given()
        self.weight = nn.Parameter(torch.full((1, 1, 3), 1 / 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(self.a(x), self.a.weight)
        return F.conv1d(y, self.a.weight, padding=1)


@pytest.mark.parametrize("kept", [False, True], ids=["folded", "weight norm kept"])
def test_an_equal_weight_a_module_holds_but_does_not_read_is_not_said_shared(
    tmp_path: Path, kept: bool
) -> None:
    """A node of a module reading the equal initializer was taken for that module's weight's
    op: ``b.weight``, and the top module's ``weight`` (every functional op of the top forward
    is the top module's), were said shared though never read (t299)."""
    model = _Unused().eval()
    if kept:
        weight_norm(model.b, "weight", dim=0)
        weight_norm(model, "weight", dim=0)
    report = export(
        model, (torch.randn(1, 1, 16),), tmp_path / "m.onnx", verify=False, fold_in_torch=not kept
    )
    assert report.names_shared == {}
    assert sorted(report.names_missing) == ["b.weight", "weight"]
