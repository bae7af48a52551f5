import pytest
import torch

from declip_mm.models import VFMTeacher

TINY = dict(embed_dim=32, depth=2, num_heads=2, img_size=56)


def _hub_layout(timm_sd, registers):
    """timm DINOv2 keys -> the DINOv2 hub layout (what facebookresearch/dinov2 checkpoints hold)."""
    sd = dict(timm_sd)
    if registers:
        pos = sd.pop('pos_embed')
        cls_pos = torch.randn(1, 1, pos.shape[-1])
        sd['pos_embed'] = torch.cat([cls_pos, pos], 1)
        sd['cls_token'] = sd['cls_token'] - cls_pos
        sd['register_tokens'] = sd.pop('reg_token')
    sd['mask_token'] = torch.zeros(1, sd['cls_token'].shape[-1])
    return sd


@pytest.mark.parametrize('arch', ['dinov2_vitb14_reg', 'dinov2_vitb14', 'dino_vitb8'])
def test_matches_timm_and_loads_hub_layout(tmp_path, arch):
    torch.manual_seed(0)
    src = VFMTeacher(arch, arch_overrides=TINY)
    timm_model = src.model
    p = src.patch_size
    x = torch.randn(2, 3, 56, 56)  # the native size: timm's own forward accepts it
    ref = timm_model.forward_features(x)[:, timm_model.num_prefix_tokens:]
    ours = src(x)
    assert ours.shape == (2, 32, 56 // p, 56 // p)
    assert torch.allclose(ours.flatten(2).transpose(1, 2), ref, atol=1e-5)
    # save in the hub layout, load into a fresh teacher, same outputs
    sd = timm_model.state_dict()
    if arch.startswith('dinov2'):
        sd = _hub_layout(sd, registers=arch.endswith('_reg'))
    path = tmp_path / 'vfm.pth'
    torch.save(sd, path)
    torch.manual_seed(1)
    fresh = VFMTeacher(arch, pretrained=str(path), arch_overrides=TINY)
    assert not torch.allclose(fresh(x), ours)
    fresh.init_weights()
    assert torch.allclose(fresh(x), ours, atol=1e-6)
    # rectangular grid works (position embedding resized)
    assert fresh(torch.randn(1, 3, 3 * p, 5 * p)).shape == (1, 32, 3, 5)


def test_frozen_and_input_side():
    t = VFMTeacher('dinov2_vitb14_reg', arch_overrides=TINY)
    assert not any(p.requires_grad for p in t.parameters())
    t.train()
    assert not t.training
    assert t.input_side(560, 16) == 490 and t.input_side(560, 14) == 560
    with pytest.raises(ValueError, match='not a multiple of the patch'):
        t(torch.randn(1, 3, 50, 56))


def test_sam_teacher(tmp_path):
    pytest.importorskip('segment_anything')
    args = dict(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1, ), img_size=64,
                window_size=2)
    torch.manual_seed(0)
    t = VFMTeacher('sam_vitb', arch_overrides=args)
    x = torch.randn(1, 3, 64, 64)
    out = t(x)
    assert out.shape == (1, 256, 4, 4) and t.input_side(560, 16) == 64
    torch.save({'image_encoder.' + k: v for k, v in t.model.state_dict().items()},
               tmp_path / 'sam.pth')
    torch.manual_seed(1)
    fresh = VFMTeacher('sam_vitb', pretrained=str(tmp_path / 'sam.pth'), arch_overrides=args)
    fresh.init_weights()
    assert torch.allclose(fresh(x), out, atol=1e-6)
    with pytest.raises(ValueError, match='takes 64x64'):
        t(torch.randn(1, 3, 32, 32))


def test_bad_arch_and_file(tmp_path):
    with pytest.raises(ValueError, match='unknown VFM arch'):
        VFMTeacher('clip')
    with pytest.raises(FileNotFoundError):
        VFMTeacher('dino_vitb16', pretrained=str(tmp_path / 'none.pth'))
    torch.save({'foo': torch.ones(1)}, tmp_path / 'wrong.pth')
    t = VFMTeacher('dino_vitb16', pretrained=str(tmp_path / 'wrong.pth'), arch_overrides=TINY)
    with pytest.raises(ValueError, match='does not fit'):
        t.init_weights()


def test_dinov2_position_interpolation_follows_hub_code():
    """DINOv2's interpolate_pos_encoding: scale_factor (n + 0.1) / M, bicubic, no antialias."""
    import math

    import torch.nn.functional as F

    from declip_mm.models.backbones.vfm_teacher import dino_resize_pos_embed
    torch.manual_seed(0)
    M, dim = 4, 8
    pos = torch.randn(1, M * M, dim, dtype=torch.float64)
    out = dino_resize_pos_embed(pos, (7, 7), 0, (M, M))
    g = pos.reshape(1, M, M, dim).permute(0, 3, 1, 2)
    s = (7 + 0.1) / math.sqrt(M * M)
    ref = F.interpolate(g, scale_factor=(s, s), mode='bicubic', antialias=False)
    assert torch.allclose(out, ref.permute(0, 2, 3, 1).reshape(1, 49, dim), atol=1e-6)  # fp32 like the hub
    # differs from a size-based resize (the sampling positions move by up to ~0.1 token)
    by_size = F.interpolate(g, size=(7, 7), mode='bicubic', align_corners=False)
    assert not torch.allclose(ref, by_size)
    assert dino_resize_pos_embed(pos, (M, M), 0, (M, M)) is pos
    t = VFMTeacher('dinov2_vitb14_reg', arch_overrides=TINY)
    assert t(torch.randn(1, 3, 14 * 5, 14 * 3)).shape == (1, 32, 5, 3)
