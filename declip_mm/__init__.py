"""declip_mm: DeCLIP (CVPR 2025) as an MMEngine / MMSegmentation plugin.

``import declip_mm`` registers every component into mmseg's registries (and the backbone, the
simple-pyramid resampler and the F-ViT detector parts into mmdet's when mmdet is installed), and
lets mmengine resume its training checkpoints under torch's ``weights_only`` loading.

Before that it checks the dependencies that fail far from their cause (a too-old timm, a missing or
ops-less mmcv: :mod:`declip_mm.utils.dependency_check`) and, where ``pkg_resources`` is absent, lets
mmengine resolve ``mmseg::`` config bases with importlib
(:mod:`declip_mm.utils.mmengine_package_lookup`).
"""
import importlib.util

from .utils.dependency_check import check_dependencies
from .version import __version__

check_dependencies()

from .utils.mmengine_package_lookup import use_importlib_package_lookup  # noqa: E402
from .utils.safe_globals import register_mmengine_safe_globals  # noqa: E402

use_importlib_package_lookup()
register_mmengine_safe_globals()

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registers)
from .models import (DeCLIPTextEncoder, DeCLIPVisionTransformer, DeCLIPZeroShotSegmentor,  # noqa: E402
                     SimplePyramidResampler)


def _register_mmdet() -> bool:
    if importlib.util.find_spec('mmdet') is None:
        return False
    try:
        from mmdet.registry import MODELS as MMDET_MODELS
    except Exception:  # mmdet present but broken: mmseg use must still work
        return False
    for cls in (DeCLIPVisionTransformer, SimplePyramidResampler):
        if MMDET_MODELS.get(cls.__name__) is not cls:
            MMDET_MODELS.register_module(module=cls, force=True)
    # the open-vocabulary detector parts subclass mmdet's; they register themselves on import
    from .models import detectors  # noqa: F401
    return True


MMDET_REGISTERED = _register_mmdet()

__all__ = ['__version__', 'DeCLIPVisionTransformer', 'DeCLIPTextEncoder', 'DeCLIPZeroShotSegmentor',
           'SimplePyramidResampler', 'MMDET_REGISTERED']
