"""Fixtures of the training tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread, and a busy machine cannot stall OpenMP barriers.

    Modules that train or decode use it for every test: ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
