"""wnpass: weight normalization as a graph-compiler pass for PyTorch and ONNX."""

from __future__ import annotations

from wnpass.errors import WnpassError
from wnpass.onnx.api import fold_onnx, inspect_onnx
from wnpass.report import FoldReport, SiteReport

__all__ = ["FoldReport", "SiteReport", "WnpassError", "__version__", "fold_onnx", "inspect_onnx"]

__version__ = "0.1.0"
