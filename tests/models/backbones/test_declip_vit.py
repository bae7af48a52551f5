import pytest
import torch
from declip_reference import reference_forward, rel_err

from declip_mm.models import DeCLIPVisionTransformer
from declip_mm.models.layers import ATTN_MODES

# (H, W) in pixels for patch 8: the native 4x4 grid, a rectangle of 3x5 patches and a larger 6x4
SIZES = [(32, 32), (24, 40), (48, 32)]


@pytest.mark.parametrize('mode', ATTN_MODES)
@pytest.mark.parametrize('size', SIZES)
def test_forward_matches_float64_formula(make_backbone, mode, size):
    bb = make_backbone(attn_mode=mode)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = bb(x)
    ref = reference_forward(bb, x)
    h, w = size[0] // 8, size[1] // 8
    assert out['content'].shape == (2, 32, h, w)
    for key in ref:
        assert rel_err(out[key], ref[key]) <= 1e-5, (key, rel_err(out[key], ref[key]))
    assert ('context_k' in out) == (mode in ('kk', 'csa'))


@pytest.mark.parametrize('mode', ['qq', 'csa'])
def test_attn_scale_is_used(make_backbone, mode):
    x = torch.randn(1, 3, 32, 32)
    a = make_backbone(attn_mode=mode)
    b = make_backbone(attn_mode=mode, attn_scale=1.0)
    assert a.attn_scale == pytest.approx(a.head_dim ** -0.5)
    with torch.no_grad():
        ya, yb = a(x)['content'], b(x)['content']
    assert rel_err(yb, reference_forward(b, x)['content']) <= 1e-5
    assert rel_err(ya, yb) > 1e-3


def test_csa_is_sum_of_two_softmaxes(make_backbone):
    """csa output = out-proj applied to (A_qq + A_kk)·V; on OpenAI towers (no sub-LN, linear out-proj)
    it is the sum of the qq and kk outputs minus one out-proj bias."""
    x = torch.randn(1, 3, 24, 40)
    outs = {m: make_backbone(attn_mode=m) for m in ('qq', 'kk', 'csa')}
    if outs['csa'].family != 'openai':
        pytest.skip('linearity check needs an OpenAI tower (EVA has a sub-LN)')
    with torch.no_grad():
        tok = {}
        for m, bb in outs.items():
            captured = []
            h = bb.visual.ln_post.register_forward_pre_hook(
                lambda mod, a, store=captured: store.append(a[0]))
            bb(x)
            h.remove()
            tok[m] = captured[0]
    bias = outs['csa'].visual.transformer.resblocks[-1].attn.out_proj.bias
    assert rel_err(tok['csa'], tok['qq'] + tok['kk'] - bias) <= 1e-5


def test_encode_image_equals_open_clip_and_timm(tiny_cfg, family):
    import open_clip
    bb = DeCLIPVisionTransformer(tiny_cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = bb.encode_image(x)
        if family == 'openai':
            ref_model = open_clip.model.CLIP(**tiny_cfg).eval()
            ref_model.visual.load_state_dict(bb.visual.state_dict())
            ref = ref_model.encode_image(x)
        else:
            # open_clip's TimmModel forward: head(trunk(x)) with an empty head
            ref = bb.visual.head(bb.visual.trunk(x))
        assert rel_err(ours, ref) <= 1e-5
        assert torch.allclose(bb.encode_image(x, normalize=True).norm(dim=-1), torch.ones(2))


def _avg_pooled_eva(**kw):
    from declip_mm.testing.tiny_models import tiny_clip_config
    cfg = tiny_clip_config('eva02')
    cfg['vision_cfg'].update(kw)
    torch.manual_seed(0)
    return DeCLIPVisionTransformer(cfg).eval()


def test_encode_image_follows_the_avg_pooled_eva_trunk():
    """``timm_pool='avg'`` (the miniature world's CLIP): the embedding is fc_norm + head of the mean
    of the last block's patch rows, as open_clip's TimmModel (timm's ``Eva.forward_head``); float64
    reference from the formula; the CLS row gives a different embedding."""
    bb = _avg_pooled_eva(timm_pool='avg')
    t = bb.visual.trunk
    assert bb.ops.global_pool == 'avg' and isinstance(t.norm, torch.nn.Identity)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert rel_err(bb.encode_image(x), bb.visual.head(t(x))) <= 1e-5
        bb64 = bb.double()
        x64 = x.double()
        tokens, hw = bb64.ops.embed(x64)
        rope = bb64.ops.rope(hw, tokens)
        tokens, _ = bb64._run_blocks(tokens, rope, hw, collect=False)
        full = bb64.ops.run_block(bb64.ops.blocks()[-1], tokens, rope)
        ref = t.head(t.fc_norm(full[:, 1:].mean(dim=1)))
        cls = t.head(t.fc_norm(full[:, 0]))
        ours = bb64.encode_image(x64)
        assert torch.allclose(ours, ref, rtol=0, atol=1e-12)
        assert rel_err(ours, cls) > 0.1
    bb64.train()
    assert torch.allclose(bb64.encode_image(x64), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize('pool', ['max', 'avgmax'])
def test_unsupported_eva_pooling_is_a_clear_error(pool):
    with pytest.raises(ValueError, match='pooling of the EVA trunk'):
        _avg_pooled_eva(timm_pool=pool)


@pytest.mark.parametrize('size', [(32, 32), (48, 64)])
def test_cls_only_last_block_equals_full_block_float64(tiny_cfg, size):
    """encode_image computes only the CLS row of the last block; in float64 it equals the full
    block's CLS row, in train mode (with gradients) the full block runs."""
    bb = DeCLIPVisionTransformer(tiny_cfg).double().eval()
    x = torch.randn(3, 3, *size, dtype=torch.float64)
    ops = bb.ops
    with torch.no_grad():
        tokens, hw = ops.embed(x)
        rope = ops.rope(hw, tokens)
        tokens, _ = bb._run_blocks(tokens, rope, hw, collect=False)
        full = ops.run_block(ops.blocks()[-1], tokens, rope)[:, :1]
        cls = ops.run_block_cls(ops.blocks()[-1], tokens, rope)
        assert torch.allclose(cls, full, rtol=0, atol=1e-12)
        assert not torch.allclose(cls, tokens[:, :1])  # the block did something
        ref = bb.ops.head(full)[:, 0]
        assert torch.allclose(bb.encode_image(x), ref, rtol=0, atol=1e-12)
    bb.train()
    assert torch.allclose(bb.encode_image(x), ref, rtol=0, atol=1e-12)


def test_vanilla_content_cls_row_is_encode_image(make_backbone):
    """In vanilla mode the decoupled block is the normal block: its CLS row is encode_image."""
    bb = make_backbone(attn_mode='vanilla')
    x = torch.randn(1, 3, 24, 40)
    captured = {}
    head = bb.ops.head

    def spy(t):
        captured.setdefault('n', t.shape[1])
        return head(t)

    bb.ops.head = spy
    with torch.no_grad():
        bb(x)
    assert captured['n'] == 15  # patch rows only


def test_no_nxn_attention_matrix(make_backbone, monkeypatch):
    """The decoupled block must use SDPA only: any softmax call would build (N x N) weights."""
    def boom(*a, **k):
        raise AssertionError('softmax called: an N x N attention matrix was materialised')

    for mode in ('qq', 'kk', 'csa'):
        bb = make_backbone(attn_mode=mode)
        last = bb.ops.blocks()[-1]
        x = torch.randn(1, 3, 24, 40)
        with torch.no_grad():
            tokens, hw = bb.ops.embed(x)
            rope = bb.ops.rope(hw, tokens)
            tokens, _ = bb._run_blocks(tokens, rope, hw, collect=False)
            monkeypatch.setattr(torch, 'softmax', boom)
            monkeypatch.setattr(torch.Tensor, 'softmax', boom)
            monkeypatch.setattr(torch.nn.functional, 'softmax', boom)
            out = bb._decoupled_last_block(tokens, rope)
            monkeypatch.undo()
        assert out['tokens'].shape == tokens.shape
        assert last is bb.ops.blocks()[-1]


def test_intermediates_are_block_outputs(make_backbone):
    bb = make_backbone(out_indices=(0, -2))
    assert bb.out_indices == [0, 1]
    x = torch.randn(1, 3, 24, 40)
    seen = []
    hooks = [blk.register_forward_hook(lambda m, a, o: seen.append(o)) for blk in bb.ops.blocks()]
    with torch.no_grad():
        out = bb(x)
    for h in hooks:
        h.remove()
    npt = bb.ops.num_prefix_tokens
    for i, feat in zip([0, 1], out['intermediates']):
        expect = seen[i][:, npt:].transpose(1, 2).reshape(1, -1, 3, 5)
        assert torch.equal(feat, expect)


def test_frozen_stages_and_lock(make_backbone):
    bb = make_backbone(frozen_stages=1)
    stem = bb._stem_params()
    assert all(not p.requires_grad for p in stem)
    assert all(not p.requires_grad for p in bb.ops.blocks()[0].parameters())
    assert all(p.requires_grad for p in bb.ops.blocks()[1].parameters())
    bb.train()
    assert not bb.ops.blocks()[0].training and bb.ops.blocks()[1].training
    bb.lock()
    assert not any(p.requires_grad for p in bb.parameters()) and not bb.training


def test_gradient_checkpointing_same_grads(make_backbone):
    x = torch.randn(1, 3, 24, 40)
    grads = []
    for with_cp in (False, True):
        bb = make_backbone(with_cp=with_cp).train()
        bb(x)['content'].square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in bb.parameters() if p.grad is not None]))
    assert rel_err(grads[1], grads[0]) <= 1e-5


@pytest.mark.parametrize('kwargs, match', [
    (dict(attn_mode='nope'), 'unknown attn_mode'),
    (dict(out_indices=(2, )), "the last block.*out_type='featmap'"),
    (dict(out_indices=(3, )), 'out of range'),
    (dict(frozen_stages=9), 'frozen_stages'),
    (dict(pretrained='/nonexistent/clip.pt'), 'not found'),
    (dict(pretrained='https://example.com/clip.pt'), 'local file'),
])
def test_invalid_config(make_backbone, kwargs, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        make_backbone(**kwargs)


def test_unknown_model_name():
    with pytest.raises(ValueError, match='unknown open_clip model name'):
        DeCLIPVisionTransformer('ViT-Q-99')


def test_input_not_multiple_of_patch(make_backbone):
    bb = make_backbone()
    with pytest.raises(ValueError, match='not a multiple of the patch size'):
        bb(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        bb(torch.randn(3, 32, 32))


@pytest.mark.parametrize('name, family, width', [('ViT-B-16', 'openai', 768),
                                                  ('EVA02-B-16', 'eva02', 768)])
def test_named_architectures_build(name, family, width):
    bb = DeCLIPVisionTransformer(name)
    assert bb.family == family and bb.width == width and bb.depth == 12
    assert bb.patch_size == (16, 16) and bb.embed_dim == 512
    assert bb.quick_gelu == (family == 'openai')
