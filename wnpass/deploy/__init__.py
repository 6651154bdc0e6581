"""The deployment pipeline: fold in PyTorch, export to ONNX, fold what is left, verify.

``export(model, example_inputs, path)``:

1. copies the model as given, before any forward of its own (what a forward writes, a buffer
   or a plain attribute such as a streaming state, is exported as the caller set it), and
   folds weight norm out of the copy (``fold_weight_norm``; the caller's model keeps training
   as it was), unless ``fold_in_torch=False``;
2. exports with ``torch.onnx.export`` (the dynamo exporter by default, the TorchScript one on
   request), with dynamic axes on request;
3. folds whatever weight norm is still in the graph (``fold_onnx``: all of it when PyTorch did
   not fold first) into the output file, written atomically;
4. with ``verify`` (the default), compares the PyTorch model's outputs (a Python number it
   returns as the 0-d output the exporter makes of it) with ONNX Runtime's on the example
   inputs, each fed to the graph input of its name, on every available provider (or those
   asked for), and times the ONNX model there. PyTorch runs twice on the same inputs first:
   a model whose outputs differ between the two (it draws random numbers, counts its calls)
   has no outputs to verify against, and the verification fails without comparing. With
   dynamic axes, ONNX Runtime is also compared with PyTorch with every dynamic axis doubled
   (each input repeated along it), where a size the trace fixed shows, and doubled plus one,
   where a branch on the size's parity does (:data:`PROBES`). Where torch.export held an
   axis to a range of sizes and PyTorch runs just outside it, the export is refused unless
   the range is accepted (``accept_ranges``); below a range from 2 up (torch's 0/1
   specialization), ONNX Runtime is compared with PyTorch at 1, and so it is at the sizes
   nearest the example's where a condition torch.export took on a size fails
   (:mod:`wnpass.assumed`).

A warning of the exporter that its result may be wrong (TorchScript's ``TracerWarning``: a
Python value the trace fixed) is logged and listed in the report.

PyTorch's forward and the exporter each run on a copy of the example inputs, so a forward
that changes its input in place leaves ONNX Runtime the inputs as given.

The caller's model comes back as it came: its weight norm (unless it cannot be copied: its own
``__deepcopy__`` refuses; it is then folded in place, and the report says so), the training
flag of every submodule (the pipeline runs it in eval mode), and its state: each of the
pipeline's forwards gives back the buffers and plain attributes it wrote
(:func:`~wnpass.fx.forward.state_given_back`), and the parameters it wrote (an init on the
first call), which a warning names. The report says what was folded where,
whether every initializer carries its PyTorch parameter's name, and, when verified, whether
the outputs matched (``verified=False``: ``matches`` is None, nothing was compared).

The package, a module a step: :mod:`~wnpass.deploy.pipeline` (``export`` itself),
:mod:`~wnpass.deploy.inputs` (the model's inputs as the exporters see them),
:mod:`~wnpass.deploy.forwards` (the model given back after each of wnpass's forwards),
:mod:`~wnpass.deploy.exporter` (``torch.onnx.export``, its warnings and failures),
:mod:`~wnpass.deploy.ranges` (torch.export's ranges and conditions, checked),
:mod:`~wnpass.deploy.resize` (inputs of other lengths), :mod:`~wnpass.deploy.probes`
(PyTorch at other sizes), :mod:`~wnpass.deploy.names` (the weights' PyTorch names),
:mod:`~wnpass.deploy.outputs` (values between PyTorch and ONNX Runtime),
:mod:`~wnpass.deploy.compare` (ONNX Runtime against PyTorch) and
:mod:`~wnpass.deploy.report` (what it says).
"""

from wnpass.deploy.exporter import exporters_silenced
from wnpass.deploy.forwards import parameters_written_line
from wnpass.deploy.pipeline import export, opset_range, validate_export_options
from wnpass.deploy.report import (
    PROBES,
    SHORTER,
    DynamicProbe,
    ExportError,
    ExportReport,
    ModelRunError,
)

__all__ = [
    "PROBES",
    "SHORTER",
    "DynamicProbe",
    "ExportError",
    "ExportReport",
    "ModelRunError",
    "export",
    "exporters_silenced",
    "opset_range",
    "parameters_written_line",
    "validate_export_options",
]
