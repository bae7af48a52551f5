"""The vision foundation model (VFM) that gives the proxy attention its features (docs/method.md §7).

It sees the same sliding window as the CLIP tower. What it runs, and how, follows the public
ProxyCLIP code (mc-lan/ProxyCLIP ``proxyclip_segmentor.py`` ``forward_feature``; facts only):

* input: the CLIP-normalised window (zero padding included) is un-normalised with CLIP's mean / std
  and normalised again with ImageNet's (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225);
* ``dino_vitb8`` (the public default) and ``dinov2_vitb14_reg``: the window as it is, the last
  block's tokens after the final norm, patch tokens only (DINO ``get_intermediate_layers(x)[0]``,
  DINOv2 ``get_intermediate_layers(x, reshape=True)[0]``), the position embedding resized by each
  hub's own rule (:class:`VFMTeacher`);
* ``sam_vitb``: the window resized bilinearly to 1024 x 1024 (``align_corners=False``), SAM's
  image encoder (neck output, 256 channels, 64 x 64);
* ``mae_vitb16``: the window resized bilinearly to the protocol's crop size (the public code builds
  MAE at ``img_size=slide_crop``), last block after the final norm, patch tokens.

The towers are declip_mm's :class:`VFMTeacher` (timm DINO / DINOv2 / MAE, segment_anything's SAM
image encoder -- the encoder the public code copies; timm's ``samvit_base_patch16`` is the same
architecture but reads other key names, so the teacher's loader is kept), loaded from local files
only. **Precision**: the public code runs the VFM (and CLIP) in fp16 on a GPU; here the default is
fp32 (``precision=None``, what runs on a CPU), ``precision='fp16'`` gives the public half-precision
VFM (its output is returned in fp32 either way).
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from ...registry import MODELS
from ...utils import check_local_file
from .vfm_teacher import VFM_ARCHS, VFMTeacher

__all__ = ['ProxyVFM', 'PROXY_VFM_INPUT', 'IMAGENET_MEAN', 'IMAGENET_STD', 'CLIP_MEAN', 'CLIP_STD']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: the VFM's input side by arch: None = the window itself, an int = resized to (s, s),
#: 'crop' = resized to the segmentor's crop size (MAE, built at img_size=slide_crop publicly)
PROXY_VFM_INPUT = {'dino_vitb8': None, 'dino_vitb16': None, 'dinov2_vitb14_reg': None,
                   'dinov2_vitb14': None, 'dinov2_vitl14_reg': None, 'dinov2_vitl14': None,
                   'sam_vitb': 1024, 'mae_vitb16': 'crop'}


@MODELS.register_module()
class ProxyVFM(BaseModule):
    """Frozen VFM of the proxy attention.

    Args:
        arch (str): a :data:`VFM_ARCHS` name; ``'dino_vitb8'`` (DINO ViT-B/8, the public
            default), ``'dinov2_vitb14_reg'``, ``'sam_vitb'``, ``'mae_vitb16'``.
        pretrained (str, optional): local weight file (hub / timm / SAM / MAE checkpoint). A missing
            file is an error at construction; ``None`` keeps random weights (tests only, warned).
        precision (str, optional): ``'fp16'`` (the public code) or ``None`` (fp32, default).
        input_size (int | str | None): overrides the arch's input rule (:data:`PROXY_VFM_INPUT`).
        mean, std (sequence): the VFM's input normalisation on [0, 1] pixels (ImageNet).
        arch_overrides (dict, optional): tiny test towers (see :class:`VFMTeacher`).
    """

    def __init__(self, arch: str = 'dino_vitb8', pretrained: Optional[str] = None,
                 precision: Optional[str] = None,
                 input_size: Any = ...,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 arch_overrides: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if arch not in VFM_ARCHS:
            raise ValueError(f'unknown VFM arch {arch!r}; choose one of {sorted(VFM_ARCHS)}')
        if pretrained is not None:  # before the (large) tower is built
            check_local_file(pretrained, f'{arch} VFM checkpoint of the proxy attention')
        self.tower = VFMTeacher(arch=arch, pretrained=pretrained, arch_overrides=arch_overrides,
                                precision=precision)
        self.arch = arch
        size = PROXY_VFM_INPUT.get(arch) if input_size is ... else input_size
        if not (size is None or size == 'crop' or (isinstance(size, int) and size > 0)):
            raise ValueError(f"input_size must be None, 'crop' or a positive int, got {size!r}")
        self.input_size = size
        self.patch_size = self.tower.patch_size
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        if pretrained is None:
            print_log(f'ProxyVFM {arch}: no pretrained file, RANDOM weights (tests only)',
                      logger='current', level=logging.WARNING)

    @property
    def pretrained(self) -> Optional[str]:
        return self.tower.pretrained

    def init_weights(self) -> None:
        self.tower.init_weights()
        self._is_init = True

    def train(self, mode: bool = True) -> ProxyVFM:
        return super().train(False)  # always frozen

    def window_multiple(self) -> int:
        """The VFM's divisibility need on the window (1 when it resizes its input anyway)."""
        return self.patch_size if self.input_size is None else 1

    def vfm_input(self, windows: Tensor, clip_mean: Tensor, clip_std: Tensor,
                  crop_size: Optional[Tuple[int, int]] = None) -> Tensor:
        """CLIP-normalised windows -> the VFM's normalised (and resized) input (fp32)."""
        x = windows.float() * clip_std.float().view(1, 3, 1, 1) + clip_mean.float().view(1, 3, 1, 1)
        x = (x - self.mean) / self.std
        size = self.input_size
        if size == 'crop':
            if crop_size is None:
                raise ValueError("input_size='crop' needs the segmentor's crop size")
            size = tuple(crop_size)
        elif isinstance(size, int):
            size = (size, size)
        if size is not None and tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
        return x

    @torch.no_grad()
    def forward(self, windows: Tensor, clip_mean: Tensor, clip_std: Tensor,
                crop_size: Optional[Tuple[int, int]] = None) -> Tensor:
        """(B, 3, h, w) CLIP-normalised windows -> (B, C, H, W) fp32 VFM patch features.

        ``clip_mean`` / ``clip_std``: the normalisation the windows carry, on [0, 1] pixels.
        """
        return self.tower(self.vfm_input(windows, clip_mean, clip_std, crop_size))
