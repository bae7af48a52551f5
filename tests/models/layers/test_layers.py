import math

import pytest
import torch
import torch.nn.functional as F
from declip_reference import official_rope, rel_err

from declip_mm.models.layers import (
    ATTN_MODES,
    apply_rope_interleaved,
    decoupled_attention,
    decoupled_attention_weights,
    eva_rope_sincos,
    resize_pos_embed,
)


@pytest.mark.parametrize('mode', ATTN_MODES)
@pytest.mark.parametrize('shape', [(1, 1, 5, 8), (2, 3, 17, 16), (1, 2, 64, 32)])
def test_decoupled_attention_matches_explicit_softmax(mode, shape):
    q, k, v = (torch.randn(*shape, dtype=torch.float64) for _ in range(3))
    tau = 1 / math.sqrt(shape[-1])
    out = decoupled_attention(q.float(), k.float(), v.float(), mode, tau)

    def sm(a, b):
        return torch.softmax(tau * a @ b.transpose(-2, -1), -1)

    ref = {'vanilla': lambda: sm(q, k) @ v, 'maskclip': lambda: v, 'qq': lambda: sm(q, q) @ v,
           'kk': lambda: sm(k, k) @ v, 'csa': lambda: (sm(q, q) + sm(k, k)) @ v}[mode]()
    assert rel_err(out, ref) <= 1e-5
    A = decoupled_attention_weights(q, k, mode, tau)
    if mode == 'maskclip':
        assert A is None
    else:
        assert torch.allclose(A @ v, ref)
        assert torch.allclose(A.sum(-1), torch.full(A.shape[:-1], 2.0 if mode == 'csa' else 1.0,
                                                    dtype=A.dtype))


def test_unknown_mode():
    x = torch.randn(1, 1, 3, 4)
    with pytest.raises(ValueError, match='unknown attn_mode'):
        decoupled_attention(x, x, x, 'qk', 1.0)


@pytest.mark.parametrize('hw', [(3, 5), (6, 6), (2, 9), (14, 14)])
def test_resize_pos_embed_formula(hw):
    pos = torch.randn(1 + 16, 8, dtype=torch.float64)
    out = resize_pos_embed(pos, hw)
    grid = pos[1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=hw, mode='bicubic', align_corners=False, antialias=False)
    ref = torch.cat([pos[:1], ref.permute(0, 2, 3, 1).reshape(-1, 8)])
    assert out.shape == (1 + hw[0] * hw[1], 8)
    assert torch.allclose(out, ref)
    assert torch.equal(out[0], pos[0])  # CLS kept
    # batched layout (1, N, D) too
    assert torch.allclose(resize_pos_embed(pos[None], hw)[0], ref)


def test_resize_pos_embed_identity_and_errors():
    pos = torch.randn(1, 1 + 12, 4)
    assert torch.equal(resize_pos_embed(pos, (3, 4), src_hw=(3, 4)), pos)
    with pytest.raises(ValueError, match='square grid'):
        resize_pos_embed(pos, (3, 4))
    with pytest.raises(ValueError, match='does not match'):
        resize_pos_embed(pos, (3, 4), src_hw=(2, 4))


@pytest.mark.parametrize('hw', [(4, 4), (3, 5), (7, 2), (16, 16), (35, 35)])
@pytest.mark.parametrize('head_dim', [16, 64])
def test_rope_matches_official_formula(hw, head_dim):
    sincos = eva_rope_sincos(hw, head_dim, dtype=torch.float64)
    cos, sin = official_rope(*hw, head_dim)
    assert torch.allclose(sincos, torch.cat([sin, cos], -1))
    if hw[0] == hw[1]:  # the official square positions: arange(S) * 16 / S
        S = hw[0]
        t = torch.arange(S, dtype=torch.float64) * 16 / S
        f0 = t * 1.0  # the first frequency band is theta**0 = 1
        assert torch.allclose(cos[:, 0].reshape(S, S)[:, 0], f0.cos())
    # rotation keeps pair norms
    x = torch.randn(2, hw[0] * hw[1], head_dim, dtype=torch.float64)
    y = apply_rope_interleaved(x, sincos)
    assert torch.allclose(x.reshape(2, -1, head_dim // 2, 2).norm(dim=-1),
                          y.reshape(2, -1, head_dim // 2, 2).norm(dim=-1))


def test_rope_matches_timm_at_native_grid():
    import timm
    m = timm.create_model('eva02_base_patch16_clip_224', pretrained=False, embed_dim=64, depth=1,
                          num_heads=2, img_size=64, patch_size=8, num_classes=0)
    native = m.rope.get_embed()
    ours = eva_rope_sincos(tuple(m.patch_embed.grid_size), 32, ref_hw=m.rope.ref_feat_shape)
    assert native.shape == ours.shape
    assert torch.allclose(native, ours, atol=1e-6)
