"""decouple_last = k > 1 (docs/method.md §6): side outputs of blocks L-k .. L-2, main path unchanged."""
import pytest
import torch
from declip_reference import reference_forward, rel_err

from declip_mm.models.layers import ATTN_MODES

SIDE_KEYS = ('context_q_blocks', 'context_k_blocks', 'content_blocks')


@pytest.mark.parametrize('mode', ATTN_MODES)
def test_k1_has_no_side_outputs_and_main_path_is_bit_identical(make_backbone, mode):
    """k = 1 is today's forward; k = 3 adds side outputs and leaves the final outputs bit-identical."""
    x = torch.randn(2, 3, 24, 40)
    one, three = make_backbone(attn_mode=mode), make_backbone(attn_mode=mode, decouple_last=3)
    with torch.no_grad():
        a, b = one(x), three(x)
    assert not any(k in a for k in SIDE_KEYS)
    for key in ('content', 'context_q', 'context_k'):
        assert (key in a) == (key in b)
        if key in a:
            assert torch.equal(a[key], b[key]), key
    assert len(b['context_q_blocks']) == len(b['content_blocks']) == 2
    assert ('context_k_blocks' in b) == (mode in ('kk', 'csa'))


@pytest.mark.parametrize('mode', ATTN_MODES)
@pytest.mark.parametrize('k,size', [(2, (32, 32)), (3, (24, 40))])
def test_side_outputs_match_float64_formula(make_backbone, mode, k, size):
    bb = make_backbone(attn_mode=mode, decouple_last=k)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = bb(x)
    ref = reference_forward(bb, x)
    assert set(ref) == set(out) - {'intermediates'}
    for key, r in ref.items():
        for o, rr in zip(out[key] if isinstance(r, list) else [out[key]],
                         r if isinstance(r, list) else [r]):
            assert o.shape == rr.shape
            assert rel_err(o, rr) <= 1e-5, (key, rel_err(o, rr))


def _grad_params(bb, loss):
    bb.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad for n, p in bb.named_parameters() if p.grad is not None
            and p.grad.abs().sum() > 0}


def test_gradients_reach_exactly_the_intended_parameters(make_backbone, family):
    """Context of block j reaches the stem, blocks < j and only block j's LN1 and Q (K) projection;
    block j's decoupled content reaches block j fully but nothing after it."""
    bb = make_backbone(attn_mode='csa', decouple_last=3).train()
    x = torch.randn(2, 3, 32, 32)
    prefix = 'visual.trunk.blocks.' if family == 'eva02' else 'visual.transformer.resblocks.'
    out = bb(x)
    g = _grad_params(bb, out['context_q_blocks'][1].square().sum())   # block 1 (of 0, 1, 2)
    blk1 = {n[len(prefix) + 2:] for n in g if n.startswith(prefix + '1.')}
    assert not any(n.startswith(prefix + '2.') for n in g)
    assert any(n.startswith(prefix + '0.') for n in g)
    if family == 'eva02':
        assert blk1 == {'norm1.weight', 'norm1.bias', 'attn.q_proj.weight', 'attn.q_proj.bias'}
    else:
        assert blk1 == {'ln_1.weight', 'ln_1.bias', 'attn.in_proj_weight', 'attn.in_proj_bias'}
        w = g[prefix + '1.attn.in_proj_weight']
        d = w.shape[1]
        assert w[:d].abs().sum() > 0 and w[d:].abs().sum() == 0   # Q rows only
    out = bb(x)
    g = _grad_params(bb, out['content_blocks'][0].square().sum())     # block 0's side content
    assert not any(n.startswith((prefix + '1.', prefix + '2.')) for n in g)
    mlp = 'mlp.fc2.weight' if family == 'eva02' else 'mlp.c_proj.weight'
    assert prefix + '0.' + mlp in g
    # the final content never reaches the side branch: same grads as k = 1
    ref = make_backbone(attn_mode='csa').train()
    g3 = _grad_params(bb, bb(x)['content'].square().sum())
    g1 = _grad_params(ref, ref(x)['content'].square().sum())
    assert g3.keys() == g1.keys()
    assert all(torch.equal(g3[n], g1[n]) for n in g1)


@pytest.mark.parametrize('k', [0, 4])
def test_invalid_decouple_last(make_backbone, k):
    with pytest.raises(ValueError, match='decouple_last must be in'):
        make_backbone(decouple_last=k)
