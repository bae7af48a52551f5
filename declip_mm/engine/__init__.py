from .finite_check import DeCLIPFiniteWeightsHook
from .hooks import DeCLIPEpochHook, DeCLIPMergeExportHook
from .optim import DeCLIPOptimWrapperConstructor
from .schedulers import DeCLIPWarmupCosineLR

__all__ = ['DeCLIPEpochHook', 'DeCLIPFiniteWeightsHook', 'DeCLIPMergeExportHook',
           'DeCLIPWarmupCosineLR', 'DeCLIPOptimWrapperConstructor']
