"""VFM feature cache (docs/method.md §6): hits skip the teacher, keys, corruption, tolerance."""
import glob
import math
import os
import os.path as osp

import numpy as np
import pytest
import torch
from declip_reference import rel_err

from declip_mm.models import DeCLIPDistiller
from declip_mm.models.distillers import VFMFeatureCache
from declip_mm.models.distillers.vfm_feature_cache import input_fingerprint, vfm_pipeline_warnings
from declip_mm.testing import tiny_clip_config

DINOV2 = dict(type='VFMTeacher', arch='dinov2_vitb14_reg',
              arch_overrides=dict(embed_dim=48, depth=2, num_heads=2, img_size=56))
DINO = dict(type='VFMTeacher', arch='dino_vitb16',
            arch_overrides=dict(embed_dim=32, depth=2, num_heads=2, img_size=64))
U = 2.0 ** -11  # fp16 unit roundoff (relative rounding error of one element)


def make(vfm=(DINOV2, ), **kw):
    torch.manual_seed(0)
    return DeCLIPDistiller(
        student=dict(type='DeCLIPVisionTransformer', model_name=tiny_clip_config('eva02'),
                     attn_mode='csa'),
        vfm_teacher=list(vfm) if len(vfm) > 1 else vfm[0], **kw).train()


def images(tmp_path, n):
    """n image files (the cache keys on path, size and mtime; the content is not read)."""
    os.makedirs(tmp_path / 'imgs', exist_ok=True)
    paths = []
    for i in range(n):
        p = tmp_path / 'imgs' / f'{i:03d}.jpg'
        p.write_bytes(bytes([i]) * (100 + i))
        paths.append(str(p))
    return paths


def batch(paths, ids, side=112, seed=0):
    """Per-image tensors drawn from the image index, so image i gives the same input in any batch."""
    def img(i, shape):
        return torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1000 + i))
    k = 3
    b = len(ids)
    rois = torch.cat([torch.arange(b).repeat_interleave(k)[:, None].float(),
                      torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 1.0, 8.0, 8.0],
                                    [1.0, 3.0, 6.0, 5.0]]).repeat(b, 1)], 1)
    return dict(student=torch.stack([img(i, (3, 64, 64)) for i in ids]),
                vfm=torch.stack([img(100 + i, (3, side, side)) for i in ids]),
                vfm_valid_hw=torch.tensor([[side, side - 14 * (i % 2)] for i in ids]),
                vfm_1=torch.stack([img(200 + i, (3, 128, 128)) for i in ids]),
                vfm_1_valid_hw=torch.tensor([[128, 128]] * b),
                crops=torch.stack([img(300 + i, (k, 3, 32, 32)) for i in ids]).flatten(0, 1),
                rois=rois, img_path=[paths[i] for i in ids])


def count_calls(teacher):
    calls = []
    teacher.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    return calls


def entries(cache_dir):
    return sorted(glob.glob(osp.join(str(cache_dir), '*', '*', '*.npy')))


def test_default_is_the_uncached_path():
    """vfm_cache=None: no cache object, no img_path in the batch, the loss is the teacher's fp32."""
    m = make()
    assert m.vfm_cache is None and m.data_preprocessor.keep_img_path is False
    b = batch(['x'] * 2, [0, 1])
    b.pop('img_path')
    losses = m.loss(b)
    with torch.no_grad():
        out = m.student(b['student'])
        ref = m.context_loss([out['context_q'], out['context_k']], m.vfm_teacher(b['vfm']).float(),
                             None, num_heads=m.student.num_heads)
    assert torch.equal(losses['loss_context'], ref)


def test_miss_epoch_is_exact_and_hit_epoch_is_fp16_rounding(tmp_path):
    paths = images(tmp_path, 3)
    ref = make()
    m = make(vfm_cache=dict(cache_dir=str(tmp_path / 'cache')))
    calls = count_calls(m.vfm_teacher)
    for side in (112, 84):  # 8 x 8 and 6 x 6 tokens: separate teacher keys
        b = batch(paths, [0, 1, 2], side=side)
        miss = m.loss(b)
        want = ref.loss(b)
        assert torch.equal(miss['loss_context'], want['loss_context'])  # fp32 features on a miss
        assert torch.equal(miss['loss_content'], want['loss_content'])
        n_calls = len(calls)
        hit = m.loss(b)
        assert len(calls) == n_calls  # the teacher did not run
        assert torch.equal(hit['loss_content'], want['loss_content'])
        # the hit targets are the fp32 features rounded to fp16, the hit loss the loss on them ...
        with torch.no_grad():
            out = m.student(b['student'])
            feats = [out['context_q'], out['context_k']]
            vfm = m.vfm_teacher(b['vfm']).float()
            rounded = m.context_loss(feats, vfm.half().float(), None,
                                     num_heads=m.student.num_heads)
        cached = m.teacher_targets(b)[1]
        assert torch.equal(cached, vfm.half().float()) and not torch.equal(cached, vfm)
        assert torch.equal(hit['loss_context'], rounded)
        # ... within the bound of that rounding: every element has relative error <= u, so each
        # L2-normalised token moves by <= 2u, each correlation by <= 4u, each row's L2 distance by
        # <= 4u sqrt(N): |dL| <= lambda * 4 u sqrt(N)
        n = vfm.shape[-2] * vfm.shape[-1]
        bound = m.context_loss.loss_weight * 4 * U * math.sqrt(n)
        assert abs(float(hit['loss_context']) - float(want['loss_context'])) <= bound
    assert calls == [3, 3, 3, 3]  # per side: one miss pass, plus the reference passes above
    assert m.vfm_cache.stats['hit'] == 12 and m.vfm_cache.stats['miss'] == 6
    assert len(entries(tmp_path / 'cache')) == 6


def test_mixed_batch_runs_the_teacher_on_the_misses_only(tmp_path):
    paths = images(tmp_path, 4)
    m = make(vfm_cache=dict(cache_dir=str(tmp_path / 'cache')))
    calls = count_calls(m.vfm_teacher)
    m.loss(batch(paths, [0, 1]))
    b = batch(paths, [2, 0, 3, 1])
    got = m.teacher_targets(b)[1]
    assert calls == [2, 2]  # images 2 and 3 only
    with torch.no_grad():
        full = m.vfm_teacher(b['vfm'])
    assert torch.allclose(got[[1, 3]], full[[1, 3]].half().float(), rtol=0, atol=1e-6)
    assert torch.allclose(got[[0, 2]], full[[0, 2]], rtol=1e-5, atol=1e-6)
    assert m.vfm_cache.stats['hit'] == 2 and len(entries(tmp_path / 'cache')) == 4


def test_several_teachers_each_have_their_own_key(tmp_path):
    paths = images(tmp_path, 2)
    b = batch(paths, [0, 1])
    ref = make(vfm=(DINOV2, DINO))
    m = make(vfm=(DINOV2, DINO), vfm_cache=dict(cache_dir=str(tmp_path / 'cache')))
    c0, c1 = count_calls(m.vfm_teacher), count_calls(m.vfm_extra[0])
    assert torch.equal(m.loss(b)['loss_context'], ref.loss(b)['loss_context'])
    hit = m.loss(b)['loss_context']
    assert c0 == [2] and c1 == [2]
    assert rel_err(hit, ref.loss(b)['loss_context']) <= 1e-3
    dirs = sorted(os.listdir(tmp_path / 'cache'))
    assert len(dirs) == 2 and dirs[0].startswith('dino_vitb16-128x128-')
    assert dirs[1].startswith('dinov2_vitb14_reg-112x112-')
    assert len(entries(tmp_path / 'cache')) == 4


def test_teacher_key_follows_weights_arch_size_precision_and_dtype(tmp_path):
    cache = VFMFeatureCache(str(tmp_path))
    from declip_mm.registry import MODELS
    torch.manual_seed(0)
    t = MODELS.build(DINOV2)
    key = cache.teacher_key(t, (112, 112))[0]
    torch.manual_seed(0)
    assert cache.teacher_key(MODELS.build(DINOV2), (112, 112))[0] == key  # same teacher, same key
    keys = {key, cache.teacher_key(t, (84, 84))[0], cache.teacher_key(t, (112, 112), 'bf16')[0]}
    for overrides in (dict(depth=3), dict(embed_dim=64)):
        torch.manual_seed(0)
        other = dict(DINOV2, arch_overrides=dict(DINOV2['arch_overrides'], **overrides))
        keys.add(cache.teacher_key(MODELS.build(other), (112, 112))[0])
    torch.manual_seed(0)
    keys.add(cache.teacher_key(MODELS.build(dict(DINOV2, precision='fp16')), (112, 112))[0])
    torch.manual_seed(1)
    keys.add(cache.teacher_key(MODELS.build(DINOV2), (112, 112))[0])  # other random weights
    assert len(keys) == 7
    with torch.no_grad():
        t.model.blocks[1].mlp.fc2.bias[0] += 1e-3  # in place, as load_state_dict does
    assert cache.teacher_key(t, (112, 112))[0] not in keys


def test_image_key_follows_file_and_geometry(tmp_path):
    (p, ) = images(tmp_path, 1)
    key = VFMFeatureCache.image_key(p, (112, 98))
    assert VFMFeatureCache.image_key(p, (112, 98)) == key
    assert VFMFeatureCache.image_key(p, (98, 112)) != key
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    assert VFMFeatureCache.image_key(p, (112, 98)) != key
    assert VFMFeatureCache.image_key(str(tmp_path / 'missing.jpg'), None) is None


def _corrupt(path, how):
    if how == 'truncated':
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[:len(data) // 2])
    elif how == 'garbage':
        open(path, 'wb').write(b'\x00' * 300)
    elif how == 'flipped':
        data = bytearray(open(path, 'rb').read())
        data[-7] ^= 0xFF
        open(path, 'wb').write(bytes(data))
    elif how == 'wrong_shape':
        np.save(path, np.zeros((48, 7, 8), np.float16))
    elif how == 'nan':  # a valid record (right crc) holding NaN
        rec = np.load(path)
        rec['feat'][0, 0, 0] = np.nan
        rec['crc'] = __import__('zlib').crc32(rec['feat'].tobytes())
        np.save(path, rec)


@pytest.mark.parametrize('how', ['truncated', 'garbage', 'flipped', 'wrong_shape', 'nan'])
def test_invalid_entry_is_recomputed_with_a_warning(tmp_path, how):
    paths = images(tmp_path, 2)
    m = make(vfm_cache=dict(cache_dir=str(tmp_path / 'cache')))
    calls = count_calls(m.vfm_teacher)
    b = batch(paths, [0, 1])
    first = m.teacher_targets(b)[1]
    bad = entries(tmp_path / 'cache')[0]
    _corrupt(bad, how)
    with pytest.warns(UserWarning, match='invalid entry'):
        again = m.teacher_targets(b)[1]
    assert calls == [2, 1]
    assert torch.allclose(again, first, rtol=0, atol=2 * U * float(first.abs().max()))
    assert torch.isfinite(again).all()
    m.teacher_targets(b)  # rewritten: a clean hit now
    assert calls == [2, 1] and m.vfm_cache.stats['invalid'] == 1


def test_non_finite_features_are_not_written(tmp_path):
    (p, ) = images(tmp_path, 1)
    cache = VFMFeatureCache(str(tmp_path / 'cache'))
    from declip_mm.registry import MODELS
    t = MODELS.build(DINOV2)
    x = torch.randn(1, 3, 112, 112)
    for bad in (float('nan'), 1e6):  # NaN, and a value fp16 cannot hold
        with pytest.warns(UserWarning, match='non-finite features not stored'):
            out = cache.features(t, x, [p], None,
                                 run=lambda v, bad=bad: torch.full((1, 48, 8, 8), bad))
        assert out.shape == (1, 48, 8, 8)
    assert entries(tmp_path / 'cache') == []


def test_changed_vfm_input_is_detected(tmp_path):
    paths = images(tmp_path, 2)
    m = make(vfm_cache=dict(cache_dir=str(tmp_path / 'cache')))
    b = batch(paths, [0, 1])
    m.teacher_targets(b)
    flipped = dict(b, vfm=b['vfm'].flip(-1))  # a random flip in the pipeline
    with pytest.raises(RuntimeError, match='augments'):
        m.teacher_targets(flipped)
    # a new run with another input (say, another normalisation) recomputes and overwrites
    m2 = make(vfm_cache=dict(cache_dir=str(tmp_path / 'cache')))
    calls = count_calls(m2.vfm_teacher)
    with pytest.warns(UserWarning, match='different VFM input'):
        m2.teacher_targets(dict(b, vfm=b['vfm'] * 1.1))
    assert calls == [2]
    fp = input_fingerprint(b['vfm'])
    assert not torch.allclose(fp, input_fingerprint(flipped['vfm']), atol=1e-3)


def test_errors_and_pipeline_warnings(tmp_path):
    with pytest.raises(ValueError, match='needs a vfm_teacher'):
        DeCLIPDistiller(student=dict(type='DeCLIPVisionTransformer',
                                     model_name=tiny_clip_config('eva02')),
                        vfm_teacher=None, context_loss=None, vfm_cache=dict(cache_dir='x'))
    with pytest.raises(ValueError, match='cache_dir'):
        VFMFeatureCache('')
    m = make(vfm_cache=dict(cache_dir=str(tmp_path)))
    b = batch(['x', 'y'], [0, 1])
    b.pop('img_path')
    with pytest.raises(KeyError, match='img_path'):
        m.loss(b)
    ok = [dict(type='LoadImageOrSkip'), dict(type='DeCLIPGridCrops'),
          dict(type='DeCLIPLetterbox', key='student_img'),
          dict(type='DeCLIPLetterbox', key='vfm_img'), dict(type='PackDeCLIPInputs')]
    assert vfm_pipeline_warnings(ok) == []
    flip = ok[:1] + [dict(type='RandomFlip', prob=0.5)] + ok[1:]
    (msg, ) = vfm_pipeline_warnings(flip)
    assert 'RandomFlip' in msg and 'vfm_img' in msg


def test_preprocessor_passes_img_path_only_when_asked():
    from declip_mm.datasets.transforms import PackDeCLIPInputs
    from declip_mm.models.distillers import DeCLIPDataPreprocessor
    res = {'student_img': torch.zeros(3, 64, 64), 'vfm_img': torch.zeros(3, 112, 112),
           'vfm_img_valid_hw': (112, 80), 'img_path': 'a/b.jpg'}
    packed = PackDeCLIPInputs()(res)['inputs']
    assert 'img_path' not in DeCLIPDataPreprocessor()({'inputs': [packed]})['inputs']
    out = DeCLIPDataPreprocessor(keep_img_path=True)({'inputs': [packed, packed]})['inputs']
    assert out['img_path'] == ['a/b.jpg', 'a/b.jpg']


def test_read_only_cache_serves_hits_and_writes_nothing(tmp_path):
    paths = images(tmp_path, 3)
    b = batch(paths, [0, 1])
    make(vfm_cache=dict(cache_dir=str(tmp_path / 'cache'))).teacher_targets(b)
    m = make(vfm_cache=dict(cache_dir=str(tmp_path / 'cache'), write=False))
    calls = count_calls(m.vfm_teacher)
    m.teacher_targets(batch(paths, [0, 1, 2]))
    m.teacher_targets(batch(paths, [0, 1, 2]))
    assert calls == [1, 1]  # image 2 is never stored, 0 and 1 always hit
    assert m.vfm_cache.stats['hit'] == 4 and m.vfm_cache.stats['written'] == 0
    assert len(entries(tmp_path / 'cache')) == 2
