from .catseg_optim import DeCLIPCATSegOptimWrapperConstructor
from .fsdp import DeCLIPFSDPStrategy
from .hooks import DeCLIPEpochHook, DeCLIPMergeExportHook
from .optim import DeCLIPOptimWrapperConstructor
from .schedulers import DeCLIPWarmupCosineLR

__all__ = ['DeCLIPFSDPStrategy', 'DeCLIPEpochHook', 'DeCLIPMergeExportHook', 'DeCLIPWarmupCosineLR',
           'DeCLIPOptimWrapperConstructor', 'DeCLIPCATSegOptimWrapperConstructor']
