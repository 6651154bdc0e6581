"""Run a model once on example inputs: eval mode, no grad, its mode restored, errors named.

Example inputs are positional (a tensor or a tuple) or keyword (a dict, for models such as
transformers' that take ``input_ids=``/``pixel_values=``), or both as ``(args, kwargs)`` in a
:class:`Batch`. The outputs are every tensor the forward returned, wherever it put them: tuples,
dicts, ``ModelOutput``s, dataclasses, and objects such as key/value caches (their attributes).
An exception raised by the model's own code becomes :class:`ForwardFailedError`, which names the
model (a user-facing error, exit code 2); so does a ``sys.exit()`` in it, which must not end
wnpass with the model's exit code.

Every forward gets a copy of the example tensors: a model that changes its input in place
(``x.mul_(2)``) would otherwise give the next forward other inputs. Forwards whose outputs are
compared run from one :class:`RngSnapshot`, so a model that draws random numbers (noise,
``F.dropout(training=True)``) draws the same ones each time.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import logging
import random
import sys
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.overrides import TorchFunctionMode

from wnpass.errors import InvalidArgumentError, WnpassError, one_line
from wnpass.fx.arguments import is_lazy
from wnpass.fx.attributes import (
    GENERATORS,
    MODULE_OWN,
    TENSOR_HOOKS,
    Attributes,
    GlobalHooks,
    give_back_values,
    require_readable,
    rng_state,
    same_value,
    set_rng_state,
)
from wnpass.fx.axes import renormed_table
from wnpass.fx.compare import result_tensors
from wnpass.fx.elements import Elements
from wnpass.fx.memory import Bytes, held, span
from wnpass.interrupts import STOPS
from wnpass.plan import ProcessExit, user_code

__all__ = [
    "Batch",
    "ForwardFailedError",
    "GivenBack",
    "RngSnapshot",
    "as_batch",
    "buffer_values",
    "call_model",
    "cloned",
    "evaluating",
    "forward_failed",
    "in_mode",
    "moved_buffers",
    "parameter_prints",
    "run_forward",
    "state_given_back",
    "tensors_in",
    "training",
    "what_it_did",
    "written_parameters",
]

logger = logging.getLogger(__name__)

# What the user's own code (a model.py's body, its factory, a forward) raises is the model's
# failure, not the end of wnpass: any exception, SystemExit (``sys.exit()``, ``exit()``, an
# argparse error) and any other BaseException (``GeneratorExit``, a class of its own). Each
# block that runs it lets the stops through first (``except STOPS: raise``), then catches
# ``BaseException``: KeyboardInterrupt and a SIGTERM stop wnpass as they would anywhere else.


class ForwardFailedError(WnpassError):
    """The model raised while running on its example inputs."""


class ModelExitedError(ForwardFailedError):
    """The model's code called ``sys.exit()`` (or ``os._exit()``) in a forward: the run
    stops, wherever wnpass ran it; where a failed forward is passed over (one in training
    mode, the check of what the forward reads, a size probed), this is not (t344: exit 0)."""


@dataclasses.dataclass(frozen=True)
class Batch:
    """Inputs for ``model(*args, **kwargs)``."""

    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def what_it_did(error: BaseException) -> str:
    """How the user's code failed, for a one-line message: ``raised KeyError: 'x'``, or
    ``called sys.exit(0)`` for a SystemExit (whatever raised it: ``exit()``, argparse)."""
    if isinstance(error, SystemExit):
        code = "" if error.code is None else " ".join(repr(error.code).split())[:240]
        return f"called {'os._exit' if isinstance(error, ProcessExit) else 'sys.exit'}({code})"
    return f"raised {one_line(error, with_type=True)}"


def as_batch(value: Any, parameter: str = "example_inputs") -> Batch:
    """A Batch from a tensor, a tuple/list (positional), a dict (keyword) or a Batch; anything
    else is an error naming ``parameter``."""
    if isinstance(value, Batch):
        return value
    if isinstance(value, torch.Tensor):
        return Batch((value,))
    if isinstance(value, Mapping):
        return Batch((), dict(value))
    if isinstance(value, list | tuple):
        return Batch(tuple(value))
    what = type(value).__name__
    raise InvalidArgumentError(
        f"must be a tensor, a tuple or a dict of keyword inputs, not {what}", parameter=parameter
    )


def evaluating(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """``model`` in eval mode for the block (:func:`in_mode`)."""
    return in_mode(model, training=False)


def training(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """``model`` in training mode for the block (:func:`in_mode`)."""
    return in_mode(model, training=True)


@contextlib.contextmanager
def in_mode(model: nn.Module, *, training: bool) -> Iterator[None]:
    """``model`` in training or eval mode for the block, then every submodule back in its own
    mode (a BatchNorm kept in eval inside a model in training stays in eval). A module whose class
    overrides ``train()`` (a LoRA layer merges its update into its weight in eval mode and
    takes it out again in training mode) gets its own mode back through it, so it undoes what
    it did; the flags are then set as they were. Such an override that raises as the block
    starts is the model's error (:class:`ForwardFailedError`); one that raises as it ends is
    said in a warning (its flag is set all the same), never an error that would hide the
    block's or fail a model whose block succeeded."""
    modes = {module: module.training for module in model.modules()}
    overriding = [m for m in modes if type(m).train is not nn.Module.train]
    try:
        model.train(training)
    except STOPS:
        raise
    except BaseException as error:  # the model's train(): the flags as they were
        _set_flags(modes)
        raise forward_failed(model, error) from error
    try:
        yield
    finally:
        for module in overriding:
            try:
                module.train(modes[module])
            except STOPS:
                raise
            except BaseException as error:  # the model's own train(): its flag is set below
                logger.warning(
                    "%s.train(%s) raised %s: its mode is given back by its flag alone",
                    type(module).__name__, modes[module], one_line(error, with_type=True),
                )  # fmt: skip
        _set_flags(modes)


def _set_flags(modes: Mapping[nn.Module, bool]) -> None:
    for module, training in modes.items():
        module.training = training


def cloned(batch: Batch) -> Batch:
    """``batch`` with a copy of each of its tensors (in tuples, lists and dicts) and of each
    transformers cache, for one forward: what the forward changes in place (an input, a cache
    it extends) is the copy's. Any other object is passed on as it is: a forward may test it
    by identity (``flag is SENTINEL``, ``s is self.scaler``), which a copy would fail."""
    copies = torch.utils._pytree.tree_map(_copied, (batch.args, dict(batch.kwargs)))
    return Batch(*copies)


def _copied(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if _is_cache(value):
        try:
            return copy.deepcopy(value)
        except Exception as error:  # the forwards share it, as any other object
            logger.debug("cache %s is not copied: %s", type(value).__name__, error)
    return value


def _is_cache(value: Any) -> bool:
    """A transformers cache (``DynamicCache`` and the rest): made to be extended by forwards."""
    return any(
        base.__name__ == "Cache" and base.__module__.startswith("transformers.")
        for base in type(value).__mro__
    )


@dataclasses.dataclass(frozen=True)
class RngSnapshot:
    """The state of the random number generators a forward draws from, at one moment:
    torch's on the CPU and on each CUDA device that the model or its inputs are on, Python's
    ``random`` and NumPy's global one (``np.random.rand``), and each random number generator
    the inputs hold (``forward(x, generator=g)``, t190: a ``torch.Generator``, a
    ``random.Random``, NumPy's ``Generator`` or ``RandomState``, t198).

    Forwards run in :meth:`replayed` blocks draw the same numbers, so a model with sampling
    noise compares exactly with itself; anything else that makes a model give other outputs
    each time (a counter, the clock, a generator of its own seeded from the system) still does.
    """

    cpu: torch.Tensor
    cuda: dict[int, torch.Tensor]
    python: Any  # random.getstate()
    numpy: Any  # np.random.get_state()
    given: tuple[tuple[Any, Any], ...] = ()  # the inputs' generators, and their state

    @classmethod
    def take(cls, model: nn.Module, batch: Batch | None) -> RngSnapshot:
        """The generators' state now."""
        given = () if batch is None else (batch.args, dict(batch.kwargs))
        leaves = torch.utils._pytree.tree_leaves(given)
        tensors = itertools.chain(model.parameters(), model.buffers(), leaves)
        devices = {t.get_device() for t in tensors if isinstance(t, torch.Tensor) and t.is_cuda}
        cuda = {device: torch.cuda.get_rng_state(device) for device in sorted(devices)}
        held = {id(g): g for g in leaves if isinstance(g, GENERATORS)}.values()
        return cls(
            torch.get_rng_state(), cuda, random.getstate(), np.random.get_state(), _states(held)
        )

    def again(self) -> RngSnapshot:
        """The state of the same generators now (torch's on the same devices, the same
        inputs' generators)."""
        return dataclasses.replace(
            self,
            cpu=torch.get_rng_state(),
            cuda={device: torch.cuda.get_rng_state(device) for device in self.cuda},
            python=random.getstate(),
            numpy=np.random.get_state(),
            given=_states(generator for generator, _ in self.given),
        )

    def restore(self) -> None:
        """Set every generator back to this state (a call that failed gives back what it
        drew)."""
        torch.set_rng_state(self.cpu)
        for device, state in self.cuda.items():
            torch.cuda.set_rng_state(state, device)
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        for generator, state in self.given:
            set_rng_state(generator, state)

    @contextlib.contextmanager
    def replayed(self) -> Iterator[None]:
        """Run the block from this state; afterwards the generators are as they were before
        the block (the caller's random numbers are not the ones the block drew)."""
        before = self.again()
        try:
            self.restore()
            yield
        finally:
            before.restore()


def _states(generators: Iterable[Any]) -> tuple[tuple[Any, Any], ...]:
    """Each generator with its state (one whose state cannot be read is left out)."""
    states = ((generator, rng_state(generator)) for generator in generators)
    return tuple((generator, state) for generator, state in states if state is not None)


def call_model(model: nn.Module, batch: Batch, on: str = "the example inputs") -> Any:
    """``model(*batch.args, **batch.kwargs)`` without grad, on a copy of the batch's tensors
    (:func:`cloned`), in the mode the model is in; what it returned. An exception or a
    ``sys.exit()`` of the model's code is a :class:`ForwardFailedError` naming the model and
    what it ran ``on``."""
    inputs = cloned(batch)
    try:
        with torch.no_grad(), _eager(), user_code():
            return model(*inputs.args, **inputs.kwargs)
    except WnpassError:
        raise
    except STOPS:
        raise
    except BaseException as error:  # the model's failure (see above)
        raise forward_failed(model, error, on) from error


def buffer_values(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of each of ``model``'s buffers that holds a value (a lazy module's does not yet),
    by its name: what the model.py or a checkpoint set, before wnpass's forwards move a step
    counter or an EMA its forward updates in eval mode too."""
    values = {}
    for name, buffer in model.named_buffers():
        if not is_lazy(buffer):
            require_readable(buffer, f"buffer {name}")
            values[name] = buffer.detach().clone()
    return values


def moved_buffers(model: nn.Module, values: Mapping[str, torch.Tensor]) -> list[str]:
    """The names in ``values`` of ``model``'s buffers that hold another value now: other
    values, or another shape or dtype (a table the forward registered again, grown); a buffer
    gone is not one."""
    moved = []
    for name, value in values.items():
        try:
            buffer = model.get_buffer(name)
        except AttributeError:  # gone, or named otherwise in a copy
            continue
        if not same_value(buffer, value):
            moved.append(name)
    return moved


def parameter_prints(model: nn.Module) -> dict[str, object]:
    """A checksum of each parameter's bytes (:func:`_print`; lazy ones not initialized yet,
    and those without bytes to read, left out): a forward that writes a parameter through
    ``.data``, which no version counter sees, changes it (:func:`written_parameters`)."""
    prints = {name: _print(param) for name, param in model.named_parameters() if not is_lazy(param)}
    return {name: value for name, value in prints.items() if value is not None}


# How many bytes of a tensor :func:`_print` reads at a time (from another device: copies to
# the host).
_PRINT_CHUNK = 64 << 20


def _print(tensor: torch.Tensor) -> object:
    """A checksum of ``tensor``'s bytes: their CRC-32, read :data:`_PRINT_CHUNK` bytes at a
    time (on another device, copied to the host so); a wrapper's or a sparse one's, those
    of the tensors holding its bytes (:func:`~wnpass.fx.memory.held`). None where it has no
    bytes to read (meta, empty)."""
    if len(parts := held(tensor)) != 1 or parts[0] is not tensor:
        return tuple(_print(part) for part in parts)
    if tensor.is_meta or not tensor.numel():
        return None
    data = tensor.detach().resolve_conj().resolve_neg().reshape(-1).view(torch.uint8)
    crc = 0
    for start in range(0, data.numel(), _PRINT_CHUNK):
        crc = zlib.crc32(data[start : start + _PRINT_CHUNK].cpu().numpy().data, crc)
    return crc


def written_parameters(model: nn.Module, before: Mapping[str, object]) -> list[str]:
    """The parameters whose bytes changed since their ``before`` prints
    (:func:`parameter_prints`): a forward of the model's wrote them (an init on its first call
    behind a plain flag, as Glow's ActNorm; a merge; an embedding's ``max_norm`` lookup)."""
    now = parameter_prints(model)
    return [name for name, crc in before.items() if now.get(name, crc) != crc]


# Ops that write into their first operand without a trailing underscore (``w[i] = x``,
# ``w *= 2``), and one with it that writes no value.
_WRITES = frozenset({"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "set_"})
_NO_VALUE_WRITTEN = frozenset({"requires_grad_"})


def _writes_in_place(name: str) -> bool:
    """Whether the op of this name (``Tensor.add_``, ``clamp_``, ``__setitem__``,
    ``_foreach_mul_`` ...) writes into its first operand (each of a ``_foreach_`` op's); an
    op called through ``torch.ops`` has its overload after a dot (``add_.Tensor``)."""
    name = name.partition(".")[0]
    if name in _WRITES or (name.startswith("_foreach_") and name.endswith("_")):
        return True
    return name.endswith("_") and not name.startswith("_") and name not in _NO_VALUE_WRITTEN


class _Snapshots(TorchFunctionMode):
    """While entered, a copy of each parameter of ``model`` that an op is about to write in
    place (:func:`_written`: ``w.div_(2)``, ``w[0] = 1``, ``w *= 2``, ``out=w``, ``init.normal_
    (tensor=w)``, ``relu(w, inplace=True)``, an embedding's ``max_norm``; also through a view
    of it, ``.data`` or ``.detach()``: every parameter in the storage the tensor written lies
    in, :meth:`~wnpass.fx.elements.Elements.storage_of`), made before its first write, once
    per storage. :meth:`unseen` says which parameters were written all the same,
    :meth:`give_back` writes each copy back. Lazy parameters not initialized yet are no
    parameters here (giving them their shapes is no write)."""

    def __init__(self, model: nn.Module, *, prints: bool = False) -> None:
        super().__init__()
        self.params = {n: p for n, p in model.named_parameters() if not is_lazy(p)}
        self.names = {id(p): n for n, p in self.params.items()}
        self.versions = {n: _written_marks(p) for n, p in self.params.items()}
        # with ``prints``, a checksum of each one's bytes: a write no version counter sees
        # (through a NumPy view, in an extension's code: t251) changes it
        self.prints = {n: _print(p) for n, p in self.params.items()} if prints else {}
        self.requires_grad = {n: p.requires_grad for n, p in self.params.items()}
        # every parameter in the storage a write goes to is copied (views of one tensor share
        # its version counter: none of them then reads as written without a copy)
        self.storages: dict[tuple[str, int], list[str]] = {}
        for name, param in self.params.items():
            # a wrapper's by the storages of what it wraps: a write through a view of one of
            # them is a write of it (t236)
            tensors = [param, *held(param)]  # itself too: a write of the wrapper names it
            for storage in dict.fromkeys(Elements.storage_of(part) for part in tensors):
                self.storages.setdefault(storage, []).append(name)
        self.copied: set[tuple[str, int]] = set()  # storages copied
        # the tensors the block wrote, by storage (a parameter is written where it shares a
        # byte with one: not every view of a flat storage, t243)
        self.hits: dict[tuple[str, int], list[torch.Tensor]] = {}
        self.saved: dict[str, torch.Tensor] = {}
        self.late: set[str] = set()  # written before their copy was made (in TorchScript code)
        # parameters the caller set in the block (data init's g, v and bias: :meth:`set_by`),
        # and of those, each one's value as set where the block wrote it again afterwards
        self.set: set[str] = set()
        self.as_set: dict[str, torch.Tensor] = {}
        self.kept = False  # keep() was called: the writes of those set are the caller's
        # kept ones written back last, as set: another parameter given back lies over them
        # (a flat parameter of which the biases set are views) or the block wrote them again
        self.last: dict[str, torch.Tensor] = {}

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:  # fmt: skip
        kwargs = kwargs or {}
        for target in _written(func, args, kwargs):
            # a new wrapper over what a wrapper parameter wraps (``w.data``, ``w.detach()``)
            # lies in no storage of the parameter's but in its parts' (t237)
            parts = [target, *held(target)]
            for part in parts:
                if (storage := Elements.storage_of(part)) in self.storages:
                    self.hits.setdefault(storage, []).append(part)
            for storage in dict.fromkeys(map(Elements.storage_of, parts)):
                for name in self.storages.get(storage, ()):
                    if name in self.set and name not in self.as_set:  # after the caller's
                        self.as_set[name] = self.params[name].detach().clone()
                self._copy(storage)
        return func(*args, **kwargs)

    def _copy(self, storage: tuple[str, int]) -> None:
        """A copy of every parameter in ``storage``, once (before its first write)."""
        if storage in self.copied:
            return
        self.copied.add(storage)
        for name in self.storages.get(storage, ()):
            param = self.params[name]
            # written before, or its elements now elsewhere (``.data =``: the copy would be of
            # the new ones, given back over the old, t249): no copy of it as it was
            if (
                param._version != self.versions[name][0]
                or _written_marks(param)[1:] != self.versions[name][1:]
                or self._printed_otherwise(name)
            ):
                self.late.add(name)
            self.saved[name] = param.detach().clone()

    def copy_of(self, tensor: torch.Tensor) -> torch.Tensor | None:
        """The copy of parameter ``tensor`` as it was before the block (made now if its
        storage was not written yet), which gives it back; None for no parameter."""
        name = self.names.get(id(tensor))
        if name is None:
            return None
        self._copy(Elements.storage_of(tensor))
        return self.saved.get(name)

    def set_by(self, tensors: Sequence[torch.Tensor]) -> None:
        """``tensors``, parameters the caller just wrote whole in the block (data init's),
        keep those values if :meth:`keep` says so: a later write of one in the block (the
        model's forward) copies the value set first."""
        self.set.update(self.names[id(t)] for t in tensors if id(t) in self.names)

    def keep(self) -> None:
        """The parameters :meth:`set_by` named are given back as they were set, not as they
        were before the block (called once the block succeeded): from the copy made where
        the block wrote one again, else left as they are."""
        others = {
            Elements.storage_of(self.params[name]) for name in self.saved if name not in self.set
        }
        for name in self.set:
            self.saved.pop(name, None)
            if name in self.as_set:
                self.last[name] = self.as_set.pop(name)
            elif Elements.storage_of(self.params[name]) in others:
                self.last[name] = self.params[name].detach().clone()
        self.kept = True

    def _printed_otherwise(self, name: str) -> bool:
        """Whether parameter ``name`` has other bytes than its print taken at the start says
        (none taken: False)."""
        return name in self.prints and _print(self.params[name]) != self.prints[name]

    def unseen(self) -> list[str]:
        """The parameters written in a way no copy can give back: without a copy made first
        (their version counters moved, and no call said it would write them, or only after
        another write: TorchScript code, t118), or as a copy cannot (their elements moved
        elsewhere, ``w.data = x``, or they took another shape or strides, ``unsqueeze_``:
        t117)."""
        unseen = []
        for name, param in self.params.items():
            version, *where = _written_marks(param)
            first, *first_where = self.versions[name]
            kept = self.kept and name in self.set
            moved = version != first and name not in self.saved and not kept
            if not moved and name not in self.saved and not kept:
                moved = self._printed_otherwise(name)
            if where != first_where or moved or name in self.late:
                unseen.append(name)
        return unseen

    def written(self, unseen: Sequence[str]) -> list[str]:
        """The parameters the block wrote: each that shares a byte with a tensor written (one
        without bytes of its own to compare, meta or sparse, by its storage alone), and those
        written in a way no copy can give back (``unseen``)."""
        exact, names = Bytes(), set(unseen)
        for storage, targets in self.hits.items():
            for name in self.storages[storage]:
                parts = [self.params[name], *held(self.params[name])]
                if any(
                    span(part) is None or span(target) is None or exact.meet(part, target)
                    for part in parts
                    if Elements.storage_of(part) == storage
                    for target in targets
                ):
                    names.add(name)
        return sorted(names)

    def give_back(self, discarded: Collection[str] = ()) -> None:
        """Write each parameter copied back (but those ``discarded``, which the caller throws
        away); give each its requires_grad again."""
        # unseen by the modes a caller runs the block under (an observation of the forward's
        # ops would count the write back as one of its own)
        with torch.no_grad(), torch._C.DisableTorchFunction():
            for values in (self.saved, self.last):  # the kept ones last, over the others
                for name, value in values.items():
                    if name not in discarded:
                        self.params[name].copy_(value)
            for name, flag in self.requires_grad.items():  # requires_grad_(False) in a forward
                self.params[name].requires_grad_(flag)
        self.saved.clear()
        self.last.clear()


def _written_marks(param: torch.Tensor) -> tuple[int, int, tuple[int, ...], tuple[int, ...]]:
    """What a write moves: the version counter; what only a write of another kind moves: where
    the elements are, the shape and the strides (a sparse one: its shape)."""
    if param.layout != torch.strided or param.is_meta:
        return param._version, 0, tuple(param.shape), ()
    return param._version, param.data_ptr(), tuple(param.shape), tuple(param.stride())


def written_by(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    """The tensors a call writes into, as its arguments say: the first operand of an in-place
    op (positional, or the first given by keyword: ``init.normal_(tensor=w)``; each of a
    ``_foreach_`` op's), that of one called with ``inplace=True``, and ``out=``."""
    written = list(tensors_in(kwargs.get("out")))
    if _writes_in_place(str(getattr(func, "__name__", ""))) or kwargs.get("inplace") is True:
        first = args[0] if args else next(iter(kwargs.values()), None)
        written += tensors_in(first)
    written += _declared_written(func, args, kwargs)
    return list({id(tensor): tensor for tensor in written}.values())


def _declared_written(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Iterator[torch.Tensor]:
    """The tensors an operator's schema says it writes (``Tensor(a!)``): a custom op that
    declares ``mutates_args`` (a fused kernel decaying a weight in training, whose name has
    no trailing underscore: t251), called as itself, an overload or the packet of its
    overloads (``torch.ops.ns.op``: each one's, t254)."""
    if isinstance(func, torch._ops.OpOverloadPacket):  # ``torch.ops.ns.op(...)``: every
        overloads = [getattr(func, name) for name in func.overloads()]  # overload's writes
    else:
        overloads = [func]
    for overload in overloads:
        schema = getattr(overload, "_schema", None)
        if not isinstance(schema, torch._C.FunctionSchema):
            continue
        for index, argument in enumerate(schema.arguments):
            if argument.alias_info is not None and argument.alias_info.is_write:
                written = args[index] if index < len(args) else kwargs.get(argument.name)
                yield from tensors_in(written)


def _written(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    """:func:`written_by`, and an embedding's table that ``max_norm`` renormalizes inside the
    call (:func:`~wnpass.fx.axes.renormed_table`)."""
    return [*written_by(func, args, kwargs), *tensors_in(renormed_table(func, args, kwargs))]


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """Tensors in an argument: the value itself, or inside a list/tuple (one level)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, torch.Tensor):
                yield item


class _Building:
    """What a block may build on ``model``'s modules, as it is now, to take down again: each
    module's class, its parameters, submodules, buffers (and which are not persistent) and
    hooks (the dicts' entries, by identity), the names of its attributes (a legacy
    ``weight_norm`` made in the block puts a plain ``weight`` there, t248), each parameter's
    ``.data`` (a reference: no copy) and hooks, and the hooks registered on every module at
    once (:class:`~wnpass.fx.attributes.GlobalHooks`). A lazy layer not initialized yet is left as
    the block leaves it: its first forward builds it for good (it removes its own hooks,
    t248), as the model's would; but a hook the block registers on it goes."""

    def __init__(self, model: nn.Module, lazy: Collection[int]) -> None:
        self.modules = [
            (prefix, module, module.__class__, _registries(module), dict(vars(module)))
            for prefix, module in model.named_modules()
            if not isinstance(module, torch.jit.ScriptModule) and id(module) not in lazy
        ]
        self.data = [
            (param, param.data)
            for *_, registries, _ in self.modules
            for param in registries["_parameters"].values()
            if param is not None and not is_lazy(param)
        ]
        self.global_hooks = GlobalHooks()
        # a lazy layer's hooks (its first forward removes its own, the block may add more),
        # and each parameter's
        self.lazy_hooks = [
            hooks
            for module in model.modules()
            if id(module) in lazy
            for name, hooks in vars(module).items()
            if "hooks" in name and isinstance(hooks, dict)
        ]
        self.tensor_hooks = [param for param, _ in self.data]
        self.hooks = {id(hooks): set(hooks) for hooks in self._hook_dicts()}

    def _hook_dicts(self) -> Iterator[dict[int, Any]]:
        """The dicts of hooks :meth:`hooked` watches: a lazy layer's, and each parameter's
        (``register_hook``, ``register_post_accumulate_grad_hook``)."""
        yield from self.lazy_hooks
        for param in self.tensor_hooks:
            for name in TENSOR_HOOKS:
                if (hooks := getattr(param, name, None)) is not None:
                    yield hooks

    def hooked(self) -> bool:
        """Whether the block registered a hook on a lazy layer (t249: one that only training
        reaches) or on a parameter (t251: a gradient scale, behind a flag of the model's):
        none is among :meth:`undo`'s registries."""
        return any(_added(hooks, self.hooks) for hooks in self._hook_dicts())

    def undo(self) -> list[str]:
        """Take down what was built; the names of the parameters the block took off their
        modules or replaced there (a weight norm the model puts on a layer in its first
        training step: weight norm of wnpass's too would break that step, t249), or hooked
        (a hook on the parameter, under weight norm, would sit on a tensor the layer no
        longer reads, t258)."""
        replaced = [
            f"{prefix}.{name}" if prefix else name
            for prefix, module, _, registries, _ in self.modules
            for name, param in registries["_parameters"].items()
            if module._parameters.get(name) is not param
            or (param is not None and _hooked_since(param, self.hooks))
        ]
        for _, module, cls, registries, attributes in self.modules:
            if module.__class__ is not cls:
                module.__class__ = cls
            held = vars(module)
            for name in [k for k in held if k not in attributes and k not in MODULE_OWN]:
                del held[name]
            held.update({k: v for k, v in attributes.items() if k not in held})
            for name, before in registries.items():
                now = getattr(module, name)
                if isinstance(now, set):
                    if now != before:
                        now.clear()
                        now.update(before)
                elif now.keys() != before.keys() or any(now[k] is not v for k, v in before.items()):
                    now.clear()
                    now.update(before)
        for param, data in self.data:
            if _written_marks(param)[1:] != _written_marks(data)[1:]:  # ``.data =``: bound again
                param.data = data
        self.global_hooks.give_back()
        for hooks in self._hook_dicts():  # those a lazy layer removed itself stay removed
            for key in _added(hooks, self.hooks):
                del hooks[key]
        return replaced


def _hooked_since(param: torch.Tensor, before: Mapping[int, set[int]]) -> bool:
    """Whether ``param`` has a hook that its dicts of hooks did not hold ``before``."""
    return any(
        _added(hooks, before) for name in TENSOR_HOOKS if (hooks := getattr(param, name, None))
    )


def _added(hooks: dict[int, Any], before: Mapping[int, set[int]]) -> set[int]:
    """The keys of a dict of hooks that it did not hold ``before`` (the keys each dict held,
    by its id)."""
    return hooks.keys() - before.get(id(hooks), set())


def _registries(module: nn.Module) -> dict[str, Any]:
    """Copies of ``module``'s registries: parameters, submodules, buffers, the names of those
    not persistent, and its hooks."""
    names = ["_parameters", "_modules", "_buffers", "_non_persistent_buffers_set"]
    names += sorted(name for name in vars(module) if "hooks" in name)
    return {name: copy.copy(getattr(module, name)) for name in names if hasattr(module, name)}


def _put_back(model: nn.Module, values: Mapping[str, torch.Tensor]) -> None:
    """Give each buffer of ``model`` named in ``values`` that value again, in place
    (:func:`~wnpass.fx.attributes.give_back_values`; ``values`` are copies, each of them given
    to one buffer: t119, t121)."""
    buffers = dict(model.named_buffers(remove_duplicate=False))
    give_back_values((buffers[name], value) for name, value in values.items() if name in buffers)


@dataclasses.dataclass
class GivenBack:
    """What :func:`state_given_back` gave back, once its block ended: ``whole`` where the
    block built nothing further and the state came back; else nothing did. A caller that
    sets parameters in the block, to stay (data init), says which (:meth:`set_by`) and, once
    the block succeeded, :meth:`keep`."""

    whole: bool = False
    snapshots: _Snapshots | None = None
    kept: bool = False  # keep() was called: the parameters set stay as set
    # the parameters the block wrote in place (each sharing a byte with what it wrote), by name
    written: list[str] = dataclasses.field(default_factory=list)

    def set_by(self, tensors: Sequence[torch.Tensor]) -> None:
        """``tensors`` were just set by the caller (:meth:`_Snapshots.set_by`)."""
        if self.snapshots is not None:
            self.snapshots.set_by(tensors)

    def keep(self) -> None:
        """The parameters set stay as set (:meth:`_Snapshots.keep`); where the block fails
        before this, they are given back as they were before it, with the rest; after it
        (:attr:`kept`), the caller gives them back itself."""
        if self.snapshots is not None:
            self.snapshots.keep()
        self.kept = True

    def tracks(self, tensor: torch.Tensor) -> bool:
        """Whether ``tensor`` is a parameter whose writes the block's copies give back."""
        return self.snapshots is not None and id(tensor) in self.snapshots.names

    def copy_of(self, tensor: torch.Tensor) -> torch.Tensor:
        """A copy of ``tensor`` as it was before the block: the one that gives a parameter
        back (:meth:`_Snapshots.copy_of`: no second copy), else one made now."""
        copy = self.snapshots.copy_of(tensor) if self.snapshots is not None else None
        return copy if copy is not None else tensor.detach().clone()


@contextlib.contextmanager
def state_given_back(
    model: nn.Module,
    *,
    unless_written: bool = True,
    discarded: Collection[str] = (),
    undo_building: bool = False,
) -> Iterator[GivenBack]:
    """Run the block; afterwards, however it ended, ``model``'s modules hold the state they
    held when it began: every plain attribute (:class:`~wnpass.fx.attributes.Attributes`: a
    streaming state, a first-call flag, a cache), every buffer object (one the forward
    registered again, a table grown, or deleted, is registered as it was; one it registered
    first goes, t226), and every buffer its value. Where the block built the model further (a
    hook, a submodule), nothing is given back: its attributes, buffers (and, in the export pipeline,
    parameters) stay as the block left them, so that a flag, a plain attribute or a buffer,
    and what it guards agree. With ``unless_written``, every parameter the block writes in
    place is given back too, from a copy of it made just before its first write
    (:class:`_Snapshots`): RWKV's forward in eval mode divides some weights and sets a flag
    that says so, and a flag given back without them had each next forward divide them again
    (t113). A write no copy was made before (in TorchScript code) keeps the state as the block
    left it, flag and all. The export pipeline, which gives parameters back from its copy of
    the model, and the lazy layers' first forward, whose writes stay (said in a warning),
    pass False. ``discarded``: parameters the caller throws away after the block whatever it
    wrote in them (the g and v of a weight norm taken off again if written, t243): a write
    of them no copy can give back leaves the rest given back. ``undo_building``: what the
    block built is taken down first (the modules' classes, parameters, submodules, buffers
    and hooks as they were, a parameter's ``.data`` bound to its old tensor again), and then
    the rest given back: for the training-mode forward of the plan, whose first step may make
    a layer or assign ``.data``, which the model's own training would do on its own data
    (t243, t247), never for the forwards whose building the model keeps. Yields a
    :class:`GivenBack` that says which."""
    attributes, values = Attributes(model), buffer_values(model)
    snapshots = _Snapshots(model, prints=undo_building) if unless_written else None
    built = _Building(model, attributes.lazy) if undo_building else None
    given = GivenBack(snapshots=snapshots)
    # TorchScript registers nothing again
    modules = [m for m in model.modules() if not isinstance(m, torch.jit.ScriptModule)]
    registered = [(module, dict(module._buffers)) for module in modules]
    transient = [(module, set(module._non_persistent_buffers_set)) for module in modules]
    try:
        with snapshots or contextlib.nullcontext():
            yield given
    finally:
        unseen = snapshots.unseen() if snapshots is not None else []
        given.written = snapshots.written(unseen) if snapshots is not None else []
        unseen = [name for name in unseen if name not in discarded]
        if (
            built is not None
            and snapshots is not None
            and (unseen or attributes.built() or built.hooked())
        ):
            given.written = sorted({*given.written, *built.undo()})
            unseen = [name for name in snapshots.unseen() if name not in discarded]
        if unseen:
            logger.warning(
                "the forward wrote %s in a way no copy can give back (in TorchScript code, "
                "through NumPy or an extension, `.data = ...`, a new shape): the model keeps its "
                "state as that forward left it",
                ", ".join(unseen),
            )
        # all or nothing: parameters, attributes and buffers come back together, so that a
        # flag and the weights it guards agree
        given.whole = not unseen and attributes.give_back()
        if given.whole:  # else the model was built further: its state stays as the block left it
            if snapshots is not None:
                snapshots.give_back(discarded)
            for module, buffers in registered:
                now = module._buffers
                if id(module) in attributes.lazy:  # its first forward built it: what it
                    now.update(buffers)  # registered stays (t227), what it replaced comes back
                elif now.keys() != buffers.keys() or any(
                    now[k] is not v for k, v in buffers.items()
                ):
                    now.clear()  # a buffer registered in the block goes
                    now.update(buffers)
            for module, names in transient:
                if (
                    id(module) not in attributes.lazy
                    and module._non_persistent_buffers_set != names
                ):
                    module._non_persistent_buffers_set.clear()
                    module._non_persistent_buffers_set.update(names)
            _put_back(model, values)


def _eager() -> contextlib.AbstractContextManager[Any]:
    """``torch.compile``'d code (a compiled model, or a layer compiled inside one) run as the
    eager PyTorch it compiles: wnpass's function modes see each op the model's code calls
    (a compiled graph would run its own copy of them, and data init would find no layer's op),
    and no forward of wnpass's waits for a compilation. Nothing is compiled in a process that
    has not imported dynamo (importing it takes seconds): then there is nothing to do."""
    if "torch._dynamo" not in sys.modules:
        return contextlib.nullcontext()
    set_stance = getattr(torch.compiler, "set_stance", None)
    if set_stance is not None:  # torch 2.6 and later
        return set_stance("force_eager")
    return sys.modules["torch._dynamo"].config.patch(disable=True)


def forward_failed(
    model: nn.Module, error: BaseException, on: str = "the example inputs"
) -> ForwardFailedError:
    """The model's own exception (or ``sys.exit()``: :class:`ModelExitedError`) in its forward
    ``on`` its inputs (the example inputs, data init's batch), as one line naming it."""
    cls = type(model)  # the model's class, not the one a parametrization makes of it
    if cls.__name__.startswith("Parametrized") and parametrize.is_parametrized(model):
        cls = cls.__bases__[0]
    said = f"{cls.__name__}: the forward on {on} {what_it_did(error)}"
    return ModelExitedError(said) if isinstance(error, SystemExit) else ForwardFailedError(said)


def run_forward(model: nn.Module, batch: Batch) -> list[torch.Tensor]:
    """:func:`call_model` in eval mode; the tensors of what it returned
    (:func:`wnpass.fx.compare.result_tensors`)."""
    with evaluating(model):
        return result_tensors(call_model(model, batch))
