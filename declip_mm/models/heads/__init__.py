from .catseg_head import DeCLIPCATSegHead

__all__ = ['DeCLIPCATSegHead']
