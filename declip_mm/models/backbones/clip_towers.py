"""Building CLIP towers from open_clip model configs, and the per-family operations the decoupled
backbone needs (embedding, blocks, q/k/v of the last block, final norm and projection head).

Two families (docs/method.md §1):

* **OpenAI-CLIP** (``ViT-B-16``, ``ViT-L-14``, ``ViT-L-14-336``): open_clip ``VisionTransformer`` with a
  fused ``in_proj`` (q/k/v with biases), ``out_proj``, ``ln_post`` and a ``proj`` matrix.
* **EVA02-CLIP** (``EVA02-B-16``, ``EVA02-L-14-336``): a timm ``Eva`` trunk (separate q/k/v, q and v
  biased, k not; sub-LN before the output projection; 2-D RoPE; SwiGLU), wrapped like open_clip's
  ``TimmModel`` so its keys are ``visual.trunk.*``.

Model configs are open_clip's format (``embed_dim``, ``vision_cfg``, ``text_cfg``). An EVA02 config may
carry ``vision_cfg['timm_model_kwargs']`` (``embed_dim``, ``depth``, ``num_heads``, ``img_size``,
``patch_size``, ...) to build tiny test towers from a named timm architecture.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from ..layers import eva_rope_sincos, resize_pos_embed, rope_patch_rows
from ..layers.lean_mlp import swiglu_inplace
from .eva_block_check import written_out_block_verified

__all__ = ['OPENAI_CLIP_NAMES', 'resolve_clip_config', 'is_eva_config', 'EvaVisionTower',
           'build_vision_tower', 'build_text_tower', 'default_quick_gelu', 'tower_ops']

#: open_clip model names whose weights are OpenAI's (trained with QuickGELU)
OPENAI_CLIP_NAMES = ('ViT-B-16', 'ViT-B-32', 'ViT-L-14', 'ViT-L-14-336')


def resolve_clip_config(model_name: Union[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Return a deep copy of an open_clip model config: its name, a JSON file holding one (handy on
    the command line: ``--cfg-options model.backbone.model_name=tiny.json``), or the dict itself."""
    if isinstance(model_name, str) and model_name.endswith('.json'):
        import json
        import os
        if not os.path.isfile(model_name):
            raise FileNotFoundError(f'model config file not found: {model_name!r}')
        with open(model_name) as f:
            model_name = json.load(f)
    if isinstance(model_name, dict):
        cfg = copy.deepcopy(dict(model_name))
    elif isinstance(model_name, str):
        import open_clip
        cfg = open_clip.get_model_config(model_name)
        if cfg is None:
            raise ValueError(f'unknown open_clip model name {model_name!r}; use e.g. ViT-B-16, '
                             'ViT-L-14, ViT-L-14-336, EVA02-B-16, EVA02-L-14-336, or pass a config dict')
        cfg = copy.deepcopy(cfg)
    else:
        raise TypeError(f'model_name must be a str or a dict, got {type(model_name).__name__}')
    for key in ('embed_dim', 'vision_cfg'):
        if key not in cfg:
            raise ValueError(f'model config lacks {key!r}: {cfg}')
    return cfg


def is_eva_config(cfg: Dict[str, Any]) -> bool:
    return bool(cfg['vision_cfg'].get('timm_model_name'))


def default_quick_gelu(model_name: Union[str, Dict[str, Any]], cfg: Dict[str, Any]) -> bool:
    """OpenAI weights were trained with QuickGELU; open_clip's plain configs say GELU."""
    if 'quick_gelu' in cfg:
        return bool(cfg['quick_gelu'])
    return isinstance(model_name, str) and model_name in OPENAI_CLIP_NAMES


class EvaVisionTower(nn.Module):
    """open_clip ``TimmModel``-compatible wrapper (keys ``trunk.*``) around a timm Eva trunk.

    Built from the config without creating the full-size trunk first, so tiny overrides are cheap.
    """

    def __init__(self, embed_dim: int, vision_cfg: Dict[str, Any]) -> None:
        super().__init__()
        import timm
        if vision_cfg.get('timm_proj') not in (None, 'none', ''):
            raise ValueError('only EVA towers whose projection is the timm head (timm_proj=None) '
                             'are supported')
        kwargs = dict(vision_cfg.get('timm_model_kwargs') or {})
        kwargs.setdefault('img_size', vision_cfg.get('image_size', 224))
        self.trunk = timm.create_model(vision_cfg['timm_model_name'], pretrained=False,
                                       num_classes=embed_dim,
                                       global_pool=vision_cfg.get('timm_pool', 'token'), **kwargs)
        self.head = nn.Sequential()  # open_clip's (empty) adapter head, kept for key parity

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))


def build_vision_tower(cfg: Dict[str, Any], quick_gelu: bool = False) -> nn.Module:
    if is_eva_config(cfg):
        return EvaVisionTower(cfg['embed_dim'], cfg['vision_cfg'])
    from open_clip.model import _build_vision_tower
    visual = _build_vision_tower(cfg['embed_dim'], cfg['vision_cfg'], quick_gelu=quick_gelu)
    if getattr(visual, 'attn_pool', None) is not None or getattr(visual, 'pool_type', 'tok') != 'tok':
        raise ValueError('only CLS-token pooled CLIP towers are supported')
    return visual


def build_text_tower(cfg: Dict[str, Any], quick_gelu: bool = False) -> nn.Module:
    from open_clip.model import _build_text_tower
    if 'text_cfg' not in cfg:
        raise ValueError('model config has no text_cfg')
    return _build_text_tower(cfg['embed_dim'], cfg['text_cfg'], quick_gelu=quick_gelu)


class _TowerOps(ABC):
    """Family-specific pieces of a CLIP image tower. Holds no parameters of its own."""

    num_prefix_tokens = 1
    #: which rows of the last block's output the image embedding pools (:meth:`pool`)
    global_pool = 'token'

    def __init__(self, visual: nn.Module) -> None:
        self.visual = visual

    # geometry ---------------------------------------------------------------------------------
    patch_size: Tuple[int, int]
    width: int
    num_heads: int

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    # pieces -----------------------------------------------------------------------------------
    @abstractmethod
    def blocks(self) -> nn.ModuleList:
        """See the subclasses."""

    @abstractmethod
    def embed(self, x: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
        """See the subclasses."""

    def rope(self, hw: Tuple[int, int], x: Tensor) -> Optional[Tensor]:
        return None

    @abstractmethod
    def run_block(self, blk: nn.Module, x: Tensor, rope: Optional[Tensor]) -> Tensor:
        """See the subclasses."""

    @abstractmethod
    def ln1(self, blk: nn.Module, x: Tensor) -> Tensor:
        """See the subclasses."""

    @abstractmethod
    def qkv(self, blk: nn.Module, y: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """See the subclasses."""

    @abstractmethod
    def attn_out(self, blk: nn.Module, o: Tensor) -> Tensor:
        """See the subclasses."""

    @abstractmethod
    def ffn(self, blk: nn.Module, x: Tensor) -> Tensor:
        """See the subclasses."""

    @abstractmethod
    def head(self, x: Tensor) -> Tensor:
        """Final norm and projection, applied per token: (B, T, D) -> (B, T, E)."""

    def pool(self, x: Tensor) -> Tensor:
        """The image-embedding row of the last block's output, (B, N, D) -> (B, 1, D), before
        :meth:`head`: the [CLS] row (``'token'``) or the mean of the patch rows (``'avg'``), as timm's
        ``Eva.forward_head`` pools (``global_pool_nlc``; its ``fc_norm`` then sits in :meth:`head`)."""
        if self.global_pool == 'avg':
            return x[:, self.num_prefix_tokens:].mean(dim=1, keepdim=True)
        return x[:, :1]

    def attention_qkv(self, blk: nn.Module, x: Tensor, rope: Optional[Tensor]
                      ) -> Tuple[Tensor, Tensor, Tensor]:
        """q, k, v (B, H, N, d) of block ``blk`` on tokens ``x`` as its attention uses them (EVA: the
        q / k norms and RoPE on the patch rows, as timm's ``EvaAttention``)."""
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.num_heads, -1).transpose(1, 2)
                   for t in self.qkv(blk, self.ln1(blk, x)))
        attn = getattr(blk, 'attn', None)
        if hasattr(attn, 'q_norm'):
            q, k = attn.q_norm(q), attn.k_norm(k)
        if rope is not None:
            if getattr(attn, 'rotate_half', False):
                raise NotImplementedError('half-rotation RoPE towers are not supported')
            q, k = self.apply_rope(q, rope), self.apply_rope(k, rope)
        return q, k, v

    def apply_rope(self, x: Tensor, rope: Tensor) -> Tensor:
        """RoPE on the patch rows of ``x`` (B, H, N, d), the prefix rows untouched: rotated with the
        fp32 table, rounded once (timm's ``apply_rot_embed_cat`` under autocast), in one pass without
        autograd (:func:`rope_patch_rows`)."""
        return rope_patch_rows(x, rope, self.num_prefix_tokens)

    def attention_scale(self, blk: nn.Module) -> float:
        """The factor of the block's dot products (timm's ``attn.scale``; 1/sqrt(d) otherwise)."""
        return float(getattr(blk.attn, 'scale', self.head_dim ** -0.5))

    def run_block_cls(self, blk: nn.Module, x: Tensor, rope: Optional[Tensor]) -> Tensor:
        """The block's output for the first (CLS) token only, (B, 1, D): every token is a key and a
        value, only the CLS row is a query and goes through the FFN. Equal to
        ``run_block(blk, x, rope)[:, :1]`` up to float rounding (eval mode: no dropout) at 1/N of
        the attention-output and FFN cost."""
        q, k, v = self.attention_qkv(blk, x, rope)
        o = torch.nn.functional.scaled_dot_product_attention(q[:, :, :1], k, v,
                                                             scale=self.attention_scale(blk))
        o = o.transpose(1, 2).reshape(x.shape[0], 1, -1)
        return self.ffn(blk, x[:, :1] + self.attn_out(blk, o))


class OpenAIViTOps(_TowerOps):
    """open_clip ``VisionTransformer`` (OpenAI-CLIP layout)."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__(visual)
        self.patch_size = tuple(visual.conv1.kernel_size)
        self.width = visual.conv1.out_channels
        self.num_heads = visual.transformer.resblocks[0].attn.num_heads
        self.pretrained_grid = tuple(visual.grid_size)
        #: 0: position embedding resized bicubically to the grid size (docs/method.md §1); > 0:
        #: scale_factor (n + offset) / M as ProxyCLIP's open_clip copy (offset 0.1, §7)
        self.pos_offset = 0.0

    def blocks(self) -> nn.ModuleList:
        return self.visual.transformer.resblocks

    def embed(self, x: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
        v = self.visual
        x = v.conv1(x)
        hw = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        if self.pos_offset and tuple(hw) != self.pretrained_grid:
            from .vfm_teacher import dino_resize_pos_embed
            pos = dino_resize_pos_embed(v.positional_embedding[None], tuple(hw), 1,
                                        self.pretrained_grid, offset=self.pos_offset)[0]
        else:
            pos = resize_pos_embed(v.positional_embedding, hw, 1, src_hw=self.pretrained_grid)
        x = x + pos.to(x.dtype)
        return v.ln_pre(x), hw

    def run_block(self, blk: nn.Module, x: Tensor, rope: Optional[Tensor]) -> Tensor:
        return blk(x)

    def ln1(self, blk: nn.Module, x: Tensor) -> Tensor:
        return blk.ln_1(x)

    def qkv(self, blk: nn.Module, y: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        attn = blk.attn
        return torch.nn.functional.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)

    def attn_out(self, blk: nn.Module, o: Tensor) -> Tensor:
        return blk.ls_1(blk.attn.out_proj(o))

    def ffn(self, blk: nn.Module, x: Tensor) -> Tensor:
        return x + blk.ls_2(blk.mlp(blk.ln_2(x)))

    def head(self, x: Tensor) -> Tensor:
        x = self.visual.ln_post(x)
        return x @ self.visual.proj if self.visual.proj is not None else x


class EvaViTOps(_TowerOps):
    """timm ``Eva`` trunk (EVA02-CLIP layout)."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__(visual)
        t = visual.trunk
        self.patch_size = tuple(t.patch_embed.proj.kernel_size)
        self.width = t.embed_dim
        attn = t.blocks[0].attn
        self.num_heads = attn.num_heads
        self._head_dim = attn.head_dim
        self.num_prefix_tokens = t.num_prefix_tokens
        if getattr(t, 'attn_pool', None) is not None or t.global_pool not in ('token', 'avg'):
            raise ValueError(f"unsupported pooling of the EVA trunk (global_pool={t.global_pool!r}"
                             f"{', attention pool' if getattr(t, 'attn_pool', None) is not None else ''}"
                             "): only 'token' ([CLS]) and 'avg' are supported")
        self.global_pool = t.global_pool
        self.pretrained_grid = tuple(t.patch_embed.grid_size)
        if t.rope is not None and not hasattr(t.rope, 'ref_feat_shape'):
            raise ValueError(f'unsupported RoPE module {type(t.rope).__name__} in the EVA trunk')
        if getattr(t, 'rope_mixed', False):
            raise ValueError('mixed (per-depth) RoPE towers are not supported')
        from timm.models.eva import EvaBlock
        for blk in t.blocks:  # the decoupled / CLS-only paths rebuild EvaBlock + EvaAttention
            if type(blk) is not EvaBlock or getattr(blk.attn, 'gate', None) is not None:
                raise ValueError(f'unsupported EVA block {type(blk).__name__} (gated attention or '
                                 'post-norm blocks are not supported)')

    @property
    def head_dim(self) -> int:
        return self._head_dim

    def blocks(self) -> nn.ModuleList:
        return self.visual.trunk.blocks

    def embed(self, x: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
        t = self.visual.trunk
        x = t.patch_embed.proj(x)
        hw = (x.shape[-2], x.shape[-1])
        x = t.patch_embed.norm(x.flatten(2).transpose(1, 2))
        prefix = []
        if t.cls_token is not None:
            prefix.append(t.cls_token.expand(x.shape[0], -1, -1))
        if t.reg_token is not None:
            prefix.append(t.reg_token.expand(x.shape[0], -1, -1))
        if t.pos_embed is not None:
            n_pos_prefix = 0 if t.no_embed_class else self.num_prefix_tokens
            pos = resize_pos_embed(t.pos_embed, hw, n_pos_prefix, src_hw=self.pretrained_grid)
            if t.no_embed_class:
                x = torch.cat(prefix + [x + pos.to(x.dtype)], dim=1)
            else:
                x = torch.cat(prefix + [x], dim=1) + pos.to(x.dtype)
        else:
            x = torch.cat(prefix + [x], dim=1)
        x = t.pos_drop(x)
        return t.norm_pre(x), hw

    def rope(self, hw: Tuple[int, int], x: Tensor) -> Optional[Tensor]:
        r = self.visual.trunk.rope
        if r is None:
            return None
        ref = r.ref_feat_shape if r.ref_feat_shape is not None else hw
        return eva_rope_sincos(hw, self.head_dim, ref_hw=ref, theta=r.temperature,
                               grid_offset=r.grid_offset, device=x.device, dtype=torch.float32)

    def run_block(self, blk: nn.Module, x: Tensor, rope: Optional[Tensor]) -> Tensor:
        """timm's ``EvaBlock.forward``; without autograd in eval mode the same block written out
        with :meth:`attention_qkv` (its one-pass RoPE, ``rope_patch_rows``): pre-norm attention with
        the default 1/sqrt(d) scale (timm's fused path), the attention's inner norm and projection,
        the FFN (``swiglu_inplace``) and the residual sums written into fresh results, the same
        operations as timm's (bit-identical on this build). Blocks that are not timm's plain
        ``EvaBlock`` / ``EvaAttention`` with ``nn.Linear`` projections (subclasses, wrapped or
        adapted layers) and blocks, attention or MLP modules with forward hooks run timm's forward.

        The written-out forward is used only for block configurations that a float64 probe against
        the installed timm proved equal (:mod:`.eva_block_check`, once per configuration and timm
        version); otherwise timm's forward runs, after one warning naming the timm version."""
        if (blk.training or torch.is_grad_enabled() or not _plain_eva_block(blk)
                or _has_forward_hooks(blk, blk.attn, blk.mlp)
                or not written_out_block_verified(blk, self._written_out_block, self.rope,
                                                  self.num_prefix_tokens, rope is not None)):
            return blk(x, rope=rope)
        return self._written_out_block(blk, x, rope)

    def _written_out_block(self, blk: nn.Module, x: Tensor, rope: Optional[Tensor]) -> Tensor:
        """``EvaBlock.forward`` written out (see :meth:`run_block`); no checks of its own."""
        q, k, v = self.attention_qkv(blk, x, rope)
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        x = _residual(x, self.attn_out(blk, o.transpose(1, 2).reshape(x.shape)))
        m = swiglu_inplace(blk.mlp, blk.norm2(x))
        return _residual(x, blk.gamma_2 * m if blk.gamma_2 is not None else m)

    def ln1(self, blk: nn.Module, x: Tensor) -> Tensor:
        return blk.norm1(x)

    def qkv(self, blk: nn.Module, y: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        attn = blk.attn
        if attn.qkv is not None:  # fused variant: q/v biases, k unbiased
            bias = None
            if attn.q_bias is not None:
                bias = torch.cat([attn.q_bias, torch.zeros_like(attn.q_bias), attn.v_bias])
            return torch.nn.functional.linear(y, attn.qkv.weight, bias).chunk(3, dim=-1)
        return attn.q_proj(y), attn.k_proj(y), attn.v_proj(y)

    def attn_out(self, blk: nn.Module, o: Tensor) -> Tensor:
        o = blk.attn.proj(blk.attn.norm(o))
        return blk.gamma_1 * o if blk.gamma_1 is not None else o

    def ffn(self, blk: nn.Module, x: Tensor) -> Tensor:
        m = blk.mlp(blk.norm2(x))
        return x + (blk.gamma_2 * m if blk.gamma_2 is not None else m)

    def head(self, x: Tensor) -> Tensor:
        t = self.visual.trunk
        return t.head(t.fc_norm(t.norm(x)))


def _residual(x: Tensor, branch: Tensor) -> Tensor:
    """``x + branch`` written into ``branch`` (a fresh result) when that is the sum's dtype and shape;
    otherwise (e.g. a bf16 branch of an fp32 stream under autocast) the promoting ``x + branch``."""
    if branch.shape == x.shape and branch.dtype == torch.promote_types(x.dtype, branch.dtype):
        return branch.add_(x)
    return x + branch


def _plain_eva_block(blk: nn.Module) -> bool:
    """timm's own EvaBlock / EvaAttention, projections plain ``nn.Linear`` (what ``run_block``'s
    written-out forward reproduces)."""
    from timm.models.eva import EvaAttention, EvaBlock
    attn = blk.attn
    if type(blk) is not EvaBlock or type(attn) is not EvaAttention:
        return False
    projections = [attn.qkv] if attn.qkv is not None else [attn.q_proj, attn.k_proj, attn.v_proj]
    return all(type(p) is nn.Linear for p in projections + [attn.proj])


def _has_forward_hooks(*modules: nn.Module) -> bool:
    from torch.nn.modules import module as nn_module
    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def tower_ops(visual: nn.Module) -> _TowerOps:
    return EvaViTOps(visual) if isinstance(visual, EvaVisionTower) else OpenAIViTOps(visual)
