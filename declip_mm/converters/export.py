"""Writing declip_mm checkpoints: a plain state dict with a ``meta`` entry.

Layout: ``{'state_dict': <open_clip-layout tensors>, 'meta': {'architecture', 'attn_mode',
'attn_scale', 'source', 'declip_mm_version', ...}}``. Every value is a tensor, str, number or None, so
the file loads with ``torch.load(weights_only=True)`` and with mmengine's ``load_checkpoint``.
The meta carries the attention mode the weights were trained with, so evaluation can refuse a
mismatch (docs/method.md §5).
"""
from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Optional

import torch
from torch import Tensor

__all__ = ['infer_model_name', 'make_checkpoint', 'save_checkpoint']

# (family, width, patch, depth, grid) -> open_clip name
_KNOWN = {
    ('openai', 768, 16, 12, 14): 'ViT-B-16',
    ('openai', 1024, 14, 24, 16): 'ViT-L-14',
    ('openai', 1024, 14, 24, 24): 'ViT-L-14-336',
    ('eva02', 768, 16, 12, 14): 'EVA02-B-16',
    ('eva02', 1024, 14, 24, 16): 'EVA02-L-14',
    ('eva02', 1024, 14, 24, 24): 'EVA02-L-14-336',
}


def _depth(sd: Mapping[str, Tensor], pattern: str) -> int:
    idx = {int(m.group(1)) for k in sd for m in [re.match(pattern, k)] if m}
    return max(idx) + 1 if idx else 0


def infer_model_name(sd: Mapping[str, Tensor]) -> Optional[str]:
    """Name the open_clip architecture of an open_clip-layout state dict, or ``None``."""
    if 'visual.conv1.weight' in sd:
        w = sd['visual.conv1.weight']
        n = sd['visual.positional_embedding'].shape[0] - 1
        key = ('openai', w.shape[0], w.shape[-1],
               _depth(sd, r'visual\.transformer\.resblocks\.(\d+)\.'), int(round(n ** 0.5)))
    elif 'visual.trunk.patch_embed.proj.weight' in sd:
        w = sd['visual.trunk.patch_embed.proj.weight']
        n = sd['visual.trunk.pos_embed'].shape[1] - 1
        key = ('eva02', w.shape[0], w.shape[-1], _depth(sd, r'visual\.trunk\.blocks\.(\d+)\.'),
               int(round(n ** 0.5)))
    else:
        return None
    return _KNOWN.get(key)


def _plain(obj: Any) -> Any:
    """Plain python containers (a ConfigDict would not load under weights_only)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def make_checkpoint(sd: Mapping[str, Tensor], architecture: Any, attn_mode: Optional[str] = None,
                    attn_scale: Optional[float] = None, **extra_meta: Any) -> Dict[str, Any]:
    """Wrap an open_clip-layout state dict with declip_mm meta."""
    from ..version import __version__
    if not isinstance(architecture, (str, Mapping)):
        architecture = repr(architecture)
    meta = dict(architecture=_plain(architecture),
                attn_mode=attn_mode, attn_scale=attn_scale, declip_mm_version=__version__)
    meta.update(_plain(extra_meta))
    return {'state_dict': {k: v.detach().cpu().contiguous() for k, v in sd.items()}, 'meta': meta}


def save_checkpoint(path: str, sd: Mapping[str, Tensor], architecture: Any,
                    attn_mode: Optional[str] = None, attn_scale: Optional[float] = None,
                    **extra_meta: Any) -> Dict[str, Any]:
    ckpt = make_checkpoint(sd, architecture, attn_mode, attn_scale, **extra_meta)
    torch.save(ckpt, path)
    return ckpt
