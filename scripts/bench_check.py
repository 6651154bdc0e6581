"""Session creation and latency before vs after folding, on ONNX Runtime, per example model.

For every example model in models/ (and the ~200 MB HiFi-GAN with --large), export it with the
TorchScript exporter (weight norm still in the graph), fold it with wnpass, and run
``wnpass.verify.check`` on the pair at ONNX Runtime's default graph optimization level and
with optimizations disabled (what a runtime that does not fold constants pays), on every
available provider. Reference and candidate runs are interleaved run by run; the numbers are
medians. Writes a markdown table (and the raw reports as JSON).

    python scripts/bench_check.py [--out bench-out/check] [--runs 30] [--large] [--md FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_example import export

from wnpass import fold_onnx
from wnpass.verify.check import check
from wnpass.verify.report import CheckReport

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["mlp", "lstm_lm", "wav2vec2_posconv", "encodec", "dac", "hifigan"]


def measure(name: str, factory: str, folder: Path, runs: int) -> CheckReport:
    model_py = ROOT / "models" / f"{name}.py"
    unfolded = folder / f"{name}{'_large' if factory.endswith('_large') else ''}.onnx"
    if not unfolded.exists():
        export(model_py, unfolded, factory=factory)
    folded = unfolded.with_suffix(".folded.onnx")
    fold_onnx(unfolded, folded)
    return check(unfolded, folded, runs=runs, warmup=3, optimizations=("default", "disabled"))


def rows(name: str, report: CheckReport) -> list[str]:
    lines = []
    for run in report.runs:
        if run.reference is None or run.candidate is None:
            lines.append(f"| {name} | {run.provider} | {run.optimization} | {run.status} |||||")
            continue
        ref_s, cand_s = run.reference_session_s or 0.0, run.candidate_session_s or 0.0
        lines.append(
            f"| {name} | {run.provider} | {run.optimization} "
            f"| {ref_s * 1e3:.1f} | {cand_s * 1e3:.1f} | {cand_s / ref_s:.2f} "
            f"| {run.reference.median_ms:.3f} | {run.candidate.median_ms:.3f} | {run.ratio:.3f} "
            f"| {'yes' if run.passed else 'NO'} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "check")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--large", action="store_true", help="add the ~200 MB HiFi-GAN")
    parser.add_argument("--md", type=Path, help="write the markdown table here too")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, "build_model") for name in MODELS]
    if args.large:
        jobs.append(("hifigan", "build_model_large"))
    header = [
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"{platform.machine()}, {args.runs} timed runs, medians",
        "",
        "| model | provider | optimization | session ref (ms) | session folded (ms) | ratio "
        "| latency ref (ms) | latency folded (ms) | ratio | equivalent |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines, raw = list(header), {}
    for name, factory in jobs:
        label = name + ("-large" if factory.endswith("_large") else "")
        report = measure(name, factory, args.out, args.runs)
        raw[label] = report.to_dict()
        lines.extend(rows(label, report))
        print(lines[-1], file=sys.stderr)
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "check.json").write_text(json.dumps(raw, indent=2))
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
