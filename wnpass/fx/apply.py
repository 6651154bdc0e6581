"""Add weight normalization to a PyTorch model in place: ``ApplyWeightNormPass``.

Each planned parameter (see :mod:`wnpass.fx.analyse`) goes through PyTorch's own
``_WeightNorm`` parametrization, registered like
``torch.nn.utils.parametrizations.weight_norm(owner, name, dim=axis)`` does
(:mod:`wnpass.fx.register`, picklable): the model keeps its class,
the state dict gets the standard ``parametrizations.<name>.original0`` (``g``, one per output
unit, size 1 on every other axis) and ``original1`` (``v``) keys, and
``torch.nn.utils.parametrize.remove_parametrizations`` undoes it. ``init="keep"`` sets
``g = ||w||`` and ``v = w`` (PyTorch's ``right_inverse``), so the model computes what it did up to
float rounding; on example inputs the whole result is checked against ``KEEP_RTOL``
(:mod:`wnpass.fx.compare`; both forwards from the same random-number state, each on its own
copy of the inputs: see :mod:`wnpass.fx.forward`). ``init="data"`` runs the
paper's data-dependent init (:func:`wnpass.fx.data_init.data_init`) on the example inputs, of
the weights normed now and of those normed before that ``include``/``exclude`` select (the
others keep their values); when it initializes no layer, nothing was written and the outputs
are compared as with ``init="keep"``.
RNN modules get the once-per-forward cache of :mod:`wnpass.fx.rnn_cache`. A call that raises
after the rewrite began (``init="data"`` on a batch that gives a layer no statistics, say)
undoes it: the caller's model is left as it was.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal, get_args

import torch
from torch import nn

from wnpass.arguments import require_choice, require_flag
from wnpass.axes import DimPolicy
from wnpass.errors import InvalidArgumentError, UsageError
from wnpass.fx.analyse import (
    DIM_POLICIES,
    Pattern,
    analyse_sites,
    as_patterns,
    materialize_lazy,
    owner_of,
    require_analysable,
    selected_out,
)
from wnpass.fx.compare import (
    Leaf,
    below_the_floor,
    max_rel_error,
    output_changes,
    result_leaves,
    result_tensors,
    uncompared,
)
from wnpass.fx.data_init import data_init
from wnpass.fx.forward import (
    Batch,
    ForwardFailedError,
    ModelExitedError,
    RngSnapshot,
    as_batch,
    call_model,
    cloned,
    evaluating,
    forward_failed,
    state_given_back,
)
from wnpass.fx.mean_only_bn import replace_batch_norm
from wnpass.fx.reach import give_back_unreached
from wnpass.fx.register import register_weight_norm
from wnpass.fx.report import ApplyReport, ParamSite
from wnpass.fx.rnn_cache import install_rnn_cache
from wnpass.fx.trace import TRACERS, Tracer
from wnpass.report import counted, listed
from wnpass.verify.options import as_tolerance, refuse_unused

__all__ = [
    "KEEP_RTOL",
    "ApplyWeightNormPass",
    "analyse_sites",
    "apply_weight_norm",
]

logger = logging.getLogger(__name__)

# init="keep": w' = g * v / ||v|| with g = ||w||, v = w differs from w by a few float32 ulps
# (~1e-7 relative); a consumer summing K products grows that to ~sqrt(K) * 1e-7, and deep models
# stack layers. Measured on the example models: <= 4e-7 relative to the output's largest
# magnitude. 1e-5 leaves an order of magnitude of room and still catches a wrong axis (errors
# of order 1). float16 models round at 2**-11: 1e-2 for them; bfloat16 ones at 2**-8, eight
# times coarser, which deep models add up past 1e-2 (t312: a diffusers AutoencoderKL 4.4e-2,
# a UNet2DCondition 1.8e-2, ConvNeXt 1.3e-2, Gemma2 1.1e-2, each as close to the float32 model
# as the bfloat16 original is): 5e-2, as ``check`` holds bfloat16 outputs to.
KEEP_RTOL = 1e-5
KEEP_RTOL_HALF = 1e-2
KEEP_RTOL_BF16 = 5e-2

Init = Literal["keep", "data"]
INITS: tuple[Init, ...] = get_args(Init)


_HALF = {torch.float16, torch.bfloat16, torch.complex32}


def _tolerance(model: nn.Module, dtypes: set[torch.dtype]) -> float:
    """``KEEP_RTOL_BF16`` when the weights, or a tensor the forward's modules returned (its
    output among them), round at bfloat16, ``KEEP_RTOL_HALF`` at float16 (a float32 model
    under autocast computes its layers so; one whose output is cast to float16 differs by that
    rounding step), else ``KEEP_RTOL``."""
    dtypes = dtypes | {p.dtype for p in model.parameters()}
    if torch.bfloat16 in dtypes:
        return KEEP_RTOL_BF16
    return KEEP_RTOL_HALF if dtypes & _HALF else KEEP_RTOL


def _compared_forward(
    model: nn.Module, inputs: Batch, rng: RngSnapshot
) -> tuple[list[Leaf], set[torch.dtype]]:
    """The result on ``inputs`` as its leaves (:mod:`wnpass.fx.compare`), the forward drawing
    its random numbers from ``rng``: the same ones before and after the rewrite; and the
    dtypes of the result's tensors and of every tensor a module returned in the forward."""
    dtypes: set[torch.dtype] = set()

    def record(module: nn.Module, args: Any, output: Any) -> None:
        try:
            dtypes.update(tensor.dtype for tensor in result_tensors(output))
        except Exception as error:  # not the forward's failure: this output's dtypes unknown
            logger.debug("%s output not read: %s", type(module).__name__, error)

    hook = nn.modules.module.register_module_forward_hook(record)
    try:
        # every compared forward starts from the buffers as they are (an EMA that moves in
        # eval mode too) and leaves them so; the switch to eval mode and back too (a LoRA
        # layer's merge and unmerge moved its weight by an ulp, t256)
        with rng.replayed(), state_given_back(model), evaluating(model):
            leaves = result_leaves(call_model(model, inputs))
    finally:
        hook.remove()
    return leaves, dtypes | {v.dtype for _, v in leaves if isinstance(v, torch.Tensor)}


@contextlib.contextmanager
def _undone_on_error(model: nn.Module) -> Iterator[None]:
    """Run the block; if it raises, give every module of ``model`` its class and attributes
    back as they were before it. The rewrite changes the model only there: registering weight
    norm swaps a module's class for a parametrized one, moves the weight from ``_parameters``
    to a new ``parametrizations`` submodule and adds hooks; mean-only BatchNorm replaces
    submodules in their parent's ``_modules``. The values of existing tensors are written only
    by data init, which gives them back itself."""
    saved = [(module, type(module), _attributes(module)) for module in model.modules()]
    try:
        yield
    except BaseException:
        for module, cls, attributes in saved:
            module.__class__ = cls
            vars(module).clear()
            for key, (value, contents) in attributes.items():
                _refill(value, contents)
                vars(module)[key] = value
        raise


@contextlib.contextmanager
def _said_once_applied(sites: list[ParamSite]) -> Iterator[None]:
    """Run the block; a forward that fails in it once weight norm is on some of ``sites``
    (which it ran before: it may read a weight otherwise than weight norm leaves it, through
    its module's ``_parameters``, say) says so, naming them (t344: the model's own forward
    was blamed); as what may be, not as the cause: the forward may fail of its own (t346)."""
    try:
        yield
    except ModelExitedError:
        raise
    except ForwardFailedError as error:
        applied = [site.name for site in sites if site.status == "applied"]
        if not applied:
            raise
        raise ForwardFailedError(
            f"{error.detail}, once weight norm was on {listed(applied)} (it ran before: where "
            "it reads a weight otherwise than weight norm leaves it, through its module's "
            "_parameters, say, exclude that weight)",
            parameter=error.parameter,
        ) from None


def _attributes(module: nn.Module) -> dict[str, tuple[Any, Any]]:
    """Each attribute of ``module`` with a copy of its contents where it is a dict or a list
    (``_parameters``, ``_modules``, hook dicts, an RNN's ``_flat_weights``: changed in place,
    so their contents go back into the same objects)."""
    return {
        key: (value, copy.copy(value) if isinstance(value, dict | list) else None)
        for key, value in vars(module).items()
    }


def _refill(value: Any, contents: Any) -> None:
    if isinstance(value, dict):
        value.clear()
        value.update(contents)
    elif isinstance(value, list):
        value[:] = contents


class ApplyWeightNormPass:
    """Add weight norm at each parameter's output-unit axis, in place; returns an ApplyReport."""

    def __init__(
        self,
        *,
        include: Pattern | Sequence[Pattern] | None = None,
        exclude: Pattern | Sequence[Pattern] | None = None,
        init: Init = "keep",
        dim_policy: DimPolicy = "unit",
        embeddings: bool = False,
        mean_only_bn: bool = False,
        rescale: bool = True,
        tracer: Tracer = "auto",
        rtol: float | None = None,
    ) -> None:
        require_choice("init", init, INITS)
        require_choice("dim_policy", dim_policy, DIM_POLICIES)
        require_choice("tracer", tracer, TRACERS)
        for parameter, flag in (
            ("embeddings", embeddings),
            ("mean_only_bn", mean_only_bn),
            ("rescale", rescale),
        ):
            require_flag(parameter, flag)
        self.include = as_patterns(include, "include", empty=False)
        self.exclude = as_patterns(exclude, "exclude")
        self.init, self.dim_policy, self.embeddings = init, dim_policy, embeddings
        self.mean_only_bn, self.rescale, self.tracer = mean_only_bn, rescale, tracer
        # the outputs' tolerance with init="keep"; None: _tolerance's, by the model's dtypes
        self.rtol = as_tolerance("rtol", rtol)

    def call(self, model: nn.Module, example_inputs: Any = None) -> ApplyReport:
        # g and v are made for training: never inference tensors, whatever mode the caller is
        # in (under torch.inference_mode() they were, and reading a weight's version raised)
        with torch.inference_mode(False):
            return self._call(model, example_inputs)

    def _call(self, model: nn.Module, example_inputs: Any = None) -> ApplyReport:
        start = time.perf_counter()
        inputs = None if example_inputs is None else as_batch(example_inputs)
        require_analysable(model, inputs)
        if inputs is not None:  # before the snapshot: lazy layers draw their values as usual
            materialize_lazy(model, inputs)
        if self.init == "data" and inputs is None:
            raise UsageError("init='data' needs a batch: pass example_inputs")
        if inputs is None or self.init != "keep" or self.mean_only_bn:  # nothing compared
            refuse_unused({"rtol": self.rtol}, "init='keep', example_inputs and no mean_only_bn")
        # the forwards run here draw the same random numbers (a model with sampling noise is
        # compared with itself, not with other noise) and leave the caller's generators as
        # they were; each gets its own copy of the inputs
        rng = RngSnapshot.take(model, inputs)
        with rng.replayed():  # first: the plan is inspect's, from the same first forward
            sites, mode, note = analyse_sites(
                model,
                inputs,
                include=self.include or None,  # [] here is every one: none was given
                exclude=self.exclude,
                dim_policy=self.dim_policy,
                embeddings=self.embeddings,
                tracer=self.tracer,
            )
        before, dtypes = (
            _compared_forward(model, inputs, rng) if inputs is not None else (None, set())
        )
        report = ApplyReport(
            sites=sites, traced_with=mode, trace_note=note, dim_policy=self.dim_policy
        )
        report.init = self.init
        with _undone_on_error(model), _said_once_applied(sites):
            originals = self._rewrite(model, sites)
            if inputs is not None and originals:
                given_back = give_back_unreached(model, inputs, originals, rng)
                for site in sites:
                    if site.name in given_back:
                        site.status, site.init = "skipped", None
                        site.reason = given_back[site.name]
            made_mean_only = 0
            if self.mean_only_bn:
                replaced, left = replace_batch_norm(model)
                for name, op in replaced:
                    reason = "mean-only BatchNorm: scale and running variance dropped"
                    sites.append(ParamSite(name, op, [], 1, "replaced", reason))
                for name, op, why in left:
                    sites.append(ParamSite(name, op, [], 1, "kept", why))
                made_mean_only = len(replaced)
            initialized = 0
            if self.init == "data":
                assert inputs is not None
                initialized = self._data_init(model, cloned(inputs), sites)
                if not initialized:
                    report.notes.append(
                        "data init initialized no layer (the init column says why) and wrote "
                        "no value: the outputs are compared"
                    )
            if before is not None and inputs is not None:
                # what changes the outputs on purpose; with nothing of it, they are compared
                by_design = [f"data init of {counted(initialized, 'layer')}"] if initialized else []
                # (none replaced: the outputs are compared, t312's SyncBatchNorm)
                by_design += ["mean-only BatchNorm"] if made_mean_only else []
                if by_design:
                    report.notes.append(
                        f"outputs change by design ({', '.join(by_design)}): not compared"
                    )
                else:
                    after, _ = _compared_forward(model, inputs, rng)
                    report.max_rel_error = max_rel_error(after, before)
                    report.rtol = self.rtol if self.rtol is not None else _tolerance(model, dtypes)
                    report.changes = output_changes(after, before, report.rtol) or None
                    if report.changes:  # weight norm, or the model itself from run to run?
                        again, _ = _compared_forward(model, inputs, rng)
                        report.not_deterministic = bool(output_changes(again, after, 0.0))
                    if parts := uncompared(before):
                        report.notes.append(f"not compared: {parts}")
                    if floor := below_the_floor(before, report.rtol):
                        report.notes.append(floor)
        report.seconds = time.perf_counter() - start
        logger.info(
            "apply weight norm: %d applied, %d skipped (%s)", report.applied, report.skipped, mode
        )
        return report

    def _rewrite(self, model: nn.Module, sites: list[ParamSite]) -> dict[str, nn.Parameter]:
        """Weight norm on each planned site; the parameters it replaced, by site name."""
        originals = {}
        for site in sites:
            if site.status != "planned":
                continue
            owner, leaf = owner_of(model, site.name)
            dim = site.axis if site.axis is not None else None
            originals[site.name] = owner.get_parameter(leaf)
            register_weight_norm(owner, leaf, dim)
            if isinstance(owner, nn.RNNBase):
                install_rnn_cache(owner)
            site.status, site.init = "applied", "keep"
            logger.debug("%s: weight norm at axis %s", site.name, site.axis)
        return originals

    def _data_init(self, model: nn.Module, inputs: Batch, sites: list[ParamSite]) -> int:
        """Data init of the weights normed now and of those normed before that the user's
        include/exclude select; each one's ``init`` says what it got. Returns how many layers
        were initialized."""
        left_out = {
            site.name: why
            for site in sites
            if site.status == "already"
            and (why := selected_out(model, site, self.include, self.exclude)) is not None
        }
        only = [s.name for s in sites if s.status in ("applied", "already")]
        try:
            result = data_init(
                model, inputs, rescale=self.rescale, only=[n for n in only if n not in left_out]
            )
        except InvalidArgumentError as error:
            if error.parameter != "batch":
                raise
            raise InvalidArgumentError(error.detail, parameter="example_inputs") from None
        except ForwardFailedError as error:  # data_init's batch is the example inputs here
            if (cause := error.__cause__) is None:
                raise
            raise forward_failed(model, cause) from cause
        label = "data, v rescaled" if self.rescale else "data"
        by_name = {site.name: site for site in sites}
        for name in result.initialized:
            why = result.scale_only.get(name)
            by_name[name].init = label + (f" ({why}: scale only)" if why else "")
        for name, reason in {**left_out, **result.kept}.items():
            by_name[name].init = f"keep: {reason}"
        return len(result.initialized)


def apply_weight_norm(
    model: nn.Module,
    example_inputs: Any = None,
    *,
    include: Pattern | Sequence[Pattern] | None = None,
    exclude: Pattern | Sequence[Pattern] | None = None,
    init: Init = "keep",
    dim_policy: DimPolicy = "unit",
    embeddings: bool = False,
    mean_only_bn: bool = False,
    rescale: bool = True,
    tracer: Tracer = "auto",
    rtol: float | None = None,
) -> ApplyReport:
    """Weight-normalize ``model`` in place at each weight's output-unit axis; returns the report.

    ``example_inputs`` (one tensor, a tuple for ``model(*inputs)``, a dict for
    ``model(**inputs)``) is run once to see every weight's uses (``tracer="auto"``; without
    inputs the model is traced statically), is the batch for ``init="data"``, and with
    ``init="keep"`` the outputs before and after are compared (``report.max_rel_error``
    against ``report.rtol``: ``rtol`` where given, else ``KEEP_RTOL``, ``KEEP_RTOL_HALF`` for
    a model that computes at float16, ``KEEP_RTOL_BF16`` at bfloat16; a deep network's float32
    rounding of each weight's few ulps can add up past ``KEEP_RTOL``).
    """
    return ApplyWeightNormPass(
        include=include,
        exclude=exclude,
        init=init,
        dim_policy=dim_policy,
        embeddings=embeddings,
        mean_only_bn=mean_only_bn,
        rescale=rescale,
        tracer=tracer,
        rtol=rtol,
    ).call(model, example_inputs)
