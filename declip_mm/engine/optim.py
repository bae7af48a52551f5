"""Optimizer parameter groups of DeCLIP (docs/method.md §3): weight decay on >= 2-D weights only (none on norms,
biases, q/v biases, layer-scale gammas), and only the trainable parameters (the frozen teachers and
frozen student parts are not handed to the optimizer at all).

A model may list ``frozen_slices`` ``[(parameter name, slice of dim 0)]``: rows of a trained tensor
that must not change (the K rows of an OpenAI tower's fused ``in_proj`` in ``qq`` mode). They get no
gradient, but AdamW's decoupled weight decay would still shrink them, so they are put back after
every optimizer step."""
from __future__ import annotations

import copy
from typing import Optional

import torch
from mmengine.model import is_model_wrapper
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

__all__ = ['DeCLIPOptimWrapperConstructor']


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DeCLIPOptimWrapperConstructor:
    """Two groups: trainable >= 2-D weights with the optimizer's weight decay, the rest without."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        if 'optimizer' not in optim_wrapper_cfg:
            raise ValueError('optim_wrapper needs an optimizer config')
        if paramwise_cfg:
            raise ValueError('DeCLIPOptimWrapperConstructor takes no paramwise_cfg (the decay rule is '
                             'fixed: >= 2-D weights only)')
        self.optim_wrapper_cfg = copy.deepcopy(dict(optim_wrapper_cfg))

    def __call__(self, model):
        if is_model_wrapper(model):
            model = model.module
        cfg = copy.deepcopy(self.optim_wrapper_cfg)
        optimizer_cfg = dict(cfg.pop('optimizer'))
        cfg.setdefault('type', 'OptimWrapper')
        wd = optimizer_cfg.get('weight_decay', 0.0)
        decay, no_decay = [], []
        for _, p in model.named_parameters():
            if p.requires_grad:
                # under FSDP the parameters are flat shards: DeCLIPFSDPStrategy keeps the true ndim
                ndim = getattr(p, '_declip_ndim', p.ndim)
                (decay if ndim >= 2 else no_decay).append(p)
        if not decay and not no_decay:
            raise ValueError('the model has no trainable parameters')
        optimizer_cfg['params'] = [dict(params=decay, weight_decay=wd),
                                   dict(params=no_decay, weight_decay=0.0)]
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        self._keep_frozen_slices(model, optimizer)
        return OPTIM_WRAPPERS.build(cfg, default_args=dict(optimizer=optimizer))

    @staticmethod
    def _keep_frozen_slices(model, optimizer) -> None:
        slices = getattr(model, 'frozen_slices', None) or []
        if not slices:
            return
        params = dict(model.named_parameters())
        # The values are taken at the first step, not now: the Runner builds the optimizer before it
        # loads the pretrained weights (init_weights) or a resumed checkpoint.
        kept = [[params[name], sl, None] for name, sl in slices]

        def capture(opt, args, kwargs):
            for entry in kept:
                if entry[2] is None:
                    entry[2] = entry[0].detach()[entry[1]].clone()

        def restore(opt, args, kwargs):
            with torch.no_grad():
                for p, sl, value in kept:
                    p[sl] = value.to(p.device, p.dtype)

        optimizer.register_step_pre_hook(capture)
        optimizer.register_step_post_hook(restore)
