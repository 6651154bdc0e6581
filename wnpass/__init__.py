"""wnpass: weight normalization as a graph-compiler pass for PyTorch and ONNX."""

from __future__ import annotations

# Nothing is imported here at run time: the program (wnpass.program) installs its signal
# handlers after this runs, and typing alone takes milliseconds.
TYPE_CHECKING = False
__all__ = [
    "ApplyReport",
    "CheckReport",
    "DataInitReport",
    "ExportReport",
    "FoldReport",
    "MeanOnlyBatchNorm",
    "ParamSite",
    "SiteReport",
    "TorchFoldReport",
    "WnpassError",
    "__version__",
    "apply_weight_norm",
    "check",
    "data_init",
    "export",
    "fold_onnx",
    "fold_weight_norm",
    "inspect_onnx",
    "load_model_py",
    "load_state_dict_any",
]

__version__ = "0.1.0"

if TYPE_CHECKING:  # the real imports, for type checkers and readers
    from collections.abc import Callable

    from wnpass.deploy import ExportReport, export
    from wnpass.errors import WnpassError
    from wnpass.fx.apply import apply_weight_norm
    from wnpass.fx.data_init import DataInitReport, data_init
    from wnpass.fx.fold import TorchFoldReport, fold_weight_norm
    from wnpass.fx.loading import load_model_py
    from wnpass.fx.mean_only_bn import MeanOnlyBatchNorm
    from wnpass.fx.report import ApplyReport, ParamSite
    from wnpass.fx.state import load_state_dict_any
    from wnpass.onnx.api import fold_onnx, inspect_onnx
    from wnpass.report import FoldReport, SiteReport
    from wnpass.verify.check import check
    from wnpass.verify.report import CheckReport

# Every name is imported on first use: the PyTorch side imports torch (about two seconds) and
# the ONNX side onnx and onnx-ir (0.2 s; 0.5 s more with sympy, which the ONNX commands defer),
# and a command should pay only for what it uses. No name here may be that of a submodule of
# ``wnpass``: importing the submodule binds it as the package's attribute over the name (the
# export pipeline lives in ``wnpass.deploy`` for that reason).
_LAZY = {
    "WnpassError": "wnpass.errors",
    "fold_onnx": "wnpass.onnx.api",
    "inspect_onnx": "wnpass.onnx.api",
    "FoldReport": "wnpass.report",
    "SiteReport": "wnpass.report",
    "check": "wnpass.verify.check",
    "CheckReport": "wnpass.verify.report",
    "ApplyReport": "wnpass.fx.report",
    "ParamSite": "wnpass.fx.report",
    "DataInitReport": "wnpass.fx.data_init",
    "MeanOnlyBatchNorm": "wnpass.fx.mean_only_bn",
    "apply_weight_norm": "wnpass.fx.apply",
    "data_init": "wnpass.fx.data_init",
    "load_model_py": "wnpass.fx.loading",
    "load_state_dict_any": "wnpass.fx.state",
    "TorchFoldReport": "wnpass.fx.fold",
    "fold_weight_norm": "wnpass.fx.fold",
    "ExportReport": "wnpass.deploy",
    "export": "wnpass.deploy",
}


def _lazy_exports(
    package: str, table: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for the names of ``table`` (name: the module
    that defines it), each imported on first use; ``__dir__`` lists them too (completion in a
    REPL or an IDE). Subpackages with a costly API (``wnpass.checkpoint``) use it as well."""

    def __getattr__(name: str) -> object:
        if name in table:
            import importlib

            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        import sys

        return sorted({*vars(sys.modules[package]), *table})

    return __getattr__, __dir__


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)
