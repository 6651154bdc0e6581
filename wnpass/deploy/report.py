"""What ``export`` reports: the probes of dynamic sizes, the whole report, and its errors.

Data only, in the style of :mod:`wnpass.report`: dataclasses that know whether they passed
(``bool()``), serialise to JSON (``to_dict``, ``write_json``), and are rendered by the CLI.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from wnpass.errors import WnpassError
from wnpass.fx.fold import TorchFoldReport
from wnpass.fx.forward import ForwardFailedError
from wnpass.plan import IOPlan
from wnpass.report import Anchored, FoldReport, SiteReport, model_files, write_json
from wnpass.verify.compare import OutputComparison, nothing_compared, uncompared_outputs
from wnpass.verify.report import LatencyStats, comparison_data


class ExportError(WnpassError):
    """torch.onnx.export failed on the model."""


# The user's model raised (or called sys.exit()) when run on its example inputs: the error of
# every forward wnpass runs (wnpass.fx.forward), under the name this module has always given it.
ModelRunError = ForwardFailedError


# The sizes --verify tries every dynamic axis at besides the example's n, by name: 2n (the
# inputs repeated along the axis, a float copy scaled: grown), where a size the trace fixed
# shows (TorchScript takes ``len(x)`` as the example's); 2n + 1 (and the first element once
# more), where a branch on
# the size's parity shows (``if t % 2: pad``), which 2n never changes from the example's. A
# remainder by more, or a parity after a stride, may show at neither: with the dynamo
# exporter, torch.export's condition on it is read instead (:mod:`wnpass.assumed`).
PROBES = {"doubled": 0, "doubled plus one": 1}


# Where PyTorch fails at both (a position table shorter than twice the example's length), the
# axes are tried one shorter, n - 1: another size, and the other parity.
SHORTER = "one shorter"


@dataclasses.dataclass
class DynamicProbe:
    """ONNX Runtime against PyTorch with every dynamic axis at one other size (``sizes``, a
    name of :data:`PROBES`), or with the axes of one size (``axes``: ``axis 1 of x``) at 1
    (``size``), below the range from 2 up that torch.export held them to (``bound``), or at a
    size within it where a condition torch.export took on their size does not hold
    (``condition``), where PyTorch runs (``sizes``: each axis resized, with its length: ``axis
    1 of x at 1``): a branch on the size shows there as values that do not match, and the
    verification fails, as it does where nothing can be compared there (``not_verified`` says
    why)."""

    sizes: str
    inputs: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # by graph input
    comparisons: dict[str, list[OutputComparison]] = dataclasses.field(default_factory=dict)
    # why ONNX Runtime failed there where PyTorch ran: the graph is wrong at those sizes, and
    # the verification failed; for a probe outside a range, also why nothing could be compared
    not_verified: str | None = None
    # why nothing could be compared there: PyTorch itself fails at those sizes, or returns
    # another count of outputs (the dynamic axes are not verified there; this fails nothing)
    unchecked: str | None = None
    bound: str | None = None  # the range torch.export held the axes to, for a probe outside it
    axes: str | None = None  # those axes, for a probe outside their range
    size: int | None = None  # their size there
    # a condition that ties sizes (a mask's length to its input's) that the probe's sizes
    # break: where ONNX Runtime refuses such inputs, they do not go together in the file,
    # said in ``unchecked`` (which fails nothing); where it computes them, they are compared
    ties: str | None = None
    # for a probe within the range where a condition torch.export took on the axes' size does
    # not hold: the condition, with their size as n ("2*(n // 8) == n // 4")
    condition: str | None = None
    # the axes of one length in the example that the probe resized, the others kept at the
    # example's ("axis 0 of ids"): tried where nothing could be compared with every dynamic
    # axis at the probe's sizes (:func:`axes_alone`)
    alone: str | None = None
    # the dynamic axes a probe of the sizes of PROBES or SHORTER resized, each as said
    resized: list[str] = dataclasses.field(default_factory=list)

    @property
    def compared(self) -> bool:
        """Whether some element of some output was compared at these sizes (not so where
        every output was NaN or Inf alike in both, or nothing ran)."""
        return any(nothing_compared(c) is None for c in self.comparisons.values() if c)

    @property
    def where(self) -> str:
        """The sizes, as said after "with": ``every dynamic axis doubled``, ``axis 0 of ids
        doubled``, ``axis 1 of x at 1``."""
        if self.bound is not None:
            return self.sizes
        return f"{self.alone or 'every dynamic axis'} {self.sizes}"


@dataclasses.dataclass
class ExportReport(Anchored):
    """What the deployment pipeline did, and whether the ONNX model matches PyTorch.

    ``bool(report)``: nothing was left to fold and, when verified, the outputs matched; an
    export without verification is true without any comparison, so read :attr:`verified` (or
    :attr:`matches`, None then) before calling the model equivalent to PyTorch.
    """

    output: str
    exporter: str
    torch_fold: TorchFoldReport | None
    onnx_fold: FoldReport
    folded_in_place: bool = False  # the model could not be copied (its __deepcopy__ refused)
    data_files: list[str] = dataclasses.field(default_factory=list)  # the output's, written
    names_missing: list[str] = dataclasses.field(default_factory=list)
    # weights of no initializer of their own equal to a weight with one (the exporter keeps
    # one constant of equal values), by that weight
    names_shared: dict[str, str] = dataclasses.field(default_factory=dict)
    # weights whose initializer, named after them, holds them transposed (as MatMul reads a
    # Linear's weight): square ones show it by no shape
    names_transposed: list[str] = dataclasses.field(default_factory=list)
    # weights whose initializer, named after them, holds them in another layout of their
    # elements: an LSTM's gates reordered (Slice/Concat), a slice, a padding
    names_laid_out: list[str] = dataclasses.field(default_factory=list)
    # weights held with others in one initializer that the ONNX fold wrote, named after them
    # all (a bidirectional LSTM's two directions, gates reordered), by that initializer
    names_held_together: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    verified: bool = False  # ONNX Runtime's outputs were compared with PyTorch's
    comparisons: dict[str, list[OutputComparison]] = dataclasses.field(default_factory=dict)
    latency: dict[str, LatencyStats] = dataclasses.field(default_factory=dict)
    not_available: list[str] = dataclasses.field(default_factory=list)
    fell_back: list[str] = dataclasses.field(default_factory=list)  # asked for, ran elsewhere
    # the outputs that differed between two PyTorch runs on the same inputs: nothing to verify
    # against, so nothing was compared and the verification failed
    not_deterministic: list[str] = dataclasses.field(default_factory=list)
    # the outputs of the exported graph that random ops reach, with those ops' types: a draw
    # may match on every compared run and not on the next, so the verification failed (t130)
    draws_random: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    # with dynamic axes: ONNX Runtime against PyTorch with every dynamic axis at other sizes
    # than the example's (:data:`PROBES`), one probe each
    dynamic: list[DynamicProbe] = dataclasses.field(default_factory=list)
    # why ONNX Runtime could not load or run the exported graph on the example inputs, where
    # PyTorch ran (the graph is wrong: the verification failed)
    ort_failed: str | None = None
    # output axes the graph's shape info declares of a fixed size that ONNX Runtime computed
    # at another (the dynamo exporter's LSTM with dynamic axes): the values were compared and
    # may match, but a runtime that trusts the shape info may fail
    shape_info_wrong: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)  # the exporter's (above)
    # what wnpass found of the dynamic sizes: the ranges and conditions torch.export held
    # them to, where PyTorch runs beyond them, and whether the file is compared there
    sizes: list[str] = dataclasses.field(default_factory=list)
    # every dynamic axis, as said ("axis 1 of ids"), where verified with dynamic axes
    dynamic_axes: list[str] = dataclasses.field(default_factory=list)
    # parameters a forward of the model's wrote (an init on its first call behind a plain flag,
    # a merge, an embedding's max_norm): the file holds them as the exporter's own run of the
    # forward left them; those the caller's model got back from the copy
    parameters_written: list[str] = dataclasses.field(default_factory=list)
    parameters_given_back: list[str] = dataclasses.field(default_factory=list)
    published: bool = True  # False: the check failed and nothing was written

    @property
    def matches(self) -> bool | None:
        """None when not verified; else whether PyTorch gave the same outputs twice, outputs
        were compared on every provider (some element of some output:
        :func:`~wnpass.verify.compare.nothing_compared`), all matched PyTorch's (with dynamic
        axes, also at each probe's sizes), and no provider asked for fell back to another
        (what ``verify`` requires before the file is published)."""
        if not self.verified:
            return None
        compared = [
            c
            for results in (self.comparisons, *(probe.comparisons for probe in self.dynamic))
            for comparisons in results.values()
            for c in comparisons
        ]
        return (
            bool(compared)
            and all(compared)
            and not self.nothing_compared
            and not self.fell_back
            and not self.not_deterministic
            and not self.draws_random
            and all(probe.not_verified is None for probe in self.dynamic)
            and self.ort_failed is None
        )

    @property
    def nothing_compared(self) -> dict[str, str]:
        """The providers that compared nothing (every output empty, or NaN alike), and why."""
        return {
            provider: vacuous
            for provider, comparisons in self.comparisons.items()
            if (vacuous := nothing_compared(comparisons))
        }

    @property
    def uncompared(self) -> list[str]:
        """The outputs of which no element was compared on some provider
        (:func:`~wnpass.verify.compare.uncompared_outputs`)."""
        return uncompared_outputs(c for cs in self.comparisons.values() for c in cs)

    @property
    def compared_at_example_only(self) -> list[str]:
        """The dynamic axes that no probe of other sizes compared (PyTorch failed at every
        size they were tried at): verified at the example's length only."""
        compared = {axis for p in self.dynamic if p.compared for axis in p.resized}
        return [axis for axis in self.dynamic_axes if axis not in compared]

    @property
    def folded_whole(self) -> bool:
        """Whether no weight-norm site was declined, by the ONNX fold or in PyTorch. A site
        PyTorch declines (NaN, a zero-norm unit) may never reach the ONNX fold: the dynamo
        exporter computes it into a plain initializer itself, NaN included. A site whose
        weight the model computes from its own inputs (:attr:`run_time_weights`) holds no
        weight of the model's, and counts for nothing."""
        torch_whole = self.torch_fold is None or not self.torch_fold.declined
        declined = self.onnx_fold.declined - len(self.run_time_weights)
        return torch_whole and declined == 0

    @property
    def run_time_weights(self) -> list[SiteReport]:
        """The ONNX sites declined because v is one of the model's inputs (their ``fed_by``):
        a filter the caller passes to ``forward``, normalized there, is computed at run time
        on every call, and no fold can make it a constant."""
        return [s for s in self.onnx_fold.sites if s.status == "declined" and s.fed_by]

    def __bool__(self) -> bool:
        """Nothing left to fold (:attr:`folded_whole`), and the outputs matched where verified
        (:attr:`matches`)."""
        return self.folded_whole and self.matches is not False

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        tables = [(self.comparisons, data["comparisons"])] + [
            (probe.comparisons, raw["comparisons"])
            for probe, raw in zip(self.dynamic, data["dynamic"], strict=True)
        ]
        for results, raw_results in tables:  # as wnpass check writes them
            for provider, comparisons in results.items():
                for c, raw in zip(comparisons, raw_results[provider], strict=True):
                    comparison_data(c, raw)
        data["matches"] = self.matches
        data["nothing_compared"] = self.nothing_compared
        data["uncompared"] = self.uncompared
        data["compared_at_example_only"] = self.compared_at_example_only
        data["run_time_weights"] = [site.name for site in self.run_time_weights]
        data["ok"] = bool(self)
        return data

    def write_json(self, path: str | Path, plan: IOPlan | None = None) -> None:
        """Write the report as JSON (:func:`wnpass.report.write_json`); without ``plan``, never
        onto the exported model or its data file."""
        write_json(
            path,
            self.to_dict(),
            plan,
            lambda: model_files(
                self.anchored(self.output),
                "the exported model",
                [self.anchored(file) for file in self.data_files],
            ),
        )
