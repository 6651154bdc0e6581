"""``python -m wnpass``."""

from __future__ import annotations

import sys

from wnpass.cli import main

sys.exit(main())
