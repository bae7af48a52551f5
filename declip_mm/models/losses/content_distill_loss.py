"""Content distillation loss of DeCLIP (docs/method.md §2; CLIPSelf-style self-distillation).

For each grid cell r of each image: the student's region feature is ``roi_align`` (output 1x1,
``spatial_scale=1``, ``sampling_ratio=-1``, ``aligned=True``) of the *un-normalised* content map over
the cell box (token units), then L2-normalised; the target is the frozen CLIP teacher's normalised CLS
embedding of the cell's crop. ``L_content = 1 - mean_r cos(student_r, teacher_r)`` over all valid
boxes of the batch. Under DDP the mean is over the boxes of the *global* batch (the box count is
all-reduced), so any number of processes gives the gradients of one process with the global batch.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from ...registry import MODELS

__all__ = ['ContentDistillLoss', 'region_features']


def region_features(content: Tensor, rois: Tensor) -> Tensor:
    """Normalised 1x1 roi_align features.

    Args:
        content (Tensor): (B, E, h, w) un-normalised content map.
        rois (Tensor): (K, 5) rows ``(batch_index, x1, y1, x2, y2)`` in token units.

    Returns:
        Tensor: (K, E), L2-normalised.
    """
    feats = roi_align(content, rois.to(content.dtype), output_size=(1, 1), spatial_scale=1.0,
                      sampling_ratio=-1, aligned=True)
    return F.normalize(feats.flatten(1), dim=-1)


def _global_count(n: int, device) -> tuple:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = torch.tensor([float(n)], device=device)
        dist.all_reduce(t)
        return float(t.item()), dist.get_world_size()
    return float(n), 1


@MODELS.register_module()
class ContentDistillLoss(nn.Module):
    """``1 - mean cos`` between student region features and teacher crop embeddings.

    Args:
        loss_weight (float): w_content. Defaults to 1.0.
        loss_name (str): key in the loss dict; must start with ``loss_``. Defaults to
            ``'loss_content'``.
    """

    def __init__(self, loss_weight: float = 1.0, loss_name: str = 'loss_content') -> None:
        super().__init__()
        if not loss_name.startswith('loss_'):
            raise ValueError(f'loss_name must start with "loss_", got {loss_name!r}')
        self.loss_weight = float(loss_weight)
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def forward(self, content: Tensor, rois: Tensor, teacher: Tensor,
                valid: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            content (Tensor): (B, E, h, w) student content map (not normalised).
            rois (Tensor): (K, 5) boxes ``(b, x1, y1, x2, y2)`` in token units.
            teacher (Tensor): (K, E) teacher crop embeddings (normalised here again).
            valid (Tensor, optional): (K,) bool mask of boxes to use.
        """
        if rois.shape[0] != teacher.shape[0]:
            raise ValueError(f'{rois.shape[0]} boxes but {teacher.shape[0]} teacher embeddings')
        if valid is not None:
            rois, teacher = rois[valid], teacher[valid]
        student = region_features(content, rois)
        cos = (student * F.normalize(teacher.to(student.dtype), dim=-1)).sum(-1)
        total, world = _global_count(cos.shape[0], content.device)
        if total == 0:
            return content.sum() * 0.0
        # sum / global count, times world size because DDP averages gradients over processes
        return self.loss_weight * (1.0 - cos).sum() * (world / total)
