"""declip_mm: DeCLIP (CVPR 2025) as an MMEngine / MMSegmentation plugin.

``import declip_mm`` registers every component into mmseg's registries, and the backbone, the
simple-pyramid resampler and the F-ViT detector parts into mmdet's when mmdet is installed, without
taking a name mmdet or another plugin holds (:mod:`declip_mm.mmdet_registration`). It changes
nothing else in mmengine or torch: mmengine training checkpoints load under torch's ``weights_only``
inside :func:`declip_mm.utils.mmengine_checkpoint_loading` (the tools use it), or process-wide after
the explicit :func:`declip_mm.utils.register_mmengine_safe_globals`.

Before that it checks the dependencies that fail far from their cause (a too-old timm, a missing or
ops-less mmcv: :mod:`declip_mm.utils.dependency_check`) and, where ``pkg_resources`` is absent, lets
mmengine resolve ``mmseg::`` config bases with importlib
(:mod:`declip_mm.utils.mmengine_package_lookup`).
"""
from .utils.dependency_check import check_dependencies
from .version import __version__

check_dependencies()

from .utils.mmengine_package_lookup import use_importlib_package_lookup  # noqa: E402

use_importlib_package_lookup()

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registers)
from .mmdet_registration import register_into_mmdet  # noqa: E402
from .models import DeCLIPTextEncoder, DeCLIPVisionTransformer, DeCLIPZeroShotSegmentor, SimplePyramidResampler  # noqa: E402

MMDET_REGISTERED = register_into_mmdet()

__all__ = ['__version__', 'DeCLIPVisionTransformer', 'DeCLIPTextEncoder', 'DeCLIPZeroShotSegmentor',
           'SimplePyramidResampler', 'MMDET_REGISTERED']
