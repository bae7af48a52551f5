"""Frozen vision-foundation-model teachers for context distillation (docs/method.md §2).

Returns the last block's tokens after the model's final norm, patch tokens only, as (B, C, h, w)
(L2 normalisation per token happens in the loss). Weights come from local files only.

* ``dinov2_vitb14_reg`` (default), ``dinov2_vitb14``, ``dinov2_vitl14_reg``, ``dinov2_vitl14``:
  timm DINOv2, ImageNet normalisation, DINOv2 hub or timm checkpoints;
* ``dino_vitb16``, ``dino_vitb8``: timm ViT (DINO), ImageNet normalisation, DINO hub / timm;
* ``sam_vitb``: segment_anything ``ImageEncoderViT`` (neck output, 256 channels), ImageNet
  normalisation (SAM's pixel mean/std), SAM ``.pth`` (``image_encoder.*`` keys).

timm towers run with their position embedding resized to the input grid, so any side that is a
multiple of the patch works (490 for a 35 x 35 grid with patch 14). Each model resizes the way its
own hub code does (``interpolate_pos_encoding`` of facebookresearch/dinov2 and /dino), so the
teacher's targets match the official ones:

* DINOv2 *with registers* (the hub builds them with ``interpolate_antialias=True,
  interpolate_offset=0.0``): bicubic to the target *size*, with antialias;
* plain DINOv2 and DINO: bicubic, no antialias, ``scale_factor = (n + 0.1) / M`` (the "+0.1"
  kludge of facebookresearch/dino#8).

The SAM encoder (``sam_vitb``) takes any multiple of 16 as well: the official SAM ablation feeds it
the student's 560 letterbox (35 x 35 tokens) with its 64 x 64 absolute position embedding resized
bicubically (no antialias, ``align_corners=False``; the ``rescale_positional_embedding`` the official
repo adds to ``segment_anything/modeling/image_encoder.py``), and runs it in half precision
(``build_vfm`` in the official ``src/training/utils.py`` calls ``.half()``): ``precision='fp16'``.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from ...converters import convert_dinov2, match_state_dict, split_prefix, unwrap_checkpoint
from ...registry import MODELS
from ...utils import check_local_file, load_weight_file
from ..layers import resize_pos_embed

__all__ = ['VFMTeacher', 'VFM_ARCHS']

#: position-embedding rule of each hub model (``interpolate_pos_encoding``)
HUB_REG = dict(antialias=True, offset=0.0)     # dinov2_vit*14_reg
HUB_PLAIN = dict(antialias=False, offset=0.1)  # dinov2_vit*14, dino_vitb16 / b8

VFM_ARCHS: Dict[str, Dict[str, Any]] = {
    'dinov2_vitb14_reg': dict(timm='vit_base_patch14_reg4_dinov2', pos=HUB_REG),
    'dinov2_vitb14': dict(timm='vit_base_patch14_dinov2', pos=HUB_PLAIN),
    'dinov2_vitl14_reg': dict(timm='vit_large_patch14_reg4_dinov2', pos=HUB_REG),
    'dinov2_vitl14': dict(timm='vit_large_patch14_dinov2', pos=HUB_PLAIN),
    'dino_vitb16': dict(timm='vit_base_patch16_224.dino', pos=HUB_PLAIN),
    'dino_vitb8': dict(timm='vit_base_patch8_224.dino', pos=HUB_PLAIN),
    # MAE (proxy attention, docs/method.md §7): its table resized to the input size, bicubic, no
    # antialias (MAE's interpolate_pos_embed, which ProxyCLIP applies when it builds MAE at 336)
    'mae_vitb16': dict(timm='vit_base_patch16_224.mae', pos=dict(antialias=False, offset=0.0)),
    'sam_vitb': dict(sam=dict(embed_dim=768, depth=12, num_heads=12,
                              global_attn_indexes=(2, 5, 8, 11))),
}


def _build_sam_encoder(args: Dict[str, Any]) -> nn.Module:
    try:
        from segment_anything.modeling import ImageEncoderViT
    except ImportError as e:
        raise ImportError('the SAM teacher needs the segment-anything package '
                          '(pip install segment-anything)') from e
    from functools import partial
    args = dict(args)
    img_size = args.pop('img_size', 1024)
    patch = args.pop('patch_size', 16)
    return ImageEncoderViT(img_size=img_size, patch_size=patch, mlp_ratio=4,
                           norm_layer=partial(nn.LayerNorm, eps=1e-6), out_chans=256,
                           qkv_bias=True, use_rel_pos=True, window_size=args.pop('window_size', 14),
                           **args)


def dino_resize_pos_embed(pos_embed: Tensor, hw: Tuple[int, int], num_prefix: int,
                          src_hw: Tuple[int, int], offset: float = 0.1,
                          antialias: bool = False) -> Tensor:
    """DINO / DINOv2 ``interpolate_pos_encoding`` (facebookresearch/dinov2 ``vision_transformer.py``).

    Unchanged on the native grid; else bicubic in fp32 with ``scale_factor = (n + offset) / M`` per
    axis when ``offset`` is non-zero (plain DINOv2, DINO), or to the target size when it is 0
    (DINOv2 with registers), antialiased if ``antialias``; prefix tokens are kept.

    Args:
        pos_embed (Tensor): (1, P + M*M, D).
        hw (tuple[int, int]): target grid (h, w).
        num_prefix (int): P, prefix slots of the table (1 for CLS, 0 in timm's register layout).
        src_hw (tuple[int, int]): the table's grid (M, M).
        offset (float): the hub's ``interpolate_offset``. Defaults to 0.1.
        antialias (bool): the hub's ``interpolate_antialias``. Defaults to False.

    Returns:
        Tensor: (1, P + h*w, D) in the input's dtype.
    """
    if tuple(hw) == tuple(src_hw):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    dim = grid.shape[-1]
    g = grid.float().reshape(1, src_hw[0], src_hw[1], dim).permute(0, 3, 1, 2)
    if offset:
        size_or_scale = dict(scale_factor=((hw[0] + offset) / src_hw[0],
                                           (hw[1] + offset) / src_hw[1]))
    else:
        size_or_scale = dict(size=tuple(hw))
    g = F.interpolate(g, mode='bicubic', align_corners=False, antialias=antialias, **size_or_scale)
    if tuple(g.shape[-2:]) != tuple(hw):
        raise ValueError(f'position-embedding interpolation gave {tuple(g.shape[-2:])}, wanted {hw}')
    g = g.permute(0, 2, 3, 1).reshape(1, hw[0] * hw[1], dim).to(pos_embed.dtype)
    return torch.cat([prefix, g], dim=1)


@MODELS.register_module()
class VFMTeacher(BaseModule):
    """Frozen VFM teacher.

    Args:
        arch (str): one of :data:`VFM_ARCHS`. Defaults to ``'dinov2_vitb14_reg'``.
        pretrained (str, optional): local weight file (loaded by :meth:`init_weights`).
        arch_overrides (dict, optional): keyword overrides of the timm / SAM constructor (tiny
            test towers: ``dict(embed_dim=64, depth=2, num_heads=2, img_size=56)``).
        precision (str, optional): ``'fp16'`` keeps the weights in half precision and runs the
            model on half inputs, as the official ``build_vfm`` (``.half()``) does; ``None`` (default)
            runs in fp32. The output is always fp32.
    """

    def __init__(self, arch: str = 'dinov2_vitb14_reg', pretrained: Optional[str] = None,
                 arch_overrides: Optional[Dict[str, Any]] = None,
                 precision: Optional[str] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if arch not in VFM_ARCHS:
            raise ValueError(f'unknown VFM arch {arch!r}; choose one of {sorted(VFM_ARCHS)}')
        self.arch = arch
        spec = VFM_ARCHS[arch]
        overrides = dict(arch_overrides or {})
        if 'sam' in spec:
            self.kind = 'sam'
            self.model = _build_sam_encoder(dict(spec['sam'], **overrides))
            self.patch_size = self.model.patch_embed.proj.kernel_size[0]
            self.grid = tuple(self.model.pos_embed.shape[1:3])  # 64 x 64 for the 1024 input
            self.embed_dim = self.model.neck[-2].out_channels if hasattr(self.model, 'neck') else 256
        else:
            import timm
            self.kind = 'timm'
            self.model = timm.create_model(spec['timm'], pretrained=False, num_classes=0,
                                           **overrides)
            self.patch_size = self.model.patch_embed.proj.kernel_size[0]
            self.grid = tuple(self.model.patch_embed.grid_size)
            self.embed_dim = self.model.embed_dim
        if precision not in (None, 'fp16'):
            raise ValueError(f"precision must be None or 'fp16', got {precision!r}")
        self.precision = precision
        if precision == 'fp16':
            self.model.half()
        if pretrained is not None:
            check_local_file(pretrained, 'VFM teacher checkpoint')
        self.pretrained = pretrained
        self.lock()

    def lock(self) -> VFMTeacher:
        for p in self.parameters():
            p.requires_grad = False
        return self.eval()

    def train(self, mode: bool = True) -> VFMTeacher:
        return super().train(False)  # always frozen

    def input_side(self, student_side: int, student_patch: int) -> int:
        """VFM letterbox side giving the student's token grid: (student // p_clip) * p_vfm."""
        return (student_side // student_patch) * self.patch_size

    # weights -----------------------------------------------------------------------------------
    def init_weights(self) -> None:
        if self.pretrained is not None:
            self.load_pretrained(self.pretrained)
        self._is_init = True

    def load_pretrained(self, path: str) -> None:
        sd, _, _ = unwrap_checkpoint(load_weight_file(path, 'VFM teacher checkpoint'))
        if self.kind == 'sam':
            inner = split_prefix(sd, 'image_encoder.')
            sd = inner or sd
        else:
            sd = convert_dinov2(sd) if self.arch.startswith('dinov2') else dict(sd)
            sd = {k: v for k, v in sd.items() if not k.startswith('head.')}
        n_prefix = 0 if getattr(self.model, 'no_embed_class', False) else \
            getattr(self.model, 'num_prefix_tokens', 0)
        grid = tuple(self.model.patch_embed.grid_size) if self.kind == 'timm' else None

        def _resize(v: Tensor, shape) -> Optional[Tensor]:
            if grid is None or v.shape[-1] != shape[-1]:
                return None
            out = resize_pos_embed(v, grid, n_prefix)
            return out if out.shape == shape else None

        to_load, _, unexpected = match_state_dict(self.model, sd, f'{self.arch} VFM teacher '
                                                  f'(from {path})', resize={'pos_embed': _resize})
        if unexpected:
            print_log(f'{path}: ignored {len(unexpected)} VFM key(s): {sorted(unexpected)[:8]}',
                      logger='current', level=logging.WARNING)
        self.model.load_state_dict(to_load, strict=False)
        print_log(f'loaded VFM teacher {self.arch} from {path}', logger='current')

    # forward -----------------------------------------------------------------------------------
    def _timm_forward(self, x: Tensor) -> Tensor:
        m = self.model
        x = m.patch_embed.proj(x)
        hw = x.shape[-2:]
        x = m.patch_embed.norm(x.flatten(2).transpose(1, 2))
        prefix = []
        if m.cls_token is not None:
            prefix.append(m.cls_token.expand(x.shape[0], -1, -1))
        if getattr(m, 'reg_token', None) is not None:
            prefix.append(m.reg_token.expand(x.shape[0], -1, -1))
        n_pos_prefix = 0 if m.no_embed_class else m.num_prefix_tokens
        rule = VFM_ARCHS[self.arch].get('pos')
        if rule is not None:  # the model's own hub rule
            pos = dino_resize_pos_embed(m.pos_embed, tuple(hw), n_pos_prefix,
                                        tuple(m.patch_embed.grid_size), **rule)
        else:
            pos = resize_pos_embed(m.pos_embed, hw, n_pos_prefix,
                                   src_hw=tuple(m.patch_embed.grid_size))
        if m.no_embed_class:
            x = torch.cat(prefix + [x + pos], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + pos
        x = m.norm_pre(x)
        for blk in m.blocks:
            x = blk(x)
        x = m.norm(x)[:, m.num_prefix_tokens:]
        return x.transpose(1, 2).reshape(x.shape[0], -1, *hw)

    def _sam_forward(self, x: Tensor) -> Tensor:
        m = self.model
        x = m.patch_embed(x)  # (B, h, w, C)
        hw = tuple(x.shape[1:3])
        pos = m.pos_embed
        if hw != self.grid:
            # official image_encoder.py rescale_positional_embedding: bicubic, no antialias
            # (interpolated in fp32 here: bicubic in half precision is not supported on every device)
            g = F.interpolate(pos.float().permute(0, 3, 1, 2), size=hw, mode='bicubic',
                              align_corners=False)
            pos = g.permute(0, 2, 3, 1).to(x.dtype)
        x = x + pos
        for blk in m.blocks:
            x = blk(x)  # window attention pads to the window; global blocks resize their rel-pos
        return m.neck(x.permute(0, 3, 1, 2))

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) ImageNet-normalised images -> (B, C, H/p, W/p) fp32 patch features."""
        if x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size:
            raise ValueError(f'VFM input {tuple(x.shape[-2:])} is not a multiple of the patch '
                             f'{self.patch_size}')
        if self.precision == 'fp16':
            x = x.half()
        out = self._sam_forward(x) if self.kind == 'sam' else self._timm_forward(x)
        return out.float()
