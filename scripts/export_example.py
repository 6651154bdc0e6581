"""Export an example model from models/ to ONNX, weight norm still in it (for the quick start).

python scripts/export_example.py models/hifigan.py hifigan.onnx [--dynamo]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

from wnpass.fx.loading import load_model_py


def export(
    model_py: Path, out: Path, *, dynamo: bool = False, factory: str = "build_model"
) -> None:
    """Export ``model_py``'s model as it is, weight norm and all, on its example inputs."""
    model, inputs = load_model_py(model_py, factory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), inputs, out, dynamo=dynamo, verbose=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_py", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--dynamo", action="store_true", help="use the dynamo exporter")
    parser.add_argument("--factory", default="build_model")
    args = parser.parse_args()
    export(args.model_py, args.output, dynamo=args.dynamo, factory=args.factory)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
