import sys
from pathlib import Path

import pytest
import torch

# the shared helper modules (tests/_*_helpers.py: `from _curvature_helpers import dense_H`) are
# imported by name; no test module imports another
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def one_thread():
    """Tiny problems run fastest (and steadiest on a shared 2-core machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
