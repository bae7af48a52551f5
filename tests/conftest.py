"""Shared fixtures: seeded RNG, mmseg default scope, tiny towers of both families, fixture datasets.

mmseg's wheel installs a top-level ``tests`` package, so nothing here is imported as ``tests.*``;
helpers live in uniquely named modules on ``pythonpath`` (see pytest.ini).
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

os.environ.setdefault('HF_HUB_OFFLINE', '1')  # belt and braces: nothing may reach a hub
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed_and_scope():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    from mmengine.registry import init_default_scope

    import declip_mm  # noqa: F401  (registers)
    init_default_scope('mmseg')
    yield


@pytest.fixture
def one_thread():
    """One intra-op thread for tiny tensors: on a busy 2-core machine two threads make each small
    operation wait for the other (~50x slower); results do not depend on it. Modules that want it
    for every test set ``pytestmark = pytest.mark.usefixtures('one_thread')``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=['openai', 'eva02'])
def family(request):
    return request.param


@pytest.fixture
def tiny_cfg(family):
    from declip_mm.testing import tiny_clip_config
    return tiny_clip_config(family)


@pytest.fixture
def make_backbone(tiny_cfg):
    from declip_mm.models import DeCLIPVisionTransformer

    def _make(**kwargs):
        torch.manual_seed(0)
        kwargs.setdefault('model_name', tiny_cfg)
        return DeCLIPVisionTransformer(**kwargs).eval()

    return _make


@pytest.fixture
def fixture_data(tmp_path):
    """Write benchmark fixtures on demand: ``fixture_data('ade20k') -> data_root``."""
    from declip_mm.testing import write_benchmark_fixture

    def _write(name, **kwargs):
        return write_benchmark_fixture(name, str(tmp_path / 'data'), **kwargs)

    return _write
