"""Fold a model larger than 2 GB with external data: time and peak memory vs the floor.

Builds (once) a synthetic chain of weight-normed 1-D convolutions whose directions ``v`` live
in one external data file (about 3.2 GB by default; ``--form cast16``: weights stored in
float16 that the graph casts to float32, weights computed from constants that the fold makes
initializers, twice their stored size), then, each in a fresh process so that peak resident
memory is that process's own:

- wnpass: ``fold_onnx(path, out)`` (external data in, external data out);
- floor: ``onnx.load`` (weights loaded) + ``onnx.save`` with external data, the plain round trip.

Target (issue 6): peak RSS <= 0.5 x the weights' size + 300 MB.

    python scripts/bench_large.py [--folder bench-out/large] [--layers 24] [--channels 1024]
        [--form weight-norm|cast16]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

KERNEL = 32


def build(folder: Path, layers: int, channels: int, form: str) -> Path:
    """Write the model and its data file, v by v, without holding them in memory."""
    folder.mkdir(parents=True, exist_ok=True)
    path, data_name = folder / f"large-{form}.onnx", f"weights-{form}.bin"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    nodes, initializers, offset = [], [], 0
    stored = np.float16 if form == "cast16" else np.float32
    with open(folder / data_name, "wb") as data:
        for i in range(layers):
            v = rng.standard_normal((channels, channels, KERNEL), dtype=np.float32).astype(stored)
            data.write(v.tobytes())
            dtype = TensorProto.FLOAT16 if form == "cast16" else TensorProto.FLOAT
            tensor = TensorProto(name=f"convs.{i}.weight_v", data_type=dtype)
            tensor.dims.extend(v.shape)
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", offset), ("length", v.nbytes)):
                tensor.external_data.add(key=key, value=str(value))
            offset += v.nbytes
            x, y = ("x" if i == 0 else f"h{i}"), ("y" if i == layers - 1 else f"h{i + 1}")
            pads = [KERNEL // 2, KERNEL // 2 - 1]
            if form == "cast16":
                initializers.append(tensor)
                nodes += [
                    helper.make_node("Cast", [f"convs.{i}.weight_v"], [f"w{i}"], to=1),
                    helper.make_node("Conv", [x, f"w{i}"], [y], pads=pads),
                ]
                continue
            g = np.abs(rng.standard_normal((channels, 1, 1))).astype(np.float32)
            axes = helper.make_tensor(f"axes_{i}", TensorProto.INT64, [2], [1, 2])
            initializers += [tensor, onnx.numpy_helper.from_array(g, f"convs.{i}.weight_g"), axes]
            nodes += [
                helper.make_node("ReduceL2", [f"convs.{i}.weight_v", f"axes_{i}"], [f"n{i}"]),
                helper.make_node("Div", [f"convs.{i}.weight_v", f"n{i}"], [f"d{i}"]),
                helper.make_node("Mul", [f"d{i}", f"convs.{i}.weight_g"], [f"w{i}"]),
                helper.make_node("Conv", [x, f"w{i}"], [y], pads=pads),
            ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, channels, 64]) for n in "xy"]
    graph = helper.make_graph(nodes, "large", [io[0]], [io[1]], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def verify(source: Path, folded: Path, layers: int, form: str) -> str:
    """Sites and computed weights left, and the first and last folded weights against numpy's
    (``g * v / ||v||``; for ``cast16``, v as float32)."""
    import onnx_ir as ir

    from wnpass import inspect_onnx

    inspected = inspect_onnx(folded)
    left = len(inspected.sites) + len(inspected.computed_weights)
    before, after = ir.load(source), ir.load(folded)
    worst = 0.0
    for i in (0, layers - 1):
        v = before.graph.initializers[f"convs.{i}.weight_v"].const_value.numpy().astype(np.float64)
        if form == "cast16":
            expected = v.astype(np.float32)
            actual = after.graph.initializers[f"convs.{i}.weight_v"].const_value.numpy()
        else:
            g = before.graph.initializers[f"convs.{i}.weight_g"].const_value.numpy()
            norm = np.sqrt((v * v).sum(axis=(1, 2), keepdims=True))
            expected = (g.astype(np.float64) * v / norm).astype(np.float32)
            actual = after.graph.initializers[f"convs.{i}.weight"].const_value.numpy()
        worst = max(worst, float(np.abs(actual.astype(np.float64) - expected).max()))
    last = layers - 1
    return f"{left} sites or weights left to fold; max |w - numpy| {worst:.1e} (layers 0, {last})"


def child(tool: str, path: Path, out: Path) -> None:
    """Run one tool and print its time and peak RSS as JSON (in a fresh process)."""
    start = time.perf_counter()
    if tool == "wnpass":
        from wnpass import fold_onnx

        _, report = fold_onnx(path, out)
        extra = {"folded": report.folded}
    else:
        model = onnx.load(path)
        onnx.save(model, out, save_as_external_data=True, location=f"{out.name}.data")
        extra = {}
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"tool": tool, "seconds": seconds, "peak_bytes": peak, **extra}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("bench-out/large"))
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--channels", type=int, default=1024)
    parser.add_argument("--form", choices=("weight-norm", "cast16"), default="weight-norm")
    parser.add_argument("--child", nargs=3, metavar=("TOOL", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0
    path = build(args.folder, args.layers, args.channels, args.form)
    weights = (args.folder / f"weights-{args.form}.bin").stat().st_size
    results = []
    for tool in ("wnpass", "floor"):
        out = args.folder / f"out-{tool}.onnx"
        line = (
            subprocess.run(
                [sys.executable, __file__, "--child", tool, str(path), str(out)],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        results.append(json.loads(line))
        if tool == "wnpass":
            results[-1]["verified"] = verify(path, out, args.layers, args.form)
        for leftover in args.folder.glob(f"out-{tool}.onnx*"):
            leftover.unlink()
    target = 0.5 * weights + 300 * 2**20
    print(f"weights {weights / 2**30:.2f} GiB; target peak <= {target / 2**20:.0f} MiB")
    print(f"wnpass output: {results[0]['verified']}")
    print("| tool | time (s) | peak RSS (MiB) | peak / weights | within target |")
    print("|---|---:|---:|---:|---|")
    for r in results:
        ok = "yes" if r["peak_bytes"] <= target else "no"
        print(
            f"| {r['tool']} | {r['seconds']:.1f} | {r['peak_bytes'] / 2**20:.0f} "
            f"| {r['peak_bytes'] / weights:.2f} | {ok} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
