"""Open-vocabulary detection parts (F-ViT style), registered into mmdet's registries.

Imported by :func:`declip_mm.mmdet_registration.register_into_mmdet` only when mmdet is installed
(these subclass mmdet). Importing this package registers nothing; the registration skips a name that
mmdet or another plugin already owns.
"""
from .fvit_detector import DeCLIPFViT
from .ov_bbox_head import DeCLIPOVBBoxHead
from .ov_roi_head import DeCLIPOVRoIHead
from .square_pad_preprocessor import SquarePadDetDataPreprocessor

#: the classes :func:`declip_mm.mmdet_registration.register_into_mmdet` puts into mmdet's MODELS
MMDET_MODULES = (DeCLIPFViT, DeCLIPOVBBoxHead, DeCLIPOVRoIHead, SquarePadDetDataPreprocessor)

__all__ = ['DeCLIPFViT', 'DeCLIPOVBBoxHead', 'DeCLIPOVRoIHead', 'SquarePadDetDataPreprocessor',
           'MMDET_MODULES']
