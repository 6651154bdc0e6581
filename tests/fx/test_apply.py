"""apply_weight_norm: same outputs, standard keys, same class, exact way back, honest report."""

from __future__ import annotations

import copy
import functools
import json
import logging
import sys
import typing
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from tests.fx.helpers import KEEP_RTOL, PLAIN_MODELS, Functional, SharedBlock, plain, rel_error
from tests.fx.standins import Conv1D
from wnpass import apply_weight_norm
from wnpass.errors import InvalidArgumentError, UsageError
from wnpass.fx.analyse import analyse_sites
from wnpass.fx.apply import Init
from wnpass.fx.compare import max_rel_error, result_leaves
from wnpass.fx.reach import NOT_COMPUTED, OLD_READ
from wnpass.fx.report import NOTHING_COMPARED, apply_summary, plan_rows


@pytest.mark.parametrize("name", PLAIN_MODELS)
def test_keep_init_leaves_outputs_equal(name: str) -> None:
    """Every plain example model computes the same after init='keep' (checked and reported)."""
    model, inputs = plain(name)
    cls = type(model)
    before = model(*inputs)
    report = apply_weight_norm(model, inputs)
    assert report.applied >= 3 and report and report.equivalent is True
    assert report.max_rel_error is not None and report.max_rel_error <= KEEP_RTOL
    assert rel_error(model(*inputs), before) <= KEEP_RTOL
    assert parametrize.type_before_parametrizations(model) is cls


def test_state_dict_keys_are_pytorchs_and_g_is_per_unit() -> None:
    """Keys parametrizations.weight.original0/1; g has one value per unit, size 1 elsewhere."""
    model = nn.Sequential(nn.Conv1d(2, 5, 3), nn.ConvTranspose1d(5, 4, 3))
    apply_weight_norm(model)
    keys = model.state_dict().keys()
    assert "0.parametrizations.weight.original0" in keys and "0.weight" not in keys
    assert model.state_dict()["0.parametrizations.weight.original0"].shape == (5, 1, 1)
    assert model.state_dict()["1.parametrizations.weight.original0"].shape == (1, 4, 1)


def test_dim_policy_torch_matches_pytorchs_weight_norm() -> None:
    """ConvTranspose with dim_policy='torch': g like parametrizations.weight_norm(dim=0)."""
    model = nn.Sequential(nn.ConvTranspose1d(5, 4, 3))
    apply_weight_norm(model, dim_policy="torch")
    g = model.state_dict()["0.parametrizations.weight.original0"]
    assert g.shape == (5, 1, 1)


def test_functional_weights_are_parametrized_in_place() -> None:
    """Parameters used by F.linear / matmul get weight norm at their axis; outputs equal."""
    torch.manual_seed(0)
    model: Any = Functional()
    x = torch.randn(4, 5)
    before = model(x)
    report = apply_weight_norm(model, (x,))
    assert report.applied == 3 and report.equivalent
    assert model.parametrizations.w_right.original0.shape == (1, 7)
    assert rel_error(model(x), before) <= KEEP_RTOL


def test_remove_parametrizations_gives_back_the_weights() -> None:
    """remove_parametrizations(leave_parametrized=True) returns plain weights equal to before."""
    model: Any
    model, inputs = plain("transformer")
    weight = model.ffn[0].weight.detach().clone()
    apply_weight_norm(model, inputs)
    parametrize.remove_parametrizations(model.ffn[0], "weight")
    assert not parametrize.is_parametrized(model.ffn[0])
    assert rel_error(model.ffn[0].weight.detach(), weight) <= KEEP_RTOL


def test_already_normed_layers_are_left_as_they_are() -> None:
    """A second apply changes nothing and reports the layers as 'already'."""
    model, inputs = plain("mlp")
    apply_weight_norm(model, inputs)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    report = apply_weight_norm(model, inputs)
    assert report.applied == 0 and report.count("already") == 3 and not report.modified
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_tied_weights_stay_tied() -> None:
    """A tied embedding/head keeps one tensor after apply (skipped, not untied)."""

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10)
            self.head.weight = self.emb.weight

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.emb(ids))

    model = Tied()
    apply_weight_norm(model, embeddings=True)
    assert model.head.weight is model.emb.weight


NAN = float("nan")


def test_outputs_nan_before_and_after_are_nothing_compared() -> None:
    """A model that computes only NaN (a NaN checkpoint) was reported equivalent with a
    difference of 0: now status "nothing compared", a failure with the reason."""
    model = nn.Linear(3, 3)
    with torch.no_grad():
        model.bias.fill_(NAN)
    report = apply_weight_norm(model, (torch.randn(2, 3),))
    assert report.status == "nothing compared" and not report and report.equivalent is False
    assert report.reason == f"the outputs could not be compared: {NOTHING_COMPARED}"
    summary = "\n".join(apply_summary(report))
    assert "NOT COMPARED" in summary and "0.00e+00" not in summary
    assert report.to_dict()["max_rel_error"] is None


def test_outputs_turning_nan_are_outputs_changed() -> None:
    """A rewrite after which the model computes NaN fails the check, with the reason."""

    class TurnsNaN(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = super().forward(x)
            return y * float("nan") if parametrize.is_parametrized(self) else y

    report = apply_weight_norm(TurnsNaN(3, 3), (torch.randn(2, 3),))
    assert report.status == "outputs changed" and not report and report.equivalent is False
    assert report.max_rel_error == float("inf")
    assert "NaN/Inf appeared" in (report.reason or "")


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        (lambda y: (y, 2 * y, y), lambda y: (y, y, 2 * y), "output[1] (float32 2x3): max diff"),
        (lambda y: (y, 2), lambda y: (y, 3), "output[1] (int): 2 before, 3 now"),
        (lambda y: y, lambda y: y.double(), "output (float32 2x3): dtype float64 now"),
    ],
)
def test_a_result_whose_parts_changed_is_not_equivalent(
    before: Any, after: Any, change: str
) -> None:
    """Only the result's tensors were compared, each object once: a tensor returned twice
    whose place moved, a number and a dtype that changed were "equivalent", exit 0."""

    class Changes(nn.Linear):
        def forward(self, x: torch.Tensor) -> Any:
            y = super().forward(x)
            return after(y) if parametrize.is_parametrized(self) else before(y)

    report = apply_weight_norm(Changes(3, 3), (torch.randn(2, 3),))
    assert report.status == "outputs changed" and not report
    assert report.changes is not None and change in report.changes


class ZeroUnits(nn.Module):
    """An embedding with a padding row (all zero) and a zero-initialised output layer."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8, padding_idx=0)
        self.hidden = nn.Linear(8, 8)
        self.out = nn.Linear(8, 3)
        nn.init.zeros_(self.out.weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(self.emb(ids))))


@pytest.mark.parametrize("init", ["keep", "data"])
def test_weights_with_all_zero_units_are_declined(init: str) -> None:
    """g * v / ||v|| is 0/0 on an all-zero unit: such weights are left alone with the reason,
    the outputs hold (pad tokens included) and every gradient stays finite."""
    torch.manual_seed(0)
    model, ids = ZeroUnits(), torch.tensor([[3, 4, 0, 0], [5, 6, 7, 8]])
    before = model(ids)
    report = apply_weight_norm(model, (ids,), embeddings=True, init=init)  # type: ignore[arg-type]
    sites = {site.name: site for site in report.sites}
    assert sites["emb.weight"].status == "skipped"
    assert sites["emb.weight"].reason == (
        "all-zero output units (unit 0 of 10 along axis 0): g*v/||v|| would be 0/0 there"
    )
    assert sites["out.weight"].status == "skipped"
    assert "(units 0, 1, 2 of 3 along axis 0)" in (sites["out.weight"].reason or "")
    assert sites["hidden.weight"].status == "applied" and report
    if init == "keep":
        assert report.equivalent is True and rel_error(model(ids), before) <= KEEP_RTOL
    model.train()
    model(ids).square().mean().backward()
    assert all(bool(p.grad.isfinite().all()) for p in model.parameters() if p.grad is not None)


def test_one_module_under_several_names_is_normed_once() -> None:
    """ModuleList([block] * 3) and an alias are one module: weight norm goes on it once, at
    axis 0, every name keeps reaching it; only a weight tied across modules is left alone."""
    torch.manual_seed(0)
    model, x = SharedBlock(), torch.randn(2, 16)
    before = model(x)
    report = apply_weight_norm(model, (x,))
    sites = {site.name: site for site in report.sites}
    shared = sites["blocks.0.weight"]
    assert (shared.status, shared.axis) == ("applied", 0)
    assert (
        shared.reason
        == "one module under 4 names (also blocks.1.weight, blocks.2.weight, alias.weight)"
    )
    assert not any(name.startswith(("blocks.1", "blocks.2", "alias")) for name in sites)
    assert sites["enc.weight"].status == "skipped" and "tied weight" in (
        sites["enc.weight"].reason or ""
    )
    assert model.blocks[0] is model.blocks[1] is model.blocks[2] is model.alias
    assert parametrize.is_parametrized(model.alias, "weight")
    assert model.dec.weight is model.enc.weight
    assert report.equivalent is True and rel_error(model(x), before) <= KEEP_RTOL


def test_report_rows_json_and_failure(tmp_path: Path) -> None:
    """Rows are pure strings; JSON has counts; a model whose outputs change fails the check."""
    report = apply_weight_norm(nn.Sequential(_Changes()), (torch.randn(2, 3),))
    assert report.equivalent is False and not report
    row = plan_rows(report.sites)[0]
    assert row == ("0.weight", "_Changes (F.linear)", "3x3", "0", "applied", "keep")
    report.write_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["applied"] == 1 and data["ok"] is False and data["sites"][0]["axis"] == 0


class _Sampling(nn.Module):
    """Sampling noise at inference (VITS-style) and dropout left on."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        h = nn.functional.dropout(h + 0.01 * torch.randn_like(h), 0.5, training=True)
        return self.b(h)


def test_a_model_drawing_random_numbers_is_compared_with_itself() -> None:
    """The forwards before and after the rewrite draw the same random numbers, so the check
    sees the rewrite's rounding only; the caller's generator is where it was."""
    model, x = _Sampling(), torch.randn(4, 8)
    state = torch.get_rng_state()
    report = apply_weight_norm(model, x)
    assert report.applied == 2 and report.max_rel_error is not None
    assert report.max_rel_error <= KEEP_RTOL, report.reason
    assert torch.equal(torch.get_rng_state(), state)


class _ScalesItsInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(2)  # in-place input scaling
        return self.fc(x)


@pytest.mark.parametrize("init", ["keep", "data"])
def test_a_forward_that_changes_its_input_in_place_changes_a_copy(init: Init) -> None:
    """Every forward of the call (before, the observed one, data init's, after) runs on its
    own copy of the example inputs: the check compares like with like, and the caller's
    tensor is as it was."""
    model, x = _ScalesItsInput(), torch.randn(8, 4)
    given = x.clone()
    report = apply_weight_norm(model, x, init=init)
    assert report.applied == 1 and torch.equal(x, given)
    if init == "keep":
        assert report.max_rel_error is not None and report.max_rel_error <= KEEP_RTOL


class _ParameterListNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ws = nn.ParameterList([nn.Parameter(torch.randn(5, 4))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.ws[0])


@pytest.mark.parametrize(
    ("make", "shape", "name", "reason"),
    [
        (
            lambda: nn.LSTM(4, 5, batch_first=True),
            (3, 6, 4),
            "weight_ih_l0",
            "LSTM: its gates' pre-activations stay inside the op (no output to normalize)",
        ),
        (
            lambda: Conv1D(6, 4),
            (8, 4),
            "weight",
            "Conv1D.weight: data init initializes Linear, Conv and ConvTranspose weights",
        ),
        (
            _ParameterListNet,
            (6, 4),
            "ws.0",
            "ParameterList.0: data init initializes Linear, Conv and ConvTranspose weights",
        ),
    ],
    ids=["LSTM", "Conv1D", "ParameterList"],
)
def test_data_init_that_initializes_no_layer_compares_the_outputs(
    make: Any, shape: tuple[int, ...], name: str, reason: str
) -> None:
    """Nothing data-initialized, yet the report said "outputs change by design (data init
    ...): not compared" and gave false reasons ("not a layer's weight" for an LSTM's, "not the
    module's output" for Conv1D's): the outputs are compared as with init="keep", a note says
    no layer was initialized, and each weight says why."""
    torch.manual_seed(0)
    model, x = make(), torch.randn(shape)
    report = apply_weight_norm(model, x, init="data")
    assert report.max_rel_error is not None and report.equivalent is True
    assert not any("not compared" in note for note in report.notes)
    assert any(note.startswith("data init initialized no layer") for note in report.notes)
    assert {site.name: site.init for site in report.sites}[name] == f"keep: {reason}"


def test_complex_outputs_are_compared_by_their_parts() -> None:
    """A complex output (``torch.fft.rfft``) was held to exact equality, as an integer one:
    float rounding of 1e-7 made the rewrite NOT EQUIVALENT."""
    torch.manual_seed(0)
    model = nn.Linear(16, 16)
    spectrum = lambda x: torch.fft.rfft(model(x))  # noqa: E731
    x = torch.randn(8, 16)
    before = spectrum(x).detach()
    report = apply_weight_norm(model, (x,))
    assert report.status == "ok" and report.max_rel_error is not None
    assert report.rtol is not None and 0 < report.max_rel_error <= report.rtol
    assert max_rel_error(result_leaves(spectrum(x)), result_leaves(before)) <= report.rtol
    changed = result_leaves(before * (1 + 1e-3j))
    assert max_rel_error(changed, result_leaves(before)) > 1e-4  # a change in the parts


def test_a_float16_output_gets_the_half_precision_tolerance() -> None:
    """A float32 model whose output is cast to float16 differs by float16's rounding step
    (2.4e-4 here): the tolerance followed the parameters' dtype only, and called it changed."""

    class HalfOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(256, 256), nn.Linear(256, 256)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x))).to(torch.float16)

    torch.manual_seed(0)
    report = apply_weight_norm(HalfOut(), (torch.randn(256, 256),))
    assert report.status == "ok" and report.rtol == 1e-2


class _Autocast(nn.Module):
    """Weights and output float32, the layers computed in bfloat16 by the forward's own
    autocast: the outputs move by bfloat16's rounding (9.9e-4) under weight norm."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(64, 64), nn.Linear(64, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.b(torch.tanh(self.a(x))).float()


def test_a_forward_under_autocast_gets_the_tolerance_of_its_precision() -> None:
    """Weights and output float32, the layers computed in bfloat16 by the forward's own
    autocast: 9.9e-4 apart, held to float32's 1e-5 and called changed; bfloat16's tolerance
    (float16's stays 1e-2: ``test_a_float16_output_gets_the_half_precision_tolerance``)."""

    torch.manual_seed(0)
    report = apply_weight_norm(_Autocast(), (torch.randn(16, 64),))
    assert report.status == "ok" and report.rtol == 5e-2
    assert report.max_rel_error is not None and 1e-5 < report.max_rel_error < 1e-2


def test_a_bfloat16_model_gets_bfloat16_s_tolerance() -> None:
    """bfloat16 rounds at 2**-8, eight times float16's step: six convs with GroupNorm moved
    by 1.04e-2 under weight norm (as close to the float32 model as the original, 7.9e-3 and
    1.1e-2 from it), held to float16's 1e-2 and called changed (t312)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, padding=1)]
    for _ in range(5):
        layers += [nn.GroupNorm(8, 32), nn.SiLU(), nn.Conv2d(32, 32, 3, padding=1)]
    model = nn.Sequential(*layers).to(torch.bfloat16)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).bfloat16()
    report = apply_weight_norm(model, (x,))
    assert report.status == "ok" and report.rtol == 5e-2
    assert report.max_rel_error is not None and report.max_rel_error < 5e-2


def test_a_tolerance_given_is_the_one_held_to() -> None:
    """A deep network's float32 rounding can pass 1e-5 (a VITS model: 1.31e-5 with one seed,
    under 1e-5 with others) and there was no way to say which tolerance holds: ``rtol``."""

    for rtol, ok in ((1e-5, False), (2e-2, True)):
        torch.manual_seed(0)
        report = apply_weight_norm(_Autocast(), (torch.randn(16, 64),), rtol=rtol)
        assert report.rtol == rtol and (report.status == "ok") is ok
    with pytest.raises(InvalidArgumentError, match=r"^rtol -1: a tolerance must be a finite"):
        apply_weight_norm(nn.Linear(2, 2), (torch.randn(1, 2),), rtol=-1)
    # where no outputs are compared, a tolerance is refused, not ignored
    for inputs, init in (((torch.randn(3, 2),), "data"), (None, "keep")):
        with pytest.raises(UsageError, match=r"^rtol goes with init='keep', example_inputs"):
            apply_weight_norm(nn.Linear(2, 2), inputs, init=init, rtol=1e-3)  # type: ignore[arg-type]


class _Result:
    """A result object holding an array namespace and a logger beside its output."""

    def __init__(self, y: torch.Tensor) -> None:
        self.y, self.xp, self.log = y, np, logging.getLogger("wnpass.tests.model")


class _WithStatistics(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin, self.norm, self.head = nn.Linear(64, 64), nn.LayerNorm(64), nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> Any:
        h = self.norm(self.lin(x))
        logits = self.head(h) + 0.01 * torch.from_numpy(np.random.randn(10).astype("float32"))
        return {"logits": logits, "mean": h.mean(), "result": _Result(logits)}


def test_an_equivalent_rewrite_passes_whatever_else_its_result_holds() -> None:
    """A near-zero statistic (judged against its own scale), NumPy's random numbers (not
    replayed), a logger (walked into the logging system, whose caches wnpass's own loggers
    change) and an array namespace (NumPy's module tree walked: minutes) each failed, or
    hung, an equivalent rewrite."""
    torch.manual_seed(0)
    report = apply_weight_norm(_WithStatistics(), torch.randn(8, 64))
    assert report.status == "ok", report.changes
    assert report.max_rel_error is not None and report.max_rel_error <= KEEP_RTOL
    assert report.notes == [
        "not compared: output['result'].xp (module: code, not a value); output['result'].log "
        "(Logger: a standard-library object without equality of its own)"
    ]


class _HugeKey(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> Any:
        y = self.lin(x)
        return y, {10**5000: y}  # a key whose repr Python refuses (over 4300 digits)


def test_a_result_wnpass_cannot_print_is_no_failure_of_the_forward() -> None:
    """Reading the result raised inside the forward (the dtype hook walks each module's
    output), and was reported as the model's own failure: "the forward ... raised
    ValueError"."""
    report = apply_weight_norm(_HugeKey(), torch.randn(2, 4))
    assert report.status == "ok", report.changes


def test_nothing_to_apply_is_said_in_the_tense_of_the_command() -> None:
    """A model whose every weight is weight-normed already: applying says NOTHING APPLIED, an
    inspection NOTHING TO APPLY; the reason fits both."""
    report = apply_weight_norm(parametrizations.weight_norm(nn.Linear(3, 2)))
    reason = "no parameter to apply weight norm to (1x bias; 1x already weight-normed)"
    assert report.status == "nothing applied" and report.reason is not None
    assert report.reason.startswith(reason)
    applied, inspected = apply_summary(report), apply_summary(report, inspect=True)
    assert any(line.startswith(f"NOTHING APPLIED: {reason}") for line in applied[1:])
    assert any(line.startswith(f"NOTHING TO APPLY: {reason}") for line in inspected[1:])


def test_nothing_applied_says_no_equivalent_between_its_failure_lines() -> None:
    """Nothing applied, the forwards compared anyway (nothing changed): "equivalent: ..."
    stood between NOTHING APPLIED and "nothing written", read as a pass (t262)."""
    model = nn.Sequential(nn.Linear(3, 2))
    report = apply_weight_norm(model, (torch.randn(2, 3),), include="*.bias")
    assert report.status == "nothing applied" and report.max_rel_error == 0
    lines = apply_summary(report)
    assert any(line.startswith("NOTHING APPLIED: ") for line in lines)
    assert not any(line.lower().startswith(("equivalent", "not equivalent")) for line in lines)


class _CachesOnItsFirstCall(nn.Module):
    """Projects a learned memory on its first forward and reuses the projection after."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = nn.Parameter(torch.randn(6, 8))
        self.mem_proj = nn.Linear(8, 8)
        self.out = nn.Linear(8, 4)
        self.projected: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.projected is None:
            self.projected = self.mem_proj(self.memory)
        attention = torch.softmax(x @ self.projected.t(), -1) @ self.projected
        return self.out(attention)


def test_a_weight_read_on_the_first_forward_only_is_given_back() -> None:
    """apply ran its comparison forward first and planned from the second, in which this
    model's ``mem_proj`` is not used (t54); planned from the first, it was applied, "ok", and
    never trained: the model keeps the projection it made on its first call (t57). The
    forwards after the rewrite never compute its weight: it gets its parameter back.
    ``inspect``, which rewrites nothing, plans from its one forward."""
    x = torch.randn(2, 8)
    inspected, _, _ = analyse_sites(_CachesOnItsFirstCall(), x)
    assert [s.name for s in inspected if s.status == "planned"] == ["mem_proj.weight", "out.weight"]
    report = apply_weight_norm(_CachesOnItsFirstCall(), x)
    by_name = {s.name: s for s in report.sites}
    assert [s.name for s in report.sites if s.status == "applied"] == ["out.weight"]
    assert by_name["mem_proj.weight"].reason == NOT_COMPUTED
    assert report.status == "ok"


class _RoutesAtRandom(nn.Module):
    """Sends its input through one of two experts, picked at random on every call (in eval
    mode too)."""

    def __init__(self) -> None:
        super().__init__()
        self.experts = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.experts[int(torch.randint(2, ()))](x)


def test_a_weight_a_random_route_reads_stays_applied() -> None:
    """The forward after the rewrite drew other random numbers than the plan's: it took the
    other expert, and the one the plan saw was skipped as never trained (t60)."""
    for seed in range(6):
        torch.manual_seed(seed)
        report = apply_weight_norm(_RoutesAtRandom(), torch.randn(2, 4))
        assert report.applied == 1 and report.skipped == 3, (seed, report.sites)


class _ReadsThroughAClosure(nn.Module):
    """Its forward reads its layers' weights through closures made at construction."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)
        weight = self.lin.weight
        self.project = lambda x: F.linear(x, weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.project(x)))


def test_a_weight_the_forward_reads_elsewhere_is_given_back_its_parameter() -> None:
    """A weight the forward reads through a closure (or a ``functools.partial``, an object's
    attribute, a nested list) was weight-normed, "ok": the forward read the old tensor, and no
    gradient reached g and v (t57). The forward after the rewrite shows it: the site is
    skipped and its module holds the very parameter it held, which the closure reads."""
    model, x = _ReadsThroughAClosure(), torch.randn(3, 4)
    weight = model.lin.weight
    report = apply_weight_norm(model, x)
    by_name = {s.name: s for s in report.sites}
    assert by_name["lin.weight"].status == "skipped"
    assert by_name["lin.weight"].reason == OLD_READ
    assert by_name["head.weight"].status == "applied" and report.status == "ok"
    assert model.lin.weight is weight and not parametrize.is_parametrized(model.lin)
    assert [n for n, _ in model.lin.named_parameters()] == ["weight", "bias"]
    model(x).sum().backward()
    assert weight.grad is not None
    assert model.get_parameter("head.parametrizations.weight.original1").grad is not None


class _PartialToo(nn.Module):
    """Its layer reads its weight as usual, and a ``functools.partial`` made at construction
    reads the same tensor too."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.side = functools.partial(F.linear, weight=self.lin.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + self.side(x)


def test_a_weight_read_both_through_its_module_and_elsewhere_is_given_back() -> None:
    """The parametrization ran, so the site stayed "applied", ok: the partial kept reading the
    old tensor, which training then left behind (t59). The old tensor read is what shows."""
    model = _PartialToo()
    report = apply_weight_norm(model, torch.randn(3, 4))
    (site,) = [s for s in report.sites if s.name == "lin.weight"]
    assert (site.status, site.reason) == ("skipped", OLD_READ)


class _CachesInEvalOnly(nn.Module):
    """Reuses a projection it computed in eval mode; recomputes it every training forward."""

    def __init__(self) -> None:
        super().__init__()
        self.mem_proj = nn.Linear(8, 8)
        self.memory = nn.Parameter(torch.randn(6, 8))
        self.cached: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.cached is None:
            projected = self.mem_proj(self.memory)
            if not self.training:
                self.cached = projected
        else:
            projected = self.cached
        return x @ projected.t()


def test_a_weight_an_eval_only_cache_hides_is_given_back_not_left_untrained() -> None:
    """The forward that tells which weight norms are reached runs in eval mode, where this
    model reads its cache. A training forward would read the weight, but running one changes
    models (an ActNorm initializes from its first training batch; a deep copy to run it on
    doubled the memory and could not keep a closure over the model from changing it: t61,
    t62): the weight is given back, skipped with the reason, never kept untrained."""
    report = apply_weight_norm(_CachesInEvalOnly(), torch.randn(2, 8))
    (site,) = [s for s in report.sites if s.name == "mem_proj.weight"]
    assert (site.status, site.reason) == ("skipped", NOT_COMPUTED)


class _ReadsAViewElsewhere(nn.Module):
    """A closure keeps a transposed view of the head's weight and reads it beside the head."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 4)
        weight_t = self.head.weight.t()
        self.side = lambda x: x @ weight_t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x) + self.side(x)


def test_a_view_of_the_old_weight_read_elsewhere_gives_the_weight_back() -> None:
    """Watched by identity alone, the old weight read through a view kept elsewhere was not
    seen, and the head's weight norm stayed, half of its uses untrained (t62)."""
    report = apply_weight_norm(_ReadsAViewElsewhere(), torch.randn(3, 4))
    (site,) = [s for s in report.sites if s.name == "head.weight"]
    assert (site.status, site.reason) == ("skipped", OLD_READ)


class _AuxInTraining(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Linear(4, 4)
        self.aux = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x)
        return y + self.aux(x) if self.training else y


def test_a_head_the_eval_forward_does_not_compute_is_given_back_when_traced_statically() -> None:
    """torch.fx traces the training graph, where ``aux`` is read; the eval forward after the
    rewrite does not compute it. Kept, a weight norm that forward does not compute could be
    one that never trains (a cache made on the first call, with a plan from module types:
    t63): it is given back, skipped with the reason, never left untrained."""
    report = apply_weight_norm(_AuxInTraining(), torch.randn(2, 4), tracer="static")
    by_name = {s.name: s for s in report.sites}
    assert by_name["main.weight"].status == "applied"
    assert (by_name["aux.weight"].status, by_name["aux.weight"].reason) == ("skipped", NOT_COMPUTED)


class _FlattensFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rnn.flatten_parameters()
        return self.rnn(x)[0]


def test_an_rnn_that_flattens_its_parameters_first_keeps_its_weight_norm() -> None:
    """``flatten_parameters()`` read the dtype of the old parameters RNNBase still kept in its
    ``_flat_weights``: read as the old tensor, the first weight was given back (t63)."""
    report = apply_weight_norm(_FlattensFirst(), torch.randn(5, 2, 4))
    assert {s.name for s in report.sites if s.status == "applied"} == {
        "rnn.weight_ih_l0", "rnn.weight_hh_l0"
    }  # fmt: skip


class _Ema(nn.Module):
    """Subtracts an EMA of its hidden units that it moves in eval mode too (a monitoring
    statistic), and counts its calls: buffers its forward writes."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)
        self.ema: torch.Tensor
        self.register_buffer("ema", torch.full((16,), 7.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        with torch.no_grad():
            self.ema.mul_(0.9).add_(0.1 * h.mean(0))
        return self.b(h - self.ema)


def test_the_outputs_before_and_after_start_from_the_same_buffers() -> None:
    """The forward after the rewrite read the EMA the forward before had moved: 0.09 apart,
    NOT EQUIVALENT, for a rewrite that changed nothing (t60). Each compared forward starts from
    the buffers as they were, and gives them back."""
    model, x = _Ema(), torch.randn(3, 8)
    ema = model.ema.clone()
    report = apply_weight_norm(model, (x,))
    assert report and report.equivalent is True and report.applied == 2
    assert torch.equal(model.ema, ema)


class _OwnState(nn.Module):
    """Adds noise from a generator of its own, shifts its frames by a state kept in plain
    attributes, and counts its calls in an object of its own class."""

    class Calls:
        def __init__(self) -> None:
            self.count = 0

    def __init__(self, counted: bool) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)
        self.gen = torch.Generator().manual_seed(1234)
        self.last: torch.Tensor | None = None
        self.history: list[torch.Tensor] = []
        self.calls = self.Calls() if counted else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x) + 0.5 * torch.randn(16, generator=self.gen)
        if self.last is not None:
            h = h + self.last
        self.last = h.detach()
        self.history.append(self.last)
        h = h + len(self.history)
        if self.calls is not None:
            self.calls.count += 1
            h = h + self.calls.count
        return self.b(torch.relu(h))


def test_the_model_s_own_state_is_given_back_after_each_forward_of_wnpass_s() -> None:
    """A generator of the model's own, a state in a plain attribute and a list it appends to
    made the outputs after the rewrite differ from those before: NOT EQUIVALENT, 1.06, for a
    rewrite that changed nothing (t60). Each of wnpass's forwards gives them back."""
    model = _OwnState(counted=False)
    state = model.gen.get_state()
    report = apply_weight_norm(model, (torch.randn(3, 8),))
    assert report and report.equivalent is True and report.applied == 2
    assert model.last is None and model.history == [] and torch.equal(model.gen.get_state(), state)


def _halve(weight: torch.Tensor, how: str) -> None:
    """Halve ``weight`` in place, in one of the ways a forward may write a parameter."""
    if how == "div_":
        weight.div_(2)
    elif how == "__setitem__":
        weight[:] = weight / 2
    elif how == ".data":
        weight.data.mul_(0.5)
    elif how == "init by keyword":  # nn.init passes it on as tensor=
        torch.nn.init.constant_(tensor=weight, val=0.25)
    elif how == "inplace=True":
        F.relu(weight, inplace=True)
    elif how == "out=":
        torch.mul(weight, 0.5, out=weight)


WRITES = ["div_", "__setitem__", ".data", "init by keyword", "inplace=True", "out="]


class _RescalesInEval(nn.Module):
    """RWKV's ``_rescale_layers``: in eval mode, a forward writes the last layer's weight in
    place once and sets a flag that says so; in train mode it would write it back."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)
        self.rescaled, self.how = False, how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rescaled != (not self.training):
            with torch.no_grad():
                if self.training:
                    self.b.weight.mul_(2)
                else:
                    _halve(self.b.weight, self.how)
            self.rescaled = not self.training
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize("how", WRITES)
def test_a_weight_the_forward_writes_in_place_is_given_back_with_its_flag(how: str) -> None:
    """Each of wnpass's forwards gave the flag back but not the weight it divided, so the next
    divided it again: RWKV's weights ended divided by 2**15 (t113); a write through ``.data``,
    by keyword, ``inplace=True`` or ``out=`` was not seen either (t115). The weight comes back
    from a copy made before the write, so the model is as given; the weight the forward writes
    is left without weight norm (its writes would land on the computed weight)."""
    torch.manual_seed(0)
    model = _RescalesInEval(how)
    weight = model.b.weight.detach().clone()
    report = apply_weight_norm(model, (torch.randn(3, 8),))
    assert report and report.equivalent is True
    assert model.rescaled is False and torch.equal(model.b.weight, weight)
    statuses = {site.name: (site.status, site.reason) for site in report.sites}
    if how != ".data":  # no op of the forward's shows it (the copy is made all the same)
        assert statuses["b.weight"][0] == "skipped"
        assert "in place" in (statuses["b.weight"][1] or "")
    assert statuses["a.weight"][0] == "applied"


def test_data_init_gives_back_a_weight_the_forward_writes_in_place() -> None:
    """Data init's passes gave the flag back but not the weight (t115: saved at half its
    value, reported as left alone)."""
    torch.manual_seed(0)
    model = _RescalesInEval("div_")
    weight = model.b.weight.detach().clone()
    report = apply_weight_norm(model, (torch.randn(64, 8),), init="data")
    assert report.applied == 1
    assert model.rescaled is False and torch.equal(model.b.weight, weight)


def test_outputs_that_change_from_run_to_run_are_said_to_be_the_cause() -> None:
    """State wnpass cannot give back (a count in an object of the model's own class) makes
    the outputs change from run to run: the model after the rewrite is run once more, its
    outputs differ again, and the reason says weight norm may not be the cause."""
    report = apply_weight_norm(_OwnState(counted=True), (torch.randn(3, 8),))
    assert report.status == "outputs changed" and not report
    assert report.not_deterministic
    assert "differ from run to run" in (report.reason or "")
    # a rewrite that changes a deterministic model's outputs is not blamed on the model
    changed = apply_weight_norm(_Changes(), (torch.randn(2, 3),))
    assert changed.status == "outputs changed" and not changed.not_deterministic
    assert "run to run" not in (changed.reason or "")


class _Changes(nn.Linear):
    def __init__(self) -> None:
        super().__init__(3, 3)

    def forward(self, x: torch.Tensor) -> Any:
        y = super().forward(x)
        return 2 * y if parametrize.is_parametrized(self) else y


class _LoraMergesInEval(nn.Linear):
    """loralib's Linear with ``merge_weights=True``: ``train(False)`` adds ``B @ A`` to the
    frozen weight, ``train(True)`` takes it out; the forward reads A and B only unmerged."""

    def __init__(self, merge_weights: bool = True) -> None:
        super().__init__(8, 6)
        self.weight.requires_grad_(False)
        self.lora_A, self.lora_B = nn.Parameter(torch.randn(4, 8)), nn.Parameter(torch.randn(6, 4))
        self.merge_weights, self.merged = merge_weights, False

    def train(self, mode: bool = True) -> _LoraMergesInEval:
        super().train(mode)
        if not self.merge_weights:
            return self
        with torch.no_grad():
            if mode and self.merged:
                self.weight -= self.lora_B @ self.lora_A
            elif not mode and not self.merged:
                self.weight += self.lora_B @ self.lora_A
        self.merged = not mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        return out if self.merged else out + (x @ self.lora_A.T) @ self.lora_B.T


def test_what_a_train_override_computes_is_no_use_of_the_forward_s() -> None:
    """The uses were recorded while eval mode was entered, so the merge's ``B @ A`` planned A
    per input feature (axis 1) where the training forward's ``x @ A.T`` makes its rows the
    units (axis 0), and the frozen weight "modified in place in the forward" (t65). The eval
    forward reads the merged weight only: A and B are not used there, and left alone so."""
    model = nn.Sequential(_LoraMergesInEval()).train()
    report = apply_weight_norm(model, (torch.randn(5, 8),), include=["0.lora_*"])
    reasons = {site.name: (site.status, site.reason) for site in report.sites}
    assert (
        reasons["0.lora_A"]
        == reasons["0.lora_B"]
        == ("skipped", "not used in the observed forward")
    )
    assert reasons["0.weight"] == ("skipped", "frozen (requires_grad=False)")
    unmerged = nn.Sequential(_LoraMergesInEval(merge_weights=False)).train()
    report = apply_weight_norm(unmerged, (torch.randn(5, 8),), include=["0.lora_*"])
    axes = {site.name: site.axis for site in report.sites if site.status == "applied"}
    assert axes == {"0.lora_A": 0, "0.lora_B": 0}


def test_the_switch_to_eval_mode_and_back_leaves_no_ulp_behind() -> None:
    """A LoRA layer in training mode merges ``B @ A`` into its weight when wnpass switches it
    to eval mode, and takes it out again when it switches back: ``(W + BA) - BA`` is W an ulp
    off here and there, and each of wnpass's forwards left it so (t256). The switch is given
    back with the forward: the weight keeps every bit."""
    torch.manual_seed(0)
    lora = _LoraMergesInEval()
    model = nn.Sequential(lora).train()
    weight = lora.weight.detach().clone()
    with torch.no_grad():  # that the switch does move it
        model.eval().train()
    assert not torch.equal(lora.weight, weight)
    lora.weight.data.copy_(weight)
    apply_weight_norm(model, (torch.randn(5, 8),), include=["0.lora_*"], init="data")
    assert torch.equal(lora.weight, weight) and model.training and not lora.merged


class _RemakesItsActivation(nn.Module):
    """Makes its activation again on every call and counts its calls in a plain attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.act = nn.Linear(4, 4), nn.ReLU()
        self.offset = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.act = nn.ReLU()
        self.offset += 1.0
        return self.act(self.lin(x)) + self.offset


def test_a_submodule_made_again_on_every_call_builds_nothing() -> None:
    """A new submodule on every call counted as building the model, so no attribute was ever
    given back and the count carried over: NOT EQUIVALENT, 0.19 (t67)."""
    model = _RemakesItsActivation()
    report = apply_weight_norm(model, (torch.randn(2, 4),))
    assert report and report.equivalent is True and model.offset == 0.0


class _HeadOnFirstCall(nn.Module):
    """A head made on the forward's first call, not a lazy layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head: nn.Linear | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.body(x))
        if self.head is None:
            self.head = nn.Linear(8, 3)
        return self.head(h)


def test_a_layer_the_first_call_makes_is_observed_and_normed() -> None:
    """Its weight was reported "not used in the observed forward" (t71): the planning forward
    made it, and watched only the parameters there before."""
    torch.manual_seed(0)
    model = _HeadOnFirstCall()
    report = apply_weight_norm(model, torch.randn(16, 4))
    sites = {s.name: (s.status, s.axis) for s in report.sites}
    assert sites["head.weight"] == ("applied", 0) and report
    assert model.head is not None and parametrize.is_parametrized(model.head, "weight")


class _GraphConv(nn.Module):
    """A layer over a graph whose adjacency is a sparse buffer (COO or CSR)."""

    adjacency: torch.Tensor

    def __init__(self, layout: torch.layout) -> None:
        super().__init__()
        edges = torch.sparse_coo_tensor(torch.tensor([[0, 1, 2], [1, 2, 0]]), torch.ones(3), (3, 3))
        self.register_buffer(
            "adjacency", edges if layout == torch.sparse_coo else edges.to_sparse_csr()
        )
        self.lin = nn.Linear(4, 4)
        self.prune = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.adjacency @ self.lin(x)
        if self.prune:  # the forward drops an edge, in place
            kept = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 2]]), torch.ones(2), (3, 3))
            kept = kept if self.adjacency.layout == torch.sparse_coo else kept.to_sparse_csr()
            self.adjacency.resize_as_sparse_(kept)
            self.adjacency.copy_(kept)
        return y


@pytest.mark.parametrize("prune", [False, True], ids=["read", "pruned in place"])
@pytest.mark.parametrize("layout", [torch.sparse_coo, torch.sparse_csr], ids=["coo", "csr"])
def test_a_model_with_a_sparse_buffer_is_rewritten(layout: torch.layout, prune: bool) -> None:
    """A graph network's sparse adjacency buffer: comparing it after the forward raised
    "reshape is not implemented for sparse tensors" (an internal error); one the forward
    prunes in place is given back with its edges (a CSR one of other nnz raised, t223)."""
    torch.manual_seed(0)
    model, x = _GraphConv(layout), torch.randn(3, 4)
    before = model(x)
    model.prune = prune
    edges = model.adjacency.to_dense()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: sparse CSR is beta
        report = apply_weight_norm(model, (x,))
    assert report and [(s.name, s.status) for s in report.sites] == [
        ("lin.weight", "applied"),
        ("lin.bias", "skipped"),
    ]
    assert torch.equal(model.adjacency.to_dense(), edges)
    model.prune = False
    torch.testing.assert_close(model(x), before)


class _CountsCalls(nn.Module):
    """Registers a running count on its first call, and adds it to its output."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if "count" not in self._buffers:
            self.register_buffer("count", torch.zeros(3))
        count = self.get_buffer("count")
        count += 1
        return self.lin(x) + count


def test_a_buffer_the_forward_registers_is_not_left_behind() -> None:
    """The buffer registered by the first of wnpass's forwards stayed, counting: the
    rewritten model's first call differed from the model's by 1 while the report said its
    outputs were unchanged, and train-rewrite saved it (t226)."""
    torch.manual_seed(0)
    model, x = _CountsCalls(), torch.randn(8, 4)
    reference = copy.deepcopy(model)
    report = apply_weight_norm(model, (x,))
    assert report and report.max_rel_error == 0.0 and "count" not in model._buffers
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


class _Ragged(nn.Module):
    """A layer beside a nested (ragged) buffer of per-item lengths, which the forward may
    scale in place."""

    ragged: torch.Tensor

    def __init__(self, layout: torch.layout) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch: nested tensors are a prototype
            parts = [torch.arange(2.0), torch.arange(3.0)]
            self.register_buffer("ragged", torch.nested.nested_tensor(parts, layout=layout))
        self.lin = nn.Linear(4, 4)
        self.scale = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale:
            self.ragged.mul_(2.0)
        return self.lin(x) * self.ragged.unbind()[1].sum()


@pytest.mark.parametrize("init", ["keep", "data"])
@pytest.mark.parametrize("scale", [False, True], ids=["read", "changed in place"])
@pytest.mark.parametrize("layout", [torch.strided, torch.jagged], ids=["strided", "jagged"])
def test_a_model_with_a_nested_buffer_is_rewritten(
    layout: torch.layout, scale: bool, init: Literal["keep", "data"]
) -> None:
    """A nested buffer has no shape to read: comparing it after the forward raised
    "NestedTensorImpl doesn't support sizes" (an internal error, t220). Its components are
    compared one by one, and one the forward changed is given back."""
    torch.manual_seed(0)
    model, x = _Ragged(layout), torch.randn(3, 4)
    model.scale = scale
    report = apply_weight_norm(model, (x,), init=init)
    assert report and [(s.name, s.status) for s in report.sites] == [
        ("lin.weight", "applied"),
        ("lin.bias", "skipped"),
    ]
    assert [p.tolist() for p in model.ragged.unbind()] == [[0.0, 1.0], [0.0, 1.0, 2.0]]


def test_a_copy_made_before_apply_keeps_its_parametrized_class() -> None:
    """PyTorch shares a parametrized module's class between a deepcopy and its original:
    weight norm on the copy's other weight added a property to the original's class too,
    whose next forward raised KeyError 'weight_ih_l0' (t244: an orthogonal GRU and its
    reference copy). So did giving a weight norm back."""
    from torch.nn.utils.parametrizations import orthogonal

    torch.manual_seed(0)
    original = nn.GRU(8, 8, batch_first=True)
    orthogonal(original, "weight_hh_l0")
    model, x = copy.deepcopy(original), torch.randn(2, 5, 8)
    expected = original(x)[0]
    report = apply_weight_norm(model, (x,))
    assert {s.name for s in report.sites if s.status == "applied"} >= {"weight_ih_l0"}
    assert type(original) is not type(model)
    assert torch.equal(original(x)[0], expected)
    assert "weight_ih_l0" in dict(original.named_parameters())


@pytest.mark.parametrize("training", [False, True])
def test_the_modules_weight_norm_adds_are_in_the_models_mode(training: bool) -> None:
    """PyTorch makes a parametrization's modules in training mode: inside a model in eval,
    ``all(not m.training for m in model.modules())`` became false (t247)."""
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).train(training)
    assert apply_weight_norm(model, (torch.randn(3, 4),)).applied == 2
    assert {m.training for m in model.modules()} == {training}


@pytest.mark.parametrize(
    ("scale", "said"),
    [
        (0.0, "every float output is 0"),
        (1e-9, "in magnitude, below the scale differences are judged by (0.1)"),
    ],
)
def test_outputs_below_the_scale_floor_say_what_the_comparison_can_see(
    scale: float, said: str
) -> None:
    """t327: a zero-initialized head (timm's Mixer, torchvision's ViT, ControlNet's zero
    convolutions) makes every output 0: "equivalent" showed nothing of the layers before it,
    and an output of 1e-9 hid a change 1000 times its size (differences are judged relative
    to 0.1 at least). A note says so; the verdict stands, as weight norm keeps the function."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    head = nn.Linear(8, 2)
    nn.init.zeros_(head.bias)
    with torch.no_grad():
        head.weight.mul_(scale)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), head)
    report = apply_weight_norm(model, torch.randn(3, 4))
    assert report.equivalent
    assert [note for note in report.notes if said in note]
    bigger = nn.Sequential(nn.Linear(4, 2))
    assert not [n for n in apply_weight_norm(bigger, torch.randn(3, 4)).notes if "0.1" in n]


class _ReadsItsParameters(nn.Module):
    """Reads its layer's weight through ``_parameters``, as some fused-kernel code does."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.out = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.lin._parameters["weight"]
        assert weight is not None
        return self.out(F.linear(x, weight, self.lin.bias))


def test_a_forward_that_fails_once_weight_norm_is_on_says_so() -> None:
    """t344: the forward ran before the rewrite and failed after it (``_parameters`` holds no
    weight then), and the error blamed the model's forward as if it failed on its own. It
    names the weights weight norm was on; the model is as it was."""
    from wnpass.fx.forward import ForwardFailedError

    model = _ReadsItsParameters()
    x = torch.randn(2, 4)
    with pytest.raises(ForwardFailedError, match=r"raised KeyError: 'weight', once weight norm "
                       r"was on lin\.weight, out\.weight \(it ran before"):  # fmt: skip
        apply_weight_norm(model, (x,))
    assert not parametrize.is_parametrized(model.lin) and not parametrize.is_parametrized(model.out)
    model(x)


class _ExitsOnCall(nn.Linear):
    """Calls ``sys.exit(7)`` on its ``n``-th call (counted outside it: its own state is given
    back after each of wnpass's forwards)."""

    calls: typing.ClassVar[list[int]] = [0]

    def __init__(self, n: int) -> None:
        super().__init__(4, 4)
        self.n = n
        _ExitsOnCall.calls[0] = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _ExitsOnCall.calls[0] += 1
        if _ExitsOnCall.calls[0] == self.n:
            sys.exit(7)
        return super().forward(x)


@pytest.mark.parametrize("n", [2, 4], ids=["training-mode forward", "what the forward reads"])
def test_a_sys_exit_in_any_forward_stops_the_rewrite(n: int) -> None:
    """t344: a ``sys.exit()`` in the training-mode forward (the 2nd call) or in the check of
    what the forward reads (the 4th) was a forward that failed in one mode, passed over: the
    rewrite went on, exit 0. It stops it, naming the model's class, which is as it was."""
    from wnpass.fx.forward import ModelExitedError

    model = _ExitsOnCall(n)
    with pytest.raises(ModelExitedError, match=r"^_ExitsOnCall: the forward on the example "
                       r"inputs called sys\.exit\(7\)$"):  # fmt: skip
        apply_weight_norm(model, (torch.randn(2, 4),))
    assert not parametrize.is_parametrized(model)
