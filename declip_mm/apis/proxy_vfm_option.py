"""Turn a training-free segmentor config into its proxy-attention variant (docs/method.md §7).

Used by :class:`~declip_mm.apis.DeCLIPInferencer` (``vfm=``): given a VFM checkpoint, a
``DeCLIPZeroShotSegmentor`` config becomes a ``DeCLIPProxySegmentor`` (backbone in
``attn_mode='proxy'``, the config's own windows, classes and thresholds); a proxy config gets the
VFM file.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, Union

__all__ = ['apply_proxy_vfm']


def apply_proxy_vfm(model_cfg, vfm: Union[str, Dict[str, Any]], arch: str = 'dino_vitb8') -> None:
    """Edit ``model_cfg`` (the segmentor's config, in place) to run the proxy attention.

    Args:
        model_cfg: a ``DeCLIPZeroShotSegmentor`` or ``DeCLIPProxySegmentor`` model config.
        vfm (str | dict): a local VFM checkpoint (``arch`` says which VFM) or a ``ProxyVFM``
            config dict (``arch``, ``pretrained``, ``precision``, ...).
        arch (str): the VFM of a checkpoint path. Defaults to ``'dino_vitb8'`` (ProxyCLIP's).
    """
    kind = model_cfg.get('type')
    if kind not in ('DeCLIPZeroShotSegmentor', 'DeCLIPProxySegmentor'):
        raise ValueError(f'a VFM (proxy attention) applies to the training-free segmentors, not '
                         f'{kind!r}')
    vfm_cfg = dict(vfm) if isinstance(vfm, dict) else dict(arch=arch, pretrained=str(vfm))
    path = vfm_cfg.get('pretrained')
    if path is not None and not osp.isfile(path):
        raise FileNotFoundError(f'VFM checkpoint not found: {path!r}')
    old = dict(model_cfg.get('vfm') or {})
    old.update(vfm_cfg)
    old.setdefault('type', 'ProxyVFM')
    model_cfg.type = 'DeCLIPProxySegmentor'
    model_cfg.vfm = old
    model_cfg.backbone.attn_mode = 'proxy'
