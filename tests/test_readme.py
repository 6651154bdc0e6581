"""The README's console examples are real: each ``$`` command is run, in order, in one
folder, and must print what the README shows and exit as it says (``exit N`` after the
output; 0 where none is shown).

Times and measured numbers (latencies, sizes, error sizes: anything with a decimal point or
an exponent) are masked, and runs of spaces and of dashes are read as one, so a table whose
columns widen with a number still matches; every word, name, count, shape and status is
compared as written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# What a block's first command needs that no earlier block made, as the README says it was
# made (in words around the block).
SETUP = {
    "wnpass --quiet inspect hifigan.pt": [
        f'{sys.executable} -c "import runpy, torch; '
        "m = runpy.run_path('models/hifigan.py'); "
        "torch.save(m['build_model']().state_dict(), 'hifigan.pt')\""
    ],
}

# A command as run where a pipe would make it print otherwise than a terminal does.
AS_ON_A_TERMINAL = {"ls exported": "ls -C exported"}

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+(?:e[-+]?\d+)?|e[-+]?\d+)(?![\w.])")


def _steps() -> list[tuple[str, list[str], int]]:
    """Each command of the README's console blocks, with the lines it prints and its exit
    code."""
    steps: list[tuple[str, list[str], int]] = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], [], 0))
            elif (code := re.fullmatch(r"exit (\d+)", line)) is not None:
                command, output, _ = steps[-1]
                steps[-1] = (command, output, int(code[1]))
            else:
                steps[-1][1].append(line)
    return steps


def _masked(lines: list[str]) -> list[str]:
    """The lines with numbers masked, spaces and dashes collapsed (see the docstring)."""
    masked = []
    for line in lines:
        line = _NUMBER.sub("<n>", line)
        line = re.sub(r"-{2,}", "-", re.sub(r" {2,}", " ", line)).rstrip()
        masked.append(line)
    return masked


def _cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def test_the_steps_are_read() -> None:
    """The parser finds the examples: an edit to the README's format cannot empty this test."""
    commands = [command for command, _, _ in _steps()]
    assert commands[0] == "wnpass export models/hifigan.py -o hifigan.onnx --verify"
    assert len(commands) >= 10 and any(command.startswith("wnpass check") for command in commands)
    assert _masked(["cpu  latency 10.112 ms, 2.6e-07 x1x4096  0/40  ----  v1.2"]) == [
        "cpu latency <n> ms, <n> x1x4096 0/40 - v1.2"
    ]


@pytest.mark.skipif(
    "_cuda()", reason="ONNX Runtime's CUDA provider is here: the examples show 'not available'"
)
def test_every_console_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    for name in ("models", "scripts"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    }
    for key in ("NO_COLOR", "TERM", "WNPASS_COLOR"):
        env.pop(key, None)
    for command, expected, code in _steps():
        for setup in SETUP.get(command, []):
            subprocess.run(setup, shell=True, cwd=tmp_path, env=env, check=True)
        done = subprocess.run(  # both streams, in the order a terminal shows them
            AS_ON_A_TERMINAL.get(command, command),
            shell=True,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        said = f"$ {command}\n{done.stdout}"
        assert done.returncode == code, said
        assert _masked(done.stdout.splitlines()) == _masked(expected), said
