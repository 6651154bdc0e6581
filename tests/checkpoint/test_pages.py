"""pages.release: mapped pages of an input file are given back, values unchanged; memory that
is not mapped from an input file is never touched."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from wnpass.checkpoint.pages import identities, release
from wnpass.checkpoint.tensorfile import SafetensorsFile

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def test_mapped_pages_are_released_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.randn(512, 1024), "b": torch.arange(10)}, str(path))
    files = identities([path])
    with safe_open(str(path), "pt") as handle:
        a = handle.get_tensor("a")
        before = a.clone()
        assert release([a], files) >= 512 * 1024 * 4 - 2 * 4096
        assert torch.equal(a, before)  # read back from the file


def test_numpy_views_of_a_mapped_file_are_released_and_read_back(tmp_path: Path) -> None:
    """The arrays wnpass reads safetensors files as: views of a private mapping of the file."""
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.randn(512, 1024)}, str(path))
    a = SafetensorsFile(path).array("a")
    before = a.copy()
    assert release([a], identities([path])) >= 512 * 1024 * 4 - 2 * 4096
    assert np.array_equal(a, before)
    assert release([before], identities([path])) == 0  # a copy is heap memory: left alone


def test_other_memory_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.randn(512, 1024)}, str(path))
    heap = torch.randn(512, 1024)
    before = heap.clone()
    assert release([heap], identities([path])) == 0
    assert torch.equal(heap, before)
    other = tmp_path / "u.safetensors"
    save_file({"a": torch.randn(512, 1024)}, str(other))
    with safe_open(str(other), "pt") as handle:  # mapped, but not from an input file
        assert release([handle.get_tensor("a")], identities([path])) == 0


def test_tensors_without_one_span_of_values_are_left_alone(tmp_path: Path) -> None:
    """A sparse tensor (no data pointer) and a meta tensor (no memory) are skipped, not an
    error: the pair they belong to is declined, and its tensors released like any other."""
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.randn(4, 4)}, str(path))
    sparse = torch.randn(512, 1024).to_sparse()
    meta = torch.empty(512, 1024, device="meta")
    assert release([sparse, meta], identities([path])) == 0
