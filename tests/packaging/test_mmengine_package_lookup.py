"""``mmseg::`` config bases load without pkg_resources (setuptools >= 81, Python >= 3.12 venvs)."""
import os.path as osp
import sys

import pytest
from mmengine.config import Config
from mmengine.config import config as config_module
from mmengine.utils import package_utils

from declip_mm.utils import mmengine_package_lookup as lookup

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TF_ADE = osp.join(ROOT, 'configs', 'training_free', 'declip_eva02-b16_training-free_ade20k-448.py')


@pytest.fixture
def no_pkg_resources(monkeypatch):
    """pkg_resources cannot be imported; mmengine's functions are restored afterwards."""
    monkeypatch.setitem(sys.modules, 'pkg_resources', None)
    monkeypatch.setattr(config_module, 'is_installed', config_module.is_installed)
    monkeypatch.setattr(config_module, 'get_installed_path', config_module.get_installed_path)


@pytest.mark.parametrize('dist,module', [('mmsegmentation', 'mmseg'), ('mmdet', 'mmdet'), ('timm', 'timm')])
def test_same_answers_as_mmengine(dist, module):
    """With pkg_resources present, mmengine's own functions give the reference answers."""
    assert lookup.get_installed_path(dist) == package_utils.get_installed_path(dist)
    assert lookup.is_installed(dist) is package_utils.is_installed(dist) is True
    import importlib
    assert lookup.get_installed_path(dist) == osp.dirname(importlib.import_module(module).__file__)
    assert lookup.is_installed('surely-not-installed-dist') is False
    with pytest.raises(ModuleNotFoundError):
        lookup.get_installed_path('surely-not-installed-dist')


def test_mmseg_base_fails_without_pkg_resources_and_loads_with_the_lookup(no_pkg_resources):
    with pytest.raises(ImportError, match='pkg_resources'):
        Config.fromfile(TF_ADE)
    assert lookup.use_importlib_package_lookup() is True
    cfg = Config.fromfile(TF_ADE)
    assert cfg.default_scope == 'mmseg' and cfg.log_processor.by_epoch is False  # from mmseg's base
    assert cfg.model.type == 'DeCLIPZeroShotSegmentor'


def test_left_alone_when_pkg_resources_exists(monkeypatch):
    monkeypatch.setattr(config_module, 'is_installed', config_module.is_installed)
    original = config_module.is_installed
    assert lookup.use_importlib_package_lookup() is False
    assert config_module.is_installed is original
