"""The CAT-Seg-style head: float64 references written from the formulas (Swin window attention,
elu+1 linear attention, the class step with padding and pooling, the BCE loss) and invariants
(class permutation, class independence of the spatial step)."""
import math

import pytest
import torch
import torch.nn.functional as F
from catseg_helpers import TINY_HEAD

from declip_mm.models.heads import DeCLIPCATSegHead
from declip_mm.models.heads.class_aggregation import ClassAggregation, linear_attention
from declip_mm.models.heads.cost_volume import cosine_cost_volume, select_top_classes
from declip_mm.models.heads.spatial_aggregation import GuidedSwinBlock, SpatialAggregation

pytestmark = pytest.mark.usefixtures('one_thread')


def tiny_head(**kw):
    cfg = {k: v for k, v in TINY_HEAD.items() if k != 'type'}
    cfg.update(text_channels=16, feat_channels=16, backbone_channels=24)
    cfg.update(kw)
    return DeCLIPCATSegHead(**cfg)


def head_inputs(b=2, t=5, p=1, hw=(8, 8), e=16, d=24):
    torch.manual_seed(1)
    return (torch.randn(b, e, *hw), torch.randn(t, p, e),
            [torch.randn(b, d, *hw), torch.randn(b, d, *hw)])


# ---------------------------------------------------------------------------------------------
def _ln(x, mod):
    return F.layer_norm(x, x.shape[-1:], mod.weight.double(), mod.bias.double(), mod.eps)


def _lin(x, mod):
    return x @ mod.weight.double().T + mod.bias.double()


def swin_reference(blk, x, g):
    """Straightforward (shifted-)window attention: every token attends to the tokens of its window
    on the grid rolled by -shift that came from the same region of the unrolled grid."""
    b, h, w, c = x.shape
    ws, s = blk.window_size, blk.shift_size
    if min(h, w) <= ws:
        ws, s = min(h, w), 0
    y = _ln(x, blk.norm1)
    qk_in = torch.cat([y, g], -1) if g is not None else y
    q, k, v = _lin(qk_in, blk.q), _lin(qk_in, blk.k), _lin(y, blk.v)
    nh = blk.num_heads
    dh = c // nh

    def region(i, n):
        i = (i - s) % n
        return 0 if (s == 0 or i < n - ws) else (1 if i < n - s else 2)

    def window(i, n):
        return ((i - s) % n) // ws

    out = torch.zeros_like(x)
    coords = [(i, j) for i in range(h) for j in range(w)]
    for bi in range(b):
        for (i, j) in coords:
            keys = [(a, bb) for (a, bb) in coords
                    if window(a, h) == window(i, h) and window(bb, w) == window(j, w)
                    and region(a, h) == region(i, h) and region(bb, w) == region(j, w)]
            o = []
            for hd in range(nh):
                sl = slice(hd * dh, (hd + 1) * dh)
                logits = torch.stack([q[bi, i, j, sl] @ k[bi, a, bb, sl] for a, bb in keys]) / math.sqrt(dh)
                att = logits.softmax(0)
                o.append(sum(att[n] * v[bi, a, bb, sl] for n, (a, bb) in enumerate(keys)))
            out[bi, i, j] = _lin(torch.cat(o), blk.proj)
    x = x + out
    m = blk.mlp
    return x + _lin(F.gelu(_lin(_ln(x, blk.norm2), m[0])), m[2])


@pytest.mark.parametrize('hw,window,shift', [((8, 8), 4, 2), ((4, 8), 4, 2), ((8, 4), 4, 0),
                                             ((3, 3), 4, 2)])
def test_window_attention_matches_reference(hw, window, shift):
    torch.manual_seed(0)
    blk = GuidedSwinBlock(8, 4, num_heads=2, window_size=window, shift_size=shift).double()
    x = torch.randn(2, *hw, 8, dtype=torch.float64)
    g = torch.randn(2, *hw, 4, dtype=torch.float64)
    torch.testing.assert_close(blk(x, g), swin_reference(blk, x, g), atol=1e-10, rtol=1e-10)


def test_window_must_divide_the_grid():
    blk = GuidedSwinBlock(8, 0, num_heads=2, window_size=4)
    with pytest.raises(ValueError, match='not a multiple of the window size 4'):
        blk(torch.randn(1, 6, 8, 8))


def test_linear_attention_matches_formula():
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 7, 2, 4, dtype=torch.float64) for _ in range(3))
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    ref = torch.zeros_like(v)
    for n in range(3):
        for h in range(2):
            for i in range(7):
                w = torch.stack([phi_q[n, i, h] @ phi_k[n, j, h] for j in range(7)])
                ref[n, i, h] = (w[:, None] * v[n, :, h]).sum(0) / (w.sum() + 1e-6)
    torch.testing.assert_close(linear_attention(q, k, v), ref)


def class_step_reference(layer, x, g, pooled):
    """The class step location by location in float64: pad, LN, guided q/k, linear attention, MLP."""
    b, c, t, h, w = x.shape
    xp = x
    if pooled:
        xp = x.reshape(b, c, t, h // 2, 2, w // 2, 2).mean(dim=(4, 6))
    n_pad = layer.pad_len - t
    out = torch.zeros_like(xp)
    for bi in range(b):
        gg = torch.cat([g[bi], layer.pad_guidance.double()[0].expand(n_pad, -1)])
        for i in range(xp.shape[-2]):
            for j in range(xp.shape[-1]):
                tok = torch.cat([xp[bi, :, :, i, j].T, layer.pad_token.double()[0].expand(n_pad, -1)])
                y = _ln(tok, layer.norm1)
                q = _lin(torch.cat([y, gg], -1), layer.q).view(1, -1, layer.num_heads, c // layer.num_heads)
                k = _lin(torch.cat([y, gg], -1), layer.k).view(1, -1, layer.num_heads, c // layer.num_heads)
                v = _lin(y, layer.v).view(1, -1, layer.num_heads, c // layer.num_heads)
                z = tok + linear_attention(q, k, v)[0].reshape(-1, c)
                m = layer.mlp
                z = z + _lin(F.relu(_lin(_ln(z, layer.norm2), m[0])), m[2])
                out[bi, :, :, i, j] = z[:t].T
    if pooled:
        out = F.interpolate(out.flatten(1, 2), size=(h, w), mode='bilinear',
                            align_corners=True).view(b, c, t, h, w)
    return x + out


@pytest.mark.parametrize('training', [False, True])
def test_class_step_matches_reference(training):
    torch.manual_seed(0)
    layer = ClassAggregation(8, 4, num_heads=2, pad_len=6, pool_size=2).double()
    with torch.no_grad():  # non-trivial learned padding
        layer.pad_token.normal_()
        layer.pad_guidance.normal_()
    layer.train(training)
    x = torch.randn(2, 8, 4, 4, 6, dtype=torch.float64)
    g = torch.randn(2, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x, g), class_step_reference(layer, x, g, pooled=training))


def test_class_step_pools_only_in_training():
    layer = ClassAggregation(8, 4, num_heads=2, pad_len=6, pool_size=2)
    x, g = torch.randn(1, 8, 3, 4, 4), torch.randn(1, 3, 4)
    unpooled = ClassAggregation(8, 4, num_heads=2, pad_len=6, pool_size=1)
    unpooled.load_state_dict(layer.state_dict())
    assert not torch.allclose(layer.train()(x, g), unpooled.train()(x, g))
    torch.testing.assert_close(layer.eval()(x, g), unpooled(x, g))
    # the public layer's behaviour (pooling in both modes) through the head's option
    from declip_mm.models.heads import DeCLIPCATSegHead
    head = DeCLIPCATSegHead(pool_at_test=True)
    assert all(layer.cls._pooling() == 2 for layer in head.eval().layers)
    assert all(layer.cls._pooling() == 1 for layer in DeCLIPCATSegHead().eval().layers)


# ---------------------------------------------------------------------------------------------
def test_shapes_and_gradients():
    head = tiny_head().train()
    feats, text, inter = head_inputs()
    feats.requires_grad_(True)
    logits = head(feats, text, inter)
    assert logits.shape == (2, 5, 32, 32)  # one logit per class at 4x the token grid
    head.loss_by_feat(logits, torch.randint(0, 5, (2, 64, 64)))['loss_bce'].backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == [], missing
    assert feats.grad.abs().sum() > 0


@pytest.mark.parametrize('training,t,pad_len', [(False, 5, 12), (True, 5, 12), (False, 9, 6)])
def test_class_permutation_permutes_logits(training, t, pad_len):
    """No positional encoding over classes: permuting the class list permutes the logits (also
    when the class list is truncated to the top pad_len classes)."""
    head = tiny_head(pad_len=pad_len).train(training)
    feats, text, inter = head_inputs(t=t)
    perm = torch.randperm(t)
    out = head(feats, text, inter)
    out_perm = head(feats, text[perm], inter)
    torch.testing.assert_close(out_perm, out[:, perm], atol=1e-5, rtol=1e-5)


def test_spatial_step_is_per_class():
    """Each class map is aggregated on its own: other classes and their order do not matter."""
    torch.manual_seed(0)
    step = SpatialAggregation(8, 4, num_heads=2, window_size=4)
    x, g = torch.randn(2, 8, 5, 8, 8), torch.randn(2, 4, 8, 8)
    out = step(x, g)
    perm = torch.randperm(5)
    torch.testing.assert_close(step(x[:, :, perm], g), out[:, :, perm], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(step(x[:, :, 2:3], g), out[:, :, 2:3], atol=1e-6, rtol=1e-6)


def test_truncation_keeps_top_classes():
    torch.manual_seed(0)
    feats = torch.randn(1, 16, 8, 8)
    text = torch.randn(9, 1, 16)
    text[3] = feats[0, :, 2, 2]       # classes 3 and 7 match a location exactly: top costs
    text[7, 0] = feats[0, :, 5, 1]
    cost = cosine_cost_volume(feats, text[None])
    keep = select_top_classes(cost, 2)
    assert keep.tolist() == [[3, 7]]
    assert select_top_classes(cost, 9) is None and select_top_classes(cost, 0) is None
    head = tiny_head(pad_len=2).eval()
    logits = head(feats, text, [torch.randn(1, 24, 8, 8)] * 2)
    dropped = [c for c in range(9) if c not in (3, 7)]
    assert (logits[:, dropped] == -100).all() and (logits[:, [3, 7]] != -100).all()


def test_cost_volume_is_cosine():
    feats, text = torch.randn(2, 16, 3, 4, dtype=torch.float64), torch.randn(2, 5, 3, 16, dtype=torch.float64)
    cost = cosine_cost_volume(feats, text)
    ref = torch.zeros(2, 3, 5, 3, 4, dtype=torch.float64)
    for b in range(2):
        for p in range(3):
            for t in range(5):
                ref[b, p, t] = F.cosine_similarity(feats[b], text[b, t, p][:, None, None], dim=0)
    torch.testing.assert_close(cost, ref)


@pytest.mark.parametrize('ignore_mode', ['exclude', 'negative'])
def test_bce_loss_matches_reference(ignore_mode):
    head = tiny_head(ignore_mode=ignore_mode)
    logits = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    gt = torch.randint(0, 4, (2, 6, 6))
    gt[0, :2] = 255
    total, n = 0.0, 0
    for b in range(2):
        for i in range(6):
            for j in range(6):
                if gt[b, i, j] == 255 and ignore_mode == 'exclude':
                    continue
                for c in range(4):
                    y = float(gt[b, i, j] == c)
                    s = torch.sigmoid(logits[b, c, i, j])
                    total -= y * torch.log(s) + (1 - y) * torch.log(1 - s)
                    n += 1
    torch.testing.assert_close(head.loss_by_feat(logits, gt)['loss_bce'], total / n)
    with pytest.raises(ValueError, match='label 7 is outside the 4 classes'):
        head.loss_by_feat(logits, torch.full((2, 6, 6), 7))


def test_bad_head_input():
    head = tiny_head()
    feats, _, inter = head_inputs()
    with pytest.raises(ValueError, match='T >= 1'):
        head(feats, torch.zeros(0, 1, 16), inter)
    with pytest.raises(ValueError, match='3 prompt channels'):
        head(feats, torch.randn(5, 3, 16), inter)
    with pytest.raises(ValueError, match='two intermediate backbone blocks'):
        head(feats, torch.randn(5, 1, 16), inter[:1])
    with pytest.raises(ValueError, match='must equal text_channels'):
        tiny_head(feat_channels=8)


def test_default_sizes_are_the_papers():
    head = DeCLIPCATSegHead()
    assert head.pad_len == 256 and len(head.layers) == 2
    blk = head.layers[0].spatial
    assert (blk.block1.window_size, blk.block1.shift_size, blk.block2.shift_size) == (12, 0, 6)
    assert head.layers[0].cls.num_heads == 4 and head.layers[0].cls.pool_size == 2
    assert head.embed.conv.kernel_size == (7, 7) and head.embed.conv.out_channels == 128
    dec = head.decoder
    assert [m.out_channels for m in dec.guidance_up] == [256, 128]
    assert [m.stride for m in dec.guidance_up] == [(2, 2), (4, 4)]
    assert dec.stage1.conv[0].out_channels == 64 and dec.stage2.conv[0].out_channels == 32
    assert dec.cls.out_channels == 1


@pytest.mark.parametrize('shift', [0, 2])
def test_guidance_shared_by_class_maps(shift):
    """One guidance per image, broadcast over its T class maps (W_y y + W_g g) = the reference
    block on every class map with the guidance concatenated."""
    torch.manual_seed(0)
    blk = GuidedSwinBlock(8, 4, num_heads=2, window_size=4, shift_size=shift).double()
    x = torch.randn(2 * 3, 8, 8, 8, dtype=torch.float64)
    g = torch.randn(2, 8, 8, 4, dtype=torch.float64)
    expanded = g.repeat_interleave(3, dim=0)
    torch.testing.assert_close(blk(x, g), swin_reference(blk, x, expanded), atol=1e-10, rtol=1e-10)


def test_decoder_stage_guidance_split_equals_concatenation():
    """conv3x3([up(x), g]) with the guidance term computed once per image = the public Up/DoubleConv
    with the guidance concatenated to every class map (float64)."""
    from declip_mm.models.heads.upsample_decoder import GuidedUpStage
    torch.manual_seed(0)
    stage = GuidedUpStage(12, 8, 4).double().eval()
    x = torch.randn(2 * 3, 12, 5, 7, dtype=torch.float64)
    g = torch.randn(2, 4, 10, 14, dtype=torch.float64)
    up = stage.up(x)
    want = stage.conv(torch.cat([up, g.repeat_interleave(3, dim=0)], dim=1))
    torch.testing.assert_close(stage(x, g), want, atol=1e-10, rtol=1e-10)
    with pytest.raises(ValueError, match='expects guidance'):
        stage(x)


def test_literal_heads_compute_the_same():
    """The reference mode's public way (guidance repeated and concatenated, padded classes as
    queries) = the default way, float64."""
    from declip_mm.benchmarking.reference_heads import literal_heads
    from declip_mm.models.heads.class_aggregation import ClassAggregation
    from declip_mm.models.heads.upsample_decoder import GuidedUpStage
    torch.manual_seed(0)
    cls = ClassAggregation(8, 4, num_heads=2, pad_len=6).double().eval()
    torch.nn.init.normal_(cls.pad_token)
    torch.nn.init.normal_(cls.pad_guidance)
    swin = GuidedSwinBlock(8, 4, num_heads=2, window_size=4, shift_size=2).double()
    stage = GuidedUpStage(12, 8, 4).double().eval()
    x = torch.randn(2, 8, 3, 4, 4, dtype=torch.float64)
    tg, sg = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 4, 4, 4, dtype=torch.float64)
    xs, xu = torch.randn(6, 4, 4, 8, dtype=torch.float64), torch.randn(6, 12, 3, 3, dtype=torch.float64)
    ug = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        fast = (cls(x, tg), swin(xs, sg), stage(xu, ug))
        with literal_heads(torch.nn.ModuleList([cls, swin, stage])) as swapped:
            literal = (cls(x, tg), swin(xs, sg), stage(xu, ug))
    assert swapped == 1 + 2 + 2 + 1  # the class step and its q / k, the Swin q / k, the stage
    for a, b in zip(fast, literal):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
