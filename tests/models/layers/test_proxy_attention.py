"""attn_mode='proxy' (ProxyCLIP's proxy attention, docs/method.md §7) against the float64
transcription of the formula in tests/proxy_reference.py."""
import pytest
import torch
from proxy_reference import (
    bilinear_matrix,
    reference_proxy_content,
    reference_proxy_weights,
    reference_resize_values,
)

from declip_mm.models.backbones import DeCLIPVisionTransformer, ProxyVFM
from declip_mm.models.layers import proxy_attention, proxy_attention_weights
from declip_mm.testing import tiny_clip_config

TINY_VFM = {'dino_vitb8': dict(embed_dim=32, depth=2, num_heads=2, img_size=32),
            'dinov2_vitb14_reg': dict(embed_dim=32, depth=2, num_heads=2, img_size=28)}


def _rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize('shape', [(1, 8, 3, 3), (2, 16, 4, 5), (3, 5, 6, 6)])
def test_weights_match_formula(shape):
    torch.manual_seed(sum(shape))
    f = torch.randn(shape, dtype=torch.float64) + 0.3  # a shared offset: positive mean(S)
    ours = proxy_attention_weights(f)
    ref = reference_proxy_weights(f)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-12)
    # the mask is active (some weights are exactly 0) and not everything is masked
    assert (ref == 0).any() and (ref > 0).sum() > shape[0] * shape[2] * shape[3]


@pytest.mark.parametrize('beta,gamma', [(1.2, 3.0), (1.0, 2.0), (1.6, 5.0)])
def test_weights_beta_gamma(beta, gamma):
    torch.manual_seed(1)
    f = torch.randn(2, 12, 4, 4, dtype=torch.float64) + 0.2
    assert torch.allclose(proxy_attention_weights(f, beta, gamma),
                          reference_proxy_weights(f, beta, gamma), rtol=0, atol=1e-12)


def test_mean_is_per_window_not_per_batch():
    torch.manual_seed(2)
    a = torch.randn(1, 8, 3, 3, dtype=torch.float64) + 1.0  # high mean similarity
    b = torch.randn(1, 8, 3, 3, dtype=torch.float64)        # low
    both = proxy_attention_weights(torch.cat([a, b]))
    assert torch.allclose(both[0], reference_proxy_weights(a)[0], atol=1e-12)
    assert torch.allclose(both[1], reference_proxy_weights(b)[0], atol=1e-12)


def test_zero_entries_are_kept_negative_masked():
    # orthogonal one-hot tokens and beta = 0: S' is gamma on the diagonal and exactly 0 elsewhere;
    # the rule masks S' < 0 only, so every entry keeps weight e^0 against e^gamma
    f = torch.eye(4, dtype=torch.float64).reshape(4, 2, 2)[None]
    w = proxy_attention_weights(f, beta=0.0, gamma=3.0)[0]
    e = torch.exp(torch.tensor(3.0, dtype=torch.float64))
    assert torch.allclose(torch.diagonal(w), torch.full((4, ), float(e / (e + 3)),
                                                         dtype=torch.float64), atol=1e-12)
    assert torch.allclose(w[0, 1], 1 / (e + 3), atol=1e-12)


def test_fully_masked_row_keeps_its_token():
    # identical tokens: S = 1 everywhere, mean 1 -> (1 - 1.2) * 3 < 0 for every entry (the public
    # code gives NaN); here each token keeps itself
    f = torch.ones(1, 4, 2, 2, dtype=torch.float64)
    w = proxy_attention_weights(f)[0]
    assert torch.equal(w, torch.eye(4, dtype=torch.float64))


@pytest.mark.parametrize('clip_hw,vfm_hw', [((3, 3), (5, 5)), ((4, 6), (7, 9)), ((5, 5), (5, 5)),
                                            ((6, 6), (4, 4))])
def test_resize_matches_bilinear_matrix(clip_hw, vfm_hw):
    torch.manual_seed(3)
    v = torch.randn(2, clip_hw[0] * clip_hw[1], 6, dtype=torch.float64)
    feats = torch.randn(2, 5, *vfm_hw, dtype=torch.float64)
    out = proxy_attention(feats, v, clip_hw)
    ref = reference_proxy_weights(feats) @ reference_resize_values(v, clip_hw, vfm_hw)
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)


def test_bilinear_matrix_is_half_pixel():
    # independent check of the transcription: 2 -> 4 samples at x = -0.25 (clamped), 0.25, 0.75, 1.25
    m = bilinear_matrix(2, 4)
    assert torch.allclose(m, torch.tensor([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]],
                                          dtype=torch.float64))


def _tiny_vfm(arch):
    return ProxyVFM(arch, arch_overrides=TINY_VFM[arch]).eval()


@pytest.mark.parametrize('family', ['openai', 'eva02'])
@pytest.mark.parametrize('arch,side', [('dino_vitb8', 32), ('dinov2_vitb14_reg', 56),
                                       ('dinov2_vitb14_reg', 112)])
def test_backbone_content_matches_reference(family, arch, side):
    torch.manual_seed(4)
    bb = DeCLIPVisionTransformer(tiny_clip_config(family), attn_mode='proxy').eval()
    vfm = _tiny_vfm(arch)
    x = torch.randn(2, 3, side, side)
    feats = vfm(x, torch.tensor([0.48, 0.46, 0.41]), torch.tensor([0.27, 0.26, 0.28]))
    assert feats.shape[-1] == side // vfm.patch_size
    out = bb(x, proxy_feats=feats)['content']
    ref = reference_proxy_content(bb, x, feats)
    assert out.shape == ref.shape == (2, 32, side // vfm.patch_size, side // vfm.patch_size)
    assert _rel(out, ref) < 1e-5
    # the proxy path really differs from csa on the same tower (not a renamed mode)
    bb.attn_mode = 'csa'
    assert bb(x)['content'].shape[-1] == side // 8


def test_non_square_window_and_float64_exact():
    torch.manual_seed(5)
    bb = DeCLIPVisionTransformer(tiny_clip_config('eva02'), attn_mode='proxy').double().eval()
    x = torch.randn(1, 3, 48, 72, dtype=torch.float64)
    feats = torch.randn(1, 7, 5, 9, dtype=torch.float64)
    assert _rel(bb(x, proxy_feats=feats)['content'], reference_proxy_content(bb, x, feats)) < 1e-10


def test_proxy_needs_features_and_single_block():
    bb = DeCLIPVisionTransformer(tiny_clip_config('openai'), attn_mode='proxy').eval()
    with pytest.raises(ValueError, match='proxy_feats'):
        bb(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match='decouple_last'):
        DeCLIPVisionTransformer(tiny_clip_config('openai'), attn_mode='proxy', decouple_last=2)
    with pytest.raises(ValueError, match="'proxy'"):
        DeCLIPVisionTransformer(tiny_clip_config('openai'), attn_mode='prox')


def test_vfm_input_normalisation():
    """CLIP-normalised windows -> [0, 1] pixels -> ImageNet-normalised, resized for SAM / MAE."""
    vfm = _tiny_vfm('dino_vitb8')
    cm, cs = torch.tensor([0.48, 0.46, 0.41]), torch.tensor([0.27, 0.26, 0.28])
    pix = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    x = (pix - cm.double().view(1, 3, 1, 1)) / cs.double().view(1, 3, 1, 1)
    want = (pix - torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)) \
        / torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    assert torch.allclose(vfm.vfm_input(x, cm, cs).double(), want, atol=1e-5)
    vfm.input_size = 24
    r = vfm.vfm_input(x, cm, cs)
    assert r.shape[-2:] == (24, 24)
    m = bilinear_matrix(16, 24)
    assert torch.allclose(r.double(), torch.einsum('Yy,bcyx,Xx->bcYX', m, want, m), atol=1e-5)
    vfm.input_size = 'crop'
    assert vfm.vfm_input(x, cm, cs, crop_size=(32, 32)).shape[-2:] == (32, 32)


@pytest.mark.parametrize('arch,overrides,want', [
    ('sam_vitb', dict(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1, ), img_size=64,
                      window_size=2), (1024, 1024)),
    ('mae_vitb16', dict(embed_dim=32, depth=2, num_heads=2, img_size=32), (48, 48)),
    ('dinov2_vitb14_reg', TINY_VFM['dinov2_vitb14_reg'], (42, 56)),
])
def test_vfm_input_sizes_follow_the_public_code(arch, overrides, want):
    """SAM sees the window at 1024 x 1024, MAE at the crop size, DINO / DINOv2 the window itself."""
    vfm = ProxyVFM(arch, arch_overrides=overrides)
    seen = []
    vfm.tower.forward = lambda x: seen.append(tuple(x.shape[-2:])) or x[:, :1]
    vfm(torch.randn(1, 3, 42, 56), torch.zeros(3), torch.ones(3), crop_size=(48, 48))
    assert seen == [want]
    assert vfm.window_multiple() == (14 if arch.startswith('dinov2') else 1)
