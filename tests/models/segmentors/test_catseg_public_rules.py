"""CAT-Seg segmentor against the public code (issue 21 items 2 and 4).

* Which tower parameters train: the public rules are written out literally (string tests on parameter
  names) and applied to the names our parameters have in the public towers -- DeCLIP's CAT-Seg branch
  (``cat_seg/cat_seg_model.py`` ``frozen_backbone``, EVA02) and KU-CVLAB/CAT-Seg (``cat_seg_model.py``,
  OpenAI CLIP whose ``in_proj_weight`` is split into ``q_proj_weight`` / ``k_proj_weight`` /
  ``v_proj_weight``). Compared row by row with what trains here, and with where gradients flow.
* The appearance guidance input: DeCLIP's EVA ``CATSeg.forward`` feeds ``encode_dense(normalize=True)``
  to both the cost volume and the guidance (``res3``); KU-CVLAB's OpenAI forward feeds the
  unnormalised ``encode_image(dense=True)``. A float64 transcription of that forward, on the head's
  own sub-modules, is the reference.
"""
import pytest
import torch
import torch.nn.functional as F
from catseg_helpers import tiny_segmentor_cfg
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from declip_mm.registry import MODELS

pytestmark = pytest.mark.usefixtures('one_thread')


def build(family, **kw):
    torch.manual_seed(0)
    model = MODELS.build(tiny_segmentor_cfg(family, **kw))
    model.init_weights()
    return model


# ---- the public rules, literally -----------------------------------------------------------------
def declip_branch_rule(name):
    """DeCLIP's CAT-Seg branch, ``frozen_backbone`` for EVA towers (names of its open_clip model)."""
    if 'visual.blocks' in name:
        if 'attn' in name:
            return 'q_proj' in name or 'v_proj' in name
        return False
    if 'text.transformer' in name:
        return 'in_proj_weight' in name if 'resblocks' in name else False
    return False


def ku_cvlab_rule(name):
    """KU-CVLAB/CAT-Seg ``CATSeg.__init__``, ``clip_finetune == 'attention'``."""
    if 'transformer' in name:
        if 'attn' in name:
            return 'q_proj' in name or 'v_proj' in name
        return 'position' in name
    return False


def public_pieces(name, shape, family):
    """Our parameter ``name`` -> [(its name in the public model, rows of our dim 0)]."""
    rows = shape[0] if len(shape) else 1
    if name.startswith('backbone.visual.'):
        rest = name[len('backbone.visual.'):]
        if family == 'eva02':  # EVA-CLIP's visual: no trunk, separate q_bias / v_bias
            rest = rest.replace('trunk.', '', 1).replace('attn.q_proj.bias', 'attn.q_bias') \
                .replace('attn.v_proj.bias', 'attn.v_bias')
        pub = 'visual.' + rest
    elif name.startswith('text_encoder.text.'):
        rest = name[len('text_encoder.text.'):]
        pub = ('text.' + rest) if family == 'eva02' else rest  # OpenAI CLIP: text at the top level
    else:
        return [(name, slice(0, rows))]
    if family == 'openai' and pub.endswith('attn.in_proj_weight'):  # KU's split projections
        d = rows // 3
        base = pub[:-len('in_proj_weight')]
        return [(base + 'q_proj_weight', slice(0, d)), (base + 'k_proj_weight', slice(d, 2 * d)),
                (base + 'v_proj_weight', slice(2 * d, 3 * d))]
    return [(pub, slice(0, rows))]


def expected_rows(model, family):
    rule = declip_branch_rule if family == 'eva02' else ku_cvlab_rule
    out = {}
    for n, p in model.named_parameters():
        if n.startswith('decode_head.'):
            continue
        mask = torch.zeros(p.shape[0] if p.dim() else 1, dtype=torch.bool)
        for pub, rows in public_pieces(n, p.shape, family):
            mask[rows] = rule(pub)
        out[n] = mask
    return out


def trained_rows(model):
    frozen = {}
    for n, rows in model.frozen_slices:
        frozen.setdefault(n, []).append(rows)
    out = {}
    for n, p in model.named_parameters():
        if n.startswith('decode_head.'):
            continue
        mask = torch.full((p.shape[0] if p.dim() else 1, ), p.requires_grad, dtype=torch.bool)
        for rows in frozen.get(n, []):
            mask[rows] = False
        out[n] = mask
    return out


def _samples(n=2, hw=(32, 32), num_classes=5):
    out = []
    for _ in range(n):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, *hw)))
        s.set_metainfo(dict(img_shape=hw, ori_shape=hw, pad_shape=hw))
        out.append(s)
    return out


@pytest.mark.parametrize('family', ['eva02', 'openai'])
def test_trainable_rows_equal_the_public_rule(family):
    model = build(family).train()
    want, got = expected_rows(model, family), trained_rows(model)
    diff = sorted(n for n in want if not torch.equal(want[n], got[n]))
    assert not diff, diff
    assert all(p.requires_grad for p in model.decode_head.parameters())
    names = {n for n, m in want.items() if m.any()}
    # what the rule amounts to, in words (docs/catseg.md)
    assert not any(n.endswith(('bias', 'pos_embed', 'positional_embedding')) for n in names)
    assert any('.attn.q_proj.weight' in n or 'in_proj_weight' in n for n in names
               if n.startswith('backbone.'))
    text = [n for n in names if n.startswith('text_encoder.')]
    assert text and all(n.endswith('attn.in_proj_weight') for n in text)
    # gradients flow exactly into the trained rows (K rows of a Q/V-only fused weight get none)
    model.loss(torch.randn(2, 3, 32, 32), _samples())['loss_bce'].backward()
    for n, p in model.named_parameters():
        if n.startswith('decode_head.'):
            continue
        g = p.grad
        if not want[n].any():
            assert g is None or not g.abs().sum(), n
            continue
        rows_with_grad = g.reshape(g.shape[0], -1).abs().sum(1) > 0
        assert torch.equal(rows_with_grad, want[n]), n


@pytest.mark.parametrize('family', ['eva02', 'openai'])
def test_text_tower_rows_by_family(family):
    model = build(family)
    name = 'text_encoder.text.transformer.resblocks.0.attn.in_proj_weight'
    d = dict(model.named_parameters())[name].shape[0] // 3
    frozen = [rows for n, rows in model.frozen_slices if n == name]
    assert frozen == ([] if family == 'eva02' else [slice(d, 2 * d)])
    assert model.text_qkv_rows == ('qkv' if family == 'eva02' else 'qv')
    with pytest.raises(ValueError, match='text_qkv_rows must be one of'):
        build(family, text_qkv_rows='k')


def public_forward(model, x, normalize):
    """CATSeg.forward of the public code up to the head's logits, float64.

    ``clip_features = encode_dense(normalize=True)`` (DeCLIP, EVA) or ``encode_image(dense=True)``
    (KU-CVLAB, OpenAI); ``res3 = clip_features`` is the appearance guidance; the Aggregator embeds the
    cosine cost volume, projects res3 (3x3 conv + ReLU) and the mean prompt embedding, runs the layers
    and the decoder on res4/res5 (the two guided blocks).
    """
    feats = model.backbone(x)
    clip_features = F.normalize(feats['content'], dim=1) if normalize else feats['content']
    res3 = clip_features
    text = model.class_embeddings().to(x.dtype)[None].expand(x.shape[0], -1, -1, -1)
    head = model.decode_head
    img = F.normalize(clip_features, dim=1)
    txt = F.normalize(text, dim=-1)
    corr = torch.einsum('bchw,btpc->bpthw', img, txt)
    embed = head.embed(corr)
    guidance = head.appearance_proj(res3)
    text_guidance = head.text_proj(F.normalize(txt.mean(dim=2), dim=-1))
    for layer in head.layers:
        embed = layer(embed, guidance, text_guidance)
    return head.decoder(embed, feats['intermediates'])


@pytest.mark.parametrize('family', ['eva02', 'openai'])
def test_guidance_input_matches_public_forward(family):
    model = build(family).double().eval()
    for p in model.backbone.parameters():  # content norms far from 1: normalising must matter
        p.data.mul_(1.5)
    assert model.normalize_content == (family == 'eva02')
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        got = model._head_logits(x)
        ref = public_forward(model, x, normalize=family == 'eva02')
        other = public_forward(model, x, normalize=family != 'eva02')
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    assert (got - other).abs().max() > 1e-6  # the two inputs give different outputs here
    norms = model.backbone(x)['content'].norm(dim=1)
    assert (norms - 1).abs().max() > 0.1


def test_openai_k_rows_stay_put_through_an_optimizer_step():
    """KU-CVLAB's K projections are separate frozen tensors: the K rows of our fused weights must not
    move under the training config's AdamW (no gradient, and the decoupled decay is undone)."""
    from catseg_helpers import catseg_config
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(catseg_config('catseg_openai-vitb16_1xb4-80k_coco-stuff164k-384x384.py'))
    model = build('openai').train()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wrapper.update_params(model.loss(torch.randn(2, 3, 32, 32), _samples())['loss_bce'])
    after = dict(model.named_parameters())
    for name in ('text_encoder.text.transformer.resblocks.0.attn.in_proj_weight',
                 'backbone.visual.transformer.resblocks.1.attn.in_proj_weight'):
        d = before[name].shape[0] // 3
        assert torch.equal(after[name][d:2 * d], before[name][d:2 * d]), name
        assert not torch.equal(after[name][:d], before[name][:d]), name
        assert not torch.equal(after[name][2 * d:], before[name][2 * d:]), name
