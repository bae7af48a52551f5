"""ProxyCLIP's proxy attention for the last CLIP block (docs/method.md §7), a test-time mode.

Provenance: Lan et al., "ProxyCLIP: Proxy Attention Improves CLIP for Open-Vocabulary Segmentation"
(ECCV 2024, arXiv 2408.04883), public code mc-lan/ProxyCLIP, ``open_clip/transformer.py``
``VisionTransformer.custom_attn`` (facts only; written here from the formula).

With F the (C, H·W) patch features of a vision foundation model (VFM) on the same window, each token
(column) L2-normalised, F̂:

    S = F̂ᵀ F̂                                     (N x N, N = H·W, cosine of every token pair)
    S' = (S - β · mean(S)) · γ                     mean over all N² entries of the window's S
    A = softmax_row(S' with S' < 0 set to -inf)   (entries equal to 0 stay: weight e⁰)
    O = A · resize(V)                              V: the CLIP last block's values, all heads,
                                                   patch rows, bilinearly resized (h, w) -> (H, W)

β = 1.2, γ = 3.0 (the public defaults, used for every data set). ``mean(S)`` is the public
``torch.mean(similarity)``: one scalar over the whole tensor, which holds one window there (the
public evaluator runs one window per call, batch 1); here it is taken per window, so batching
windows changes nothing. Every head uses the same A, so A·V is one product over the full width.
O then goes through the block's output path (``out_proj``; EVA02: sub-LN, projection, γ1) and the
tower's final norm and projection -- no residual, no FFN -- as the content features of §1; the
content map has the VFM's grid (H, W).

A row whose every entry is masked (only when mean(S) ≥ S_ii / β = 1/β, e.g. a window of one
colour) gives NaN in the public code; here such a row keeps its own token (A_ii = 1). Rows with at
least one kept entry -- every row in practice -- are unchanged.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .decoupled_attention import ATTN_MODES

__all__ = ['PROXY_MODE', 'BACKBONE_MODES', 'check_backbone_mode', 'proxy_attention_weights',
           'proxy_attention', 'resize_values']

PROXY_MODE = 'proxy'
#: every ``attn_mode`` of the backbone: the decoupled-attention modes plus the test-time proxy mode
BACKBONE_MODES = ATTN_MODES + (PROXY_MODE, )


def check_backbone_mode(mode: str) -> str:
    if mode not in BACKBONE_MODES:
        raise ValueError(f'unknown attn_mode {mode!r}; expected one of {BACKBONE_MODES}')
    return mode


def proxy_attention_weights(feats: Tensor, beta: float = 1.2, gamma: float = 3.0) -> Tensor:
    """The (B, N, N) proxy attention of VFM features ``feats`` (B, C, H, W), N = H·W (row-major).

    Computed one window at a time (the N x N matrix of one window at most is alive), in the
    features' dtype.
    """
    if feats.dim() != 4:
        raise ValueError(f'VFM features must be (B, C, H, W), got {tuple(feats.shape)}')
    out = []
    for f in feats.flatten(2):  # (C, N)
        f = F.normalize(f, dim=0)
        s = f.t() @ f
        s = (s - s.mean() * beta) * gamma
        masked = s < 0
        s = s.masked_fill(masked, float('-inf'))
        empty = masked.all(dim=-1)
        if bool(empty.any()):  # the public code gives NaN rows here: keep the token itself
            idx = empty.nonzero()[:, 0]
            s[idx, idx] = 0.0
        out.append(torch.softmax(s, dim=-1))
    return torch.stack(out)


def resize_values(v: Tensor, clip_hw: Tuple[int, int], vfm_hw: Tuple[int, int]) -> Tensor:
    """(B, h·w, D) CLIP values of the patch rows -> (B, H·W, D), bilinear, ``align_corners=False``,
    no antialias (the public ``F.interpolate(v, size=(H, W), mode='bilinear')``)."""
    b, n, d = v.shape
    if n != clip_hw[0] * clip_hw[1]:
        raise ValueError(f'{n} value rows do not fit the CLIP grid {tuple(clip_hw)}')
    if tuple(clip_hw) == tuple(vfm_hw):
        return v
    g = v.transpose(1, 2).reshape(b, d, clip_hw[0], clip_hw[1])
    g = F.interpolate(g, size=tuple(vfm_hw), mode='bilinear', align_corners=False)
    return g.flatten(2).transpose(1, 2)


def proxy_attention(feats: Tensor, v: Tensor, clip_hw: Tuple[int, int], beta: float = 1.2,
                    gamma: float = 3.0) -> Tensor:
    """A·resize(V): (B, H·W, D) aggregated values on the VFM grid.

    Args:
        feats (Tensor): (B, C, H, W) VFM patch features of the windows.
        v (Tensor): (B, h·w, D) the CLIP last block's values of the patch rows (all heads).
        clip_hw (tuple): (h, w), the CLIP token grid.
        beta, gamma (float): shift and scale of the correlation.
    """
    if feats.shape[0] != v.shape[0]:
        raise ValueError(f'{feats.shape[0]} VFM feature maps for {v.shape[0]} CLIP windows')
    vr = resize_values(v, clip_hw, tuple(feats.shape[-2:]))
    out = []
    for i in range(feats.shape[0]):
        a = proxy_attention_weights(feats[i:i + 1], beta, gamma)[0]
        out.append(a.to(vr.dtype) @ vr[i])
    return torch.stack(out)
