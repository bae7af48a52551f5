"""DeCLIPProxySegmentor (docs/method.md §7): the sliding-window protocol with the proxy mode, against
a literal per-window loop on the float64 reference, and side by side with the public ProxyCLIP code.

The side-by-side tests import the public code from a checkout named by ``PROXYCLIP_ROOT`` (e.g.
``git --git-dir <fetched mirror> archive HEAD | tar -x -C /tmp/proxyclip_src``); nothing of it is
stored in this repository. Without the variable they are skipped.
"""
import os

import pytest
import torch
import torch.nn.functional as F
from proxy_reference import reference_proxy_content

from declip_mm.models.checkpoint_policy import check_mode_pair
from declip_mm.models.segmentors import DeCLIPProxySegmentor
from declip_mm.testing import tiny_clip_config
from declip_mm.testing.proxyclip_public import TINY_VFMS, tiny_proxy_segmentor

PUBLIC = os.environ.get('PROXYCLIP_ROOT')
needs_public = pytest.mark.skipif(
    not (PUBLIC and os.path.isfile(os.path.join(PUBLIC, 'proxyclip_segmentor.py'))),
    reason='PROXYCLIP_ROOT does not name a mc-lan/ProxyCLIP checkout (side-by-side run skipped)')


def _seg(family, arch, crop, stride):
    torch.manual_seed(0)
    cfg = tiny_clip_config(family)
    return DeCLIPProxySegmentor(
        backbone=dict(type='DeCLIPVisionTransformer', model_name=cfg),
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=cfg, templates='single'),
        vfm=dict(arch=arch, arch_overrides=TINY_VFMS[arch]),
        class_names=['sky', ['cat', 'kitten'], 'road'],
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[122.771, 116.746, 104.094],
                               std=[68.501, 66.632, 70.323], bgr_to_rgb=True),
        test_cfg=dict(mode='slide', crop_size=crop, stride=stride, batch_size=4)).eval()


def _literal(seg, img):
    """Window by window: pad centred to the lcm of both patches, ImageNet input for the VFM written
    out, float64 reference content, cosine, bilinear to the padded window, crop, average."""
    _, _, H, W = img.shape
    (hc, wc), (hs, ws) = seg.crop_size, seg.stride
    m = seg.window_multiple()
    text = seg.class_embeddings().double()
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    preds = torch.zeros(1, text.shape[0], H, W, dtype=torch.float64)
    count = torch.zeros(1, 1, H, W, dtype=torch.float64)
    for i in range(max(H - hc + hs - 1, 0) // hs + 1):
        for j in range(max(W - wc + ws - 1, 0) // ws + 1):
            y2, x2 = min(i * hs + hc, H), min(j * ws + wc, W)
            y1, x1 = max(y2 - hc, 0), max(x2 - wc, 0)
            c = img[:, :, y1:y2, x1:x2]
            h, w = c.shape[-2:]
            lr, tb = (-w) % m[1], (-h) % m[0]
            pad = (lr // 2, lr - lr // 2, tb // 2, tb - tb // 2)
            c = F.pad(c, pad)
            pix = c.double() * seg.clip_std.double().view(1, 3, 1, 1) \
                + seg.clip_mean.double().view(1, 3, 1, 1)
            feats = seg.vfm.tower(((pix - mean) / std).float())  # the tower of test_vfm_teacher
            content = reference_proxy_content(seg.backbone, c, feats)
            cos = torch.einsum('bchw,nc->bnhw', F.normalize(content, dim=1), text)
            cos = F.interpolate(cos, size=c.shape[-2:], mode='bilinear', align_corners=False)
            preds[:, :, y1:y2, x1:x2] += cos[:, :, pad[2]:pad[2] + h, pad[0]:pad[0] + w]
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


@pytest.mark.parametrize('family,arch,hw,crop,stride', [
    ('openai', 'dino_vitb8', (40, 70), 32, 24),
    ('eva02', 'dinov2_vitb14_reg', (56, 90), 56, 28),
    ('eva02', 'dino_vitb8', (20, 50), 32, 16),   # image below the crop: padded windows
])
def test_slide_matches_literal_reference(family, arch, hw, crop, stride):
    seg = _seg(family, arch, crop, stride)
    img = torch.randn(1, 3, *hw)
    with torch.no_grad():
        out = seg.inference(img)
    ref = _literal(seg, img)
    assert out.shape == ref.shape
    assert float((out.double() - ref).abs().max()) < 2e-5 * float(ref.abs().max())


def test_window_multiple_is_lcm_and_mode_is_forced():
    assert _seg('openai', 'dinov2_vitb14_reg', 56, 28).window_multiple() == (56, 56)
    assert _seg('openai', 'dino_vitb8', 32, 16).window_multiple() == (8, 8)
    with pytest.raises(ValueError, match="attn_mode='proxy'"):
        DeCLIPProxySegmentor(backbone=dict(type='DeCLIPVisionTransformer',
                                           model_name=tiny_clip_config('openai'), attn_mode='csa'),
                             text_encoder=dict(type='DeCLIPTextEncoder',
                                               model_name=tiny_clip_config('openai')),
                             vfm=dict(arch='dino_vitb8'), class_names=['a', 'b'],
                             data_preprocessor=dict(type='SegDataPreProcessor', mean=[0, 0, 0],
                                                    std=[1, 1, 1]))


def test_missing_vfm_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='VFM'):
        _seg_cfg = dict(arch='dino_vitb8', pretrained=str(tmp_path / 'dino_vitbase8.pth'))
        from declip_mm.models.backbones import ProxyVFM
        ProxyVFM(**_seg_cfg)


@pytest.mark.parametrize('trained', ['qq', 'kk', 'csa', None])
def test_mode_guard_accepts_every_export_in_proxy(trained):
    info = check_mode_pair(trained, 'proxy', 'ckpt.pth')
    if trained is None:
        assert info is None
    else:
        assert 'proxy' in info and 'V' in info


@needs_public
@pytest.mark.parametrize('arch', ['dino_vitb8', 'dinov2_vitb14_reg'])
def test_side_by_side_with_public_segmentor(arch):
    from declip_mm.testing.proxyclip_public import compare_segmentors, load_public
    public = load_public(PUBLIC)
    seg = tiny_proxy_segmentor(arch, seed=1)
    torch.manual_seed(2)
    r = compare_segmentors(public, seg, torch.randn(1, 3, 112, 200))
    assert r['prob_max_diff'] < 1e-5 and r['label_mismatch'] == 0, r


@needs_public
@pytest.mark.parametrize('side', [64, 112])
def test_side_by_side_with_public_custom_attn(side):
    from declip_mm.models.backbones import DeCLIPVisionTransformer
    from declip_mm.testing.proxyclip_public import compare_custom_attn, load_public
    public = load_public(PUBLIC)
    torch.manual_seed(side)
    bb = DeCLIPVisionTransformer(tiny_clip_config('openai', image_size=side, patch_size=16),
                                 attn_mode='proxy').eval()
    x = torch.randn(2, 3, side, side)
    feats = torch.randn(2, 12, side // 14 + 1, side // 14 + 1) + 0.2
    assert compare_custom_attn(public, bb, x[:1], feats[:1]) < 1e-5
    assert compare_custom_attn(public, bb, x[1:], feats[1:]) < 1e-5


@needs_public
def test_pos_embed_offset_matches_public_resize_off_the_native_grid():
    """At a window off the tower's native grid the public open_clip copy resizes the position
    embedding with scale_factor (n + 0.1) / M; pos_embed_offset=0.1 does the same, the default
    (bicubic to the size, docs/method.md §1) does not."""
    from declip_mm.models.backbones import DeCLIPVisionTransformer
    from declip_mm.testing.proxyclip_public import compare_custom_attn, load_public
    public = load_public(PUBLIC)
    torch.manual_seed(7)
    cfg = tiny_clip_config('openai', image_size=64, patch_size=16)  # native 4 x 4
    x = torch.randn(1, 3, 112, 112)                                 # 7 x 7 tokens
    feats = torch.randn(1, 12, 8, 8) + 0.2
    bb = DeCLIPVisionTransformer(cfg, attn_mode='proxy', pos_embed_offset=0.1).eval()
    assert compare_custom_attn(public, bb, x, feats) < 1e-5
    bb.ops.pos_offset = 0.0
    assert compare_custom_attn(public, bb, x, feats) > 1e-4
    with pytest.raises(ValueError, match='OpenAI'):
        DeCLIPVisionTransformer(tiny_clip_config('eva02'), pos_embed_offset=0.1)
