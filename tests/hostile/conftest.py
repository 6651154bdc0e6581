"""The hostile corpus's fixture: the folder each case works in (its builders and the one
assertion every case makes are in :mod:`tests.hostile.builders`)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The folder a case works in; ``tmp_path`` (its parent) is what is snapshotted."""
    folder = tmp_path / "work"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.bin").write_bytes(b"\0" * 64)
    return folder
