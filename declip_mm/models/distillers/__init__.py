from .data_preprocessor import DeCLIPDataPreprocessor
from .declip_distiller import DeCLIPDistiller, apply_declip_trainable_set

__all__ = ['DeCLIPDistiller', 'DeCLIPDataPreprocessor', 'apply_declip_trainable_set']
