"""ONNX Runtime, imported lazily, and sessions that say which provider really runs them.

ONNX Runtime silently falls back to the CPU when a provider cannot be created; a session is
only reported as running on CUDA when ``session.get_providers()`` puts CUDA first.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import math
import re
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx_ir as ir

from wnpass.errors import (
    InvalidArgumentError,
    InvalidModelError,
    UsageError,
    WnpassError,
    one_line,
    printable,
    shortened,
)
from wnpass.verify.compare import compare_within

__all__ = [
    "BITS_TYPES",
    "FED_AS_BITS",
    "OPTIMIZATION_LEVELS",
    "PACKED_TYPES",
    "PROVIDERS",
    "OutOfMemoryError",
    "RunFailedError",
    "Session",
    "SessionError",
    "available",
    "onnxruntime",
    "open_session",
    "ort_feeds",
    "quiet_default_logger",
    "resolve",
    "run",
    "varying_outputs",
    "warm_up",
]

# ONNX Runtime's log severity for wnpass's sessions and its default logger: fatal only. Its
# logger writes coloured lines straight to stderr; every failure it would log also raises an
# exception, which wnpass reports as one line carrying ONNX Runtime's message.
ORT_LOG_FATAL = 4

# Short names accepted by --provider, and the ONNX Runtime provider each stands for.
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
OPTIMIZATION_LEVELS = ("default", "disabled")


class MissingRuntimeError(WnpassError):
    """onnxruntime is not installed."""


# Whether onnxruntime's default logger (process-wide: it logs what happens outside a session,
# such as a provider library that fails to load) is made fatal only. The wnpass program asks
# for it (its errors are one line); a library caller's own sessions keep their warnings.
_quiet_default_logger = False


def quiet_default_logger() -> None:
    """Make onnxruntime's default logger fatal only (``ORT_LOG_FATAL``), now if it is imported
    already, else when :func:`onnxruntime` imports it. For the program, not the library."""
    global _quiet_default_logger
    _quiet_default_logger = True
    if onnxruntime.cache_info().currsize:
        onnxruntime().set_default_logger_severity(ORT_LOG_FATAL)


@functools.cache
def onnxruntime() -> ModuleType:
    """Import onnxruntime, or say which extra installs it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingRuntimeError(
            "onnxruntime is not installed: pip install 'wnpass[cpu]' (or 'wnpass[gpu]' for CUDA)"
        ) from None
    if _quiet_default_logger:
        ort.set_default_logger_severity(ORT_LOG_FATAL)
    return ort


def _session_options(ort: ModuleType) -> Any:
    """Session options that keep ONNX Runtime's own logging quiet (``ORT_LOG_FATAL``)."""
    options = ort.SessionOptions()
    options.log_severity_level = ORT_LOG_FATAL
    return options


def available() -> list[str]:
    """Short names of the providers of PROVIDERS that this onnxruntime build offers."""
    offered = set(onnxruntime().get_available_providers())
    return [short for short, name in PROVIDERS.items() if name in offered]


def resolve(requested: list[str] | None) -> list[str]:
    """The providers to run: those asked for (each must exist), else every available one."""
    if not requested:
        return available()
    unknown = [p for p in requested if p not in PROVIDERS]
    if unknown:
        raise InvalidArgumentError(
            f"{unknown[0]!r}: unknown; choose from {', '.join(PROVIDERS)}", parameter="providers"
        )
    missing = [p for p in requested if p not in available()]
    if missing:
        raise InvalidArgumentError(
            f"{missing[0]!r}: not available in this onnxruntime build "
            f"(available: {', '.join(available())}); "
            "for CUDA install 'wnpass[gpu]' on a machine with a GPU",
            parameter="providers",
        )
    return list(dict.fromkeys(requested))


def warm_up(provider: str) -> None:
    """Create and drop a session on a tiny model, so that ONNX Runtime's one-time start-up
    (and the provider's) is not charged to the first model's session creation."""
    import onnx

    ort = onnxruntime()
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "warm_up",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 8
    providers = list(dict.fromkeys([PROVIDERS[provider], PROVIDERS["cpu"]]))
    ort.InferenceSession(
        model.SerializeToString(), sess_options=_session_options(ort), providers=providers
    )


class SessionError(InvalidModelError):
    """ONNX Runtime could not load or run ``model`` (which of the models compared it was)."""

    def __init__(self, model: Path, detail: str, reason: str | None = None) -> None:
        self.model = model
        self.reason = reason or detail  # what a report says of it (whole, without the path)
        super().__init__(f"{model}: {detail}")


class RunFailedError(SessionError):
    """ONNX Runtime failed to run a model it had loaded; ``reason`` is its whole message (the
    error's own line is cut to a readable length, its end kept: :func:`_short`)."""

    def __init__(self, model: Path, reason: str, hint: str = "") -> None:
        super().__init__(model, f"onnxruntime failed to run it: {_short(reason)}{hint}", reason)


class OutOfMemoryError(WnpassError):
    """ONNX Runtime ran out of memory running ``model``: the machine's limit, which says
    nothing of the model compared (two identical models do it when the first one's session
    holds the memory), so never a failed check."""

    def __init__(self, model: Path, reason: str, where: str = "") -> None:
        """``where``: the inputs it ran on, where they are not those the report lists."""
        self.model, self.reason = model, reason
        at = f" {where}" if where else ""
        super().__init__(
            f"{model}: onnxruntime ran out of memory running it{at} ({_short(reason)})"
        )


def _short(reason: str) -> str:
    """ONNX Runtime's message cut for an error's one line (a report keeps it whole): its start
    (the node) and its end (what was wrong: ``requested shape:{5,7}``), without the middle (the
    source file and the C++ function that raised)."""
    return shortened(reason, 240)


# What ONNX Runtime's messages say when an allocation failed (its CPU arena, the C++ runtime,
# CUDA's allocator).
_OUT_OF_MEMORY = ("bad_alloc", "failed to allocate", "out of memory", "allocaterawinternal")
# The statuses of ONNX Runtime's errors that say what was wrong with the inputs or the model,
# never that memory ran out (``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : ...``).
_NOT_MEMORY = ("INVALID_ARGUMENT", "NO_SUCHFILE", "NO_MODEL", "INVALID_PROTOBUF", "INVALID_GRAPH",
               "NOT_IMPLEMENTED")  # fmt: skip


def _out_of_memory(error: Exception, reason: str) -> bool:
    """Whether ONNX Runtime's ``error`` says an allocation failed. What is the model's own is
    no news of that: a status that blames the inputs or the model, quoted text (a node named
    'bad_alloc', or ``r' out of memory '``), and the name ONNX Runtime writes unquoted after
    ``input``/``output`` (``Got invalid dimensions for input: bad_alloc``); the rest of the
    message is matched, so a model's input named ``memory`` leaves "out of memory" be."""
    if isinstance(error, MemoryError):
        return True
    status = re.match(r"\[ONNXRuntimeError\] : \d+ : (\w+)", reason)
    if status is not None and status[1] in _NOT_MEMORY:
        return False
    # a node's name, which may hold quotes itself (t238: Name:'r' out of memory ''), up to
    # the last "' Status Message:" after it, which is ONNX Runtime's own
    said = re.sub(r"Name:'.*' Status Message:", "", reason, flags=re.DOTALL)
    said = re.sub(r"'[^']*'", "''", said)
    said = re.sub(r"\b(?:input|output)s?\b[:\s]+\S+", "", said, flags=re.IGNORECASE)
    return any(word in said.lower() for word in _OUT_OF_MEMORY)


def run(session: Session, model: Path, feeds: dict[str, Any]) -> list[Any]:
    """Run once, turning onnxruntime's failure into one line naming the model
    (:class:`RunFailedError`; :class:`OutOfMemoryError` when an allocation failed)."""
    try:
        return session.run(feeds)
    except UsageError as error:  # what ONNX Runtime's Python API cannot give of this model
        raise UsageError(f"{model}: {error}") from None
    except WnpassError:
        raise
    except Exception as error:
        reason = printable(" ".join(str(error).split())) or type(error).__name__
        if _out_of_memory(error, reason):
            raise OutOfMemoryError(model, reason) from None
        raise RunFailedError(model, reason) from None


# Types numpy lacks (ml_dtypes adds them), by ONNX Runtime's name for their tensors. Its Python
# binding has no numpy type for them: session.run refuses them as outputs, or hands float8e4m3fn
# back as its uint8 bit patterns (which would compare as integers: -0 against +0 differs by
# 128), and cannot take them as inputs. They cross it as OrtValues, read from their bits.
BITS_TYPES = {
    f"tensor({t.name.lower()})": t
    for t in (
        ir.DataType.BFLOAT16,
        ir.DataType.FLOAT8E4M3FN,
        ir.DataType.FLOAT8E4M3FNUZ,
        ir.DataType.FLOAT8E5M2,
        ir.DataType.FLOAT8E5M2FNUZ,
        ir.DataType.FLOAT8E8M0,
        ir.DataType.INT4,
        ir.DataType.UINT4,
        ir.DataType.INT2,
        ir.DataType.UINT2,
        ir.DataType.FLOAT4E2M1,  # t200: compared as packed bytes, two elements to each
    )
}
# Several elements to a byte, ONNX packs them (low bits first) where ml_dtypes gives each its
# own byte. An output is unpacked; an input cannot be fed from numpy at all: an OrtValue takes
# its shape from the numpy array it is made of, so packed bytes make one of the wrong shape.
PACKED_TYPES = frozenset(
    {
        ir.DataType.INT4,
        ir.DataType.UINT4,
        ir.DataType.INT2,
        ir.DataType.UINT2,
        ir.DataType.FLOAT4E2M1,
        ir.DataType.FLOAT6E2M3,
        ir.DataType.FLOAT6E3M2,
    }
)
# The ml_dtypes arrays fed as OrtValues of their bits, and the ONNX type each stands for.
FED_AS_BITS = {np.dtype(t.numpy()): t for t in BITS_TYPES.values() if t not in PACKED_TYPES}


def ort_feeds(feeds: dict[str, Any]) -> dict[str, Any]:
    """``feeds`` as ONNX Runtime takes them: an array of a type numpy lacks (bfloat16, the
    float8s: ``BITS_TYPES``) becomes an OrtValue of its bits (convert once, so that timed runs
    do not pay for it); anything else is left as it is."""
    if not any(isinstance(v, np.ndarray) and v.dtype in FED_AS_BITS for v in feeds.values()):
        return feeds
    ort = onnxruntime()
    return {  # its bits in C order: the OrtValue takes the buffer as it is, strides unread
        name: ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
            np.ascontiguousarray(value).view(f"u{value.itemsize}"), FED_AS_BITS[value.dtype].value
        )
        if isinstance(value, np.ndarray) and value.dtype in FED_AS_BITS
        else value
        for name, value in feeds.items()
    }


def _unpacked(raw: bytes, dtype: ir.DataType, count: int) -> np.ndarray:
    """``count`` elements packed ``dtype.bitwidth`` bits each, low bits first (ONNX's layout),
    one to a byte with its bits low (ml_dtypes' layout), as ``dtype``'s numpy type."""
    bits = dtype.bitwidth
    shifts = np.arange(0, 8, bits, dtype=np.uint8)
    codes = (np.frombuffer(raw, np.uint8)[:, None] >> shifts) & np.uint8((1 << bits) - 1)
    return codes.reshape(-1)[:count].view(dtype.numpy())


def _from_ort_value(name: str, value: Any) -> np.ndarray | None:
    """An output OrtValue as a numpy array; one of a type numpy lacks (``BITS_TYPES``, which
    ``OrtValue.numpy()`` refuses or gives as bits) as an ml_dtypes array, read from its bits in
    host memory; an empty optional as None, as ``session.run`` gives it (it says it is a
    tensor, and asking its type crashes the process: t111)."""
    if not value.has_value():
        return None
    if not value.is_tensor():
        raise UsageError(
            f"output {name} is a {value.data_type()}: ONNX Runtime's Python API cannot read "
            "it beside an output of a type numpy lacks (bfloat16, float8, int4)"
        )
    dtype = BITS_TYPES.get(value.data_type())
    if dtype is None:
        return np.asarray(value.numpy())
    if value.device_name().lower() != "cpu":
        where = value.device_name()
        raise UsageError(f"output {name}: a {dtype.name.lower()} output on {where} is unread")
    size, shape = value.tensor_size_in_bytes(), value.shape()
    raw = ctypes.string_at(value.data_ptr(), size) if size else b""
    if dtype in PACKED_TYPES:
        return _unpacked(raw, dtype, math.prod(shape)).reshape(shape)
    return np.frombuffer(raw, dtype.numpy()).reshape(shape)


@dataclasses.dataclass
class Session:
    """An inference session and what it really runs on."""

    session: Any
    provider: str  # the short name asked for
    actual: str  # the short name of the provider ONNX Runtime put first
    seconds_to_create: float
    # the values given to replace initializers, which ONNX Runtime reads where they are
    held: list[tuple[str, Any]] = dataclasses.field(default_factory=list, repr=False)

    @property
    def fell_back(self) -> bool:
        return self.actual != self.provider

    @functools.cached_property
    def bits_outputs(self) -> bool:
        """Some output is of a type numpy lacks (``BITS_TYPES``): ``session.run`` cannot
        return it as what it is."""
        return any(o.type in BITS_TYPES for o in self.session.get_outputs())

    def output_names(self) -> list[str]:
        """The model's output names, in the order :meth:`run` gives the outputs."""
        return [output.name for output in self.session.get_outputs()]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """Run once on ``feeds`` (arrays, or :func:`ort_feeds`'s); the outputs as numpy
        arrays (those of types numpy lacks as ml_dtypes arrays), lists (sequences), dicts
        (maps) or None (an empty optional)."""
        feeds = ort_feeds(feeds)
        if not self.bits_outputs:
            return list(self.session.run(None, feeds))
        # run_with_ort_values hands back OrtValues, which can be read by their bits; it takes
        # OrtValues only, and ONNX Runtime makes none of strings
        if any(isinstance(v, np.ndarray) and v.dtype.kind == "U" for v in feeds.values()):
            raise UsageError(
                "a string input beside an output of a type numpy lacks (bfloat16, float8, "
                "int4): ONNX Runtime's Python API cannot run such a model; nothing compared"
            )
        ort = onnxruntime()
        values = {
            name: value
            if isinstance(value, ort.OrtValue)
            else ort.OrtValue.ortvalue_from_numpy(value)
            for name, value in feeds.items()
        }
        outputs = self.session.run_with_ort_values(None, values)
        names = [o.name for o in self.session.get_outputs()]
        return [_from_ort_value(n, v) for n, v in zip(names, outputs, strict=True)]


def open_session(
    model: Path,
    provider: str,
    *,
    optimization: str = "default",
    threads: int | None = None,
    repeats: int = 1,
    initializers: Mapping[str, np.ndarray] | None = None,
) -> Session:
    """Create a session on ``provider``; time it (the median of ``repeats`` creations);
    detect a silent fall-back to the CPU. ``initializers``: values that replace the model's
    initializers of those names (ONNX Runtime reads them where they are: the session holds
    them)."""
    ort = onnxruntime()
    options = _session_options(ort)
    held = [
        (name, ort.OrtValue.ortvalue_from_numpy(value))
        for name, value in (initializers or {}).items()
    ]
    for name, value in held:
        options.add_initializer(name, value)
    if optimization == "disabled":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    providers = [PROVIDERS[provider]]
    if provider != "cpu":
        providers.append(PROVIDERS["cpu"])
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        try:
            session = ort.InferenceSession(str(model), sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime raises its own types for models it cannot load
            raise SessionError(model, f"onnxruntime cannot load it: {one_line(error)}") from None
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    first = session.get_providers()[0]
    actual = next((short for short, name in PROVIDERS.items() if name == first), first)
    return Session(session, provider, actual, seconds, held)


def varying_outputs(
    session: Session,
    model: Path,
    feeds: dict[str, Any],
    first: list[Any],
    tolerances: tuple[float | None, float | None],
    where: str = "",
) -> list[str]:
    """The outputs a second run of ``session`` on ``feeds`` gives other values of than its
    first (``first``), beyond the check's own tolerance (float noise of a kernel that sums in
    another order is within it). An unseeded random op draws the same values in every new
    session of a process, so two models would agree on their first runs by the seed alone; a
    second run of the same session draws new ones. ``where``: the inputs' sizes, said where
    the comparison runs out of memory (t237: it read as the first sizes')."""
    names = session.output_names()
    again = run(session, model, feeds)
    what = f"{model}: comparing two runs of its outputs{' ' + where if where else ''}"
    rows = compare_within((names, first), (names, again), *tolerances, what)
    return [row.name for row in rows if not row]
