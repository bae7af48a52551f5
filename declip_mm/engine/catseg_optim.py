"""Optimizer constructor of the CAT-Seg fine-tuning (docs/catseg.md): mmengine's default constructor, so that
``paramwise_cfg`` sets the towers' lr multiplier (``custom_keys``) and the decay of norms, plus the
``frozen_slices`` of the model (the K rows of fused q/k/v tensors) restored after every step.

Public ``train_net.py`` of CAT-Seg builds one AdamW group per parameter: lr × ``CLIP_MULTIPLIER``
(0.01) for the CLIP towers, weight decay 1e-4 except on norm layers (``WEIGHT_DECAY_NORM`` 0).
"""
from __future__ import annotations

from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS

from .optim import DeCLIPOptimWrapperConstructor

__all__ = ['DeCLIPCATSegOptimWrapperConstructor']


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DeCLIPCATSegOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` that keeps the model's ``frozen_slices`` fixed."""

    def __call__(self, model):
        wrapper = super().__call__(model)
        module = model.module if is_model_wrapper(model) else model
        DeCLIPOptimWrapperConstructor._keep_frozen_slices(module, wrapper.optimizer)
        return wrapper
