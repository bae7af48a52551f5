"""Open-vocabulary detection parts (F-ViT style), registered into mmdet's registries.

Imported by ``declip_mm``'s mmdet registration only when mmdet is installed (these subclass mmdet).
"""
from .fvit_detector import DeCLIPFViT
from .ov_bbox_head import DeCLIPOVBBoxHead
from .ov_roi_head import DeCLIPOVRoIHead
from .square_pad_preprocessor import SquarePadDetDataPreprocessor

__all__ = ['DeCLIPFViT', 'DeCLIPOVBBoxHead', 'DeCLIPOVRoIHead', 'SquarePadDetDataPreprocessor']
