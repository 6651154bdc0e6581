"""wnpass: weight normalization as a graph-compiler pass for PyTorch and ONNX."""

from __future__ import annotations

from wnpass.errors import WnpassError
from wnpass.onnx.api import fold_onnx, inspect_onnx
from wnpass.report import FoldReport, SiteReport
from wnpass.verify.check import check
from wnpass.verify.report import CheckReport

__all__ = [
    "CheckReport",
    "FoldReport",
    "SiteReport",
    "WnpassError",
    "__version__",
    "check",
    "fold_onnx",
    "inspect_onnx",
]

__version__ = "0.1.0"
