"""Training-free segmentation with ProxyCLIP's proxy attention on any CLIP / DeCLIP tower
(docs/method.md §7).

The protocol of :class:`DeCLIPZeroShotSegmentor` (windows, cosine with the class names, overlap
average, logit scale, ``prob_thd``), with the backbone in ``attn_mode='proxy'``: every window batch
also goes through a frozen VFM (:class:`ProxyVFM`) whose patch correlation replaces the last
block's attention. Differences to the public ProxyCLIP evaluator (mc-lan/ProxyCLIP
``proxyclip_segmentor.py``), none of which occurs at the eight benchmarks' settings:

* a window smaller than the crop (an image side below the crop size) is zero-padded, centred, to a
  multiple of both patches (lcm, e.g. 112 for CLIP /16 with DINOv2 /14); the public code pads to a
  multiple of 56 and lets CLIP's patch convolution drop the remainder;
* non-square windows work (the public code reads both grids off the window height).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch.nn.functional as F
from mmseg.utils import ConfigType
from torch import Tensor, nn

from ...registry import MODELS
from ..layers.proxy_attention import PROXY_MODE
from .zero_shot_segmentor import DeCLIPZeroShotSegmentor

__all__ = ['DeCLIPProxySegmentor']


class _FeaturePair(nn.Module):
    """Backbone + VFM as one fingerprint for the shared feature cache (not registered)."""

    def __init__(self, backbone: nn.Module, vfm: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.vfm = vfm


@MODELS.register_module()
class DeCLIPProxySegmentor(DeCLIPZeroShotSegmentor):
    """:class:`DeCLIPZeroShotSegmentor` whose backbone runs ProxyCLIP's proxy attention.

    Args:
        vfm (dict): a :class:`ProxyVFM` config (``arch``, ``pretrained``, ``precision``, ...).
        backbone (dict): a ``DeCLIPVisionTransformer`` config; its ``attn_mode`` is set to
            ``'proxy'`` (any other value is an error). ``proxy_beta`` / ``proxy_gamma`` live there.
        **kwargs: the arguments of :class:`DeCLIPZeroShotSegmentor`.
    """

    def __init__(self, backbone: ConfigType, vfm: ConfigType, **kwargs) -> None:
        backbone = dict(backbone)
        mode = backbone.get('attn_mode', PROXY_MODE)
        if mode != PROXY_MODE:
            raise ValueError(f"DeCLIPProxySegmentor needs the backbone's attn_mode='proxy', got "
                             f'{mode!r} (use DeCLIPZeroShotSegmentor for the other modes)')
        backbone['attn_mode'] = PROXY_MODE
        super().__init__(backbone=backbone, **kwargs)
        vfm = dict(vfm)
        vfm.setdefault('type', 'ProxyVFM')
        self.vfm = MODELS.build(vfm)
        pre = self.data_preprocessor
        if getattr(pre, 'mean', None) is None or getattr(pre, 'std', None) is None:
            raise ValueError('DeCLIPProxySegmentor needs a data_preprocessor with mean and std (the '
                             'VFM input is un-normalised from them)')
        # the CLIP normalisation of the windows on [0, 1] pixels (the preprocessor's is on 0..255)
        self.register_buffer('clip_mean', pre.mean.detach().float().view(3) / 255.0, persistent=False)
        self.register_buffer('clip_std', pre.std.detach().float().view(3) / 255.0, persistent=False)
        object.__setattr__(self, '_feature_pair', _FeaturePair(self.backbone, self.vfm))

    def init_weights(self) -> None:
        super().init_weights()
        self.vfm.init_weights()

    def window_multiple(self) -> Tuple[int, int]:
        """Windows are padded to a multiple of both the CLIP and the VFM patch."""
        ph, pw = self.backbone.patch_size
        m = self.vfm.window_multiple()
        return (ph * m // math.gcd(ph, m), pw * m // math.gcd(pw, m))

    def vfm_features(self, inputs: Tensor) -> Tensor:
        """(B, C, H, W) VFM features of CLIP-normalised windows."""
        return self.vfm(inputs, self.clip_mean, self.clip_std, self.crop_size)

    def _proxy_content(self, inputs: Tensor) -> Tensor:
        feats = self.vfm_features(inputs)
        return F.normalize(self.backbone(inputs, proxy_feats=feats)['content'], dim=1)

    def extract_feat(self, inputs: Tensor, proxy_feats: Optional[Tensor] = None) -> Tensor:
        """L2-normalised proxy content features (B, E, H, W) on the VFM grid."""
        if proxy_feats is not None:
            return F.normalize(self.backbone(inputs, proxy_feats=proxy_feats)['content'], dim=1)
        if self.feature_cache is not None:
            return self.feature_cache.get(inputs, self._proxy_content, self._feature_pair)
        return self._proxy_content(inputs)
