"""Hooks of DeCLIP distillation.

* :class:`DeCLIPEpochHook` tells the dataset the epoch before it is iterated, so the seeded grid
  crops differ between epochs but not between process layouts (DDP vs one process) or resumes.
* :class:`DeCLIPMergeExportHook` writes, after every epoch, the alpha-merged image tower
  ``alpha * student + (1 - alpha) * original`` (docs/method.md §3: alpha 0.7 for B, 0.95 for L) as a declip_mm
  checkpoint with meta (architecture, attn_mode, tau) that the training-free and CAT-Seg configs load
  directly. Training continues from the unmerged student. Under FSDP (``DeCLIPFSDPStrategy``) every
  rank gathers the full parameters (a collective) and rank 0 writes the same file as with DDP. A
  merged tower with NaN / Inf is never written. It also records the student's architecture and
  attn_mode in the meta of mmengine's training checkpoints (``meta['declip_student']``), so
  ``epoch_N.pth`` given to tools/test.py, tools/demo.py or tools/convert_checkpoint.py loads as the
  tower it holds.
"""
from __future__ import annotations

import os.path as osp
from typing import Dict, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor

from ..converters import save_checkpoint
from ..converters.export import _plain
from ..registry import HOOKS
from ..utils.finite import last_checkpoint_note, nonfinite_tensors

__all__ = ['DeCLIPEpochHook', 'DeCLIPMergeExportHook', 'merge_weights']


def merge_weights(student: Dict[str, Tensor], original: Dict[str, Tensor],
                  alpha: float) -> Dict[str, Tensor]:
    """``alpha * student + (1 - alpha) * original`` for floating tensors (others from the student)."""
    out = {}
    for k, v in student.items():
        o = original[k]
        out[k] = (alpha * v.float() + (1 - alpha) * o.float()).to(v.dtype) \
            if v.is_floating_point() else v.clone()
    return out


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _full_visual_state(model, module) -> Dict[str, Tensor]:
    """``module.state_dict()`` on CPU; under FSDP the full (gathered) tensors, FSDP prefixes dropped.

    Must be called on every rank when ``model`` is FSDP-wrapped (all-gather).
    """
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    if not isinstance(model, FSDP):
        return {k: v.detach().cpu() for k, v in module.state_dict().items()}
    skip = {f'{m_name}.{b}' if m_name else b for m_name, m in module.named_modules()
            for b in m._non_persistent_buffers_set}  # as state_dict(): persistent buffers only
    out = {}
    with FSDP.summon_full_params(model, writeback=False, recurse=True):
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if name not in skip:
                out[name.replace('_fsdp_wrapped_module.', '')] = t.detach().cpu().clone()
    return out


@HOOKS.register_module()
class DeCLIPEpochHook(Hook):
    priority = 'NORMAL'

    def before_train_epoch(self, runner) -> None:
        ds = runner.train_dataloader.dataset
        while hasattr(ds, 'dataset') and not hasattr(ds, 'epoch'):
            ds = ds.dataset
        if hasattr(ds, 'epoch'):
            ds.epoch = runner.epoch


@HOOKS.register_module()
class DeCLIPMergeExportHook(Hook):
    """Export the alpha-merged student image tower after each epoch.

    Args:
        alpha (float): weight of the trained student. Defaults to 0.7 (ViT-B; 0.95 for ViT-L).
        interval (int): every N epochs. Defaults to 1.
        out_dir (str, optional): defaults to the work dir.
        filename_tmpl (str): defaults to ``'declip_epoch_{}.pth'``.
    """

    priority = 'LOW'

    def __init__(self, alpha: float = 0.7, interval: int = 1, out_dir: Optional[str] = None,
                 filename_tmpl: str = 'declip_epoch_{}.pth') -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'alpha must be in [0, 1], got {alpha}')
        self.alpha = float(alpha)
        self.interval = int(interval)
        self.out_dir = out_dir
        self.filename_tmpl = filename_tmpl

    def after_train_epoch(self, runner) -> None:
        if not self.every_n_epochs(runner, self.interval):
            return
        model = _unwrap(runner.model)
        student = model.student
        # (under FSDP a collective: every rank gathers, rank 0 writes)
        student_sd = _full_visual_state(runner.model, student.visual)
        original = _full_visual_state(runner.model, model.clip_teacher.visual)  # initial, frozen
        if not is_main_process():
            return
        merged = merge_weights(student_sd, original, self.alpha)
        path = osp.join(self.out_dir or runner.work_dir, self.filename_tmpl.format(runner.epoch + 1))
        bad = nonfinite_tensors(merged)
        if bad:
            raise FloatingPointError(
                f'not exporting {path}: the merged image tower holds NaN/Inf in {len(bad)} tensor(s) '
                f'({", ".join(bad[:8])}); the student weights diverged. '
                f'{last_checkpoint_note(runner.work_dir)}')
        sd = {'visual.' + k: v for k, v in merged.items()}
        save_checkpoint(path, sd, student.model_name, attn_mode=student.attn_mode,
                        attn_scale=student.attn_scale, source='declip_mm', alpha=self.alpha,
                        epoch=runner.epoch + 1, iter=runner.iter)
        runner.logger.info(f'exported alpha={self.alpha} merged image tower to {path}')
        self.last_export = path

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record what the student is, for loaders of the training checkpoint."""
        student = _unwrap(runner.model).student
        checkpoint.setdefault('meta', {})['declip_student'] = dict(
            architecture=_plain(student.model_name), attn_mode=student.attn_mode,
            attn_scale=student.attn_scale, merge_alpha=self.alpha,
            export_dir=self.out_dir or runner.work_dir, export_tmpl=self.filename_tmpl)
