"""The three CAT-Seg benchmarks (docs/catseg.md): their configs and the published mIoU to print next to ours.

``tools/eval_catseg.py`` runs them; a driver such as ``tools/eval_all.py`` can import
:data:`CATSEG_BENCHMARKS`, :func:`catseg_config` and :func:`format_catseg_table` the same way.
"""
from __future__ import annotations

import os.path as osp
from typing import Dict, Optional

__all__ = ['CATSEG_BENCHMARKS', 'CATSEG_VARIANTS', 'CATSEG_PUBLISHED', 'catseg_config',
           'format_catseg_table']

#: benchmark key -> column title
CATSEG_BENCHMARKS = {'ade20k': 'ADE150', 'context59': 'PC59', 'cityscapes': 'City19'}

#: config-name tag of each model variant in configs/catseg/
CATSEG_VARIANTS = ('declip-eva02-b16', 'declip-eva02-l14-336', 'openai-vitb16')

#: published mIoU (ViT-B): CAT-Seg (CVPR'24, OpenAI CLIP ViT-B/16) and DeCLIP + CAT-Seg (DeCLIP paper,
#: EVA02-B/16). No Cityscapes number is published for either.
CATSEG_PUBLISHED: Dict[str, Dict[str, Optional[float]]] = {
    'CAT-Seg ViT-B (published)': {'ade20k': 31.8, 'context59': 57.5, 'cityscapes': None},
    'DeCLIP + CAT-Seg ViT-B (published)': {'ade20k': 36.3, 'context59': 60.6, 'cityscapes': None},
}


def catseg_config(benchmark: str, variant: str = 'declip-eva02-b16',
                  config_dir: Optional[str] = None) -> str:
    """Path of ``configs/catseg/catseg_<variant>_<benchmark>-640x640.py``."""
    if benchmark not in CATSEG_BENCHMARKS:
        raise KeyError(f'unknown CAT-Seg benchmark {benchmark!r}; known: {list(CATSEG_BENCHMARKS)}')
    if variant not in CATSEG_VARIANTS:
        raise KeyError(f'unknown variant {variant!r}; known: {list(CATSEG_VARIANTS)}')
    if config_dir is None:  # the installed package's configs first, a checkout's second
        from ..utils.package_files import config_root
        config_dir = osp.join(config_root(), 'catseg')
    path = osp.join(config_dir, f'catseg_{variant}_{benchmark}-640x640.py')
    if not osp.isfile(path):
        raise FileNotFoundError(f'CAT-Seg config not found: {path}')
    return path


def format_catseg_table(results: Dict[str, float], label: str = 'this run') -> str:
    """Markdown table: our mIoU per benchmark under the published rows ('-': not published / not run)."""
    cols = list(CATSEG_BENCHMARKS)

    def cell(v):
        return '-' if v is None else f'{v:.1f}'

    lines = ['| model | ' + ' | '.join(CATSEG_BENCHMARKS[c] for c in cols) + ' |',
             '|' + '---|' * (len(cols) + 1)]
    for name, row in CATSEG_PUBLISHED.items():
        lines.append(f'| {name} | ' + ' | '.join(cell(row.get(c)) for c in cols) + ' |')
    lines.append(f'| {label} | ' + ' | '.join(cell(results.get(c)) for c in cols) + ' |')
    return '\n'.join(lines)
