"""check_model: the folded checkpoint in the plain model computes what PyTorch's weight norm
computes from the original checkpoint; a wrong fold publishes nothing."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from tests.checkpoint.builders import expected_weight, legacy_weight_norm
from wnpass.checkpoint import api, fold_checkpoint
from wnpass.errors import InvalidArgumentError
from wnpass.fx.loading import load_model_py
from wnpass.verify.compare import DEFAULT_TOLERANCES

MODEL_PY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = nn.Conv1d(4, 8, 3, padding=1)
            self.up = nn.ConvTranspose1d(8, 4, 4, stride=2, padding=1)
            self.pos = nn.Conv1d(4, 4, 5, padding=2)
            self.post = nn.Conv1d(4, 1, 3, padding=1)

        def forward(self, x):
            x = torch.relu(self.pre(x))
            x = torch.relu(self.up(x))
            return self.post(x + self.pos(x))

    def build_model():
        return Net()

    def example_inputs():
        return (torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(0)),)
    """
)
DIMS = {"pre": 0, "up": 0, "pos": 2, "post": None}


def _checkpoint(tmp_path: Path, api_name: str = "parametrize") -> tuple[Path, Path]:
    model_py = tmp_path / "model.py"
    model_py.write_text(MODEL_PY)
    torch.manual_seed(3)
    model, _ = load_model_py(model_py)
    for name, dim in DIMS.items():
        module = getattr(model, name)
        if api_name == "parametrize":
            weight_norm(module, "weight", dim=dim)  # type: ignore[arg-type]
        else:
            legacy_weight_norm(module, dim=dim)
    with torch.no_grad():  # g away from ||v||: a fold that forgets g must show
        for key, param in model.named_parameters():
            if key.endswith(("original0", "_g")):
                param.mul_(torch.rand_like(param) + 0.5)
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    return tmp_path / "ckpt.pt", model_py


@pytest.mark.parametrize("api_name", ["parametrize", "legacy"])
def test_a_correct_fold_passes(tmp_path: Path, api_name: str) -> None:
    ckpt, model_py = _checkpoint(tmp_path, api_name)
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report and report.check is not None and report.published
    assert [row.name for row in report.check.outputs] == ["output"]
    assert report.check.outputs[0].max_rel < 1e-5
    assert (tmp_path / "ckpt.folded.pt").is_file()


def test_a_model_whose_eval_returns_nothing_is_checked(tmp_path: Path) -> None:
    """Coqui's Tortoise UnivNet overrides ``eval(inference=False)`` and returns None: the check
    took what ``eval()`` returned for the model, an internal error (t301)."""
    ckpt, model_py = _checkpoint(tmp_path)
    model_py.write_text(
        MODEL_PY
        + textwrap.dedent(
            """
            class Quiet(Net):
                def eval(self, inference=False):
                    super().eval()

            def build_model():
                return Quiet()
            """
        )
    )
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report.check is not None and report.check and report.published


@pytest.mark.parametrize(
    ("g_scale", "passes"), [(1.0, True), (2.0, False)], ids=["correct", "g-doubled"]
)
def test_every_part_of_the_result_is_compared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, g_scale: float, passes: bool
) -> None:
    """A number the forward returns (a loss's .item()) and a dataclass's tensors were left
    out of the comparison: only tensors in lists, tuples and dicts were read."""
    model_py = tmp_path / "model.py"
    model_py.write_text(
        "import dataclasses, torch\nfrom torch import nn\n\n"
        "@dataclasses.dataclass\nclass Out:\n    y: torch.Tensor\n\n"
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(4, 3)\n\n"
        "    def forward(self, x):\n        y = self.fc(x)\n"
        "        return Out(y), float(y.abs().sum())\n\n"
        "def build_model():\n    return Net()\n\n"
        "def example_inputs():\n    return (torch.randn(2, 4),)\n"
    )
    model, _ = load_model_py(model_py)
    weight_norm(model.get_submodule("fc"), "weight")
    torch.save(model.state_dict(), ckpt := tmp_path / "ckpt.pt")
    fold_pair = api.fold_pair  # a wrong fold (g doubled) must fail every part
    monkeypatch.setattr(api, "fold_pair", lambda g, v, dim: fold_pair(g * g_scale, v, dim))
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report.check is not None and bool(report.check) is passes
    rows = {row.name: row for row in report.check.outputs}
    assert list(rows) == ["output[0].y", "output[1]"] and rows["output[1]"].dtype == "float"
    assert all(row.ok is passes for row in rows.values())


@pytest.mark.parametrize(
    "forward",
    ["x.mul_(2)\n        return self.fc(x)", "return self.fc(x) + torch.randn_like(x[:, :3])"],
    ids=["in-place-input", "sampling-noise"],
)
def test_a_correct_fold_of_a_model_that_scales_its_input_or_samples_passes(
    tmp_path: Path, forward: str
) -> None:
    """The two forwards shared the input tensors (the first doubled them for the second) and
    drew other random numbers: a correct fold was 'outside tolerance 6/6', nothing written.
    Each now runs on its own copy of the inputs, from the same random state."""
    model_py = tmp_path / "model.py"
    model_py.write_text(
        "import torch\nfrom torch import nn\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(4, 3)\n\n"
        f"    def forward(self, x):\n        {forward}\n\n"
        "def build_model():\n    return Net()\n\n"
        "def example_inputs():\n    return (torch.randn(2, 4),)\n"
    )
    model, _ = load_model_py(model_py)
    weight_norm(model.get_submodule("fc"), "weight")
    torch.save(model.state_dict(), ckpt := tmp_path / "ckpt.pt")
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report and report.check is not None and report.published
    assert report.check.outputs[0].max_rel < 1e-5


def test_a_wrong_fold_fails_and_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt, model_py = _checkpoint(tmp_path)
    monkeypatch.setattr(api, "fold_pair", lambda g, v, dim: v.clone())  # forgets g and the norm
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report.check is not None and not report.check and not report.published
    assert report.check.outputs[0].outside > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "model.py"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("g_scale", "passes"), [(1.0, True), (1.05, False)])
def test_a_half_precision_checkpoint_is_held_to_its_weights_tolerance(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dtype: torch.dtype,
    g_scale: float,
    passes: bool,
) -> None:
    """A bfloat16 checkpoint checked against a float32 model.py: the exact fold, rounded once
    to bfloat16, failed float32's tolerance (44/48 outside, nothing written), since the
    reference computes g * v / ||v|| in float32. The plain model's weights hold no more than
    bfloat16, so their dtype's tolerance applies, shown in the row; a wrong g still fails."""
    ckpt, model_py = _checkpoint(tmp_path)
    state = torch.load(ckpt)
    state["model"] = {k: v.to(dtype) for k, v in state["model"].items()}
    torch.save(state, ckpt)
    fold_pair = api.fold_pair
    monkeypatch.setattr(api, "fold_pair", lambda g, v, dim: fold_pair(g * g_scale, v, dim))
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report.check is not None and bool(report.check) is passes
    (row,) = report.check.outputs
    name = str(dtype).removeprefix("torch.")
    assert (row.dtype, row.held_as) == ("float32", name)
    assert (row.rtol, row.atol) == DEFAULT_TOLERANCES[name]


def test_a_whole_tensor_g_stored_with_axes_of_one_is_checked(tmp_path: Path) -> None:
    """g of shape 1x1x1 beside v of 5x5x7 is a whole-tensor pair to the fold (foldable,
    folded), but --model said the original checkpoint did not fit the model (exit 2): PyTorch's
    weight norm keeps that g 0-d, and the g loaded into it is reshaped to fit."""
    model_py = tmp_path / "model.py"
    model_py.write_text(
        "import torch\nfrom torch import nn\n\n"
        "def build_model():\n    return nn.Conv1d(5, 5, 7, padding=3)\n\n"
        "def example_inputs():\n    return (torch.randn(1, 5, 9),)\n"
    )
    torch.manual_seed(0)
    v = torch.randn(5, 5, 7)
    state = {"weight_g": torch.tensor([[[1.7]]]), "weight_v": v, "bias": torch.randn(5)}
    torch.save(state, ckpt := tmp_path / "g111.pt")
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report and report.check is not None and report.published
    assert report.check.outputs[0].max_rel < 1e-5


@pytest.mark.parametrize("api_name", ["parametrize", "legacy"])
def test_a_declined_pair_fails_the_check_naming_it_not_the_original(
    tmp_path: Path, api_name: str
) -> None:
    """A unit of one pair's v all zero: that pair is declined and stays weight-normed, so the
    folded state dict cannot load into the plain model. It said "the original checkpoint
    does not fit the model" (exit 2); the check fails naming the pair (exit 1), nothing
    written."""
    ckpt, model_py = _checkpoint(tmp_path, api_name)
    state = torch.load(ckpt, weights_only=True)
    v_key = "pre.parametrizations.weight.original1" if api_name == "parametrize" else "pre.weight_v"
    state["model"][v_key][1] = 0
    torch.save(state, ckpt)
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report.check is not None and not report.check and not report.published
    (row,) = report.check.outputs
    assert row.problem is not None
    assert row.problem.startswith(
        "the folded checkpoint keeps pre.weight weight-normed (declined: v has"
    )
    (data,) = report.to_dict()["check"]["outputs"]  # no element compared: no sizes, no tolerance
    assert [data[key] for key in ("max_abs", "max_rel", "rtol", "atol")] == [None] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "model.py"]


TIED_PY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = self.a  # one module under two names

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

    def build_model():
        return Tied()

    def example_inputs():
        return (torch.randn(2, 4, generator=torch.Generator().manual_seed(0)),)
    """
)


@pytest.mark.parametrize("wrong", [False, True])
def test_a_tied_module_gets_weight_norm_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrong: bool
) -> None:
    """A weight-normed module under two names has a pair under each name: the reference puts
    weight norm on the module once (twice nests it, and the model's forward fails), and still
    tells a wrong fold from a right one."""
    model_py = tmp_path / "tied.py"
    model_py.write_text(TIED_PY)
    torch.manual_seed(3)
    model, _ = load_model_py(model_py)
    weight_norm(model.get_submodule("a"))
    with torch.no_grad():  # g away from ||v||
        model.get_parameter("a.parametrizations.weight.original0").mul_(3.0)
    torch.save(model.state_dict(), tmp_path / "tied.pt")
    if wrong:
        monkeypatch.setattr(api, "fold_pair", lambda g, v, dim: v.clone())
    report = fold_checkpoint(tmp_path / "tied.pt", check_model=model_py)
    assert report.count("folded") == 2 and report.check is not None
    assert bool(report.check) is not wrong and report.published is not wrong


def test_a_model_that_does_not_fit_is_bad_input(tmp_path: Path) -> None:
    ckpt, model_py = _checkpoint(tmp_path)
    model_py.write_text(MODEL_PY.replace("nn.Conv1d(4, 1, 3", "nn.Conv1d(4, 2, 3"))
    with pytest.raises(InvalidArgumentError, match=r"^check_model .*does not fit the model"):
        fold_checkpoint(ckpt, check_model=model_py)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "model.py"]


def test_a_model_whose_weight_norm_has_a_stateless_parametrization_on_top_is_said_so(
    tmp_path: Path,
) -> None:
    """A symmetric constraint registered on top of weight norm keeps no state in the file:
    the check said "nothing compared: the model has none of the folded weights", or that the
    original checkpoint has keys the model does not have (t142), where the model's weight
    is no g * v / ||v|| at all. Refused naming it; nothing written."""
    ckpt, model_py = _checkpoint(tmp_path)
    model_py.write_text(
        MODEL_PY.replace(
            "def build_model():\n    return Net()",
            "class Sym(nn.Module):\n"
            "    def forward(self, w):\n"
            "        return w + w.flip(0)\n\n"
            "def build_model():\n"
            "    from torch.nn.utils import parametrize\n"
            "    from torch.nn.utils.parametrizations import weight_norm\n"
            "    net = Net()\n"
            "    weight_norm(net.pre)\n"
            "    parametrize.register_parametrization(net.pre, 'weight', Sym())\n"
            "    return net",
        )
    )
    with pytest.raises(InvalidArgumentError) as caught:
        fold_checkpoint(ckpt, check_model=model_py)
    assert str(caught.value) == (
        f"check_model {model_py}: pre.weight: the model's weight norm is stacked with other "
        "parametrizations, so its weight is not the g * v / ||v|| a folded checkpoint holds, "
        "and the model cannot load one"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "model.py"]


def test_inf_in_different_places_fails_the_comparison() -> None:
    """An output that is inf where the reference is finite (or the other way) is a failure,
    not an element left out of the count."""
    import torch

    from wnpass.checkpoint.verify import _row

    reference = torch.tensor([float("inf"), 1.0])
    assert _row("y", reference, reference.clone(), None, None).problem is None
    row = _row("y", reference, torch.tensor([1.0, 1.0]), None, None)
    assert row.problem == "NaN/Inf in different places"
    row = _row("y", torch.tensor([1.0, 1.0]), torch.tensor([-float("inf"), 1.0]), None, None)
    assert row.problem == "NaN/Inf in different places"


def test_integer_outputs_are_compared_exactly_whatever_the_tolerance() -> None:
    """An index output (an argmax) one off is a difference, however large the tolerance that
    the float outputs get; the row says exact."""
    from wnpass.checkpoint.verify import _row

    row = _row("index", torch.tensor([20000]), torch.tensor([20001]), 1e-3, 1e-5)
    assert (row.outside, row.rtol, row.atol, row.ok) == (1, None, None, False)
    floats = _row("y", torch.tensor([1.0]), torch.tensor([1.0 + 1e-6]), 1e-3, 1e-5)
    assert (floats.outside, floats.rtol, floats.atol, floats.ok) == (0, 1e-3, 1e-5, True)


def test_a_numpy_scalar_tolerance_is_kept_as_a_python_float(tmp_path: Path) -> None:
    import numpy as np

    ckpt, model_py = _checkpoint(tmp_path)
    report = fold_checkpoint(ckpt, check_model=model_py, rtol=np.float32(1e-3))  # type: ignore[arg-type]
    assert report.check is not None
    rtol = report.check.outputs[0].rtol
    assert type(rtol) is float and rtol == float(np.float32(1e-3))


def test_an_empty_output_beside_compared_ones_passes_but_nothing_compared_fails() -> None:
    """An output empty by construction (``y[:0]``) is no failure while another output was
    compared; a model whose every output is empty (or NaN alike) proved nothing."""
    from wnpass.checkpoint.report import CheckpointReport, ModelCheckReport
    from wnpass.checkpoint.verify import _row

    y, empty = torch.tensor([1.0, 2.0]), torch.zeros(0, 4)
    both = ModelCheckReport(
        "m.py", [_row("y", y, y.clone(), None, None), _row("e", empty, empty, None, None)]
    )
    assert both and both.outputs[1].uncompared == "the output has no elements"
    alone = ModelCheckReport("m.py", [_row("e", empty, empty.clone(), None, None)])
    assert not alone and "nothing compared: e: the output has no elements" in (
        alone.vacuous() or ""
    )
    # as check writes its rows: a status, and null error sizes where nothing was compared
    # (the table showed "max abs 0", the JSON 0.0, beside "not compared")
    report = CheckpointReport("fold", "c.pt", "torch", check=both)
    y_row, e_row = report.to_dict()["check"]["outputs"]
    assert (y_row["status"], y_row["passed"], y_row["max_abs"]) == ("passed", True, 0.0)
    assert (e_row["status"], e_row["passed"]) == ("not compared", None)
    assert (e_row["max_abs"], e_row["max_rel"]) == (None, None)


_GATED_PY = """
import torch
from torch import nn


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = nn.Parameter(torch.randn(3, 1))

    def forward(self, x):
        return x * self.mix.T


def build_model():
    gate = Gate()
    {normed}
    return nn.Sequential(gate, nn.Tanh(), nn.Linear(3, 2))


def example_inputs():
    return (torch.randn(4, 1, generator=torch.Generator().manual_seed(0)),)
"""


@pytest.mark.parametrize("normed_in_model_py", [False, True])
def test_the_model_says_a_pair_of_one_element_per_unit_is_weight_norm(
    tmp_path: Path, normed_in_model_py: bool
) -> None:
    """Weight norm on a parameter named ``mix`` of 3x1 stores ``mix_g`` and ``mix_v`` of one
    shape: alone, those legacy keys cannot be told from two plain parameters and are left
    alone; a model that holds ``0.mix`` (plain, or weight-normed and folded) says they are a
    pair, and the fold is checked against it."""
    normed = "torch.nn.utils.weight_norm(gate, name='mix')" if normed_in_model_py else ""
    (model_py := tmp_path / "model.py").write_text(_GATED_PY.format(normed=normed))
    torch.manual_seed(3)
    model, _ = load_model_py(model_py)
    if not normed_in_model_py:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.nn.utils.weight_norm(model.get_submodule("0"), name="mix")
    with torch.no_grad():
        model.get_parameter("0.mix_g").mul_(3.0)  # g away from |v|
    torch.save(model.state_dict(), ckpt := tmp_path / "one.pt")
    assert [p.status for p in fold_checkpoint(ckpt).pairs] == ["declined"]
    report = fold_checkpoint(ckpt, tmp_path / "checked.pt", check_model=model_py)
    assert [p.status for p in report.pairs] == ["folded"] and report.check and report.published


def test_a_legacy_weight_pair_of_one_element_per_unit_needs_no_model(tmp_path: Path) -> None:
    """A WaveNet's input ``Conv1d(1, C, 1)`` under PyTorch's weight_norm stores ``weight_g``
    and ``weight_v`` of one shape (Cx1x1): they were left alone as maybe two plain
    parameters, exit 0, and the output did not load into the model without weight norm
    (t253). Keys ``X.weight_g``/``X.weight_v`` beside the layer's ``X.bias`` are weight
    norm's own: folded."""
    torch.manual_seed(3)
    layer = legacy_weight_norm(nn.Conv1d(1, 8, 1))
    g, v = layer.get_parameter("weight_g").detach(), layer.get_parameter("weight_v").detach()
    g.mul_(3.0)
    torch.save(layer.state_dict(), ckpt := tmp_path / "pre.pt")
    report = fold_checkpoint(ckpt, tmp_path / "pre.folded.pt")
    assert [p.status for p in report.pairs] == ["folded"]
    plain = nn.Conv1d(1, 8, 1)
    plain.load_state_dict(torch.load(tmp_path / "pre.folded.pt", weights_only=True))  # strict
    assert torch.equal(plain.weight.detach(), expected_weight(g, v, 0))


def _plain_and_normed(tmp_path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A plain state dict of MODEL_PY's model and a weight-normed one (``_checkpoint``'s)."""
    ckpt, model_py = _checkpoint(tmp_path)
    plain, _ = load_model_py(model_py)
    return plain.state_dict(), torch.load(ckpt, weights_only=True)["model"]


@pytest.mark.parametrize("wrong", [False, True])
def test_the_state_dict_checked_is_the_one_folded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrong: bool
) -> None:
    """``{"plain": plain, "model": weight-normed}``: both fit the model, and the first was the
    one checked: a plain model against itself, "ok" whatever the fold did. The state dicts
    checked are those holding folded pairs."""
    plain, normed = _plain_and_normed(tmp_path)
    torch.save({"plain": plain, "model": normed}, ckpt := tmp_path / "two.pt")
    if wrong:
        monkeypatch.setattr(api, "fold_pair", lambda g, v, dim: v.clone())
    report = fold_checkpoint(ckpt, check_model=tmp_path / "model.py")
    assert report.check is not None and report.check.checked == ["model"]
    assert [row.group for row in report.check.outputs] == ["model"]
    assert bool(report.check) is not wrong and report.published is not wrong


def test_every_state_dict_with_folded_pairs_of_the_model_is_checked(tmp_path: Path) -> None:
    """A model and its EMA copy are both folded, so both are checked; a state dict none of
    whose folded weights the model has (another network's) is named as not checked."""
    _, normed = _plain_and_normed(tmp_path)
    other = {"net.weight_g": torch.rand(3, 1) + 0.5, "net.weight_v": torch.randn(3, 4)}
    ema = {key: tensor.clone() for key, tensor in normed.items()}  # its own dict (torch.save
    # writes a dict held twice once, and it is read back as one state dict)
    torch.save({"model": normed, "ema": ema, "disc": other}, ckpt := tmp_path / "ema.pt")
    report = fold_checkpoint(ckpt, check_model=tmp_path / "model.py")
    assert report.check is not None and report.check and report.published
    assert (report.check.checked, report.check.unchecked) == (["model", "ema"], ["disc"])
    assert [row.group for row in report.check.outputs] == ["model", "ema"]


def test_a_state_dict_that_compared_nothing_fails_beside_one_that_compared(
    tmp_path: Path,
) -> None:
    """An EMA whose ``post.bias`` is NaN gave only NaN outputs, not compared; the model's state
    dict compared, and the whole check said ok (t135): each state dict is decided alone."""
    _, normed = _plain_and_normed(tmp_path)
    ema = {key: tensor.clone() for key, tensor in normed.items()}
    ema["post.bias"].fill_(float("nan"))
    torch.save({"model": normed, "ema": ema}, ckpt := tmp_path / "ema.pt")
    report = fold_checkpoint(ckpt, check_model=tmp_path / "model.py")
    assert report.check is not None and not report.check and not report.published
    assert (report.check.vacuous() or "").endswith("(in ema)")


def _wider(normed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A weight-normed state dict of the model's layer names at twice the widths: another
    network's (a discriminator naming its layers ``convs.0`` as the generator does)."""
    return {
        key: (torch.cat([value, value]) if value.dim() else value) + 0.5
        for key, value in normed.items()
    }


def test_a_state_dict_of_another_network_with_the_same_layer_names_is_not_checked(
    tmp_path: Path,
) -> None:
    """A generator and a discriminator that share layer names: the check took the
    discriminator for the model's (it holds folded weights named as the model's) and the
    fold failed with 'does not fit the model'; it is another network's, named as not checked."""
    _, normed = _plain_and_normed(tmp_path)
    torch.save({"disc": _wider(normed), "gen": normed}, ckpt := tmp_path / "gd.pt")
    report = fold_checkpoint(ckpt, check_model=tmp_path / "model.py")
    assert report.check is not None and report.check and report.published
    assert (report.check.checked, report.check.unchecked) == (["gen"], ["disc"])


def test_a_state_dict_with_the_model_weights_that_does_not_fit_it_is_an_error(
    tmp_path: Path,
) -> None:
    """Where the only state dict with the model's folded weights does not load into it, the
    error says how (the user gave the wrong model.py or checkpoint); nothing is written."""
    _, normed = _plain_and_normed(tmp_path)
    torch.save({"disc": _wider(normed)}, ckpt := tmp_path / "d.pt")
    before = sorted(tmp_path.iterdir())
    with pytest.raises(InvalidArgumentError, match="the original checkpoint does not fit the mod"):
        fold_checkpoint(ckpt, check_model=tmp_path / "model.py")
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ({"plain": "plain"}, "no pair was folded"),
        ({"plain": "plain", "disc": "other"}, "the model has none of the folded weights"),
    ],
)
def test_a_check_of_no_folded_pair_compared_nothing(
    tmp_path: Path, entries: dict[str, str], why: str
) -> None:
    plain, _ = _plain_and_normed(tmp_path)
    other = {"net.weight_g": torch.rand(3, 1) + 0.5, "net.weight_v": torch.randn(3, 4)}
    made = {"plain": plain, "other": other}
    torch.save({key: made[kind] for key, kind in entries.items()}, ckpt := tmp_path / "p.pt")
    report = fold_checkpoint(ckpt, check_model=tmp_path / "model.py")
    assert report.check is not None and not report.check and not report.published
    assert report.check.vacuous() == f"nothing compared: {why}"
    assert report.to_dict()["check"]["ok"] is False


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod."])
def test_a_check_of_weights_under_a_wrappers_prefix_says_so(tmp_path: Path, prefix: str) -> None:
    """t183: a state dict saved through DistributedDataParallel (``module.``) or
    torch.compile (``_orig_mod.``) compared nothing, without a word why."""
    _, normed = _plain_and_normed(tmp_path)
    torch.save({prefix + key: value for key, value in normed.items()}, ckpt := tmp_path / "w.pt")
    report = fold_checkpoint(ckpt, check_model=tmp_path / "model.py")
    assert report.check is not None and not report.check and not report.published
    assert report.check.vacuous() == (
        "nothing compared: the model has none of the folded weights (the model's weights are "
        f"in the checkpoint under the prefix {prefix!r}, as a DistributedDataParallel's "
        "module. or torch.compile's _orig_mod. puts them: save the state dict of the module "
        "inside, or take the prefix off)"
    )


def test_a_model_py_that_wraps_the_network_the_checkpoint_holds_says_so(tmp_path: Path) -> None:
    """t204: a model.py whose network is under ``module.`` (it wraps the one the checkpoint
    was saved from) compared nothing, without the hint the other way round gets."""
    _, normed = _plain_and_normed(tmp_path)
    torch.save(normed, ckpt := tmp_path / "w.pt")
    (tmp_path / "wrap.py").write_text(
        "from torch import nn\nfrom model import build_model as inner, example_inputs\n\n"
        "class Wrap(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.module = inner()\n\n    def forward(self, *args):\n"
        "        return self.module(*args)\n\n"
        "def build_model():\n    return Wrap()\n"
    )
    report = fold_checkpoint(ckpt, check_model=tmp_path / "wrap.py")
    assert report.check is not None and not report.published
    assert report.check.vacuous() == (
        "nothing compared: the model has none of the folded weights (the model's weights are "
        "under the prefix 'module.', which the checkpoint's keys lack: the model.py wraps the "
        "network the checkpoint was saved from; build that network, or add the prefix)"
    )


def test_weights_under_a_prefix_that_do_not_fit_the_model_get_no_hint(tmp_path: Path) -> None:
    """t187: another network's weights of the model's names under ``module.`` were said to be
    the model's; beside it, a second state dict of other names kept a fitting one unsaid."""
    _, normed = _plain_and_normed(tmp_path)
    wider = {"module." + key: value for key, value in _wider(normed).items()}
    torch.save(wider, ckpt := tmp_path / "w.pt")
    report = fold_checkpoint(ckpt, check_model=tmp_path / "model.py")
    assert report.check is not None
    assert report.check.vacuous() == "nothing compared: the model has none of the folded weights"
    other = {"net.weight_g": torch.rand(3, 1) + 0.5, "net.weight_v": torch.randn(3, 4)}
    fits = {"module." + key: value for key, value in normed.items()}
    torch.save({"disc": other, "gen": fits}, ckpt)
    report = fold_checkpoint(ckpt, check_model=tmp_path / "model.py")
    assert report.check is not None
    assert "the model's weights are in the checkpoint under the prefix 'module.'" in (
        report.check.vacuous() or ""
    )
    torch.save({"disc": _wider(normed), "gen": fits}, ckpt)  # t188: the misfit's error said it
    with pytest.raises(InvalidArgumentError) as raised:
        fold_checkpoint(ckpt, check_model=tmp_path / "model.py")
    assert "does not fit the model" in str(raised.value)
    assert "the model's weights are in the checkpoint under the prefix 'module.'" in str(
        raised.value
    )


def test_a_python_float_is_held_to_the_models_tolerance_and_objects_are_named(
    tmp_path: Path,
) -> None:
    """A loss's ``.item()`` was held to float64's tolerance (rtol 1e-9), which the float32
    rounding of a correct fold exceeds; a logger in the result was walked into the logging
    system and an expanded view cloned in full."""
    model_py = tmp_path / "model.py"
    model_py.write_text(
        "import logging, torch\nfrom torch import nn\n\n"
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.a, self.b = nn.Linear(64, 64), nn.Linear(64, 64)\n\n"
        "    def forward(self, x):\n        y = self.b(torch.tanh(self.a(x)))\n"
        "        return y, y.square().sum().item(), logging.getLogger('m'), y[0].expand(9, 64)\n\n"
        "def build_model():\n    return Net()\n\n"
        "def example_inputs():\n"
        "    return (torch.randn(16, 64, generator=torch.Generator().manual_seed(1)),)\n"
    )
    torch.manual_seed(0)
    model, _ = load_model_py(model_py)
    for name in ("a", "b"):
        weight_norm(model.get_submodule(name), "weight")
    torch.save(model.state_dict(), ckpt := tmp_path / "ckpt.pt")
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report and report.check is not None and report.published
    rows = {row.name: row for row in report.check.outputs}
    assert list(rows) == ["output[0]", "output[1]", "output[2]", "output[3]"]
    assert (rows["output[1]"].dtype, rows["output[1]"].rtol) == ("float", 1e-4)
    assert rows["output[2]"].uncompared == (
        "Logger: a standard-library object without equality of its own"
    )
    assert rows["output[3]"].total == 9 * 64 and rows["output[3]"].outside == 0


ZERO_INIT_PY = textwrap.dedent(
    """
    import torch
    from torch import nn
    from torch.nn.utils.parametrizations import weight_norm

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = weight_norm(nn.Conv1d(2, 3, 3))
            out = nn.Conv1d(3, 2, 1)
            nn.init.zeros_(out.weight)  # a zero-initialised last layer (flows, residuals)
            self.out = weight_norm(out)

        def forward(self, x):
            return self.out(torch.tanh(self.a(x)))

    def build_model():
        return Net()

    def example_inputs():
        return (torch.randn(1, 2, 8, generator=torch.Generator().manual_seed(0)),)
    """
)


def test_a_model_py_whose_fresh_weights_would_be_declined_still_checks_a_checkpoint(
    tmp_path: Path,
) -> None:
    """The model.py builds its model weight-normed with a zero-initialised layer, whose fresh
    weights no fold would fold (a zero-norm unit); the checkpoint's values, trained, replace
    them: the plain model is made whatever its fresh values, and the check passes."""
    model_py = tmp_path / "model.py"
    model_py.write_text(ZERO_INIT_PY)
    model, _ = load_model_py(model_py)
    with torch.no_grad():  # trained
        for key, param in model.named_parameters():
            if key.startswith("out."):
                param.copy_(torch.rand_like(param) + 0.5)
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    report = fold_checkpoint(tmp_path / "ckpt.pt", check_model=model_py)
    assert report and report.check is not None and report.published


def test_a_row_held_to_another_dtype_says_so_only_where_its_defaults_are_used() -> None:
    """``--rtol 1e-7 --atol 0`` replace both tolerances: the row still said it was held to
    bfloat16's (``held_as``, and the CLI's line about it), though none of bfloat16's was used
    (t51)."""
    import torch

    from wnpass.checkpoint.verify import _row

    ref = torch.ones(4)
    assert _row("y", ref, ref, None, None, held_as="bfloat16").held_as == "bfloat16"
    assert _row("y", ref, ref, 1e-7, None, held_as="bfloat16").held_as == "bfloat16"
    assert _row("y", ref, ref, 1e-7, 0.0, held_as="bfloat16").held_as is None


@pytest.mark.parametrize(
    "returned",
    [
        "None",
        "(None, None)",
        "'done'",
        "()",
        "{}",
        "{'y': x[..., :0], 'cache': None}",
        "(x * float('nan'), None)",
    ],
    ids=str,
)
def test_a_forward_that_returns_nothing_to_compare_fails_saying_so(
    tmp_path: Path, returned: str
) -> None:
    """A forward returning None or a string printed one row ``0/1 ok``, exit 0, the fold
    published as checked; ``()`` failed with no reason (t132); an output with no elements, or
    all NaN, beside a None passed (t134)."""
    ckpt, model_py = _checkpoint(tmp_path)
    source = MODEL_PY.replace(
        "return self.post(x + self.pos(x))",
        f"x = self.post(x + self.pos(x))\n        return {returned}",
    )
    model_py.write_text(source)
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report.check is not None and not report.check and not report.published
    assert (report.check.vacuous() or "").startswith(
        "nothing compared: no output of the model's forward holds a tensor or number with values"
    )


def test_a_model_whose_load_leaves_the_folded_weights_fails(tmp_path: Path) -> None:
    """A model whose own ``load_state_dict`` loads nothing passed with every folded weight
    replaced by noise (t132): the check now confirms the model holds them."""
    ckpt, model_py = _checkpoint(tmp_path)
    source = MODEL_PY.replace(
        "    def forward(self, x):",
        "    def load_state_dict(self, state, strict=True, assign=False):\n"
        "        return None\n\n    def forward(self, x):",
    )
    model_py.write_text(source)
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report.check is not None and not report.check and not report.published
    (row,) = report.check.outputs
    assert (row.problem or "").startswith("the model holds other values of pre.weight")


def test_a_forward_that_returns_a_python_int_is_compared_exactly(tmp_path: Path) -> None:
    """``int(y.argmax())`` is a number the folded weights decide: it failed as "no tensor or
    number" (t133), where it is compared exactly."""
    ckpt, model_py = _checkpoint(tmp_path)
    source = MODEL_PY.replace(
        "return self.post(x + self.pos(x))", "return int(self.post(x + self.pos(x)).argmax())"
    )
    model_py.write_text(source)
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report.check is not None and report.check and report.published


def with_idle_discriminator(ckpt: Path, model_py: Path, *, forward_reads: bool = True) -> None:
    """``_checkpoint``'s files with a weight-normed ``disc`` in the model and its state dict
    that the forward never runs, as a GAN's trainer file holds it; a forward reading nothing
    of the model's weights where not ``forward_reads``."""
    source = MODEL_PY.replace(
        "self.post = nn.Conv1d(4, 1, 3, padding=1)",
        "self.post = nn.Conv1d(4, 1, 3, padding=1)\n        self.disc = nn.Conv1d(1, 2, 3)",
    )
    if not forward_reads:
        source = source.replace("x = torch.relu(self.pre(x))", "return x * 2")
    model_py.write_text(source)
    normed = torch.load(ckpt, weights_only=True)["model"]
    disc = nn.Conv1d(1, 2, 3)
    weight_norm(disc, "weight", dim=0)
    normed.update({f"disc.{key}": value for key, value in disc.state_dict().items()})
    torch.save({"model": normed}, ckpt)


@pytest.mark.parametrize("forward_reads", [True, False], ids=["some", "none"])
def test_folded_weights_the_forward_does_not_read_are_said_not_checked(
    tmp_path: Path, forward_reads: bool
) -> None:
    """A GAN's state dict holds the generator and a discriminator the forward never runs (a
    coqui trainer file): its folded pairs passed as checked, when no output could show them
    (t292). They are named not checked; a forward that reads none of the folded weights
    compared nothing, and fails."""
    ckpt, model_py = _checkpoint(tmp_path)
    with_idle_discriminator(ckpt, model_py, forward_reads=forward_reads)
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report.check is not None
    (unread,) = report.check.unread
    if forward_reads:
        assert (unread.group, unread.weights) == ("model", ["disc.weight"])
        assert report.check and report.published
        assert report.to_dict()["check"]["unread"] == [
            {"group": "model", "weights": ["disc.weight"]}
        ]
    else:
        assert sorted(unread.weights) == sorted(f"{name}.weight" for name in [*DIMS, "disc"])
        assert not report.check and not report.published
        assert (report.check.vacuous() or "").startswith(
            "nothing compared: the forward on example_inputs() "
        )


FUSED_PY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Fused(nn.Module):
        # the forward reads a copy of both weights that a load hook makes (a fused qkv)
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 3, bias=False)
            self.b = nn.Linear(4, 3, bias=False)
            self.register_load_state_dict_post_hook(self._fuse)
            self._fuse(self, None)

        @staticmethod
        def _fuse(module, _):
            weights = torch.cat([module.a.weight, module.b.weight])
            module.__dict__["fused"] = weights.detach().clone()

        def forward(self, x):
            return x @ self.fused.t()

    def build_model():
        return Fused()

    def example_inputs():
        return (torch.randn(2, 4, generator=torch.Generator().manual_seed(0)),)
    """
)


def test_weights_the_forward_reads_through_a_copy_the_load_made_are_read(tmp_path: Path) -> None:
    """A load hook fuses both weights into one tensor the forward reads: no kernel of the
    forward reads them, and the check said so and failed, nothing written, though every
    output depends on them (t293). A weight whose NaN changes the result is read."""
    (model_py := tmp_path / "fused.py").write_text(FUSED_PY)
    model, _ = load_model_py(model_py)
    for name in ("a", "b"):
        weight_norm(model.get_submodule(name), "weight", dim=0)
    torch.save(model.state_dict(), ckpt := tmp_path / "f.pt")
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report.check is not None and report.check and report.published
    assert report.check.unread == []


@pytest.mark.parametrize(
    "state", ["counter", "finite check at load", "global counter", "every other call"]
)
def test_an_unread_weight_of_a_model_with_state_is_still_said_unread(
    tmp_path: Path, state: str
) -> None:
    """The confirmation compared a forward with the weights NaN to the first one: a model that
    counts its calls, or refuses non-finite weights as they load, made the discriminator
    beside its generator look read, and its fold passed as checked (t294); so did a count
    of the model.py's own that wnpass does not give back (t296)."""
    ckpt, model_py = _checkpoint(tmp_path)
    with_idle_discriminator(ckpt, model_py)
    source = model_py.read_text()
    if state == "counter":
        source = source.replace(
            "self.disc = nn.Conv1d(1, 2, 3)",
            "self.disc = nn.Conv1d(1, 2, 3)\n        self.calls = 0",
        ).replace(
            "return self.post(x + self.pos(x))",
            "self.calls += 1\n        return self.post(x + self.pos(x)), float(self.calls)",
        )
    elif state in ("global counter", "every other call"):  # a count wnpass does not give back
        step = "COUNT[0]" if state == "global counter" else "(COUNT[0] // 2)"
        start = 0 if state == "global counter" else 2  # two equal runs, then a change
        source = source.replace("import torch\n", f"import torch\nCOUNT = [{start}]\n", 1).replace(
            "return self.post(x + self.pos(x))",
            f"COUNT[0] += 1\n        return self.post(x + self.pos(x)) + 1e-9 * {step}",
        )
    else:
        source = source.replace(
            "self.disc = nn.Conv1d(1, 2, 3)",
            "self.disc = nn.Conv1d(1, 2, 3)\n"
            "        self.register_load_state_dict_post_hook(\n"
            "            lambda m, _: None if all(bool(p.isfinite().all()) "
            "for p in m.parameters()) else 1 / 0)",
        )
    model_py.write_text(source)
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report.check is not None and report.check and report.published
    assert [unread.weights for unread in report.check.unread] == [["disc.weight"]]


QAT_MODEL_PY = textwrap.dedent(
    """
    import torch
    from torch import nn

    def build_model():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).train()
        model.qconfig = torch.ao.quantization.get_default_qat_qconfig("fbgemm")
        return torch.ao.quantization.prepare_qat(model)

    def example_inputs():
        return (torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),)
    """
)


@pytest.mark.filterwarnings("ignore:Please use quant_min:UserWarning")  # torch's own observers
def test_a_quantization_aware_model_whose_load_resizes_its_buffers_is_checked(
    tmp_path: Path,
) -> None:
    """A QAT model's per-channel fake quantizers hold a ``scale`` of one element until a load
    gives them the file's (one per channel): the check refused such a checkpoint as "does not
    fit the model" by its buffers' shapes, which PyTorch loads strictly (t302)."""
    (model_py := tmp_path / "qat.py").write_text(QAT_MODEL_PY)
    model, inputs = load_model_py(model_py)
    assert isinstance(model, nn.Sequential) and inputs is not None
    for index in (0, 2):
        weight_norm(model[index], "weight", dim=0)
    model(*inputs)  # the observers see data: their scales take one element per channel
    state = model.state_dict()
    assert state["0.weight_fake_quant.scale"].shape == (6,)
    torch.save(state, ckpt := tmp_path / "qat.pt")
    report = fold_checkpoint(ckpt, check_model=model_py)
    assert report.check is not None and report.check and report.published
    assert report.check.outputs[0].max_abs == 0.0
