"""``python -m wnpass``."""

from __future__ import annotations

from wnpass.program import run

run()
