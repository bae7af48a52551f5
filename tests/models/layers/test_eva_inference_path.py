"""The EVA inference path: the one-pass RoPE (``rope_patch_rows``), the in-place SwiGLU
(``swiglu_inplace``) and the block written out with them, against timm's own
``apply_rot_embed_cat`` / ``SwiGLU`` / ``EvaBlock.forward`` (float32 and float64, several shapes,
strided inputs as the attention produces them)."""
import pytest
import torch
from timm.layers import SwiGLU
from timm.layers.pos_embed_sincos import apply_rot_embed_cat
from torch import nn

from declip_mm.benchmarking.reference_towers import literal_rope, literal_rope_rows
from declip_mm.models import DeCLIPVisionTransformer
from declip_mm.models.layers import eva_rope_sincos, rope_patch_rows
from declip_mm.models.layers import rope as rope_module
from declip_mm.models.layers.lean_mlp import swiglu_inplace
from declip_mm.testing import tiny_clip_config


def timm_rows(x, table, npt):
    """timm's EvaAttention: prefix rows untouched, the rest rotated, rounded to x's dtype."""
    return torch.cat([x[:, :, :npt], apply_rot_embed_cat(x[:, :, npt:], table).to(x.dtype)], 2)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('b,h,hw,d,npt', [(2, 3, (5, 7), 16, 1), (1, 12, (21, 21), 64, 1),
                                          (3, 2, (4, 6), 8, 0), (2, 4, (3, 3), 32, 2)])
def test_rope_rows_equal_timm(dtype, b, h, hw, d, npt, monkeypatch):
    n = npt + hw[0] * hw[1]
    table = eva_rope_sincos(hw, d, dtype=dtype)
    # as the attention makes them: (B, N, H, d) projections viewed as (B, H, N, d)
    x = torch.randn(b, n, h, d, dtype=dtype).transpose(1, 2)
    want = timm_rows(x, table, npt)
    with monkeypatch.context() as mp:  # the one-pass path is taken: the literal formula is not used
        mp.setattr(rope_module, 'apply_rope_interleaved', None)
        got = rope_patch_rows(x, table, npt)
    assert got.dtype == dtype and got.shape == want.shape
    scale = x.abs().max()
    assert (got - want).abs().max() <= 2 * torch.finfo(dtype).eps * scale  # bit-identical here
    assert torch.equal(got[:, :, :npt], x[:, :, :npt])
    # the benchmark's reference (the literal formula): timm's values exactly
    assert torch.equal(literal_rope_rows(x, table, npt), want)


def test_rope_rows_fallbacks_keep_timm_values_and_gradients():
    table = eva_rope_sincos((4, 5), 16)
    x = torch.randn(2, 21, 3, 16).transpose(1, 2).requires_grad_()
    got = rope_patch_rows(x, table, 1)  # autograd: the literal formula
    want = timm_rows(x, table, 1)
    assert torch.equal(got, want)
    g = torch.randn_like(got)
    (gx, ) = torch.autograd.grad((got * g).sum(), x)
    (wx, ) = torch.autograd.grad((want * g).sum(), x)
    assert torch.equal(gx, wx)
    xb = x.detach().bfloat16()  # bf16 activations with the fp32 table (autocast): rounded once
    assert torch.equal(rope_patch_rows(xb, table, 1), timm_rows(xb, table, 1))
    odd = torch.randn(2, 3, 21, 17)[..., :16]  # odd strides cannot be viewed as complex pairs
    assert torch.equal(rope_patch_rows(odd, table, 1), timm_rows(odd, table, 1))


@pytest.mark.parametrize('hw', [(4, 4), (3, 5)])
def test_eva_inference_block_equals_timm_block(hw):
    torch.manual_seed(0)
    m = DeCLIPVisionTransformer(model_name=tiny_clip_config('eva02'), attn_mode='csa').eval()
    ops = m.ops
    x = torch.randn(2, 3, hw[0] * 8, hw[1] * 8)
    tokens, grid = ops.embed(x)
    rope = ops.rope(grid, tokens)
    for blk in ops.blocks():
        with torch.no_grad():
            fast = ops.run_block(blk, tokens, rope)
            want = blk(tokens, rope=rope)  # timm's forward
        assert (fast - want).abs().max() <= 1e-6 * want.abs().max()
        tokens = want
    with torch.no_grad():  # the whole backbone: literal (timm's blocks) vs the written-out path
        fast = m(x)['content']
        with literal_rope(m) as swapped:
            want = m(x)['content']
    assert swapped == 1
    assert (fast - want).abs().max() <= 1e-5 * want.abs().max()


def test_eva_inference_block_keeps_forward_hooks():
    m = DeCLIPVisionTransformer(model_name=tiny_clip_config('eva02'), attn_mode='csa').eval()
    seen = []
    handle = m.ops.blocks()[0].attn.register_forward_hook(lambda mod, a, o: seen.append(o))
    with torch.no_grad():
        m(torch.randn(1, 3, 32, 32))
    handle.remove()
    assert len(seen) == 1  # the hooked block ran timm's forward


@pytest.mark.parametrize('act,dtype', [(nn.SiLU, torch.float32), (nn.GELU, torch.float32),
                                       (nn.SiLU, torch.float64)])
def test_swiglu_inplace_equals_timm(act, dtype):
    torch.manual_seed(0)
    mlp = SwiGLU(24, 40, act_layer=act, norm_layer=nn.LayerNorm).to(dtype).eval()
    x = torch.randn(2, 9, 24, dtype=dtype)
    with torch.no_grad():
        want = mlp(x)
        assert torch.equal(swiglu_inplace(mlp, x), want)
    with torch.enable_grad():  # with autograd: timm's forward itself
        assert torch.equal(swiglu_inplace(mlp, x), want)


def test_eva_inference_block_under_bf16_autocast_equals_timm():
    """bf16 teachers: the written-out block keeps timm's dtype promotion (an fp32 residual stream
    with bf16 branches stays fp32), bit for bit."""
    torch.manual_seed(0)
    m = DeCLIPVisionTransformer(model_name=tiny_clip_config('eva02'), attn_mode='csa').eval()
    ops = m.ops
    with torch.autocast('cpu', dtype=torch.bfloat16):
        tokens, grid = ops.embed(torch.randn(2, 3, 32, 40))
        rope = ops.rope(grid, tokens)
        for blk in ops.blocks():
            with torch.inference_mode():
                fast = ops.run_block(blk, tokens, rope)
            want = blk(tokens, rope=rope)
            assert fast.dtype == want.dtype == torch.float32
            assert torch.equal(fast, want)
            tokens = want


def test_eva_inference_block_falls_back_for_adapted_layers(monkeypatch):
    """A wrapped projection (e.g. an adapter) is not what the written-out block reproduces: timm's
    forward runs (attention_qkv is not used) and gives the wrapped layer's result."""
    m = DeCLIPVisionTransformer(model_name=tiny_clip_config('eva02'), attn_mode='csa').eval()
    blk = m.ops.blocks()[0]
    blk.attn.q_proj = nn.Sequential(blk.attn.q_proj)
    monkeypatch.setattr(type(m.ops), 'attention_qkv', None)
    tokens, grid = m.ops.embed(torch.randn(1, 3, 32, 32))
    rope = m.ops.rope(grid, tokens)
    with torch.no_grad():
        assert torch.equal(m.ops.run_block(blk, tokens, rope), blk(tokens, rope=rope))
