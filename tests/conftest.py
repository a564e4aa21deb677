import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny problems run fastest (and steadiest on a shared 2-core machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
