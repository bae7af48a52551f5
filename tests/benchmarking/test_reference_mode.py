"""The benchmark's reference mode computes the same numbers as the default mode (issue 15).

The reference mode is what ``tools/benchmark.py`` compares against: explicit softmax(Q Kᵀ) attention,
windows one at a time at batch 1, the public post-processing at full size. Its speed ratio means
something only if it computes the same thing; these tests pin that, on tiny random towers.
"""
import collections
import contextlib

import pytest
import torch
import torch.nn.functional as F

from declip_mm.benchmarking import (
    count_flops,
    explicit_attention,
    explicit_sdpa,
    reference_heads,
    reference_slide_logits,
    reference_towers,
)
from declip_mm.benchmarking.cases import CatSegCase, InferCase, TrainCase, grid_rois
from declip_mm.models.backbones import clip_towers
from declip_mm.models.heads.guided_linear import GuidedLinear
from declip_mm.models.heads.upsample_decoder import GuidedUpStage
from declip_mm.models.layers import lean_mlp, rope_patch_rows
from declip_mm.testing import tiny_clip_config

VFM = dict(type='VFMTeacher', arch='dinov2_vitb14_reg',
           arch_overrides=dict(embed_dim=48, depth=2, num_heads=2, img_size=56))


def _sdpa_reference64(q, k, v, mask=None, causal=False, scale=None):
    """float64, written from the formula softmax(scale * Q Kᵀ + mask) V."""
    q, k, v = q.double(), k.double(), v.double()
    s = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float('-inf'))
    if mask is not None:
        s = s.masked_fill(~mask, float('-inf')) if mask.dtype == torch.bool else s + mask.double()
    return torch.softmax(s, -1) @ v


@pytest.mark.parametrize('shape', [(1, 2, 5, 8), (2, 3, 17, 16), (3, 1, 33, 4)])
def test_explicit_sdpa_equals_fused_and_formula(shape):
    g = torch.Generator().manual_seed(sum(shape))
    q, k, v = (torch.randn(*shape, generator=g) for _ in range(3))
    n = shape[-2]
    bool_mask = torch.rand(n, n, generator=g) > 0.3
    bool_mask |= torch.eye(n, dtype=torch.bool)  # no empty row
    add_mask = torch.randn(n, n, generator=g)
    for kw, ref_kw in [({}, {}), (dict(scale=0.7), dict(scale=0.7)),
                       (dict(is_causal=True), dict(causal=True)),
                       (dict(attn_mask=bool_mask), dict(mask=bool_mask)),
                       (dict(attn_mask=add_mask), dict(mask=add_mask))]:
        ref = _sdpa_reference64(q, k, v, **ref_kw)
        got = explicit_sdpa(q, k, v, **kw)
        fused = F.scaled_dot_product_attention(q, k, v, **kw)
        assert torch.allclose(got.double(), ref, atol=1e-5), kw
        assert torch.allclose(fused.double(), ref, atol=1e-5), kw


def test_explicit_attention_replaces_every_call_and_restores():
    original = F.scaled_dot_product_attention
    calls = []

    def counting(*a, **kw):
        calls.append(1)
        return original(*a, **kw)

    F.scaled_dot_product_attention = counting
    try:
        case = InferCase(dict(type='DeCLIPVisionTransformer', model_name=tiny_clip_config('eva02'),
                              attn_mode='csa'),
                         dict(type='DeCLIPTextEncoder', model_name=tiny_clip_config('eva02'),
                              templates='single'),
                         num_classes=4, size=(48, 64), crop=32, stride=16)
        calls.clear()
        with explicit_attention():
            case.seg.backbone(torch.randn(1, 3, 32, 32))
        assert not calls  # every attention of the tower went through the explicit version
        case.seg.backbone(torch.randn(1, 3, 32, 32))
        assert calls  # and the fused one is back afterwards
    finally:
        F.scaled_dot_product_attention = original


def test_flops_of_fused_and_explicit_attention_agree():
    q = torch.randn(2, 3, 50, 16, requires_grad=True)
    k = torch.randn(2, 3, 50, 16, requires_grad=True)
    fused = count_flops(lambda: F.scaled_dot_product_attention(q, k, k).sum().backward())
    expl = count_flops(lambda: explicit_sdpa(q, k, k).sum().backward())
    assert fused == expl == 3 * 2 * 2 * 2 * 3 * 50 * 50 * 16  # fwd 2 matmuls, bwd 4


@pytest.mark.parametrize('family', ['eva02', 'openai'])
@pytest.mark.parametrize('size,ori', [((48, 64), None), ((40, 72), (61, 99))])
def test_infer_reference_equals_default(family, size, ori):
    tiny = tiny_clip_config(family)
    case = InferCase(dict(type='DeCLIPVisionTransformer', model_name=tiny, attn_mode='csa'),
                     dict(type='DeCLIPTextEncoder', model_name=tiny, templates='single'),
                     num_classes=7, size=size, ori=ori, crop=32, stride=16, batch_size=3)
    case.seg.double()
    case.seg.text_embeddings = case.seg.text_embeddings.double()
    case.img = case.img.double()
    with torch.no_grad():
        ref = reference_slide_logits(case.seg, case.img)
        got = case.seg.slide_inference(case.img)
    assert torch.allclose(ref, got, rtol=0, atol=1e-12)
    assert torch.equal(case.predict('reference'), case.predict('default'))


def test_infer_reference_fp32_labels_equal():
    tiny = tiny_clip_config('eva02')
    case = InferCase(dict(type='DeCLIPVisionTransformer', model_name=tiny, attn_mode='csa'),
                     dict(type='DeCLIPTextEncoder', model_name=tiny, templates='single'),
                     num_classes=9, size=(48, 80), ori=(70, 117), crop=32, stride=16)
    ref, got = case.predict('reference'), case.predict('default')
    assert ref.shape == got.shape == (1, 70, 117)
    assert (ref == got).float().mean() > 0.999
    # fp32 (unlike float64 above) takes the default's one-pass RoPE and written-out EVA blocks
    with torch.no_grad():
        ref, got = reference_slide_logits(case.seg, case.img), case.seg.slide_inference(case.img)
    assert (ref - got).abs().max() <= 1e-5 * ref.abs().max()


def _train_case(**kw):
    return TrainCase(dict(type='DeCLIPVisionTransformer', model_name=tiny_clip_config('eva02'),
                          attn_mode='csa', attn_scale=1.0), VFM, side=64, crops=4, crop_size=32,
                     batch=2, **kw)


def test_grid_rois_tile_the_map():
    r = grid_rois(2, 35)
    assert r.shape == (40, 5)
    area = ((r[:20, 3] - r[:20, 1]) * (r[:20, 4] - r[:20, 2])).sum()
    assert torch.isclose(area, torch.tensor(35.0 * 35.0))
    assert torch.equal(r[20:, 1:], r[:20, 1:]) and (r[20:, 0] == 1).all()


def test_train_reference_equals_default_losses_and_updates():
    a, b = _train_case(), _train_case()
    for name, p in a.model.named_parameters():  # same weights (the same seed)
        assert torch.equal(p, dict(b.model.named_parameters())[name])
    la, lb = a.step('default'), b.step('reference')
    for k in la:
        assert abs(la[k] - lb[k]) <= 1e-5 * abs(lb[k]), k
    pa, pb = dict(a.model.student.named_parameters()), dict(b.model.student.named_parameters())
    for n in pa:  # one AdamW step (fused vs foreach) from the same gradients up to float
        assert torch.allclose(pa[n], pb[n], rtol=0, atol=1e-6), n


def test_train_warm_cache_and_bf16_close_to_reference():
    ref = _train_case().losses('reference')
    cached = _train_case(vfm_cache=True)
    first = cached.losses('default')  # miss: computed in fp32, stored in fp16
    second = cached.losses('default')  # hit: read back, the teacher is skipped
    assert cached.model.vfm_cache.stats['hit'] == 2 and cached.model.vfm_cache.stats['miss'] == 2
    for k in ref:
        assert abs(float(first[k]) - float(ref[k])) <= 1e-5 * abs(float(ref[k]))
        assert abs(float(second[k]) - float(ref[k])) <= 1e-3 * abs(float(ref[k]))


def test_catseg_reference_equals_default():
    from catseg_helpers import tiny_segmentor_cfg
    cfg = tiny_segmentor_cfg()
    cfg.pop('class_names')
    case = CatSegCase(cfg, num_classes=6, size=32)
    (la, pa), (lb, pb) = case.predict('default'), case.predict('reference')
    assert torch.allclose(pa, pb, atol=1e-5)
    assert (la == lb).float().mean() > 0.999


def test_lean_mlp_gradients_bit_identical_and_fewer_saved_tensors():
    from declip_mm.benchmarking.reference_towers import plain_mlps
    a, b = _train_case(), _train_case()
    mlps = [m for m in a.model.student.modules() if isinstance(m, lean_mlp.LeanSwiGLU)]
    assert mlps and not any(isinstance(m, lean_mlp.LeanSwiGLU)
                            for m in a.model.clip_teacher.modules())
    la = a.model.loss(a.inputs)
    with plain_mlps(b.model.student):
        lb = b.model.loss(b.inputs)
    assert all(torch.equal(la[k], lb[k]) for k in la)
    sum(la.values()).backward()
    with plain_mlps(b.model.student):
        sum(lb.values()).backward()
    for (n, p), q in zip(a.model.student.named_parameters(), b.model.student.parameters()):
        assert (p.grad is None) == (q.grad is None), n
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), n

    def saved_bytes(module, lean):
        x = torch.randn(1, 50, module.fc1_g.in_features, requires_grad=True)
        packed = []

        def pack(t):
            packed.append(t.numel())
            return t

        ctx = contextlib.nullcontext() if lean else plain_mlps(module)
        with ctx, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(x)
        hidden = module.fc1_g.out_features
        return sum(n for n in packed if n == 50 * hidden)

    m = mlps[0]
    assert saved_bytes(m, lean=False) == 5 * 50 * m.fc1_g.out_features
    assert saved_bytes(m, lean=True) == 2 * 50 * m.fc1_g.out_features


def test_reference_teacher_runs_the_whole_last_block():
    from declip_mm.benchmarking.reference_towers import full_last_block
    case = _train_case()
    crops = case.inputs['crops']
    teacher = case.model.clip_teacher
    default_flops = count_flops(lambda: teacher.encode_image(crops))
    with torch.no_grad():
        default = teacher.encode_image(crops)
        with full_last_block(teacher):
            full_flops = count_flops(lambda: teacher.encode_image(crops))
            full = teacher.encode_image(crops)
    assert full_flops > default_flops
    assert torch.allclose(full, default, atol=1e-6)
    assert 'run_block_cls' not in vars(teacher.ops)  # restored


def _spy(monkeypatch, calls, cls, name):
    """Count the calls of ``cls.name`` (the method still runs)."""
    original = getattr(cls, name)

    def counted(*args, **kwargs):
        calls[f'{cls.__name__}.{name}'] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(cls, name, counted)


def _classes(module):
    return [type(m) for m in module.modules()] + \
        [type(ops) for ops in reference_towers.tower_ops_in(module)]


def test_reference_mode_runs_the_reference_variants_and_restores(monkeypatch):
    """The parity tests above mean something only if the reference mode runs the public code's
    way: the reference classes' methods are called in reference mode and never in the default mode,
    the default's one-pass RoPE / lean MLP / split projections never in reference mode, and the
    model's classes are the same afterwards."""
    from catseg_helpers import tiny_segmentor_cfg
    calls = collections.Counter()
    for cls, name in [(reference_towers.PublicEvaViTOps, 'run_block'),
                      (reference_towers.PublicEvaViTOps, 'apply_rope'),
                      (reference_heads.ConcatGuidedLinear, 'forward'),
                      (reference_heads.AllQueriesClassAggregation, 'attend'),
                      (reference_heads.ConcatGuidedUpStage, 'guided_conv'),
                      (lean_mlp.LeanSwiGLU, 'forward'), (GuidedLinear, 'forward'),
                      (GuidedUpStage, 'guided_conv')]:
        _spy(monkeypatch, calls, cls, name)
    one_pass = []
    monkeypatch.setattr(clip_towers, 'rope_patch_rows',
                        lambda *a: one_pass.append(1) or rope_patch_rows(*a))
    reference_only = {'PublicEvaViTOps.run_block', 'ConcatGuidedLinear.forward',
                      'AllQueriesClassAggregation.attend', 'ConcatGuidedUpStage.guided_conv'}

    def called():
        return {k for k, n in calls.items() if n}

    cfg = tiny_segmentor_cfg('eva02')
    cfg.pop('class_names')
    cat = CatSegCase(cfg, num_classes=6, size=32)
    train = _train_case()
    before = _classes(cat.seg), _classes(train.model)
    cat.predict('reference')
    train.losses('reference')
    assert reference_only <= called(), calls
    assert not called() & {'LeanSwiGLU.forward', 'GuidedLinear.forward',
                           'GuidedUpStage.guided_conv'} and not one_pass, calls
    assert (_classes(cat.seg), _classes(train.model)) == before
    crops, teacher = train.inputs['crops'], train.model.clip_teacher
    with torch.no_grad():  # the CLS-only last block rotates q / k itself (ops.apply_rope)
        with reference_towers.literal_rope(train.model) as swapped:
            cls_ref = teacher.encode_image(crops)
        assert swapped == 2  # the student and the CLIP teacher (the VFM has no RoPE)
        assert calls['PublicEvaViTOps.apply_rope'] and not one_pass
        cls_default = teacher.encode_image(crops)
    assert one_pass and torch.allclose(cls_ref, cls_default, rtol=0, atol=1e-6)
    calls.clear()
    cat.predict('default')
    train.losses('default')
    assert not (reference_only | {'PublicEvaViTOps.apply_rope'}) & called(), calls
    assert {'LeanSwiGLU.forward', 'GuidedLinear.forward', 'GuidedUpStage.guided_conv'} <= called()
