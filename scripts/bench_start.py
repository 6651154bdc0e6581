"""Whole-process time and peak memory of ``wnpass fold`` against the floor, side by side.

The floor is a process that does the least any fold must: ``onnx.load`` + ``onnx.save`` of the
same file. Each pair of runs alternates which goes first (A B, B A, ...), the ratio is taken
pair by pair, and medians are reported, so a machine that drifts slows both alike. Before
each run, dirty pages are written back (``sync``), so that neither process pays for the
other's writes. Peak memory is each process's own maximum resident set, from GNU time
(``/usr/bin/time``). wnpass's bytecode is compiled first, as an installed package has it.

Models: the TorchScript export of ``models/hifigan.py`` (small, every weight still computed
from g and v), and synthetic chains of weight-normed convolutions of 128 and 512 MiB.

Two cases for the output, measured one after the other: ``replace`` (each run writes over the
output of the run before, as when a step is run again) and ``new`` (the output is removed
before each run, as when a step writes a fresh export's fold). They differ most on virtual
machines that hand free memory back to the host: a process that writes a large file touches
that much fresh page cache, and memory the host took back costs a fault on first touch. The
old output's pages are freed before the write when it is removed (``new``) or truncated (the
floor's ``onnx.save`` opens its output for writing), and only at the end when a new file is
renamed over it (wnpass's atomic replacement).

    python scripts/bench_start.py [--runs 7] [--output replace new] [--folder bench-out/start]
        [--json FILE] [--phases]

Targets: the median ratio at or below 1.0 on every model, and at most 0.8 on files of 100 MB
or more.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
FLOOR = "import onnx, sys; onnx.save(onnx.load(sys.argv[1]), sys.argv[2])"

# Where each process spends its time, phase by phase, timed inside a fresh process.
PHASES = """
import json, sys, time
marks = [("start", time.perf_counter())]
def mark(name): marks.append((name, time.perf_counter()))
source, out = sys.argv[1], sys.argv[2]
if sys.argv[3] != "floor":  # as the CLI does: the model is read while onnx is imported
    from wnpass import readahead
    readahead.start(source)
import onnx; mark("import onnx")
if sys.argv[3] == "floor":
    model = onnx.load(source); mark("load")
    onnx.save(model, out); mark("save")
else:
    from wnpass._deferred import defer_sympy
    defer_sympy()
    import onnx_ir; mark("import onnx_ir")
    from wnpass.onnx import fold, io
    from wnpass.plan import IOPlan; mark("import wnpass")
    plan = IOPlan()
    model = io.load(source, plan); mark("load and check")
    target = io.plan_save(plan, model, out)
    plan.check()
    fold.FoldWeightNormPass()(model); mark("fold")
    io.save(model, target, plan); mark("save")
print(json.dumps({b[0]: b[1] - a[1] for a, b in zip(marks, marks[1:])}))
"""


def small_model(folder: Path) -> Path:
    path = folder / "hifigan.onnx"
    if not path.exists():
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "export_example.py"),
                str(ROOT / "models" / "hifigan.py"),
                str(path),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return path


def large_model(folder: Path, layers: int, channels: int = 512, kernel: int = 16) -> Path:
    """``layers`` weight-normed Convs in one file, 16 MiB of weights each."""
    path = folder / f"chain-{layers * channels * channels * kernel * 4 // 2**20}.onnx"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    nodes, initializers = [], []
    for i in range(layers):
        v = rng.standard_normal((channels, channels, kernel), dtype=np.float32)
        g = np.abs(rng.standard_normal((channels, 1, 1))).astype(np.float32)
        initializers += [
            onnx.numpy_helper.from_array(v, f"convs.{i}.weight_v"),
            onnx.numpy_helper.from_array(g, f"convs.{i}.weight_g"),
            onnx.numpy_helper.from_array(np.array([1, 2], np.int64), f"axes_{i}"),
        ]
        x, y = ("x" if i == 0 else f"h{i}"), ("y" if i == layers - 1 else f"h{i + 1}")
        nodes += [
            helper.make_node("ReduceL2", [f"convs.{i}.weight_v", f"axes_{i}"], [f"n{i}"]),
            helper.make_node("Div", [f"convs.{i}.weight_v", f"n{i}"], [f"d{i}"]),
            helper.make_node("Mul", [f"d{i}", f"convs.{i}.weight_g"], [f"w{i}"]),
            helper.make_node("Conv", [x, f"w{i}"], [y], pads=[kernel // 2 - 1, kernel // 2]),
        ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 64])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, path)
    return path


def timed(argv: list[str], remove: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process, measured by GNU time (its child starts
    small, so the peak is the command's own, not this script's size at fork). ``remove`` is
    removed first; then dirty pages are written back, so that neither process pays for the
    other's writes."""
    if remove is not None:
        remove.unlink(missing_ok=True)
    os.sync()
    start = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{argv} failed: {result.stderr.strip()}")
    return wall, int(result.stderr.strip().splitlines()[-1]) / 1024


def measure(model: Path, runs: int, output: str) -> dict[str, object]:
    """Ratios of ``runs`` pairs; ``output``: "replace" (over the last run's output) or "new"."""
    out = model.with_name(model.stem + ".out.onnx")
    remove = out if output == "new" else None
    wnpass = [sys.executable, "-m", "wnpass", "fold", str(model), "-o", str(out)]
    floor = [sys.executable, "-c", FLOOR, str(model), str(out)]
    timed(wnpass, remove), timed(floor, remove)  # warm the page cache and the .pyc files
    results: dict[str, list[float]] = {"wnpass": [], "floor": [], "wnpass_mib": [], "floor_mib": []}
    ratios = []
    for i in range(runs):
        order = [("wnpass", wnpass), ("floor", floor)]
        pair = {}
        for name, argv in order if i % 2 == 0 else order[::-1]:
            wall, mib = timed(argv, remove)
            pair[name] = wall
            results[name].append(wall)
            results[f"{name}_mib"].append(mib)
        ratios.append(pair["wnpass"] / pair["floor"])
    return {
        "model": model.name,
        "output": output,
        "mib": round(model.stat().st_size / 2**20, 1),
        "wnpass_s": statistics.median(results["wnpass"]),
        "floor_s": statistics.median(results["floor"]),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "wnpass_peak_mib": statistics.median(results["wnpass_mib"]),
        "floor_peak_mib": statistics.median(results["floor_mib"]),
        "runs": runs,
    }


def phases(model: Path, runs: int) -> dict[str, dict[str, float]]:
    """Median seconds of each phase, for wnpass and for the floor, over ``runs`` processes."""
    out = model.with_name(model.stem + ".out.onnx")
    medians = {}
    for who in ("wnpass", "floor"):
        samples: dict[str, list[float]] = {}
        for _ in range(runs):
            os.sync()
            argv = [sys.executable, "-c", PHASES, str(model), str(out), who]
            result = subprocess.run(argv, capture_output=True, text=True, check=True)
            for name, seconds in json.loads(result.stdout.splitlines()[-1]).items():
                samples.setdefault(name, []).append(seconds)
        medians[who] = {name: statistics.median(values) for name, values in samples.items()}
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--folder", type=Path, default=ROOT / "bench-out" / "start")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--output",
        nargs="+",
        choices=("replace", "new"),
        default=["replace", "new"],
        help="the output cases to measure (default: both)",
    )
    parser.add_argument(
        "--phases", action="store_true", help="also time each phase inside the processes"
    )
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    # an installed package has its bytecode compiled (pip does it); a checkout may not have it
    compileall.compile_dir(ROOT / "wnpass", quiet=1)
    models = [small_model(args.folder), *(large_model(args.folder, n) for n in (8, 32))]
    rows = [measure(m, args.runs, output) for output in args.output for m in models]
    print(
        "| model | output | size MiB | wnpass s | floor s | wnpass/floor (min-max) "
        "| peak MiB wnpass/floor |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['output']} | {r['mib']} | {r['wnpass_s']:.2f} | "
            f"{r['floor_s']:.2f} | "
            f"{r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | "
            f"{r['wnpass_peak_mib']:.0f} / {r['floor_peak_mib']:.0f} |"
        )
    if args.phases:
        print("\n| model | process | phase | median s |\n|---|---|---|---:|")
        for model, row in zip(models, rows, strict=False):  # the first output case's rows
            row["phases"] = phases(model, args.runs)
            for who, split in row["phases"].items():
                for name, seconds in split.items():
                    print(f"| {model.name} | {who} | {name} | {seconds:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
