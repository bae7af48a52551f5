"""open_clip-format configs of tiny towers of both families (width 64, depth 3, patch 8, 32 px)."""
from __future__ import annotations

import copy
from typing import Any, Dict

_TEXT = dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=2)

#: OpenAI-CLIP-style tower: fused in_proj with biases, ln_post, proj matrix
TINY_OPENAI_CLIP: Dict[str, Any] = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=32, layers=3, width=64, patch_size=8, head_width=32),
    text_cfg=_TEXT,
)

#: EVA02-CLIP-style tower: timm Eva with q/v bias, no k bias, sub-LN, 2-D RoPE, SwiGLU
TINY_EVA02_CLIP: Dict[str, Any] = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=32, timm_model_name='eva02_base_patch16_clip_224',
                    timm_model_kwargs=dict(embed_dim=64, depth=3, num_heads=2, patch_size=8)),
    text_cfg=_TEXT,
    custom_text=True,
)


def tiny_clip_config(family: str = 'eva02', **vision_overrides: Any) -> Dict[str, Any]:
    """A copy of a tiny config (``'eva02'`` or ``'openai'``), with vision overrides applied."""
    if family not in ('eva02', 'openai'):
        raise ValueError(f'family must be eva02 or openai, got {family!r}')
    cfg = copy.deepcopy(TINY_EVA02_CLIP if family == 'eva02' else TINY_OPENAI_CLIP)
    if family == 'eva02':
        cfg['vision_cfg']['timm_model_kwargs'].update(vision_overrides)
    else:
        cfg['vision_cfg'].update(vision_overrides)
    return cfg
