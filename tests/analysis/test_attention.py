"""Explicit attention weights: each block's output and the decoupled content are rebuilt from them."""
import pytest
import torch

from declip_mm.analysis import attention_trace, block_attention, block_qkv

pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py



def merge(o):
    b, h, n, d = o.shape
    return o.transpose(1, 2).reshape(b, n, h * d)


@pytest.mark.parametrize('hw', [(32, 32), (24, 40)])
def test_block_outputs_rebuilt_from_the_weights(make_backbone, hw):
    bb = make_backbone(attn_mode='csa').double()
    ops = bb.ops
    x, grid = ops.embed(torch.randn(2, 3, *hw, dtype=torch.float64))
    rope = ops.rope(grid, x)
    for blk in ops.blocks():
        a = block_attention(ops, blk, x, rope)
        assert a.shape == (2, ops.num_heads, x.shape[1], x.shape[1])
        torch.testing.assert_close(a.sum(-1), torch.ones_like(a[..., 0]))
        _, _, v = block_qkv(ops, blk, x, rope)
        rebuilt = ops.ffn(blk, x + ops.attn_out(blk, merge(a @ v)))
        x = ops.run_block(blk, x, rope)  # the real block (SDPA inside)
        torch.testing.assert_close(rebuilt, x, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize('mode', ['csa', 'qq', 'kk'])
def test_trace_and_decoupled_weights_give_the_content(make_backbone, mode):
    bb = make_backbone(attn_mode=mode).double()
    img = torch.randn(1, 3, 24, 40, dtype=torch.float64)
    tr = attention_trace(bb, img)
    n = 1 + 3 * 5
    assert tr.grid == (3, 5) and len(tr.attn) == bb.depth and tr.mode == mode
    assert all(a.shape == (1, bb.num_heads, n, n) for a in tr.attn)
    torch.testing.assert_close(tr.decoupled.sum(-1), torch.ones(1, bb.num_heads, n,
                                                                 dtype=torch.float64))
    # the backbone's decoupled content from the weights (csa's weights are the mean of two softmaxes)
    ops = bb.ops
    x, grid = ops.embed(img)
    rope = ops.rope(grid, x)
    for blk in list(ops.blocks())[:-1]:
        x = ops.run_block(blk, x, rope)
    last = ops.blocks()[-1]
    q, k, v = (t.view(1, n, bb.num_heads, -1).transpose(1, 2) for t in ops.qkv(last, ops.ln1(last, x)))
    scale = 2.0 if mode == 'csa' else 1.0
    tokens = ops.attn_out(last, merge(scale * tr.decoupled @ v))
    content = ops.head(tokens[:, ops.num_prefix_tokens:]).transpose(1, 2).reshape(1, -1, *grid)
    torch.testing.assert_close(content, bb(img)['content'], atol=1e-10, rtol=1e-10)
    # keeping a subset of the layers
    some = attention_trace(bb, img, layers=[0, -1])
    assert some.attn[1] is None and torch.equal(some.attn[0], tr.attn[0])
    with pytest.raises(ValueError, match='multiples of'):
        attention_trace(bb, torch.randn(1, 3, 20, 32, dtype=torch.float64))
