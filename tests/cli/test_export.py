"""``wnpass export``: what it claims without ``--verify``, inputs fed by name, ``--dynamic``
flags that add up or are refused, and one-line refusals of models it cannot export or verify."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest

from tests.helpers import weight_normed
from wnpass.cli import main

# forward's first input is never read (the TorchScript exporter drops it) and its last is a
# Python int (TorchScript takes it as a scalar input; dynamo bakes it into the graph).
MODEL = """
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = weight_norm(nn.Linear(8, 6))

    def forward(self, mask, x, scale):
        return self.fc(x) * scale

def build_model():
    torch.manual_seed(0)
    return M().to({to})

def example_inputs():
    torch.manual_seed(1)
    return (torch.zeros(3), torch.randn(2, 8).to({to}), 3)
"""


def _model_py(tmp_path: Path, to: str = "torch.float32") -> Path:
    """The model, its parameters and its tensor ``x`` moved by ``.to(to)``."""
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(MODEL).replace("{to}", to))
    return path


def _shapes(path: Path) -> dict[str, list[int | str]]:
    return {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in onnx.load(path).graph.input
    }


def test_without_verify_it_says_nothing_was_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    assert main(["export", str(_model_py(tmp_path)), "-o", str(out), "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}; not verified against PyTorch (add --verify)" in printed
    assert "deployable" not in printed and "matches" not in printed
    data = json.loads(report.read_text())
    assert data["verified"] is False and data["matches"] is None and data["comparisons"] == {}


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_pruned_unit_is_declined_in_pytorch_and_not_deployable(
    exporter: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A unit of v that is all zero gives NaN weights: PyTorch's fold declines it (said in a
    line of its own), and the export is not deployable (exit 1): never a model of NaN weights
    called folded. The ONNX fold meets it again after TorchScript; the dynamo exporter
    computes it into an initializer itself, and was called deployable. With --verify the
    output under -o is left as it was, as for any failed verification."""
    path = _model_py(tmp_path)
    source = path.read_text().replace(
        "    return M().to(torch.float32)",
        "    m = M()\n    with torch.no_grad():\n"
        "        m.fc.parametrizations.weight.original1[1].zero_()\n    return m",
    )
    path.write_text(source)
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    argv = ["export", str(path), "-o", str(out), "--exporter", exporter]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "folded 0 of 1 weight-norm site in PyTorch" in printed
    assert "declined in PyTorch: fc.weight: v has a unit with zero norm" in printed
    assert f"NOT DEPLOYABLE: see above (wrote {out})" in printed
    # its NaN weight matches no initializer by value: said as declined, not as unnamed, and
    # the naming line does not claim it either
    assert "no initializer of their name" not in printed
    assert "every weight (2-D and up) but those declined in PyTorch is an initializer" in printed
    out.write_bytes(b"the last good model")
    assert main([*argv, "--verify", "--runs", "1", "--json", str(report)]) == 1
    assert f"NOT DEPLOYABLE: see above; nothing written to {out}" in capsys.readouterr().out
    assert main(["--quiet", *argv, "--verify", "--runs", "1"]) == 1  # what is above: --quiet too
    quiet = capsys.readouterr().out
    assert "declined in PyTorch: fc.weight: v has a unit with zero norm" in quiet
    assert out.read_bytes() == b"the last good model"
    data = json.loads(report.read_text())
    assert (data["ok"], data["published"]) == (False, False)


def test_quiet_names_the_outputs_that_did_not_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--quiet export --verify`` said only "NOT DEPLOYABLE: see above", with nothing above."""
    out = tmp_path / "m.onnx"
    argv = ["--quiet", "export", str(_model_py(tmp_path)), "-o", str(out), "--verify"]
    assert main([*argv, "--runs", "1", "--rtol", "0", "--atol", "0"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == f"NOT DEPLOYABLE: see above; nothing written to {out}"
    assert re.match(r"^  cpu: \S+: \d+ of 12 elements outside rtol=0 atol=0 \(max abs ", lines[-1])


AMPLIFYING = """
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

class Amp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = weight_norm(nn.Linear(64, 64))

    def forward(self, x):
        return torch.sin(3e4 * self.fc(x))

def build_model():
    torch.manual_seed(0)
    model = Amp()
    with torch.no_grad():
        model.fc.parametrizations.weight.original0.mul_(1.37)
    return model

def example_inputs():
    return (torch.randn(8, 64, generator=torch.Generator().manual_seed(1)),)
"""


def test_a_failure_says_whether_pytorch_itself_moves_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model that amplifies rounding failed with elements outside and no word that PyTorch,
    its weights moved by one ulp, fails the tolerance too (t301)."""
    (model_py := tmp_path / "amp.py").write_text(AMPLIFYING)
    argv = ["--quiet", "export", str(model_py), "-o", str(tmp_path / "m.onnx"), "--verify"]
    assert main([*argv, "--runs", "1"]) == 1
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("  cpu: sin: ") and "elements outside" in line
    assert "; PyTorch with each weight moved by one ulp fails it too (max abs " in line


PLAIN = """
import torch
from torch import nn

def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(4, 4, 3), nn.Tanh(), nn.Conv1d(4, 2, 3))

def example_inputs():
    return (torch.randn(1, 4, 10, generator=torch.Generator().manual_seed(1)),)
"""


@pytest.mark.parametrize("zero_unit", [False, True], ids=["healthy", "zero-unit"])
def test_a_weight_norm_checkpoint_of_a_plain_model_is_folded_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], zero_unit: bool
) -> None:
    """A weight-normed checkpoint loaded into a plain model.py was folded while loading,
    unchecked and unreported: a unit of v all zero became NaN weights, compared NaN for NaN
    with ONNX Runtime and called deployable (exit 0), and the report counted none of its
    sites. The model now holds the checkpoint's weight norm, which export folds, checks and
    reports as any other."""
    import torch
    from torch.nn.utils.parametrizations import weight_norm

    from wnpass.fx.loading import load_model_py

    path = tmp_path / "plain.py"
    path.write_text(PLAIN)
    model, _ = load_model_py(path)
    weight_norm(model.get_submodule("0"))
    torch.nn.utils.weight_norm(model.get_submodule("2"))  # legacy keys: weight_g, weight_v
    state = model.state_dict()
    if zero_unit:
        state["0.parametrizations.weight.original1"][1].zero_()
    torch.save(state, ckpt := tmp_path / "wn.pt")
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    argv = ["export", str(path), "--checkpoint", str(ckpt), "-o", str(out), "--verify"]
    assert main([*argv, "--runs", "1", "--json", str(report)]) == (1 if zero_unit else 0)
    printed = capsys.readouterr().out
    data = json.loads(report.read_text())
    sites = {site["name"]: site["status"] for site in data["torch_fold"]["sites"]}
    if zero_unit:
        assert sites == {"0.weight": "declined", "2.weight": "folded"}
        assert "declined in PyTorch: 0.weight: v has a unit with zero norm" in printed
        assert not out.exists()
    else:
        assert sites == {"0.weight": "folded", "2.weight": "folded"}
        assert "folded 2 weight-norm sites in PyTorch" in printed
        assert onnx.numpy_helper.to_array(
            {i.name: i for i in onnx.load(out).graph.initializer}["0.weight"]
        ).shape == (4, 4, 3)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_verify_feeds_each_graph_input_its_own_example(
    exporter: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.onnx"
    argv = ["export", str(_model_py(tmp_path)), "-o", str(out), "--verify", "--runs", "1"]
    assert main([*argv, "--exporter", exporter]) == 0
    printed = capsys.readouterr().out
    assert f"deployable: ONNX matches PyTorch; wrote {out}" in printed
    # the claim is of the weights (biases keep the exporter's names; equal ones may share one)
    assert "every weight (2-D and up) is an initializer named after its PyTorch" in printed
    names = {i.name for i in onnx.load(out).graph.initializer}
    assert "fc.weight" in names


# ``mask=None`` before ``scale=2.0``: TorchScript makes the defaults ``scale`` a graph input and
# ``mask`` none (dynamo bakes both into the graph).
OPTIONAL = """
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = weight_norm(nn.Linear(8, 4))

    def forward(self, x, mask=None, scale: float = 2.0):
        y = self.fc(x)
        if mask is not None:
            y = y * mask
        return y * scale

def build_model():
    torch.manual_seed(0)
    return M()

def example_inputs():
    return (torch.randn(2, 8),)
"""


@pytest.mark.parametrize("verify", [[], ["--verify", "--runs", "1"]], ids=["plain", "verify"])
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_none_default_before_a_number_names_the_number_right(
    exporter: str, verify: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The graph's scalar input is ``scale`` (it was called ``mask``, and ``--verify`` refused
    it as a NoneType)."""
    path, out = tmp_path / "model.py", tmp_path / "m.onnx"
    path.write_text(textwrap.dedent(OPTIONAL))
    assert main(["export", str(path), "-o", str(out), "--exporter", exporter, *verify]) == 0
    if verify:
        assert f"deployable: ONNX matches PyTorch; wrote {out}" in capsys.readouterr().out
    inputs = [(i.name, i.type.tensor_type.elem_type) for i in onnx.load(out).graph.input]
    expected = [("x", onnx.TensorProto.FLOAT)]
    if exporter == "torchscript":
        expected.append(("scale", onnx.TensorProto.DOUBLE))
    assert inputs == expected


def test_repeated_dynamic_flags_add_up(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    argv = ["export", str(_model_py(tmp_path)), "-o", str(out), "--exporter", "torchscript"]
    assert main([*argv, "--dynamic", "x=0", "--dynamic", "x=1"]) == 0
    assert _shapes(out)["x"] == ["x_0", "x_1"]


@pytest.mark.parametrize(
    ("extra", "to", "message"),
    [
        (["--dynamic", "x=2"], "torch.float32", "--dynamic x: axis 2 is outside its 2 dimensions"),
        (["--dynamic", "scale=0"], "torch.float32", "--dynamic scale: its example input is not a"),
        (["--dynamic", "y=0"], "torch.float32", "--dynamic y: the model's inputs are mask, x"),
        (
            ["--verify"],
            "torch.bfloat16",
            "cannot verify: onnxruntime's Python API takes and gives no bfloat16 arrays",
        ),
        ([], "'meta'", "the model has parameters or buffers on the meta device"),
    ],
    ids=["axis", "not-a-tensor", "name", "bfloat16", "meta"],
)
def test_refusals_are_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    to: str,
    message: str,
) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", str(_model_py(tmp_path, to)), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.py"]


# torch.diff has no TorchScript ONNX symbolic; torch.export cannot decide a branch on data.
UNEXPORTABLE = """
import torch
from torch import nn

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.fc(x)
        if {exporter!r} == "torchscript":
            return torch.diff(y, dim=1)
        return y * 2 if x.sum() > 0 else y

def build_model():
    return M()

def example_inputs():
    return torch.ones(2, 4)
"""


@pytest.mark.parametrize(
    ("exporter", "message"),
    [
        ("torchscript", "Exporting the operator 'aten::diff' to ONNX"),
        ("dynamo", "Failed to export the model with torch.export"),
    ],
)
def test_a_failed_export_is_one_line_on_stderr_and_nothing_on_stdout(
    tmp_path: Path, exporter: str, message: str
) -> None:
    """The exporters print what they failed on (TorchScript its whole IR graph to stdout,
    from C++; torch.export the graph to stderr): the command says one line, as the program
    runs it (C's buffers flushed at exit would show what an in-process test cannot)."""
    model_py = tmp_path / "model.py"
    model_py.write_text(UNEXPORTABLE.format(exporter=exporter))
    argv = ["export", str(model_py), "-o", str(tmp_path / "m.onnx"), "--exporter", exporter]
    result = subprocess.run(
        [sys.executable, "-m", "wnpass", *argv], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"wnpass: error: {model_py}: torch.onnx.export failed: ")
    assert message in result.stderr and result.stderr.count("\n") == 1


# Reads a file only while an exporter traces it: never in the forwards wnpass runs itself.
READS_WHILE_EXPORTED = """
import os
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if torch.onnx.is_in_onnx_export():
            with open(os.path.join(HERE, "k.onnx")) as f:
                return self.fc(x) * float(f.read())
        return self.fc(x)

def build_model():
    return M()

def example_inputs():
    return (torch.randn(2, 4),)
"""


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_an_output_onto_a_file_the_forward_reads_while_exported_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], exporter: str
) -> None:
    """The exporters run the forward themselves (tracing it): a file it reads only then is
    read by the run too. ``-o`` onto it replaced it with the ONNX model (exit 0): now exit 2,
    and nothing is written."""
    (tmp_path / "model.py").write_text(READS_WHILE_EXPORTED)
    (tmp_path / "k.onnx").write_text("1.0")
    argv = ["export", str(tmp_path / "model.py"), "-o", str(tmp_path / "k.onnx")]
    assert main([*argv, "--exporter", exporter, "--verify", "--runs", "1"]) == 2
    err = capsys.readouterr().err
    assert f"would overwrite a file the model.py's code read {tmp_path / 'k.onnx'}" in err
    assert err.count("\n") == 1 and (tmp_path / "k.onnx").read_text() == "1.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.onnx", "model.py"]


# A sampler whose outputs are tiny: noise of 3e-6 passes the default float32 tolerance.
NOISY = """
import torch
from torch import nn

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        mu = 1e-6 * self.fc(x)
        return mu + 3e-6 * torch.randn_like(mu)

def build_model():
    torch.manual_seed(0)
    return M()

def example_inputs():
    return (torch.randn(2, 4),)
"""


def test_a_model_whose_two_runs_differ_cannot_be_verified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PyTorch runs twice on the same inputs: a model that draws random numbers gives other
    outputs each time, so there is nothing to verify ONNX against. Its noise passed the
    tolerance ("deployable: ONNX matches PyTorch", exit 0); now the verification fails (exit
    1), naming the output, and nothing is written under -o."""
    (tmp_path / "model.py").write_text(NOISY)
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    argv = ["export", str(tmp_path / "model.py"), "-o", str(out), "--json", str(report)]
    assert main([*argv, "--exporter", "torchscript", "--verify", "--runs", "1"]) == 1
    printed = capsys.readouterr().out
    data = json.loads(report.read_text())
    (name,) = data["not_deterministic"]
    assert f"PyTorch gave other values of output {name} on a second run on the same" in printed
    assert f"NOT DEPLOYABLE: see above; nothing written to {out}" in printed
    assert (data["matches"], data["published"], data["comparisons"]) == (False, False, {})
    assert not out.exists()


# The mean over the batch by len(x): TorchScript's trace makes len(x) the example's 2.
MEAN_BY_LEN = """
import torch
from torch import nn

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).sum(0) / len(x)

def build_model():
    torch.manual_seed(0)
    return M()

def example_inputs():
    return (torch.randn(2, 4),)
"""


def test_a_size_the_trace_fixed_fails_where_the_dynamic_axes_are_doubled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--dynamic x=0`` of a model that divides by ``len(x)``: the TorchScript trace divides
    by 2 whatever the batch. Verified at the example's size only, it passed (exit 0) and the
    tracer's warning was hidden. Now ONNX Runtime is also compared where every dynamic axis
    is doubled, where it fails (exit 1, nothing written), and the warning is shown."""
    (tmp_path / "model.py").write_text(MEAN_BY_LEN)
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    argv = ["export", str(tmp_path / "model.py"), "-o", str(out), "--json", str(report)]
    argv += ["--exporter", "torchscript", "--dynamic", "x=0", "--verify", "--runs", "1"]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "ONNX Runtime vs PyTorch, every dynamic axis doubled (x 4x4)" in printed
    assert "warning: the exporter says the result may be wrong: " in printed
    assert "TracerWarning: Using len to get tensor shape" in printed
    data = json.loads(report.read_text())
    doubled = data["dynamic"][0]
    assert all(data["comparisons"]["cpu"]) and doubled["inputs"] == {"x": [4, 4]}
    (compared,) = doubled["comparisons"]["cpu"]
    assert compared["outside"] == 3 and data["matches"] is False and not out.exists()
    (warning,) = data["warnings"]
    assert warning.startswith(f"{tmp_path / 'model.py'}:11: TracerWarning: Using len")


GIVEN_FILTER = """
import torch
from torch import nn
import torch.nn.functional as F

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.rand(4, 1, 1) + 0.5)

    def forward(self, x, kernel):
        return F.conv1d(x, self.gain * F.normalize(kernel, dim=(1, 2)), padding=1)

def build_model():
    return Net()

def example_inputs():
    return (torch.randn(2, 4, 32), torch.randn(4, 4, 3))
"""


def test_a_filter_given_at_run_time_is_named_and_deployable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The declined site of a filter the caller passes in is said for what it is; the export
    said NOT DEPLOYABLE and wrote nothing (t75)."""
    (tmp_path / "model.py").write_text(GIVEN_FILTER)
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    argv = ["export", str(tmp_path / "model.py"), "-o", str(out), "--json", str(report)]
    assert main([*argv, "--verify", "--runs", "1"]) == 0 and out.exists()
    printed = capsys.readouterr().out
    assert "declined: v 'kernel' is a graph input" in printed
    (line,) = [line for line in printed.splitlines() if line.startswith("weights computed at")]
    assert line.endswith("(from kernel)")
    assert printed.rstrip().endswith(f"deployable: ONNX matches PyTorch; wrote {out}")
    data = json.loads(report.read_text())
    (site,) = data["onnx_fold"]["sites"]
    assert data["ok"] and data["run_time_weights"] == [site["name"]]
    assert site["fed_by"] == "kernel"


BRANCH_AT = """
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(4, 6, 1))

    def forward(self, x):
        h = self.conv(x)
        return LONG if x.shape[2] > BOUND else SHORT

def build_model():
    return M()

def example_inputs():
    return (torch.randn(2, 4, 16),)
"""


def test_a_range_where_pytorch_runs_outside_is_refused_unless_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch.export holds x's length to 11 and up, and PyTorch runs at 10: refused, naming the
    flag, verified or not; accepted, written for those sizes with a warning."""
    source = BRANCH_AT.replace("LONG", "h.sum(-1)").replace("BOUND", "10")
    (tmp_path / "model.py").write_text(source.replace("SHORT", "h.flip(-1).sum(-1)"))
    out = tmp_path / "m.onnx"
    argv = ["export", str(tmp_path / "model.py"), "-o", str(out), "--dynamic", "x=2"]
    for verify in ([], ["--verify", "--runs", "1"]):
        assert main([*argv, *verify]) == 2 and not out.exists()
        assert capsys.readouterr().err.startswith(
            "wnpass: error: --accept-ranges not given: the dynamo exporter made axis 2 of x "
            "dynamic for sizes from 11 up only, and PyTorch runs at 10"
        )
    assert main([*argv, "--accept-ranges", "--verify", "--runs", "1"]) == 0 and out.exists()
    assert (
        "warning: axis 2 of x is exported for sizes "
        "from 11 up only (PyTorch runs at 10 too: accepted, the file is for these sizes)"
    ) in capsys.readouterr().out


@pytest.mark.parametrize("short", ["same", "branch", "random", "inf"])
def test_the_size_below_a_lower_bound_of_2_is_verified(
    short: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch.export holds x's length to 2 and up (as older versions do every dynamic axis),
    and PyTorch runs at 1: compared there. Where both branches compute the same values, one
    line says so and the file is written; where they differ, a line says where; a model that
    draws random numbers compares nothing, and no line says it matched or not."""
    long = "h - h.mean(-1, keepdim=True)"
    body = "h" if short == "branch" else "h * 0"
    source = BRANCH_AT.replace("LONG", long).replace("BOUND", "1").replace("SHORT", body)
    if short == "random":
        source = source.replace("h = self.conv(x)", "h = self.conv(x) + torch.rand(1)")
    if short == "inf":  # at 1, both divide by 0: every element is Inf in both
        long, body = "(h.abs() + 1) / (x.shape[2] - 1)", "(h.abs() + 1) / 0"
        source = BRANCH_AT.replace("LONG", long).replace("BOUND", "1").replace("SHORT", body)
    (tmp_path / "model.py").write_text(source)
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    argv = ["export", str(tmp_path / "model.py"), "-o", str(out), "--json", str(report)]
    argv += ["--dynamic", "x=2", "--verify", "--runs", "1"]
    assert main(argv) == (0 if short == "same" else 1)
    printed = capsys.readouterr().out
    (below,) = [probe for probe in json.loads(report.read_text())["dynamic"] if probe["bound"]]
    assert (below["sizes"], below["axes"], below["size"], below["bound"]) == (
        "axis 2 of x at 1",
        "axis 2 of x",
        1,
        "from 2 up",
    )
    matched = (
        "ONNX Runtime matches PyTorch with axis 2 of x at 1, below the sizes torch.export held "
        "it to (from 2 up)"
    )
    explained = (
        "axis 2 of x at 1: below the sizes torch.export held it to (from 2 up), PyTorch "
        "runs, and the file does not match it"
    )
    assert out.exists() is (short == "same")
    assert (matched in printed) is (short == "same")
    assert (explained in printed) is (short == "branch")
    if short == "same":
        assert printed.rstrip().endswith(
            "deployable: ONNX matches PyTorch, also with every dynamic axis doubled and doubled "
            f"plus one and axis 2 of x at 1; wrote {out}"
        )
    if short == "branch":
        assert "ONNX Runtime vs PyTorch, axis 2 of x at 1 (x 2x4x1)" in printed
    if short == "inf":
        assert "dynamic axes not verified: with axis 2 of x at 1 (x 2x4x1), on cpu" in printed


@pytest.mark.parametrize("odd", ["same", "branch"])
def test_a_condition_torch_export_took_is_verified_where_it_fails(
    odd: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A branch on the length's parity, traced at 16: torch.export keeps ``(n % 2) == 0``,
    which no range says, and the file is compared at 17. Where both branches compute the same
    values, one line says so and the file is written; where they differ, a line says where."""
    body = "h * 1.0" if odd == "same" else "h.flip(-1)"
    source = BRANCH_AT.replace("x.shape[2] > BOUND", "x.shape[2] % 2 == 0")
    (tmp_path / "model.py").write_text(source.replace("LONG", "h").replace("SHORT", body))
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    argv = ["export", str(tmp_path / "model.py"), "-o", str(out), "--json", str(report)]
    assert main([*argv, "--dynamic", "x=2", "--verify", "--runs", "1"]) == (odd == "branch")
    printed = capsys.readouterr().out
    (probe,) = [p for p in json.loads(report.read_text())["dynamic"] if p["condition"]]
    assert (probe["sizes"], probe["size"], probe["condition"]) == (
        "axis 2 of x at 17",
        17,
        "(n % 2) == 0",
    )
    where = "where torch.export's condition (n % 2) == 0 on it does not hold"
    matched = f"ONNX Runtime matches PyTorch with axis 2 of x at 17, {where}"
    explained = f"axis 2 of x at 17: {where}, PyTorch runs, and the file does not match it"
    assert (matched in printed, explained in printed, out.exists()) == (
        (True, False, True) if odd == "same" else (False, True, False)
    )


def test_a_weight_the_graph_does_not_use_is_listed_with_why_it_can_be_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unused layer's weight read as a weight whose name the export lost."""
    model_py = _model_py(tmp_path)
    source = model_py.read_text().replace(
        "self.fc = weight_norm(nn.Linear(8, 6))",
        "self.fc = weight_norm(nn.Linear(8, 6))\n        self.unused = nn.Linear(8, 4)",
    )
    model_py.write_text(source)
    assert main(["export", str(model_py), "-o", str(tmp_path / "m.onnx")]) == 0
    assert (
        "weights with no initializer of their name (the exported graph does not use them, "
        "computes them from other initializers, or holds them in another layout under a name "
        "of the exporter's, as TorchScript does an LSTM's reordered gates): unused.weight"
    ) in capsys.readouterr().out


_HALF_KEPT = """
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

def build_model():
    torch.manual_seed(0)
    up = weight_norm(nn.ConvTranspose1d(32, 16, 5, stride=3), dim=2)
    with torch.no_grad():
        up.parametrizations.weight.original0.uniform_(0.5, 2.0)
    return nn.Sequential(up).half()

def example_inputs():
    return (torch.randn(1, 32, 10, generator=torch.Generator().manual_seed(1)).half(),)
"""


def test_a_weight_the_exporter_computed_itself_is_said_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A float16 model exported with its weight norm kept: the dynamo exporter computes the
    small site itself, in float16, into an initializer of its own name, a rounding off
    PyTorch's weight; the line gave only reasons that were untrue (t146)."""
    model_py = tmp_path / "half.py"
    model_py.write_text(_HALF_KEPT)
    argv = ["export", str(model_py), "-o", str(tmp_path / "m.onnx"), "--keep-weight-norm"]
    assert main(argv) == 0
    (line,) = [s for s in capsys.readouterr().out.splitlines() if "no initializer" in s]
    assert line.endswith(
        ", or computed them itself from the weight norm kept, rounding otherwise than PyTorch "
        "(float16, bfloat16), under names of its own): 0.weight"
    )


def test_the_json_says_what_the_table_says_of_an_output_not_compared(tmp_path: Path) -> None:
    """An output that is Inf everywhere in both shows "-" and "not compared" in the table; its
    JSON row said max_abs 0.0 (read as a perfect match) and had no status. Now each row is
    written as ``wnpass check`` writes it: the status, and error sizes only where measured."""
    path = _model_py(tmp_path)
    path.write_text(
        path.read_text().replace(
            "return self.fc(x) * scale", "y = self.fc(x)\n        return y * scale, y / 0.0"
        )
    )
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    argv = ["export", str(path), "-o", str(out), "--verify", "--runs", "1", "--json", str(report)]
    assert main(argv) == 0
    measured, infinite = json.loads(report.read_text())["comparisons"]["cpu"]
    assert (measured["status"], measured["passed"], measured["exact"]) == ("passed", True, False)
    assert measured["max_abs"] is not None and measured["scale"] > 0
    assert (infinite["status"], infinite["passed"]) == ("not compared", None)
    assert [infinite[k] for k in ("max_abs", "max_rel", "scale", "max_scaled")] == [None] * 4


CHDIR = """
import os
import torch
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "elsewhere"))

def build_model():
    torch.manual_seed(0)
    return torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(4, 4))

def example_inputs():
    return (torch.randn(2, 4, generator=torch.Generator().manual_seed(1)),)
"""


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_model_py_that_moves_the_working_directory_gets_relative_paths_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exporter: str
) -> None:
    """A model.py calling ``os.chdir``: the exporter wrote its staged file relative to the
    model's directory ("No such file or directory", blamed on the model.py), and fold
    --model read the model.py again from there. Paths are resolved in wnpass's directory."""
    import torch

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "cd.py").write_text(CHDIR)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "cd.py", "-o", "rel.onnx", "--exporter", exporter]) == 0
    assert (tmp_path / "rel.onnx").is_file() and not any((tmp_path / "elsewhere").iterdir())
    monkeypatch.chdir(tmp_path)  # the model.py's code moved the process's directory too
    state = {"weight_g": torch.rand(4, 1) + 0.5, "weight_v": torch.randn(4, 4)}
    torch.save({**state, "bias": torch.zeros(4)}, tmp_path / "ck.pt")
    plain = tmp_path / "plain.py"
    plain.write_text(CHDIR.replace("torch.nn.utils.parametrizations.weight_norm(", "("))
    assert main(["fold", "ck.pt", "--model", "plain.py", "-o", "f.pt"]) == 0
    assert (tmp_path / "f.pt").is_file()


_PARTIAL_MODEL_PY = """
import functools
import torch
import torch.nn.functional as F
from torch import nn

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4, bias=False)
        self.head = nn.Linear(4, 2)
        self.project = functools.partial(F.linear, weight=self.lin.weight)

    def forward(self, x):
        return self.head(torch.tanh(self.project(x)))

def build_model():
    return M()

def example_inputs():
    return (torch.randn(3, 4),)
"""


def test_a_checkpoint_pair_of_a_weight_read_elsewhere_is_loaded_into_that_weight(
    tmp_path: Path,
) -> None:
    """``export --checkpoint``: weight norm was put back on ``lin`` from the checkpoint's pair
    while a ``functools.partial`` kept the model.py's random weight, which the forward read:
    the file was verified against that model and published with the random weight (t56,
    t59). The training forward shows the partial reading the old tensor: the pair is folded
    into it as it loads."""
    import numpy as np
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F

    (tmp_path / "model.py").write_text(_PARTIAL_MODEL_PY)
    torch.manual_seed(1)
    v, g, head = torch.randn(4, 4), torch.rand(4, 1) + 0.5, torch.nn.Linear(4, 2)
    state = {
        "lin.parametrizations.weight.original0": g, "lin.parametrizations.weight.original1": v,
        "head.weight": head.weight.detach(), "head.bias": head.bias.detach(),
    }  # fmt: skip
    torch.save(state, tmp_path / "ckpt.pt")
    out = tmp_path / "m.onnx"
    argv = ["--quiet", "export", str(tmp_path / "model.py"), "--checkpoint"]
    argv += [str(tmp_path / "ckpt.pt"), "-o", str(out), "--verify", "--runs", "1"]
    assert main(argv) == 0
    x = torch.randn(3, 4)
    weight = g * v / v.norm(dim=1, keepdim=True)
    expected = F.linear(torch.tanh(F.linear(x, weight)), head.weight, head.bias).detach()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)


_STREAMING_MODEL_PY = """
import torch
from torch import nn

class Stream(nn.Module):  # a streaming convolution: its last frames in a plain attribute
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3)
        self.proj = nn.LazyLinear(8) if {lazy} else nn.Identity()
        self.context = None

    def forward(self, x):
        context = self.context if self.context is not None else x.new_zeros(1, 4, 2)
        self.context = x[..., -2:].detach()
        return self.proj(self.conv(torch.cat([context, x], -1)))

def build_model():
    torch.manual_seed(0)
    return Stream()

def example_inputs():
    return (torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(1)),)
"""


@pytest.mark.parametrize("how", ["checkpoint", "lazy"])
def test_the_file_is_the_model_as_given_after_the_forwards_that_load_it(
    how: str, tmp_path: Path
) -> None:
    """The forwards that load a model.py ran before export copied it: that giving lazy layers
    their shapes, and that checking a checkpoint's weight-norm pairs (a train-rewrite's .wn.pt):
    the streaming state they left was in the file, 0.48 off the model as given, verified and
    published as deployable (t64). Each of wnpass's forwards gives the model's state back."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from wnpass.fx.loading import load_model_py

    model_py = tmp_path / "model.py"
    model_py.write_text(_STREAMING_MODEL_PY.replace("{lazy}", str(how == "lazy")))
    argv = ["--quiet", "export", str(model_py), "-o", str(tmp_path / "m.onnx"), "--verify"]
    if how == "checkpoint":
        assert main(["--quiet", "train-rewrite", str(model_py), "-o", str(tmp_path / "w.pt")]) == 0
        argv += ["--checkpoint", str(tmp_path / "w.pt")]
    assert main([*argv, "--runs", "1"]) == 0
    model, inputs = load_model_py(model_py)  # its lazy layer drawn as the export's was
    assert inputs is not None
    (x,) = inputs
    assert model.context is None
    with torch.no_grad():
        first = model.eval()(x).numpy()
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(got, first, rtol=1e-5, atol=1e-6)


def test_a_torchscript_model_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scripted model was exported, then its buffers were looked up by name, which
    TorchScript does not support: an internal error, exit 3 (t64)."""
    model_py = tmp_path / "model.py"
    model_py.write_text(
        "import torch\n"
        "def build_model():\n    return torch.jit.script(torch.nn.Linear(3, 2))\n"
        "def example_inputs():\n    return (torch.randn(2, 3),)\n"
    )
    argv = ["export", str(model_py), "-o", str(tmp_path / "m.onnx"), "--exporter", "torchscript"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "a TorchScript module" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


_ACTNORM_MODEL_PY = """
import torch
from torch import nn

class ActNorm(nn.Module):  # initialized from its first batch, behind a plain flag
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.loc = nn.Parameter(torch.zeros(4))
        self.initialized = False

    def forward(self, x):
        h = self.lin(x)
        if not self.initialized:
            with torch.no_grad():
                self.loc.data.copy_(-h.mean(0))
            self.initialized = True
        return h + self.loc

def build_model():
    torch.manual_seed(0)
    return ActNorm()

def example_inputs():
    return (torch.randn(6, 4, generator=torch.Generator().manual_seed(1)),)
"""


def test_parameters_a_forward_writes_after_a_checkpoint_are_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check of the checkpoint's weight-norm pairs ran the forward, which wrote the
    ActNorm's loc from the example inputs over the checkpoint's before export looked: the
    file held it and nothing said so (t68)."""
    import torch

    model_py = tmp_path / "model.py"
    model_py.write_text(_ACTNORM_MODEL_PY)
    torch.manual_seed(2)
    state = {
        "lin.parametrizations.weight.original0": torch.rand(4, 1) + 0.5,
        "lin.parametrizations.weight.original1": torch.randn(4, 4),
        "lin.bias": torch.zeros(4),
        "loc": torch.full((4,), 0.5),
    }
    torch.save(state, tmp_path / "ck.pt")
    argv = ["export", str(model_py), "--checkpoint", str(tmp_path / "ck.pt")]
    argv += ["-o", str(tmp_path / "m.onnx"), "--exporter", "torchscript"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "warning: the model's forward wrote its parameters loc (" in out
    assert "the model as given has loc back" in out


POSITIONS = """
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(50, 8), nn.Embedding(16, 8)
        self.fc = weight_norm(nn.Linear(8, 8))

    def forward(self, ids):
        return self.fc(self.tokens(ids) + self.positions(torch.arange(ids.shape[1])))

def build_model():
    return M()

def example_inputs():
    return (torch.randint(0, 50, (2, 10)),)
"""


def test_an_axis_compared_alone_is_named_in_the_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A position table of 16 and 10 tokens, and no fewer taken: PyTorch fails with every
    axis doubled, and with the token axis doubled alone or one shorter; the batch axis,
    resized alone, is compared. The last line names what was compared and the axis that
    was not (it said plain "deployable", t98), the lines above it why, and the JSON each
    probe's ``alone``."""
    guarded = POSITIONS.replace(
        "    def forward(self, ids):\n",
        "    def forward(self, ids):\n        if ids.shape[1] < 10:\n"
        "            raise ValueError('10 tokens or more')\n",
    )
    assert guarded != POSITIONS
    (tmp_path / "model.py").write_text(guarded)
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    argv = ["export", str(tmp_path / "model.py"), "-o", str(out), "--json", str(report)]
    assert main([*argv, "--dynamic", "ids=0,1", "--verify", "--runs", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().endswith(
        "deployable: ONNX matches PyTorch, also with axis 0 of ids doubled and doubled plus "
        "one (not verified at another length than the example's: axis 1 of ids); wrote "
        f"{out} and its data file {out}.data"
    )
    assert (
        "dynamic axes not verified: with axis 1 of ids doubled (ids 2x20), PyTorch's forward "
        "raised IndexError: index out of range in self"
    ) in printed
    assert "ONNX Runtime vs PyTorch, axis 0 of ids doubled plus one (ids 5x10)" in printed
    data = json.loads(report.read_text())
    assert data["compared_at_example_only"] == ["axis 1 of ids"]
    assert [(p["sizes"], p["alone"]) for p in data["dynamic"]] == [
        ("doubled", None),
        ("doubled plus one", None),
        ("doubled", "axis 0 of ids"),
        ("doubled", "axis 1 of ids"),
        ("doubled plus one", "axis 0 of ids"),
        ("doubled plus one", "axis 1 of ids"),
        ("one shorter", "axis 1 of ids"),
    ]


def test_an_old_data_file_another_process_moved_in_while_the_model_built_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """t177: export replaced o.onnx, whose data file o.onnx.data wnpass wrote; while the
    model.py built (it is the other process here), another file was moved in under that
    name, and was deleted: the plan recorded the old data file only when it saved. It does
    when -o is planned, before the model's code runs."""
    source = weight_normed(tmp_path, external=True)
    out = tmp_path / "o.onnx"
    assert main(["-q", "fold", str(source), "-o", str(out)]) == 0
    assert (tmp_path / "o.onnx.data").is_file()  # the old output's, wnpass's own
    (tmp_path / "theirs").write_bytes(b"theirs")
    model_py = _model_py(tmp_path)
    theirs, data = str(tmp_path / "theirs"), str(tmp_path / "o.onnx.data")
    swap = f"import os; os.replace({theirs!r}, {data!r})"
    model_py.write_text(
        model_py.read_text().replace("def build_model():", f"def build_model():\n    {swap}")
    )
    capsys.readouterr()
    assert main(["export", str(model_py), "-o", str(out), "--exporter", "torchscript"]) == 0
    assert (tmp_path / "o.onnx.data").read_bytes() == b"theirs"
    assert "o.onnx.data: kept (not the file there when this run planned)" in capsys.readouterr().out


_GENERATOR_INPUT_PY = """
import torch
from torch import nn


class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x, generator):
        return self.fc(x + torch.randn(x.shape, generator=generator))


def build_model():
    return Noisy()


GENERATOR = torch.Generator().manual_seed(1)


def example_inputs():
    return (torch.randn(2, 4), GENERATOR)
"""


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_generator_input_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], exporter: str
) -> None:
    """t191: the dynamo exporter's message was cut mid-word and named no generator; an unused
    one was "rejected by the ONNX checker: Field 'type' of 'value_info' is required"."""
    model_py = tmp_path / "noisy.py"
    model_py.write_text(_GENERATOR_INPUT_PY)
    argv = ["export", str(model_py), "-o", str(tmp_path / "n.onnx"), "--exporter", exporter]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"wnpass: error: {model_py}: example_inputs() generator: holds a torch.Generator, which "
        "no ONNX graph takes as an input; draw from torch's generator in the model, or give "
        "the noise as a tensor input\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noisy.py"]


def test_a_generator_default_of_forward_is_said_to_be_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """t192: the TorchScript exporter passes forward's defaults on as inputs; a Generator
    default was blamed on example_inputs(), which held none."""
    model_py = tmp_path / "default.py"
    text = _GENERATOR_INPUT_PY.replace(
        "def forward(self, x, generator):", "def forward(self, x, generator=GENERATOR):"
    ).replace("from torch import nn\n", "from torch import nn\n\nGENERATOR = torch.Generator()\n")
    model_py.write_text(
        text.replace("return (torch.randn(2, 4), GENERATOR)", "return (torch.randn(2, 4),)")
    )
    out = tmp_path / "d.onnx"
    assert main(["export", str(model_py), "-o", str(out), "--exporter", "torchscript"]) == 2
    assert capsys.readouterr().err == (
        f"wnpass: error: {model_py}: forward's default of generator is a torch.Generator, which "
        "the TorchScript exporter passes on as an input and no ONNX graph takes: give it a "
        "default of None (drawing from torch's generator then)\n"
    )


def test_errors_about_a_large_factorys_inputs_name_their_function(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """t192: with --factory build_model_large the inputs come from example_inputs_large(),
    and the error said example_inputs()."""
    model_py = tmp_path / "noisy.py"
    model_py.write_text(
        _GENERATOR_INPUT_PY.replace("def build_model():", "def build_model_large():").replace(
            "def example_inputs():", "def example_inputs_large():"
        )
    )
    argv = [
        "export",
        str(model_py),
        "--factory",
        "build_model_large",
        "-o",
        str(tmp_path / "n.onnx"),
    ]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(
        f"wnpass: error: {model_py}: example_inputs_large() generator: holds a torch.Generator"
    )
    # t193: not written as a def (a lambda, a partial): the loader's choice, not the text's
    model_py.write_text(
        _GENERATOR_INPUT_PY.replace("def build_model():", "def build_model_large():")
        + "\nexample_inputs_large = lambda: example_inputs()\n"
    )
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(
        f"wnpass: error: {model_py}: example_inputs_large() generator: holds a torch.Generator"
    )


_NAN_MODEL_PY = """
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = weight_norm(nn.Linear(4, 4))

    def forward(self, x):
        return self.fc(x), torch.sqrt(-1.0 - x.abs())

def build_model():
    return M()

def example_inputs():
    return (torch.randn(3, 4),)
"""


def test_an_output_never_compared_is_named_by_a_verified_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """t338: an output NaN in both (no element compared) was named in ``check``'s verdict and
    not in ``export --verify``'s, ``-q`` printing "deployable" alone; the JSON lists them."""
    (tmp_path / "model.py").write_text(_NAN_MODEL_PY)
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    argv = ["--quiet", "export", str(tmp_path / "model.py"), "-o", str(out), "--verify"]
    assert main([*argv, "--runs", "1", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    name = onnx.load(out).graph.output[1].name
    assert f"  not compared: {name} (no element could be)" in printed
    assert json.loads(report.read_text())["uncompared"] == [name]
