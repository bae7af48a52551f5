from .backbones import DeCLIPVisionTransformer, VFMTeacher
from .classifiers import DeCLIPRegionClassifier, RegionDataPreprocessor
from .distillers import DeCLIPDataPreprocessor, DeCLIPDistiller
from .heads import DeCLIPCATSegHead
from .losses import ContentDistillLoss, ContextDistillLoss
from .necks import SimplePyramidResampler
from .segmentors import DeCLIPCATSegSegmentor, DeCLIPSegTTAModel, DeCLIPZeroShotSegmentor
from .text import DeCLIPTextEncoder

__all__ = ['DeCLIPVisionTransformer', 'DeCLIPTextEncoder', 'DeCLIPZeroShotSegmentor',
           'DeCLIPSegTTAModel', 'VFMTeacher', 'DeCLIPDistiller', 'DeCLIPDataPreprocessor',
           'ContentDistillLoss', 'ContextDistillLoss', 'DeCLIPRegionClassifier',
           'RegionDataPreprocessor', 'SimplePyramidResampler', 'DeCLIPCATSegHead',
           'DeCLIPCATSegSegmentor']
