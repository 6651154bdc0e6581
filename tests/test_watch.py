"""wnpass.watch: the kernel's record of the files opened, by any code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import native_open
from wnpass.watch import OpenWatch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify: Linux")


def test_a_watch_reports_each_watched_file_opened_by_native_code_once(tmp_path: Path) -> None:
    """An open that Python never sees (libc's ``open``, as Rust or C++ code does) is
    reported, once; a file not watched is not, and one that is not there cannot be."""
    watched, other = tmp_path / "w.safetensors", tmp_path / "other"
    for path in (watched, other):
        path.write_bytes(b"x")
    watch = OpenWatch.start()
    assert watch is not None
    try:
        assert watch.add(watched)
        assert not watch.add(tmp_path / "missing")
        assert watch.opened() == set()
        native_open(watched)
        native_open(other)
        assert watch.opened() == {watched}
        assert watch.opened() == set()
    finally:
        watch.close()
    watch.close()  # again: nothing happens
    assert watch.opened() == set()
    assert not watch.add(watched)


def test_a_symbolic_link_is_watched_itself(tmp_path: Path) -> None:
    """Opening what a link points at is not an open of the link (a target that is a link is
    refused by the plan anyway, and is never written through)."""
    real, link = tmp_path / "real", tmp_path / "link"
    real.write_bytes(b"x")
    link.symlink_to(real)
    watch = OpenWatch.start()
    assert watch is not None
    try:
        assert watch.add(link)
        native_open(real)
        assert watch.opened() == set()
    finally:
        watch.close()
