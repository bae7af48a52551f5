"""Class step of CAT-Seg's cost aggregation: linear attention across the class axis at every location.

Public file ``cat_seg/modeling/transformer/model.py`` (``LinearAttention``, ``AttentionLayer``,
``ClassTransformerLayer``); the linear attention is Katharopoulos et al. ("Transformers are RNNs",
ICML 2020) with the elu+1 feature map; docs/catseg.md.

At every location of the (optionally pooled) grid, the T class tokens attend to each other::

    φ(x) = elu(x) + 1
    out_t = Σ_s [φ(q_t)·φ(k_s)] v_s / (φ(q_t)·Σ_s φ(k_s) + ε)        per head, ε = 1e-6
    q, k = Wq [LN1(x̄), g_t], Wk [LN1(x̄), g_t]; v = Wv LN1(x̄)        g_t: text guidance of class t
    z = x̄ + attn(x̄);  z = z + MLP(LN2(z))                            x̄: the (pooled) grid; ReLU MLP
    x ← x + up(z)                                                   as the public code: x̄ is in z too

There is **no positional encoding** over classes, so the step is permutation-equivariant in the
classes. The class axis is padded with learned tokens (and learned guidance) to a fixed length, so
that the attention statistics do not depend on the vocabulary size. In training the grid is
average-pooled (2×2) for this step and the update is upsampled back (bilinear, align_corners=True)
before the residual; at test time no pooling is applied.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .guided_linear import GuidedLinear

__all__ = ['linear_attention', 'ClassAggregation']


def linear_attention(q: Tensor, k: Tensor, v: Tensor, eps: float = 1e-6) -> Tensor:
    """elu+1 linear attention.

    Args:
        q, k, v (Tensor): (N, L, heads, d) queries, keys and values over L tokens.

    Returns:
        Tensor: (N, L, heads, d).
    """
    q, k = F.elu(q) + 1, F.elu(k) + 1
    kv = torch.einsum('nshd,nshe->nhde', k, v)
    z = 1.0 / (torch.einsum('nlhd,nhd->nlh', q, k.sum(dim=1)) + eps)
    return torch.einsum('nlhd,nhde,nlh->nlhe', q, kv, z)


class ClassAggregation(nn.Module):
    """One class-attention layer over the class axis.

    Args:
        embed_dims (int): C. Defaults to 128.
        guidance_dims (int): channels of the text guidance (0: none). Defaults to 128.
        num_heads (int): Defaults to 4.
        pad_len (int): fixed class length; shorter class lists are padded with learned tokens
            (0 disables padding). Defaults to 256.
        pool_size (int): average-pooling factor of the grid in training (1: none). Defaults to 2.
        pool_at_test (bool): also pool in eval mode. Defaults to False (docs/catseg.md: none at test).

    Shapes:
        x (B, C, T, h, w), guidance (B, T, G) or None -> (B, C, T, h, w)
    """

    def __init__(self, embed_dims: int = 128, guidance_dims: int = 128, num_heads: int = 4,
                 pad_len: int = 256, pool_size: int = 2, pool_at_test: bool = False) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.pad_len = int(pad_len)
        self.pool_size = int(pool_size)
        self.pool_at_test = bool(pool_at_test)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.q = GuidedLinear(embed_dims + guidance_dims, embed_dims)
        self.k = GuidedLinear(embed_dims + guidance_dims, embed_dims)
        self.v = nn.Linear(embed_dims, embed_dims)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.mlp = nn.Sequential(nn.Linear(embed_dims, embed_dims * 4), nn.ReLU(),
                                 nn.Linear(embed_dims * 4, embed_dims))
        self.pad_token = nn.Parameter(torch.zeros(1, 1, embed_dims)) if self.pad_len > 0 else None
        self.pad_guidance = nn.Parameter(torch.zeros(1, 1, guidance_dims)) \
            if self.pad_len > 0 and guidance_dims > 0 else None

    def _pooling(self) -> int:
        return self.pool_size if (self.training or self.pool_at_test) else 1

    def forward(self, x: Tensor, guidance: Optional[Tensor] = None) -> Tensor:
        b, c, t, h, w = x.shape
        if self.pad_len > 0 and t > self.pad_len:
            raise ValueError(f'{t} classes exceed the class length {self.pad_len}; the head keeps '
                             'only the top classes (select_top_classes) before aggregation')
        p = self._pooling()
        xp = x.transpose(1, 2).reshape(b * t, c, h, w)
        if p > 1:
            xp = F.avg_pool2d(xp, p)
        hp, wp = xp.shape[-2:]
        tokens = xp.view(b, t, c, hp * wp).permute(0, 3, 1, 2).reshape(b * hp * wp, t, c)
        n_pad = self.pad_len - t if self.pad_len > 0 else 0
        if n_pad:
            tokens = torch.cat([tokens, self.pad_token.expand(tokens.shape[0], n_pad, -1)], dim=1)
        g = guidance  # (B, T, G): one text guidance per class, shared by every location
        if g is not None and n_pad and self.pad_guidance is not None:
            g = torch.cat([g, self.pad_guidance.expand(b, n_pad, -1)], dim=1)
        # every token is a key and a value; only the T real classes are queries and go through the
        # MLP (per-token steps: the padding rows' outputs are dropped, as in the public code)
        tokens = self.attend(tokens, g, t)
        upd = tokens.view(b, hp, wp, t, c).permute(0, 3, 4, 1, 2).reshape(b * t, c, hp, wp)
        if p > 1:
            upd = F.interpolate(upd, size=(h, w), mode='bilinear', align_corners=True)
        return x + upd.view(b, t, c, h, w).transpose(1, 2)

    def attend(self, tokens: Tensor, guidance: Optional[Tensor], num_queries: int) -> Tensor:
        """Attention and MLP of the first ``num_queries`` tokens; every token is a key and a value.

        Args:
            tokens (Tensor): (N, L, C) class tokens at N locations, padding included.
            guidance (Tensor, optional): (B, L, G) text guidance; N = B * (locations per image).
            num_queries (int): Q <= L.

        Returns:
            Tensor: (N, Q, C).
        """
        n, length, c = tokens.shape
        y = self.norm1(tokens)
        q = self.q(y[:, :num_queries], None if guidance is None else guidance[:, :num_queries])
        k = self.k(y, guidance)
        v = self.v(y).view(n, length, self.num_heads, -1)
        attn = linear_attention(q.view(n, num_queries, self.num_heads, -1),
                                k.view(n, length, self.num_heads, -1), v)
        tokens = tokens[:, :num_queries] + attn.reshape(n, num_queries, c)
        return tokens + self.mlp(self.norm2(tokens))
