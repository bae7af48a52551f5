"""Context distillation loss of DeCLIP (SPEC §4).

Token correlations: L2-normalise every token; ``S_t = F^ F^T`` of the VFM teacher's patch tokens and
``S_s = Q^ Q^T`` (``qq``) or ``(Q^ Q^T + K^ K^T) / 2`` (``csa``) of the student's last-block projections.
``L_context = mean over images and rows i of || S_t[i, :] - S_s[i, :] ||_2`` (row-wise L2 norm, not
squared). Padded tokens take part unless a validity mask is given (``use_mask``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ...registry import MODELS

__all__ = ['ContextDistillLoss', 'token_correlation']


def token_correlation(feats: Sequence[Tensor]) -> Tensor:
    """Mean over the given maps of ``X^ X^T``: each (B, C, h, w) -> (B, hw, hw)."""
    out = None
    for f in feats:
        t = F.normalize(f.flatten(2).transpose(1, 2), dim=-1)
        s = t @ t.transpose(1, 2)
        out = s if out is None else out + s
    return out / len(feats)


@MODELS.register_module()
class ContextDistillLoss(nn.Module):
    """Row-wise L2 distance between student and VFM token-correlation matrices.

    Args:
        loss_weight (float): λ. Defaults to 0.1 (the public training scripts).
        use_mask (bool): drop padded tokens (rows and columns) when a mask is given. Default False.
        loss_name (str): defaults to ``'loss_context'``.
    """

    def __init__(self, loss_weight: float = 0.1, use_mask: bool = False,
                 loss_name: str = 'loss_context') -> None:
        super().__init__()
        if not loss_name.startswith('loss_'):
            raise ValueError(f'loss_name must start with "loss_", got {loss_name!r}')
        self.loss_weight = float(loss_weight)
        self.use_mask = bool(use_mask)
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def forward(self, student: Sequence[Tensor], teacher: Tensor,
                valid: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            student (list[Tensor]): [Q] or [Q, K], each (B, D, h, w); resized bilinearly to the
                teacher grid if they differ.
            teacher (Tensor): (B, C, h, w) VFM patch features.
            valid (Tensor, optional): (B, h, w) bool, tokens inside the image (used if ``use_mask``).
        """
        hw = teacher.shape[-2:]
        student = [s if s.shape[-2:] == hw else
                   F.interpolate(s, size=hw, mode='bilinear', align_corners=False) for s in student]
        s_s = token_correlation(student)
        s_t = token_correlation([teacher.to(s_s.dtype)])
        diff = s_t - s_s
        if self.use_mask and valid is not None:
            m = valid.flatten(1).to(diff.dtype)  # (B, N)
            row_norm = ((diff * m[:, None, :]) ** 2).sum(-1).clamp_min(0).sqrt()  # drop columns
            per_image = (row_norm * m).sum(-1) / m.sum(-1).clamp_min(1)           # drop rows
            loss = per_image.mean()
        else:
            loss = diff.norm(dim=-1).mean()
        return self.loss_weight * loss
