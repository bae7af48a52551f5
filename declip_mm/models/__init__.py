from .backbones import VFMTeacher, DeCLIPVisionTransformer
from .distillers import DeCLIPDataPreprocessor, DeCLIPDistiller
from .heads import DeCLIPCATSegHead
from .losses import ContentDistillLoss, ContextDistillLoss
from .segmentors import DeCLIPCATSegSegmentor, DeCLIPSegTTAModel, DeCLIPZeroShotSegmentor
from .text import DeCLIPTextEncoder

__all__ = ['DeCLIPVisionTransformer', 'DeCLIPTextEncoder', 'DeCLIPZeroShotSegmentor',
           'DeCLIPSegTTAModel', 'VFMTeacher', 'DeCLIPDistiller', 'DeCLIPDataPreprocessor',
           'ContentDistillLoss', 'ContextDistillLoss', 'DeCLIPCATSegHead', 'DeCLIPCATSegSegmentor']
