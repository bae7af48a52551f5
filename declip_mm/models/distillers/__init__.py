from .data_preprocessor import DeCLIPDataPreprocessor
from .declip_distiller import DeCLIPDistiller, apply_declip_trainable_set
from .vfm_feature_cache import VFMFeatureCache

__all__ = ['DeCLIPDistiller', 'DeCLIPDataPreprocessor', 'apply_declip_trainable_set',
           'VFMFeatureCache']
