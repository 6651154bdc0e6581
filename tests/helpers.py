"""Shared test helpers: tiny ONNX models from text, ONNX Runtime runs, site counts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from wnpass import inspect_onnx

# Folding computes w = g*v/||v|| in float64 and rounds once; ONNX Runtime rounds after every op
# in float32. w then differs by a few float32 ulps (~1e-7 relative), which a consumer that sums
# K products can grow to ~sqrt(K)*1e-7: 1e-5 relative (plus 1e-6 absolute for outputs near zero)
# leaves an order of magnitude of room without hiding a wrong axis (errors of order 1).
# The absolute part is scaled by the output's largest magnitude: where a sum cancels to near
# zero, its rounding error is proportional to the terms it summed, not to the result.
FP32_RTOL, FP32_ATOL = 1e-5, 1e-6
# float16 weights carry 11 bits: one rounding step is 2**-11 ~ 4.9e-4 relative.
FP16_RTOL, FP16_ATOL = 2e-3, 1e-3

RNG = np.random.default_rng(0)


def rand(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


def zero_unit(rows: int, cols: int) -> dict[str, np.ndarray]:
    """``v`` (rows x cols) whose unit 1 is all zero, and a gain ``g``: a site a fold declines."""
    v = rand(rows, cols)
    v[1] = 0
    return {"v": v, "g": rand(rows, 1)}


def inf_g(rows: int, cols: int) -> dict[str, np.ndarray]:
    """``v`` (rows x cols) and a gain ``g`` holding Inf: a site a fold declines."""
    g = rand(rows, 1)
    g[0] = np.inf
    return {"v": rand(rows, cols), "g": g}


def onnx_model(
    text: str, names: dict[str, str] | None = None, check: bool = True, **initializers: np.ndarray
) -> onnx.ModelProto:
    """A model from ONNX text, with the given arrays as initializers; checked unless told not.

    ``names`` renames values after parsing, for names ONNX text cannot spell (``conv.weight_v``).
    """
    model = onnx.parser.parse_model(textwrap.dedent(text))
    names = names or {}
    for name, array in initializers.items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(array, names.get(name, name)))
    for node in model.graph.node:
        renamed = [names.get(i, i) for i in node.input]
        del node.input[:]
        node.input.extend(renamed)
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def square_gemm_site(width: int) -> str:
    """ONNX text of one weight-norm site (``v``, ``g``: ``width`` x ``width`` and ``width`` x 1)
    feeding a Gemm: a model whose fold rewrites one weight of the size asked for."""
    return f"""
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[1, {width}] x) => (float[1, {width}] y) {{
        n = ReduceL2 <axes = [1]> (v)
        d = Div(v, n)
        w = Mul(d, g)
        y = Gemm <transB = 1> (x, w)
    }}
"""


def run(model: onnx.ModelProto | ir.Model | str | Path, feeds: dict[str, np.ndarray]) -> list:
    import onnxruntime as ort

    if isinstance(model, ir.Model):
        model = ir.serde.serialize_model(model)
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def sites_left(model: onnx.ModelProto | ir.Model | str | Path) -> int:
    return len(inspect_onnx(model).sites)


def op_types(model: ir.Model | onnx.ModelProto) -> list[str]:
    if isinstance(model, onnx.ModelProto):
        return [n.op_type for n in model.graph.node]
    return [n.op_type for n in model.graph]


def assert_close(actual: list, expected: list, rtol: float = FP32_RTOL, atol: float = FP32_ATOL):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
        scale = max(1.0, float(np.abs(e.astype(np.float64)).max(initial=0.0)))
        np.testing.assert_allclose(
            a.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol * scale
        )


# The CLI, made to stop just before its k-th rename of a staged file onto a target (the moment
# a non-atomic writer would leave a half-published result), after writing a marker file, for
# ``pause`` seconds. A signal sent then lands at that point every time, however fast or
# loaded the machine is.
_PAUSED_CLI = """
import sys, time
from pathlib import Path
from wnpass import plan
from wnpass.cli import run
marker, stop_at, pause = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
publish, calls = plan.IOPlan.publish, []
def paused(self, staged, target):
    calls.append(target)
    if len(calls) == stop_at:
        marker.write_text(str(target))
        time.sleep(pause)
    publish(self, staged, target)
plan.IOPlan.publish = paused
sys.argv = ["wnpass", *sys.argv[4:]]
run()
"""


def paused_fold(
    marker: Path, stop_at: int, *argv: str, pause: float = 120
) -> subprocess.Popen[bytes]:
    """``wnpass fold *argv`` stopped before its ``stop_at``-th rename for ``pause`` seconds;
    returns once it is there."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_CLI, str(marker), str(stop_at), str(pause), "fold", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            assert proc.stderr is not None
            raise AssertionError(f"ended before rename {stop_at}: {proc.stderr.read()!r}")
        assert time.monotonic() < deadline, "the fold did not reach the rename"
        time.sleep(0.005)
    return proc


def cli_with_file_limit(limit: int, *argv: str) -> subprocess.CompletedProcess[str]:
    """``wnpass *argv`` in a process whose files may not grow past ``limit`` bytes, as on a
    full disk (a write fails with EFBIG; SIGXFSZ is ignored so it is not a signal)."""
    code = (
        "import resource, signal, sys; from wnpass.cli import main; "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        f"sys.exit(main({list(argv)!r}))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


# A Gemm of a weight-normed Linear as torch names it (``lin.weight_v``, ``lin.weight_g``).
WEIGHT_NORMED_TEXT = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[2, 64] x) => (float[2, 32] y) {
        n = ReduceL2 <axes = [1]> (lin.weight_v)
        d = Div(lin.weight_v, n)
        w = Mul(d, lin.weight_g)
        y = Gemm <transB = 1> (x, w)
    }
"""


def weight_normed(tmp_path: Path, external: bool = False) -> Path:
    """``model.onnx`` in ``tmp_path``: one weight-norm site (external data on request)."""
    text = WEIGHT_NORMED_TEXT.replace("lin.weight_v", "v").replace("lin.weight_g", "g")
    model = onnx_model(
        text, names={"v": "lin.weight_v", "g": "lin.weight_g"}, v=rand(32, 64), g=rand(32, 1)
    )
    path = tmp_path / "model.onnx"
    onnx.save(model, path, save_as_external_data=external, location="weights.bin", size_threshold=0)
    return path


def native_open(path: Path) -> None:
    """Open and close ``path`` for reading through libc, as native code (safetensors' Rust,
    torch's C++) does: Python raises no ``open`` audit event for it."""
    import ctypes
    import os

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.open(os.fsencode(path), os.O_RDONLY)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    os.close(fd)
