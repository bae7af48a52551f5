"""How much image tokens' attention collapses onto a few shared "proxy" tokens (pure functions).

DeCLIP (CVPR 2025, arXiv 2505.04410, its analysis section) observes that in CLIP's deeper layers image
tokens attend mostly to a few shared tokens instead of their spatial or semantic neighbours, which
ruins dense features. These scores measure it on an attention matrix ``A`` (..., Nq, Nk) whose rows
(queries, e.g. the image tokens) are distributions over keys:

* received attention ``r_j = mean_i A[i, j]``: the attention the average query gives key ``j``;
* :func:`topk_shared_mass`: ``sum of the k largest r_j`` = mean over queries of the mass on the
  k keys that all queries attend to most (1 when every query looks at the same k keys, k / Nk for
  uniform attention, ~k / Nq when every query looks only at itself);
* :func:`attention_entropy`: mean over queries of ``-sum_j A[i, j] log A[i, j]`` (nats);
* :func:`keys_for_mass`: the fewest keys (by received attention) holding ``frac`` of ``sum_j r_j``.

A peaked but *local* attention has low entropy and low shared mass; proxy-token collapse has low
entropy, high shared mass and few keys for half the mass.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import Tensor

__all__ = ['received_attention', 'topk_shared_mass', 'attention_entropy', 'keys_for_mass',
           'proxy_scores', 'token_correlation']


def _check(attn: Tensor) -> None:
    if attn.dim() < 2:
        raise ValueError(f'attention must be (..., Nq, Nk), got shape {tuple(attn.shape)}')
    if (attn < 0).any():
        raise ValueError('attention weights must be non-negative')


def received_attention(attn: Tensor) -> Tensor:
    """(..., Nq, Nk) -> (..., Nk): mean over queries of the attention each key receives."""
    _check(attn)
    return attn.mean(dim=-2)


def topk_shared_mass(attn: Tensor, k: int) -> Tensor:
    """(..., Nq, Nk) -> (...): mean query mass on the k keys with the most received attention."""
    if not 1 <= k <= attn.shape[-1]:
        raise ValueError(f'k must be in [1, {attn.shape[-1]}], got {k}')
    return received_attention(attn).topk(k, dim=-1).values.sum(dim=-1)


def attention_entropy(attn: Tensor, normalized: bool = False) -> Tensor:
    """(..., Nq, Nk) -> (...): mean over queries of the row entropy in nats (0 log 0 = 0); divided
    by log(Nk) (uniform = 1) when ``normalized``."""
    _check(attn)
    ent = -torch.where(attn > 0, attn * attn.clamp_min(1e-30).log(), attn.new_zeros(())).sum(-1)
    ent = ent.mean(dim=-1)
    if normalized:
        n = attn.shape[-1]
        ent = ent / torch.log(torch.tensor(float(n), dtype=ent.dtype)) if n > 1 else ent * 0
    return ent


def keys_for_mass(attn: Tensor, frac: float = 0.5) -> Tensor:
    """(..., Nq, Nk) -> (...) long: fewest keys, taken by received attention, whose received
    attention adds up to at least ``frac`` of the total."""
    if not 0 < frac <= 1:
        raise ValueError(f'frac must be in (0, 1], got {frac}')
    r = received_attention(attn).sort(dim=-1, descending=True).values
    cum = r.cumsum(dim=-1)
    target = frac * r.sum(dim=-1, keepdim=True) * (1 - 1e-9)  # float rounding of the cumulative sum
    return (cum < target).sum(dim=-1) + 1


def proxy_scores(attn: Tensor, k: int = 5, frac: float = 0.5) -> Dict[str, float]:
    """All scores of one attention matrix (Nq, Nk) (leading dims averaged) as plain floats."""
    return dict(topk_mass=float(topk_shared_mass(attn, k).double().mean()),
                entropy=float(attention_entropy(attn).double().mean()),
                entropy_norm=float(attention_entropy(attn, normalized=True).double().mean()),
                keys_for_mass=float(keys_for_mass(attn, frac).double().mean()))


def token_correlation(feats: Tensor, yx: Tuple[int, int]) -> Tensor:
    """Cosine similarity (h, w) of the feature at grid position ``yx`` with every position of a
    (C, h, w) feature map (the context-feature correlation maps DeCLIP draws for the student and the VFM)."""
    if feats.dim() != 3:
        raise ValueError(f'features must be (C, h, w), got {tuple(feats.shape)}')
    y, x = yx
    if not (0 <= y < feats.shape[1] and 0 <= x < feats.shape[2]):
        raise ValueError(f'token {yx} outside the {tuple(feats.shape[1:])} grid')
    f = torch.nn.functional.normalize(feats.flatten(1), dim=0)
    return (f[:, y * feats.shape[2] + x] @ f).view(feats.shape[1:])
