"""declip_mm's components in mmdet's ``MODELS`` registry (done by ``import declip_mm``).

The backbone and the simple-pyramid resampler (mmseg-registered) and the F-ViT detector parts
(:mod:`declip_mm.models.detectors`) are added to mmdet's registry under their class names, through
:func:`declip_mm.utils.registration.register_own`: a name mmdet or another plugin already holds is
left to its owner (with a warning) and listed in :data:`MMDET_SKIPPED`; nothing is overwritten.
"""
from __future__ import annotations

import importlib.util
from typing import List

from .utils.registration import register_own

__all__ = ['register_into_mmdet', 'MMDET_SKIPPED']

#: names of our classes that mmdet's MODELS already maps to another module (left untouched)
MMDET_SKIPPED: List[str] = []


def register_into_mmdet() -> bool:
    """Register into mmdet's ``MODELS``. Returns False when mmdet is missing or fails to import."""
    if importlib.util.find_spec('mmdet') is None:
        return False
    try:
        from mmdet.registry import MODELS as MMDET_MODELS
    except Exception:  # mmdet present but broken: mmseg use must still work
        return False
    from .models import DeCLIPVisionTransformer, SimplePyramidResampler
    from .models.detectors import MMDET_MODULES
    for cls in (DeCLIPVisionTransformer, SimplePyramidResampler) + tuple(MMDET_MODULES):
        if not register_own(MMDET_MODELS, cls) and cls.__name__ not in MMDET_SKIPPED:
            MMDET_SKIPPED.append(cls.__name__)
    return True
