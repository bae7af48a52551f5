"""Import-time check of the dependencies whose wrong version fails far from the cause.

* timm older than :data:`RANGES` ``['timm']`` builds EVA02 towers whose attention has no
  ``head_dim`` (timm 1.0.26 added it), and every EVA02 path then dies with a bare
  ``AttributeError: 'EvaAttention' object has no attribute 'head_dim'``;
* mmcv is not a pip requirement (PyPI has only its source for current torch: pip would try to compile
  it without ops), so it can be missing, outside mmseg 1.2.2's range, or a build without the compiled
  ops (``mmcv-lite``, or ``MMCV_WITH_OPS=0``) that mmseg's and mmdet's models import.

:func:`check_dependencies` raises one ImportError naming every problem and its fix. The lower bounds
are the ones declared in ``requirements/runtime.txt`` (a test keeps the two equal).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Callable, Dict, List, Optional, Tuple

from packaging.version import Version

__all__ = ['RANGES', 'MMCV_RANGE', 'MMCV_FIX', 'dependency_problems', 'check_dependencies']

#: distribution -> [lowest version the test suite passes with, next major after the tested one): the
#: ranges of requirements/runtime.txt. Only the lower bound is enforced at import.
RANGES: Dict[str, Tuple[str, str]] = {'timm': ('1.0.26', '2'), 'open_clip_torch': ('2.32', '4')}

#: mmcv versions mmseg 1.2.2 / mmdet 3.3.0 accept: [low, high)
MMCV_RANGE = ('2.0.0rc4', '2.2.0')

MMCV_FIX = ("install mmcv 2.1 with its compiled ops: `bash tools/install_mmcv.sh` in a checkout or "
            "`declip-install-mmcv` after a pip install (builds it against your torch once and caches "
            "the wheel), or `mim install 'mmcv>=2.0.0rc4,<2.2.0'` where OpenMMLab publishes a prebuilt "
            "wheel for your torch / CUDA pair")

_WHY = {'timm': "its EvaAttention has no 'head_dim' and every EVA02 tower fails with an AttributeError",
        'open_clip_torch': 'its EVA / ViT model configs and towers differ from the ones declip_mm builds'}


def _installed_version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def dependency_problems(version_of: Callable[[str], Optional[str]] = _installed_version,
                        find_spec: Callable = importlib.util.find_spec) -> List[str]:
    """One message per problem (empty when the environment is fine).

    Args:
        version_of: distribution name -> installed version or None (tests inject fakes).
        find_spec: module name -> spec or None, as :func:`importlib.util.find_spec`.
    """
    problems = []
    for dist, (low, high) in RANGES.items():
        have = version_of(dist)
        if have is not None and Version(have) < Version(low):
            problems.append(f'{dist} {have} is older than {low}: {_WHY[dist]}. '
                            f"Fix: pip install '{dist}>={low},<{high}'")
    if find_spec('mmcv') is None:
        problems.append(f'mmcv is not installed. Fix: {MMCV_FIX}')
        return problems
    have = version_of('mmcv') or version_of('mmcv-lite')
    low, high = MMCV_RANGE
    if have is not None and not Version(low) <= Version(have) < Version(high):
        problems.append(f'mmcv {have} is outside [{low}, {high}), the range mmseg 1.2.2 and mmdet '
                        f'3.3.0 accept. Fix: {MMCV_FIX}')
    elif find_spec('mmcv._ext') is None:
        problems.append(f'mmcv {have or ""} has no compiled ops (mmcv.ops, needed by mmseg and mmdet '
                        f'models): it is mmcv-lite or was built with MMCV_WITH_OPS=0. Fix: {MMCV_FIX}')
    return problems


def check_dependencies(**kwargs) -> None:
    """Raise ImportError listing every :func:`dependency_problems` entry."""
    problems = dependency_problems(**kwargs)
    if problems:
        raise ImportError('declip_mm cannot run with the installed packages:\n  - '
                          + '\n  - '.join(problems))
