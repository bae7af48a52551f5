"""The towers' pre-registration figures measured through the project's own classes
(docs/miniworld.md): the saved CLIP loaded by ``DeCLIPVisionTransformer`` / ``DeCLIPTextEncoder``, the
saved VFM by ``VFMTeacher``, both through ``init_weights`` as any release.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from .clip_trainer import stream_seeds, to_model_input
from .tower_configs import IMAGENET_MEAN, IMAGENET_STD, WORLD_TEMPLATES
from .zero_shot import correlation_agreement, crop_zero_shot_figures, dense_zero_shot_figures, zero_shot_figures

__all__ = ['load_world_clip', 'load_world_vfm', 'clip_figures', 'dense_figures', 'crop_figures',
           'correlation_figures',
           'DENSE_MODES']

#: the attention modes of the dense-alignment figure
DENSE_MODES = ('vanilla', 'maskclip', 'csa')


def load_world_clip(config: Any, weights: Optional[str], attn_mode: str = 'csa'):
    """(``DeCLIPVisionTransformer``, ``DeCLIPTextEncoder``) of a saved tiny CLIP (``weights=None``:
    random weights), eval mode."""
    from ..models.backbones.declip_vit import DeCLIPVisionTransformer
    from ..models.text.text_encoder import DeCLIPTextEncoder
    backbone = DeCLIPVisionTransformer(config, pretrained=weights, attn_mode=attn_mode)
    backbone.init_weights()
    text = DeCLIPTextEncoder(config, pretrained=weights, templates=list(WORLD_TEMPLATES))
    text.init_weights()
    return backbone.eval(), text.eval()


def load_world_vfm(spec: Dict[str, Any], weights: Optional[str]) -> nn.Module:
    """``VFMTeacher`` of a saved tiny VFM (``weights=None``: random weights)."""
    from ..models.backbones.vfm_teacher import VFMTeacher
    teacher = VFMTeacher(arch=spec['arch'], arch_overrides=spec.get('arch_overrides'),
                         pretrained=weights)
    teacher.init_weights()
    return teacher


@torch.no_grad()
def clip_figures(config: Any, weights: Optional[str], world_seed: int = 0, n_per_class: int = 50,
                 size: int = 64) -> Dict[str, Any]:
    """Zero-shot top-1 (see :func:`zero_shot_figures`) on ``n_per_class`` held-out objects per class
    (the ``'zero_shot'`` stream of ``world_seed``)."""
    from .classes import ALL_CLASSES
    backbone, text = load_world_clip(config, weights)
    emb = text(list(ALL_CLASSES))
    seeds = stream_seeds('zero_shot', world_seed, 0, n_per_class)
    return zero_shot_figures(backbone.encode_image, emb, seeds, size)


@torch.no_grad()
def dense_figures(config: Any, weights: Optional[str], world_seed: int = 0, n_per_class: int = 20,
                  size: int = 64, modes=DENSE_MODES) -> Dict[str, Any]:
    """Dense alignment (:func:`dense_zero_shot_figures`) of the CLIP's ``content`` map in each of
    ``modes``, on ``n_per_class`` held-out objects per class (the ``'zero_shot'`` stream, the same
    images as :func:`clip_figures`)."""
    from .classes import ALL_CLASSES
    seeds = stream_seeds('zero_shot', world_seed, 0, n_per_class)
    out, emb = {}, None
    for mode in modes:
        backbone, text = load_world_clip(config, weights, attn_mode=mode)
        if emb is None:                      # the text side does not depend on the mode
            emb = text(list(ALL_CLASSES))
        out[mode] = dense_zero_shot_figures(lambda x, bb=backbone: bb(x)['content'], emb, seeds,
                                            size, backbone.patch_size[0])
    return out


@torch.no_grad()
def crop_figures(config: Any, weights: Optional[str], world_seed: int = 0, n_scenes: int = 150,
                 size: int = 64) -> Dict[str, Any]:
    """Crop zero-shot (:func:`crop_zero_shot_figures`: DeCLIP's content teacher on grid cells) on
    ``n_scenes`` held-out scenes (the ``'correlation'`` stream)."""
    from .classes import ALL_CLASSES
    backbone, text = load_world_clip(config, weights, attn_mode='vanilla')
    emb = text(list(ALL_CLASSES))
    return crop_zero_shot_figures(backbone.encode_image, emb,
                                  stream_seeds('correlation', world_seed, 0, n_scenes), size)


def _imagenet_input(images: np.ndarray) -> Tensor:
    return to_model_input(images, IMAGENET_MEAN, IMAGENET_STD)


@torch.no_grad()
def correlation_figures(clip_config: Any, clip_weights: Optional[str], vfm_spec: Dict[str, Any],
                        vfm_weights: Optional[str], world_seed: int = 0, n_scenes: int = 200,
                        size: int = 64, random_seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Correlation agreement (:func:`correlation_agreement`) of the trained VFM, the trained CLIP's
    dense features (vanilla content; csa content and the last block's Q and K) and the same
    architectures with random weights (``torch.manual_seed(random_seed)``), on ``n_scenes`` held-out
    scenes (the ``'correlation'`` stream)."""
    seeds = stream_seeds('correlation', world_seed, 0, n_scenes)
    out: Dict[str, Dict[str, float]] = {}
    for tag, cw, vw in (('trained', clip_weights, vfm_weights), ('random', None, None)):
        if tag == 'random':
            torch.manual_seed(random_seed)
        vfm = load_world_vfm(vfm_spec, vw)
        patch = vfm.patch_size
        out[f'vfm_{tag}'] = correlation_agreement(
            lambda im, vfm=vfm: vfm(_imagenet_input(im)), seeds, size, patch)
        for mode in ('vanilla', 'csa'):
            if tag == 'random':
                torch.manual_seed(random_seed)
            backbone, _ = load_world_clip(clip_config, cw, attn_mode=mode)
            p = backbone.patch_size[0]
            keys = ('content',) if mode == 'vanilla' else ('content', 'context_q', 'context_k')
            for key in keys:
                out[f'clip_{mode}_{key}_{tag}'] = correlation_agreement(
                    lambda im, key=key, bb=backbone: bb(to_model_input(im))[key], seeds, size, p)
    return out
