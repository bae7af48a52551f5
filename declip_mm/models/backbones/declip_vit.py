"""The decoupled CLIP image tower of DeCLIP (CVPR 2025, arXiv 2505.04410), docs/method.md §1.

Call graph::

    forward(x)                      (B, 3, H, W), H and W multiples of the patch size
      └─ ops.embed                  patch conv, CLS, position embedding resized to (h, w)
      └─ blocks[0 .. L-2]           unchanged (RoPE rebuilt for (h, w) on EVA02)
           └─ _decoupled_side       decouple_last = k > 1: blocks L-k .. L-2 also give their
                                    context Q, K and decoupled content as side outputs
      └─ _decoupled_last_block      Q, K, V of LN1(X); A·V by attn_mode (SDPA); sub-LN, out-proj, γ1
      └─ ops.head                   final norm + projection on the patch rows -> 'content'
    encode_image(x)                 the untouched CLIP path (normal last block, pooled as the tower)

``out_type='dict'`` (default, declip_mm's own models) returns the named outputs below;
``out_type='featmap'`` returns a tuple of (B, C, h, w) maps, one per ``out_indices`` entry, for the
necks of mmseg / mmdet configs (optionally resampled ViTDet-style by ``out_scales``).

Content = patch rows of the decoupled block's output after the final norm and projection head
(not normalised). Context = the full-width query projection Q (and K in ``kk``/``csa``) of the patch
tokens: bias included, no RoPE, heads concatenated, not normalised.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ...converters import match_state_dict, split_prefix, to_open_clip_state_dict
from ...registry import MODELS
from ...utils import check_local_file, load_weight_file
from ..checkpoint_policy import check_mode_pair
from ..layers import DECOUPLED_MODES, decoupled_attention, resize_pos_embed
from ..layers.proxy_attention import PROXY_MODE, check_backbone_mode, proxy_attention
from ..necks import SimplePyramidResampler, check_pyramid_scales
from .clip_towers import build_vision_tower, default_quick_gelu, is_eva_config, resolve_clip_config, tower_ops
from .dense_outputs import DenseOutputs

__all__ = ['DeCLIPVisionTransformer']

OUT_TYPES = ('dict', 'featmap')


@MODELS.register_module()
class DeCLIPVisionTransformer(BaseModule):
    """CLIP image tower whose last block is decoupled into content and context (DeCLIP).

    Args:
        model_name (str | dict): open_clip model name (``'ViT-B-16'``, ``'ViT-L-14'``,
            ``'ViT-L-14-336'``, ``'EVA02-B-16'``, ``'EVA02-L-14-336'``) or an open_clip model config dict.
            EVA02 dicts may add ``vision_cfg['timm_model_kwargs']`` to shrink the timm trunk.
        pretrained (str, optional): local weight file, loaded by :meth:`init_weights` (docs/method.md §1).
            ``None`` keeps the random initialisation.
        attn_mode (str): ``'vanilla'``, ``'maskclip'``, ``'qq'``, ``'kk'``, ``'csa'`` or ``'proxy'``
            (ProxyCLIP's test-time attention from a VFM's features, docs/method.md §7: ``forward``
            then needs ``proxy_feats``; ``DeCLIPProxySegmentor`` supplies them). Defaults to ``'csa'``.
        proxy_beta (float): β of ``'proxy'`` (shift of the VFM correlation). Defaults to 1.2.
        proxy_gamma (float): γ of ``'proxy'`` (scale of the shifted correlation). Defaults to 3.0.
        pos_embed_offset (float): OpenAI towers: 0 (default) resizes the position embedding
            bicubically to the token grid (docs/method.md §1); 0.1 uses ``scale_factor = (n + 0.1)/M``
            as ProxyCLIP's open_clip copy (``interpolate_pos_encoding``; the ProxyCLIP configs, §7).
        attn_scale (float | None | str): τ of the decoupled attention. A number, or ``None`` for
            1/√d, is used whatever the loaded checkpoint says (a warning names a different τ stored
            in its meta). ``'auto'`` (default) takes the τ stored in the ``pretrained`` file's meta
            (declip_mm exports and training checkpoints carry the τ they were trained with), and
            ``default_attn_scale`` when the file stores none (or before a file is loaded).
        default_attn_scale (float, optional): τ of ``'auto'`` when no τ is stored; ``None`` means
            1/√d. The CAT-Seg and F-ViT configs on EVA02 set 1.0 (DeCLIP's EVA training code and its
            CAT-Seg branch use τ = 1; ``eva_vit_model.py`` ``ss_attn`` has the scale commented out).
        out_indices (sequence[int]): blocks (0-based, negative allowed, no duplicates) whose patch
            tokens are returned: as ``'intermediates'`` (dict, block order; the last block is not
            allowed) or as the maps of the tuple (featmap, in the given order). In featmap mode the
            last block's index (``depth - 1`` or ``-1``) may be the **last** entry and stands for the
            decoupled content map (B, E, h, w); the other maps have the tower width D.
            Defaults to ``()``.
        out_type (str): ``'dict'`` (named outputs, see :meth:`forward`) or ``'featmap'`` (tuple of
            maps for mmseg/mmdet necks). Defaults to ``'dict'``.
        out_scales (sequence[float], optional): featmap only; one resampling factor per
            ``out_indices`` entry (powers of two in [1/8, 8]): ViTDet's simple pyramid, i.e. learned
            2x transposed convs for > 1, identity for 1, max-pooling for < 1 (see
            :class:`SimplePyramidResampler`). ``(4.0, 2.0, 1.0, 0.5)`` on a /16 tower gives strides
            4, 8, 16, 32. ``None`` returns every map at the patch stride.
        frozen_stages (int): -1 freezes nothing; 0 freezes the patch embedding, CLS and position
            embedding; k > 0 also freezes blocks 0..k-1; ``depth`` freezes the whole tower including
            the final norm and projection (F-ViT's frozen CLIP; the resampler stays trainable).
            Defaults to -1.
        with_cp (bool): gradient checkpointing of blocks 0..L-2 in training. Defaults to False.
        quick_gelu (bool, optional): activation of OpenAI towers; ``None`` picks QuickGELU for the
            OpenAI model names (their weights were trained with it). Ignored by EVA02.
        decouple_last (int): k, the number of decoupled blocks (an option beyond the paper,
            docs/method.md §6). Blocks L-k .. L-2 stay normal blocks on the main path and also give
            a side output: their context Q/K and their decoupled content (decoupled attention with
            the block's residual and FFN); the last block is decoupled as with k = 1. Defaults to 1
            (the paper; the outputs are then exactly those without the option).
        check_mode (bool): check the checkpoint's ``meta['attn_mode']`` against ``attn_mode``: the
            same mode or ``csa`` evaluation of a ``qq``/``kk`` checkpoint (info line) pass, other
            decoupled pairs are refused (table in ``models/checkpoint_policy.py``). Defaults to True.
        maskclip_residual (str): residual of the last block in ``maskclip`` mode: ``'token'``
            (default: each token's own, ``ffn(x + out_proj(v))``) or ``'cls'`` (the class token's
            for every token, ``ffn(x_cls + out_proj(v))``, as KU-CVLAB CAT-Seg's OpenAI
            ``ResidualAttentionBlock.forward_dense``, ``v = v.transpose(1, 0) + x[:1]``).
        init_cfg (dict, optional): mmengine init config (unused by default).
    """

    def __init__(self,
                 model_name: Union[str, Dict[str, Any]] = 'ViT-B-16',
                 pretrained: Optional[str] = None,
                 attn_mode: str = 'csa',
                 attn_scale: Union[float, str, None] = 'auto',
                 default_attn_scale: Optional[float] = None,
                 out_indices: Sequence[int] = (),
                 out_type: str = 'dict',
                 out_scales: Optional[Sequence[float]] = None,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 quick_gelu: Optional[bool] = None,
                 check_mode: bool = True,
                 decouple_last: int = 1,
                 maskclip_residual: str = 'token',
                 proxy_beta: float = 1.2,
                 proxy_gamma: float = 3.0,
                 pos_embed_offset: float = 0.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.model_name = model_name
        self.model_cfg = resolve_clip_config(model_name)
        self.attn_mode = check_backbone_mode(attn_mode)
        self.proxy_beta = float(proxy_beta)
        self.proxy_gamma = float(proxy_gamma)
        self.family = 'eva02' if is_eva_config(self.model_cfg) else 'openai'
        if quick_gelu is None:
            quick_gelu = default_quick_gelu(model_name, self.model_cfg)
        self.quick_gelu = bool(quick_gelu)
        self.visual = build_vision_tower(self.model_cfg, quick_gelu=self.quick_gelu)
        self.ops = tower_ops(self.visual)
        if pos_embed_offset and self.family != 'openai':
            raise ValueError('pos_embed_offset applies to OpenAI-layout towers only (EVA02 keeps '
                             'the bicubic resize to the grid size)')
        self.pos_embed_offset = float(pos_embed_offset)
        self.ops.pos_offset = self.pos_embed_offset
        self.embed_dim = int(self.model_cfg['embed_dim'])
        self.width = self.ops.width
        self.num_heads = self.ops.num_heads
        self.head_dim = self.ops.head_dim
        self.patch_size = self.ops.patch_size
        self.depth = len(self.ops.blocks())
        self._set_attn_scale(attn_scale, default_attn_scale)
        if maskclip_residual not in ('token', 'cls'):
            raise ValueError(f"maskclip_residual must be 'token' or 'cls', got {maskclip_residual!r}")
        if maskclip_residual == 'cls' and (self.attn_mode != 'maskclip'
                                           or self.ops.num_prefix_tokens != 1):
            raise ValueError("maskclip_residual='cls' needs attn_mode='maskclip' and a tower with "
                             f"one class token (got {self.attn_mode!r}, "
                             f"{self.ops.num_prefix_tokens} prefix tokens)")
        self.maskclip_residual = maskclip_residual
        if out_type not in OUT_TYPES:
            raise ValueError(f'unknown out_type {out_type!r}; choose one of {OUT_TYPES}')
        self.out_type = out_type
        self.out_indices = self._check_out_indices(out_indices)
        self.with_content_map = out_type == 'featmap' and self.depth - 1 in self.out_indices
        self.out_channels = [self.embed_dim if i == self.depth - 1 else self.width
                             for i in self.out_indices]
        self.resampler = self._build_resampler(out_scales)
        self.frozen_stages = int(frozen_stages)
        if not -1 <= self.frozen_stages <= self.depth:
            raise ValueError(f'frozen_stages must be in [-1, {self.depth}], got {frozen_stages}')
        self.with_cp = bool(with_cp)
        self.check_mode = bool(check_mode)
        if not 1 <= int(decouple_last) <= self.depth:
            raise ValueError(f'decouple_last must be in [1, {self.depth}] for a {self.depth}-block '
                             f'tower, got {decouple_last}')
        self.decouple_last = int(decouple_last)
        if self.attn_mode == PROXY_MODE and self.decouple_last > 1:
            raise ValueError("attn_mode='proxy' is a test-time mode of the last block; it does not "
                             'combine with decouple_last > 1')
        if pretrained is not None:
            check_local_file(pretrained, 'pretrained CLIP checkpoint')  # fail fast, load later
        self.pretrained = pretrained
        self.checkpoint_meta: Dict[str, Any] = {}
        self._freeze_stages()

    # ------------------------------------------------------------------------------------------
    def _set_attn_scale(self, attn_scale: Union[float, str, None],
                        default_attn_scale: Optional[float]) -> None:
        self.attn_scale_auto = isinstance(attn_scale, str)
        if self.attn_scale_auto and attn_scale != 'auto':
            raise ValueError(f"attn_scale must be a number, None (1/sqrt(d)) or 'auto', "
                             f'got {attn_scale!r}')
        value = default_attn_scale if self.attn_scale_auto else attn_scale
        if value is not None and not float(value) > 0:
            raise ValueError(f'attention scale must be positive, got {value!r}')
        self.default_attn_scale = default_attn_scale
        self.attn_scale = float(value) if value is not None else self.head_dim ** -0.5
        self.attn_scale_source = 'default' if self.attn_scale_auto else 'config'

    def _apply_stored_attn_scale(self, meta: Dict[str, Any], source: str) -> None:
        """τ of a loaded checkpoint: taken under ``attn_scale='auto'``, otherwise compared."""
        stored = meta.get('attn_scale')
        if isinstance(stored, bool) or not isinstance(stored, (int, float)) or not stored > 0:
            return  # nothing (or nothing usable) stored: the config's / default τ stays
        stored = float(stored)
        if self.attn_scale_auto:
            self.attn_scale = stored
            self.attn_scale_source = 'checkpoint'
            print_log(f'attention scale tau = {stored:.6g} from the meta of {source}',
                      logger='current', level=logging.INFO)
        elif abs(stored - self.attn_scale) > 1e-6 * max(stored, self.attn_scale):
            print_log(f'{source} was trained with attention scale tau = {stored:.6g} but the config '
                      f'sets attn_scale = {self.attn_scale:.6g}; using the config value (leave '
                      "attn_scale unset, i.e. 'auto', to use the checkpoint's)",
                      logger='current', level=logging.WARNING)

    def _check_out_indices(self, out_indices: Sequence[int]) -> List[int]:
        out = []
        featmap = self.out_type == 'featmap'
        last = self.depth - 1
        for n, i in enumerate(out_indices):
            j = int(i) + self.depth if int(i) < 0 else int(i)
            if featmap and j == last:
                if n != len(out_indices) - 1:
                    raise ValueError(f'out_indices entry {i} (the last block, i.e. the content map) '
                                     'must be the last entry of out_indices')
            elif j == last:  # not featmap (handled above)
                raise ValueError(
                    f'out_indices entry {i} is the last block, whose output is the decoupled content '
                    f"map: that is an output of out_type='featmap' (as the last out_indices entry); "
                    f"with out_type={self.out_type!r} the content map is the 'content' output and "
                    f'out_indices takes blocks 0..{last - 1}')
            elif not 0 <= j < last:
                hint = (f'0..{last - 1}, or {last} / -1 as the last entry for the content map'
                        if featmap else f'0..{last - 1}; the last block is decoupled, its output is '
                        "'content'")
                raise ValueError(f'out_indices entry {i} is out of range for a {self.depth}-block '
                                 f'tower (valid: {hint})')
            if j in out:
                raise ValueError(f'out_indices has block {j} twice: {tuple(out_indices)}')
            out.append(j)
        if featmap and not out:
            raise ValueError("out_type='featmap' needs at least one out_indices entry")
        return out

    def _build_resampler(self, out_scales: Optional[Sequence[float]]
                         ) -> Optional[SimplePyramidResampler]:
        if out_scales is None:
            return None
        if self.out_type != 'featmap':
            raise ValueError("out_scales only applies to out_type='featmap' "
                             f'(out_type is {self.out_type!r})')
        scales = check_pyramid_scales(out_scales, 'out_scales')
        if len(scales) != len(self.out_indices):
            raise ValueError(f'out_scales has {len(scales)} entries but out_indices has '
                             f'{len(self.out_indices)}; give one scale per output map')
        return SimplePyramidResampler(self.out_channels, scales)

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
        if self.frozen_stages == self.depth:  # the whole tower, final norm and projection too
            self.visual.eval()
            self.visual.requires_grad_(False)
            return
        for p in self._stem_params():
            p.requires_grad = False
        for blk in list(self.ops.blocks())[:self.frozen_stages]:
            blk.eval()
            for p in blk.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> DeCLIPVisionTransformer:
        super().train(mode)
        if mode and self.frozen_stages == self.depth:
            self.visual.eval()
        elif mode and self.frozen_stages > 0:
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
        if self.check_mode and meta.get('attn_mode') in DECOUPLED_MODES:
            # allowed (trained, evaluated) pairs: the table in models/checkpoint_policy.py
            info = check_mode_pair(meta['attn_mode'], self.attn_mode, source)
            if info:
                print_log(info, logger='current', level=logging.INFO)
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
        self._apply_stored_attn_scale(meta, source)
        self.checkpoint_meta = dict(meta)

    # forward -----------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f'expected images of shape (B, 3, H, W), got {tuple(x.shape)}')
        ph, pw = self.patch_size
        if x.shape[-2] % ph or x.shape[-1] % pw:
            raise ValueError(f'image size {tuple(x.shape[-2:])} is not a multiple of the patch size '
                             f'{self.patch_size}; pad or resize the input first')

    def _run_blocks(self, x: Tensor, rope: Optional[Tensor], hw, collect: bool,
                    sides: Optional[List[Dict[str, Tensor]]] = None):
        inter = []
        first_side = self.depth - self.decouple_last
        blocks = self.ops.blocks()
        for i in range(self.depth - 1):
            blk = blocks[i]
            if sides is not None and i >= first_side:
                sides.append(self._decoupled_side(blk, x, rope))  # from the block's input
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

    def _decoupled_side(self, blk: nn.Module, x: Tensor, rope: Optional[Tensor]) -> Dict[str, Tensor]:
        """Side output of an earlier decoupled block (``decouple_last`` > 1) from its input X.

        ``'q'``, ``'k'``: Q, K of LN1(X) (bias, no RoPE), as for the last block. ``'tokens'``: the
        decoupled content X' = X + attn_out(A·V), then X' + FFN(X') -- the block with its attention
        replaced by the decoupled one, residual and FFN kept (the main path goes on with the normal
        block output). ``vanilla`` gives the normal block output.
        """
        q, k, v = self.ops.qkv(blk, self.ops.ln1(blk, x))
        if self.attn_mode == 'vanilla':
            return {'q': q, 'k': k, 'tokens': self.ops.run_block(blk, x, rope)}
        o = decoupled_attention(self._split_heads(q), self._split_heads(k), self._split_heads(v),
                                self.attn_mode, self.attn_scale)
        o = self.ops.attn_out(blk, o.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))
        return {'q': q, 'k': k, 'tokens': self.ops.ffn(blk, x + o)}

    def _side_outputs(self, sides: List[Dict[str, Tensor]], hw) -> Dict[str, List[Tensor]]:
        """Maps of the side outputs, blocks L-k .. L-2 in order (patch tokens only)."""
        npt = self.ops.num_prefix_tokens
        out = {'context_q_blocks': [self._to_map(s['q'][:, npt:], hw) for s in sides],
               'content_blocks': [self._to_map(s['tokens'][:, npt:], hw) for s in sides]}
        if self.attn_mode in ('kk', 'csa'):
            out['context_k_blocks'] = [self._to_map(s['k'][:, npt:], hw) for s in sides]
        return out

    def _decoupled_last_block(self, x: Tensor, rope: Optional[Tensor],
                              proxy_feats: Optional[Tensor] = None, hw=None) -> Dict[str, Tensor]:
        blk = self.ops.blocks()[-1]
        q, k, v = self.ops.qkv(blk, self.ops.ln1(blk, x))
        out = {'q': q, 'k': k}
        if self.attn_mode == PROXY_MODE:  # patch rows only, on the VFM grid (docs/method.md §7)
            if proxy_feats is None:
                raise ValueError("attn_mode='proxy' needs the VFM features of the same images: "
                                 'call the backbone with proxy_feats=(B, C, H, W) (the '
                                 'DeCLIPProxySegmentor does this)')
            o = proxy_attention(proxy_feats.to(v.dtype), v[:, self.ops.num_prefix_tokens:], hw,
                                self.proxy_beta, self.proxy_gamma)
            out['tokens'] = self.ops.attn_out(blk, o)
            out['hw'] = tuple(proxy_feats.shape[-2:])
            return out
        if self.attn_mode == 'vanilla':
            out['tokens'] = self.ops.run_block(blk, x, rope)
            return out
        o = decoupled_attention(self._split_heads(q), self._split_heads(k), self._split_heads(v),
                                self.attn_mode, self.attn_scale)
        o = o.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        o = self.ops.attn_out(blk, o)
        if self.attn_mode == 'maskclip':
            res = x[:, :1] if self.maskclip_residual == 'cls' else x
            o = self.ops.ffn(blk, res + o)
        out['tokens'] = o
        return out

    def forward(self, x: Tensor, proxy_feats: Optional[Tensor] = None
                ) -> Union[Dict[str, Any], Tuple[Tensor, ...]]:
        """Dense features.

        Args:
            x (Tensor): (B, 3, H, W) normalised images, H and W multiples of the patch size.
            proxy_feats (Tensor, optional): (B, C, H', W') VFM features of the same images, needed
                by (and only used in) ``attn_mode='proxy'``; the content map then has their grid.

        Returns:
            dict (``out_type='dict'``): ``'content'`` (B, E, h, w) not normalised; ``'context_q'``
            (B, D, h, w); ``'context_k'`` (B, D, h, w) in ``kk``/``csa`` modes; ``'intermediates'``:
            list of (B, D, h, w) for ``out_indices``. With ``decouple_last`` = k > 1 also
            ``'context_q_blocks'`` (and ``'context_k_blocks'`` in ``kk``/``csa``): lists of k-1
            (B, D, h, w) maps of blocks L-k .. L-2, and ``'content_blocks'``: their decoupled
            content (B, D, h, w) (width D, before the final norm and head).

            tuple (``out_type='featmap'``): one map per ``out_indices`` entry, (B, D, h·s, w·s) for a
            block and (B, E, h·s, w·s) for the content map, s the entry's ``out_scales`` factor (1 if
            not given). Channels: :attr:`out_channels`.
        """
        if self.out_type == 'dict':  # a dict whose tuple-style indexing names the fix
            return DenseOutputs(self._forward_dict(x, proxy_feats=proxy_feats))
        return self.forward_featmaps(x)[0]

    def forward_featmaps(self, x: Tensor, need_content: bool = False
                         ) -> Tuple[Tuple[Tensor, ...], Optional[Tensor]]:
        """The featmap outputs and the unresampled content map (for an RoI-aligned CLIP score).

        Args:
            x (Tensor): (B, 3, H, W) images.
            need_content (bool): compute the content map even if ``out_indices`` does not ask for it.

        Returns:
            tuple: (maps as :meth:`forward` in featmap mode, content (B, E, h, w) at the patch stride,
            or ``None`` when neither ``out_indices`` nor ``need_content`` asks for it).
        """
        if self.out_type != 'featmap':
            raise ValueError("forward_featmaps needs out_type='featmap'")
        out = self._forward_dict(x, decoupled=self.with_content_map or need_content)
        blocks = sorted(i for i in self.out_indices if i != self.depth - 1)
        by_block = dict(zip(blocks, out['intermediates']))
        content = out.get('content')
        maps = tuple(content if i == self.depth - 1 else by_block[i] for i in self.out_indices)
        if self.resampler is not None:
            maps = self.resampler(maps)
        return maps, content

    def _forward_dict(self, x: Tensor, decoupled: bool = True,
                      proxy_feats: Optional[Tensor] = None) -> Dict[str, Any]:
        self._check_input(x)
        tokens, hw = self.ops.embed(x)
        rope = self.ops.rope(hw, tokens)
        sides = [] if self.decouple_last > 1 and decoupled else None
        tokens, inter = self._run_blocks(tokens, rope, hw, collect=True, sides=sides)
        if not decoupled:  # featmap outputs of blocks only: the last block is not needed
            return {'intermediates': inter}
        last = self._decoupled_last_block(tokens, rope, proxy_feats, hw)
        npt = self.ops.num_prefix_tokens
        if 'hw' in last:  # proxy: patch rows on the VFM grid
            content = self._to_map(self.ops.head(last['tokens']), last['hw'])
        else:
            content = self._to_map(self.ops.head(last['tokens'][:, npt:]), hw)
        out: Dict[str, Any] = {
            'content': content,
            'context_q': self._to_map(last['q'][:, npt:], hw),
        }
        if self.attn_mode in ('kk', 'csa'):
            out['context_k'] = self._to_map(last['k'][:, npt:], hw)
        out['intermediates'] = inter
        if sides is not None:
            out.update(self._side_outputs(sides, hw))
        return out

    def encode_image(self, x: Tensor, normalize: bool = False) -> Tensor:
        """The unchanged CLIP image embedding (normal last block, pooled as the tower pools: the CLS
        token, or the mean of the patch tokens for an EVA trunk with ``timm_pool='avg'``), (B, E).

        Equal to open_clip's ``model.encode_image`` on the same weights at the native resolution; other
        resolutions use the resized position embedding (and rebuilt RoPE).
        """
        self._check_input(x)
        tokens, hw = self.ops.embed(x)
        rope = self.ops.rope(hw, tokens)
        tokens, _ = self._run_blocks(tokens, rope, hw, collect=False)
        last = self.ops.blocks()[-1]
        if self.ops.global_pool == 'token' and not (self.training and torch.is_grad_enabled()):
            # only the CLS row is pooled: the other rows of the last block are not computed
            tokens = self.ops.run_block_cls(last, tokens, rope)
        else:  # dropout / drop-path, or a pool over the patch rows: the block as it is
            tokens = self.ops.pool(self.ops.run_block(last, tokens, rope))
        emb = self.ops.head(tokens)[:, 0]
        return nn.functional.normalize(emb, dim=-1) if normalize else emb

    def extra_repr(self) -> str:
        return (f'model={self.name!r}, family={self.family}, attn_mode={self.attn_mode!r}, '
                f'attn_scale={self.attn_scale:.6g} ({self.attn_scale_source}), out_indices={self.out_indices}, '
                f'out_type={self.out_type!r}, decouple_last={self.decouple_last}')
