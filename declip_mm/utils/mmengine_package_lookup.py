"""``mmseg::`` / ``mmdet::`` config bases without ``pkg_resources``.

mmengine 0.10.7 finds an installed package for a ``package::path`` base with ``pkg_resources``
(``mmengine.utils.package_utils.is_installed`` / ``get_installed_path``); setuptools 81 removed that
module and Python >= 3.12 virtual environments have no setuptools at all. declip_mm's training-free,
drop-in and detection configs inherit ``mmseg::`` / ``mmdet::`` bases, so without it every such
config fails to load with ``ModuleNotFoundError: No module named 'pkg_resources'``.

:func:`use_importlib_package_lookup` replaces the two functions *in mmengine's config module only*
with equivalents built on :mod:`importlib` (same results: the installed module folder of a
distribution), and does so only when ``pkg_resources`` cannot be found: with it present mmengine's own
functions stay in place. ``import declip_mm`` calls it; setuptools is then a build-time need only.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os.path as osp

__all__ = ['is_installed', 'get_installed_path', 'use_importlib_package_lookup']


def _module_name(package: str) -> str:
    """Distribution name -> top-level module (``mmsegmentation`` -> ``mmseg``)."""
    from mmengine.config.utils import MODULE2PACKAGE
    for module, dist in MODULE2PACKAGE.items():
        if dist == package:
            return module
    try:
        top = importlib.metadata.distribution(package).read_text('top_level.txt')
    except importlib.metadata.PackageNotFoundError:
        top = None
    return top.split()[0] if top and top.split() else package.replace('-', '_')


def is_installed(package: str) -> bool:
    """Whether a distribution (or an importable module of that name) is installed."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(_module_name(package))
        return spec is not None and spec.origin is not None


def get_installed_path(package: str) -> str:
    """Folder of the installed top-level module of a distribution (or of a module name)."""
    spec = importlib.util.find_spec(_module_name(package))
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f'{package} is not installed (or is a namespace package)')
    return osp.dirname(spec.origin)


def use_importlib_package_lookup(force: bool = False) -> bool:
    """Install the importlib lookups into ``mmengine.config.config`` when ``pkg_resources`` is absent
    (or ``force``); returns whether they were installed."""
    if not force and importlib.util.find_spec('pkg_resources') is not None:
        return False
    from mmengine.config import config as config_module
    config_module.is_installed = is_installed
    config_module.get_installed_path = get_installed_path
    return True
