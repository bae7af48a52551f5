"""CAT-Seg's fine-tuning rule for the two CLIP towers (``clip_finetune='attention'``, docs/catseg.md).

The public rule selects parameters by name; written out for declip_mm's towers it is:

* **image tower**: the query and value projection *weights* of every attention block -- no biases
  (EVA-CLIP's ``q_bias`` / ``v_bias``, OpenAI's ``in_proj_bias``), no position embedding, nothing
  else. DeCLIP's CAT-Seg branch (``cat_seg/cat_seg_model.py``, ``frozen_backbone``: ``visual.blocks``
  parameters with ``attn`` in the name train iff the name holds ``q_proj`` or ``v_proj``) and
  KU-CVLAB/CAT-Seg (``cat_seg_model.py``: ``attn`` parameters train iff ``q_proj``/``v_proj``; its
  towers split ``in_proj_weight`` into ``q_proj_weight`` / ``k_proj_weight`` / ``v_proj_weight``).
* **text tower**: the fused ``in_proj_weight`` of every block -- *all* of its Q, K and V rows for the
  EVA02 towers (DeCLIP's branch: ``text.transformer.resblocks`` parameters train iff the name holds
  ``in_proj_weight``), only its Q and V rows for the OpenAI towers (KU-CVLAB's rule on its split
  projections). No biases, no ``positional_embedding`` (the public rules only look at names with
  ``transformer`` in them, which the position embeddings do not have).

Where a trained tensor holds frozen rows (the K rows of a fused q/k/v weight under the Q/V rule), a
gradient hook zeroes their gradient and the rows are listed as ``frozen_slices`` so that the optimizer
constructor puts them back after each step (AdamW's decoupled weight decay would shrink them
otherwise).
"""
from __future__ import annotations

import re
from typing import List, Tuple

import torch.nn as nn
from torch import Tensor

__all__ = ['FINETUNE_MODES', 'TEXT_QKV_RULES', 'catseg_trainable', 'apply_catseg_finetune']

FINETUNE_MODES = ('attention', 'none', 'full')
#: rows of the text tower's fused ``in_proj_weight`` that train: 'qkv' (DeCLIP's EVA branch) or 'qv'
TEXT_QKV_RULES = ('qkv', 'qv')

_SPLIT_QV = re.compile(r'(^|\.)attn\.(q_proj|v_proj)\.weight$')       # timm Eva, separate q/k/v
_FUSED_QKV = re.compile(r'(^|\.)attn\.(qkv\.weight|in_proj_weight)$')  # timm fused / nn.MHA


def _zero_rows_hook(rows: slice):
    def hook(grad: Tensor) -> Tensor:
        grad = grad.clone()
        grad[rows] = 0
        return grad
    return hook


def catseg_trainable(tower: nn.Module, kind: str) -> Tuple[List[str], List[Tuple[str, slice]]]:
    """Names of the parameters of ``tower`` that the public rule trains, and the frozen K-row slices
    among them.

    Args:
        tower (nn.Module): an image tower (open_clip ``VisionTransformer`` or the timm Eva wrapper)
            or an open_clip text tower.
        kind (str): ``'image'``, ``'text_qkv'`` (every row of ``in_proj_weight``) or ``'text_qv'``.

    Returns:
        tuple: (parameter names, [(name, K-row slice of dim 0)]).
    """
    if kind not in ('image', 'text_qkv', 'text_qv'):
        raise ValueError(f"kind must be 'image', 'text_qkv' or 'text_qv', got {kind!r}")
    names, k_rows = [], []
    for name, p in tower.named_parameters():
        if kind == 'image' and _SPLIT_QV.search(name):
            names.append(name)
        elif _FUSED_QKV.search(name):
            names.append(name)
            if kind != 'text_qkv':
                d = p.shape[0] // 3
                k_rows.append((name, slice(d, 2 * d)))
    return names, k_rows


def apply_catseg_finetune(towers: List[Tuple[str, nn.Module, str]], mode: str = 'attention'
                          ) -> List[Tuple[str, slice]]:
    """Set ``requires_grad`` of the towers' parameters by the CAT-Seg rule.

    Args:
        towers: (prefix, module, kind) triples, e.g. ``[('backbone.visual', visual, 'image'),
            ('text_encoder.text', text, 'text_qkv')]`` (``kind`` as in :func:`catseg_trainable`).
        mode: ``'attention'`` (the public rule above), ``'none'`` (frozen) or ``'full'``.

    Returns:
        list[(str, slice)]: prefixed parameter names and the rows of dim 0 that must stay fixed.
    """
    if mode not in FINETUNE_MODES:
        raise ValueError(f'clip_finetune must be one of {FINETUNE_MODES}, got {mode!r}')
    frozen_slices: List[Tuple[str, slice]] = []
    for prefix, tower, kind in towers:
        tower.requires_grad_(mode == 'full')
        if mode != 'attention':
            continue
        names, k_rows = catseg_trainable(tower, kind)
        if not names:
            raise ValueError(f'{prefix}: found no query/value projections to fine-tune')
        params = dict(tower.named_parameters())
        for name in names:
            params[name].requires_grad_(True)
        for name, rows in k_rows:
            params[name].register_hook(_zero_rows_hook(rows))
            frozen_slices.append((f'{prefix}.{name}', rows))
    return frozen_slices
