"""CAT-Seg-style cost-aggregation head on DeCLIP features (Cho et al., CVPR 2024; public files
``cat_seg/modeling/transformer/model.py`` (``Aggregator``) and ``cat_seg/cat_seg_model.py``), docs/catseg.md.

Call graph::

    forward(content, text, intermediates)
      └─ cosine_cost_volume         (B, P, T, h, w) cosines of content features and class texts
      └─ select_top_classes         beyond pad_len classes: keep the top pad_len by max initial cost
      └─ CostVolumeEmbed            7×7 conv: P -> 128 channels per class map
      └─ appearance guidance        content -> conv3×3 + ReLU -> 128 (layer-normed in each layer)
      └─ text guidance              mean over prompts, renormalised -> Linear + ReLU -> 128
      └─ layers × N                 SpatialAggregation (Swin, window 12 / shift 6) then
                                    ClassAggregation (linear attention over classes, padded to 256)
      └─ UpsampleDecoder            128 -> 64 -> 32 with guidance from two backbone blocks; 3×3 conv
                                    to one logit per class at 4h × 4w (1/4 of the input)
    loss_by_feat(logits, gt)        per-class sigmoid BCE against one-hot targets, ignore_index ignored

Nothing depends on the number of classes, so one trained head evaluates any vocabulary.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from ...registry import MODELS
from .class_aggregation import ClassAggregation
from .cost_volume import CostVolumeEmbed, cosine_cost_volume, select_top_classes
from .spatial_aggregation import SpatialAggregation
from .upsample_decoder import UpsampleDecoder

__all__ = ['DeCLIPCATSegHead']


class _AggregationLayer(nn.Module):
    def __init__(self, embed_dims, appearance_dims, text_dims, num_heads, window_size, pad_len,
                 pool_size, pool_at_test) -> None:
        super().__init__()
        self.spatial = SpatialAggregation(embed_dims, appearance_dims, num_heads, window_size)
        self.cls = ClassAggregation(embed_dims, text_dims, num_heads, pad_len, pool_size,
                                    pool_at_test)

    def forward(self, x: Tensor, appearance: Optional[Tensor], text: Optional[Tensor]) -> Tensor:
        return self.cls(self.spatial(x, appearance), text)


@MODELS.register_module()
class DeCLIPCATSegHead(BaseModule):
    """Cost-aggregation segmentation head (CAT-Seg design) with a fixed class length.

    Args:
        text_channels (int): E of the text embeddings. Defaults to 512.
        feat_channels (int): channels of the dense (content) features; must equal ``text_channels``
            for the cosine. Defaults to 512.
        backbone_channels (int): width of the intermediate blocks used by the decoder (0: none).
            Defaults to 768.
        num_prompts (int): P, prompt templates per class. Defaults to 1.
        embed_dims (int): cost embedding channels. Defaults to 128.
        appearance_guidance_dims (int): Defaults to 128 (0: none).
        text_guidance_dims (int): Defaults to 128 (0: none).
        num_layers (int): aggregation layers. Defaults to 2.
        num_heads (int): Defaults to 4.
        window_size (int): Swin window (the second block shifts by half). Defaults to 12.
        pad_len (int): fixed class length of the class step. Defaults to 256.
        pool_size (int): grid pooling of the class step in training. Defaults to 2.
        pool_at_test (bool): pool in eval mode too. Defaults to False (docs/catseg.md: no pooling at test;
            the public ``ClassTransformerLayer`` pools in both modes, set True to reproduce it).
        decoder_channels, guidance_channels, guidance_proj_channels: see
            :class:`UpsampleDecoder`. Defaults (64, 32), (256, 128), (32, 16).
        loss_weight (float): Defaults to 1.0.
        ignore_index (int): label ignored by the loss. Defaults to 255.
        ignore_mode (str): ``'exclude'`` drops ignored pixels from the mean; ``'negative'`` keeps them
            with all-zero targets (what the public training code effectively does). Defaults to
            ``'exclude'``.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 text_channels: int = 512,
                 feat_channels: int = 512,
                 backbone_channels: int = 768,
                 num_prompts: int = 1,
                 embed_dims: int = 128,
                 appearance_guidance_dims: int = 128,
                 text_guidance_dims: int = 128,
                 num_layers: int = 2,
                 num_heads: int = 4,
                 window_size: int = 12,
                 pad_len: int = 256,
                 pool_size: int = 2,
                 pool_at_test: bool = False,
                 decoder_channels: Sequence[int] = (64, 32),
                 guidance_channels: Sequence[int] = (256, 128),
                 guidance_proj_channels: Sequence[int] = (32, 16),
                 loss_weight: float = 1.0,
                 ignore_index: int = 255,
                 ignore_mode: str = 'exclude',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if feat_channels != text_channels:
            raise ValueError(f'feat_channels ({feat_channels}) must equal text_channels '
                             f'({text_channels}): the cost volume is a cosine')
        if ignore_mode not in ('exclude', 'negative'):
            raise ValueError(f"ignore_mode must be 'exclude' or 'negative', got {ignore_mode!r}")
        self.pad_len = int(pad_len)
        self.embed = CostVolumeEmbed(num_prompts, embed_dims)
        self.appearance_proj = nn.Sequential(
            nn.Conv2d(feat_channels, appearance_guidance_dims, 3, padding=1), nn.ReLU()) \
            if appearance_guidance_dims > 0 else None
        self.text_proj = nn.Sequential(nn.Linear(text_channels, text_guidance_dims), nn.ReLU()) \
            if text_guidance_dims > 0 else None
        self.layers = nn.ModuleList([
            _AggregationLayer(embed_dims, appearance_guidance_dims, text_guidance_dims, num_heads,
                              window_size, self.pad_len, pool_size, pool_at_test)
            for _ in range(num_layers)])
        self.decoder = UpsampleDecoder(embed_dims, decoder_channels, backbone_channels,
                                       guidance_channels, guidance_proj_channels)
        self.loss_weight = float(loss_weight)
        self.ignore_index = int(ignore_index)
        self.ignore_mode = ignore_mode

    def forward(self, feats: Tensor, text: Tensor,
                intermediates: Optional[Sequence[Tensor]] = None) -> Tensor:
        """Per-class logits.

        Args:
            feats (Tensor): (B, E, h, w) dense content features (not normalised).
            text (Tensor): (T, P, E) or (B, T, P, E) class embeddings per prompt.
            intermediates (list[Tensor]): two (B, D, h, w) intermediate block outputs.

        Returns:
            Tensor: (B, T, 4h, 4w) logits; classes dropped by the class-length truncation get -100.
        """
        b = feats.shape[0]
        if text.dim() == 3:
            text = text[None].expand(b, -1, -1, -1)
        if text.dim() != 4 or text.shape[0] != b or text.shape[1] == 0:
            raise ValueError(f'text embeddings must be (T, P, E) or (B, T, P, E) with T >= 1, got '
                             f'{tuple(text.shape)}')
        num_classes = text.shape[1]
        cost = cosine_cost_volume(feats, text)
        keep = select_top_classes(cost, self.pad_len)
        if keep is not None:
            text = torch.gather(text, 1, keep[:, :, None, None].expand(-1, -1, *text.shape[2:]))
            cost = torch.gather(cost, 2, keep[:, None, :, None, None].expand(
                -1, cost.shape[1], -1, *cost.shape[-2:]))
        x = self.embed(cost)
        appearance = self.appearance_proj(feats) if self.appearance_proj is not None else None
        text_guid = None
        if self.text_proj is not None:
            text_guid = self.text_proj(F.normalize(F.normalize(text, dim=-1).mean(dim=2), dim=-1))
        for layer in self.layers:
            x = layer(x, appearance, text_guid)
        logits = self.decoder(x, intermediates)
        if keep is not None:
            full = logits.new_full((b, num_classes, *logits.shape[-2:]), -100.0)
            logits = full.scatter(1, keep[:, :, None, None].expand(-1, -1, *logits.shape[-2:]),
                                  logits)
        return logits

    def loss_by_feat(self, logits: Tensor, gt: Tensor) -> Dict[str, Tensor]:
        """Per-class sigmoid BCE against one-hot targets.

        Args:
            logits (Tensor): (B, T, h', w') head output (upsampled bilinearly to the label size).
            gt (Tensor): (B, H, W) long labels in [0, T) or ``ignore_index``.

        Returns:
            dict: ``loss_bce``.
        """
        if gt.dim() == 4:
            gt = gt[:, 0]
        logits = F.interpolate(logits, size=gt.shape[-2:], mode='bilinear', align_corners=False)
        t = logits.shape[1]
        valid = gt != self.ignore_index
        bad = gt[valid & ((gt < 0) | (gt >= t))]
        if bad.numel():
            raise ValueError(f'label {int(bad[0])} is outside the {t} classes of the vocabulary; '
                             'check that class_names matches the training dataset')
        target = F.one_hot(torch.where(valid, gt, torch.zeros_like(gt)), t).to(logits.dtype)
        target = target * valid[..., None].to(logits.dtype)
        per = F.binary_cross_entropy_with_logits(logits.permute(0, 2, 3, 1), target,
                                                 reduction='none')
        if self.ignore_mode == 'exclude':
            loss = (per * valid[..., None]).sum() / (valid.sum().clamp(min=1) * t)
        else:
            loss = per.mean()
        return {'loss_bce': self.loss_weight * loss}
