"""Objects of a ``torch.save`` file kept as they are, never built (``keep_objects``).

A trainer's checkpoint holds more than tensors: NeMo's and Hydra's configurations
(``omegaconf.DictConfig``), paths (``pathlib.PosixPath``), a class stored as a value
(Lightning's ``hparams_type``). ``torch.load(weights_only=True)`` refuses them, as building them
runs their classes' code; a load without it would run whatever the file names. Kept, each
such object is loaded as a stand-in that records how the file builds it (the class or
function the pickle names, its arguments, the state it sets) and runs nothing; the writer
(:data:`PICKLER`) writes those same instructions back, so the output builds the same objects
where the file is loaded. Tensors and state dicts are loaded as always, by torch's weights-only
loader, which also still refuses what it never allows (globals of ``os``, ``sys``); a stand-in
that a pickle fills as a list or a dict (``APPENDS``, ``SETITEMS``) is refused by it too.

Stand-ins are classes made per global name (:func:`kept_class`): one object per name, so a
class stored as a value and the same class's instances stay what they were to each other. The
globals come from ``torch.serialization.get_unsafe_globals_in_checkpoint`` (torch 2.5 and
later, zip-format files), each with the module and name the pickle's ``GLOBAL`` gives it, read
from the file's ``data.pkl``. What would not be written back as read is refused: an object
built twice, or with a ``None`` state (:data:`ONCE`), a dotted name (protocol 4's), a class
nested in another (reached through ``builtins.getattr``).
"""

from __future__ import annotations

import _compat_pickle
import copyreg
import pickle
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

__all__ = [
    "ONCE",
    "PICKLER",
    "UNSET",
    "Globals",
    "Kept",
    "blocked",
    "keepable",
    "keeping",
    "kept_class",
    "library_first",
    "unsafe_globals",
]

_CLASSES: dict[str, type] = {}  # global name -> its stand-in class (one per process)
_NEWOBJ = copyreg.__newobj__  # type: ignore[attr-defined]  # pickle writes NEWOBJ for it
UNSET = object()  # a kept object's state before any BUILD
ONCE = "Can only keep an object the pickle builds once, with a state (BUILD)"


class _KeptType(type):
    """The type of stand-in classes: calling one (a pickle's ``REDUCE``) records the call."""

    _global: tuple[str, str]  # the global's module and name

    def __call__(cls, *args: Any) -> Any:
        kept = cast(Any, cls).__new__(cls, *args)  # a class of Kept: made as NEWOBJ makes it
        object.__setattr__(kept, "_made", ("call", args))
        return kept

    def __repr__(cls) -> str:
        return f"<kept {'.'.join(cls._global)}>"


class Kept(metaclass=_KeptType):
    """An object the file builds, not built: how it is made (``("new", args)``: the class's
    ``__new__``, a pickle's ``NEWOBJ``; ``("call", args)``: the global called, ``REDUCE``) and
    the state its build sets (``BUILD``, None where it sets none)."""

    _global = ("", "")
    _made: tuple[str, tuple[Any, ...]]
    _state: Any

    def __new__(cls, *args: Any) -> Kept:
        kept = object.__new__(cls)
        object.__setattr__(kept, "_made", ("new", args))
        object.__setattr__(kept, "_state", UNSET)
        return kept

    def __setstate__(self, state: Any) -> None:
        # a pickle builds an object once, with a state: twice, or with None (which pickle
        # does not write back), it would not be written as it is read
        if state is None or self._state is not UNSET:
            raise pickle.UnpicklingError(ONCE)
        object.__setattr__(self, "_state", state)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self!r} is kept as the file holds it")

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        kind, args = self._made
        state = None if self._state is UNSET else self._state
        if kind == "new":
            return (_NEWOBJ, (type(self), *args), state)
        return (type(self), args, state)

    def __repr__(self) -> str:
        return f"<kept {'.'.join(type(self)._global)}>"


def kept_class(name: str, module: str, qualname: str) -> type:
    """The stand-in class of global ``name``, ``module`` + ``.`` + ``qualname`` as the pickle
    names it (``omegaconf.dictconfig``, ``DictConfig``)."""
    if name not in _CLASSES:
        namespace = {"_global": (module, qualname), "__module__": module, "__qualname__": qualname}
        _CLASSES[name] = _KeptType(qualname, (Kept,), namespace)
    return _CLASSES[name]


Globals = dict[str, "tuple[str, str] | None"]  # full name -> (module, name) as the pickle has it


def unsafe_globals(path: Path) -> Globals | None:
    """The globals of zip-format torch file ``path`` that torch's weights-only loader does not
    build (its own allow list and the caller's aside), a library's before Python's own
    (``builtins.dict`` in a configuration says little), each with its module and name as the
    pickle's ``GLOBAL`` gives them (None where no ``GLOBAL`` of the pickle gives that name, or
    its name is dotted, which protocol 2 cannot write); None where torch cannot tell (before
    2.5, a file of the legacy format)."""
    import torch

    find = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if find is None:
        return None
    try:
        found = find(path)
    except Exception:  # not a zip-format file, or a damaged one: its load says why
        return None
    pairs = _global_pairs(path)
    return {name: pairs.get(name) for name in sorted(found, key=library_first)}


def library_first(name: str) -> tuple[bool, str]:
    """A sort key putting a library's globals before Python's own (``builtins.dict`` in a
    configuration says little: ``omegaconf.dictconfig.DictConfig`` does)."""
    return name.startswith(("builtins.", "typing.", "collections.")), name


def _global_pairs(path: Path) -> dict[str, tuple[str, str] | None]:
    """Each ``GLOBAL`` of the file's pickle by its full name, with its module and name as
    torch's loader reads them (Python 2's names mapped, as :mod:`pickle` maps them); the full
    name as written too, which torch's list of globals gives (``commands.Popen`` for
    ``subprocess.Popen``); None for a full name two pairs give, or one whose name is dotted."""
    import pickletools
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            member = next(
                (n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")),
                None,
            )
            data = archive.read(member) if member is not None else b""
        pairs: dict[str, tuple[str, str] | None] = {}
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name != "GLOBAL" or not isinstance(arg, str):
                continue
            module, _, name = arg.partition(" ")
            raw = f"{module}.{name}"  # as torch's loader names it (commands.Popen, t345)
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
            pair = (module, name) if "." not in name else None
            for full in dict.fromkeys((f"{module}.{name}", raw)):
                pairs[full] = pair if pairs.get(full, pair) == pair else None
        return pairs
    except Exception:  # a damaged pickle: its load says why
        return {}


# a class nested in another (``Outer.Inner``): the pickle reaches it by calling getattr on
# the outer one, and a stand-in of getattr gives no class to build from
_NESTED = "builtins.getattr"
# What runs code, and so is never kept (t345): a checkpoint's objects (a configuration, a
# path, a class of the training code, ``functools.partial`` of an optimizer) never need it,
# and a kept object is written back as the file holds it, built by whatever loads the output
# as a trainer loads it (``weights_only=False``). Python's functions that run or import
# code, open files or change attributes, and the modules made for running programs,
# processes, code objects and files; what else a class does as it is made (a ``FileHandler``
# truncating its file) is the file's, kept as it is, and listed.
_RUNS_CODE = frozenset(
    {f"builtins.{name}" for name in (
        "exec", "eval", "compile", "open", "__import__", "input", "breakpoint", "setattr",
        "delattr", "globals", "locals", "vars", "exit", "quit", "help",
    )}
    | {f"{module}.{name}" for module in ("operator", "_operator")
       for name in ("attrgetter", "methodcaller")}
    | {f"types.{name}" for name in ("FunctionType", "LambdaType", "CodeType", "MethodType")}
)  # fmt: skip
_RUNNING_MODULES = frozenset({
    "os", "sys", "posix", "nt", "subprocess", "commands", "pty", "ctypes", "code", "codeop",
    "runpy", "importlib", "pickle", "_pickle", "marshal", "shutil", "io", "_io", "webbrowser",
    "socket", "multiprocessing", "pdb", "bdb", "timeit", "zipimport",
})  # fmt: skip
RUNS_CODE = (
    "it runs code, opens files or imports modules when the file is loaded, which a "
    "checkpoint's objects never need"
)
# functions a checkpoint's objects are rebuilt through: NumPy's arrays, scalars and random
# generators, a subscripted type (``typing.Optional[int]``: ``getitem``), Python's own
_FUNCTIONS_KEPT = frozenset(
    {f"numpy.{core}.multiarray.{name}" for core in ("core", "_core")
     for name in ("_reconstruct", "scalar")}
    | {f"numpy.random._pickle.{name}" for name in (
        "__generator_ctor", "__randomstate_ctor", "__bit_generator_ctor",
    )}
    | {"_operator.getitem", "operator.getitem", "copyreg._reconstructor", "copyreg.__newobj__"}
)  # fmt: skip
NOT_A_CLASS = (
    "a function, which the output, loaded as a trainer loads it (weights_only=False), would "
    "call: only classes are kept"
)
# Python's standard library is where a hostile pickle finds classes that act as they are built
# (t348: imaplib's IMAP4_stream runs a shell command, zipfile's ZipFile and logging's
# FileHandler truncate files, antigravity opens a browser, builtins.license waits on input):
# of it, only what a checkpoint's objects are made of is kept, and typing's objects
_STDLIB_KEPT = frozenset(
    {f"{module}.{name}" for module in ("pathlib", "pathlib._local")  # Python 3.13's name
     for name in (
        "Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath",
    )}
    | {f"collections.{name}" for name in (
        "OrderedDict", "defaultdict", "Counter", "deque", "ChainMap", "UserDict", "UserList",
    )}
    | {f"datetime.{name}" for name in ("datetime", "date", "time", "timedelta", "timezone")}
    | {f"builtins.{name}" for name in (
        "object", "type", "int", "float", "complex", "bool", "str", "bytes", "bytearray",
        "tuple", "list", "dict", "set", "frozenset", "slice", "range",
    )}
    | {"argparse.Namespace", "types.SimpleNamespace", "functools.partial", "decimal.Decimal"}
    | {"fractions.Fraction", "uuid.UUID", "types.GenericAlias"}
)  # fmt: skip
NOT_LISTED = (
    "of Python's standard library, only what a checkpoint's objects are made of is kept "
    "(paths, namespaces, collections, dates, numbers, typing's objects): its other classes and "
    "functions may run code or open files as the output is loaded"
)
NOT_NUMPYS = (
    "of NumPy, arrays, scalars, dtypes and random generators are kept, not what may open "
    "files as it is built (a memmap)"
)
NESTED = (
    "a class nested in another, which the pickle reaches through builtins.getattr, or a dotted "
    "name, which protocol 2 does not write"
)


def why_not_kept(name: str, pair: tuple[str, str] | None) -> str | None:
    """Why global ``name`` (``pair``: its module and name as the pickle gives them) is not
    kept as a stand-in, or None where it is."""
    if name == _NESTED or pair is None:
        return NESTED
    import sys

    module, qualname = pair
    full, top = f"{module}.{qualname}", module.partition(".")[0]
    if full in _RUNS_CODE or top in _RUNNING_MODULES:
        return RUNS_CODE
    if full in _FUNCTIONS_KEPT:
        return None
    if top == "numpy":
        return None if _numpys(module, qualname) else NOT_NUMPYS
    if top == "typing":  # Optional[int], Union: objects, not its functions (get_type_hints)
        return None if _a_class(module, qualname, objects=True) else NOT_A_CLASS
    if top in sys.stdlib_module_names:
        return None if full in _STDLIB_KEPT else NOT_LISTED
    if not _a_class(module, qualname):
        return NOT_A_CLASS  # cProfile.run, pydoc.pipepager (t347): a list has no end
    # a class another module re-exports is judged where it is defined (t351: subprocess's
    # Popen and zipfile's ZipFile reached under a library's name)
    defined = _defined_as(module, qualname)
    if defined is not None and defined.partition(".")[0] in sys.stdlib_module_names:
        return None if defined in _STDLIB_KEPT else NOT_LISTED
    return None  # a library's class, the training code's among them


_UNIMPORTED = object()  # what :func:`_imported` gives for a module this process has not imported


def _imported(module: str, qualname: str) -> Any:
    """The object global ``module.qualname`` names, where this process imported its module
    already (None where the module has no such name); :data:`_UNIMPORTED` where it did not:
    a module is never imported to be asked (that runs its code)."""
    import sys

    found = sys.modules.get(module)
    return _UNIMPORTED if found is None else getattr(found, qualname, None)


def _numpys(module: str, qualname: str) -> bool:
    """Whether global ``module.qualname`` is one of NumPy's arrays, scalar types, dtypes or
    random generators (and the functions Cython rebuilds those through), read from NumPy
    itself, which wnpass imports anyway; ``numpy.memmap``, an array that opens its file,
    is not."""
    import numpy as np
    import numpy.random

    found = _imported(module, qualname)
    if module.startswith("numpy.random."):
        if qualname.startswith("__pyx_unpickle_"):  # a Cython class's state (SeedSequence)
            return callable(found)
        generators = (np.random.Generator, np.random.RandomState, np.random.BitGenerator)
        return isinstance(found, type) and issubclass(found, (*generators, np.random.SeedSequence))
    if module not in ("numpy", "numpy.dtypes") or not isinstance(found, type):
        return False
    return found is np.ndarray or issubclass(found, (np.dtype, np.generic))


def _defined_as(module: str, qualname: str) -> str | None:
    """Where the class global ``module.qualname`` is defined (its ``__module__`` and
    ``__qualname__``), where this process imported its module already; else None."""
    found = _imported(module, qualname)
    if not isinstance(found, type):
        return None
    return f"{found.__module__}.{found.__qualname__}"


def _a_class(module: str, qualname: str, *, objects: bool = False) -> bool:
    """Whether global ``module.qualname`` is a class (with ``objects``, any object but a
    function: ``typing.Union``), asked of the module where this process imported it already
    (``numpy.float32``, ``functools.partial``; a dict such as ``torch.__builtins__`` or an
    object whose call runs code, ``sympy.S``, is none: t351), never importing one (that runs
    its code); else told by its name, capitalized as classes are."""
    import inspect

    found = _imported(module, qualname)
    if found is _UNIMPORTED:
        return qualname.lstrip("_")[:1].isupper()
    if objects:  # typing's objects (Optional, Union) are no classes
        return found is not None and not inspect.isroutine(found)
    return isinstance(found, type)  # not a dict, nor an object whose call runs code


def keepable(names: Globals) -> dict[str, tuple[str, str]]:
    """Of ``names``, those kept as stand-ins, with their module and name."""
    return {
        name: pair
        for name, pair in names.items()
        if pair is not None and why_not_kept(name, pair) is None
    }


def blocked(names: Iterable[str]) -> bool:
    """Whether a global of ``names`` is of a module torch's weights-only loader never allows,
    even kept (``os.system``: what a malicious pickle calls)."""
    from torch import _weights_only_unpickler

    modules = getattr(_weights_only_unpickler, "_blocklisted_modules", ["sys", "os", "posix", "nt"])
    return any(name.rpartition(".")[0] in modules for name in names)


@contextmanager
def keeping(names: dict[str, tuple[str, str]]) -> Iterator[None]:
    """Globals ``names`` loaded as stand-ins by ``torch.load(weights_only=True)`` within."""
    import torch

    stand_ins: list[Any] = [(kept_class(name, *pair), name) for name, pair in names.items()]
    with torch.serialization.safe_globals(stand_ins):
        yield


# the Python pickler: its save_global can be extended (the C pickler's cannot); used only
# where a file holds stand-ins
_PythonPickler: Any = pickle._Pickler


class _Pickler(_PythonPickler):
    """``pickle``'s pickler writing each stand-in class as the global it stands for, as
    protocol 2 names it (``__builtin__.dict``: Python 2's names, which ``torch.save`` writes)."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if not isinstance(obj, _KeptType):
            super().save_global(obj, name)
            return
        module, qualname = obj._global
        if self.proto < 3:
            if (module, qualname) in _compat_pickle.REVERSE_NAME_MAPPING:
                module, qualname = _compat_pickle.REVERSE_NAME_MAPPING[(module, qualname)]
            elif module in _compat_pickle.REVERSE_IMPORT_MAPPING:
                module = _compat_pickle.REVERSE_IMPORT_MAPPING[module]
        self.write(pickle.GLOBAL + module.encode() + b"\n" + qualname.encode() + b"\n")
        self.memoize(obj)


# what ``torch.save(..., pickle_module=PICKLER)`` needs of a pickle module
PICKLER = types.SimpleNamespace(Pickler=_Pickler, __name__="wnpass.checkpoint.kept")
