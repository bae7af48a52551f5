import math

import pytest
import torch

from declip_mm.engine.hooks import merge_weights
from declip_mm.engine.optim import DeCLIPOptimWrapperConstructor
from declip_mm.engine.schedulers import warmup_cosine_factor


def test_warmup_cosine_formula():
    # open_clip cosine_lr: (t+1)/W during warm-up, then half cosine over the remaining steps
    assert warmup_cosine_factor(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine_factor(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine_factor(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine_factor(55, 100, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert warmup_cosine_factor(100, 100, 10) == pytest.approx(0.0, abs=1e-12)


def test_scheduler_through_mmengine():
    from mmengine.optim import OptimWrapper
    from mmseg.registry import PARAM_SCHEDULERS
    p = torch.nn.Parameter(torch.zeros(2))
    opt = OptimWrapper(torch.optim.SGD([p], lr=0.5))
    sched = PARAM_SCHEDULERS.build(dict(type='DeCLIPWarmupCosineLR', warmup_iters=4, begin=0, end=3,
                                        by_epoch=True, convert_to_iter_based=True),
                                   default_args=dict(optimizer=opt, epoch_length=5))
    lrs = []
    for _ in range(15):
        lrs.append(opt.param_groups[0]['lr'])
        sched.step()
    assert lrs == pytest.approx([0.5 * warmup_cosine_factor(t, 15, 4) for t in range(15)])


def test_optimizer_groups_decay_only_matrices():
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    m[2].weight.requires_grad = False
    wrapper = DeCLIPOptimWrapperConstructor(dict(optimizer=dict(type='AdamW', lr=1e-3,
                                                                weight_decay=0.1)))(m)
    g_decay, g_none = wrapper.optimizer.param_groups
    assert g_decay['weight_decay'] == 0.1 and g_none['weight_decay'] == 0.0
    assert [p.shape for p in g_decay['params']] == [torch.Size([4, 3])]
    assert {tuple(p.shape) for p in g_none['params']} == {(4, ), (2, )}
    assert sum(len(g['params']) for g in wrapper.optimizer.param_groups) == 5  # frozen one excluded
    with pytest.raises(ValueError, match='no paramwise_cfg'):
        DeCLIPOptimWrapperConstructor(dict(optimizer=dict(type='AdamW')), dict(norm_decay_mult=0))


def test_merge_weights():
    s = {'a': torch.tensor([1.0, 3.0]), 'n': torch.tensor([7])}
    o = {'a': torch.tensor([0.0, 1.0]), 'n': torch.tensor([1])}
    out = merge_weights(s, o, 0.7)
    assert torch.allclose(out['a'], torch.tensor([0.7, 2.4]))
    assert torch.equal(out['n'], torch.tensor([7]))


@pytest.mark.parametrize('mode, frozen_rows', [('qq', 1), ('kk', 0)])
def test_openai_keeps_unused_rows_of_fused_in_proj(mode, frozen_rows):
    """qq: the K rows of the last block's fused in_proj stay CLIP's; kk: the Q rows do."""
    from declip_mm.models import DeCLIPDistiller
    from declip_mm.testing import tiny_clip_config
    torch.manual_seed(0)
    m = DeCLIPDistiller(student=dict(type='DeCLIPVisionTransformer',
                                     model_name=tiny_clip_config('openai'), attn_mode=mode),
                        vfm_teacher=None, context_loss=None)
    wrapper = DeCLIPOptimWrapperConstructor(dict(optimizer=dict(type='AdamW', lr=1e-2,
                                                                weight_decay=0.1)))(m)
    attn = m.student.visual.transformer.resblocks[-1].attn
    w, bias = attn.in_proj_weight, attn.in_proj_bias
    d = m.student.width
    with torch.no_grad():  # the Runner loads weights *after* building the optimizer
        w.add_(torch.randn_like(w))
        bias.add_(torch.randn_like(bias))
    before, before_b = w.detach().clone(), bias.detach().clone()
    rois = torch.tensor([[0, 0.0, 0.0, 4.0, 4.0]])
    data = dict(student=torch.randn(1, 3, 32, 32), crops=torch.randn(1, 3, 32, 32), rois=rois)
    for _ in range(2):
        loss = sum(m.loss(data).values())
        wrapper.update_params(loss)
    for j in range(3):
        rows = slice(j * d, (j + 1) * d)
        if j == frozen_rows:
            assert torch.equal(w[rows], before[rows]) and torch.equal(bias[rows], before_b[rows])
        else:
            assert not torch.equal(w[rows], before[rows]), j
