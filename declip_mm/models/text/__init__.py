from .templates import TEMPLATES, fill_template, get_templates
from .text_encoder import DeCLIPTextEncoder

__all__ = ['DeCLIPTextEncoder', 'TEMPLATES', 'get_templates', 'fill_template']
