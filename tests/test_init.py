"""The package: every public name is imported on first use, and listed as if it were not."""

from __future__ import annotations

import wnpass


def test_dir_lists_every_public_name() -> None:
    """The names are lazy (module ``__getattr__``): ``dir(wnpass)`` missed them, and so did
    completion in a REPL or an IDE."""
    assert set(wnpass.__all__) <= set(dir(wnpass))
    for name in wnpass.__all__:
        assert getattr(wnpass, name) is not None
