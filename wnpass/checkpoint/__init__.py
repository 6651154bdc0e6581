"""Weight-norm checkpoints without the model's code: fold, convert and inspect state dicts.

Formats: ``torch.save`` files (``.pt``, ``.pth``, ``.bin``; read with ``weights_only=True``),
``.safetensors``, and sharded indexes (``*.safetensors.index.json``,
``pytorch_model.bin.index.json``). Modules, one job each: :mod:`~wnpass.checkpoint.formats`
(names), :mod:`~wnpass.checkpoint.reading`, :mod:`~wnpass.checkpoint.tensorfile`
(safetensors files as numpy, without torch), :mod:`~wnpass.checkpoint.pairs`,
:mod:`~wnpass.checkpoint.fold`, :mod:`~wnpass.checkpoint.writing`,
:mod:`~wnpass.checkpoint.verify`, :mod:`~wnpass.checkpoint.report`, and the public functions in
:mod:`~wnpass.checkpoint.api`.
"""

from __future__ import annotations

from wnpass.checkpoint.api import FORMS, convert_checkpoint, fold_checkpoint, inspect_checkpoint
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
