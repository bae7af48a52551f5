"""CAT-Seg's upsampling decoder (public file ``cat_seg/modeling/transformer/model.py``: ``Up``,
``DoubleConv``, ``Aggregator.conv_decoder``; the guidance transposed convs are ``upsample1`` /
``upsample2`` of ``cat_seg/cat_seg_model.py``), docs/catseg.md.

Every class map is decoded on its own::

    guidance_1 = ReLU(conv3×3(ConvT_2×2(block a)))      768 -> 256 -> 32 channels at 2h × 2w
    guidance_2 = ReLU(conv3×3(ConvT_4×4(block b)))      768 -> 128 -> 16 channels at 4h × 4w
    stage_i(x) = DoubleConv([ConvT_2×2(x), guidance_i])  ConvT gives (in - guidance) channels
    DoubleConv = (conv3×3 -> GroupNorm(C/16) -> ReLU) × 2
    logit = conv3×3(stage_2(stage_1(x)))                128 -> 64 -> 32 -> 1, at 4h × 4w
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ['GuidedUpStage', 'UpsampleDecoder']


def _double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    groups = max(out_ch // 16, 1)
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.GroupNorm(groups, out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.GroupNorm(groups, out_ch),
        nn.ReLU(inplace=True))


class GuidedUpStage(nn.Module):
    """×2 transposed conv, concatenated guidance, double conv.

    Shapes:
        x (N, in, h, w), guidance (B, G, 2h, 2w) with N = B·T -> (N, out, 2h, 2w)
    """

    def __init__(self, in_channels: int, out_channels: int, guidance_channels: int) -> None:
        super().__init__()
        if guidance_channels >= in_channels:
            raise ValueError('guidance_channels must be smaller than in_channels')
        self.guidance_channels = guidance_channels
        self.up = nn.ConvTranspose2d(in_channels, in_channels - guidance_channels, 2, stride=2)
        self.conv = _double_conv(in_channels, out_channels)

    def forward(self, x: Tensor, guidance: Optional[Tensor] = None) -> Tensor:
        x = self.up(x)
        if not self.guidance_channels:
            return self.conv(x)
        if guidance is None:
            raise ValueError('this decoder stage expects guidance features')
        return self.guided_conv(x, guidance)

    def guided_conv(self, x: Tensor, guidance: Tensor) -> Tensor:
        """``self.conv(cat([x, g_rep], 1))``, ``g_rep`` each image's guidance (B, G, H, W) repeated
        over its T class maps x (B·T, C, H, W): conv3x3([x, g]) = conv3x3(x; W_x) + conv3x3(g; W_g)
        (zero padding splits too), so the guidance term is convolved once per image and broadcast
        over its class maps instead of concatenated to every class map and convolved T times."""
        first = self.conv[0]
        cx = x.shape[1]
        y = F.conv2d(x, first.weight[:, :cx], None, padding=first.padding)
        y = y.unflatten(0, (guidance.shape[0], -1))  # (B, T, out, 2h, 2w)
        y += F.conv2d(guidance, first.weight[:, cx:], None, padding=first.padding)[:, None]
        return self.conv[1:](y.flatten(0, 1))


class UpsampleDecoder(nn.Module):
    """Two guided stages and a 3×3 logit conv; guidance from two intermediate backbone blocks.

    Args:
        in_channels (int): channels of the aggregated cost. Defaults to 128.
        decoder_channels (sequence[int]): per stage. Defaults to (64, 32).
        backbone_channels (int): width of the intermediate backbone features (0: no guidance).
            Defaults to 768.
        guidance_channels (sequence[int]): transposed-conv outputs (×2, ×4). Defaults to (256, 128).
        guidance_proj_channels (sequence[int]): after the 3×3 projections. Defaults to (32, 16).

    Shapes:
        x (B, C, T, h, w), intermediates [(B, D, h, w)] * 2 -> logits (B, T, 4h, 4w)
    """

    def __init__(self, in_channels: int = 128, decoder_channels: Sequence[int] = (64, 32),
                 backbone_channels: int = 768, guidance_channels: Sequence[int] = (256, 128),
                 guidance_proj_channels: Sequence[int] = (32, 16)) -> None:
        super().__init__()
        if len(decoder_channels) != 2 or len(guidance_channels) != 2 \
                or len(guidance_proj_channels) != 2:
            raise ValueError('the decoder has two stages: give two channel numbers each')
        self.with_guidance = backbone_channels > 0
        gp = tuple(guidance_proj_channels) if self.with_guidance else (0, 0)
        if self.with_guidance:
            self.guidance_up = nn.ModuleList([
                nn.ConvTranspose2d(backbone_channels, guidance_channels[0], 2, stride=2),
                nn.ConvTranspose2d(backbone_channels, guidance_channels[1], 4, stride=4)])
            self.guidance_proj = nn.ModuleList([
                nn.Sequential(nn.Conv2d(c, p, 3, padding=1), nn.ReLU())
                for c, p in zip(guidance_channels, gp)])
        self.stage1 = GuidedUpStage(in_channels, decoder_channels[0], gp[0])
        self.stage2 = GuidedUpStage(decoder_channels[0], decoder_channels[1], gp[1])
        self.cls = nn.Conv2d(decoder_channels[1], 1, 3, padding=1)

    def guidance(self, intermediates: Optional[Sequence[Tensor]]):
        """Project the two intermediate maps; None entries without guidance."""
        if not self.with_guidance:
            return [None, None]
        if intermediates is None or len(intermediates) != 2:
            raise ValueError('the decoder needs the outputs of two intermediate backbone blocks '
                             '(backbone out_indices, e.g. (3, 7) for B, (7, 15) for L)')
        return [proj(up(f)) for up, proj, f in zip(self.guidance_up, self.guidance_proj,
                                                   intermediates)]

    def forward(self, x: Tensor, intermediates: Optional[Sequence[Tensor]] = None) -> Tensor:
        b, c, t, h, w = x.shape
        g1, g2 = self.guidance(intermediates)
        y = x.transpose(1, 2).reshape(b * t, c, h, w)
        y = self.cls(self.stage2(self.stage1(y, g1), g2))
        return y.view(b, t, *y.shape[-2:])
