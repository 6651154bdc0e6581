"""No data loss: a fold killed mid-write leaves the input intact and no partial output; two
folds of one input at once both finish with correct, identical files."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.helpers import onnx_model, paused_fold, rand, sites_left, square_gemm_site

TEXT = square_gemm_site(2048)


@pytest.fixture(scope="module")
def large_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 MB weight-normed model: large enough that writing it takes a moment."""
    path = tmp_path_factory.mktemp("large") / "model.onnx"
    big = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    model = onnx_model(TEXT, v=big, g=rand(2048, 1))
    # pad with a second, unused-by-the-fold plain initializer to reach ~64 MB
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.tile(big, (3, 1)), "spare"))
    onnx.save(model, path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fold_process(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "wnpass", "fold", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("in_place", "external", "stop_at"),
    [(False, False, 1), (True, False, 1), (True, True, 1), (True, True, 2)],
    ids=["to-output", "in-place", "in-place-external-data", "in-place-data-published"],
)
def test_sigkill_mid_write_loses_nothing(
    large_model: Path, tmp_path: Path, in_place: bool, external: bool, stop_at: int
) -> None:
    """Killed with everything staged, before (or between) the renames that publish it: the
    input is exactly as it was, still a complete model, and no partial output is there."""
    source = tmp_path / "model.onnx"
    if external:
        onnx.save(onnx.load(large_model), source, save_as_external_data=True, location="w.bin")
    else:
        source.write_bytes(large_model.read_bytes())
    inputs = sorted(tmp_path.iterdir())
    before = [_digest(p) for p in inputs]
    out = tmp_path / "out.onnx"
    argv = [str(source), "--in-place"] if in_place else [str(source), "-o", str(out)]
    marker = tmp_path.parent / f"{tmp_path.name}.marker"
    proc = paused_fold(marker, stop_at, *argv)
    staged = [p for p in tmp_path.glob(".wnpass-*/*") if p.is_file() and p.stat().st_size > 0]
    assert staged, "nothing was staged"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert [_digest(p) for p in inputs] == before, "the input changed"
    assert not out.exists(), "a partial output is under the output name"
    onnx.checker.check_model(source)  # the input is still a complete model with its data
    assert sites_left(source) == 1


def test_two_folds_of_one_input_at_once(large_model: Path, tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(large_model.read_bytes())
    outputs = [tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "a.onnx"]
    procs = [_fold_process(str(source), "-o", str(out)) for out in outputs]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert _digest(tmp_path / "a.onnx") == _digest(tmp_path / "b.onnx")
    assert sites_left(tmp_path / "a.onnx") == 0
    onnx.checker.check_model(tmp_path / "a.onnx")
    assert not list(tmp_path.glob(".wnpass-*")), "temporary folders left behind"
    assert os.path.getsize(tmp_path / "a.onnx") < os.path.getsize(source)


def test_sigterm_mid_write_publishes_nothing_and_cleans_up(
    large_model: Path, tmp_path: Path
) -> None:
    """SIGTERM is turned into an exception: staging is removed on the way out, exit 143."""
    source = tmp_path / "model.onnx"
    source.write_bytes(large_model.read_bytes())
    before = _digest(source)
    out = tmp_path / "out.onnx"
    proc = paused_fold(tmp_path.parent / f"{tmp_path.name}.marker", 1, str(source), "-o", str(out))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.decode().count("\n") == 1 and "terminated" in err.decode()
    assert not out.exists() and not list(tmp_path.glob(".wnpass-*"))
    assert _digest(source) == before


def _limit_file_size() -> None:
    """In the child: files may not grow past 1 MiB, as on a full disk (EFBIG, not a signal)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external-data"])
@pytest.mark.parametrize("existing", [False, True], ids=["new-output", "replacing-an-output"])
def test_a_full_disk_is_one_line_and_loses_nothing(
    large_model: Path, tmp_path: Path, existing: bool, external: bool
) -> None:
    """The OS's reason; where the output's data file is written by numpy, which says only how
    many bytes it wrote, what can cut a write short."""
    source = tmp_path / "model.onnx"
    if external:
        onnx.save(onnx.load(large_model), source, save_as_external_data=True, location="w.bin")
    else:
        source.write_bytes(large_model.read_bytes())
    out = tmp_path / "out.onnx"
    if existing:
        out.write_bytes(b"the old output")
    before = {p.name: _digest(p) for p in tmp_path.iterdir()}
    result = subprocess.run(
        [sys.executable, "-m", "wnpass", "fold", str(source), "-o", str(out)],
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    reason = "disk is full, or a quota or the file size limit" if external else "File too large"
    assert "cannot write (" in result.stderr and reason in result.stderr, result.stderr
    assert {p.name: _digest(p) for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("verify", [False, True])
def test_json_onto_a_data_file_of_the_output_replaced_is_refused(
    tmp_path: Path, verify: bool
) -> None:
    """``fold m.onnx -o o.onnx --verify --json o.onnx.data``: the check failed, "nothing
    written", and the report was written over o.onnx's data file, leaving the old o.onnx
    without its weights. A data file of the output a run replaces stays whole until the new
    output is in place: no other output of the run may be written onto it."""
    from wnpass.cli import main

    model = tmp_path / "m.onnx"
    source = onnx_model(square_gemm_site(64), v=rand(64, 64), g=rand(64, 1))
    onnx.save(source, model, save_as_external_data=True, size_threshold=0)
    out = tmp_path / "o.onnx"
    assert main(["fold", str(model), "-o", str(out)]) == 0
    data = tmp_path / "o.onnx.data"
    before = {path: _digest(path) for path in (out, data)}
    argv = ["fold", str(model), "-o", str(out), "--json", str(data)]
    argv += ["--verify", "--rtol", "0", "--atol", "0"] if verify else []
    assert main(argv) == 2
    assert {path: _digest(path) for path in (out, data)} == before
    onnx.checker.check_model(onnx.load(out), full_check=True)
