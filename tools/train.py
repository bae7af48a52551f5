#!/usr/bin/env python
"""Train a model (DeCLIP distillation, or any mmseg model) with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                          [--tensorboard] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]
                          [--strategy ddp|fsdp] [--vfm-cache-dir DIR]

mmseg 1.x's flags. ``--resume`` without a path continues from the latest checkpoint in the work dir
(an interrupted run resumes to the same result): the one ``last_checkpoint`` names, taken from this
work dir even when the dir was copied from elsewhere, or, if that file is cut short, the previous
one (a warning names both). A step that leaves NaN/Inf in the weights stops the
run before anything is saved (``DeCLIPFiniteWeightsHook``, added if the config lacks it). Without
CUDA the distributed backend is gloo, so ``--launcher pytorch`` also works with CPU processes.
``--strategy fsdp`` (or ``strategy = dict(type='DeCLIPFSDPStrategy')`` in the config) trains fully
sharded through mmengine's FlexibleRunner, on GPUs or on CPU processes (docs/method.md §6).
``--vfm-cache-dir DIR`` (or ``model.vfm_cache = dict(cache_dir=DIR)``) keeps the frozen VFM teachers'
features in an fp16 disk cache, so epochs after the first skip the teachers (docs/method.md §6).
"""
import argparse
import logging
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='declip_mm: train a model')
    p.add_argument('config', help='train config file path')
    p.add_argument('--work-dir', help='the dir to save logs and models')
    p.add_argument('--resume', nargs='?', type=str, const='auto', default=None,
                   help='resume from CKPT, or (no value) from the latest checkpoint in the work dir')
    p.add_argument('--amp', action='store_true', help='automatic mixed precision (CUDA/NPU/MLU)')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale the lr by (real global batch) / auto_scale_lr.base_batch_size')
    p.add_argument('--tensorboard', action='store_true', help='also log to TensorBoard')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value pairs')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                   help='job launcher')
    p.add_argument('--strategy', choices=['ddp', 'fsdp'], default=None,
                   help='fsdp: shard parameters, gradients and optimizer state (FlexibleRunner + '
                        'DeCLIPFSDPStrategy); default: the config (mmengine Runner, DDP)')
    p.add_argument('--vfm-cache-dir', default=None, metavar='DIR',
                   help='cache the VFM teacher features in DIR (fp16, about 1.9 GB per 1k images '
                        'for DINOv2-B at 490); later epochs read them instead of running the teacher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA device (mmengine AmpOptimWrapper); on the CPU, '
                             "use model.teacher_dtype='bf16' for the teachers instead")
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print_log('AMP is already enabled in the config', logger='current',
                      level=logging.WARNING)
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.tensorboard or cfg.get('use_tensorboard', False):
        backends = cfg.visualizer.setdefault('vis_backends', [dict(type='LocalVisBackend')])
        if not any(b.get('type') == 'TensorboardVisBackend' for b in backends):
            backends.append(dict(type='TensorboardVisBackend'))
    # every run stops on NaN/Inf weights before they reach a checkpoint (declip_mm's configs list
    # the hook already; mmseg configs get it here)
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(str(h.get('type')).endswith('DeCLIPFiniteWeightsHook') for h in hooks):
        scope = '' if cfg.get('default_scope', 'mmseg') == 'mmseg' else 'mmseg.'  # mmdet configs
        cfg.custom_hooks = hooks + [dict(type=scope + 'DeCLIPFiniteWeightsHook')]
    if getattr(args, 'vfm_cache_dir', None):
        cfg.model.vfm_cache = dict(cfg.model.get('vfm_cache') or {}, cache_dir=args.vfm_cache_dir)
    if cfg.model.get('vfm_cache'):
        from declip_mm.models.distillers.vfm_feature_cache import vfm_pipeline_warnings
        pipeline = cfg.get('train_dataloader', {}).get('dataset', {}).get('pipeline') or []
        for msg in vfm_pipeline_warnings(pipeline):
            print_log(msg, logger='current', level=logging.WARNING)
    if args.resume == 'auto':
        # this work dir's own checkpoints (not a copied last_checkpoint's absolute path), and the
        # previous one when the last is cut short (declip_mm/engine/resume.py)
        from declip_mm.engine.resume import resolve_auto_resume
        path, notes = resolve_auto_resume(cfg.work_dir)
        for note in notes:
            print_log(note, logger='current', level=logging.WARNING)
        cfg.resume, cfg.load_from = True, path
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if getattr(args, 'strategy', None) == 'fsdp':
        cfg.strategy = dict(type='DeCLIPFSDPStrategy', **(cfg.get('strategy') or {}))
        cfg.strategy['type'] = 'DeCLIPFSDPStrategy'
    elif getattr(args, 'strategy', None) == 'ddp':
        cfg.pop('strategy', None)
    if cfg.get('strategy') is not None:
        cfg.runner_type = 'FlexibleRunner'
    from declip_mm.tools_support import configure_cpu_distributed
    cfg = configure_cpu_distributed(cfg, args.launcher)
    if cfg.get('strategy') is not None:
        cfg.pop('model_wrapper_cfg', None)  # the strategy wraps the model
    return cfg


def main(argv=None):
    args = parse_args(argv)
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import declip_mm  # noqa: F401  (registers)
    from declip_mm.tools_support import fresh_visualizer
    from declip_mm.utils import mmengine_checkpoint_loading
    cfg = fresh_visualizer(build_cfg(args))
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    with mmengine_checkpoint_loading():   # --resume / load_from read mmengine checkpoints safely
        runner.train()
    return runner


def shutdown_distributed() -> None:
    """Leave the process group cleanly (all ranks done, gloo's threads joined) before the
    interpreter exits: an exit with a live group can abort at teardown ('terminate called without
    an active exception') after a successful run."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
    shutdown_distributed()
