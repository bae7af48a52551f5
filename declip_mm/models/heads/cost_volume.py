"""Cost volume of CAT-Seg (Cho et al., CVPR 2024; public file ``cat_seg/modeling/transformer/model.py``,
``Aggregator.correlation`` / ``corr_embed``), docs/catseg.md.

C(b, p, t, i) = cos(dense embedding of image b at location i, text embedding of class t under prompt p)
gives a (B, P, T, h, w) volume; a 7×7 convolution, shared by all classes, embeds the P prompt channels
of each class map into ``embed_dims`` channels: (B, C, T, h, w).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ['cosine_cost_volume', 'select_top_classes', 'CostVolumeEmbed']


def cosine_cost_volume(feats: Tensor, text: Tensor) -> Tensor:
    """Cosine similarities of every location with every class and prompt.

    Args:
        feats (Tensor): (B, E, h, w) dense embeddings (normalised here).
        text (Tensor): (B, T, P, E) class embeddings per prompt (normalised here).

    Returns:
        Tensor: (B, P, T, h, w).
    """
    feats = F.normalize(feats, dim=1)
    text = F.normalize(text, dim=-1)
    return torch.einsum('behw,btpe->bpthw', feats, text)


def select_top_classes(cost: Tensor, max_classes: int) -> Optional[Tensor]:
    """Indices of the ``max_classes`` classes with the largest maximum initial cost, per image.

    CAT-Seg keeps the class step at a fixed length: beyond ``pad_len`` classes, only those whose best
    cosine (over prompts and locations) is among the top ``pad_len`` take part; the others get the
    logit -100 (public ``Aggregator.forward``).

    Args:
        cost (Tensor): (B, P, T, h, w).
        max_classes (int): the fixed class length; ``<= 0`` disables the selection.

    Returns:
        Tensor | None: (B, max_classes) long indices, in increasing class order (so that the kept
        classes keep their relative order), or None when no selection is needed.
    """
    t = cost.shape[2]
    if max_classes <= 0 or t <= max_classes:
        return None
    score = cost.transpose(1, 2).flatten(2).amax(dim=-1)  # (B, T)
    idx = score.topk(max_classes, dim=-1).indices
    return idx.sort(dim=-1).values


class CostVolumeEmbed(nn.Module):
    """7×7 convolution from P prompt channels to ``embed_dims`` channels, per class map.

    Args:
        num_prompts (int): P, the number of prompt templates. Defaults to 1.
        embed_dims (int): output channels. Defaults to 128.
        kernel_size (int): Defaults to 7 (padding keeps the size).

    Shapes:
        (B, P, T, h, w) -> (B, embed_dims, T, h, w)
    """

    def __init__(self, num_prompts: int = 1, embed_dims: int = 128, kernel_size: int = 7) -> None:
        super().__init__()
        self.num_prompts = int(num_prompts)
        self.conv = nn.Conv2d(self.num_prompts, embed_dims, kernel_size, padding=kernel_size // 2)

    def forward(self, cost: Tensor) -> Tensor:
        b, p, t, h, w = cost.shape
        if p != self.num_prompts:
            raise ValueError(f'cost volume has {p} prompt channels, the embedding expects '
                             f'{self.num_prompts} (set the head\'s num_prompts to the number of '
                             'templates)')
        x = self.conv(cost.transpose(1, 2).reshape(b * t, p, h, w))
        return x.view(b, t, -1, h, w).transpose(1, 2)
