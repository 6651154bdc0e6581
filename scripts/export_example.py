"""Export an example model from models/ to ONNX, weight norm still in it (for the quick start).

python scripts/export_example.py models/hifigan.py hifigan.onnx [--dynamo]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType

import torch


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"export_example: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export(
    model_py: Path, out: Path, *, dynamo: bool = False, factory: str = "build_model"
) -> None:
    module = load_module(model_py)
    model = getattr(module, factory)().eval()
    inputs_factory = "example_inputs_large" if factory.endswith("_large") else "example_inputs"
    inputs = getattr(module, inputs_factory)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, inputs, out, dynamo=dynamo, verbose=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_py", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--dynamo", action="store_true", help="use the dynamo exporter")
    parser.add_argument("--factory", default="build_model")
    args = parser.parse_args()
    export(args.model_py, args.output, dynamo=args.dynamo, factory=args.factory)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
