from .catseg_optim import DeCLIPCATSegOptimWrapperConstructor
from .hooks import DeCLIPEpochHook, DeCLIPMergeExportHook
from .optim import DeCLIPOptimWrapperConstructor
from .schedulers import DeCLIPWarmupCosineLR

__all__ = ['DeCLIPEpochHook', 'DeCLIPMergeExportHook', 'DeCLIPWarmupCosineLR',
           'DeCLIPOptimWrapperConstructor', 'DeCLIPCATSegOptimWrapperConstructor']
