"""``python -m wnpass``."""

from __future__ import annotations

from wnpass.cli import run

run()
