"""The whole CAT-Seg-style head against a float64 reference written from the formulas (issue 21.6).

The per-step tests (test_catseg_head.py) check the Swin block, the class step and one decoder stage
on their own; nothing there checks how the head wires them: which intermediate block guides which
decoder stage, which guidance each aggregation layer sees, the top-class truncation. Here every
parameter of a small head is random (layer norms, padding tokens and biases included), the inputs are
explicit, and the head's logits must equal a reference that recomputes every step from its
definition (CAT-Seg, Cho et al. CVPR 2024; public ``cat_seg/modeling/transformer/model.py``
``Aggregator`` and ``cat_seg/cat_seg_model.py``; docs/catseg.md):

    C[p, t, i]  = cos(f_i, e_{t,p})                              cost volume
    x           = conv7x7(C) per class map                        (C_emb channels)
    a           = ReLU(conv3x3(f))                                appearance guidance
    g_t         = ReLU(W normalize(mean_p normalize(e_{t,p})))    text guidance
    per layer:  x <- SwinBlock2(SwinBlock1(x, LN(a)), LN(a))      each class map, shifted 2nd block
                x <- ClassStep(x, g)                              elu+1 linear attention over classes
    decoder:    s1 = DoubleConv([ConvT2(x),  ReLU(conv3x3(ConvT2(block a)))])   at 2h x 2w
                s2 = DoubleConv([ConvT2(s1), ReLU(conv3x3(ConvT4(block b)))])   at 4h x 4w
                logit = conv3x3(s2)

The dense features given to the head are unit vectors, so the reference holds whether or not the
head L2-normalises them before the appearance guidance (issue 21.2 changes that).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from declip_mm.benchmarking.reference_heads import literal_heads
from declip_mm.models.heads import DeCLIPCATSegHead

pytestmark = pytest.mark.usefixtures('one_thread')


def _d(t):
    return t.detach().double()


def _ln(x, mod):
    return F.layer_norm(x, x.shape[-1:], _d(mod.weight), _d(mod.bias), mod.eps)


def _lin(x, mod):
    return x @ _d(mod.weight).T + (_d(mod.bias) if mod.bias is not None else 0.0)


def _conv(x, mod, **kw):
    bias = _d(mod.bias) if mod.bias is not None else None
    return F.conv2d(x, _d(mod.weight), bias, padding=mod.padding, **kw)


def _convt(x, mod):
    return F.conv_transpose2d(x, _d(mod.weight), _d(mod.bias), stride=mod.stride)


# -- Swin block: dense attention over the whole grid with the window / shifted-region mask ----------
def _window_labels(n, ws, s):
    """Per coordinate along one axis: (window index, region index) on the grid rolled by -s."""
    r = (torch.arange(n) - s) % n
    region = torch.zeros(n, dtype=torch.long) if s == 0 else \
        (r >= n - ws).long() + (r >= n - s).long()
    return r // ws, region


def swin_block_ref(blk, x, g):
    """x (N, h, w, C), g (N, h, w, G) float64 -> (N, h, w, C). Token i attends to token j iff both
    lie in the same window of the rolled grid and came from the same region of the unrolled one."""
    n, h, w, c = x.shape
    ws, s = blk.window_size, blk.shift_size
    if min(h, w) <= ws:  # Swin / CAT-Seg: a grid no larger than the window is one unshifted window
        ws, s = min(h, w), 0
    wy, ry = _window_labels(h, ws, s)
    wx, rx = _window_labels(w, ws, s)
    lab = torch.stack([wy[:, None].expand(h, w), wx[None].expand(h, w), ry[:, None].expand(h, w),
                       rx[None].expand(h, w)], -1).view(h * w, 4)
    allowed = (lab[:, None] == lab[None]).all(-1)  # (L, L)
    y = _ln(x, blk.norm1).view(n, h * w, c)
    qk_in = torch.cat([y, g.reshape(n, h * w, -1)], -1)
    q, k, v = _lin(qk_in, blk.q), _lin(qk_in, blk.k), _lin(y, blk.v)
    nh = blk.num_heads
    dh = c // nh
    q, k, v = (t.view(n, h * w, nh, dh).transpose(1, 2) for t in (q, k, v))
    att = (q @ k.transpose(-1, -2) / math.sqrt(dh)).masked_fill(~allowed, float('-inf'))
    o = (att.softmax(-1) @ v).transpose(1, 2).reshape(n, h, w, c)
    x = x + _lin(o, blk.proj)
    m = blk.mlp
    return x + _lin(F.gelu(_lin(_ln(x, blk.norm2), m[0])), m[2])


# -- class step: elu+1 linear attention over the padded class axis at every location -----------------
def class_step_ref(layer, x, g, pooled):
    """x (B, C, T, h, w), g (B, T, G) float64 -> (B, C, T, h, w)."""
    b, c, t, h, w = x.shape
    xp = x.flatten(1, 2)
    if pooled:
        xp = F.avg_pool2d(xp, layer.pool_size)
    hp, wp = xp.shape[-2:]
    tok = xp.view(b, c, t, hp, wp).permute(0, 3, 4, 2, 1).reshape(b, hp * wp, t, c)
    n_pad = layer.pad_len - t
    tok = torch.cat([tok, _d(layer.pad_token).expand(b, hp * wp, n_pad, c)], 2)
    gg = torch.cat([g, _d(layer.pad_guidance)[0].expand(b, n_pad, -1)], 1)[:, None]
    gg = gg.expand(b, hp * wp, *gg.shape[2:])
    y = _ln(tok, layer.norm1)
    nh, dh = layer.num_heads, c // layer.num_heads
    q = F.elu(_lin(torch.cat([y, gg], -1), layer.q)) + 1
    k = F.elu(_lin(torch.cat([y, gg], -1), layer.k)) + 1
    v = _lin(y, layer.v)
    q, k, v = (z.view(*z.shape[:3], nh, dh) for z in (q, k, v))
    a = torch.einsum('bltHd,blsHd->blHts', q, k)  # phi(q_t) . phi(k_s)
    attn = torch.einsum('blHts,blsHd->bltHd', a, v) / (a.sum(-1).transpose(-1, -2)[..., None] + 1e-6)
    z = tok + attn.reshape(*tok.shape)
    m = layer.mlp
    z = (z + _lin(F.relu(_lin(_ln(z, layer.norm2), m[0])), m[2]))[:, :, :t]
    upd = z.view(b, hp, wp, t, c).permute(0, 4, 3, 1, 2).reshape(b, c * t, hp, wp)
    if pooled:
        upd = F.interpolate(upd, size=(h, w), mode='bilinear', align_corners=True)
    return x + upd.view(b, c, t, h, w)


# -- decoder ------------------------------------------------------------------------------------------
def _double_conv_ref(x, seq):
    for conv, gn in ((seq[0], seq[1]), (seq[3], seq[4])):
        x = F.relu(F.group_norm(_conv(x, conv), gn.num_groups, _d(gn.weight), _d(gn.bias), gn.eps))
    return x


def decoder_ref(dec, x, block_a, block_b):
    """x (1, C, T, h, w); block_a guides the x2 stage, block_b the x4 stage."""
    t = x.shape[2]
    g1 = F.relu(_conv(_convt(block_a, dec.guidance_up[0]), dec.guidance_proj[0][0]))
    g2 = F.relu(_conv(_convt(block_b, dec.guidance_up[1]), dec.guidance_proj[1][0]))
    y = x[0].transpose(0, 1)  # (T, C, h, w)
    y = _double_conv_ref(torch.cat([_convt(y, dec.stage1.up), g1.expand(t, -1, -1, -1)], 1),
                         dec.stage1.conv)
    y = _double_conv_ref(torch.cat([_convt(y, dec.stage2.up), g2.expand(t, -1, -1, -1)], 1),
                         dec.stage2.conv)
    return _conv(y, dec.cls)[:, 0]  # (T, 4h, 4w)


def head_ref(head, feats, text, inter):
    """The head's logits (B, T, 4h, 4w), one image at a time, in float64."""
    feats, text = feats.double(), text.double()
    num_classes = text.shape[0]
    out = []
    for bi in range(feats.shape[0]):
        f = feats[bi:bi + 1]
        cost = torch.einsum('ehw,tpe->pthw', F.normalize(f[0], dim=0), F.normalize(text, dim=-1))
        keep = torch.arange(num_classes)
        if num_classes > head.pad_len:  # the pad_len classes with the best cosine anywhere
            best = cost.amax(dim=(0, 2, 3))
            keep = best.topk(head.pad_len).indices.sort().values
        e, c = text[keep], cost[:, keep]
        t = len(keep)
        x = _conv(c.transpose(0, 1), head.embed.conv)  # (T, C, h, w)
        x = x.transpose(0, 1)[None]  # (1, C, T, h, w)
        app = F.relu(_conv(f, head.appearance_proj[0]))  # (1, G, h, w)
        tg = F.relu(_lin(F.normalize(F.normalize(e, dim=-1).mean(1), dim=-1), head.text_proj[0]))
        for layer in head.layers:
            sp = layer.spatial
            g = _ln(app.permute(0, 2, 3, 1), sp.guidance_norm).expand(t, -1, -1, -1)
            maps = x[0].permute(1, 2, 3, 0)  # (T, h, w, C)
            maps = swin_block_ref(sp.block2, swin_block_ref(sp.block1, maps, g), g)
            x = maps.permute(3, 0, 1, 2)[None]
            pooled = layer.cls.training or layer.cls.pool_at_test
            x = class_step_ref(layer.cls, x, tg[None], pooled and layer.cls.pool_size > 1)
        logits = decoder_ref(head.decoder, x, inter[0][bi:bi + 1].double(),
                             inter[1][bi:bi + 1].double())
        full = logits.new_full((num_classes, *logits.shape[-2:]), -100.0)
        full[keep] = logits
        out.append(full)
    return torch.stack(out)


def random_head(seed, **kw):
    """A small float64 head whose every parameter is random (norm scales around 1)."""
    cfg = dict(text_channels=16, feat_channels=16, backbone_channels=12, num_prompts=2,
               embed_dims=16, appearance_guidance_dims=8, text_guidance_dims=8, num_layers=2,
               num_heads=2, window_size=4, pad_len=6, pool_size=2, decoder_channels=(32, 16),
               guidance_channels=(12, 10), guidance_proj_channels=(4, 6))
    cfg.update(kw)
    head = DeCLIPCATSegHead(**cfg).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in head.named_parameters():
            if p.dim() > 1 and 'pad_' not in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype)
                        / math.sqrt(p[0].numel()))
            else:
                base = 1.0 if ('norm' in name or 'conv.1' in name or 'conv.4' in name) \
                    and name.endswith('weight') else 0.0
                p.copy_(base + 0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return head


def head_inputs(seed, b, t, p, hw, e=16, d=12):
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(b, e, *hw, generator=g, dtype=torch.float64), dim=1)
    text = torch.randn(t, p, e, generator=g, dtype=torch.float64)
    inter = [torch.randn(b, d, *hw, generator=g, dtype=torch.float64) for _ in range(2)]
    return feats, text, inter


@pytest.mark.parametrize('b,t,p,hw,training,kw', [
    (2, 3, 2, (8, 8), False, {}),               # shifted windows, padded class axis
    (1, 5, 1, (8, 12), True, {}),               # pooled class step, 2 x 3 windows
    (2, 4, 2, (4, 8), False, {}),               # grid = window height: one unshifted row
    (2, 9, 2, (8, 4), False, {}),               # 9 classes > pad_len 6: top-6 truncation, -100
    (1, 4, 1, (6, 6), False, dict(window_size=3, pool_at_test=True)),  # pools at test, odd grid
])
@pytest.mark.parametrize('literal', [False, True])
def test_head_equals_float64_reference(b, t, p, hw, training, kw, literal):
    head = random_head(seed=t + hw[1], num_prompts=p, **kw).train(training)
    feats, text, inter = head_inputs(seed=b + t, b=b, t=t, p=p, hw=hw)
    with torch.no_grad():
        if literal:
            with literal_heads(head) as swapped:
                got = head(feats, text, inter)
            assert swapped > 0
        else:
            got = head(feats, text, inter)
        ref = head_ref(head, feats, text, inter)
    assert got.shape == (b, t, 4 * hw[0], 4 * hw[1])
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=1e-10)


def test_each_block_guides_its_own_decoder_stage():
    """The first intermediate block (block 3 of a ViT-B) guides the x2 stage and the second
    (block 7) the x4 stage: exchanging them changes the logits, by a margin far above the
    tolerance of the reference comparison."""
    head = random_head(seed=3).eval()
    feats, text, inter = head_inputs(seed=4, b=1, t=3, p=2, hw=(8, 8))
    with torch.no_grad():
        got = head(feats, text, inter)
        swapped = head_ref(head, feats, text, inter[::-1])
        torch.testing.assert_close(got, head_ref(head, feats, text, inter), atol=1e-10, rtol=1e-10)
    assert (got - swapped).abs().max() > 1e-2
