"""Values between PyTorch and ONNX Runtime: the forward's outputs as the graph's outputs will
be, the example inputs as the graph's feeds, and whether two PyTorch runs gave the same.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import onnx_ir as ir
import torch

from wnpass.errors import InvalidArgumentError

# What an exporter makes a graph output of, in the order torch's pytree flattens the result:
# a tensor, and a Python number as a 0-d tensor: ``x.shape[0]`` under TorchScript, ``.item()``
# under dynamo (each fails on the other; measured with torch 2.13). None, a string and other
# objects become no output.
Output = np.ndarray | bool | int | float


def forward_outputs(result: Any) -> list[Output]:
    """The forward's ``result`` as the exported graph's outputs will be: each tensor as an
    array (:func:`_to_numpy`: a dtype that cannot be verified is refused here, before anything
    is exported), each Python number as it is, until the graph says its type
    (:func:`expected_outputs`)."""
    leaves = torch.utils._pytree.tree_leaves(result)
    return [  # copies: a buffer forward returns, and changes in place on its next run, stays
        _to_numpy(leaf).copy() if isinstance(leaf, torch.Tensor) else leaf
        for leaf in leaves
        if isinstance(leaf, torch.Tensor | bool | int | float)
    ]


def require_outputs(result: Any) -> None:
    """Refuse a forward whose result holds no tensor and no number: the exporters make a graph
    of no outputs of it, which was written (exit 0) or, verified, blamed on ONNX Runtime
    (t110)."""
    leaves = torch.utils._pytree.tree_leaves(result)
    if any(isinstance(leaf, torch.Tensor | bool | int | float) for leaf in leaves):
        return
    opaque = [leaf for leaf in leaves if _holds_tensors(leaf)]
    if opaque:  # a dataclass of tensors: held, but out of the exporters' reach (t164)
        kind = type(opaque[0]).__name__
        raise InvalidArgumentError(
            f"the model's forward returns a {kind}, an object the exporters cannot take "
            "apart: return its tensors as a tuple or a dict (or register the class with "
            "torch.utils._pytree)"
        )
    what = "None" if result is None else f"a {type(result).__name__} holding no tensor"
    raise InvalidArgumentError(
        f"the model's forward returns {what}: an exported graph would have no output"
    )


def _holds_tensors(leaf: Any) -> bool:
    """Whether an object pytree does not take apart holds tensors in its attributes."""
    fields = getattr(leaf, "__dict__", None)
    return isinstance(fields, dict) and any(isinstance(v, torch.Tensor) for v in fields.values())


def expected_outputs(graph: ir.Graph, outputs: list[Output]) -> list[np.ndarray]:
    """What each graph output must hold: the forward's outputs paired with the graph's in
    order, each number as a 0-d array of its graph output's type (TorchScript makes an ``int``
    int64, a ``float`` float64; dynamo a ``.item()`` the type of its tensor), exactly or not
    at all. Where the counts differ the pairing is unknown, and verification is declined."""
    if len(graph.outputs) != len(outputs):
        raise InvalidArgumentError(
            f"cannot verify: the exported graph has {len(graph.outputs)} outputs where the "
            f"forward returned {len(outputs)} tensors and numbers; which is which is unknown"
        )
    return [
        _as_pairs(output, value)
        if isinstance(output, np.ndarray)
        else _scalar(f"output {value.name}", output, value)
        for value, output in zip(graph.outputs, outputs, strict=True)
    ]


# The real type an exporter stores each complex type's parts in.
_COMPLEX_PARTS = {
    np.dtype(np.complex64): ir.DataType.FLOAT,
    np.dtype(np.complex128): ir.DataType.DOUBLE,
}


def _as_pairs(output: np.ndarray, value: ir.Value) -> np.ndarray:
    """A complex output (or input) as the graph holds it where the exporter made it real
    pairs (the dynamo exporter: ``torch.view_as_real``, a last axis of 2 in the parts' type);
    any other as it is. A complex input fed as it was failed to run, and a correct file was
    called not deployable (t164)."""
    parts = _COMPLEX_PARTS.get(output.dtype)
    shape = value.shape
    if (
        parts is None
        or value.dtype != parts
        or (shape is not None and len(shape) != output.ndim + 1)
    ):
        return output
    return np.stack([output.real, output.imag], axis=-1)


def as_array(tensor: torch.Tensor) -> np.ndarray | None:
    """``tensor`` as the array ONNX Runtime and onnx-ir take or give for it; None where numpy
    has no such type (float8, complex32, ...). numpy has no bfloat16 either: a bfloat16 tensor
    goes through float32 (which holds every bfloat16 value exactly) to ml_dtypes' bfloat16,
    the type ONNX Runtime's and onnx-ir's bfloat16 arrays have."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy().astype(ml_dtypes.bfloat16)
    try:
        return tensor.numpy()
    except TypeError:
        return None


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """``tensor`` as ONNX Runtime takes or gives it, to verify with. A dtype its Python API
    cannot exchange (bfloat16: it neither takes ml_dtypes' arrays nor gives any; float8,
    complex32, ...: numpy has no such type) is declined before anything is exported, as is a
    sparse tensor (said as such: t110 said its dtype)."""
    if tensor.layout != torch.strided:
        layout = str(tensor.layout).removeprefix("torch.")
        raise InvalidArgumentError(
            f"cannot verify: a {layout} tensor, which ONNX Runtime neither takes nor gives "
            "(give dense tensors: .to_dense())"
        )
    array = as_array(tensor) if tensor.dtype != torch.bfloat16 else None
    if array is None:
        raise InvalidArgumentError(
            f"cannot verify: onnxruntime's Python API takes and gives no "
            f"{str(tensor.dtype).removeprefix('torch.')} arrays; export without verification"
        )
    return array


def example_arrays(graph_inputs: dict[str, Any]) -> dict[str, Any]:
    """The example inputs by graph input name (:func:`graph_arguments`), each tensor as the array
    to feed."""
    return {
        name: _to_numpy(value) if isinstance(value, torch.Tensor) else value
        for name, value in graph_inputs.items()
    }


def feeds_for(graph: ir.Graph, examples: dict[str, Any]) -> dict[str, np.ndarray]:
    """The example inputs for the graph's inputs, paired by name: TorchScript drops inputs
    that ``forward`` never reads, so the graph's inputs are a subset of the named ones
    (:func:`graph_arguments`), not a prefix. A Python number the graph takes (TorchScript
    ``bool``, ``int``, ``float``) is fed as a scalar of the input's type. An input that has an
    initializer is a weight, not one of forward's: below IR version 4 (opsets 7 and 8 of the
    TorchScript exporter) every initializer is also listed as a graph input."""
    feeds = {}
    for value in graph.inputs:
        if value.name in graph.initializers:
            continue
        if value.name not in examples:
            raise InvalidArgumentError(
                f"cannot verify: the exported graph takes an input {value.name!r} that is "
                f"none of the inputs named after forward's parameters ({', '.join(examples)})"
            )
        example = examples[value.name]
        if isinstance(example, np.ndarray):  # complex: as the graph takes it (t164)
            feeds[value.name] = _as_pairs(example, value)
        elif isinstance(example, (bool, int, float)) and value.dtype is not None:
            feeds[value.name] = _scalar(f"input {value.name}", example, value)
        else:
            raise InvalidArgumentError(
                f"cannot verify: input {value.name}: ONNX Runtime takes no "
                f"{type(example).__name__}; give tensors as example inputs"
            )
    return feeds


def _scalar(what: str, example: bool | float, value: ir.Value) -> np.ndarray:
    """A Python number as the 0-d array of graph input or output ``value``'s type, exactly or
    not at all (``what`` names it)."""
    dtype = value.dtype
    if dtype is None:
        raise InvalidArgumentError(f"cannot verify: {what} has no type in the graph")
    try:
        scalar = np.array(example, dtype=dtype.numpy())
    except (OverflowError, ValueError, TypeError):
        scalar = None
    if scalar is None or scalar.item() != example:
        raise InvalidArgumentError(
            f"cannot verify: {what}: {example!r} is not exactly a "
            f"{dtype.name.lower()}, its type in the graph"
        )
    return scalar


def changed_outputs(first: list[Output], second: list[Output]) -> list[int]:
    """The outputs (by position) of two PyTorch runs on the same inputs that are not the same
    bit for bit: such an output is no reference, as the model gives another each time (random
    numbers, however small: a tolerance would pass noise below it). Every output where the
    runs returned other counts."""
    if len(first) != len(second):
        return list(range(len(first)))
    return [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if not _same(a, b)]


def _same(a: Output, b: Output) -> bool:
    """The same value: arrays of one dtype, shape and bytes (NaN where the other has NaN);
    numbers of one type and value (NaN alike)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and (a.dtype, a.shape) == (b.dtype, b.shape)
            and a.tobytes() == b.tobytes()
        )
    return type(a) is type(b) and (a == b or (a != a and b != b))
