"""How far folded weights are from the exact ``g * v / ||v||``, in float32 ulps.

For every weight-norm site of an exported model, compares with the exactly computed weight
(float64 arithmetic on the stored float32 ``g`` and ``v``, error below 1e-15 relative):

- wnpass's folded weight (float64, rounded once);
- the float32 pipeline the graph itself runs (ReduceL2, Div, Mul each rounded to float32),
  which is what constant folding in ONNX Runtime, onnxsim, onnxslim and polygraphy reproduces.

    python scripts/bench_precision.py MODEL.onnx [MODEL.onnx ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx_ir as ir

from wnpass import fold_onnx
from wnpass.onnx.match import find_sites


def ulps(actual: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|actual - exact| in units of the float32 spacing at ``exact``."""
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(actual.astype(np.float64) - exact) / spacing


def measure(path: Path) -> tuple[int, float, float, float, float]:
    model = ir.load(path)
    sites = [s for s in find_sites(model) if s.foldable and s.norm and s.norm.kind == "ReduceL2"]
    folded, _ = fold_onnx(path)
    wnpass_errors, float32_errors = [], []
    for site in sites:
        assert site.v is not None and site.g is not None and site.norm is not None
        v32 = site.v.const_value.numpy()  # type: ignore[union-attr]
        g32 = site.g.const_value.numpy()  # type: ignore[union-attr]
        axes = site.axes()
        if isinstance(axes, str):  # no set of v's axes (or not known): no per-axis truth
            continue
        axes_t = tuple(range(v32.ndim)) if axes is None else tuple(axes)
        v, g = v32.astype(np.float64), g32.astype(np.float64)
        exact = g * v / np.sqrt(np.sum(v * v, axis=axes_t, keepdims=True))
        n32 = np.sqrt(np.sum(v32 * v32, axis=axes_t, keepdims=True, dtype=np.float32))
        pipeline = (v32 / n32.astype(np.float32)) * g32
        name = site.v.name or ""
        target = name.replace(".parametrizations.weight.original1", ".weight").removesuffix("_v")
        weight = folded.graph.initializers.get(target)  # type: ignore[union-attr]
        if weight is None or weight.const_value is None:
            continue
        folded_w = weight.const_value.numpy()
        if folded_w.shape != v32.shape and folded_w.T.shape == v32.shape:
            folded_w = folded_w.T  # folded through the Transpose that feeds a MatMul
        if folded_w.shape != v32.shape:
            continue
        wnpass_errors.append(ulps(folded_w, exact))
        float32_errors.append(ulps(pipeline, exact))
    w, f = (
        np.concatenate([e.ravel() for e in wnpass_errors]),
        np.concatenate([e.ravel() for e in float32_errors]),
    )
    return (
        len(wnpass_errors),
        float(w.max()),
        float((w > 0.5).mean()),
        float(f.max()),
        float((f > 0.5).mean()),
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description="How far folded weights are from the exact g * v / ||v||, in float32 ulps."
    )
    parser.add_argument("models", nargs="+", type=Path, metavar="MODEL.onnx")
    args = parser.parse_args()
    print(
        "| model | sites | wnpass max ulp | wnpass > 0.5 ulp "
        "| float32 pipeline max ulp | float32 > 0.5 ulp |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for model in args.models:
        try:
            n, w_max, w_frac, f_max, f_frac = measure(model)
        except ValueError:  # no site whose folded weight can be lined up with v
            print(f"| {model.name} | 0 | - | - | - | - |")
            continue
        print(f"| {model.name} | {n} | {w_max:.3f} | {w_frac:.2%} | {f_max:.2f} | {f_frac:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
