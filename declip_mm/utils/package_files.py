"""Where the shipped configs, class-name files and tools are: in the installed package or in a checkout.

A wheel carries them as package data under ``declip_mm/.mim/`` (``configs/``, ``tools/``,
``model-index.yml``): the layout OpenMMLab packages use, so mmengine and mim find them the same way.
setup.py's ``build_py`` step copies them there when a wheel is built; a checkout (and an editable
install of it) has no ``.mim`` and uses the folders beside ``declip_mm/``.

Lookup order for every name: ``declip_mm/.mim/<name>`` first, then ``<checkout>/<name>``, where a
checkout is recognised by its ``setup.py`` next to ``declip_mm/`` (a bare ``site-packages/configs``
left by some other package is never taken for ours).
"""
from __future__ import annotations

import glob
import os
import os.path as osp
from typing import List, Optional

__all__ = ['PACKAGE_DIR', 'MIM_DIR', 'CHECKOUT_DIR', 'data_roots', 'data_path', 'config_root',
           'tools_root', 'tool_path', 'find_config', 'config_names']

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
MIM_DIR = osp.join(PACKAGE_DIR, '.mim')
CHECKOUT_DIR = osp.dirname(PACKAGE_DIR)


def data_roots() -> List[str]:
    """The folders searched, in order: the package's ``.mim`` (if present), then the checkout (if
    ``declip_mm`` sits in one)."""
    roots = []
    if osp.isdir(MIM_DIR):
        roots.append(MIM_DIR)
    if osp.isfile(osp.join(CHECKOUT_DIR, 'setup.py')) and osp.isdir(osp.join(CHECKOUT_DIR, 'configs')):
        roots.append(CHECKOUT_DIR)
    return roots


def data_path(name: str) -> str:
    """Absolute path of a shipped file or folder (``'configs'``, ``'tools/install_mmcv.sh'``, ...)."""
    for root in data_roots():
        path = osp.join(root, name)
        if osp.exists(path):
            return path
    raise FileNotFoundError(
        f'{name!r} is neither in the installed package ({MIM_DIR}) nor in a declip_mm checkout '
        f'({CHECKOUT_DIR}); reinstall declip_mm from a wheel built by `python -m build`, or run from '
        'a checkout')


def config_root() -> str:
    """The ``configs/`` folder (with ``class_names/``)."""
    return data_path('configs')


def tools_root() -> str:
    """The ``tools/`` folder."""
    return data_path('tools')


def tool_path(name: str) -> str:
    """``tools/<name>`` (a script file name such as ``'train.py'`` or ``'slurm_train.sh'``)."""
    return data_path(osp.join('tools', name))


def config_names(root: Optional[str] = None) -> List[str]:
    """Names (file stems) of every config outside ``_base_``, sorted."""
    root = root or config_root()
    paths = glob.glob(osp.join(root, '**', '*.py'), recursive=True)
    return sorted({osp.basename(p)[:-3] for p in paths
                   if '_base_' not in osp.relpath(p, root).split(os.sep)})


def find_config(name: str) -> str:
    """Path of a config given by file, by path relative to ``configs/`` or by name (the stem).

    Raises:
        FileNotFoundError: no such file and no config of that name (the message lists examples).
    """
    name = os.fspath(name)
    if osp.isfile(name):
        return name
    root = config_root()
    rel = osp.join(root, name if name.endswith('.py') else name + '.py')
    if osp.isfile(rel):
        return rel
    stem = osp.basename(name)
    stem = stem[:-3] if stem.endswith('.py') else stem  # names hold dots ('csa-0.05-2.0-...')
    hits = sorted(p for p in glob.glob(osp.join(root, '**', stem + '.py'), recursive=True)
                  if '_base_' not in osp.relpath(p, root).split(os.sep))
    if not hits:
        examples = ', '.join(config_names(root)[:3])
        raise FileNotFoundError(f'config {name!r} is neither a file nor a config name under {root} '
                                f'(e.g. {examples}; `declip-configs` lists them all)')
    return hits[0]
