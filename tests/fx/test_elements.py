"""Which watched tensors a tensor is or shares elements with (``wnpass.fx.elements``)."""

from __future__ import annotations

import torch

from wnpass.fx.elements import Elements


def test_a_tensor_is_matched_by_itself_and_by_its_views() -> None:
    w = torch.randn(6, 4)
    elements = Elements({"w": w, "other": torch.randn(3)})
    assert elements.of(w) == ["w"]
    assert elements.of(w.t()) == ["w"] and elements.of(w[2:4]) == ["w"]
    assert elements.of(w.clone()) == []


def test_disjoint_parts_of_one_storage_do_not_match() -> None:
    flat = torch.randn(20)
    first, second = flat[:10], flat[10:]
    elements = Elements({"first": first})
    assert elements.of(second) == [] and elements.of(flat[9:11]) == ["first"]


def test_tensors_without_elements_match_nothing() -> None:
    elements = Elements({"w": torch.randn(2, 2), "empty": torch.empty(0)})
    assert elements.of(torch.empty(0)) == [] and elements.of(torch.randn(2, 2, device="meta")) == []
