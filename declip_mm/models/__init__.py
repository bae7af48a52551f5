from .backbones import DeCLIPVisionTransformer
from .text import DeCLIPTextEncoder

__all__ = ['DeCLIPVisionTransformer', 'DeCLIPTextEncoder']
