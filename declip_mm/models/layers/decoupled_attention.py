"""Attention of DeCLIP's decoupled last block (docs/method.md §1), computed without N x N matrices.

Modes (τ = ``scale``; heads of width d; softmax over keys):

* ``qq``:  A = softmax(τ Q Qᵀ)
* ``kk``:  A = softmax(τ K Kᵀ)
* ``csa``: A = softmax(τ Q Qᵀ) + softmax(τ K Kᵀ)  (rows sum to 2; SCLIP / DeCLIP)
* ``vanilla``: A = softmax(τ Q Kᵀ)  (plain CLIP)
* ``maskclip``: A = I  (the value path only)

Each product A·V is one ``scaled_dot_product_attention`` call (``qq`` is SDPA(q, q, v)), so the fused
kernels never build the (N x N) weights. :func:`decoupled_attention_weights` builds them explicitly
for inspection only.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['ATTN_MODES', 'DECOUPLED_MODES', 'decoupled_attention', 'decoupled_attention_weights',
           'check_attn_mode']

ATTN_MODES = ('vanilla', 'maskclip', 'qq', 'kk', 'csa')
#: modes whose block drops the residual and the FFN
DECOUPLED_MODES = ('qq', 'kk', 'csa')


def check_attn_mode(mode: str) -> str:
    if mode not in ATTN_MODES:
        raise ValueError(f'unknown attn_mode {mode!r}; expected one of {ATTN_MODES}')
    return mode


def decoupled_attention(q: Tensor, k: Tensor, v: Tensor, mode: str, scale: float,
                        dropout_p: float = 0.0) -> Tensor:
    """A·V for the given mode.

    Args:
        q, k, v (Tensor): (B, H, N, d).
        mode (str): one of :data:`ATTN_MODES`.
        scale (float): τ, multiplies the dot products before the softmax.
        dropout_p (float): attention dropout (training only). Defaults to 0.

    Returns:
        Tensor: (B, H, N, d).
    """
    check_attn_mode(mode)
    sdpa = F.scaled_dot_product_attention
    if mode == 'maskclip':
        return v
    if mode == 'vanilla':
        return sdpa(q, k, v, dropout_p=dropout_p, scale=scale)
    if mode == 'qq':
        return sdpa(q, q, v, dropout_p=dropout_p, scale=scale)
    if mode == 'kk':
        return sdpa(k, k, v, dropout_p=dropout_p, scale=scale)
    return sdpa(q, q, v, dropout_p=dropout_p, scale=scale) + sdpa(k, k, v, dropout_p=dropout_p,
                                                                     scale=scale)


def decoupled_attention_weights(q: Tensor, k: Tensor, mode: str, scale: float) -> Optional[Tensor]:
    """The explicit (B, H, N, N) weights A of a mode (``None`` for ``maskclip``, i.e. identity)."""
    check_attn_mode(mode)
    if mode == 'maskclip':
        return None

    def sm(a: Tensor, b: Tensor) -> Tensor:
        return torch.softmax(scale * a @ b.transpose(-2, -1), dim=-1)

    return {'vanilla': lambda: sm(q, k), 'qq': lambda: sm(q, q), 'kk': lambda: sm(k, k),
            'csa': lambda: sm(q, q) + sm(k, k)}[mode]()
