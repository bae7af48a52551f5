"""2-D rotary position embeddings of EVA02 towers, rebuilt for any (h, w) token grid.

Formula (EVA02 ``VisionRotaryEmbeddingFast``, also timm's ``RotaryEmbeddingCat`` with ``in_pixels=False``):
per axis, positions ``t = arange(S) / S * ref`` (``ref`` = the pretraining grid side, 16 for EVA02-CLIP),
frequencies ``f_j = theta ** (-j / (d/4))`` for ``j < d/4`` with ``d`` the head width, angles
``t (x) f`` repeated twice (interleaved pairs); the row-axis angles come first, then the column axis.
For a square S x S grid the positions are ``arange(S) * 16 / S`` exactly as in the official code.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

__all__ = ['eva_rope_sincos', 'apply_rope_interleaved', 'rope_patch_rows']


def eva_rope_sincos(grid_hw: Tuple[int, int],
                    head_dim: int,
                    ref_hw: Sequence[float] = (16, 16),
                    theta: float = 10000.0,
                    grid_offset: float = 0.0,
                    device: Optional[torch.device] = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """Rotary table for an (h, w) grid in timm's concatenated layout ``cat([sin, cos], -1)``.

    Args:
        grid_hw (tuple[int, int]): token grid (h, w).
        head_dim (int): attention head width d (must be divisible by 4).
        ref_hw (sequence[float]): reference (pretraining) grid the positions are scaled to.
        theta (float): frequency base. Defaults to 10000.
        grid_offset (float): constant added to the integer positions. Defaults to 0.
        device, dtype: of the result.

    Returns:
        Tensor: (h*w, 2*head_dim).
    """
    if head_dim % 4:
        raise ValueError(f'RoPE needs a head width divisible by 4, got {head_dim}')
    num_bands = head_dim // 4
    bands = theta ** (-torch.arange(num_bands, device=device, dtype=torch.float64) / num_bands)
    axes = []
    for size, ref in zip(grid_hw, ref_hw):
        t = (torch.arange(size, device=device, dtype=torch.float64) + grid_offset) / size * ref
        axes.append(t[:, None] * bands[None, :])  # (size, num_bands)
    h, w = grid_hw
    ang_h = axes[0][:, None, :].expand(h, w, num_bands)
    ang_w = axes[1][None, :, :].expand(h, w, num_bands)
    ang = torch.cat([ang_h, ang_w], dim=-1).reshape(h * w, 2 * num_bands)
    ang = ang.repeat_interleave(2, dim=-1)  # interleaved pairs: (f0, f0, f1, f1, ...)
    return torch.cat([ang.sin(), ang.cos()], dim=-1).to(dtype)


def apply_rope_interleaved(x: Tensor, sincos: Tensor) -> Tensor:
    """Rotate interleaved pairs of ``x`` (..., N, d) by a ``cat([sin, cos])`` table (N, 2d)."""
    sin, cos = sincos.chunk(2, dim=-1)
    rot = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).reshape(x.shape)
    return x * cos + rot * sin


def rope_patch_rows(x: Tensor, sincos: Tensor, num_prefix: int) -> Tensor:
    """``x`` (B, H, N, d) with RoPE on its rows after the first ``num_prefix`` (timm's
    ``EvaAttention``: ``cat([x[..., :npt, :], apply_rot_embed_cat(x[..., npt:, :], table)], -2)``,
    rotated with the table's precision and rounded once to ``x``'s dtype).

    Without autograd, for float32 / float64 inputs of the table's dtype and a pair-duplicated table
    (:func:`eva_rope_sincos`' layout), each interleaved pair (x0, x1) is one complex number and the
    rotation is one complex product written into the result, ``(x0 + i x1)(cos + i sin) =
    (x0 cos - x1 sin) + i (x0 sin + x1 cos)``: the same two rounded products and one rounded sum per
    value as ``x * cos + rot(x) * sin`` (bit-identical on this build, tested against timm), in one pass
    over ``x`` instead of six (negate, stack, two products, sum, concatenate): 9x faster at EVA02-B's
    (8, 12, 442, 64). Otherwise (training, bf16 under autocast, other layouts): the literal formula
    (which the benchmark's reference mode uses throughout: ``declip_mm.benchmarking.reference_towers``).
    """
    d = x.shape[-1]
    sin, cos = sincos.chunk(2, dim=-1)
    fast = (not (torch.is_grad_enabled() and x.requires_grad)
            and sincos.dim() == 2 and sincos.shape[0] == x.shape[-2] - num_prefix
            and x.dtype == sincos.dtype and x.dtype in (torch.float32, torch.float64)
            and x.stride(-1) == 1 and d % 2 == 0 and x.storage_offset() % 2 == 0
            and all(s % 2 == 0 for s in x.stride()[:-1])
            and torch.equal(sin[:, 0::2], sin[:, 1::2]) and torch.equal(cos[:, 0::2], cos[:, 1::2]))
    if not fast:
        rotated = apply_rope_interleaved(x[..., num_prefix:, :], sincos).to(x.dtype)
        return torch.cat([x[..., :num_prefix, :], rotated], dim=-2)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    out[..., :num_prefix, :] = x[..., :num_prefix, :]
    rot = torch.complex(cos[:, 0::2], sin[:, 0::2])  # (N - npt, d / 2)
    pairs = x[..., num_prefix:, :].unflatten(-1, (d // 2, 2))
    torch.mul(torch.view_as_complex(pairs), rot,
              out=torch.view_as_complex(out[..., num_prefix:, :].unflatten(-1, (d // 2, 2))))
    return out

