"""The written-out EVA block runs only where a float64 probe against the installed timm proved it
equal to ``EvaBlock.forward``; otherwise timm's forward runs (declip_mm.models.backbones.
eva_block_check)."""
import warnings

import pytest
import torch

from declip_mm.models import DeCLIPVisionTransformer
from declip_mm.models.backbones import clip_towers, eva_block_check
from declip_mm.testing import tiny_clip_config


@pytest.fixture(autouse=True)
def _fresh_checks():
    eva_block_check.reset_block_checks()
    yield
    eva_block_check.reset_block_checks()


def _backbone(**overrides):
    torch.manual_seed(0)
    return DeCLIPVisionTransformer(model_name=tiny_clip_config('eva02', **overrides)).eval()


@pytest.fixture
def written_out_calls(monkeypatch):
    """Blocks the written-out forward ran on (the probe's float64 copies excluded)."""
    calls = []
    real = clip_towers.EvaViTOps._written_out_block

    def spy(self, blk, x, rope):
        if x.dtype != torch.float64 or x.shape[0] != 1:  # the probe: 1 image in float64
            calls.append(blk)
        return real(self, blk, x, rope)

    monkeypatch.setattr(clip_towers.EvaViTOps, '_written_out_block', spy)
    return calls


def _block_inputs(bb, size=(40, 24), dtype=torch.float32):
    x = torch.randn(2, 3, *size, dtype=dtype)
    tokens, hw = bb.ops.embed(x)
    return tokens, bb.ops.rope(hw, tokens)


def test_installed_timm_passes_and_fast_path_runs(written_out_calls):
    import timm
    bb = _backbone()
    blocks = list(bb.ops.blocks())
    tokens, rope = _block_inputs(bb)
    with warnings.catch_warnings():
        warnings.simplefilter('error', RuntimeWarning)  # no mismatch warning on this timm
        with torch.no_grad():
            outs = [bb.ops.run_block(blk, tokens, rope) for blk in blocks]
            refs = [blk(tokens, rope=rope) for blk in blocks]  # timm's own forward
            bb(torch.randn(2, 3, 32, 32))
    assert [id(b) for b in written_out_calls[:len(blocks)]] == [id(b) for b in blocks]
    assert len(written_out_calls) == len(blocks) + len(blocks) - 1  # + the plain blocks of bb(x)
    verdicts = eva_block_check._VERDICTS
    assert list(verdicts.values()) == [True] and next(iter(verdicts))[0] == timm.__version__
    for out, ref in zip(outs, refs):
        assert (out - ref).abs().max() <= 1e-6 * ref.abs().max()


def test_float64_fast_path_equals_timm(written_out_calls):
    bb = _backbone().double()
    tokens, rope = _block_inputs(bb, dtype=torch.float64)
    rope = rope.double()
    with torch.no_grad():
        for blk in bb.ops.blocks():
            out, ref = bb.ops.run_block(blk, tokens, rope), blk(tokens, rope=rope)
            assert (out - ref).abs().max() <= 1e-12 * ref.abs().max()
    assert len(written_out_calls) == len(bb.ops.blocks())


def _patch_timm_forward(monkeypatch):
    """A 'new timm' whose EvaBlock adds a term the written-out copy does not have."""
    from timm.models.eva import EvaBlock
    original = EvaBlock.forward

    def new_forward(self, x, rope=None, attn_mask=None):
        return original(self, x, rope=rope, attn_mask=attn_mask) + 0.01 * x.flip(-1)

    monkeypatch.setattr(EvaBlock, 'forward', new_forward)


def test_changed_timm_fails_the_check_and_falls_back(monkeypatch, written_out_calls):
    import timm
    bb = _backbone()
    x = torch.randn(2, 3, 40, 24)
    with torch.no_grad():
        before = bb(x)
    n_before = len(written_out_calls)
    assert n_before > 0
    _patch_timm_forward(monkeypatch)
    with pytest.warns(RuntimeWarning, match=f'timm {timm.__version__}.*timm\'s own'):
        with torch.no_grad():
            after = bb(x)
    assert len(written_out_calls) == n_before  # no written-out block on the real model
    with torch.enable_grad():  # every block through timm's (patched) forward
        ref = bb(x)
    for key in ref:
        got, want = after[key], ref[key]
        pairs = zip(got, want) if isinstance(want, (list, tuple)) else [(got, want)]
        assert all(torch.equal(g, w.detach()) for g, w in pairs), key
    change = (after['content'] - before['content']).abs().max() / before['content'].abs().max()
    assert change > 1e-2  # the patch matters
    tokens, rope = _block_inputs(bb)
    with torch.no_grad():
        for blk in bb.ops.blocks():
            assert torch.equal(bb.ops.run_block(blk, tokens, rope), blk(tokens, rope=rope))
    with warnings.catch_warnings():  # one warning per timm version, not per call or block
        warnings.simplefilter('error', RuntimeWarning)
        with torch.no_grad():
            _backbone(num_heads=4)(x)


def test_small_mismatch_and_errors_are_caught(monkeypatch):
    """A relative error of 1e-7 in the written-out block fails the probe, as does an exception."""
    real = clip_towers.EvaViTOps._written_out_block
    bb = _backbone()
    blk = bb.ops.blocks()[0]
    tokens, rope = _block_inputs(bb)

    def slightly_off(self, b, x, r):
        return real(self, b, x, r) * (1 + 1e-7)

    monkeypatch.setattr(clip_towers.EvaViTOps, '_written_out_block', slightly_off)
    with pytest.warns(RuntimeWarning, match='max \\|difference\\|'):
        with torch.no_grad():
            out = bb.ops.run_block(blk, tokens, rope)
            assert torch.equal(out, blk(tokens, rope=rope))

    eva_block_check.reset_block_checks()

    def broken(self, b, x, r):
        raise AttributeError("'EvaAttention' object has no attribute 'q_proj'")

    monkeypatch.setattr(clip_towers.EvaViTOps, '_written_out_block', broken)
    with pytest.warns(RuntimeWarning, match='AttributeError'):
        with torch.no_grad():
            assert torch.equal(bb.ops.run_block(blk, tokens, rope), blk(tokens, rope=rope))


def test_probe_runs_once_per_configuration_and_timm_version(monkeypatch):
    import timm
    compares = []
    real = eva_block_check._compare
    monkeypatch.setattr(eva_block_check, '_compare',
                        lambda *a: compares.append(a[0]) or real(*a))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        _backbone()(x)
        _backbone()(x)  # same configuration, other blocks and weights
        assert len(compares) == 1
        _backbone(num_heads=4)(x)  # another configuration
        assert len(compares) == 2
        monkeypatch.setattr(timm, '__version__', timm.__version__ + '.post1')
        bb = _backbone()
        bb(x)
        assert len(compares) == 3
    assert sorted(eva_block_check._VERDICTS.values()) == [True, True, True]
