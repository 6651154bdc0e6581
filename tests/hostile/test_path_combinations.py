"""Every combination of where ``-o`` and ``--json`` point: a fresh name, a file the command
reads (the model, its external data, model.py, the checkpoint), a symbolic link or a hard link
to one, a FIFO, a device node, a directory, or the other target. For every combination the
command either succeeds and writes only its own outputs, or refuses and changes nothing."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.builders import (
    checkpoint,
    device,
    external_ok,
    fifo,
    folder,
    hardlink,
    model_py,
    snapshot,
    symlink,
)
from wnpass.cli import main

# kind -> builder of the path in a folder where the command's inputs already exist, from a
# fresh name, a file read and the name both targets share
Kind = Callable[[Path, str, str, str], Path]
READ_BY = {"fold": ["model.onnx", "weights.bin"], "train-rewrite": ["model.py", "ckpt.pt"]}
# names the command's output may have (an ONNX model's ends with .onnx, a state dict's .pt)
OUTPUT = {"fold": "out.onnx", "train-rewrite": "out.pt"}
SHARED = {"fold": "shared.onnx", "train-rewrite": "shared.pt"}

KINDS: dict[str, Kind] = {
    "fresh": lambda t, fresh, read, shared: t / fresh,
    "the same fresh name": lambda t, fresh, read, shared: t / shared,
    "a file read": lambda t, fresh, read, shared: t / read,
    "a symlink to a file read": lambda t, fresh, read, shared: symlink(t, t / read, f"s-{fresh}"),
    "a hard link to a file read": lambda t, fresh, read, shared: hardlink(
        t, t / read, f"h-{fresh}"
    ),
    "a FIFO": lambda t, fresh, read, shared: fifo(t, f"f-{fresh}"),
    "a device node": lambda t, fresh, read, shared: device(t, f"d-{fresh}"),
    "a directory": lambda t, fresh, read, shared: folder(t, f"dir-{fresh}"),
}
# the only kinds a target may be; "the same fresh name" for both targets collides
ALLOWED = {"fresh", "the same fresh name"}


def _inputs(command: str, t: Path) -> list[str]:
    if command == "fold":
        return ["fold", str(external_ok(t))]
    return ["train-rewrite", str(model_py(t)), "--checkpoint", str(checkpoint(t))]


@pytest.mark.parametrize("command", ["fold", "train-rewrite"])
@pytest.mark.parametrize(
    ("output_kind", "json_kind"), list(itertools.product(KINDS, KINDS)), ids=lambda k: k
)
def test_every_path_combination_succeeds_cleanly_or_changes_nothing(
    command: str,
    output_kind: str,
    json_kind: str,
    work: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = _inputs(command, work)
    reads = READ_BY[command]
    output = KINDS[output_kind](work, OUTPUT[command], reads[0], SHARED[command])
    report = KINDS[json_kind](work, "r.json", reads[-1], SHARED[command])
    argv += ["-o", str(output), "--json", str(report)]
    before = snapshot(work.parent)
    code = main(argv)
    capsys.readouterr()
    after = snapshot(work.parent)
    # a JSON report's name ends with .json: one given the output's shared name is refused
    must_succeed = {output_kind, json_kind} <= ALLOWED and output != report
    must_succeed = must_succeed and report.suffix == ".json"
    if code != 0:
        assert code == 2 and not must_succeed, f"exit {code}"
        assert after == before, "a refused command changed files"
        return
    assert must_succeed, "a command with a forbidden target did not refuse"
    written = {str(p.relative_to(work.parent)) for p in (output, report)}
    stem = str(output.relative_to(work.parent))
    data_files = {k for k in after if k.startswith(stem) and k.endswith(".data")}
    assert set(after) - set(before) <= written | data_files
    changed = {k for k in before if after.get(k) != before[k]}
    assert changed <= written, f"files it did not own changed: {changed}"
