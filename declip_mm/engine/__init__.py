from .hooks import DeCLIPEpochHook, DeCLIPMergeExportHook
from .schedulers import DeCLIPWarmupCosineLR

__all__ = ['DeCLIPEpochHook', 'DeCLIPMergeExportHook', 'DeCLIPWarmupCosineLR']
