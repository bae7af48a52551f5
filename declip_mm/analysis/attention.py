"""Explicit per-block attention weights of a DeCLIP / CLIP image tower, for analysis and pictures.

The backbone's forward never builds the N x N attention matrices (it calls
``scaled_dot_product_attention``). This module recomputes them block by block from the same
family-specific pieces the backbone uses (``backbone.ops``: LN1, q/k/v projections, EVA02 RoPE), and
advances the tokens with the real block (``ops.run_block``), so the backbone is not modified and the
weights are exactly those the block applies (the tests rebuild each block's output from them).

Call graph::

    attention_trace(backbone, images)
      └─ ops.embed / ops.rope            tokens (B, N, D) and the RoPE table of the (h, w) grid
      └─ for every block:
           block_attention               softmax(q kᵀ / sqrt(d)) per head, (B, H, N, N)
           ops.run_block                 the block itself (the last one undecoupled, as plain CLIP)
      └─ decoupled_attention_weights     the last block's decoupled weights (qq / kk / csa), rows
                                         renormalised to 1 (csa's two softmaxes are averaged)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ..models.layers import DECOUPLED_MODES, decoupled_attention_weights

__all__ = ['AttentionTrace', 'block_qkv', 'block_attention', 'attention_trace']


@dataclass
class AttentionTrace:
    """Attention of every block of one forward.

    Attributes:
        attn: per block, (B, H, N, N) softmax weights; rows are queries, N = prefix + h * w tokens.
        grid: (h, w) patch grid.
        num_prefix: CLS (and register) tokens in front of the patch tokens.
        decoupled: the last block's weights in the backbone's decoupled mode, rows summing to 1
            ((B, H, N, N)), or None for 'vanilla' / 'maskclip'.
        mode: the backbone's ``attn_mode``.
    """
    attn: List[Tensor]
    grid: Tuple[int, int]
    num_prefix: int
    decoupled: Optional[Tensor]
    mode: str

    def head_mean(self, layer: int) -> Tensor:
        """(B, N, N) head-averaged weights of a block (``layer=-1`` with a decoupled mode: use
        :attr:`decoupled` yourself)."""
        return self.attn[layer].mean(dim=1)


def _split(t: Tensor, heads: int) -> Tensor:
    b, n, _ = t.shape
    return t.view(b, n, heads, -1).transpose(1, 2)


def block_qkv(ops, blk, x: Tensor, rope: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    """q, k, v (B, H, N, d) of a block as its attention uses them (``ops.attention_qkv``)."""
    return ops.attention_qkv(blk, x, rope)


def block_attention(ops, blk, x: Tensor, rope: Optional[Tensor]) -> Tensor:
    """(B, H, N, N) = softmax(q kᵀ / sqrt(d)) of one block applied to tokens ``x`` (B, N, D)."""
    q, k, _ = block_qkv(ops, blk, x, rope)
    return torch.softmax((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5, dim=-1)


@torch.no_grad()
def attention_trace(backbone, images: Tensor, layers: Optional[List[int]] = None) -> AttentionTrace:
    """Attention weights of every block (or of ``layers``) of a ``DeCLIPVisionTransformer``.

    Args:
        backbone: a ``DeCLIPVisionTransformer`` (any family, any ``attn_mode``).
        images (Tensor): (B, 3, H, W) normalised images, H and W multiples of the patch size.
        layers (list[int], optional): blocks to keep (0-based); the others are run but not stored.

    Returns:
        AttentionTrace: ``attn[i]`` is block i's (B, H, N, N) weights (None where not kept).
    """
    ops = backbone.ops
    ph, pw = ops.patch_size
    if images.dim() != 4 or images.shape[-2] % ph or images.shape[-1] % pw:
        raise ValueError(f'images must be (B, 3, H, W) with H, W multiples of {ops.patch_size}, '
                         f'got {tuple(images.shape)}')
    x, hw = ops.embed(images)
    rope = ops.rope(hw, x)
    blocks = ops.blocks()
    keep = set(range(len(blocks)) if layers is None else [i % len(blocks) for i in layers])
    attn: List[Optional[Tensor]] = []
    decoupled = None
    for i, blk in enumerate(blocks):
        if i == len(blocks) - 1 and backbone.attn_mode in DECOUPLED_MODES:
            q, k, _ = (_split(t, ops.num_heads) for t in ops.qkv(blk, ops.ln1(blk, x)))
            w = decoupled_attention_weights(q, k, backbone.attn_mode, backbone.attn_scale)
            decoupled = w / w.sum(dim=-1, keepdim=True)  # csa: mean of its two softmaxes
        attn.append(block_attention(ops, blk, x, rope) if i in keep else None)
        x = ops.run_block(blk, x, rope)
    return AttentionTrace(attn=attn, grid=tuple(hw), num_prefix=ops.num_prefix_tokens,
                          decoupled=decoupled, mode=backbone.attn_mode)
