"""Shared pytest fixtures."""

import pytest
import torch
from tinytl.models.setting import ModelSetting

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def proxyless_trace():
    """The paper's setting walked once: ProxylessNAS-Mobile, GN+WS, lite residuals, 224 px, 102 classes."""
    from tinytl.memory import cached_trace

    return cached_trace(ModelSetting("proxylessnas_mobile", 224, 102, True, "gn"))


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors on a shared 2-core machine run fastest on one thread (use via pytest.mark.usefixtures)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
