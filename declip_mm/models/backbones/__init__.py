from .clip_towers import EvaVisionTower, resolve_clip_config
from .declip_vit import DeCLIPVisionTransformer
from .proxy_vfm import ProxyVFM
from .vfm_teacher import VFM_ARCHS, VFMTeacher

__all__ = ['DeCLIPVisionTransformer', 'EvaVisionTower', 'resolve_clip_config', 'VFMTeacher',
           'VFM_ARCHS', 'ProxyVFM']
