"""One fold reaches the fixpoint: a weight normalized twice is folded in one run, exactly."""

from __future__ import annotations

import numpy as np
import onnx

from tests.helpers import assert_close, onnx_model, rand, run
from tests.onnx.helpers import SHARED_NORM, TWICE
from wnpass import fold_onnx, inspect_onnx


def _twice() -> onnx.ModelProto:
    return onnx_model(TWICE, v=rand(6, 4), g=rand(6, 1), eps=np.array(1e-12, np.float32))


def test_a_weight_normalized_twice_folds_in_one_run_exactly() -> None:
    model = _twice()
    arrays = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    inspected = inspect_onnx(model)
    assert [s.status for s in inspected.sites] == ["foldable", "foldable"]
    folded, report = fold_onnx(model)
    assert [(s.status, s.reason) for s in report.sites] == [("folded", None)] * 2
    assert report.folded == 2 and report.declined == 0
    assert [n.op_type for n in folded.graph.node] == ["Gemm"]
    # float64, rounded where the graph rounds: the inner weight, then the outer one
    v, g = arrays["v"].astype(np.float64), arrays["g"].astype(np.float64)
    w1 = (g * v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    w1_64 = w1.astype(np.float64)
    w2 = (w1_64 / np.maximum(np.linalg.norm(w1_64, axis=1, keepdims=True), 1e-12)).astype(
        np.float32
    )
    (stored,) = folded.graph.initializer
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(stored), w2)
    feeds = {"x": rand(2, 4)}
    assert_close(run(folded, feeds), run(model, feeds))


def test_a_second_fold_changes_nothing() -> None:
    once, _ = fold_onnx(_twice())
    twice, report = fold_onnx(once)
    assert report.sites == [] and report.folded == 0
    assert inspect_onnx(once).sites == []
    assert twice.SerializeToString() == once.SerializeToString()


def test_a_shared_norm_names_the_declined_row_after_the_value_it_keeps() -> None:
    """One norm feeds a folded site and one declined (a gain fed at run time): the rows have
    different names, and the declined one names the value the model still computes."""
    text = SHARED_NORM
    model = onnx_model(text, v=rand(3, 4), g=rand(3, 1))
    folded, report = fold_onnx(model)
    rows = [(s.name, s.status) for s in report.sites]
    assert rows == [("v.folded", "folded"), ("u", "declined")]
    assert [(s.name, s.status) for s in inspect_onnx(model).sites] == [
        ("v.folded", "foldable"),
        ("u", "declined"),
    ]
    assert "u" in {n.output[0] for n in folded.graph.node}
