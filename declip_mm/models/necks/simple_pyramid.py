"""ViTDet-style resampling of single-stride ViT maps into a stride pyramid.

A plain ViT produces every map at the patch stride (16 for B/16). Detection and segmentation necks
(mmdet ``FPN``, mmseg ``UPerHead``) expect strides 4, 8, 16, 32. ViTDet (Li et al., ECCV 2022,
"Exploring Plain Vision Transformer Backbones for Object Detection", §3 "simple feature pyramid")
builds them from one map with transposed convolutions (upsampling), identity and max-pooling; F-ViT
(CLIPSelf, ICLR 2024, ``F-ViT/models/evaclip_vit.py``) applies the same four operators to four
different blocks of a frozen CLIP tower. This module does the latter: one operator per input map.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ...registry import MODELS

__all__ = ['SimplePyramidResampler', 'check_pyramid_scales']

#: the resampling factors accepted (powers of two): up to 3 deconvs or a max-pool of up to 8
VALID_SCALES = (8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.125)


def check_pyramid_scales(scales: Sequence[float], name: str = 'scales') -> List[float]:
    """Validate resampling factors: each must be a power of two in [1/8, 8]."""
    out = []
    for s in scales:
        try:
            f = float(s)
        except (TypeError, ValueError):
            f = float('nan')
        if f not in VALID_SCALES:
            raise ValueError(f'{name} entry {s!r} is not supported; each factor must be one of '
                             f'{VALID_SCALES} (>1: learned 2x transposed convs, 1: identity, '
                             '<1: max-pooling)')
        out.append(f)
    return out


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map (ViTDet's ``LayerNorm`` for conv maps)."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def _resampler(channels: int, scale: float) -> nn.Module:
    if scale == 1.0:
        return nn.Identity()
    if scale < 1.0:
        k = int(round(1.0 / scale))
        return nn.MaxPool2d(kernel_size=k, stride=k)
    layers: List[nn.Module] = []
    for i in range(int(round(math.log2(scale)))):
        if i:  # ViTDet: norm + GELU between consecutive 2x deconvs
            layers += [_ChannelLayerNorm(channels, eps=1e-6), nn.GELU()]
        layers.append(nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2))
    return nn.Sequential(*layers)


@MODELS.register_module()
class SimplePyramidResampler(nn.Module):
    """Resample each of several same-stride maps by its own factor (ViTDet simple pyramid).

    ``scale > 1``: log2(scale) learned 2x transposed convolutions (kernel 2, stride 2) with a channel
    LayerNorm + GELU between them; ``1``: identity; ``< 1``: max-pooling (kernel = stride = 1/scale).
    Channels are kept, so the caller's neck sees ``in_channels`` unchanged (ViTDet halves them in
    its upsampling branches; a stock neck's ``in_channels`` list is simpler to write without that).

    Usable inside :class:`DeCLIPVisionTransformer` (``out_scales``) or as a neck of its own.

    Args:
        in_channels (sequence[int]): channels of each input map.
        scales (sequence[float]): one factor per input, powers of two in [1/8, 8],
            e.g. ``(4.0, 2.0, 1.0, 0.5)`` turns four stride-16 maps into strides 4, 8, 16, 32.
    """

    def __init__(self, in_channels: Sequence[int], scales: Sequence[float]) -> None:
        super().__init__()
        self.in_channels = [int(c) for c in in_channels]
        self.scales = check_pyramid_scales(scales)
        if len(self.scales) != len(self.in_channels):
            raise ValueError(f'got {len(self.scales)} scales for {len(self.in_channels)} input maps; '
                             'give one scale per map')
        self.ops = nn.ModuleList(_resampler(c, s) for c, s in zip(self.in_channels, self.scales))

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Args: inputs: ``len(scales)`` maps (B, C_i, h, w). Returns: maps (B, C_i, h·s_i, w·s_i)."""
        if len(inputs) != len(self.ops):
            raise ValueError(f'expected {len(self.ops)} maps, got {len(inputs)}')
        return tuple(op(x) for op, x in zip(self.ops, inputs))

    def extra_repr(self) -> str:
        return f'in_channels={self.in_channels}, scales={self.scales}'
