"""Benchmark: fold weight normalization out of exported ONNX models, wnpass against its peers.

Method
------
1. Export. Every example model in ``models/*.py`` (``build_model()`` / ``example_inputs()``) is
   exported with both of PyTorch's exporters: TorchScript (``dynamo=False``) and dynamo
   (``dynamo=True``, one file, the exporter's own optimizer on as users get it). Models that
   also define ``build_model_large()`` / ``example_inputs_large()`` (the ~221 MB HiFi-GAN and
   the wav2vec2-base positional convolution) are exported the same way. Each export runs in its
   own process with a time limit and is cached in the work folder (skipped when the file
   exists); its example inputs are saved beside it (``<stem>.inputs.npz``).

2. Run. Every tool runs in a fresh child process per (model, tool, repeat), so that the peak
   resident memory it reports is that process's own. Inside the child the tool's modules are
   imported first; then the child records its RSS (the baseline: interpreter plus imports),
   times the work itself with ``time.perf_counter`` (load + transform + save, not interpreter
   start-up or imports) and reads its peak RSS. The peak is ``VmHWM`` from ``/proc/self/status``,
   the high-water mark of the process's own address space: on Linux,
   ``getrusage(RUSAGE_SELF).ru_maxrss`` survives ``execve``, so a child started by a parent that
   holds 200 MB reports at least 200 MB whatever it does (it is kept in the JSON as
   ``ru_maxrss``, for the record). Tools:

   - ``floor``: ``onnx.load`` + ``onnx.save``, the least any file-to-file tool can do;
   - ``wnpass``: ``wnpass.fold_onnx(src, dst)``;
   - ``onnxsim``: ``onnxsim.simplify(onnx.load(src))`` + ``onnx.save``;
   - ``onnxslim``: ``onnxslim.slim(src, dst)``;
   - ``polygraphy``: the CLI ``polygraphy surgeon sanitize --fold-constants src -o dst`` as a
     grandchild of a small wrapper process (so nothing large is inherited). Its time is wall
     time minus that of the same command on a one-node model run just before (interpreter
     start-up and imports, about 2 s, which vary by a tenth of a second or more from run to
     run): a net time under ``POLYGRAPHY_NOISE_S`` is shown as noise and left out of the time
     ratios. Its peak is the wrapper's ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` and its
     baseline that of the one-node run;
   - ``ort-basic``: ONNX Runtime offline optimization, ``ORT_ENABLE_BASIC`` with
     ``optimized_model_filepath`` (CPU provider);
   - ``onnxscript``: ``onnxscript.optimizer.optimize(onnx.load(src))`` + ``onnx.save``.

   wnpass runs from a copy of its sources taken when the benchmark starts (its digest is in
   the JSON), so that edits made meanwhile do not mix versions. All tools run with their
   default settings. Within each repeat every tool runs once on the model before the next
   repeat starts, the order rotated by one each repeat; times and peaks are the median over
   repeats.

3. Check every output once (the last repeat's file):

   - ``sites left``: ``len(wnpass.inspect_onnx(out).sites)``, foldable or declined;
   - ``ORT ok``: ONNX Runtime (CPU, default optimization level) creates a session and runs it;
   - ``max err``: the largest absolute difference between the output model's and the original
     model's outputs on the saved example inputs, both run by ONNX Runtime CPU, twice: at
     ONNX Runtime's default optimization level (``err ORT``: what a deployment sees; ONNX
     Runtime folds the original's weight-norm subgraphs itself, in float32) and with graph
     optimizations disabled (``err raw``: each graph computed as written). ``right`` means
     every output has the original's shape and ``allclose(rtol=1e-4, atol=1e-5)`` in both;
     ``exact`` means ``err ORT`` == 0;
   - ``weight ulp``: once no site is left, each folded weight against ``g * v / ||v||``
     computed in float64 from the original's ``g`` and ``v``, in units of float32 spacing at
     the true value (0.5 is correct rounding); the largest over the model's weights. The
     output's initializer of the same shape closest to the true weight is taken as the folded
     one, since every tool names it differently; ``-`` when none has that shape (an LSTM
     weight folded further, into ONNX's gate layout) or sites are left;
   - ``names kept``: the fraction of the original's parameter names found as tensor names
     (initializers or ``Constant`` outputs) of the output's main graph. The names are the
     original's plain ``*.weight`` / ``*.bias`` initializers and, for each weight-normed
     parameter, the name it had before weight norm: ``X.parametrizations.W.original1`` ->
     ``X.W`` and ``X.W_v`` (with ``X.W_g`` beside it) -> ``X.W``;
   - ``computed weights``: weight inputs (``WEIGHT_INPUTS``: weights and biases of Conv,
     ConvTranspose, Gemm, MatMul, LSTM/GRU/RNN and an embedding Gather's table) of the main
     graph that are computed from constants at run time, not read from an initializer;
   - ``int8 share``: after ``onnxruntime.quantization.quantize_dynamic`` (defaults), the share
     of the weight elements at the inputs it can quantize (``QUANTIZABLE_INPUTS``; computed
     weights included, sized by shape inference) stored as int8; ``fails`` when it raises.
     wnpass's target is onnxsim's share on every model.

Output: a markdown report (per model and tool, and a per-tool summary) printed and written to
``--out-md``, and every raw number in ``--out-json``.

Usage::

    python scripts/bench_fold.py                      # everything, 3 repeats
    python scripts/bench_fold.py --models mlp hifigan --tools floor wnpass --repeats 1
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TOOLS = ("floor", "wnpass", "onnxsim", "onnxslim", "polygraphy", "ort-basic", "onnxscript")
PEERS = ("onnxsim", "onnxslim", "polygraphy", "ort-basic", "onnxscript")
EXPORTERS = ("torchscript", "dynamo")
RTOL, ATOL = 1e-4, 1e-5
POLYGRAPHY_NOISE_S = 0.2  # net CLI times below this are start-up noise (see the docstring)
PACKAGES = (
    "torch",
    "onnx",
    "onnx-ir",
    "onnxruntime",
    "onnxscript",
    "onnxsim",
    "onnxslim",
    "polygraphy",
    "onnx-graphsurgeon",
    "numpy",
    "wnpass",
)


# --------------------------------------------------------------------------------------------
# Models and exports
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One exported model: which file of ``models/``, which size, which exporter."""

    module: str  # file stem in models/
    variant: str  # "" (build_model) or "_large" (build_model_large)
    exporter: str  # "torchscript" or "dynamo"

    @property
    def name(self) -> str:
        return f"{self.module}{self.variant}/{self.exporter}"

    @property
    def stem(self) -> str:
        return f"{self.module}{self.variant}.{self.exporter}"

    @property
    def large(self) -> bool:
        return bool(self.variant)


def discover_models(
    models_dir: Path, exporters: Sequence[str], large: bool, only: Sequence[str] | None
) -> list[ModelSpec]:
    """Every model of ``models_dir`` with each exporter; large variants where a file has one."""
    specs = []
    for path in sorted(models_dir.glob("*.py")):
        text = path.read_text()
        variants = [""] if "def build_model(" in text else []
        if large and "def build_model_large(" in text:
            variants.append("_large")
        for variant in variants:
            for exporter in exporters:
                spec = ModelSpec(path.stem, variant, exporter)
                if not only or any(word in spec.name for word in only):
                    specs.append(spec)
    return specs


def export_model(
    spec: ModelSpec, models_dir: Path, work: Path, timeout: float
) -> tuple[Path, str | None]:
    """Export ``spec`` in a child process unless cached; the file and an error (or None)."""
    target = work / "models" / f"{spec.stem}.onnx"
    if target.exists() and inputs_path(target).exists():
        return target, None
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "_export", str(models_dir / f"{spec.module}.py")]
    cmd += [spec.variant, spec.exporter, str(target)]
    log = target.with_suffix(".export.log")
    try:
        with log.open("w") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        target.unlink(missing_ok=True)
        return target, f"export took over {timeout:.0f} s"
    if proc.returncode != 0 or not target.exists():
        target.unlink(missing_ok=True)
        return target, f"export failed: {tail(log.read_text())}"
    return target, None


def inputs_path(model_path: Path) -> Path:
    return model_path.with_suffix(".inputs.npz")


def child_export(module_file: str, variant: str, exporter: str, target: str) -> None:
    """(child) Build, export and save example inputs for one model."""
    import importlib.util
    import warnings

    import numpy as np
    import torch

    warnings.simplefilter("ignore")
    spec = importlib.util.spec_from_file_location(Path(module_file).stem, module_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, f"build_model{variant}")()
    inputs = getattr(module, f"example_inputs{variant}")()
    start = time.perf_counter()
    partial = Path(target).with_suffix(".partial.onnx")
    with torch.no_grad():
        if exporter == "dynamo":
            torch.onnx.export(model, inputs, str(partial), dynamo=True, external_data=False)
        else:
            torch.onnx.export(model, inputs, str(partial), dynamo=False)
    os.replace(partial, target)
    np.savez(inputs_path(Path(target)), *[t.numpy() for t in inputs])
    print(f"exported {target} in {time.perf_counter() - start:.1f} s")


# --------------------------------------------------------------------------------------------
# Tools (each prepared inside its own child process)
# --------------------------------------------------------------------------------------------

Work = Callable[[str, str], dict[str, Any]]


def prepare_floor() -> Work:
    import onnx

    def work(src: str, dst: str) -> dict[str, Any]:
        onnx.save(onnx.load(src), dst)
        return {}

    return work


def prepare_wnpass() -> Work:
    import wnpass
    import wnpass.onnx.api

    def work(src: str, dst: str) -> dict[str, Any]:
        _, report = wnpass.fold_onnx(src, dst)
        return {"folded": report.folded, "declined": report.declined, "from": wnpass.__file__}

    return work


def prepare_onnxsim() -> Work:
    import onnx
    import onnxsim

    def work(src: str, dst: str) -> dict[str, Any]:
        model, check_ok = onnxsim.simplify(onnx.load(src))
        onnx.save(model, dst)
        return {"check_ok": bool(check_ok)}

    return work


def prepare_onnxslim() -> Work:
    import onnxslim

    def work(src: str, dst: str) -> dict[str, Any]:
        onnxslim.slim(src, dst)
        return {}

    return work


def prepare_ort_basic() -> Work:
    import onnxruntime as ort

    def work(src: str, dst: str) -> dict[str, Any]:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = dst
        ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])
        return {}

    return work


def prepare_onnxscript() -> Work:
    import onnx
    import onnxscript.optimizer

    def work(src: str, dst: str) -> dict[str, Any]:
        onnx.save(onnxscript.optimizer.optimize(onnx.load(src)), dst)
        return {}

    return work


PREPARE: dict[str, Callable[[], Work]] = {
    "floor": prepare_floor,
    "wnpass": prepare_wnpass,
    "onnxsim": prepare_onnxsim,
    "onnxslim": prepare_onnxslim,
    "ort-basic": prepare_ort_basic,
    "onnxscript": prepare_onnxscript,
}


def current_rss() -> int:
    """This process's resident set size in bytes now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def high_water_rss() -> int:
    """This process's peak resident set size in bytes since its last ``execve`` (VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def max_rss(who: int) -> int:
    """Peak RSS in bytes from ``getrusage`` (Linux reports KiB)."""
    return resource.getrusage(who).ru_maxrss * 1024


def child_tool(tool: str, src: str, dst: str, probe: str) -> dict[str, Any]:
    """(child) Import one tool, then time it on src -> dst; the measurements as a dict."""
    if tool == "polygraphy":
        return child_polygraphy(src, dst, Path(probe))
    work = PREPARE[tool]()
    base = current_rss()
    start = time.perf_counter()
    extra = work(src, dst)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak": high_water_rss(), "base": base,
            "ru_maxrss": max_rss(resource.RUSAGE_SELF), **extra}  # fmt: skip


def child_polygraphy(src: str, dst: str, probe: Path) -> dict[str, Any]:
    """(child) Run the polygraphy CLI as a grandchild, less its start-up on a one-node model."""
    exe = shutil.which("polygraphy", path=str(Path(sys.executable).parent)) or "polygraphy"

    def sanitize(source: str, target: str) -> float:
        cmd = [exe, "surgeon", "sanitize", "--fold-constants", source, "-o", target]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"polygraphy exited {proc.returncode}: {tail(proc.stderr)}")
        return seconds

    startup = sanitize(str(probe), str(Path(dst).with_name("polygraphy-probe.out.onnx")))
    base = max_rss(resource.RUSAGE_CHILDREN)
    wall = sanitize(src, dst)
    peak = max_rss(resource.RUSAGE_CHILDREN)
    return {"seconds": wall - startup, "wall": wall, "startup": startup,
            "peak": peak, "base": base}  # fmt: skip


def write_probe_model(path: Path) -> None:
    """A one-node model (Identity) for measuring a CLI's start-up."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def run_tool(tool: str, src: Path, dst: Path, probe: Path, timeout: float) -> dict[str, Any]:
    """Run one tool in a fresh child; its measurements, or ``{"error": ...}``."""
    for stale in (dst, dst.with_name(dst.name + ".data")):
        stale.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "_tool", tool, str(src), str(dst), str(probe)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    result = last_json_line(proc.stdout)
    if result is None:
        return {"error": f"exit {proc.returncode}: {tail(proc.stderr or proc.stdout)}"}
    if "error" not in result and not dst.exists():
        result["error"] = "no output file written"
    return result


def last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])[-400:]


# --------------------------------------------------------------------------------------------
# Checking outputs
# --------------------------------------------------------------------------------------------


def load_inputs(model_path: Path) -> list[Any]:
    import numpy as np

    with np.load(inputs_path(model_path)) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def run_ort(path: Path, inputs: Sequence[Any], optimize: bool) -> list[Any]:
    """Outputs of ``path`` on ``inputs`` with ONNX Runtime CPU (optimizations on or off)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs, strict=True)))


def compare(reference: Sequence[Any], outputs: Sequence[Any]) -> dict[str, Any]:
    """Shapes, max abs error and closeness of ``outputs`` against ``reference``."""
    import numpy as np

    shapes_ok = len(reference) == len(outputs) and all(
        r.shape == o.shape for r, o in zip(reference, outputs, strict=False)
    )
    if not shapes_ok:
        return {"shapes_ok": False, "max_err": None, "close": False}
    errors = [
        float(np.max(np.abs(r.astype(np.float64) - o.astype(np.float64)))) if r.size else 0.0
        for r, o in zip(reference, outputs, strict=True)
    ]
    max_err = max(errors, default=0.0)
    close = all(
        np.allclose(o, r, rtol=RTOL, atol=ATOL) for r, o in zip(reference, outputs, strict=True)
    )
    return {"shapes_ok": True, "max_err": max_err if math.isfinite(max_err) else None,
            "close": bool(close)}  # fmt: skip


def parameter_names(model_path: Path) -> set[str]:
    """The original's parameter names: plain weights/biases and weight-normed ones' own names."""
    names = tensor_names(model_path)
    wanted = set()
    for name in names:
        match = re.fullmatch(r"(.+)\.parametrizations\.([^.]+)\.original1", name)
        if match:
            wanted.add(f"{match[1]}.{match[2]}")
        elif name.endswith("_v") and name[:-2] + "_g" in names:
            wanted.add(name[:-2])
        elif name.endswith((".weight", ".bias")):
            wanted.add(name)
    return wanted


def tensor_names(model_path: Path) -> set[str]:
    """Initializer and ``Constant`` output names of the main graph."""
    import onnx

    graph = onnx.load(model_path, load_external_data=False).graph
    names = {init.name for init in graph.initializer}
    names.update(out for node in graph.node if node.op_type == "Constant" for out in node.output)
    return names


def true_weights(model_path: Path) -> dict[str, Any]:
    """``g * v / ||v||`` of every weight-norm site, computed in float64 from the original.

    ``g`` and ``v`` are found by the exporters' names (``X.parametrizations.W.original0/1``
    or the legacy hook's ``X.W_g`` / ``X.W_v``); sites named otherwise are left out.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from wnpass import inspect_onnx

    graph = onnx.load(model_path).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    weights = {}
    for site in inspect_onnx(model_path).sites:
        base, _, leaf = site.name.rpartition(".")
        parametrized = f"{base}.parametrizations.{leaf}.original"
        for g_name, v_name in ((f"{parametrized}0", f"{parametrized}1"),
                               (f"{site.name}_g", f"{site.name}_v")):  # fmt: skip
            if g_name in arrays and v_name in arrays and not isinstance(site.axes, str):
                g, v = arrays[g_name].astype(np.float64), arrays[v_name].astype(np.float64)
                axes = None if site.axes is None else tuple(site.axes)
                weights[site.name] = g * v / np.sqrt(np.sum(v * v, axis=axes, keepdims=True))
                break
    return weights


def weight_ulps(output: Path, truth: dict[str, Any]) -> dict[str, Any]:
    """Folded weights of ``output`` against the float64 truth, in units of float32 spacing.

    Each true weight is matched to the float32 initializer of its shape that is closest to
    it (the tools rename weights differently); only meaningful once every site is folded.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(output).graph
    by_shape: dict[tuple[int, ...], list[Any]] = {}
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            array = numpy_helper.to_array(init)
            by_shape.setdefault(array.shape, []).append(array)
    worst, total, count = 0.0, 0.0, 0
    for expected in truth.values():
        candidates = by_shape.get(expected.shape)
        if not candidates:
            return {"ulp_max": None, "ulp_mean": None}
        found = min(candidates, key=lambda array: float(np.max(np.abs(array - expected))))
        spacing = np.spacing(np.abs(expected).astype(np.float32)).astype(np.float64)
        ulps = np.abs(found.astype(np.float64) - expected) / spacing
        worst = max(worst, float(ulps.max()))
        total, count = total + float(ulps.sum()), count + ulps.size
    return {"ulp_max": worst, "ulp_mean": total / count if count else None}


# Weight inputs, as in wnpass.onnx.cones (kept here so the benchmark measures every tool by
# the same independent rule): op -> inputs holding weights and biases.
WEIGHT_INPUTS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
    "LSTM": (1, 2, 3), "GRU": (1, 2, 3), "RNN": (1, 2, 3), "Gather": (0,),
}  # fmt: skip
# The inputs ONNX Runtime's quantize_dynamic can store as int8 (weights, not biases).
QUANTIZABLE_INPUTS = {
    "Conv": (1,), "ConvTranspose": (1,), "Gemm": (1,), "MatMul": (0, 1),
    "LSTM": (1, 2), "GRU": (1, 2), "RNN": (1, 2), "Gather": (0,),
}  # fmt: skip
_RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
               "Multinomial", "Bernoulli"}  # fmt: skip


def constant_weights(graph: Any, table: dict[str, tuple[int, ...]]) -> list[tuple[str, bool]]:
    """(name, is an initializer) of every weight input of ``graph`` (main graph) that is
    computed from constants only; an embedding Gather's table counts when its indices are not
    constant."""
    inputs = {i.name for i in graph.input}
    constant = {i.name for i in graph.initializer if i.name not in inputs}
    initializers = set(constant)
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type in _RANDOM_OPS:
            continue
        if any(a.type in (5, 10) for a in node.attribute):  # GRAPH / GRAPHS: not followed
            continue
        used = [i for i in node.input if i]
        if (node.op_type == "Constant" or used) and all(i in constant for i in used):
            constant.update(node.output)
    found: dict[str, bool] = {}
    for node in graph.node:
        if node.op_type not in table or node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Gather" and (len(node.input) < 2 or node.input[1] in constant):
            continue
        for index in table[node.op_type]:
            name = node.input[index] if index < len(node.input) else ""
            if name and name in constant:
                found[name] = name in initializers
    return list(found.items())


def computed_weights(path: Path) -> int:
    """Weight inputs (``WEIGHT_INPUTS``) computed from constants at run time: not initializers."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    return sum(not plain for _, plain in constant_weights(graph, WEIGHT_INPUTS))


def int8_share(path: Path) -> dict[str, Any]:
    """After ``quantize_dynamic``, the share of the weight elements (``QUANTIZABLE_INPUTS``,
    computed ones included) stored as int8; ``{"int8_error": ...}`` when it fails."""
    import logging
    import tempfile

    import numpy as np
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    model = onnx.load(path)
    weights = constant_weights(model.graph, QUANTIZABLE_INPUTS)
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    if any(not plain for _, plain in weights):
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
        for info in inferred:
            dims = info.type.tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in dims):
                sizes[info.name] = int(np.prod([d.dim_value for d in dims]))
    del model
    total = sum(sizes.get(name, 0) for name, _ in weights)
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "quantized.onnx"
        logging.disable(logging.WARNING)  # the quantizer logs every weight it skips
        try:
            quantize_dynamic(path, target)
        except Exception as error:
            return {
                "int8_share": None,
                "int8_error": f"{type(error).__name__}: {tail(str(error), 1)}",
            }
        finally:
            logging.disable(logging.NOTSET)
        quantized = onnx.load(target, load_external_data=False).graph.initializer
        int8 = {
            i.name
            for i in quantized
            if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
        }
    stored = sum(sizes.get(name, 0) for name, _ in weights if f"{name}_quantized" in int8)
    return {"int8_share": stored / total if total else None}


@dataclasses.dataclass
class Reference:
    """What every output of one model is checked against."""

    path: Path
    inputs: list[Any]
    outputs: dict[bool, list[Any]]  # ONNX Runtime optimizations on -> outputs
    names: set[str]  # parameter names (see parameter_names)
    weights: dict[str, Any]  # site name -> float64 folded weight

    @classmethod
    def of(cls, path: Path) -> Reference:
        inputs = load_inputs(path)
        outputs = {optimize: run_ort(path, inputs, optimize) for optimize in (True, False)}
        return cls(path, inputs, outputs, parameter_names(path), true_weights(path))


def check_output(output: Path, reference: Reference) -> dict[str, Any]:
    """Sites left, ONNX Runtime acceptance, output error, weight ulps and names kept."""
    from wnpass import inspect_onnx

    result: dict[str, Any] = {}
    try:
        sites = inspect_onnx(output).sites
        result["sites_left"] = len(sites)
        result["sites_declined"] = sum(site.status == "declined" for site in sites)
    except Exception as error:
        result["sites_left"] = None
        result["inspect_error"] = f"{type(error).__name__}: {tail(str(error), 1)}"
    for optimize, suffix in ((True, ""), (False, "_raw")):
        try:
            outputs = run_ort(output, reference.inputs, optimize=optimize)
        except Exception as error:
            outputs, result[f"ort_error{suffix}"] = None, f"{type(error).__name__}: {error}"
        if optimize:
            result["ort_ok"] = outputs is not None
        if outputs is None:
            result.update({f"shapes_ok{suffix}": False, f"max_err{suffix}": None})
            result[f"close{suffix}"] = False
        else:
            found = compare(reference.outputs[optimize], outputs)
            result.update({f"{key}{suffix}": value for key, value in found.items()})
    if result["sites_left"] == 0 and reference.weights:
        result.update(weight_ulps(output, reference.weights))
    wanted = reference.names
    kept = wanted & tensor_names(output)
    result["names_kept"] = len(kept) / len(wanted) if wanted else None
    result["bytes"] = output.stat().st_size + data_file_size(output)
    result["computed_weights"] = computed_weights(output)
    result.update(int8_share(output))
    return result


def data_file_size(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return data.stat().st_size if data.exists() else 0


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def rotated(items: Sequence[str], shift: int) -> list[str]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def bench_model(
    spec: ModelSpec, source: Path, tools: Sequence[str], repeats: int, args: argparse.Namespace
) -> dict[str, Any]:
    """All tools on one model: raw runs, medians and output checks."""
    from wnpass import inspect_onnx

    out_dir = args.work / "outputs" / spec.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
    for repeat in range(repeats):
        for tool in rotated(tools, repeat):
            result = run_tool(tool, source, out_dir / f"{tool}.onnx", args.probe, args.timeout)
            runs[tool].append(result)
            log(f"  {spec.name:32} {tool:11} {describe_run(result)}")
    reference = Reference.of(source)
    record: dict[str, Any] = {
        "model": spec.name,
        "large": spec.large,
        "bytes": source.stat().st_size,
        "sites": len(inspect_onnx(source).sites),
        "parameter_names": len(reference.names),
        "weights_checked": len(reference.weights),
        "repeats": repeats,
        "tools": {},
    }
    for tool in tools:
        entry = summarize_runs(runs[tool])
        if tool == "polygraphy" and entry.get("seconds", math.inf) < POLYGRAPHY_NOISE_S:
            entry["below_noise"] = True
        output = out_dir / f"{tool}.onnx"
        if "error" not in entry and output.exists():
            entry.update(check_output(output, reference))
        record["tools"][tool] = entry
    if not args.keep_outputs:
        shutil.rmtree(out_dir)
    return record


def describe_run(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"ERROR {result['error']}"
    return f"{result['seconds']:8.3f} s  peak {result['peak'] / 2**20:7.1f} MB"


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the successful runs; the first error if any run failed."""
    errors = [run["error"] for run in runs if "error" in run]
    if errors:
        return {"error": errors[0], "runs": runs}
    return {
        "seconds": statistics.median(run["seconds"] for run in runs),
        "seconds_min": min(run["seconds"] for run in runs),
        "peak_mb": statistics.median(run["peak"] for run in runs) / 2**20,
        "base_mb": statistics.median(run["base"] for run in runs) / 2**20,
        "runs": runs,
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        memory_gb = int(mem) / 2**20
    except OSError:
        memory_gb = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def wnpass_digest(root: Path) -> str:
    """A short hash of the wnpass sources under ``root``."""
    digest = hashlib.sha256()
    for path in sorted((root / "wnpass").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def use_wnpass_snapshot(work: Path) -> Path:
    """Copy wnpass's sources into ``work`` and import them from there, here and in children.

    The fold code may be edited while a benchmark runs; a snapshot keeps every run of it the
    same code. Its digest goes into the JSON.
    """
    snapshot = work / "wnpass-snapshot"
    shutil.rmtree(snapshot, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "wnpass", snapshot / "wnpass", ignore=ignore)
    paths = [str(snapshot), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    sys.path.insert(0, str(snapshot))
    return snapshot


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


def ratio(entry: dict[str, Any], floor: dict[str, Any] | None) -> float | None:
    if not floor or "seconds" not in entry or "seconds" not in floor or floor["seconds"] <= 0:
        return None
    if entry.get("below_noise"):
        return None
    return entry["seconds"] / floor["seconds"]


def fmt(value: float | None, spec: str = ".2f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def fmt_err(entry: dict[str, Any], suffix: str = "") -> str:
    if not entry.get(f"shapes_ok{suffix}", False):
        return "shape ✗" if entry.get(f"ort_error{suffix}") is None else "failed ✗"
    err = entry[f"max_err{suffix}"]
    text = "0" if err == 0 else fmt(err, ".1e", "nan")
    return text if entry.get(f"close{suffix}") else f"{text} ✗"


def fmt_int8(entry: dict[str, Any]) -> str:
    if entry.get("int8_error"):
        return "fails"
    return fmt(entry.get("int8_share"), ".1%")


def is_wrong(entry: dict[str, Any]) -> bool:
    """A failed tool, a rejected file or outputs that are not close to the original's."""
    if "error" in entry or not entry.get("ort_ok"):
        return True
    return not (entry.get("close") and entry.get("close_raw"))


MODEL_COLUMNS = (
    "model",
    "MB",
    "sites",
    "tool",
    "time s",
    "× floor",
    "peak MB",
    "Δ base MB",
    "sites left",
    "err ORT",
    "err raw",
    "weight ulp",
    "ORT ok",
    "names kept",
    "computed weights",
    "int8 share",
)


def header(columns: Sequence[str]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def model_table(records: Sequence[dict[str, Any]]) -> list[str]:
    lines = header(MODEL_COLUMNS)
    for record in records:
        floor = record["tools"].get("floor")
        for i, (tool, entry) in enumerate(record["tools"].items()):
            first = i == 0
            cells = [
                f"{record['model']}" if first else "",
                f"{record['bytes'] / 1e6:.1f}" if first else "",
                str(record["sites"]) if first else "",
                tool,
            ]
            if "error" in entry:
                cells += [f"failed: {entry['error'][:80]}", *[""] * 11]
            else:
                noise = f"< {POLYGRAPHY_NOISE_S} (noise)"
                cells += [
                    noise if entry.get("below_noise") else fmt(entry["seconds"], ".3f"),
                    fmt(ratio(entry, floor)),
                    fmt(entry["peak_mb"], ".0f"),
                    fmt(entry["peak_mb"] - entry["base_mb"], ".0f"),
                    fmt(entry.get("sites_left"), "d", "?"),
                    fmt_err(entry),
                    fmt_err(entry, "_raw"),
                    fmt(entry.get("ulp_max"), ".2f"),
                    "yes" if entry.get("ort_ok") else "NO",
                    fmt(entry.get("names_kept"), ".0%"),
                    fmt(entry.get("computed_weights"), "d", "?"),
                    fmt_int8(entry),
                ]
            lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return lines


def summary(records: Sequence[dict[str, Any]], tools: Sequence[str]) -> dict[str, Any]:
    """Per tool: geomean time ratio, max peak, total sites left, wrong/rejected, exact, names."""
    rows = {}
    for tool in tools:
        entries = [(r["tools"][tool], r["tools"].get("floor")) for r in records]
        ratios = [x for x in (ratio(e, f) for e, f in entries) if x]
        large = [(r["tools"][tool], r["tools"].get("floor")) for r in records if r["large"]]
        large_ratios = [x for x in (ratio(e, f) for e, f in large) if x]
        done = [e for e, _ in entries if "error" not in e]
        names = [e["names_kept"] for e in done if e.get("names_kept") is not None]
        ulps = [e["ulp_max"] for e in done if e.get("ulp_max") is not None]
        rows[tool] = {
            "models": len(entries),
            "failed": sum("error" in e for e, _ in entries),
            "geomean_ratio": geomean(ratios),
            "geomean_ratio_large": geomean(large_ratios),
            "max_peak_mb": max((e["peak_mb"] for e in done), default=None),
            "max_delta_mb": max((e["peak_mb"] - e["base_mb"] for e in done), default=None),
            "sites_left": sum(e.get("sites_left") or 0 for e in done),
            "wrong_or_rejected": sum(is_wrong(e) for e, _ in entries),
            "exact": sum(e.get("max_err") == 0 and e.get("shapes_ok", False) for e in done),
            "mean_names_kept": statistics.fmean(names) if names else None,
            "max_ulp": max(ulps, default=None),
            "computed_weights": sum(e.get("computed_weights") or 0 for e in done),
            "int8_fails": sum(bool(e.get("int8_error")) for e in done),
            "int8_shares": [e.get("int8_share") for e, _ in entries],
        }
    return rows


def geomean(values: Iterable[float]) -> float | None:
    values = list(values)
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else None


SUMMARY_COLUMNS = (
    "tool",
    "time × floor (geomean)",
    "× floor, large models",
    "max peak MB",
    "max Δ base MB",
    "sites left (total)",
    "wrong / rejected / failed",
    "exact outputs",
    "max weight ulp",
    "names kept (mean)",
    "computed weights (total)",
    "quantize_dynamic fails",
)


def summary_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = header(SUMMARY_COLUMNS)
    for tool, row in rows.items():
        cells = [
            tool,
            fmt(row["geomean_ratio"]),
            fmt(row["geomean_ratio_large"]),
            fmt(row["max_peak_mb"], ".0f"),
            fmt(row["max_delta_mb"], ".0f"),
            str(row["sites_left"]),
            f"{row['wrong_or_rejected']} of {row['models']}",
            f"{row['exact']} of {row['models']}",
            fmt(row["max_ulp"], ".2f"),
            fmt(row["mean_names_kept"], ".0%"),
            str(row["computed_weights"]),
            f"{row['int8_fails']} of {row['models']}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How many models meet each of wnpass's targets (and which do not)."""
    misses: dict[str, list[str]] = {"zero sites": [], "exact": [], "time <= floor": []}
    misses["peak < every peer"] = []
    misses["int8 share = onnxsim's"] = []
    misses["no computed weight"] = []
    for record in records:
        entry, model = record["tools"].get("wnpass"), record["model"]
        if entry is None:
            continue
        if "error" in entry:
            for key in misses:
                misses[key].append(model)
            continue
        if entry.get("sites_left") != 0:
            misses["zero sites"].append(model)
        if not (entry.get("shapes_ok") and entry.get("max_err") == 0):
            misses["exact"].append(model)
        floor = record["tools"].get("floor")
        if (ratio(entry, floor) or math.inf) > 1.0:
            misses["time <= floor"].append(model)
        peers = [e["peak_mb"] for t, e in record["tools"].items() if t in PEERS and "peak_mb" in e]
        if peers and entry["peak_mb"] >= min(peers):
            misses["peak < every peer"].append(model)
        onnxsim = record["tools"].get("onnxsim")
        if onnxsim is not None and not same_share(entry, onnxsim):
            misses["int8 share = onnxsim's"].append(model)
        if entry.get("computed_weights") != 0:
            misses["no computed weight"].append(model)
    return {"models": len(records), "misses": misses}


def same_share(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal int8 shares (to 1e-9: the same weights quantized), or both failing."""
    x, y = a.get("int8_share"), b.get("int8_share")
    if x is None or y is None:
        return x is None and y is None
    return abs(x - y) < 1e-9


def targets_table(result: dict[str, Any]) -> list[str]:
    lines = ["| target | models met | missed on |", "|---|---|---|"]
    for target, missed in result["misses"].items():
        met = result["models"] - len(missed)
        lines.append(f"| {target} | {met} of {result['models']} | {', '.join(missed) or '-'} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    parts = ["## Summary", "", *summary_table(report["summary"]), ""]
    if "wnpass" in report["tools"]:
        parts += ["## wnpass targets", "", *targets_table(report["targets"]), ""]
    parts += ["## Per model", "", *model_table(report["models"]), ""]
    if report["export_errors"]:
        parts += ["## Exports that failed", ""]
        parts += [f"- {name}: {error}" for name, error in report["export_errors"].items()]
        parts.append("")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "bench-out", help="work folder")
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--models", nargs="*", help="keep models whose name has one of these")
    parser.add_argument("--tools", nargs="*", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--exporters", nargs="*", choices=EXPORTERS, default=list(EXPORTERS))
    parser.add_argument("--no-large", action="store_true", help="skip build_model_large()")
    parser.add_argument("--repeats", type=int, default=3, help="runs per (model, tool)")
    parser.add_argument("--large-repeats", type=int, help="runs for large models (default: same)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per tool run")
    parser.add_argument("--export-timeout", type=float, default=600, help="seconds per export")
    parser.add_argument("--keep-outputs", action="store_true", help="keep the tools' outputs")
    parser.add_argument("--out-md", type=Path, help="default: <work>/bench_fold.md")
    parser.add_argument("--out-json", type=Path, help="default: <work>/bench_fold.json")
    args = parser.parse_args(argv)
    if "floor" not in args.tools:
        args.tools.insert(0, "floor")
    args.tools = [tool for tool in TOOLS if tool in args.tools]
    return args


def bench(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    args.probe = args.work / "polygraphy-probe.onnx"
    write_probe_model(args.probe)
    started, load_start = time.perf_counter(), os.getloadavg()
    digest = wnpass_digest(use_wnpass_snapshot(args.work))
    specs = discover_models(args.models_dir, args.exporters, not args.no_large, args.models)
    records, export_errors = [], {}
    for spec in specs:
        source, error = export_model(spec, args.models_dir, args.work, args.export_timeout)
        if error:
            log(f"{spec.name}: {error}")
            export_errors[spec.name] = error
            continue
        repeats = args.large_repeats if spec.large and args.large_repeats else args.repeats
        records.append(bench_model(spec, source, args.tools, repeats, args))
    report = {
        "command": " ".join(["python", "scripts/bench_fold.py", *(argv or sys.argv[1:])]),
        "machine": machine_info(),
        "versions": versions(),
        "wnpass_sources": digest,
        "tools": args.tools,
        "tolerance": {"rtol": RTOL, "atol": ATOL},
        "models": records,
        "export_errors": export_errors,
        "summary": summary(records, args.tools),
        "targets": targets(records),
        "seconds": time.perf_counter() - started,
        "load_average": {"start": load_start, "end": os.getloadavg()},  # other work on the machine
    }
    if wnpass_digest(REPO) != digest:
        log(f"note: wnpass's sources changed during the run; measured snapshot {digest}")
    text = markdown(report)
    out_md = args.out_md or args.work / "bench_fold.md"
    out_json = args.out_json or args.work / "bench_fold.json"
    out_md.write_text(text)
    out_json.write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    log(f"wrote {out_md} and {out_json} in {report['seconds']:.0f} s")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_export"]:
        child_export(*argv[1:])
        return 0
    if argv[:1] == ["_tool"]:
        try:
            print(json.dumps(child_tool(*argv[1:])))
        except Exception as error:
            traceback.print_exc()
            print(json.dumps({"error": f"{type(error).__name__}: {tail(str(error), 2)}"}))
            return 1
        return 0
    bench(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
