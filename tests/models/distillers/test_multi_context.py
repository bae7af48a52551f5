"""Options beyond the paper (docs/method.md §6): several decoupled blocks, several VFM teachers."""
import pytest
import torch
import torch.nn.functional as F
from declip_reference import rel_err

from declip_mm.models import DeCLIPDistiller
from declip_mm.testing import tiny_clip_config

DINOV2 = dict(type='VFMTeacher', arch='dinov2_vitb14_reg',
              arch_overrides=dict(embed_dim=48, depth=2, num_heads=2, img_size=56))
DINO = dict(type='VFMTeacher', arch='dino_vitb16',
            arch_overrides=dict(embed_dim=32, depth=2, num_heads=2, img_size=64))


def make(mode='csa', family='eva02', k=1, vfm=(DINOV2, ), **kw):
    torch.manual_seed(0)
    vfm = list(vfm) if len(vfm) > 1 else vfm[0]
    return DeCLIPDistiller(
        student=dict(type='DeCLIPVisionTransformer', model_name=tiny_clip_config(family),
                     attn_mode=mode, decouple_last=k),
        vfm_teacher=vfm, **kw)


def batch(B=2, k=3):
    g = torch.Generator().manual_seed(0)
    rois = torch.cat([torch.arange(B).repeat_interleave(k)[:, None].float(),
                      torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 1.0, 8.0, 8.0],
                                    [1.0, 3.0, 6.0, 5.0]]).repeat(B, 1)], 1)
    return dict(student=torch.randn(B, 3, 64, 64, generator=g),
                vfm=torch.randn(B, 3, 112, 112, generator=g),       # DINOv2/14: 8 x 8 tokens
                vfm_1=torch.randn(B, 3, 128, 128, generator=g),     # DINO/16: 8 x 8 tokens
                crops=torch.randn(B * k, 3, 32, 32, generator=g), rois=rois)


def ref_corr(f):
    t = f.double().flatten(2).transpose(1, 2)
    t = t / t.norm(dim=-1, keepdim=True)
    return t @ t.transpose(1, 2)


def ref_context(feats, s_t, lam=0.1):
    """Float64 merged-head context loss from the formula: lam * mean_{b,i} ||S_t[i] - S_s[i]||_2."""
    s_s = sum(ref_corr(f) for f in feats) / len(feats)
    return lam * (s_t - s_s).square().sum(-1).sqrt().mean()


@pytest.mark.parametrize('mode', ['qq', 'csa'])
def test_per_block_context_weights_float64(mode):
    w = (0.2, 0.5, 1.0)
    m = make(mode, k=3, context_block_weights=w).train()
    b = batch()
    losses = m.loss(b)
    with torch.no_grad():
        out = m.student(b['student'])
        s_t = ref_corr(m.vfm_teacher(b['vfm']))
    keys = ['context_q'] + (['context_k'] if mode == 'csa' else [])
    per_block = [[out[k + '_blocks'][j] for k in keys] for j in range(2)] + [[out[k] for k in keys]]
    ref = sum(wb * ref_context(f, s_t) for wb, f in zip(w, per_block))
    assert rel_err(losses['loss_context'], ref) <= 1e-5
    # the content loss stays on the final content map: equal to the k = 1 distiller's
    one = make(mode, k=1).train()
    assert torch.equal(one.loss(b)['loss_content'], losses['loss_content'])
    # gradients of the context loss reach the side blocks' Q (block 0 is decoupled side block L-3)
    m.zero_grad()
    losses['loss_context'].backward()
    assert m.student.visual.trunk.blocks[0].attn.q_proj.weight.grad.abs().sum() > 0


def test_default_block_weights_and_errors():
    assert make(k=3).context_block_weights == pytest.approx([1 / 3] * 3)
    assert make(k=1).context_block_weights == [1.0]
    with pytest.raises(ValueError, match='needs decouple_last=3 weight'):
        make(k=3, context_block_weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="needs context_source='qk'"):
        make(k=2, context_source='content')


@pytest.mark.parametrize('weights', [(1.0, 1.0), (3.0, 1.0)])
def test_two_teachers_loss_is_weighted_sum_of_single_teacher_losses(weights):
    b = batch()
    two = make('csa', vfm=(DINOV2, DINO), vfm_weights=weights, vfm_combine='loss').train()
    a = make('csa', vfm=(DINOV2, )).train()
    c = make('csa', vfm=(DINO, )).train()
    c.vfm_teacher.load_state_dict(two.vfm_extra[0].state_dict())
    la = a.loss(b)['loss_context']
    lc = c.loss(dict(b, vfm=b['vfm_1']))['loss_context']
    lt = two.loss(b)['loss_context']
    wa, wc = weights[0] / sum(weights), weights[1] / sum(weights)
    assert rel_err(lt, wa * la + wc * lc) <= 1e-6
    # float64 reference from the formula
    with torch.no_grad():
        out = two.student(b['student'])
        s0 = ref_corr(two.vfm_teacher(b['vfm']))
        s1 = ref_corr(two.vfm_extra[0](b['vfm_1']))
    feats = [out['context_q'], out['context_k']]
    assert rel_err(lt, wa * ref_context(feats, s0) + wc * ref_context(feats, s1)) <= 1e-5
    assert rel_err(la, lc) > 1e-3  # the two teachers do differ


def test_two_teachers_target_average_float64():
    b = batch()
    m = make('csa', vfm=(DINOV2, DINO), vfm_weights=(1.0, 3.0), vfm_combine='target').train()
    lt = m.loss(b)['loss_context']
    with torch.no_grad():
        out = m.student(b['student'])
        s_t = 0.25 * ref_corr(m.vfm_teacher(b['vfm'])) + 0.75 * ref_corr(m.vfm_extra[0](b['vfm_1']))
    assert rel_err(lt, ref_context([out['context_q'], out['context_k']], s_t)) <= 1e-5
    loss_mode = make('csa', vfm=(DINOV2, DINO), vfm_weights=(1.0, 3.0)).train().loss(b)
    assert rel_err(lt, loss_mode['loss_context']) > 1e-4  # ||.|| is convex: the two differ


def test_two_teachers_with_three_blocks_and_frozen_teachers():
    b = batch()
    m = make('qq', k=2, vfm=(DINOV2, DINO), context_block_weights=(0.5, 1.0)).train()
    assert not m.vfm_extra[0].training and not any(p.requires_grad for p in m.vfm_extra.parameters())
    sd = m.state_dict()
    assert not any(k.startswith(('vfm_teacher.', 'vfm_extra.', 'clip_teacher.')) for k in sd)
    m.load_state_dict(sd)  # strict: the teachers are filled in
    loss = m.loss(b)
    with torch.no_grad():
        out = m.student(b['student'])
        s = [ref_corr(m.vfm_teacher(b['vfm'])), ref_corr(m.vfm_extra[0](b['vfm_1']))]
    ref = sum(wb * sum(0.5 * ref_context(f, st) for st in s)
              for wb, f in zip((0.5, 1.0), [[out['context_q_blocks'][0]], [out['context_q']]]))
    assert rel_err(loss['loss_context'], ref) <= 1e-5


def test_multi_teacher_errors():
    with pytest.raises(ValueError, match='vfm_weights needs 2 weight'):
        make(vfm=(DINOV2, DINO), vfm_weights=(1.0, ))
    with pytest.raises(ValueError, match='vfm_combine must be one of'):
        make(vfm=(DINOV2, DINO), vfm_combine='mean')
    with pytest.raises(ValueError, match='empty list'):
        make(vfm=([], ))
    m = make(vfm=(DINOV2, DINO))
    b = batch()
    del b['vfm_1']
    with pytest.raises(KeyError, match="vfm_img_1"):
        m.loss(b)
    m = make(vfm=(DINOV2, DINO), vfm_combine='target')
    b = batch()
    b['vfm_1'] = F.interpolate(b['vfm_1'], size=(64, 64))  # a 4 x 4 grid against 8 x 8
    with pytest.raises(ValueError, match='same token grid'):
        m.loss(b)


def test_pipeline_packs_extra_teacher_letterbox():
    from declip_mm.datasets.transforms import PackDeCLIPInputs
    from declip_mm.models.distillers import DeCLIPDataPreprocessor
    res = {'student_img': torch.zeros(3, 64, 64), 'vfm_img': torch.zeros(3, 112, 112),
           'vfm_img_valid_hw': (112, 80), 'vfm_img_1': torch.ones(3, 128, 128),
           'vfm_img_1_valid_hw': (128, 96)}
    packed = PackDeCLIPInputs()(res)['inputs']
    assert set(packed) == set(res)
    out = DeCLIPDataPreprocessor()({'inputs': [packed, packed]})['inputs']
    assert out['vfm_1'].shape == (2, 3, 128, 128) and torch.equal(out['vfm_1'], torch.ones(2, 3, 128, 128))
    assert out['vfm_1_valid_hw'].tolist() == [[128, 96]] * 2
    assert out['vfm_valid_hw'].tolist() == [[112, 80]] * 2
