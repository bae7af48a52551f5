import pytest
import torch
from declip_reference import rel_err

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


SAM_TINY = dict(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1, ), img_size=64,
                window_size=2)


def reference_sam_forward(model, x, grid_hw):
    """Float64 forward of the official SAM ablation: patch embedding, the 64x64 (here 4x4) absolute
    position embedding resized bicubically to the input grid (official image_encoder.py
    rescale_positional_embedding), segment_anything's blocks and neck."""
    import copy
    m = copy.deepcopy(model).double()
    t = m.patch_embed(x.double())
    h, w = t.shape[1:3]
    pos = m.pos_embed
    if (h, w) != tuple(grid_hw):
        pos = torch.nn.functional.interpolate(pos.permute(0, 3, 1, 2), (h, w), mode='bicubic',
                                              align_corners=False).permute(0, 2, 3, 1)
    t = t + pos
    for blk in m.blocks:
        t = blk(t)
    return m.neck(t.permute(0, 3, 1, 2))


def test_sam_teacher(tmp_path):
    pytest.importorskip('segment_anything')
    torch.manual_seed(0)
    t = VFMTeacher('sam_vitb', arch_overrides=SAM_TINY)
    x = torch.randn(1, 3, 64, 64)
    out = t(x)
    assert out.shape == (1, 256, 4, 4)
    torch.save({'image_encoder.' + k: v for k, v in t.model.state_dict().items()},
               tmp_path / 'sam.pth')
    torch.manual_seed(1)
    fresh = VFMTeacher('sam_vitb', pretrained=str(tmp_path / 'sam.pth'), arch_overrides=SAM_TINY)
    fresh.init_weights()
    assert torch.allclose(fresh(x), out, atol=1e-6)
    with pytest.raises(ValueError, match='not a multiple of the patch 16'):
        t(torch.randn(1, 3, 40, 48))


@pytest.mark.parametrize('hw', [(3, 3), (7, 5), (6, 6)])
def test_sam_teacher_takes_the_student_letterbox(hw):
    """The official SAM ablation: SAM sees the 560 letterbox (35 x 35 tokens, its position embedding
    rescaled) instead of a 1024 input; here tiny grids around the 4 x 4 native one."""
    pytest.importorskip('segment_anything')
    torch.manual_seed(0)
    t = VFMTeacher('sam_vitb', arch_overrides=SAM_TINY)
    with torch.no_grad():
        t.model.pos_embed.normal_()  # SAM's init is zeros: make the resize visible
    assert t.input_side(560, 16) == 560 and t.input_side(64, 16) == 64
    x = torch.randn(2, 3, 16 * hw[0], 16 * hw[1])
    out = t(x)
    ref = reference_sam_forward(t.model, x, (4, 4))
    assert out.shape == (2, 256, *hw) and out.dtype == torch.float32
    assert rel_err(out, ref) <= 1e-5
    # half precision, as the official build_vfm(...).half(): fp16 weights, fp32 output
    t16 = VFMTeacher('sam_vitb', arch_overrides=SAM_TINY, precision='fp16')
    t16.model.load_state_dict(t.model.state_dict())
    assert all(p.dtype == torch.float16 for p in t16.parameters())
    out16 = t16(x)
    assert out16.dtype == torch.float32 and 0 < rel_err(out16, ref) <= 2e-2
    with pytest.raises(ValueError, match="precision must be None or 'fp16'"):
        VFMTeacher('sam_vitb', arch_overrides=SAM_TINY, precision='bf16')


def test_bad_arch_and_file(tmp_path):
    with pytest.raises(ValueError, match='unknown VFM arch'):
        VFMTeacher('clip')
    with pytest.raises(FileNotFoundError):
        VFMTeacher('dino_vitb16', pretrained=str(tmp_path / 'none.pth'))
    torch.save({'foo': torch.ones(1)}, tmp_path / 'wrong.pth')
    t = VFMTeacher('dino_vitb16', pretrained=str(tmp_path / 'wrong.pth'), arch_overrides=TINY)
    with pytest.raises(ValueError, match='does not fit'):
        t.init_weights()


def hub_interpolate_pos_encoding(pos_embed, H, W, patch, offset, antialias):
    """facebookresearch/dinov2 DinoVisionTransformer.interpolate_pos_encoding, written from the hub
    code in float64 (pos_embed holds the CLS slot first; ``B, nc, w, h = x.shape`` there, so its
    ``w`` is the image height)."""
    import math

    import torch.nn.functional as F
    w, h = H, W
    N = pos_embed.shape[1] - 1
    M = int(math.sqrt(N))
    w0, h0 = w // patch, h // patch
    if w0 * h0 == N and w == h:
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, 0], pos_embed[:, 1:]
    kwargs = {}
    if offset:
        kwargs['scale_factor'] = (float(w0 + offset) / M, float(h0 + offset) / M)
    else:
        kwargs['size'] = (w0, h0)
    patch_pos = F.interpolate(patch_pos.reshape(1, M, M, -1).permute(0, 3, 1, 2), mode='bicubic',
                              antialias=antialias, **kwargs)
    assert (w0, h0) == patch_pos.shape[-2:]
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, pos_embed.shape[-1])
    return torch.cat((cls_pos.unsqueeze(0), patch_pos), dim=1)


# (arch, the hub's interpolate_offset, interpolate_antialias): dinov2/hub/backbones.py builds the
# register models with (0.0, True) and the others with the defaults (0.1, False); DINO v1's
# interpolate_pos_encoding is the (0.1, False) rule.
HUB_RULES = [('dinov2_vitb14_reg', 0.0, True), ('dinov2_vitb14', 0.1, False),
             ('dino_vitb8', 0.1, False)]


@pytest.mark.parametrize('arch, offset, antialias', HUB_RULES)
@pytest.mark.parametrize('grid', [(3, 3), (7, 7), (5, 3), (35, 35)])
def test_position_interpolation_follows_each_hub_model(arch, offset, antialias, grid):
    from declip_mm.models.backbones.vfm_teacher import VFM_ARCHS, dino_resize_pos_embed
    assert VFM_ARCHS[arch]['pos'] == dict(antialias=antialias, offset=offset)
    g = torch.Generator().manual_seed(grid[0] * 10 + grid[1])
    M, dim, p = 4, 8, 14
    hub_pos = torch.randn(1, 1 + M * M, dim, dtype=torch.float64, generator=g)
    ref = hub_interpolate_pos_encoding(hub_pos, grid[0] * p, grid[1] * p, p, offset, antialias)
    # timm's register layout has no CLS slot (folded into cls_token): prefix 0; DINO keeps it
    ours_grid = dino_resize_pos_embed(hub_pos[:, 1:].float(), grid, 0, (M, M), **VFM_ARCHS[arch]['pos'])
    assert torch.allclose(ours_grid.double(), ref[:, 1:], atol=1e-5)
    ours_cls = dino_resize_pos_embed(hub_pos.float(), grid, 1, (M, M), **VFM_ARCHS[arch]['pos'])
    assert torch.allclose(ours_cls.double(), ref, atol=1e-5)
    # the other rule gives different targets: the rule matters
    other = [r for r in HUB_RULES if r[2] != antialias][0]
    wrong = hub_interpolate_pos_encoding(hub_pos, grid[0] * p, grid[1] * p, p, other[1], other[2])
    assert (wrong - ref).abs().max() > 1e-3


@pytest.mark.parametrize('arch, offset, antialias', HUB_RULES)
def test_teacher_forward_uses_its_hub_rule(arch, offset, antialias):
    """End to end: the teacher's features equal timm's blocks fed with the hub-rule position table."""
    torch.manual_seed(0)
    t = VFMTeacher(arch, arch_overrides=TINY)
    m = t.model
    with torch.no_grad():
        m.pos_embed.normal_()
    p = t.patch_size
    grid = (5, 3)
    x = torch.randn(2, 3, grid[0] * p, grid[1] * p)
    n_pos_prefix = 0 if m.no_embed_class else m.num_prefix_tokens
    pos = m.pos_embed.detach().double()
    if n_pos_prefix == 0:  # add a dummy CLS slot for the hub function, drop it again
        pos = torch.cat([torch.zeros_like(pos[:, :1]), pos], 1)
    pos = hub_interpolate_pos_encoding(pos, x.shape[-2], x.shape[-1], p, offset, antialias)
    pos = pos[:, 1 - n_pos_prefix:].float() if n_pos_prefix == 0 else pos.float()
    with torch.no_grad():
        tok = m.patch_embed.norm(m.patch_embed.proj(x).flatten(2).transpose(1, 2))
        prefix = [m.cls_token.expand(2, -1, -1)]
        if getattr(m, 'reg_token', None) is not None:
            prefix.append(m.reg_token.expand(2, -1, -1))
        if m.no_embed_class:
            tok = torch.cat(prefix + [tok + pos], 1)
        else:
            tok = torch.cat(prefix + [tok], 1) + pos
        tok = m.norm_pre(tok)
        for blk in m.blocks:
            tok = blk(tok)
        ref = m.norm(tok)[:, m.num_prefix_tokens:].transpose(1, 2).reshape(2, -1, *grid)
    assert torch.allclose(t(x), ref, atol=1e-5)


def test_native_grid_and_rectangles():
    from declip_mm.models.backbones.vfm_teacher import dino_resize_pos_embed
    pos = torch.randn(1, 16, 8)
    assert dino_resize_pos_embed(pos, (4, 4), 0, (4, 4)) is pos
    t = VFMTeacher('dinov2_vitb14_reg', arch_overrides=TINY)
    assert t(torch.randn(1, 3, 14 * 5, 14 * 3)).shape == (1, 32, 5, 3)


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_nonfinite_hub_checkpoint_is_refused(tmp_path, suffix):
    """Issue 21.10: a DINOv2 hub-layout file with a NaN weight is refused by the teacher's loader
    (both containers), naming the file and the tensor; the finite file loads."""
    from safetensors.torch import save_file
    torch.manual_seed(0)
    src = VFMTeacher('dinov2_vitb14_reg', arch_overrides=TINY)
    sd = {k: v.clone().contiguous()
          for k, v in _hub_layout(src.model.state_dict(), registers=True).items()}
    good, bad = tmp_path / f'good{suffix}', tmp_path / f'bad{suffix}'
    save = save_file if suffix == '.safetensors' else torch.save
    save(sd, str(good))
    sd['blocks.1.mlp.fc1.weight'][3, 2] = float('nan')
    save(sd, str(bad))
    VFMTeacher('dinov2_vitb14_reg', pretrained=str(good), arch_overrides=TINY).init_weights()
    with pytest.raises(ValueError, match=rf"VFM teacher checkpoint .*bad\{suffix}' holds "
                                         r"non-finite values.*blocks\.1\.mlp\.fc1\.weight"):
        VFMTeacher('dinov2_vitb14_reg', pretrained=str(bad), arch_overrides=TINY).init_weights()
