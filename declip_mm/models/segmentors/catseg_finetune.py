"""CAT-Seg's fine-tuning rule for the two CLIP towers (public ``cat_seg/cat_seg_model.py``,
``CLIP_FINETUNE: attention``; docs/catseg.md): only the query and value projections of every attention
block, and the position embeddings, of the image and text towers are trained.

Where a tower fuses q/k/v in one tensor (OpenAI image tower, the text towers: ``in_proj_weight`` /
``in_proj_bias``), the tensor is trainable but its K rows are not: a gradient hook zeroes their
gradient, and the rows are listed as ``frozen_slices`` so that the optimizer constructor puts them
back after each step (AdamW's decoupled weight decay would shrink them otherwise).
"""
from __future__ import annotations

from typing import List, Tuple

import torch.nn as nn
from torch import Tensor

__all__ = ['FINETUNE_MODES', 'apply_catseg_finetune']

FINETUNE_MODES = ('attention', 'none', 'full')


def _zero_rows_hook(rows: slice):
    def hook(grad: Tensor) -> Tensor:
        grad = grad.clone()
        grad[rows] = 0
        return grad
    return hook


def _qv_params(tower: nn.Module) -> Tuple[List[str], List[Tuple[str, slice]]]:
    """Names of the Q/V (and position-embedding) parameters of ``tower``, and the K-row slices of
    fused tensors among them."""
    names, k_rows = [], []
    params = dict(tower.named_parameters())
    for name, p in params.items():
        leaf = name.rsplit('.', 1)[-1]
        if leaf in ('positional_embedding', 'pos_embed'):
            names.append(name)
        elif leaf in ('in_proj_weight', 'in_proj_bias'):
            d = p.shape[0] // 3
            names.append(name)
            k_rows.append((name, slice(d, 2 * d)))
        elif '.attn.q_proj.' in name or '.attn.v_proj.' in name or leaf in ('q_bias', 'v_bias'):
            names.append(name)
        elif name.endswith('.attn.qkv.weight'):  # a fused timm Eva trunk
            d = p.shape[0] // 3
            names.append(name)
            k_rows.append((name, slice(d, 2 * d)))
    return names, k_rows


def apply_catseg_finetune(towers: List[Tuple[str, nn.Module]], mode: str = 'attention'
                          ) -> List[Tuple[str, slice]]:
    """Set ``requires_grad`` of the towers' parameters by the CAT-Seg rule.

    Args:
        towers: (prefix, module) pairs, e.g. ``[('backbone.visual', ...), ('text_encoder.text', ...)]``.
        mode: ``'attention'`` (Q, V, position embeddings), ``'none'`` (frozen) or ``'full'``.

    Returns:
        list[(str, slice)]: prefixed parameter names and the rows of dim 0 that must stay fixed.
    """
    if mode not in FINETUNE_MODES:
        raise ValueError(f'clip_finetune must be one of {FINETUNE_MODES}, got {mode!r}')
    frozen_slices: List[Tuple[str, slice]] = []
    for prefix, tower in towers:
        tower.requires_grad_(mode == 'full')
        if mode != 'attention':
            continue
        names, k_rows = _qv_params(tower)
        if not names:
            raise ValueError(f'{prefix}: found no query/value projections to fine-tune')
        params = dict(tower.named_parameters())
        for name in names:
            params[name].requires_grad_(True)
        for name, rows in k_rows:
            params[name].register_hook(_zero_rows_hook(rows))
            frozen_slices.append((f'{prefix}.{name}', rows))
    return frozen_slices
