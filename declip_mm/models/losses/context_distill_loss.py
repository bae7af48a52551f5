"""Context distillation loss of DeCLIP (docs/method.md §2, paper §3.3 "context distillation").

Token correlations: L2-normalise every token; ``S_t = F^ F^T`` of the VFM teacher's patch tokens and
``S_s = Q^ Q^T`` (``qq``), ``K^ K^T`` (``kk``) or ``(Q^ Q^T + K^ K^T) / 2`` (``csa``) of the student's
last-block projections. ``L_context = mean over images and rows i of || S_t[i, :] - S_s[i, :] ||_2``
(row-wise L2 norm, not squared). Padded tokens take part unless a validity mask is given
(``use_mask``).

How the attention heads enter ``S_s`` (``head_mode``) differs between the public sources:

* ``'merged'`` (default): each token's projection is normalised over the full width (heads
  concatenated), one correlation per image. This is the ``qq``/``kk`` branch of
  ``get_student_context_similarity`` in the official ``src/training/declip.py`` and the ``csa``
  branch of ``compute_student_intra_image_similarity`` in the later ``declip_plus.py``.
* ``'per_head'``: each head's slice (width d = D / H) is normalised on its own, giving one correlation
  per (image, head); the loss is the mean over images, heads and rows of
  ``|| S_t[b, i, :] - S_s[b, h, i, :] ||_2`` (the teacher correlation is compared with every head's).
  This is the ``csa_vfm_distill`` branch of the official ``declip.py`` on the main branch, which
  broadcasts a (1, N, N) teacher against (H, N, N) student correlations and therefore only runs at one
  image per GPU; here it runs at any batch size and equals the public value at batch 1.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ...registry import MODELS

__all__ = ['ContextDistillLoss', 'token_correlation', 'per_head_token_correlation',
           'HEAD_MODES']

HEAD_MODES = ('merged', 'per_head')


def token_correlation(feats: Sequence[Tensor]) -> Tensor:
    """Mean over the given maps of ``X^ X^T``: each (B, C, h, w) -> (B, hw, hw)."""
    out = None
    for f in feats:
        t = F.normalize(f.flatten(2).transpose(1, 2), dim=-1)
        s = t @ t.transpose(1, 2)
        out = s if out is None else out + s
    return out / len(feats)


def per_head_token_correlation(feats: Sequence[Tensor], num_heads: int) -> Tensor:
    """Mean over the given maps of the per-head ``X^_h X^_h^T``: each (B, H*d, h, w) -> (B, H, hw, hw).

    Channels are the heads concatenated (head ``j`` holds channels ``j*d .. (j+1)*d - 1``), the layout
    of the backbone's ``context_q`` / ``context_k``.
    """
    out = None
    for f in feats:
        b, c = f.shape[:2]
        if c % num_heads:
            raise ValueError(f'context width {c} is not divisible by num_heads={num_heads}')
        t = f.flatten(2).transpose(1, 2).reshape(b, -1, num_heads, c // num_heads)
        t = F.normalize(t, dim=-1).transpose(1, 2)  # (B, H, N, d)
        s = t @ t.transpose(-1, -2)
        out = s if out is None else out + s
    return out / len(feats)


@MODELS.register_module()
class ContextDistillLoss(nn.Module):
    """Row-wise L2 distance between student and VFM token-correlation matrices.

    Args:
        loss_weight (float): λ. Defaults to 0.1 (the public training scripts).
        use_mask (bool): drop padded tokens (rows and columns) when a mask is given. Default False.
        head_mode (str): ``'merged'`` (heads concatenated before normalising; default) or
            ``'per_head'`` (one correlation per head, the main branch's ``csa_vfm_distill``); see
            the module docstring. ``'per_head'`` needs ``num_heads`` at call time (the distiller
            passes the student's).
        loss_name (str): defaults to ``'loss_context'``.
    """

    def __init__(self, loss_weight: float = 0.1, use_mask: bool = False,
                 head_mode: str = 'merged', loss_name: str = 'loss_context') -> None:
        super().__init__()
        if not loss_name.startswith('loss_'):
            raise ValueError(f'loss_name must start with "loss_", got {loss_name!r}')
        if head_mode not in HEAD_MODES:
            raise ValueError(f'head_mode must be one of {HEAD_MODES}, got {head_mode!r}')
        self.loss_weight = float(loss_weight)
        self.use_mask = bool(use_mask)
        self.head_mode = head_mode
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def forward(self, student: Sequence[Tensor], teacher: Union[Tensor, Sequence[Tensor]],
                valid: Optional[Tensor] = None, num_heads: Optional[int] = None,
                teacher_weights: Optional[Sequence[float]] = None) -> Tensor:
        """
        Args:
            student (list[Tensor]): [Q], [K] or [Q, K], each (B, D, h, w); resized bilinearly to
                the teacher grid if they differ.
            teacher (Tensor | list[Tensor]): (B, C, h, w) VFM patch features; a list of several
                teachers' features (same h, w; C may differ) is a weighted average of their
                correlation targets, ``S_t = sum_j teacher_weights[j] * S_t,j`` (an option beyond
                the paper, docs/method.md §6).
            valid (Tensor, optional): (B, h, w) bool, tokens inside the image (used if ``use_mask``).
            num_heads (int, optional): H, needed by ``head_mode='per_head'``.
            teacher_weights (list[float], optional): weights of a list ``teacher`` (used as given;
                the distiller normalises them to sum 1).

        Returns:
            Tensor: scalar, ``loss_weight * L_context``.
        """
        if not isinstance(teacher, Tensor):
            return self._forward_target_mix(student, list(teacher), valid, num_heads,
                                             teacher_weights)
        hw = teacher.shape[-2:]
        student = [s if s.shape[-2:] == hw else
                   F.interpolate(s, size=hw, mode='bilinear', align_corners=False) for s in student]
        if self.head_mode == 'per_head':
            if not num_heads or num_heads < 1:
                raise ValueError("head_mode='per_head' needs num_heads (the student's head count)")
            s_s = per_head_token_correlation(student, int(num_heads))       # (B, H, N, N)
            s_t = token_correlation([teacher.to(s_s.dtype)])[:, None]        # (B, 1, N, N)
        else:
            s_s = token_correlation(student)[:, None]                        # (B, 1, N, N)
            s_t = token_correlation([teacher.to(s_s.dtype)])[:, None]
        return self._distance(s_t, s_s, valid)

    def _forward_target_mix(self, student, teachers, valid, num_heads, weights) -> Tensor:
        if not teachers or weights is None or len(weights) != len(teachers):
            raise ValueError('a list of teachers needs teacher_weights of the same length')
        hw = teachers[0].shape[-2:]
        if any(t.shape[-2:] != hw for t in teachers):
            raise ValueError('averaging correlation targets needs the same token grid for every '
                             f'teacher, got {[tuple(t.shape[-2:]) for t in teachers]}')
        student = [s if s.shape[-2:] == hw else
                   F.interpolate(s, size=hw, mode='bilinear', align_corners=False) for s in student]
        if self.head_mode == 'per_head':
            if not num_heads or num_heads < 1:
                raise ValueError("head_mode='per_head' needs num_heads (the student's head count)")
            s_s = per_head_token_correlation(student, int(num_heads))
        else:
            s_s = token_correlation(student)[:, None]
        s_t = sum(float(w) * token_correlation([t.to(s_s.dtype)])[:, None]
                  for w, t in zip(weights, teachers))
        return self._distance(s_t, s_s, valid)

    def _distance(self, s_t: Tensor, s_s: Tensor, valid: Optional[Tensor]) -> Tensor:
        diff = s_t - s_s                                                     # (B, H or 1, N, N)
        if self.use_mask and valid is not None:
            m = valid.flatten(1).to(diff.dtype)[:, None]                     # (B, 1, N)
            row_norm = ((diff * m[..., None, :]) ** 2).sum(-1).clamp_min(0).sqrt()  # drop columns
            per_map = (row_norm * m).sum(-1) / m.sum(-1).clamp_min(1)               # drop rows
            loss = per_map.mean()
        else:
            loss = diff.norm(dim=-1).mean()
        return self.loss_weight * loss
