"""Fixtures every test shares."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from tests import helpers


@pytest.fixture(autouse=True)
def _draws_of_its_own(request: pytest.FixtureRequest) -> None:
    """Each test draws the same random values however the suite is ordered or split across
    workers: ``helpers.rand`` and torch's generator start from a seed of the test's own id."""
    seed = zlib.crc32(request.node.nodeid.encode())
    helpers.RNG.bit_generator.state = np.random.PCG64(seed).state
    torch.manual_seed(seed)
