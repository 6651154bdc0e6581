"""Whole-process time and peak memory of ``wnpass fold`` against the floor, side by side.

The floor is a process that does the least any fold must: ``onnx.load`` + ``onnx.save`` of the
same file. Each pair of runs alternates which goes first (A B, B A, ...), the ratio is taken
pair by pair, and medians are reported, so a machine that drifts slows both alike. Peak
memory is each process's own maximum resident set, from GNU time (``/usr/bin/time``).

Models: the TorchScript export of ``models/hifigan.py`` (small, every weight still computed
from g and v), and a synthetic chain of weight-normed convolutions of about 128 MB.

    python scripts/bench_start.py [--runs 7] [--folder bench-out/start] [--json FILE]

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


def large_model(folder: Path, layers: int = 8, channels: int = 512, kernel: int = 16) -> Path:
    """About 128 MB of weight-normed Conv weights in one file."""
    path = folder / "chain.onnx"
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


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process, measured by GNU time (its child starts
    small, so the peak is the command's own, not this script's size at fork). Dirty pages are
    written back first, so that neither process pays for the other's writes."""
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


def measure(model: Path, runs: int) -> dict[str, object]:
    out = model.with_name(model.stem + ".out.onnx")
    wnpass = [sys.executable, "-m", "wnpass", "fold", str(model), "-o", str(out)]
    floor = [sys.executable, "-c", FLOOR, str(model), str(out)]
    timed(wnpass), timed(floor)  # warm the page cache and the .pyc files
    results: dict[str, list[float]] = {"wnpass": [], "floor": [], "wnpass_mib": [], "floor_mib": []}
    ratios = []
    for i in range(runs):
        order = [("wnpass", wnpass), ("floor", floor)]
        pair = {}
        for name, argv in order if i % 2 == 0 else order[::-1]:
            wall, mib = timed(argv)
            pair[name] = wall
            results[name].append(wall)
            results[f"{name}_mib"].append(mib)
        ratios.append(pair["wnpass"] / pair["floor"])
    return {
        "model": model.name,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--folder", type=Path, default=ROOT / "bench-out" / "start")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    # an installed package has its bytecode compiled (pip does it); a checkout may not have it
    compileall.compile_dir(ROOT / "wnpass", quiet=1)
    rows = [measure(m, args.runs) for m in (small_model(args.folder), large_model(args.folder))]
    print(
        "| model | size MiB | wnpass s | floor s | wnpass/floor (min-max) | peak MiB wnpass/floor |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['mib']} | {r['wnpass_s']:.2f} | {r['floor_s']:.2f} | "
            f"{r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | "
            f"{r['wnpass_peak_mib']:.0f} / {r['floor_peak_mib']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
