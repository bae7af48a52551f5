"""Options beyond the paper for the context loss (docs/method.md §6): several decoupled blocks and
several VFM teachers. Kept apart from ``declip_distiller.py`` so the published single-block,
single-teacher path stays exactly as it is (the distiller only calls in here when an option is on).

Several decoupled blocks (``student.decouple_last`` = k, ``context_block_weights`` = (w_1 .. w_k),
blocks L-k+1 .. L in order, 1-based)::

    L_context = sum_b w_b * L(context of block b, teachers)

Several teachers (``vfm_teacher`` a list, ``vfm_weights`` = (v_1 .. v_T), normalised to
v^_t = v_t / sum v)::

    vfm_combine='loss':    L(context, teachers) = sum_t v^_t * L(context, S_t of teacher t)
    vfm_combine='target':  L(context, teachers) = L(context, sum_t v^_t * S_t)   (same token grid)

where ``L`` is ``ContextDistillLoss`` (row-wise L2 distance of token correlations; λ included).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

__all__ = ['MultiContextMixin', 'VFM_COMBINES', 'normalise_weights', 'vfm_input_key']

VFM_COMBINES = ('loss', 'target')


def vfm_input_key(t: int) -> str:
    """Batch key of teacher ``t``'s images: ``'vfm'`` for the first (pipeline key ``vfm_img``),
    ``'vfm_<t>'`` for the others (pipeline key ``vfm_img_<t>``)."""
    return 'vfm' if t == 0 else f'vfm_{t}'


def normalise_weights(weights: Optional[Sequence[float]], n: int, what: str) -> List[float]:
    """``None`` -> n equal weights; else check length and positivity and divide by the sum."""
    if weights is None:
        return [1.0 / n] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise ValueError(f'{what} needs {n} weight(s), got {len(w)}: {tuple(weights)}')
    if any(x < 0 for x in w) or sum(w) <= 0:
        raise ValueError(f'{what} must be non-negative with a positive sum, got {tuple(weights)}')
    s = sum(w)
    return [x / s for x in w]


class MultiContextMixin:
    """Context loss over several decoupled blocks and / or several VFM teachers (DeCLIPDistiller)."""

    def _setup_multi_context(self, extra_vfm: Sequence[dict], vfm_weights, vfm_combine: str,
                             context_block_weights) -> None:
        from ...registry import MODELS
        self.vfm_extra = torch.nn.ModuleList([MODELS.build(c) for c in extra_vfm])
        n_vfm = 1 + len(self.vfm_extra)
        if vfm_combine not in VFM_COMBINES:
            raise ValueError(f'vfm_combine must be one of {VFM_COMBINES}, got {vfm_combine!r}')
        self.vfm_combine = vfm_combine
        self.vfm_weights = normalise_weights(vfm_weights, n_vfm, 'vfm_weights')
        k = int(getattr(self.student, 'decouple_last', 1))
        # blocks weighted as given (not normalised): w_L = 1, the rest 0 is the paper's loss
        if context_block_weights is None:
            self.context_block_weights = [1.0 / k] * k
        else:
            w = [float(x) for x in context_block_weights]
            if len(w) != k:
                raise ValueError(f'context_block_weights needs decouple_last={k} weight(s) '
                                 f'(blocks L-{k - 1} .. L), got {len(w)}')
            self.context_block_weights = w
        if k > 1 and self.context_source != 'qk':
            raise ValueError("decouple_last > 1 distils the Q/K of several blocks; it needs "
                             "context_source='qk'")

    @property
    def multi_context(self) -> bool:
        """True when an option beyond the paper is on (else the distiller's own path runs)."""
        return len(self.vfm_extra) > 0 or len(self.context_block_weights) > 1

    @torch.no_grad()
    def extra_vfm_targets(self, inputs: Dict[str, Tensor]) -> List[Tensor]:
        """Features of teachers 2..T, one no-grad pass each in the teacher dtype: (B, C_t, h, w)."""
        out = []
        for t, teacher in enumerate(self.vfm_extra, start=1):
            key = vfm_input_key(t)
            if key not in inputs:
                raise KeyError(f'teacher {t + 1} ({teacher.arch}) reads inputs[{key!r}]: add a '
                               f"DeCLIPLetterbox with key='vfm_img_{t}' to the train pipeline")
            with self._teacher_context(inputs['student'].device):
                out.append(self._vfm_features(teacher, inputs, key))
        return out

    def _block_contexts(self, out: Dict[str, Tensor], keys: Sequence[str]) -> List[List[Tensor]]:
        """Per decoupled block (L-k+1 .. L), the list of context maps the mode distils."""
        sides = [[out[k + '_blocks'][j] for k in keys] for j in range(len(out.get(
            keys[0] + '_blocks', [])))]
        return sides + [[out[k] for k in keys]]

    def _multi_context_loss(self, out: Dict[str, Tensor], inputs: Dict[str, Tensor],
                            vfm: Tensor, keys: Sequence[str]) -> Tensor:
        teachers = [vfm] + self.extra_vfm_targets(inputs)
        use_mask = self.context_loss.use_mask
        valid = [self._vfm_valid(inputs, t.shape[-2:], vfm_input_key(i)) if use_mask else None
                 for i, t in enumerate(teachers)]
        heads = self.student.num_heads
        total = 0.0
        for w_b, feats in zip(self.context_block_weights, self._block_contexts(out, keys)):
            if self.vfm_combine == 'target':
                term = self.context_loss(feats, teachers, valid[0], num_heads=heads,
                                         teacher_weights=self.vfm_weights)
            else:
                term = sum(v * self.context_loss(feats, t, m, num_heads=heads)
                           for v, t, m in zip(self.vfm_weights, teachers, valid))
            total = total + w_b * term
        return total
