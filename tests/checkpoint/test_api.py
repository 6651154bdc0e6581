"""The checkpoint API's own rules (the commands' behaviour is in test_fold/test_convert)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("name", "imports_torch"),
    [("m.pt", True), ("m.bin.index.json", True), ("m.safetensors", False), ("m.txt", False)],
)
def test_a_reports_clock_starts_once_the_reader_is_imported(name: str, imports_torch: bool) -> None:
    """A torch file's report times the work, not importing torch (about 1.5 s, paid by any
    file), as an ONNX fold's leaves out importing onnx; a safetensors file needs no torch."""
    code = (
        "import sys; from wnpass.checkpoint import api; "
        f"api._clock({name!r}); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, str(imports_torch))
