"""Architectures, prompt templates and versions of the miniature world's tiny towers
(docs/miniworld.md).

* The tiny CLIP is an open_clip model config of the EVA02-CLIP family (timm ``Eva`` trunk: q/v bias,
  sub-LN, SwiGLU, 2-D RoPE; open_clip text transformer under ``text.*``), shrunk through
  ``vision_cfg['timm_model_kwargs']`` exactly as the project's tiny test towers
  (``declip_mm/testing/tiny_models.py``), so ``DeCLIPVisionTransformer`` / ``DeCLIPTextEncoder`` take it
  as ``model_name`` (a dict, or the JSON file the trainer writes next to the weights).
* The tiny VFM is timm's DINO ViT (``VFMTeacher`` arch ``'dino_vitb8'``: plain ViT, patch 8, CLS
  token, learned absolute position embedding) shrunk through ``arch_overrides``: ``VFMTeacher`` builds
  and loads it through its normal path.

The versions are part of the cache key of ``tools/miniworld.py``: bump one whenever the
architecture, the training recipe or the default settings change what a trainer produces.
"""
from __future__ import annotations

import copy
from typing import Any, Dict

__all__ = ['CLIP_TRAINER_VERSION', 'VFM_TRAINER_VERSION', 'WORLD_CLIP_CONFIG', 'WORLD_VFM',
           'WORLD_TEMPLATES', 'CLIP_MEAN', 'CLIP_STD', 'IMAGENET_MEAN', 'IMAGENET_STD',
           'world_clip_config', 'world_vfm_spec']

CLIP_TRAINER_VERSION = 'clip-trainer-4'
VFM_TRAINER_VERSION = 'vfm-trainer-2'

#: the normalisations of the project's configs (``clip_mean`` / ``imagenet_mean`` of the bases):
#: OpenAI CLIP's for the CLIP tower, ImageNet's for the VFM teacher
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: prompt templates for the world's class names (the caption generator's phrasings: "a photo of a
#: fish", "a picture of sand", "close-up of a kite", the bare name); ``{article}`` follows
#: ``declip_mm.models.text.templates.fill_template``
WORLD_TEMPLATES = (
    'a photo of {article} {}',
    'a picture of {article} {}',
    'an image of {article} {}',
    'close-up of {article} {}',
    '{article} {}',
    'a photo of {}',
    '{}',
)

#: the tiny CLIP (image side 64, patch 8: an 8 x 8 token grid). ``timm_pool='avg'``: the image
#: embedding is the mean of the patch rows (then timm's ``fc_norm`` and head), so every patch row meets
#: the text in training; with [CLS] pooling (``clip-trainer-2``) only the [CLS] row did and the patch
#: rows were not text-aligned (docs/miniworld.md, "dense alignment")
WORLD_CLIP_CONFIG: Dict[str, Any] = dict(
    embed_dim=64,
    vision_cfg=dict(image_size=64, timm_model_name='eva02_base_patch16_clip_224', timm_pool='avg',
                    timm_model_kwargs=dict(embed_dim=96, depth=4, num_heads=3, patch_size=8)),
    text_cfg=dict(context_length=32, vocab_size=49408, width=64, heads=2, layers=2),
    custom_text=True,
)

#: the tiny VFM: keyword arguments of ``VFMTeacher`` (plus ``pretrained``)
WORLD_VFM: Dict[str, Any] = dict(
    arch='dino_vitb8',
    arch_overrides=dict(embed_dim=96, depth=4, num_heads=3, img_size=64),
)


def world_clip_config(**vision_overrides: Any) -> Dict[str, Any]:
    """A deep copy of :data:`WORLD_CLIP_CONFIG`; ``vision_overrides`` update the timm trunk's
    keyword arguments (``embed_dim``, ``depth``, ``num_heads``, ...)."""
    cfg = copy.deepcopy(WORLD_CLIP_CONFIG)
    cfg['vision_cfg']['timm_model_kwargs'].update(vision_overrides)
    return cfg


def world_vfm_spec(**overrides: Any) -> Dict[str, Any]:
    """A deep copy of :data:`WORLD_VFM` with ``arch_overrides`` updated by ``overrides``."""
    spec = copy.deepcopy(WORLD_VFM)
    spec['arch_overrides'].update(overrides)
    return spec
