"""Weight-norm checkpoints without the model's code: fold, convert and inspect state dicts.

Formats: ``torch.save`` files (``.pt``, ``.pth``, ``.bin``, ``.pth.tar``, ``.ckpt``; read with
``weights_only=True``),
``.safetensors``, and sharded indexes (``*.safetensors.index.json``,
``pytorch_model.bin.index.json``). Modules, one job each: :mod:`~wnpass.checkpoint.formats`
(names), :mod:`~wnpass.checkpoint.reading`, :mod:`~wnpass.checkpoint.tensorfile`
(safetensors files as numpy, without torch), :mod:`~wnpass.checkpoint.pairs`,
:mod:`~wnpass.checkpoint.fold`, :mod:`~wnpass.checkpoint.writing`,
:mod:`~wnpass.checkpoint.verify`, :mod:`~wnpass.checkpoint.report`, and the public functions in
:mod:`~wnpass.checkpoint.api`.
"""

from __future__ import annotations

from wnpass import _lazy_exports  # the package is imported already: this costs nothing

TYPE_CHECKING = False
if TYPE_CHECKING:  # the real imports, for type checkers and readers
    from wnpass.checkpoint.api import (
        FORMS,
        convert_checkpoint,
        fold_checkpoint,
        inspect_checkpoint,
    )
    from wnpass.checkpoint.formats import is_checkpoint_path
    from wnpass.checkpoint.report import CheckpointReport, ModelCheckReport, OutputRow, PairReport

__all__ = [
    "FORMS",
    "CheckpointReport",
    "ModelCheckReport",
    "OutputRow",
    "PairReport",
    "convert_checkpoint",
    "fold_checkpoint",
    "inspect_checkpoint",
    "is_checkpoint_path",
]

# Each name is imported on first use, as wnpass's own are: the API imports numpy and the
# readers (a quarter of a second), and the command line needs only the names of the formats
# (wnpass.checkpoint.formats) to tell a checkpoint from an ONNX file.
_LAZY = {
    "FORMS": "wnpass.checkpoint.api",
    "convert_checkpoint": "wnpass.checkpoint.api",
    "fold_checkpoint": "wnpass.checkpoint.api",
    "inspect_checkpoint": "wnpass.checkpoint.api",
    "is_checkpoint_path": "wnpass.checkpoint.formats",
    "CheckpointReport": "wnpass.checkpoint.report",
    "ModelCheckReport": "wnpass.checkpoint.report",
    "OutputRow": "wnpass.checkpoint.report",
    "PairReport": "wnpass.checkpoint.report",
}

__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)
