import pytest
import torch
from declip_reference import rel_err

from declip_mm.models import DeCLIPDistiller
from declip_mm.models.losses import region_features
from declip_mm.testing import tiny_clip_config

VFM = dict(type='VFMTeacher', arch='dinov2_vitb14_reg',
           arch_overrides=dict(embed_dim=48, depth=2, num_heads=2, img_size=56))


def make(mode='csa', family='eva02', **kw):
    torch.manual_seed(0)
    return DeCLIPDistiller(
        student=dict(type='DeCLIPVisionTransformer', model_name=tiny_clip_config(family),
                     attn_mode=mode),
        vfm_teacher=kw.pop('vfm_teacher', VFM), **kw)


def batch(B=2, k=3):
    g = torch.Generator().manual_seed(0)
    rois = torch.cat([torch.arange(B).repeat_interleave(k)[:, None].float(),
                      torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 1.0, 8.0, 8.0],
                                    [1.0, 3.0, 6.0, 5.0]]).repeat(B, 1)], 1)
    return dict(student=torch.randn(B, 3, 64, 64, generator=g),
                vfm=torch.randn(B, 3, 112, 112, generator=g),
                crops=torch.randn(B * k, 3, 32, 32, generator=g), rois=rois)


def trainable(model):
    return {n for n, p in model.student.named_parameters() if p.requires_grad}


def test_trainable_set_csa_eva():
    m = make('csa')
    names = trainable(m)
    frozen = {n for n, _ in m.student.named_parameters()} - names
    last = 'visual.trunk.blocks.2.'
    expect_frozen = {n for n in frozen}
    assert any(n.startswith(last + 'mlp.') for n in expect_frozen)
    assert {last + 'norm2.weight', last + 'norm2.bias'} <= frozen
    for stem in ('visual.trunk.cls_token', 'visual.trunk.pos_embed',
                 'visual.trunk.patch_embed.proj.weight', 'visual.trunk.norm.weight',
                 'visual.trunk.head.weight', 'visual.trunk.head.bias'):
        assert stem in frozen, stem
    # everything else of every block is trained, including the last block's q/k/v and sub-LN
    for n in (last + 'attn.q_proj.weight', last + 'attn.k_proj.weight', last + 'attn.v_proj.bias',
              last + 'attn.norm.weight', last + 'attn.proj.weight', last + 'norm1.weight',
              'visual.trunk.blocks.0.mlp.fc2.weight', 'visual.trunk.blocks.1.norm2.weight'):
        assert n in names, n
    frozen_prefixes = ('visual.trunk.cls_token', 'visual.trunk.pos_embed', 'visual.trunk.patch_embed',
                       'visual.trunk.norm.', 'visual.trunk.head.', last + 'mlp.', last + 'norm2.')
    assert all(n.startswith(frozen_prefixes) for n in frozen)


def test_trainable_set_qq_freezes_k_proj():
    names = trainable(make('qq'))
    assert 'visual.trunk.blocks.2.attn.k_proj.weight' not in names
    assert 'visual.trunk.blocks.2.attn.q_proj.weight' in names
    assert 'visual.trunk.blocks.1.attn.k_proj.weight' in names


def test_trainable_set_openai():
    m = make('csa', family='openai')
    names = trainable(m)
    assert 'visual.proj' not in names and 'visual.ln_post.weight' not in names
    assert 'visual.conv1.weight' not in names and 'visual.positional_embedding' not in names
    assert 'visual.transformer.resblocks.2.mlp.c_fc.weight' not in names
    assert 'visual.transformer.resblocks.2.attn.in_proj_weight' in names


def test_every_trainable_parameter_gets_a_gradient():
    """So DDP needs no find_unused_parameters."""
    for mode in ('csa', 'qq'):
        m = make(mode).train()
        losses = m.loss(batch())
        sum(losses.values()).backward()
        missing = [n for n, p in m.student.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, (mode, missing)
        assert all(p.grad is None for p in m.clip_teacher.parameters())


def test_loss_values_match_components():
    m = make('csa').eval()
    b = batch()
    losses = m.loss(b)
    assert set(losses) == {'loss_content', 'loss_context'}
    with torch.no_grad():
        out = m.student(b['student'])
        t = torch.nn.functional.normalize(m.clip_teacher.encode_image(b['crops']), dim=-1)
        s = region_features(out['content'], b['rois'])
        content = 1 - (s * t).sum(-1).mean()
        vfm = m.vfm_teacher(b['vfm'])
    assert rel_err(losses['loss_content'], content) <= 1e-5
    ctx = m.context_loss([out['context_q'], out['context_k']], vfm)
    assert rel_err(losses['loss_context'], ctx) <= 1e-5
    # the teacher starts equal to the student's own CLS path
    assert torch.equal(m.clip_teacher.visual.trunk.blocks[0].attn.q_proj.weight,
                       m.student.visual.trunk.blocks[0].attn.q_proj.weight)


def test_content_only_and_no_decouple_variants():
    m = make('csa', vfm_teacher=None, context_loss=None)
    assert set(m.loss(batch())) == {'loss_content'}
    m = make('vanilla', context_source='content')
    assert set(m.loss(batch())) == {'loss_content', 'loss_context'}
    with pytest.raises(ValueError, match='needs a vfm_teacher'):
        make('csa', vfm_teacher=None)


def test_teachers_not_in_state_dict_and_reload():
    m = make()
    sd = m.state_dict()
    assert not any(k.startswith(('clip_teacher.', 'vfm_teacher.')) for k in sd)
    other = make()
    with torch.no_grad():
        for p in other.student.parameters():
            p.add_(1.0)
    other.load_state_dict(sd, strict=True)
    assert torch.equal(other.student.visual.trunk.blocks[0].attn.q_proj.weight,
                       m.student.visual.trunk.blocks[0].attn.q_proj.weight)


def test_nan_loss_raises_clear_error():
    m = make()
    with pytest.raises(FloatingPointError, match='non-finite DeCLIP loss'):
        m.parse_losses({'loss_content': torch.tensor(float('nan')), 'loss_context': torch.tensor(1.0)})


def test_teacher_bf16_option():
    m = make(teacher_dtype='bf16')
    emb, vfm = m.teacher_targets(batch())
    assert emb.dtype == torch.float32 and vfm.dtype == torch.float32
    with pytest.raises(ValueError, match='teacher_dtype'):
        make(teacher_dtype='int8')


# --- which projection is distilled and trained, per mode (issue 11) ------------------------------
_PROJ = {'q': 'q_proj', 'k': 'k_proj', 'v': 'v_proj'}


def _last_attn_grads(m):
    """{'q'|'k'|'v': (requires_grad, gradient norm)} of the last block's projections."""
    out = {}
    attn = m.student.visual.trunk.blocks[-1].attn
    for key, name in _PROJ.items():
        w = getattr(attn, name).weight
        out[key] = (w.requires_grad, 0.0 if w.grad is None else float(w.grad.norm()))
    return out


@pytest.mark.parametrize('mode, trained, frozen', [
    ('qq', {'q', 'v'}, {'k'}),
    ('kk', {'k', 'v'}, {'q'}),
    ('csa', {'q', 'k', 'v'}, set()),
])
def test_gradient_reaches_the_distilled_projection_only(mode, trained, frozen):
    """Official src/training/utils.py: qq freezes k_proj, kk freezes q_proj (and q_bias)."""
    m = make(mode).train()
    b = batch()
    # context loss alone: only the distilled projection(s) get a gradient from it
    m.loss(b)['loss_context'].backward()
    g = _last_attn_grads(m)
    for key in trained - {'v'}:
        assert g[key][0] and g[key][1] > 0, (mode, key, g)
    for key in frozen:
        assert not g[key][0] and g[key][1] == 0.0, (mode, key, g)
    assert g['v'][1] == 0.0  # V is not part of the context
    q_bias = m.student.visual.trunk.blocks[-1].attn.q_proj.bias
    assert q_bias.requires_grad == (mode != 'kk')
    # the whole loss trains every trainable tensor (DDP needs no find_unused_parameters)
    m.zero_grad()
    sum(m.loss(b).values()).backward()
    missing = [n for n, p in m.student.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, (mode, missing)


@pytest.mark.parametrize('mode', ['qq', 'kk', 'csa'])
def test_context_loss_uses_the_modes_projection(mode):
    m = make(mode).eval()
    b = batch()
    with torch.no_grad():
        losses = m.loss(b)
        out = m.student(b['student'])
        vfm = m.vfm_teacher(b['vfm'])
    feats = {'qq': lambda: [out['context_q']], 'kk': lambda: [out['context_k']],
             'csa': lambda: [out['context_q'], out['context_k']]}[mode]()
    assert rel_err(losses['loss_context'], m.context_loss(feats, vfm)) <= 1e-6


def test_per_head_option_passes_the_students_heads():
    m = make('csa', context_loss=dict(type='ContextDistillLoss', loss_weight=1.0,
                                      head_mode='per_head')).eval()
    b = batch()
    with torch.no_grad():
        loss = m.loss(b)['loss_context']
        out = m.student(b['student'])
        vfm = m.vfm_teacher(b['vfm'])
    H = m.student.num_heads
    assert H > 1
    from declip_mm.models.losses.context_distill_loss import per_head_token_correlation, token_correlation
    s = per_head_token_correlation([out['context_q'], out['context_k']], H)
    ref = (token_correlation([vfm])[:, None] - s).norm(dim=-1).mean()
    assert rel_err(loss, ref) <= 1e-6
    with pytest.raises(ValueError, match='does not apply'):
        make('vanilla', context_source='content',
             context_loss=dict(type='ContextDistillLoss', head_mode='per_head'))
