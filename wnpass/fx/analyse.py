"""Plan weight norm per parameter: which op uses it, at which axis, or why it is left alone.

Pure analysis: the model is not changed. Layers already weight-normed (either PyTorch API) become
"already" sites; tied weights (one tensor held by several modules) are skipped, never untied,
with the other names, while one module under several names is normed once; frozen parameters
(``requires_grad=False``) are left alone. ``include``/``exclude`` patterns match any name of
the parameter or of its module, the op, or the name of the owning module's class or one of its
base classes (``fnmatch`` style, so ``"Conv1d"`` selects every ``nn.Conv1d`` and subclass);
classes match the owning module, or a module holding it, by ``isinstance``.
:func:`layer_type` resolves a class name for a command line.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import get_args

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.nn.utils.parametrizations import _WeightNorm

from wnpass.arguments import require_choice
from wnpass.axes import DimPolicy, is_legacy_hook, is_legacy_spectral_norm_hook
from wnpass.errors import InvalidArgumentError, UsageError
from wnpass.fx.arguments import (
    is_lazy,
    require_initialized,
    require_module,
    require_trainable,
    require_values,
)
from wnpass.fx.attributes import TENSOR_HOOKS
from wnpass.fx.axes import HOOKED, READ_INTO_WRITTEN, TRAINING_WRITE, Use
from wnpass.fx.elements import Elements
from wnpass.fx.forward import (
    Batch,
    as_batch,
    parameter_prints,
    run_forward,
    state_given_back,
    written_parameters,
)
from wnpass.fx.observe import Trained, in_training
from wnpass.fx.register import parametrized_here, stored_unit_dim, unit_norm_problem
from wnpass.fx.report import ParamSite
from wnpass.fx.trace import Tracer, find_uses

__all__ = [
    "DIM_POLICIES",
    "Pattern",
    "UnknownLayerTypeError",
    "aliases",
    "analyse_sites",
    "as_patterns",
    "layer_type",
    "materialize_lazy",
    "owner_of",
    "require_analysable",
    "require_eager",
    "selected_out",
]

logger = logging.getLogger(__name__)

Pattern = str | type[nn.Module]
DIM_POLICIES: tuple[DimPolicy, ...] = get_args(DimPolicy)


class UnknownLayerTypeError(UsageError):
    """A layer type named by the user exists neither in the model nor in ``torch.nn``."""


def layer_type(model: nn.Module, name: str) -> type[nn.Module]:
    """The layer class called ``name``: one of the model's module classes (or their bases), else
    ``torch.nn.<name>``; :class:`UnknownLayerTypeError` when there is none."""
    for module in model.modules():
        for cls in type(module).__mro__:
            if cls.__name__ == name and issubclass(cls, nn.Module):
                return cls
    found = getattr(nn, name, None)
    if isinstance(found, type) and issubclass(found, nn.Module):
        return found
    own = sorted({parametrize.type_before_parametrizations(m).__name__ for m in model.modules()})
    raise UnknownLayerTypeError(
        f"no layer type {name!r} in torch.nn or in {type(model).__name__} "
        f"(its layer types: {', '.join(own[:20])}{' ...' if len(own) > 20 else ''})"
    )


def require_eager(model: nn.Module) -> None:
    """``model`` and every submodule are Python modules, not TorchScript (``torch.jit.script``
    / ``trace``): a ScriptModule's submodules cannot be looked up by name nor parametrized, and
    its forward runs no Python (no op is seen), so it is refused before anything runs, naming
    the first one's path. The error names no parameter: the model is what is wrong, and the CLI
    then says which model.py built it."""
    _refuse_inside(
        model,
        torch.jit.ScriptModule,
        "a TorchScript module (torch.jit.script or trace): weight norm goes on the Python "
        "nn.Module; script or trace it afterwards",
    )


def _refuse_inside(model: nn.Module, kind: type, why: str) -> None:
    """Refuse ``model`` where it or a submodule is a ``kind``, naming the first one's path."""
    for path, module in model.named_modules():
        if isinstance(module, kind):
            where = f"{path} ({type(module).__name__})" if path else type(module).__name__
            raise InvalidArgumentError(f"{where}: {why}")


def require_analysable(model: object, batch: Batch | None) -> None:
    """What every analysis of ``model`` needs, checked before anything runs: a module
    (``model``), whose weights hold values (none on the meta device), in Python (no
    TorchScript), not wrapped for distributed training, none made under inference mode, and
    whose lazy layers are initialized unless example inputs (``batch``) give them their
    shapes."""
    module = require_module(model)
    require_values(module)
    require_trainable(module)
    require_eager(module)
    _refuse_inside(
        module,
        nn.parallel.DistributedDataParallel,
        "a distributed wrapper holds the module's weights too: apply weight norm to the module "
        "it wraps (its .module), then wrap it",
    )
    if batch is None:
        require_initialized(module)


NOT_INITIALIZED = "lazy parameter the example inputs do not initialize (its layer never ran)"
# The class each lazy module had before :func:`materialize_lazy` gave it its shapes (PyTorch
# then makes a LazyConv1d a Conv1d): include/exclude by layer type still match it.
_WAS_LAZY: weakref.WeakKeyDictionary[nn.Module, type] = weakref.WeakKeyDictionary()


def materialize_lazy(model: nn.Module, batch: Batch) -> list[str]:
    """Run ``model`` once on ``batch`` where it has lazy layers not initialized yet
    (``nn.LazyLinear``): the forward gives them their shapes and initial values, drawn from
    the random generators as any first forward draws them; the buffers it writes (a call
    counter) and the model's state stay as built. Their classes before are kept for the
    selection by layer type. Returns the other parameters that forward wrote (an init on the
    first call, as Glow's ActNorm), named in a warning too: nothing can give them back."""
    lazy = [m for m in model.modules() if any(is_lazy(t) for t in m.parameters(recurse=False))]
    if not lazy:
        return []
    for module in lazy:
        _WAS_LAZY[module] = type(module)
    before = parameter_prints(model)
    # the parameters it writes stay written (no copy of them is taken for this forward):
    # lazy layers' values and an init of the model's own, said below
    with state_given_back(model, unless_written=False):
        run_forward(model, batch)
    written = written_parameters(model, before)
    if written:
        logger.warning(
            "the forward that gave the lazy layers their shapes wrote the parameters %s too "
            "(an init on its first call): they hold values computed from the example inputs",
            ", ".join(written),
        )
    return written


def owner_of(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding parameter ``name``, and its attribute name there."""
    prefix, _, leaf = name.rpartition(".")
    return (model.get_submodule(prefix) if prefix else model), leaf


def as_patterns(
    value: Pattern | Sequence[Pattern] | None, parameter: str, *, empty: bool = True
) -> list[Pattern]:
    """``include``/``exclude`` as a list: a name pattern or a layer class, or several; anything
    else is an error naming ``parameter`` (before the model runs, not when a pattern is read).
    Without ``empty``, an empty sequence is one too: an include of no pattern selects no
    parameter (it selected every one, as None does, t140), as one that matches none is
    refused."""
    if value is None:
        return []
    items = [value] if isinstance(value, str | type) else value
    if isinstance(items, Iterable):
        items = list(items)
        if not items and not empty:
            raise InvalidArgumentError(
                "is empty: it selects no parameter (None selects every one)", parameter=parameter
            )
        if all(_is_pattern(item) for item in items):
            return items
    raise InvalidArgumentError(
        f"must be a name pattern, a torch.nn.Module class or a sequence of them, not {value!r}",
        parameter=parameter,
    )


def _is_pattern(item: object) -> bool:
    return isinstance(item, str) or (isinstance(item, type) and issubclass(item, nn.Module))


def _matches(
    model: nn.Module, site: ParamSite, patterns: list[Pattern], names: list[str]
) -> Pattern | None:
    """The first pattern matching the site: by any of its names (one module can have several),
    its module's names, its op or its layer type. A class matches the layer holding the
    parameter and every module holding that layer (``MultiheadAttention`` its ``out_proj``
    too, a model's own block the layers in it, t312): a name pattern can say "the layers in
    it" (``encoder.*``), a class cannot otherwise. A name pattern matches the holding layer's
    own class names only, as one such as ``Conv*`` would otherwise take in every layer of a
    ``ConvNeXtBlock``, and ``*Model`` the whole model."""
    owner, _ = owner_of(model, site.name)
    texts = [*names, *(name.rpartition(".")[0] for name in names), *_op_names(site.op)]
    types = [type(owner), *([_WAS_LAZY[owner]] if owner in _WAS_LAZY else [])]
    for pattern in patterns:
        if isinstance(pattern, type):
            if any(issubclass(t, pattern) for t in [*types, *_holders(model, names)]):
                return pattern
        elif any(fnmatch.fnmatchcase(text, pattern) for text in texts) or any(
            fnmatch.fnmatchcase(cls.__name__, pattern) for t in types for cls in t.__mro__
        ):
            return pattern
    return None


def every_name(model: nn.Module, name: str) -> list[str]:
    """Every name of weight ``name`` of a module under several names (``blocks.0.weight`` and
    ``alias.weight``), as ``named_parameters`` gives only the first: of a layer weight-normed
    before, the only name its site had, so that an exclude of its other name or of a module
    holding it there did not keep it out of data init (t318)."""
    owner, leaf = owner_of(model, name)
    paths = [
        path for path, module in model.named_modules(remove_duplicate=False) if module is owner
    ]
    return [f"{path}.{leaf}" if path else leaf for path in paths] or [name]


def _holders(model: nn.Module, names: list[str]) -> list[type]:
    """The classes of the modules holding the layer that holds a parameter of ``names``: the
    model itself and each module on the way down, under any of the names."""
    paths = {
        ".".join(parts[:depth])
        for parts in (name.split(".")[:-2] for name in names)
        for depth in range(len(parts) + 1)
    }
    return [type(model.get_submodule(path)) for path in paths]


def _op_names(ops: str) -> list[str]:
    """The names a site's ops are matched by: the text shown (``Conv1D (addmm)``), each op of
    several (``Linear, matmul``), and the op a layer of the model's own called, as the
    README names it (``addmm``, t105)."""
    names = [ops]
    for op in ops.split(", "):
        layer, _, called = op.partition(" (")
        names += [op, layer, called.removesuffix(")")] if called else [op]
    return list(dict.fromkeys(names))


def _pattern_text(pattern: Pattern) -> str:
    return pattern.__name__ if isinstance(pattern, type) else pattern


def selected_out(
    model: nn.Module,
    site: ParamSite,
    includes: list[Pattern],
    excludes: list[Pattern],
    names: list[str] | None = None,
) -> str | None:
    """Why the user's include/exclude leave ``site`` out (``excluded (Conv1d)``, ``not
    included``); None when they select it. ``names``: every name of its parameter (default:
    :func:`every_name` of the site's). The one rule for a weight to plan and for one
    weight-normed before (which data init must then leave alone)."""
    names = names or every_name(model, site.name)
    if (hit := _matches(model, site, excludes, names)) is not None:
        return f"excluded ({_pattern_text(hit)})"
    if includes and _matches(model, site, includes, names) is None:
        return "not included"
    return None


def _already(model: nn.Module) -> tuple[dict[str, ParamSite], dict[str, str]]:
    """Sites of weights normed before, keyed by their first covered parameter; covered -> site."""
    sites: dict[str, ParamSite] = {}
    covered: dict[str, str] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        op = parametrize.type_before_parametrizations(module).__name__
        if parametrized_here(module):
            for tensor_name, plist in module.parametrizations.items():
                norms = [p for p in plist if isinstance(p, _WeightNorm)]
                base = f"{prefix}parametrizations.{tensor_name}."
                originals = [base + local for local, _ in plist.named_parameters()]
                v = getattr(plist, "original1", getattr(plist, "original", None))
                shape = list(v.shape) if v is not None else []
                if norms:
                    axis = stored_unit_dim(norms[0].dim, len(shape))
                    status, reason = "already", "parametrizations.weight_norm"
                else:
                    axis, status = None, "skipped"
                    reason = f"already parametrized ({type(plist[0]).__name__})"
                site = ParamSite(prefix + tensor_name, op, shape, axis, status, reason)
                for original in originals:
                    covered[original] = site.name
                if originals:
                    sites[originals[0]] = site
        for hook in module._forward_pre_hooks.values():
            if is_legacy_hook(hook):
                g_name, v_name = f"{prefix}{hook.name}_g", f"{prefix}{hook.name}_v"
                v = getattr(module, f"{hook.name}_v")
                axis = stored_unit_dim(hook.dim, v.dim())
                reason = "legacy weight_norm hook"
                site = ParamSite(prefix + hook.name, op, list(v.shape), axis, "already", reason)
                covered[g_name] = covered[v_name] = site.name
                sites[g_name] = site
            elif is_legacy_spectral_norm_hook(hook):  # like the parametrized spectral norm
                original = f"{prefix}{hook.name}_orig"
                shape = list(getattr(module, f"{hook.name}_orig").shape)
                reason = "already parametrized (legacy spectral_norm hook)"
                site = ParamSite(prefix + hook.name, op, shape, None, "skipped", reason)
                covered[original] = site.name
                sites[original] = site
    return sites, covered


def aliases(model: nn.Module) -> tuple[dict[int, list[str]], set[int]]:
    """Every name of each parameter (by id), and the parameters that are tied.

    A parameter under several names is tied when two different modules (or two attributes)
    hold it: weight norm on one would untie it. One module registered under several names
    (``nn.ModuleList([block] * 3)``, an alias attribute) is not: every name reaches the same
    module, whose one parametrization they all share. A parameter whose data a buffer or a
    plain attribute also holds (:func:`_held_elsewhere`) is tied too, under those names.
    """
    names: dict[int, list[str]] = defaultdict(list)
    holders: dict[int, set[tuple[int, str]]] = defaultdict(set)
    params: dict[int, nn.Parameter] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names[id(param)].append(name)
        params[id(param)] = param
        owner, leaf = owner_of(model, name)
        holders[id(param)].add((id(owner), leaf))
    for key, where in _held_elsewhere(model, params).items():
        names[key].extend(where)
        holders[key].update((0, name) for name in where)  # no module's id is 0
    return names, {key for key, held in holders.items() if len(held) > 1}


def _held_elsewhere(model: nn.Module, params: dict[int, nn.Parameter]) -> dict[int, list[str]]:
    """The other holders of each parameter's data (by id): a buffer that is the parameter or a
    view of its elements (``register_buffer("w", lin.weight)``), or a module's plain
    attribute holding one, alone or in lists, tuples, dicts, sets or ``SimpleNamespace``s,
    nested (``self.layers = [(w_ih, w_hh), ...]``: :func:`_tensors_in`). Weight norm replaces
    the parameter on its module only: such a holder keeps the old tensor, which the forward
    then reads (no gradient reaches g and v) or a state dict saves beside them, stale.
    ``nn.RNNBase``'s own ``_flat_weights`` are rebuilt from the module's attributes each
    forward, and are no other holder. Holders no attribute shows (a closure, a
    ``functools.partial``) are found by the forward after the rewrite, where there are
    example inputs (:mod:`wnpass.fx.reach`)."""
    elements = Elements(params)
    held: dict[int, list[str]] = defaultdict(list)
    for path, module in model.named_modules():
        prefix = f"{path}." if path else ""
        found = [(f"{prefix}{name}", t) for name, t in module._buffers.items() if t is not None]
        for attribute, value in vars(module).items():
            if attribute in ("_parameters", "_buffers", "_modules") or (
                isinstance(module, nn.RNNBase) and attribute == "_flat_weights"
            ):
                continue
            found.extend(_tensors_in(f"{prefix}{attribute}", value))
        for name, tensor in found:
            for key in elements.of(tensor):
                held[key].append(name)
    return held


# What a plain attribute may hold weights in: each is searched, however deep and large.
_CONTAINERS = (dict, list, tuple, set, frozenset, SimpleNamespace)


def _tensors_in(label: str, value: object) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors in ``value`` (itself, or in its lists, tuples, dicts (keys too: an
    L2-SP anchor keyed by its parameter), sets and ``SimpleNamespace``s, nested to any depth),
    each with where it is (``layers[0][1]``); a module inside is its own (``named_modules``
    visits it). Each container is searched once (a cycle ends there)."""
    stack: list[tuple[str, object]] = [(label, value)]
    seen: set[int] = set()
    while stack:
        where, item = stack.pop()
        if isinstance(item, torch.Tensor):
            yield where, item
            continue
        if not isinstance(item, _CONTAINERS) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, SimpleNamespace):
            item = vars(item)
        if isinstance(item, dict):
            for k, v in item.items():
                key = repr(k) if isinstance(k, str | int) else "..."
                stack.extend(_searched(f"{where}[{key}]", v))
                stack.extend(_searched(f"{where} (a key)", k))
        elif isinstance(item, list | tuple):
            for i, v in enumerate(item):
                stack.extend(_searched(f"{where}[{i}]", v))
        else:  # a set
            for v in item:
                stack.extend(_searched(f"{where}{{...}}", v))


def _searched(where: str, value: object) -> list[tuple[str, object]]:
    """``value`` to search, or nothing: a number or a string in a long list holds no weight."""
    return [(where, value)] if isinstance(value, (torch.Tensor, *_CONTAINERS)) else []


def _decide(
    name: str, param: nn.Parameter, uses: list[Use], aliases: list[str], tied: bool, mode: str
) -> ParamSite:
    ndim = param.dim()
    ops = ", ".join(dict.fromkeys(use.op for use in uses if use.op)) or "-"
    site = ParamSite(name, ops, [], None, "skipped")
    others = ", ".join(a for a in aliases if a != name)
    if tied:
        site.reason = f"tied weight (also {others}): one weight norm would untie it"
        return site
    if not param.requires_grad:
        site.reason = "frozen (requires_grad=False)"
        return site
    if any(getattr(param, hooks, None) for hooks in TENSOR_HOOKS):
        site.reason = HOOKED
        return site
    if not param.is_floating_point():  # complex: PyTorch's weight norm has no kernel for it
        dtype = str(param.dtype).removeprefix("torch.")
        site.reason = f"{dtype} parameter: weight norm needs a real floating-point weight"
        return site
    if not uses:
        site.reason = {
            "module types": "not part of a known layer (traced by module types only)",
            "observed": "not used in the observed forward",
        }.get(mode, "not used in the traced forward")
        return site
    reasons = list(dict.fromkeys(use.reason for use in uses if use.reason))
    if ndim < 2 and reasons:  # a bias, whatever else it is (written in training too)
        site.reason = "bias" if "bias" in reasons else "1-D parameter (a scale or shift)"
        return site
    if reasons:
        site.reason = "; ".join(reasons)
        return site
    consumers = sorted({use.consumer for use in uses})
    axes = {use.axis for use in uses}
    if len(axes) > 1:
        site.reason = f"used at different unit axes {sorted(a for a in axes if a is not None)}"
        return site
    if ndim < 2:
        site.reason = "1-D parameter (a scale or shift)"
        return site
    axis = axes.pop()
    if axis is not None and (problem := unit_norm_problem(param, axis)) is not None:
        site.reason = problem
        return site
    site.axis, site.status = axis, "planned"
    if others:  # one module under several names: normed once, every name sees it
        site.reason = f"one module under {len(aliases)} names (also {others})"
    logger.debug("%s: %s axis %s (%d uses by %s)", name, ops, site.axis, len(uses), consumers)
    return site


def _in_training_only(
    trained: Trained, uses: Sequence[Use], canonical: Mapping[str, str]
) -> list[Use]:
    """What the training-mode forward adds to ``uses`` (the eval forward's, or a trace's):
    each weight it wrote (:data:`TRAINING_WRITE`), and, of the weights ``uses`` would plan,
    each use of theirs read into a weight written in place (a mean teacher's update reads
    the student's weights in training only; under weight norm it read g and v: t251) or at
    another unit axis. A use at the axis known is no news (a trace names ops otherwise); nor
    is a use of another kind training alone makes (NoisyNet's ``mu + sigma * eps``, a
    penalty ``W.pow(2).sum()``, noise of ``W``'s shape), which weight norm keeps exact, as
    the computed weight is read (t254)."""
    written = {canonical.get(name, name) for name in trained.written}
    axes: dict[str, set[int | None]] = defaultdict(set)
    reasoned = set()
    for use in uses:
        name = canonical.get(use.param, use.param)
        axes[name].add(use.axis)
        if use.reason:
            reasoned.add(name)
    added = [Use(name, "", "", None, TRAINING_WRITE) for name in sorted(written)]
    for use in trained.uses:
        name = canonical.get(use.param, use.param)
        if name in written or name in reasoned or name not in axes:
            continue
        if use.reason:
            if use.reason.startswith(READ_INTO_WRITTEN):
                reason = f"{use.reason} (in training)"
                added.append(dataclasses.replace(use, param=name, reason=reason))
        elif use.axis not in axes[name]:
            added.append(dataclasses.replace(use, param=name))
    return added


def analyse_sites(
    model: nn.Module,
    example_inputs: object = None,
    *,
    include: Pattern | Sequence[Pattern] | None = None,
    exclude: Pattern | Sequence[Pattern] | None = None,
    dim_policy: DimPolicy = "unit",
    embeddings: bool = False,
    tracer: Tracer = "auto",
) -> tuple[list[ParamSite], str, str | None]:
    """The plan for every parameter; how uses were found; a note when that fell back.

    ``example_inputs``: a tensor, a tuple (positional) or a dict (keyword inputs). With them the
    model is run once, eval mode and no grad (:mod:`wnpass.fx.observe`); without, it is traced.
    A model with lazy layers not initialized yet (``nn.LazyLinear``) needs them: it is run once
    more first, which gives those layers their shapes (and, as any first forward, their
    initial values), and the plan is that of its second forward.
    """
    require_choice("dim_policy", dim_policy, DIM_POLICIES)
    batch = None if example_inputs is None else as_batch(example_inputs)
    require_analysable(model, batch)
    if batch is not None:
        materialize_lazy(model, batch)
    already, covered = _already(model)
    names_of, tied = aliases(model)
    canonical = {name: names[0] for names in names_of.values() for name in names}
    uses, mode, note = find_uses(model, batch, dim_policy, embeddings, tracer)
    if batch is not None:  # weight norm is for training: what training mode does counts
        trained = in_training(model, batch, dim_policy, embeddings)
        uses = [*uses, *_in_training_only(trained, uses, canonical)]
    by_param: dict[str, list[Use]] = defaultdict(list)
    for use in uses:
        key = canonical.get(use.param, use.param)
        if use not in by_param[key]:
            by_param[key].append(use)
    includes = as_patterns(include, "include", empty=False)
    excludes = as_patterns(exclude, "exclude")
    sites: list[ParamSite] = []
    every: list[tuple[ParamSite, list[str]]] = []  # with every name of its parameter
    for name, param in model.named_parameters():
        if name in covered:
            if name in already:
                sites.append(already[name])
                every.append((already[name], every_name(model, already[name].name)))
            continue
        if is_lazy(param):  # its layer's forward never ran: it has no shape to plan with
            sites.append(ParamSite(name, "-", None, None, "skipped", NOT_INITIALIZED))
            every.append((sites[-1], [name]))
            continue
        names = names_of[id(param)]
        site = _decide(name, param, by_param[name], names, id(param) in tied, mode)
        site.shape = list(param.shape)
        if site.status == "planned" and (
            left_out := selected_out(model, site, includes, excludes, names)
        ):
            site.status, site.reason = "skipped", left_out
        sites.append(site)
        every.append((site, names))
    if includes:
        _mark_included(model, every, includes, excludes)
    _require_matched(model, every, includes, "include")
    _require_matched(model, every, excludes, "exclude")
    _require_selected(model, every, includes)
    return sites, mode, note


def _mark_included(
    model: nn.Module,
    sites: list[tuple[ParamSite, list[str]]],
    includes: list[Pattern],
    excludes: list[Pattern],
) -> None:
    """Mark the parameters the include names and the exclude keeps (``ParamSite.included``):
    asked for, so that one left without weight norm makes applying nothing a failure. Those of
    2-D and up (weight-normed before too; lazy ones not reached); 1-D ones only where the
    include names no parameter of 2-D and up (``--include '*.bias'`` said "nothing selected",
    exit 0, t171), since an include of a layer names its bias beside its weight (t147)."""
    named = [(s, names) for s, names in sites if _matches(model, s, includes, names) is not None]
    # of 2-D and up, or of a shape not known (a lazy layer the forward never reached, t173)
    wide = [(site, names) for site, names in named if site.shape is None or len(site.shape) >= 2]
    for site, names in wide or named:
        site.included = _matches(model, site, excludes, names) is None


def _require_selected(
    model: nn.Module, sites: list[tuple[ParamSite, list[str]]], includes: list[Pattern]
) -> None:
    """Refuse an include that selects no parameter at all: its name patterns each select one
    (:func:`_require_matched`), so these are classes, none of which the model holds a
    parameter in (``--include-type Conv1d`` for GPT-2's ``Conv1D`` wrote the model unchanged
    as ok, t105). One class of several that the model lacks is no error: a list written for
    many models (``(nn.Conv1d, nn.Conv2d)``) names some a given model does not have."""
    if includes and not any(_matches(model, site, includes, names) for site, names in sites):
        said = ", ".join(_pattern_text(pattern) for pattern in includes)
        raise InvalidArgumentError(
            f"{said} selects no parameter: no layer of the model holding one is of that type "
            "or inside one",
            parameter="include",
        )


def _require_matched(
    model: nn.Module,
    sites: list[tuple[ParamSite, list[str]]],
    patterns: list[Pattern],
    parameter: str,
) -> None:
    """Refuse a name pattern that selects no parameter of the model (matching none of its
    names, its module's, its op or its layer type): a typo (``c_attn`` for GPT-2's
    ``h.0.attn.c_attn``, which ``*c_attn*`` matches) selected nothing, and the model was
    written unchanged as ok. A class is no typo (the command line resolves a type's name
    first): one the model holds no parameter in is refused only where the whole include
    selects nothing (:func:`_require_selected`)."""
    for pattern in patterns:
        if isinstance(pattern, type):
            continue
        if not any(_matches(model, site, [pattern], names) for site, names in sites):
            raise InvalidArgumentError(
                f"{pattern!r} selects no parameter: it matches no name of a parameter or of "
                "the module holding one, nor the op or layer type using one (a pattern "
                f"matches a whole name: 'encoder.*', '*attn*'){_as_type_hint(model, pattern)}",
                parameter=parameter,
            )


def _as_type_hint(model: nn.Module, pattern: str) -> str:
    """What a name pattern that matched nothing would select as a layer type, where it names
    the class of a module holding layers that hold parameters (a block of the model's own),
    named exactly: a type is a class's name, not a pattern (t318)."""
    for module in model.modules():
        if next(module.children(), None) is None or next(module.parameters(), None) is None:
            continue
        for cls in type(module).__mro__:
            if issubclass(cls, nn.Module) and fnmatch.fnmatchcase(cls.__name__, pattern):
                return (
                    f"; {pattern!r} names {cls.__name__}, a class of modules holding layers: as "
                    f"a layer type ({cls.__name__}), it selects the layers inside them"
                )
    return ""
