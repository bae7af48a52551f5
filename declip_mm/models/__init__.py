from .backbones import DeCLIPVisionTransformer
from .segmentors import DeCLIPZeroShotSegmentor
from .text import DeCLIPTextEncoder

__all__ = ['DeCLIPVisionTransformer', 'DeCLIPTextEncoder', 'DeCLIPZeroShotSegmentor']
