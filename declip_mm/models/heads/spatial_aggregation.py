"""Spatial step of CAT-Seg's cost aggregation: two Swin blocks per class map, with appearance guidance.

Public file ``cat_seg/modeling/transformer/model.py`` (``WindowAttention``, ``SwinTransformerBlock``,
``SwinTransformerBlockWrapper``), itself a modified Swin Transformer (Liu et al., ICCV 2021); docs/catseg.md.

Each class map (C channels on the h×w grid) is processed independently, so the step does not depend
on the class order. In each block::

    y = LN1(x)                                   (B·T, h·w, C)
    q, k = Wq [y, g], Wk [y, g]                   g: layer-normed appearance guidance (G channels)
    v = Wv y
    x = x + proj(window attention(q, k, v))      windows of size s; the second block is shifted by s/2
    x = x + MLP(LN2(x))                          GELU, ratio 4

Shifted windows follow Swin: the grid is rolled by −shift, partitioned, attention is restricted to
tokens that came from the same region of the unrolled grid, and the result is rolled back.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .guided_linear import GuidedLinear

__all__ = ['GuidedSwinBlock', 'SpatialAggregation', 'shifted_window_mask', 'effective_window']


def effective_window(hw: Tuple[int, int], window: int, shift: int) -> Tuple[int, int]:
    """CAT-Seg / Swin rule: a grid no larger than the window is one window, without a shift."""
    if min(hw) <= window:
        return min(hw), 0
    return window, shift


def shifted_window_mask(hw: Tuple[int, int], window: int, shift: int,
                        device: Optional[torch.device] = None) -> Tensor:
    """Boolean (n_windows, s², s²) mask, True where two tokens of a rolled window may attend.

    Tokens are labelled by the region (3 × 3 slices of Swin's ``img_mask``) they occupy on the rolled
    grid; only tokens with the same label attend to each other.
    """
    h, w = hw
    label = torch.zeros(h, w, dtype=torch.long, device=device)
    cnt = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            label[hs, ws] = cnt
            cnt += 1
    win = label.view(h // window, window, w // window, window).permute(0, 2, 1, 3)
    win = win.reshape(-1, window * window)
    return win[:, :, None] == win[:, None, :]


class GuidedSwinBlock(nn.Module):
    """One (shifted-)window attention block whose queries and keys see the guidance.

    Args:
        embed_dims (int): C, channels of the cost embedding. Defaults to 128.
        guidance_dims (int): G, channels of the appearance guidance (0: none). Defaults to 128.
        num_heads (int): Defaults to 4.
        window_size (int): s. Defaults to 12.
        shift_size (int): 0 or s/2 (a shifted block). Defaults to 0.
        mlp_ratio (float): Defaults to 4.

    Shapes:
        x (B T, h, w, C), guidance (B, h, w, G) or None -> (B T, h, w, C): the guidance of an image
        is shared by its T class maps (T = 1: one guidance per map)
    """

    def __init__(self, embed_dims: int = 128, guidance_dims: int = 128, num_heads: int = 4,
                 window_size: int = 12, shift_size: int = 0, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        if not 0 <= shift_size < window_size:
            raise ValueError(f'shift_size must be in [0, window_size), got {shift_size}')
        self.embed_dims, self.guidance_dims = embed_dims, guidance_dims
        self.num_heads = num_heads
        self.window_size, self.shift_size = int(window_size), int(shift_size)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.q = GuidedLinear(embed_dims + guidance_dims, embed_dims)
        self.k = GuidedLinear(embed_dims + guidance_dims, embed_dims)
        self.v = nn.Linear(embed_dims, embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.norm2 = nn.LayerNorm(embed_dims)
        hidden = int(embed_dims * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(embed_dims, hidden), nn.GELU(), nn.Linear(hidden, embed_dims))
        self._masks: Dict[Tuple, Tensor] = {}

    def _mask(self, hw: Tuple[int, int], window: int, shift: int, device) -> Tensor:
        key = (hw, window, shift, str(device))
        if key not in self._masks:
            self._masks[key] = shifted_window_mask(hw, window, shift, device)
        return self._masks[key]

    def _partition(self, x: Tensor, window: int) -> Tensor:
        b, h, w, c = x.shape
        x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(b, (h // window) * (w // window), window * window, c)

    def _heads(self, t: Tensor) -> Tensor:  # (B', nW, N, C) -> (B', nW, heads, N, C/heads)
        b, nw, n, c = t.shape
        return t.view(b, nw, n, self.num_heads, c // self.num_heads).transpose(2, 3)

    def forward(self, x: Tensor, guidance: Optional[Tensor] = None) -> Tensor:
        b, h, w, c = x.shape
        window, shift = effective_window((h, w), self.window_size, self.shift_size)
        if h % window or w % window:
            raise ValueError(f'the {h}x{w} cost grid is not a multiple of the window size {window}; '
                             'use input sizes whose token grid the window divides (e.g. 384 -> 24)')
        y = self.norm1(x)
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
            if guidance is not None:
                guidance = torch.roll(guidance, shifts=(-shift, -shift), dims=(1, 2))
        q = self._heads(self._partition(self.q(y, guidance), window))
        k = self._heads(self._partition(self.k(y, guidance), window))
        v = self._heads(self._partition(self.v(y), window))
        nw, n = q.shape[1], q.shape[3]
        # 4-D (B' nW, heads, N, d) views: PyTorch's fused CPU kernel takes only 4-D inputs (5-D ones
        # fall back to the explicit math path, 4-5x slower here); the (nW, N, N) shift mask is
        # repeated over B' to match (a bool copy, B' nW N² bytes)
        mask = None
        if shift:
            mask = self._mask((h, w), window, shift, x.device)[None, :, None]
            mask = mask.expand(b, -1, -1, -1, -1).reshape(b * nw, 1, n, n)
        q, k, v = (t.reshape(b * nw, self.num_heads, n, -1) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B' nW, heads, N, d)
        o = o.view(b, nw, self.num_heads, n, -1)
        o = o.transpose(2, 3).reshape(b, h // window, w // window, window, window, c)
        o = self.proj(o.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c))
        if shift:
            o = torch.roll(o, shifts=(shift, shift), dims=(1, 2))
        x = x + o
        return x + self.mlp(self.norm2(x))


class SpatialAggregation(nn.Module):
    """Two Swin blocks (the second shifted by half a window) run on every class map.

    Args:
        embed_dims (int): C. Defaults to 128.
        guidance_dims (int): G (0: no appearance guidance). Defaults to 128.
        num_heads (int): Defaults to 4.
        window_size (int): Defaults to 12 (shift 6 in the second block).

    Shapes:
        x (B, C, T, h, w), guidance (B, G, h, w) or None -> (B, C, T, h, w)
    """

    def __init__(self, embed_dims: int = 128, guidance_dims: int = 128, num_heads: int = 4,
                 window_size: int = 12) -> None:
        super().__init__()
        self.block1 = GuidedSwinBlock(embed_dims, guidance_dims, num_heads, window_size, 0)
        self.block2 = GuidedSwinBlock(embed_dims, guidance_dims, num_heads, window_size,
                                      window_size // 2)
        self.guidance_norm = nn.LayerNorm(guidance_dims) if guidance_dims > 0 else None

    def forward(self, x: Tensor, guidance: Optional[Tensor] = None) -> Tensor:
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(b * t, h, w, c)
        g = None
        if guidance is not None and self.guidance_norm is not None:
            g = self.guidance_norm(guidance.permute(0, 2, 3, 1))  # (B, h, w, G), shared by T maps
        x = self.block2(self.block1(x, g), g)
        return x.view(b, t, h, w, c).permute(0, 4, 1, 2, 3)
