"""Checkpoint converters: pure ``dict -> dict`` functions, the source detected by key signature.

Canonical layout is open_clip's (what ``open_clip.create_model(...).state_dict()`` holds):

* OpenAI-CLIP / open_clip ViT: ``visual.conv1.weight``, ``visual.transformer.resblocks.{i}.attn.in_proj_*``,
  ``visual.ln_post.*``, ``visual.proj``; text at top level (``token_embedding.weight``, ``transformer.*``,
  ``ln_final.*``, ``text_projection``), ``logit_scale``.
* EVA02 in open_clip: ``visual.trunk.*`` (timm ``Eva`` keys) and ``text.*``.

Sources read (docs/method.md §1): OpenAI jit / state-dict ``.pt`` (fp16; extra ``input_resolution``,
``context_length``, ``vocab_size``), open_clip ``.bin`` / ``.safetensors``, original EVA-CLIP ``.pt``
(``visual.blocks.{i}.attn.{q,k,v}_proj``, ``q_bias``, ``v_bias``, ``inner_attn_ln``, ``mlp.w1/w2/w3``,
``mlp.ffn_ln``, ``visual.head``, ``visual.rope.freqs_*``), official DeCLIP releases (same keys, maybe wrapped
in ``state_dict`` / ``model`` / ``module``, ``module.`` prefixes, ``freqs_cos/sin`` buffers, sometimes the
image tower alone), declip_mm exports (``{'state_dict', 'meta'}``) and DINOv2 hub checkpoints.
The EVA key renames follow timm's ``eva.checkpoint_filter_fn`` (facts, not code).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .training_checkpoints import is_distiller_state_dict, student_tower

__all__ = ['unwrap_checkpoint', 'detect_flavour', 'convert_openai_clip', 'convert_eva_clip',
           'convert_dinov2', 'to_open_clip_state_dict', 'FLAVOURS']

FLAVOURS = ('openai', 'open_clip', 'eva_clip', 'dinov2')
_WRAPPER_KEYS = ('state_dict', 'model', 'module', 'model_ema')
_OPENAI_EXTRAS = ('input_resolution', 'context_length', 'vocab_size')
_EVA_RENAMES = (
    ('attn.inner_attn_ln.', 'attn.norm.'),
    ('mlp.ffn_ln.', 'mlp.norm.'),
    ('mlp.w12.', 'mlp.fc1.'),
    ('mlp.w1.', 'mlp.fc1_g.'),
    ('mlp.w2.', 'mlp.fc1_x.'),
    ('mlp.w3.', 'mlp.fc2.'),
)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and any(
        isinstance(v, Tensor) for v in obj.values())


def unwrap_checkpoint(obj: Mapping[str, Any]) -> Tuple[Dict[str, Tensor], Dict[str, Any], bool]:
    """Strip wrappers: nested ``state_dict``/``model``/``module`` dicts and ``module.`` prefixes.

    Returns:
        tuple: (flat state dict of tensors, ``meta`` dict or ``{}``, whether anything was unwrapped).
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f'checkpoint must be a mapping, got {type(obj).__name__}')
    meta = dict(obj['meta']) if isinstance(obj.get('meta'), Mapping) else {}
    wrapped = False
    for _ in range(4):
        inner = next((obj[k] for k in _WRAPPER_KEYS if _is_state_dict(obj.get(k))), None)
        if inner is None:
            break
        obj, wrapped = inner, True
    sd = OrderedDict((k, v) for k, v in obj.items() if isinstance(v, Tensor))
    if not sd:
        raise ValueError('checkpoint holds no tensors (keys: '
                         f'{sorted(obj.keys())[:10]})')
    if all(k.startswith('module.') for k in sd):
        sd = OrderedDict((k[len('module.'):], v) for k, v in sd.items())
        wrapped = True
    return sd, meta, wrapped


def detect_flavour(sd: Mapping[str, Tensor]) -> str:
    """Name the layout of a (flat) state dict: ``openai``, ``open_clip``, ``eva_clip`` or ``dinov2``."""
    keys = set(sd)
    if any(k.startswith('visual.trunk.') for k in keys):
        return 'open_clip'
    if 'visual.conv1.weight' in keys or 'conv1.weight' in keys:
        return 'openai' if any(k in keys for k in _OPENAI_EXTRAS) else 'open_clip'
    if any(k.endswith('blocks.0.attn.q_proj.weight') or k.endswith('blocks.0.attn.qkv.weight')
           for k in keys) and any(k.endswith('patch_embed.proj.weight') for k in keys):
        if 'register_tokens' in keys or 'mask_token' in keys or 'blocks.0.ls1.gamma' in keys:
            return 'dinov2'
        return 'eva_clip'
    if 'patch_embed.proj.weight' in keys and 'blocks.0.norm1.weight' in keys:
        return 'dinov2'
    if 'trunk.pos_embed' in keys or 'trunk.patch_embed.proj.weight' in keys:
        return 'open_clip'
    raise ValueError('unrecognised checkpoint layout; first keys: ' + ', '.join(sorted(keys)[:8]))


def _float(v: Tensor) -> Tensor:
    return v.float() if v.is_floating_point() and v.dtype != torch.float32 else v


def convert_openai_clip(sd: Mapping[str, Tensor],
                        dropped: Optional[List[str]] = None) -> Dict[str, Tensor]:
    """OpenAI-CLIP (jit or state dict, maybe image tower only) -> open_clip keys, fp32.

    ``dropped``, if given, collects the source keys that have no counterpart.
    """
    image_only = 'conv1.weight' in sd and 'visual.conv1.weight' not in sd
    out = OrderedDict()
    for k, v in sd.items():
        if k in _OPENAI_EXTRAS:
            if dropped is not None:
                dropped.append(k)
            continue
        out[('visual.' + k) if image_only else k] = _float(v)
    return out


def convert_eva_clip(sd: Mapping[str, Tensor],
                     dropped: Optional[List[str]] = None) -> Dict[str, Tensor]:
    """Original EVA-CLIP / DeCLIP EVA keys -> open_clip (``visual.trunk.*`` timm Eva keys).

    ``dropped``, if given, collects the source keys that have no counterpart (RoPE buffers).
    """
    image_only = not any(k.startswith('visual.') for k in sd)
    separate_qkv = any(k.endswith('attn.q_proj.weight') for k in sd)
    out = OrderedDict()
    for k, v in sd.items():
        if image_only:
            k = 'visual.' + k
        if not k.startswith('visual.'):
            out[k] = _float(v)  # text tower (open_clip TextTransformer keys under text.), logit_scale
            continue
        rest = k[len('visual.'):]
        if rest.startswith('trunk.'):
            rest = rest[len('trunk.'):]
        if rest.startswith('rope.') or rest.endswith('freqs_cos') or rest.endswith('freqs_sin'):
            if dropped is not None:
                dropped.append(k)
            continue  # fixed buffers, rebuilt for every grid
        for old, new in _EVA_RENAMES:
            rest = rest.replace(old, new)
        if separate_qkv:
            rest = rest.replace('attn.q_bias', 'attn.q_proj.bias').replace('attn.v_bias',
                                                                           'attn.v_proj.bias')
        out['visual.trunk.' + rest] = _float(v)
    return out


def convert_dinov2(sd: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """DINOv2 hub layout -> timm ``VisionTransformer`` keys.

    The mask token is dropped; with registers, timm's model has no position slot for the prefix
    tokens (``no_embed_class``), so the CLS position embedding is folded into ``cls_token`` and the
    registers renamed ``reg_token`` (as timm's ``_convert_dinov2``: facts, not code). Already
    converted (timm-layout) dicts pass through.
    """
    out = OrderedDict()
    registers = 'register_tokens' in sd
    for k, v in sd.items():
        if k == 'mask_token':
            continue
        if registers and k == 'cls_token':
            v = v + sd['pos_embed'][:, :1]
        elif registers and k == 'pos_embed':
            v = v[:, 1:]
        elif k == 'register_tokens':
            k = 'reg_token'
        k = k.replace('.mlp.w12.', '.mlp.fc1.').replace('.mlp.w3.', '.mlp.fc2.')
        out[k] = _float(v)
    return out


def to_open_clip_state_dict(obj: Mapping[str, Any], dropped: Optional[List[str]] = None
                            ) -> Tuple[Dict[str, Tensor], str, Dict[str, Any]]:
    """Any supported CLIP checkpoint -> (open_clip-layout state dict, source flavour, meta).

    The flavour is ``openai``, ``open_clip`` or ``eva_clip``; ``declip:`` is prepended when the file was
    a wrapped release (official DeCLIP), ``training:`` for the student tower of a declip_mm training
    checkpoint (``epoch_N.pth``; meta then names its architecture and attn_mode, see
    :mod:`.training_checkpoints`). ``dropped``, if given, collects the
    (unwrapped) source keys the conversion leaves out.
    """
    sd, meta, wrapped = unwrap_checkpoint(obj)
    training = is_distiller_state_dict(sd)
    if training:  # an mmengine training checkpoint of DeCLIP distillation: its student tower
        sd, meta = student_tower(sd, meta)
    freqs = [k for k in sd if k.endswith('freqs_cos') or k.endswith('freqs_sin')]
    if dropped is not None:
        dropped.extend(freqs)
    sd = OrderedDict((k, v) for k, v in sd.items() if k not in freqs)
    flavour = detect_flavour(sd)
    if flavour == 'dinov2':
        raise ValueError('this is a DINOv2 checkpoint, not a CLIP one; use it as the VFM teacher')
    if flavour == 'eva_clip' or (flavour == 'open_clip' and any('trunk.' in k for k in sd)):
        sd = convert_eva_clip(sd, dropped)
    else:
        sd = convert_openai_clip(sd, dropped)
    if training:
        flavour = 'training:' + flavour
    elif wrapped:
        flavour = 'declip:' + flavour
    return sd, flavour, meta


def split_prefix(sd: Mapping[str, Tensor], prefix: str) -> Dict[str, Tensor]:
    """Keys under ``prefix`` with the prefix removed."""
    n = len(prefix)
    return OrderedDict((k[n:], v) for k, v in sd.items() if k.startswith(prefix))


def text_state_dict(sd: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """The text tower of an open_clip-layout state dict as ``TextTransformer`` keys."""
    if any(k.startswith('text.') for k in sd):
        return split_prefix(sd, 'text.')
    names = ('token_embedding.', 'positional_embedding', 'transformer.', 'ln_final.',
             'text_projection')
    return OrderedDict((k, v) for k, v in sd.items() if k.startswith(names))


def summarize_keys(keys: Iterable[str], limit: int = 12) -> str:
    keys = sorted(keys)
    more = f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def match_state_dict(module: torch.nn.Module, sd: Mapping[str, Tensor], what: str,
                     resize: Optional[Mapping[str, Any]] = None
                     ) -> Tuple[Dict[str, Tensor], List[str], List[str]]:
    """Check ``sd`` against ``module``; raise on shape mismatches or missing keys.

    Args:
        module: the target.
        sd: candidate state dict (module-relative keys).
        what: names the target in messages (e.g. ``'ViT-B-16 image tower'``).
        resize: ``{key: fn(tensor, target_shape) -> tensor or None}`` for keys allowed to differ in
            shape (``None``: not resizable, reported as a mismatch).

    Returns:
        (state dict to load, missing keys, unexpected keys). Missing keys raise; unexpected are returned.
    """
    target = module.state_dict()
    resize = resize or {}
    out, mismatched = OrderedDict(), []
    for k, v in sd.items():
        if k not in target:
            continue
        if v.shape != target[k].shape:
            resized = resize[k](v, target[k].shape) if k in resize else None
            if resized is not None:
                v = resized
            else:
                mismatched.append(f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}')
                continue
        out[k] = v
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    if mismatched or missing:
        msg = [f'checkpoint does not fit the {what}:']
        if mismatched:
            msg.append(f'  {len(mismatched)} shape mismatch(es): ' + '; '.join(mismatched[:6]))
        if missing:
            msg.append(f'  {len(missing)} missing key(s): {summarize_keys(missing)}')
        if unexpected:
            msg.append(f'  {len(unexpected)} unexpected key(s): {summarize_keys(unexpected)}')
        msg.append('  (is this a checkpoint of another architecture? check model_name)')
        raise ValueError('\n'.join(msg))
    return out, missing, unexpected
