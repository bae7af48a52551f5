from .clip_towers import EvaVisionTower, resolve_clip_config
from .declip_vit import DeCLIPVisionTransformer

__all__ = ['DeCLIPVisionTransformer', 'EvaVisionTower', 'resolve_clip_config']
