"""Side-by-side runs of the public ProxyCLIP code (mc-lan/ProxyCLIP) against declip_mm's proxy mode.

Nothing of the public code is stored in declip_mm: :func:`load_public` imports it from a checkout
given by the caller (the tests read ``PROXYCLIP_ROOT``; ``tools/analysis/parity_report.py --proxyclip
DIR`` takes it on the command line). What is compared (docs/method.md §7):

* ``custom_attn``: the public ``open_clip/transformer.py`` ``VisionTransformer`` (its last block in
  ``custom_attn``, ln_post, proj) built at the tiny tower's size with the declip_mm tower's weights;
* the segmentor: the public ``ProxyCLIPSegmentation`` (``forward_slide``, ``forward_feature``,
  ``postprocess_result``) with its towers replaced by the shared tiny ones: the public class is
  created without its ``__init__`` (which downloads CLIP and the VFM) and given the same attributes
  its ``__init__`` sets. The VFM is declip_mm's (the hub code is not in the snapshot) behind the hub
  API the public code calls (``get_intermediate_layers``, ``blocks[-1].attn.qkv``,
  ``patch_embed.patch_size``); its input is the public code's own re-normalisation.

The public code casts to fp16 (``.half()``) for a GPU; :func:`half_is_identity` makes those casts
no-ops so that both sides run in fp32 on a CPU.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import inspect
import os.path as osp
import sys
import types
from typing import Any, Iterator

import torch
from torch import nn

__all__ = ['load_public', 'public_vision_transformer', 'public_segmentor', 'half_is_identity',
           'tiny_proxy_segmentor', 'compare_segmentors', 'compare_custom_attn', 'TINY_VFMS']

_PKG = 'proxyclip_public_open_clip'


def _stub(name: str, **attrs: Any) -> None:
    if name not in sys.modules and importlib.util.find_spec(name) is None:
        mod = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(mod, k, v)
        sys.modules[name] = mod


def load_public(root: str) -> types.SimpleNamespace:
    """Import the public ``open_clip/transformer.py`` (as a private package name, so the installed
    open_clip is untouched) and ``proxyclip_segmentor.py`` from the checkout ``root``."""
    if not osp.isfile(osp.join(root, 'proxyclip_segmentor.py')):
        raise FileNotFoundError(f'{root!r} is not a ProxyCLIP checkout (no proxyclip_segmentor.py)')
    if _PKG not in sys.modules:
        pkg = types.ModuleType(_PKG)
        pkg.__path__ = [osp.join(root, 'open_clip')]  # its __init__ is not run (heavy imports)
        sys.modules[_PKG] = pkg
    transformer = importlib.import_module(f'{_PKG}.transformer')

    def _no_rearrange(*a, **k):
        raise NotImplementedError('einops is not installed (only the public MAE path uses it)')

    # modules the segmentor file imports for paths not compared here (MAE's rearrange, the result
    # spreadsheet of myutils)
    _stub('einops', rearrange=_no_rearrange)
    _stub('openpyxl')
    # the checkout holds its own open_clip / segment_anything copies: the installed packages are
    # imported first, so that the public segmentor file (and declip_mm) keep using them
    import open_clip  # noqa: F401
    import open_clip.model  # noqa: F401
    import segment_anything  # noqa: F401
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        seg_mod = importlib.import_module('proxyclip_segmentor')
    finally:
        sys.path.remove(root)
    return types.SimpleNamespace(transformer=transformer, segmentor=seg_mod, root=root)


@contextlib.contextmanager
def half_is_identity() -> Iterator[None]:
    """``Tensor.half()`` / ``Module.half()`` return their input unchanged inside the block."""
    t_half, m_half = torch.Tensor.half, nn.Module.half
    torch.Tensor.half = lambda self, *a, **k: self
    nn.Module.half = lambda self: self
    try:
        yield
    finally:
        torch.Tensor.half, nn.Module.half = t_half, m_half


def public_vision_transformer(public, backbone) -> nn.Module:
    """The public ``VisionTransformer`` at the size of an OpenAI-layout declip_mm ``backbone``,
    holding its weights (strict load)."""
    if backbone.family != 'openai':
        raise ValueError('the public custom_attn exists for the OpenAI layout only')
    v = backbone.visual
    vc = backbone.model_cfg['vision_cfg']
    width = v.conv1.out_channels
    act = nn.GELU if not backbone.quick_gelu else public.transformer.QuickGELU
    vt = public.transformer.VisionTransformer(
        image_size=vc['image_size'], patch_size=vc['patch_size'], width=width,
        layers=vc['layers'], heads=width // vc.get('head_width', 64),
        mlp_ratio=vc.get('mlp_ratio', 4.0), output_dim=backbone.embed_dim, act_layer=act)
    vt.load_state_dict(v.state_dict(), strict=True)
    return vt.eval()


class _PublicCLIP(nn.Module):
    """The ``encode_image(image, external_feats, beta, gamma)`` of the public ``model.py``."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def encode_image(self, image, external_feats, beta, gamma, normalize: bool = False):
        f = self.visual(image, external_feats, beta, gamma)
        return torch.nn.functional.normalize(f, dim=-1) if normalize else f


class _HubVFM(nn.Module):
    """declip_mm's VFM tower behind the torch.hub API the public ``forward_feature`` calls."""

    def __init__(self, tower, kind: str) -> None:
        super().__init__()
        self.tower = tower  # a VFMTeacher (timm DINO / DINOv2)
        self.blocks = tower.model.blocks
        p = tower.patch_size
        self.patch_embed = types.SimpleNamespace(patch_size=p if kind == 'dino' else (p, p))
        self.kind = kind

    def get_intermediate_layers(self, x, n: int = 1, reshape: bool = False):
        f = self.tower(x)  # (B, C, h, w): last block, final norm, patch tokens
        if self.kind == 'dinov2':
            return [f] if reshape else [f.flatten(2).transpose(1, 2)]
        tokens = f.flatten(2).transpose(1, 2)
        cls = tokens.new_zeros(tokens.shape[0], 1, tokens.shape[2])  # discarded by the caller
        return [torch.cat([cls, tokens], 1)]


def public_segmentor(public, seg) -> nn.Module:
    """A public ``ProxyCLIPSegmentation`` with the towers, text embeddings and settings of the
    declip_mm ``DeCLIPProxySegmentor`` ``seg`` (DINO / DINOv2 VFMs, OpenAI-layout towers)."""
    from torchvision import transforms
    cls = public.segmentor.ProxyCLIPSegmentation
    kind = {'dino_vitb8': 'dino', 'dino_vitb16': 'dino', 'dinov2_vitb14_reg': 'dinov2',
            'dinov2_vitb14': 'dinov2'}.get(seg.vfm.arch)
    if kind is None:
        raise ValueError(f'no public hub stand-in for VFM {seg.vfm.arch!r}')
    obj = cls.__new__(cls)
    nn.Module.__init__(obj)
    obj.clip = _PublicCLIP(public_vision_transformer(public, seg.backbone))
    obj.vfm_model = kind
    obj.vfm = _HubVFM(copy.deepcopy(seg.vfm.tower), kind).eval()
    mean = [float(m) for m in seg.clip_mean]
    std = [float(s) for s in seg.clip_std]
    obj.unnorm = public.segmentor.UnNormalize(mean, std)
    obj.norm = transforms.Normalize([float(m) for m in seg.vfm.mean.flatten()],
                                    [float(s) for s in seg.vfm.std.flatten()])
    emb = seg.class_embeddings()
    obj.query_features = emb.detach().clone()
    obj.query_idx = seg.name_to_class.detach().clone().to(torch.int64)
    obj.num_queries = emb.shape[0]
    obj.num_classes = int(obj.query_idx.max()) + 1
    obj.dtype = emb.dtype
    obj.logit_scale = seg.logit_scale
    obj.prob_thd = seg.prob_thd
    if seg.crop_size[0] != seg.crop_size[1] or seg.stride[0] != seg.stride[1]:
        raise ValueError('the public code takes square windows and strides')
    obj.slide_crop = seg.crop_size[0]
    obj.slide_stride = seg.stride[0]
    defaults = inspect.signature(cls.__init__).parameters  # the public beta / gamma
    obj.beta = defaults['beta'].default
    obj.gamma = defaults['gamma'].default
    return obj.eval()


#: tiny VFM towers for the side-by-side cases
TINY_VFMS = {'dino_vitb8': dict(embed_dim=32, depth=2, num_heads=2, img_size=32),
             'dinov2_vitb14_reg': dict(embed_dim=32, depth=2, num_heads=2, img_size=28)}


def tiny_proxy_segmentor(arch: str, seed: int = 0, crop: int = 112, stride: int = 56,
                         prob_thd: float = 0.3, logit_scale: float = 40.0):
    """A ``DeCLIPProxySegmentor`` on tiny random towers (OpenAI layout, patch 16, native grid =
    the window, so neither side resizes CLIP's position embedding) and a tiny ``arch`` VFM. The
    public code pads windows to a multiple of 56: ``crop`` should be one (112, 224, 336)."""
    from ..models.segmentors import DeCLIPProxySegmentor
    from .tiny_models import tiny_clip_config
    torch.manual_seed(seed)
    cfg = tiny_clip_config('openai', image_size=crop, patch_size=16)
    seg = DeCLIPProxySegmentor(
        backbone=dict(type='DeCLIPVisionTransformer', model_name=cfg),
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=cfg, templates='single'),
        vfm=dict(arch=arch, arch_overrides=TINY_VFMS[arch]),
        class_names=['sky', ['cat', 'kitten'], 'road', 'grass'], prob_thd=prob_thd,
        logit_scale=logit_scale,
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[122.771, 116.746, 104.094],
                               std=[68.501, 66.632, 70.323], bgr_to_rgb=True),
        test_cfg=dict(mode='slide', crop_size=crop, stride=stride, keep_seg_logits=True))
    seg.init_weights()
    return seg.eval()


@torch.no_grad()
def compare_segmentors(public, seg, x: torch.Tensor) -> dict:
    """Predict one image (1, 3, H, W) with both; max |Δ| of the class probabilities and the number
    of pixels whose label differs."""
    from mmseg.structures import SegDataSample
    h, w = x.shape[-2:]
    meta = dict(ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w), padding_size=[0, 0, 0, 0])
    ours = seg.predict(x, [SegDataSample(metainfo=meta)])[0]
    pub = public_segmentor(public, seg)
    with half_is_identity():
        theirs = pub.predict(x, [SegDataSample(metainfo=meta)])[0]
    a, b = ours.seg_logits.data, theirs.seg_logits.data
    return dict(prob_max_diff=float((a - b).abs().max()),
                label_mismatch=int((ours.pred_sem_seg.data != theirs.pred_sem_seg.data).sum()),
                pixels=int(h * w), prob_max=float(b.abs().max()))


@torch.no_grad()
def compare_custom_attn(public, backbone, x: torch.Tensor, feats: torch.Tensor) -> float:
    """max |Δ| / max |public| of the content tokens: declip_mm's proxy mode (its configured β, γ)
    vs the public ``VisionTransformer.forward(x, ex_feats, beta, gamma)`` at the public defaults
    (custom_attn in the last block)."""
    vt = public_vision_transformer(public, backbone)
    params = inspect.signature(public.transformer.VisionTransformer.forward).parameters
    beta, gamma = params['beta'].default, params['gamma'].default
    ours = backbone(x, proxy_feats=feats)['content'].flatten(2).transpose(1, 2)
    theirs = vt(x, feats, beta, gamma)
    return float((ours - theirs).abs().max() / theirs.abs().max())
