"""Output files that never replace an existing file without being asked to.

* :func:`check_output_path` — a tool's single output file: refused when it is one of the tool's
  inputs (always) or already exists (unless ``overwrite``).
* :func:`reserve_run_prefix` — per-run result files in a shared work dir
  (``results_<YYYYmmdd-HHMMSS>.{md,csv,json}``): a second run never writes over the first one's.
* :func:`reserve_free_stem` — per-image outputs in a folder: ``name``, ``name_1``, ``name_2``...,
  the first stem none of whose files exists.

The free name is claimed by creating its first file with ``open(..., 'x')`` (exclusive creation), so
two processes writing into the same folder at the same moment do not pick the same name.
"""
from __future__ import annotations

import os
import os.path as osp
import time
from typing import Iterable, Optional, Sequence

__all__ = ['check_output_path', 'reserve_run_prefix', 'reserve_free_stem']


def _same_file(a: str, b: str) -> bool:
    try:
        return osp.samefile(a, b)
    except OSError:
        return osp.realpath(a) == osp.realpath(b)


def check_output_path(dst: str, inputs: Iterable[str] = (), overwrite: bool = False,
                      flag: str = '--overwrite') -> None:
    """Raise ``FileExistsError`` if writing ``dst`` would replace an input (never allowed) or an
    existing file (allowed with ``overwrite``), and ``ValueError`` if ``dst`` is a folder."""
    for src in inputs:
        if src and osp.exists(dst) and _same_file(dst, src):
            raise FileExistsError(f'the output {dst} is the input {src}: refusing to overwrite the '
                                  'input (write to another file)')
    if osp.isdir(dst):
        raise ValueError(f'the output {dst} is a folder; give a file name')
    if osp.exists(dst) and not overwrite:
        raise FileExistsError(f'{dst} already exists: refusing to overwrite it (pass {flag} to '
                              'replace it, or choose another output name)')


def _claim(path: str) -> bool:
    try:
        with open(path, 'x'):
            return True
    except FileExistsError:
        return False


def reserve_run_prefix(folder: str, stem: str = 'results', exts: Sequence[str] = ('md', ),
                       now: Optional[float] = None) -> str:
    """A fresh ``folder/<stem>_<YYYYmmdd-HHMMSS>[_<n>]`` prefix: no ``prefix.<ext>`` exists; the
    first extension's file is created (empty) to claim it."""
    os.makedirs(folder, exist_ok=True)
    stamp = time.strftime('%Y%m%d-%H%M%S', time.localtime(time.time() if now is None else now))
    n = 0
    while True:
        prefix = osp.join(folder, f'{stem}_{stamp}' + (f'_{n}' if n else ''))
        if not any(osp.exists(f'{prefix}.{e}') for e in exts) and _claim(f'{prefix}.{exts[0]}'):
            return prefix
        n += 1


def reserve_free_stem(folder: str, name: str, suffixes: Sequence[str]) -> str:
    """The first of ``name``, ``name_1``, ``name_2``... for which no ``folder/<stem><suffix>``
    exists; ``folder/<stem><suffixes[0]>`` is created (empty) to claim it."""
    os.makedirs(folder, exist_ok=True)
    n = 0
    while True:
        stem = name if n == 0 else f'{name}_{n}'
        paths = [osp.join(folder, stem + s) for s in suffixes]
        if not any(osp.exists(p) for p in paths) and _claim(paths[0]):
            return stem
        n += 1
