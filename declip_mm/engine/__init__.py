from .catseg_optim import DeCLIPCATSegOptimWrapperConstructor
from .finite_check import DeCLIPFiniteWeightsHook
from .fsdp import DeCLIPFSDPStrategy
from .hooks import DeCLIPEpochHook, DeCLIPMergeExportHook
from .optim import DeCLIPOptimWrapperConstructor
from .schedulers import DeCLIPWarmupCosineLR

__all__ = ['DeCLIPFSDPStrategy', 'DeCLIPEpochHook', 'DeCLIPFiniteWeightsHook', 'DeCLIPMergeExportHook',
           'DeCLIPWarmupCosineLR', 'DeCLIPOptimWrapperConstructor', 'DeCLIPCATSegOptimWrapperConstructor']
