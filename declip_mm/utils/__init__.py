from .io import check_local_file, load_weight_file
from .safe_globals import mmengine_checkpoint_loading, register_mmengine_safe_globals

__all__ = ['check_local_file', 'load_weight_file', 'mmengine_checkpoint_loading',
           'register_mmengine_safe_globals']
