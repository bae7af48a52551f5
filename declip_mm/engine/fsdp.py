"""Fully sharded training (FSDP) of the DeCLIP distiller through mmengine's ``FlexibleRunner``
(an option beyond the paper, docs/method.md §6).

mmengine 0.10.7's ``FSDPStrategy`` assumes one CUDA device per rank: its ``_wrap_model`` passes
``device_id=int(LOCAL_RANK)`` (a CUDA index) and its distributed set-up calls
``torch.cuda.set_device``. torch's FSDP itself shards on CPU processes with the gloo backend
(checked with torch 2.14.1: ``FullyShardedDataParallel(..., device_id=torch.device('cpu'))``), so this
subclass only picks the device and the backend:

* CUDA available: ``device_id`` = LOCAL_RANK, mmengine's own set-up (NCCL) -- unchanged behaviour;
* no CUDA: ``device_id=torch.device('cpu')``, a gloo process group (created by
  ``tools/train.py`` / ``configure_cpu_distributed`` or here).

It also fixes mmengine 0.10.7's optimizer-state calls for torch >= 2.1 (``optim_state_dict`` is
given the optimizer, not the wrapper; ``optim_state_dict_to_load`` takes ``(model, optim,
optim_state_dict)``; mmengine passes the state first, so resuming fails with "unhashable type:
'dict'").

Wrapping: the distiller names the sub-modules that may be their own FSDP units
(:meth:`DeCLIPDistiller.fsdp_units`: the student's blocks before the decoupled ones, which are only
ever entered through their ``forward``); the stem, the decoupled blocks (their projections are read
directly) and the head stay in the root unit. The frozen teachers are FSDP ``ignored_modules``:
replicated on every rank (no gradients, no optimizer state to shard) and outside the checkpoints. Defaults:
``use_orig_params=True`` (trainable and frozen parameters share units) and ``state_dict_cfg='full'``
(rank 0 writes one ordinary checkpoint, the same layout as DDP's, so resuming works with either
strategy).
"""
from __future__ import annotations

import os
from functools import partial
from typing import Optional, Union

import torch
import torch.distributed as dist
from mmengine._strategy import FSDPStrategy
from mmengine.registry import STRATEGIES
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy

__all__ = ['DeCLIPFSDPStrategy']


@STRATEGIES.register_module()
class DeCLIPFSDPStrategy(FSDPStrategy):
    """mmengine ``FSDPStrategy`` that also runs on CPU processes (gloo).

    Args:
        model_wrapper (dict, optional): ``MMFullyShardedDataParallel`` arguments; ``device_id`` and
            ``auto_wrap_policy`` default as described in the module docstring.
        state_dict_cfg (str | dict): ``'full'`` (default) or ``'local'`` (mmengine's meaning).
        **kwargs: the other ``FSDPStrategy`` arguments.
    """

    def __init__(self, *, model_wrapper: Optional[dict] = None,
                 state_dict_cfg: Union[str, dict] = 'full', **kwargs) -> None:
        wrapper = dict(type='MMFullyShardedDataParallel', use_orig_params=True)
        wrapper.update(model_wrapper or {})
        super().__init__(model_wrapper=wrapper, state_dict_cfg=state_dict_cfg, **kwargs)

    def _setup_distributed(self, launcher: str = 'pytorch', backend: str = 'nccl', **kwargs):
        if torch.cuda.is_available():
            return super()._setup_distributed(launcher, backend, **kwargs)
        if launcher not in (None, 'none', 'pytorch'):
            raise RuntimeError(f'launcher {launcher!r} without CUDA is not supported by '
                               'DeCLIPFSDPStrategy; use torchrun (tools/dist_train.sh)')
        if launcher == 'pytorch' and not dist.is_initialized():
            dist.init_process_group(backend='gloo')

    def _wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        if getattr(model, 'frozen_slices', None):
            # the optimizer hook restores rows of fused tensors by name and shape; FSDP flattens them
            raise NotImplementedError(
                'FSDP does not support frozen rows of a fused in_proj (OpenAI towers in qq/kk); '
                'use csa, an EVA02 tower, or the DDP runner')
        for p in model.parameters():
            # FSDP (use_orig_params) turns parameters into flat shards, same objects: the optimizer
            # constructor's weight-decay rule (>= 2-D weights) reads the true ndim from here
            p._declip_ndim = p.ndim
        cfg = self.model_wrapper
        if 'device_id' not in cfg:
            cfg['device_id'] = (int(os.environ.get('LOCAL_RANK', 0)) if torch.cuda.is_available()
                                else torch.device('cpu'))
        if 'ignored_modules' not in cfg and hasattr(model, 'fsdp_ignored_modules'):
            cfg['ignored_modules'] = list(model.fsdp_ignored_modules())
            if torch.cuda.is_available():  # FSDP moves only what it shards to device_id
                for m in cfg['ignored_modules']:
                    m.to(torch.device('cuda', cfg['device_id']))
        if 'auto_wrap_policy' not in cfg and hasattr(model, 'fsdp_units'):
            ids = {id(m) for m in model.fsdp_units()}
            cfg['auto_wrap_policy'] = partial(lambda_auto_wrap_policy,
                                              lambda_fn=lambda m: id(m) in ids)
        return super()._wrap_model(model)

    # optimizer state ----------------------------------------------------------------------------
    # torch 2.14.1's FSDP.optim_state_dict (and torch.distributed.checkpoint's
    # get_optimizer_state_dict, which calls it) returns exp_avg == exp_avg_sq for every parameter on
    # CPU processes (gloo): the all-gathered state tensors alias one reused buffer, so a resumed run
    # silently trains with a wrong Adam state. The state is therefore gathered here through the
    # parameters themselves: each element-wise state tensor has the local shard's shape, is copied
    # into the shard, and summon_full_params gathers it (the parameters are restored afterwards).
    def _named_params(self):
        return [(n.replace('_fsdp_wrapped_module.', ''), p)
                for n, p in self.model.named_parameters()]

    def optim_state_dict(self) -> dict:
        optim = self.optim_wrapper.optimizer
        named = self._named_params()
        name_of = {id(p): n for n, p in named}
        keys = sorted({k for st in optim.state.values() for k, v in st.items()
                       if torch.is_tensor(v) and v.dim() > 0})
        keys = _all_ranks_keys(keys)
        saved = [p.detach().clone() for _, p in named]
        state: dict = {n: {} for n, p in named if p in optim.state or p.requires_grad}
        try:
            for key in keys:
                with torch.no_grad():
                    for _, p in named:
                        v = optim.state.get(p, {}).get(key)
                        p.data.copy_(v if v is not None else torch.zeros_like(p))
                with FSDP.summon_full_params(self.model, writeback=False):
                    for n, p in named:
                        if n in state:
                            state[n][key] = p.detach().cpu().clone()
        finally:
            with torch.no_grad():
                for (_, p), v in zip(named, saved):
                    p.data.copy_(v)
        # scalar entries (Adam's step): a rank whose shard of a parameter is empty holds no state
        # for it, so they are collected from every rank
        scalars = {n: {k: (v.detach().cpu().clone() if torch.is_tensor(v) else v)
                       for k, v in optim.state.get(p, {}).items() if k not in keys}
                   for n, p in named if p in optim.state}
        for part in _all_ranks_objects(scalars):
            for n, st in part.items():
                if n in state:
                    for k, v in st.items():
                        state[n].setdefault(k, v)
        has_state = {n for part in _all_ranks_objects(sorted(scalars)) for n in part}
        state = {n: st for n, st in state.items() if n in has_state}
        groups = []
        for g in optim.param_groups:
            groups.append({k: v for k, v in g.items() if k != 'params'})
            groups[-1]['params'] = [name_of[id(p)] for p in g['params']]
        return {'state': state, 'param_groups': groups}

    def load_optim_state_dict(self, state_dict: dict) -> None:
        optim = self.optim_wrapper.optimizer
        named = self._named_params()
        by_name = dict(named)
        groups = state_dict['param_groups']
        if len(groups) != len(optim.param_groups):
            raise ValueError(f'checkpoint has {len(groups)} optimizer groups, the optimizer '
                             f'{len(optim.param_groups)}')
        for g, saved_g in zip(optim.param_groups, groups):
            g.update({k: v for k, v in saved_g.items() if k != 'params'})
        full = state_dict['state']
        keys = sorted({k for st in full.values() for k, v in st.items()
                       if torch.is_tensor(v) and v.dim() > 0})
        saved = [p.detach().clone() for _, p in named]
        local: dict = {}
        try:
            for key in keys:
                with FSDP.summon_full_params(self.model, writeback=True):
                    with torch.no_grad():
                        for n, p in named:
                            if key in full.get(n, {}):
                                p.data.copy_(full[n][key].to(p.device, p.dtype).view_as(p))
                for n, p in named:
                    if key in full.get(n, {}):
                        local.setdefault(n, {})[key] = p.detach().clone()
        finally:
            with torch.no_grad():
                for (_, p), v in zip(named, saved):
                    p.data.copy_(v)
        optim.state.clear()
        # fused / capturable AdamW keep the step counter on the parameter's device (as torch's own
        # Optimizer.load_state_dict places it); the others keep it on the CPU
        on_device = {id(q) for g in optim.param_groups if g.get('fused') or g.get('capturable')
                     for q in g['params']}
        for n, st in full.items():
            if n not in by_name:
                raise KeyError(f'optimizer state of {n!r}: no such parameter in the model')
            p = by_name[n]
            optim.state[p] = {k: (local[n][k] if k in keys else
                                  (v.clone() if torch.is_tensor(v) else v)) for k, v in st.items()}
            step = optim.state[p].get('step')
            if torch.is_tensor(step) and id(p) in on_device:
                optim.state[p]['step'] = step.to(p.device)


def _all_ranks_objects(obj) -> list:
    """``obj`` of every rank (a list of one element without a process group)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _all_ranks_keys(keys):
    """The union of the state keys over the ranks (a rank may hold no state yet)."""
    return sorted({k for ks in _all_ranks_objects(keys) for k in ks})
