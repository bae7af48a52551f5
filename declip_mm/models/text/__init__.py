from .templates import TEMPLATES, get_templates
from .text_encoder import DeCLIPTextEncoder

__all__ = ['DeCLIPTextEncoder', 'TEMPLATES', 'get_templates']
