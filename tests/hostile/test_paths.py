"""Hostile paths: outputs and reports aimed at what a command reads, at each other, or at
things that are not regular files. Every command plans its paths first and refuses such a plan
with one line and exit 2, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.builders import (
    Case,
    assert_refused,
    checkpoint,
    device,
    external_ok,
    fifo,
    folder,
    good,
    hardlink,
    model_py,
    npz,
    symlink,
)

READS = "which this run reads; refused"


def _x(t: Path) -> str:
    return str(npz(t, x=__import__("numpy").zeros((2, 4), "float32")))


# the model.py is made first (an argument before the others): links may point at it
def _train_rewrite(model: Path, *extra: str) -> list[str]:
    return ["train-rewrite", str(model), *extra]


def _export(model: Path, *extra: str) -> list[str]:
    return ["export", str(model), *extra]


def _batch_pt(t: Path) -> str:
    """A batch for --data as a torch.save file."""
    import torch

    torch.save((torch.zeros(2, 4),), t / "batch.pt")
    return str(t / "batch.pt")


def _external(t: Path) -> str:
    return str(external_ok(t))


CASES: dict[str, Case] = {
    # fold: -o
    "fold -o the input": Case(
        lambda t: ["fold", str(good(t)), "-o", str(t / "model.onnx")],
        "would overwrite the input model",
    ),
    "fold -o a symlink to the input": Case(
        lambda t: ["fold", str(good(t)), "-o", str(symlink(t, t / "model.onnx", "o.onnx"))],
        "is a symbolic link; refused",
    ),
    "fold -o a hard link to the input": Case(
        lambda t: ["fold", str(good(t)), "-o", str(hardlink(t, t / "model.onnx", "o.onnx"))],
        READS,
    ),
    "fold -o the input's external data": Case(
        lambda t: ["fold", str(external_ok(t, "w.onnx")), "-o", str(t / "w.onnx")],
        "would overwrite the input's external data",
    ),
    "fold -o a hard link to the external data": Case(
        lambda t: ["fold", _external(t), "-o", str(hardlink(t, t / "weights.bin", "w.onnx"))],
        "would overwrite the input's external data",
    ),
    "fold -o a symlink to the external data": Case(
        lambda t: ["fold", _external(t), "-o", str(symlink(t, t / "weights.bin", "w.onnx"))],
        "is a symbolic link",
    ),
    "fold -o a symlink to a file outside": Case(
        lambda t: [
            "fold",
            str(good(t)),
            "-o",
            str(symlink(t, t.parent / "outside" / "secret.bin", "o.onnx")),
        ],
        "is a symbolic link",
    ),
    "fold -o a dangling symlink": Case(
        lambda t: ["fold", str(good(t)), "-o", str(symlink(t, t / "nowhere.onnx", "o.onnx"))],
        "is a symbolic link",
    ),
    "fold -o a FIFO": Case(
        lambda t: ["fold", str(good(t)), "-o", str(fifo(t, "o.onnx"))], "is a FIFO"
    ),
    "fold -o a device node": Case(
        lambda t: ["fold", str(good(t)), "-o", str(device(t, "o.onnx"))],
        "is a character device",
    ),
    "fold -o a directory": Case(
        lambda t: ["fold", str(good(t)), "-o", str(folder(t, "d.onnx"))], "is a directory"
    ),
    # a name that says another kind of file is refused first (an ONNX model's ends with .onnx)
    "fold -o a folder without the suffix": Case(
        lambda t: ["fold", str(good(t)), "-o", str(t)], "an ONNX output's name must end with"
    ),
    "fold -o into a missing folder": Case(
        lambda t: ["fold", str(good(t)), "-o", str(t / "nowhere" / "o.onnx")],
        "no such directory",
    ),
    "fold -o under a file": Case(  # it said "no such directory" of a file (t101)
        lambda t: ["fold", str(good(t)), "-o", str(good(t) / "o.onnx")],
        "is not a directory",
    ),
    "fold -o /dev/null": Case(
        lambda t: ["fold", str(good(t)), "-o", "/dev/null"], "an ONNX output's name must end with"
    ),
    "fold -o a device": Case(
        lambda t: ["fold", str(good(t)), "-o", str(device(t, "null.onnx"))],
        "is a character device",
    ),
    "fold --in-place on a symlink": Case(
        lambda t: ["fold", str(symlink(t, good(t), "link.onnx")), "--in-place"],
        "is a symbolic link",
    ),
    "fold --in-place and -o": Case(
        lambda t: ["fold", str(good(t)), "--in-place", "-o", str(t / "o.onnx")],
        "--in-place replaces the input",
    ),
    # fold: --json
    "fold --json the input": Case(
        lambda t: ["fold", str(good(t)), "--json", str(t / "model.onnx")], READS
    ),
    "fold --json the input's external data": Case(
        lambda t: ["fold", _external(t), "--json", str(t / "weights.bin")], READS
    ),
    "fold --json the output": Case(
        lambda t: ["fold", str(good(t)), "-o", str(t / "o.onnx"), "--json", str(t / "o.onnx")],
        "is also another output of this run",
    ),
    "fold --json the default output": Case(
        lambda t: ["fold", str(good(t)), "--json", str(t / "model.folded.onnx")],
        "is also another output of this run",
    ),
    "fold --json the output's data file": Case(
        lambda t: [
            "fold",
            _external(t),
            "-o",
            str(t / "o.onnx"),
            "--json",
            str(t / "o.onnx.data"),
        ],
        "is also another output of this run",
    ),
    "fold --json a hard link to the input": Case(
        lambda t: ["fold", str(good(t)), "--json", str(hardlink(t, t / "model.onnx", "r.json"))],
        READS,
    ),
    "fold --json a symlink": Case(
        lambda t: ["fold", str(good(t)), "--json", str(symlink(t, t / "model.onnx", "r.json"))],
        "is a symbolic link",
    ),
    "fold --json a FIFO": Case(
        lambda t: ["fold", str(good(t)), "--json", str(fifo(t, "r.json"))], "is a FIFO"
    ),
    "fold --json a device": Case(
        lambda t: ["fold", str(good(t)), "--json", str(device(t, "r.json"))],
        "is a character device",
    ),
    "fold --json a directory": Case(
        lambda t: ["fold", str(good(t)), "--json", str(t)], "is a directory"
    ),
    "fold --json into a missing folder": Case(
        lambda t: ["fold", str(good(t)), "--json", str(t / "nowhere" / "r.json")],
        "no such directory",
    ),
    "fold --verify -o the --inputs file": Case(
        lambda t: [
            "fold",
            str(good(t)),
            "--verify",
            "--inputs",
            _x(t),
            "-o",
            str(t / "inputs.npz"),
        ],
        "inputs.npz: an ONNX output's name must end with .onnx",
    ),
    "fold --verify --json the --inputs file": Case(
        lambda t: ["fold", str(good(t)), "--verify", "--inputs", _x(t), "--json", _x(t)],
        "would overwrite the inputs file",
    ),
    # inspect
    "inspect --json the model": Case(
        lambda t: ["inspect", str(good(t)), "--json", str(t / "model.onnx")], READS
    ),
    "inspect --json the external data": Case(  # named so that its name does not refuse it
        lambda t: ["inspect", str(external_ok(t, "w.json")), "--json", str(t / "w.json")], READS
    ),
    "inspect --strict --json the external data": Case(  # exit 1 after the report (t271)
        lambda t: [
            "inspect",
            str(external_ok(t, "w.json")),
            "--strict",
            "--json",
            str(t / "w.json"),
        ],
        READS,
    ),
    "inspect of a folder --json the external data": Case(
        lambda t: ["inspect", str(external_ok(t, "w.json").parent), "--json", str(t / "w.json")],
        READS,
    ),
    "inspect --json a name of another kind of file": Case(
        lambda t: ["inspect", str(good(t)), "--json", str(t / "trained.pt")],
        "trained.pt: a JSON report's name must end with .json",
    ),
    "inspect --json the model.py": Case(
        lambda t: ["inspect", str(model_py(t)), "--json", str(t / "model.py")],
        "would overwrite the model file",
    ),
    "inspect --json a FIFO": Case(
        lambda t: ["inspect", str(good(t)), "--json", str(fifo(t, "r.json"))], "is a FIFO"
    ),
    "inspect --json a symlink to a file outside": Case(
        lambda t: [
            "inspect",
            str(good(t)),
            "--json",
            str(symlink(t, t.parent / "outside" / "secret.bin", "r.json")),
        ],
        "is a symbolic link",
    ),
    "fold a FIFO": Case(
        lambda t: ["fold", str(fifo(t, "in.onnx")), "-o", str(t / "o.onnx")],
        "is a FIFO, not an ONNX file",
    ),
    "inspect a character device": Case(
        lambda t: ["inspect", "/dev/null"], "is a character device, not an ONNX file"
    ),
    "inspect of several --json the last model": Case(
        lambda t: ["inspect", str(good(t)), str(good(t, "b.onnx")), "--json", str(t / "b.onnx")],
        READS,
    ),
    "inspect of several --json a hard link to one of them": Case(
        lambda t: [
            "inspect",
            str(good(t)),
            str(good(t, "b.onnx")),
            "--json",
            str(hardlink(t, t / "b.onnx", "r.json")),
        ],
        READS,
    ),
    "inspect of several, a FIFO among them": Case(
        lambda t: ["inspect", str(good(t)), str(fifo(t, "b.onnx")), "--strict"],
        "is a FIFO",
    ),
    # check
    "check --json the reference": Case(
        lambda t: ["check", str(good(t)), str(good(t, "c.onnx")), "--json", str(t / "model.onnx")],
        READS,
    ),
    "check --json the candidate": Case(
        lambda t: ["check", str(good(t)), str(good(t, "c.onnx")), "--json", str(t / "c.onnx")],
        READS,
    ),
    "check --json the candidate's data": Case(
        lambda t: ["check", str(good(t, "r.onnx")), _external(t), "--json", str(t / "weights.bin")],
        READS,
    ),
    "check --json the --inputs file": Case(
        lambda t: ["check", str(good(t)), str(good(t)), "--inputs", _x(t), "--json", _x(t)],
        "would overwrite the inputs file",
    ),
    "check --json a device": Case(
        lambda t: ["check", str(good(t)), str(good(t)), "--json", str(device(t, "r.json"))],
        "is a character device",
    ),
    # train-rewrite
    "train-rewrite -o the model.py": Case(
        lambda t: _train_rewrite(model_py(t), "-o", str(t / "model.py")),
        "model.py: a state dict written with torch.save: its name must end with .pt",
    ),
    "train-rewrite -o the checkpoint": Case(
        lambda t: _train_rewrite(
            model_py(t), "--checkpoint", str(checkpoint(t)), "-o", str(t / "ckpt.pt")
        ),
        "would overwrite the checkpoint",
    ),
    "train-rewrite --json the checkpoint": Case(
        lambda t: _train_rewrite(
            t, "--checkpoint", str(checkpoint(t)), "--json", str(t / "ckpt.pt")
        ),
        "would overwrite the checkpoint",
    ),
    "train-rewrite -o the --data batch": Case(
        lambda t: _train_rewrite(
            model_py(t), "--init", "data", "--data", _batch_pt(t), "-o", str(t / "batch.pt")
        ),
        "would overwrite the batch",
    ),
    "train-rewrite -o and --json the same": Case(
        lambda t: _train_rewrite(model_py(t), "-o", str(t / "o.pt"), "--json", str(t / "o.pt")),
        "is also another output of this run",
    ),
    "train-rewrite --json into a missing folder": Case(
        lambda t: _train_rewrite(
            t, "-o", str(t / "out.pt"), "--json", str(t / "missing" / "r.json")
        ),
        "no such directory",
    ),
    "train-rewrite default output is a FIFO": Case(
        lambda t: _train_rewrite(model_py(t), "--json", str(fifo(t, "model.wn.pt"))),
        "is a FIFO",
    ),
    "train-rewrite -o a symlink": Case(
        lambda t: _train_rewrite(
            t, "-o", str(symlink(t, t.parent / "outside" / "secret.bin", "o.pt"))
        ),
        "is a symbolic link",
    ),
    "train-rewrite -o a hard link to the model.py": Case(
        lambda t: _train_rewrite(model_py(t), "-o", str(hardlink(t, t / "model.py", "o.pt"))),
        "would overwrite the model file",
    ),
    # export
    "export -o the checkpoint": Case(
        lambda t: _export(
            model_py(t), "--checkpoint", str(checkpoint(t)), "-o", str(t / "ckpt.pt")
        ),
        "ckpt.pt: an ONNX output's name must end with .onnx",
    ),
    "export --json the model.py": Case(
        lambda t: _export(model_py(t), "-o", str(t / "m.onnx"), "--json", str(t / "model.py")),
        "would overwrite the model file",
    ),
    "export --json the output": Case(
        lambda t: _export(model_py(t), "-o", str(t / "m.onnx"), "--json", str(t / "m.onnx")),
        "is also another output of this run",
    ),
    "export -o a FIFO": Case(
        lambda t: _export(model_py(t), "-o", str(fifo(t, "m.onnx"))), "is a FIFO"
    ),
    "export -o a symlink": Case(
        lambda t: _export(model_py(t), "-o", str(symlink(t, t / "model.py", "m.onnx"))),
        "is a symbolic link",
    ),
    "export -o a hard link to the model.py": Case(
        lambda t: _export(model_py(t), "-o", str(hardlink(t, t / "model.py", "m.onnx"))),
        "would overwrite the model file",
    ),
    "export -o into a missing folder": Case(
        lambda t: _export(model_py(t), "-o", str(t / "nowhere" / "m.onnx")),
        "no such directory",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_hostile_path_is_refused_before_anything_is_written(
    case: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = CASES[case]
    argv = spec.argv(work)
    assert_refused(argv, work.parent, capsys, spec.code, spec.expected)
