"""Fixtures every test shares."""

from __future__ import annotations

import random
import zlib

import numpy as np
import pytest
import torch

from tests import helpers


@pytest.fixture(autouse=True)
def _draws_of_its_own(request: pytest.FixtureRequest) -> None:
    """Each test draws the same random values however the suite is ordered or split across
    workers: ``helpers.rand``, numpy's and Python's global generators and torch's start from a
    seed of the test's own id."""
    seed = zlib.crc32(request.node.nodeid.encode())
    helpers.RNG.bit_generator.state = np.random.PCG64(seed).state
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)
