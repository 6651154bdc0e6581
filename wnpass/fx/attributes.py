"""A model's plain attributes, given back after a forward of wnpass's own.

A forward may keep state outside its parameters and buffers: a streaming convolution's last
frames (``self.state = x[..., -2:]``), a flag set on the first call (``self.initialized =
True``), a cache it fills (``self.cache[length] = table``), a generator of its own it draws
from. wnpass runs the model's forward to plan, check and verify, and such a forward must leave
the model as the caller gave it: the outputs compared, and the file exported, are the model's
as given.

:class:`Attributes` records every module's attributes outside PyTorch's own machinery and
gives them back: an attribute the forward bound to another object, added or deleted is bound
as it was; a tensor held there (not a parameter or buffer) gets its values back where the
forward changed them in place, and so does a NumPy array; a list, dict, set or deque held
there gets its items back (the same objects, not copies of them), and what its items hold in
turn their values (a streaming state ``self.state["h"].add_(1)``; through tuples too, to
:data:`MAX_DEPTH`); a random number generator (a ``torch.Generator``, a ``random.Random``,
NumPy's ``Generator`` or ``RandomState``) gets its state back; a submodule without state of
its own that the forward made again under its name is bound as it was. What an object of
another class holds inside it (a counter in an object of the model's own class) is not
followed, nor are the attributes of PyTorch's own layers (``nn.LSTM``'s flat weights: its
caches, not a model's state), but for their settings (a number, a flag: ``momentum``, ``p``),
bound as they were, and the random number generators they hold (one a forward put on an
``nn.Sequential`` and draws from).

A forward that builds the model further (a head made on the first call, a layer wrapped, a
hook it registers, weight norm folded in place) changes what no attribute can give back: then
no attribute is given back (nor buffers: :func:`wnpass.fx.forward.state_given_back`), and the
flags that say so (wherever they are) stay true.
A lazy layer's first forward is PyTorch's own building: the lazy layer keeps what it sets (its
shapes, its class), the rest is given back.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.hooks import RemovableHandle
from torch.utils.weak import WeakIdKeyDictionary

from wnpass.errors import WnpassError
from wnpass.fx.arguments import is_lazy
from wnpass.fx.elements import Elements
from wnpass.fx.memory import held, is_wrapper, sparse_parts, wrapped

__all__ = [
    "GENERATORS",
    "MODULE_OWN",
    "TENSOR_HOOKS",
    "Attributes",
    "GlobalHooks",
    "OpaqueTensorError",
    "give_back_values",
    "own_generators",
    "require_readable",
    "rng_state",
    "same_bytes",
    "same_value",
    "set_rng_state",
]

logger = logging.getLogger(__name__)

# nn.Module's own attributes (registries of parameters, buffers, submodules and hooks, the
# training flag): PyTorch's bookkeeping, never a model's state.
MODULE_OWN = frozenset(vars(nn.Module()))
# Its registries of hooks (forward, backward, state dict and load hooks).
_HOOKS = frozenset(name for name in MODULE_OWN if "hooks" in name)
# A tensor's dicts of hooks (``register_hook``, ``register_post_accumulate_grad_hook``).
TENSOR_HOOKS = ("_backward_hooks", "_post_accumulate_grad_hooks")
# The key of :func:`_machinery`'s entry for the hooks registered on every module at once
# (``register_module_forward_hook``); never a module's id.
_GLOBAL = 0
_MISSING = object()
# The models whose forward built them further, told of once each (by identity: a model's
# class may define its own ``==``).
_TOLD_BUILT: Any = WeakIdKeyDictionary()


def _bookkeeping(name: str, value: object) -> bool:
    """PyTorch's own: nn.Module's attributes, and hook handles (a lazy layer removes its
    initializing hooks, and their handles, on its first forward)."""
    return name in MODULE_OWN or isinstance(value, RemovableHandle)


def _torch_s_own(module: nn.Module) -> bool:
    """One of PyTorch's own layers (weight-normed or not), whose attributes are its caches, or
    a TorchScript module, whose forward keeps no Python state."""
    if isinstance(module, torch.jit.ScriptModule):
        return True
    return parametrize.type_before_parametrizations(module).__module__.startswith("torch.")


def _settings(module: nn.Module) -> dict[str, Any]:
    """The plain attributes of one of PyTorch's own layers that are settings: numbers, flags,
    names, None (``momentum``, ``p``, ``eps``), not its caches."""
    return {
        k: v
        for k, v in vars(module).items()
        if isinstance(v, bool | int | float | str | None) and not _bookkeeping(k, v)
    }


# How deep containers inside containers are followed (a cache of lists of dicts of tensors
# is 3): far beyond a model's own state, and no recursion limit is near.
MAX_DEPTH = 32
_CONTAINERS = (list, tuple, collections.deque, dict, set, frozenset)
_MUTABLE = (list, collections.deque, dict, set)
# random number generators, whose state is given back: torch's, Python's, NumPy's
GENERATORS = (torch.Generator, random.Random, np.random.Generator, np.random.RandomState)
_HOLDERS = (torch.Tensor, np.ndarray, *GENERATORS, *_CONTAINERS)  # what may hold state


def _walk(value: object) -> Iterator[object]:
    """``value`` and what may hold state inside it (:data:`_HOLDERS`), through lists, tuples,
    deques, dicts (their values) and sets to :data:`MAX_DEPTH`; each object once."""
    seen: set[int] = set()
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, _CONTAINERS) and depth < MAX_DEPTH:
            parts = item.values() if isinstance(item, dict) else item
            # only what can hold state: a vocabulary's million ints are walked past at once
            stack.extend((part, depth + 1) for part in parts if isinstance(part, _HOLDERS))


def rng_state(generator: object) -> Any:
    """A random number generator's state (:data:`GENERATORS`), or None where it
    gives none (``random.SystemRandom``, the system's; a subclass whose reading raises)."""
    try:
        if isinstance(generator, torch.Generator):
            return generator.get_state()
        if isinstance(generator, np.random.Generator):
            return generator.bit_generator.state
        if isinstance(generator, np.random.RandomState):  # legacy=True warns but on MT19937
            return generator.get_state(legacy=False)
        if isinstance(generator, random.Random):
            return generator.getstate()
    except Exception:  # the generator's own failure: its state is not given back
        return None
    return None


def set_rng_state(generator: Any, state: Any) -> None:
    """Set back a state :func:`rng_state` read."""
    if isinstance(generator, np.random.Generator):
        generator.bit_generator.state = state
    elif isinstance(generator, random.Random):
        generator.setstate(state)
    else:  # torch's and NumPy's RandomState
        generator.set_state(state)


@dataclasses.dataclass
class _Contents:
    """What is inside an attribute's value to give back: each mutable container's items (the
    same objects), each tensor's and NumPy array's values, each random number generator's
    state, through lists, tuples, deques, dicts and sets to :data:`MAX_DEPTH`."""

    items: list[tuple[Any, Any]] = dataclasses.field(default_factory=list)
    values: list[tuple[Any, Any]] = dataclasses.field(default_factory=list)
    states: list[tuple[Any, Any]] = dataclasses.field(default_factory=list)


def _holds_tensor(value: object) -> bool:
    """Whether ``value`` is a tensor or holds one (:func:`_walk`)."""
    return any(isinstance(item, torch.Tensor) for item in _walk(value))


def _contents(value: object, weights: Elements[int], what: str) -> _Contents | None:
    """What is inside ``value`` to give back (:class:`_Contents`), or None where nothing is:
    a tensor's values (not those of a parameter's or buffer's elements, ``weights``: a buffer
    is given back as one, and a view of a weight is the weight's), a NumPy array's (a counter
    ``self.seen += 1`` writes in place), a container's items and what they hold in turn (a
    streaming state ``self.state["h"].add_(1)``), a random number generator's state (torch's,
    ``random.Random``, NumPy's ``Generator`` and ``RandomState``). ``what``: the attribute,
    as an error names it (:func:`require_readable`)."""
    found = _Contents()
    for item in _walk(value):
        if isinstance(item, torch.Tensor):
            # a weight's (a sparse one's values too, t231): given back as it
            if _has_values(item) and not any(weights.of(part) for part in held(item)):
                require_readable(item, what)
                found.values.append((item, item.detach().clone()))
        elif isinstance(item, np.ndarray):
            if _own_array(item, weights):
                found.values.append((item, item.copy()))
        elif isinstance(item, GENERATORS):
            if (state := rng_state(item)) is not None:
                found.states.append((item, state))
        elif isinstance(item, dict):
            found.items.append((item, dict(item)))
        elif isinstance(item, set):
            found.items.append((item, set(item)))
        elif isinstance(item, _MUTABLE):
            found.items.append((item, list(item)))
    return found if (found.items or found.values or found.states) else None


def own_generators(model: nn.Module) -> Iterator[tuple[str, torch.Generator]]:
    """Each ``torch.Generator`` among the plain attributes of ``model``'s modules (PyTorch's
    own layers' too: a forward may draw from one it put there), in containers too, with the
    name of the attribute that holds it."""
    for name, module in model.named_modules():
        for attribute, value in vars(module).items():
            if _bookkeeping(attribute, value):
                continue
            for item in _walk(value):
                if isinstance(item, torch.Generator):
                    yield _dotted(name, attribute), item


def _dotted(prefix: str, name: str) -> str:
    """``name`` of the module at ``prefix`` (the model's own where it is empty)."""
    return f"{prefix}.{name}" if prefix else name


def _has_values(tensor: torch.Tensor) -> bool:
    """A tensor whose values can be copied and written back: not a lazy layer's or on the
    meta device (sparse and nested ones are compared part by part: :func:`same_value`)."""
    return not (is_lazy(tensor) or tensor.is_meta)


def _own_array(array: np.ndarray, weights: Elements[int]) -> bool:
    """A NumPy array whose values are the model's state to give back: of numbers, writeable,
    in memory (a ``np.memmap`` is a file, read in whole to copy it: t127), and not a view of a
    weight's memory (``w.detach().numpy()``: written back, it undid data init's values, t127)."""
    if array.dtype.hasobject or not array.flags.writeable or isinstance(array, np.memmap):
        return False
    if not array.size:
        return True
    low, high = _byte_bounds(array)
    return not weights.in_memory(low, high)


def _byte_bounds(array: np.ndarray) -> tuple[int, int]:
    """The addresses of an array's first byte and of the byte after its last."""
    try:
        from numpy.lib.array_utils import byte_bounds  # numpy 2
    except ImportError:  # numpy 1
        byte_bounds = np.byte_bounds  # type: ignore[attr-defined,unused-ignore]
    low, high = byte_bounds(array)
    return int(low), int(high)


def _same_items(now: Any, before: Any) -> bool:
    """Whether a container holds the very objects it held (items compared by identity: a
    tensor's ``==`` is no answer)."""
    if isinstance(now, dict):
        return now.keys() == before.keys() and all(now[k] is before[k] for k in before)
    if isinstance(now, set):
        return {id(item) for item in now} == {id(item) for item in before}
    return len(now) == len(before) and all(a is b for a, b in zip(now, before, strict=True))


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors of one shape and dtype hold the same bytes: -0.0 told from 0.0, and
    each NaN's bits from another's (``torch.equal`` tells neither: t119)."""
    a, b = a.detach(), b.detach()
    if a.is_quantized or b.is_quantized:  # no bytes to view (t121: a segfault)
        return bool(torch.equal(a, b))
    if a.layout != torch.strided or b.layout != torch.strided:  # a graph's sparse adjacency
        return _same_sparse(a, b)
    a, b = a.resolve_conj().resolve_neg().reshape(-1), b.resolve_conj().resolve_neg().reshape(-1)
    if a.layout == torch.strided and a.dtype != torch.bool:
        a, b = a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8)
    return bool(torch.equal(a, b))


def same_structure(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``b``'s value fits ``a`` as it is (``a.copy_(b)``): one shape, dtype and
    layout; a nested tensor's components of one shape each (it has no shape to read: a nested
    buffer made every forward wnpass runs fail, t220); a tensor subclass that wraps others
    (:func:`_wrapped`) of one class and metadata, wrapping tensors of one structure each."""
    if (parts := _wrapped(a)) is not None:
        other = _wrapped(b)
        return (
            other is not None
            and type(a) is type(b)
            and (a.shape, a.dtype) == (b.shape, b.dtype)
            and _same_metadata(parts[1], other[1])
            and len(parts[0]) == len(other[0])
            and all(same_structure(x, y) for x, y in zip(parts[0], other[0], strict=True))
        )
    if a.is_nested or b.is_nested:
        if not (a.is_nested and b.is_nested and (a.layout, a.dtype) == (b.layout, b.dtype)):
            return False
        parts_a, parts_b = a.unbind(), b.unbind()
        return len(parts_a) == len(parts_b) and all(
            x.shape == y.shape for x, y in zip(parts_a, parts_b, strict=True)
        )
    return _wrapped(b) is None and (a.shape, a.dtype, a.layout) == (b.shape, b.dtype, b.layout)


def same_value(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors hold one value: :func:`same_structure` and :func:`same_bytes`, a
    nested tensor's component by component, a wrapping subclass's wrapped tensors one by one
    (``torch.equal`` of a ``TwoTensor`` compares its first alone)."""
    if not same_structure(a, b):
        return False
    if (parts := _wrapped(a)) is not None:
        other = _wrapped(b)
        assert other is not None  # same_structure
        return all(same_value(x, y) for x, y in zip(parts[0], other[0], strict=True))
    if a.is_nested:
        return all(same_bytes(x, y) for x, y in zip(a.unbind(), b.unbind(), strict=True))
    return same_bytes(a, b)


def _wrapped(tensor: torch.Tensor) -> tuple[list[torch.Tensor], tuple[object, ...]] | None:
    """A tensor subclass that wraps others (:func:`~wnpass.fx.memory.is_wrapper`): the tensors
    it wraps and the rest it holds (:func:`~wnpass.fx.memory.wrapped`); None for another
    tensor. One that says neither (:func:`require_readable`) raises
    :class:`OpaqueTensorError`."""
    if not is_wrapper(tensor):
        return None
    parts = wrapped(tensor)
    if parts is None:
        raise OpaqueTensorError("a tensor", type(tensor).__name__)
    return parts


def require_readable(tensor: torch.Tensor, what: str) -> None:
    """Raise :class:`OpaqueTensorError` naming ``what`` where ``tensor``, or a tensor it
    wraps, is a subclass whose value cannot be compared or given back (a ``MaskedTensor``:
    comparing it raised a TypeError after the forward, the state left changed, t226): one
    :func:`~wnpass.fx.memory.held` leaves whole, a wrapper that does not say what it wraps."""
    for part in held(tensor):
        if is_wrapper(part):
            raise OpaqueTensorError(what, type(part).__name__)


def _same_metadata(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except Exception:  # a subclass's metadata that does not compare
        return False


class OpaqueTensorError(WnpassError):
    """A tensor subclass whose value wnpass cannot read to compare or give back."""

    def __init__(self, what: str, kind: str) -> None:
        super().__init__(
            f"{what} is a {kind}, a tensor subclass that does not say what it holds (no "
            "__tensor_flatten__): its value cannot be compared or given back after wnpass's "
            "forwards; hold it outside the model, or as a plain tensor"
        )


def give_back_values(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Give each tensor of ``pairs`` its saved value (a copy, given to it alone) where it
    holds another, in place (:func:`_put_value`). Views that repeat elements (an expanded
    one, stride 0) come last, and each is compared again first: writing the tensor whose
    memory one views may have given it its value back, and none can take a copy in whole
    (t226: "more than one element of the written-to tensor refers to a single memory
    location")."""
    for tensor, saved in sorted(pairs, key=lambda pair: _repeats(pair[0])):
        if not same_value(tensor, saved):
            _put_value(tensor, saved)


def _repeats(tensor: torch.Tensor) -> bool:
    """Whether a strided tensor has a dimension of stride 0 over more than one element."""
    if tensor.layout != torch.strided or tensor.is_nested or tensor.is_quantized:
        return False
    return any(
        step == 0 and size > 1 for size, step in zip(tensor.shape, tensor.stride(), strict=True)
    )


def _put_value(tensor: torch.Tensor, saved: torch.Tensor) -> None:
    """Write ``saved`` into ``tensor``: its elements; of a sparse one each part (indices,
    values) in place where they keep their shapes, so that one viewing a buffer still does
    (t231, t234), else resized to ``saved``'s first (a CSR ``copy_`` takes the same nnz,
    t223); of a view that repeats elements each once; where the forward gave it another
    shape, dtype or layout in place (``resize_``, ``.data = x``), as its elements. A tensor
    made under inference mode is written there (t131), and takes a copy of one (t133)."""
    inference = tensor.is_inference()
    with torch.inference_mode() if inference else torch.no_grad():
        if not same_structure(tensor, saved):
            tensor.data = saved.clone() if inference else saved
            return
        if (parts := sparse_parts(tensor)) is not None:
            theirs = sparse_parts(saved)
            if theirs is not None and _same_shapes(parts, theirs):
                for part, value in zip(parts, theirs, strict=True):
                    if not same_bytes(part, value):  # a part it did not change may repeat
                        _put_value(part, value)  # elements (expanded): written once each
                if tensor.layout == torch.sparse_coo:
                    tensor._coalesced_(saved.is_coalesced())
                return
            tensor.resize_as_sparse_(saved)
        elif _repeats(tensor):  # each element once
            for axis, (size, step) in enumerate(zip(tensor.shape, tensor.stride(), strict=True)):
                if step == 0 and size > 1:
                    tensor, saved = tensor.narrow(axis, 0, 1), saved.narrow(axis, 0, 1)
        tensor.copy_(saved)


def _same_shapes(parts: list[torch.Tensor], theirs: list[torch.Tensor]) -> bool:
    """Whether two sparse tensors' parts (:func:`~wnpass.fx.memory.sparse_parts`) are of one
    shape and dtype each: then each can take the other's values in place."""
    return all((x.shape, x.dtype) == (y.shape, y.dtype) for x, y in zip(parts, theirs, strict=True))


def _same_sparse(a: torch.Tensor, b: torch.Tensor) -> bool:
    """:func:`same_bytes` of two sparse tensors, part by part, as stored (a buffer of one made a
    model's forward fail: "reshape is not implemented for sparse tensors"): a COO one's indices
    and values, and whether it is coalesced (one the forward coalesced in place holds the
    same value in other entries, t224)."""
    if a.layout != b.layout:
        return False
    if a.layout == torch.sparse_coo and a.is_coalesced() != b.is_coalesced():
        return False
    parts_a, parts_b = sparse_parts(a), sparse_parts(b)
    if parts_a is None or parts_b is None:
        return bool(torch.equal(a, b))
    return all(
        (x.shape, x.dtype) == (y.shape, y.dtype) and same_bytes(x, y)
        for x, y in zip(parts_a, parts_b, strict=True)
    )


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays of one shape and dtype hold the same bytes (-0.0 and NaN bits told
    apart), without copying a contiguous one."""
    if a.flags.c_contiguous and b.flags.c_contiguous:
        return bool(np.array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)))
    return a.tobytes() == b.tobytes()


def _give_back_contents(contents: _Contents) -> None:
    for container, items in contents.items:
        if not _same_items(container, items):
            if isinstance(container, list):
                container[:] = items
            elif isinstance(container, collections.deque):
                container.clear()
                container.extend(items)
            else:  # a dict or a set
                container.clear()
                container.update(items)
    for value, saved in contents.values:
        if not isinstance(value, np.ndarray):
            continue
        if (value.shape, value.dtype) == (saved.shape, saved.dtype) and not _same_array(
            value, saved
        ):
            np.copyto(value, saved)
    give_back_values(
        (value, saved) for value, saved in contents.values if isinstance(value, torch.Tensor)
    )
    for generator, state in contents.states:
        set_rng_state(generator, state)


@dataclasses.dataclass
class _Saved:
    module: nn.Module
    values: dict[str, Any]
    contents: dict[str, Any]
    # submodules without state of their own, by name: a forward may make another under the
    # name (``self.mem = Memory(x)``), whose plain attributes then hold its state
    stateless: dict[str, nn.Module]


def _lazy(module: nn.Module) -> bool:
    """A lazy layer not initialized yet: its first forward gives it its shapes, its class and
    the attributes that say them (``in_features``), PyTorch's own building."""
    tensors = (*module.parameters(recurse=False), *module.buffers(recurse=False))
    return any(is_lazy(t) for t in tensors)


def _machinery(model: nn.Module, lazy: set[int]) -> dict[int, tuple[Any, ...]]:
    """What a forward that builds the model changes, by module (but the ``lazy`` ones, by id):
    its class (weight norm going on), its parameters and submodules by identity (a head made
    on the first call, a layer wrapped in another), and the hooks registered on it. A
    submodule without state, made again under its name on every call (``self.act =
    nn.ReLU()``), is no change: it is known by its class alone."""
    found: dict[int, tuple[Any, ...]] = {}
    for module in model.modules():
        if id(module) in lazy:
            continue
        if isinstance(module, torch.jit.ScriptModule):
            found[id(module)] = (type(module),)
            continue
        hooks = tuple(tuple(value) for name, value in vars(module).items() if name in _HOOKS)
        # and its parameters' (``register_hook``: a gradient scale behind a flag, t254)
        hooks += tuple(
            tuple(getattr(param, name, None) or ())
            for param in module._parameters.values()
            if param is not None
            for name in TENSOR_HOOKS
        )
        found[id(module)] = (
            type(module),
            tuple((k, id(v)) for k, v in module._parameters.items()),
            tuple((k, _identity(v)) for k, v in module._modules.items()),
            hooks,
        )
    found[_GLOBAL] = (None, (), (), tuple(tuple(hooks) for hooks in GlobalHooks.registries()))
    return found


class GlobalHooks:
    """The hooks registered on every module at once (``register_module_forward_hook`` and
    its kin, in ``torch.nn.modules.module``) as they are now; :meth:`give_back` removes
    those registered since (t248: a model that registers one on its first training step,
    behind a flag of its own given back, had it twice on its next)."""

    def __init__(self) -> None:
        self.saved = [(hooks, dict(hooks)) for hooks in self.registries()]
        self.full_backward = nn.modules.module._global_is_full_backward_hook

    @staticmethod
    def registries() -> list[dict[int, Any]]:
        """``torch.nn.modules.module``'s dicts of global hooks, in a fixed order."""
        found = vars(nn.modules.module)
        return [
            found[name]
            for name in sorted(found)
            if name.startswith("_global_") and isinstance(found[name], dict)
        ]

    def give_back(self) -> None:
        """Remove those registered since; one removed since stays removed (a user's hook that
        removes itself after one call, t254)."""
        for hooks, before in self.saved:
            for key in hooks.keys() - before.keys():
                del hooks[key]
        nn.modules.module._global_is_full_backward_hook = self.full_backward


# What each entry of :func:`_machinery` holds, in words.
_PARTS = ("class", "parameters", "submodules", "hooks")


def _stateless(module: nn.Module | None) -> bool:
    """No parameter, buffer or submodule of its own (an activation, a holder of plain state)."""
    return module is None or not (module._parameters or module._buffers or module._modules)


def _identity(module: nn.Module | None) -> object:
    """A submodule's identity for :func:`_machinery`: its class where it is stateless
    (:func:`_stateless`), else the object."""
    return type(module) if _stateless(module) else id(module)


class Attributes:
    """Every module's plain attributes of ``model`` as they are now; :meth:`give_back` binds
    and fills them so again (see the module docstring), unless the model was built further
    meanwhile."""

    def __init__(self, model: nn.Module) -> None:
        self.lazy = {id(module) for module in model.modules() if _lazy(module)}
        self.model, self.machinery = model, _machinery(model, self.lazy)
        weights = Elements(dict(enumerate((*model.parameters(), *model.buffers()))))
        self.saved: list[_Saved] = []
        # the random number generators PyTorch's own modules hold among their plain attributes
        # (a forward may put one there and draw from it, t199): their state alone
        self.generators: list[tuple[Any, Any]] = []
        # and their settings (numbers, flags, names): a training forward that halves its
        # BatchNorm's momentum or a Dropout's p on the first step (t251)
        self.settings: list[tuple[nn.Module, dict[str, Any]]] = []
        for prefix, module in model.named_modules():
            if _torch_s_own(module) and id(module) not in self.lazy:
                if not isinstance(module, torch.jit.ScriptModule):
                    self.settings.append((module, _settings(module)))
                plain = (v for k, v in vars(module).items() if not _bookkeeping(k, v))
                held = (item for value in plain for item in _walk(value))
                self.generators += [
                    (item, state)
                    for item in held
                    if isinstance(item, GENERATORS) and (state := rng_state(item)) is not None
                ]
            if _torch_s_own(module) or id(module) in self.lazy:
                continue
            values = {k: v for k, v in vars(module).items() if not _bookkeeping(k, v)}
            contents = {
                k: inside
                for k, v in values.items()
                if (inside := _contents(v, weights, f"attribute {_dotted(prefix, k)}")) is not None
            }
            stateless = {
                k: v for k, v in module._modules.items() if v is not None and _stateless(v)
            }
            self.saved.append(_Saved(module, values, contents, stateless))

    def built(self) -> str | None:
        """What the forward built the model further by, in words (``the parameters of a``),
        or None: the class, the parameters, the submodules or the hooks of one of its modules
        changed (:func:`_machinery`)."""
        now = _machinery(self.model, self.lazy)  # a module gone shows in its parent's entry
        names = {id(module): name for name, module in self.model.named_modules()}
        for key, before in self.machinery.items():
            after = now.get(key, before)
            if key == _GLOBAL:  # one registered (one of the user's that removed itself is
                # no building of the model's)
                if any(set(a) - set(b) for a, b in zip(after[3], before[3], strict=True)):
                    return "the hooks registered on every module"
                continue
            if after != before:
                changed = next(
                    what for what, a, b in zip(_PARTS, after, before, strict=False) if a != b
                )
                return f"the {changed} of {names.get(key) or 'the model'}"
        return None

    def give_back(self, *, tensors_kept: bool = False) -> bool:
        """Bind, fill and delete every attribute as it was, unless the forward built the model
        further (:meth:`built`: a module that registered a hook or made a head on its first
        call): the attributes that say so (a hook's handle, a ``built`` flag), wherever they
        are (a flag of another module that holds the hooked one in a plain list), must then
        stay as they are, and none is given back. ``tensors_kept``: those that hold a tensor
        now stay as they are (a cache the forward made), the others (a flag that refuses a
        second call) are given back. Returns whether they were."""
        if (built := self.built()) is not None:
            if self.model not in _TOLD_BUILT:
                _TOLD_BUILT[self.model] = True
                logger.warning(
                    "the forward built the model further (%s): its buffers and plain "
                    "attributes stay as that forward left them, not as given",
                    built,
                )
            return False
        for saved in self.saved:
            attributes = vars(saved.module)
            kept = {k for k, v in attributes.items() if tensors_kept and _holds_tensor(v)}
            added = [k for k, v in attributes.items() if k not in saved.values and k not in kept]
            for name in added:
                if not _bookkeeping(name, attributes[name]):
                    del attributes[name]
            for name, value in saved.values.items():
                if name in kept:
                    continue
                if attributes.get(name, _MISSING) is not value:
                    attributes[name] = value
                if name in saved.contents:
                    _give_back_contents(saved.contents[name])
            for name, child in saved.stateless.items():
                if saved.module._modules.get(name) is not child:
                    saved.module._modules[name] = child
        for generator, state in self.generators:
            set_rng_state(generator, state)
        for module, settings in self.settings:
            attributes = vars(module)
            attributes.update(
                {k: v for k, v in settings.items() if attributes.get(k, _MISSING) is not v}
            )
        return True
