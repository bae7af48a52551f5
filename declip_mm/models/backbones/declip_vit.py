"""The decoupled CLIP image tower of DeCLIP (CVPR 2025, arXiv 2505.04410), SPEC §1-2.

Call graph::

    forward(x)                      (B, 3, H, W), H and W multiples of the patch size
      └─ ops.embed                  patch conv, CLS, position embedding resized to (h, w)
      └─ blocks[0 .. L-2]           unchanged (RoPE rebuilt for (h, w) on EVA02)
      └─ _decoupled_last_block      Q, K, V of LN1(X); A·V by attn_mode (SDPA); sub-LN, out-proj, γ1
      └─ ops.head                   final norm + projection on the patch rows -> 'content'
    encode_image(x)                 the untouched CLIP path (normal last block, CLS pooled)

Content = patch rows of the decoupled block's output after the final norm and projection head
(not normalised). Context = the full-width query projection Q (and K in ``kk``/``csa``) of the patch
tokens: bias included, no RoPE, heads concatenated, not normalised.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ...converters import match_state_dict, split_prefix, to_open_clip_state_dict
from ...registry import MODELS
from ...utils import check_local_file, load_weight_file
from ..layers import DECOUPLED_MODES, check_attn_mode, decoupled_attention, resize_pos_embed
from .clip_towers import (build_vision_tower, default_quick_gelu, is_eva_config,
                          resolve_clip_config, tower_ops)

__all__ = ['DeCLIPVisionTransformer']


@MODELS.register_module()
class DeCLIPVisionTransformer(BaseModule):
    """CLIP image tower whose last block is decoupled into content and context (DeCLIP).

    Args:
        model_name (str | dict): open_clip model name (``'ViT-B-16'``, ``'ViT-L-14'``,
            ``'ViT-L-14-336'``, ``'EVA02-B-16'``, ``'EVA02-L-14-336'``) or an open_clip model config dict.
            EVA02 dicts may add ``vision_cfg['timm_model_kwargs']`` to shrink the timm trunk.
        pretrained (str, optional): local weight file, loaded by :meth:`init_weights` (formats: SPEC §1).
            ``None`` keeps the random initialisation.
        attn_mode (str): ``'vanilla'``, ``'maskclip'``, ``'qq'``, ``'kk'`` or ``'csa'``. Defaults to ``'csa'``.
        attn_scale (float, optional): τ of the decoupled attention; ``None`` means 1/√d.
        out_indices (sequence[int]): blocks (0-based, negative allowed, not the last one) whose
            patch tokens are returned as ``'intermediates'``. Defaults to ``()``.
        frozen_stages (int): -1 freezes nothing; 0 freezes the patch embedding, CLS and position
            embedding; k > 0 also freezes blocks 0..k-1. Defaults to -1.
        with_cp (bool): gradient checkpointing of blocks 0..L-2 in training. Defaults to False.
        quick_gelu (bool, optional): activation of OpenAI towers; ``None`` picks QuickGELU for the
            OpenAI model names (their weights were trained with it). Ignored by EVA02.
        check_mode (bool): refuse a checkpoint whose ``meta['attn_mode']`` (a decoupled mode) differs
            from ``attn_mode``. Defaults to True.
        init_cfg (dict, optional): mmengine init config (unused by default).
    """

    def __init__(self,
                 model_name: Union[str, Dict[str, Any]] = 'ViT-B-16',
                 pretrained: Optional[str] = None,
                 attn_mode: str = 'csa',
                 attn_scale: Optional[float] = None,
                 out_indices: Sequence[int] = (),
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 quick_gelu: Optional[bool] = None,
                 check_mode: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.model_name = model_name
        self.model_cfg = resolve_clip_config(model_name)
        self.attn_mode = check_attn_mode(attn_mode)
        self.family = 'eva02' if is_eva_config(self.model_cfg) else 'openai'
        if quick_gelu is None:
            quick_gelu = default_quick_gelu(model_name, self.model_cfg)
        self.quick_gelu = bool(quick_gelu)
        self.visual = build_vision_tower(self.model_cfg, quick_gelu=self.quick_gelu)
        self.ops = tower_ops(self.visual)
        self.embed_dim = int(self.model_cfg['embed_dim'])
        self.width = self.ops.width
        self.num_heads = self.ops.num_heads
        self.head_dim = self.ops.head_dim
        self.patch_size = self.ops.patch_size
        self.depth = len(self.ops.blocks())
        self.attn_scale = float(attn_scale) if attn_scale is not None else self.head_dim ** -0.5
        self.out_indices = self._check_out_indices(out_indices)
        self.frozen_stages = int(frozen_stages)
        if not -1 <= self.frozen_stages <= self.depth:
            raise ValueError(f'frozen_stages must be in [-1, {self.depth}], got {frozen_stages}')
        self.with_cp = bool(with_cp)
        self.check_mode = bool(check_mode)
        if pretrained is not None:
            check_local_file(pretrained, 'pretrained CLIP checkpoint')  # fail fast, load later
        self.pretrained = pretrained
        self.checkpoint_meta: Dict[str, Any] = {}
        self._freeze_stages()

    # ------------------------------------------------------------------------------------------
    def _check_out_indices(self, out_indices: Sequence[int]) -> List[int]:
        out = []
        for i in out_indices:
            j = int(i) + self.depth if int(i) < 0 else int(i)
            if not 0 <= j < self.depth - 1:
                raise ValueError(f'out_indices entry {i} is out of range for a {self.depth}-block '
                                 f'tower (valid: 0..{self.depth - 2}; the last block is decoupled)')
            out.append(j)
        return out

    @property
    def name(self) -> str:
        return self.model_name if isinstance(self.model_name, str) else f'custom {self.family} tower'

    def _stem_params(self):
        v = self.visual
        if self.family == 'eva02':
            t = v.trunk
            mods = [t.patch_embed]
            params = [p for p in (t.cls_token, t.reg_token, t.pos_embed) if p is not None]
        else:
            mods = [v.conv1, v.ln_pre]
            params = [v.class_embedding, v.positional_embedding]
        for m in mods:
            params += list(m.parameters())
        return params

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        for p in self._stem_params():
            p.requires_grad = False
        for blk in list(self.ops.blocks())[:self.frozen_stages]:
            blk.eval()
            for p in blk.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> DeCLIPVisionTransformer:
        super().train(mode)
        if mode and self.frozen_stages > 0:
            for blk in list(self.ops.blocks())[:self.frozen_stages]:
                blk.eval()
        return self

    def lock(self) -> DeCLIPVisionTransformer:
        """Freeze every parameter and switch to eval mode (e.g. a frozen teacher)."""
        for p in self.parameters():
            p.requires_grad = False
        return self.eval()

    # weights -----------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Load ``pretrained`` if given; otherwise keep open_clip/timm's random initialisation.

        Children are deliberately not re-initialised (timm's Eva would re-draw its weights).
        """
        if self.pretrained is not None:
            self.load_pretrained(self.pretrained)
        self._is_init = True

    def load_pretrained(self, path: str) -> Dict[str, Any]:
        """Load the image tower from a local checkpoint of any supported format.

        Returns the checkpoint's ``meta`` (architecture, attn_mode, τ for declip_mm exports).
        """
        raw = load_weight_file(path, 'pretrained CLIP checkpoint')
        sd, flavour, meta = to_open_clip_state_dict(raw)
        self.load_open_clip_state_dict(sd, source=f'{path} ({flavour})', meta=meta)
        print_log(f'loaded {self.name} image tower from {path} ({flavour})', logger='current')
        return meta

    def load_open_clip_state_dict(self, sd: Dict[str, Tensor], source: str = 'state dict',
                                  meta: Optional[Dict[str, Any]] = None) -> None:
        """Load ``visual.*`` weights of an open_clip-layout state dict (strict, with clear errors)."""
        meta = meta or {}
        ckpt_mode = meta.get('attn_mode')
        if (self.check_mode and ckpt_mode in DECOUPLED_MODES and self.attn_mode in DECOUPLED_MODES
                and ckpt_mode != self.attn_mode):
            raise ValueError(f'{source} was trained with attn_mode={ckpt_mode!r} but the backbone is '
                             f'configured with attn_mode={self.attn_mode!r}; set attn_mode to match '
                             '(a mismatch silently ruins results) or check_mode=False to override')
        visual_sd = split_prefix(sd, 'visual.')
        if not visual_sd:
            raise ValueError(f'{source} holds no image-tower (visual.*) weights')
        pos_key = 'trunk.pos_embed' if self.family == 'eva02' else 'positional_embedding'
        n_prefix = 0 if self.family == 'eva02' and self.visual.trunk.no_embed_class \
            else self.ops.num_prefix_tokens
        grid = self.ops.pretrained_grid

        def _resize_pos(v: Tensor, shape: torch.Size) -> Optional[Tensor]:
            if v.dim() != len(shape) or v.shape[-1] != shape[-1]:
                return None  # another width: an architecture mismatch, not a grid change
            try:
                out = resize_pos_embed(v, grid, n_prefix)
            except ValueError:
                return None
            if out.shape != shape:
                return None
            print_log(f'resized checkpoint position embedding {tuple(v.shape)} -> {tuple(shape)}',
                      logger='current', level=logging.WARNING)
            return out

        to_load, _, unexpected = match_state_dict(
            self.visual, visual_sd, f'{self.name} image tower (from {source})',
            resize={pos_key: _resize_pos})
        # fixed buffers (RoPE tables of DeCLIP releases, causal masks) are rebuilt, not loaded; any
        # other extra key (e.g. blocks beyond this tower's depth) is another architecture
        extra = [k for k in unexpected if not k.endswith(('freqs_cos', 'freqs_sin', 'attn_mask'))
                 and not k.startswith('rope.')]
        if extra:
            raise ValueError(
                f'checkpoint does not fit the image tower ({self.name}; from {source}): '
                f'{len(extra)} unexpected key(s): {", ".join(sorted(extra)[:10])}'
                f'{" ..." if len(extra) > 10 else ""}. Is this a checkpoint of another architecture '
                '(more blocks, another width)? Check model_name.')
        if unexpected:
            print_log(f'{source}: ignored {len(unexpected)} fixed buffer(s): '
                      f'{", ".join(sorted(unexpected)[:10])}', logger='current',
                      level=logging.WARNING)
        self.visual.load_state_dict(to_load, strict=False)
        self.checkpoint_meta = dict(meta)

    # forward -----------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f'expected images of shape (B, 3, H, W), got {tuple(x.shape)}')
        ph, pw = self.patch_size
        if x.shape[-2] % ph or x.shape[-1] % pw:
            raise ValueError(f'image size {tuple(x.shape[-2:])} is not a multiple of the patch size '
                             f'{self.patch_size}; pad or resize the input first')

    def _run_blocks(self, x: Tensor, rope: Optional[Tensor], hw, collect: bool):
        inter = []
        blocks = self.ops.blocks()
        for i in range(self.depth - 1):
            blk = blocks[i]
            if self.with_cp and self.training and x.requires_grad:
                x = checkpoint(self.ops.run_block, blk, x, rope, use_reentrant=False)
            else:
                x = self.ops.run_block(blk, x, rope)
            if collect and i in self.out_indices:
                inter.append(self._to_map(x[:, self.ops.num_prefix_tokens:], hw))
        return x, inter

    @staticmethod
    def _to_map(tokens: Tensor, hw) -> Tensor:
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], hw[0], hw[1])

    def _split_heads(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, -1).transpose(1, 2)

    def _decoupled_last_block(self, x: Tensor, rope: Optional[Tensor]) -> Dict[str, Tensor]:
        blk = self.ops.blocks()[-1]
        q, k, v = self.ops.qkv(blk, self.ops.ln1(blk, x))
        out = {'q': q, 'k': k}
        if self.attn_mode == 'vanilla':
            out['tokens'] = self.ops.run_block(blk, x, rope)
            return out
        o = decoupled_attention(self._split_heads(q), self._split_heads(k), self._split_heads(v),
                                self.attn_mode, self.attn_scale)
        o = o.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        o = self.ops.attn_out(blk, o)
        if self.attn_mode == 'maskclip':
            o = self.ops.ffn(blk, x + o)
        out['tokens'] = o
        return out

    def forward(self, x: Tensor) -> Dict[str, Any]:
        """Dense features.

        Args:
            x (Tensor): (B, 3, H, W) normalised images, H and W multiples of the patch size.

        Returns:
            dict: ``'content'`` (B, E, h, w) not normalised; ``'context_q'`` (B, D, h, w);
            ``'context_k'`` (B, D, h, w) in ``kk``/``csa`` modes; ``'intermediates'``: list of
            (B, D, h, w) for ``out_indices``.
        """
        self._check_input(x)
        tokens, hw = self.ops.embed(x)
        rope = self.ops.rope(hw, tokens)
        tokens, inter = self._run_blocks(tokens, rope, hw, collect=True)
        last = self._decoupled_last_block(tokens, rope)
        npt = self.ops.num_prefix_tokens
        content = self.ops.head(last['tokens'][:, npt:])
        out: Dict[str, Any] = {
            'content': self._to_map(content, hw),
            'context_q': self._to_map(last['q'][:, npt:], hw),
        }
        if self.attn_mode in ('kk', 'csa'):
            out['context_k'] = self._to_map(last['k'][:, npt:], hw)
        out['intermediates'] = inter
        return out

    def encode_image(self, x: Tensor, normalize: bool = False) -> Tensor:
        """The unchanged CLIP image embedding (normal last block, CLS token), (B, E).

        Equal to open_clip's ``model.encode_image`` on the same weights at the native resolution; other
        resolutions use the resized position embedding (and rebuilt RoPE).
        """
        self._check_input(x)
        tokens, hw = self.ops.embed(x)
        rope = self.ops.rope(hw, tokens)
        tokens, _ = self._run_blocks(tokens, rope, hw, collect=False)
        tokens = self.ops.run_block(self.ops.blocks()[-1], tokens, rope)
        emb = self.ops.head(tokens[:, :1])[:, 0]
        return nn.functional.normalize(emb, dim=-1) if normalize else emb

    def extra_repr(self) -> str:
        return (f'model={self.name!r}, family={self.family}, attn_mode={self.attn_mode!r}, '
                f'attn_scale={self.attn_scale:.6g}, out_indices={self.out_indices}')
