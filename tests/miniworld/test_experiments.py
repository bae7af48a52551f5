"""The experiment phases of tools/miniworld.py (declip_mm/miniworld/experiments.py): a reduced world with
tiny RANDOM towers runs every phase end to end through tools/train.py and tools/test.py, and
results.json holds the numbers those runs produced; the table's mean / std and the seen / unseen mIoU
are checked against formulas written out with numpy."""
from __future__ import annotations

import json
import os.path as osp
from dataclasses import replace

import numpy as np
import pytest
import torch
from tf_helpers import load_tool

from declip_mm.miniworld import experiments as E
from declip_mm.miniworld import write_world
from declip_mm.miniworld.class_group_metric import ClassGroupIoUMetric
from declip_mm.miniworld.clip_trainer import build_clip_model, save_clip
from declip_mm.miniworld.tower_configs import world_clip_config, world_vfm_spec
from declip_mm.miniworld.vfm_trainer import build_vfm_backbone, save_vfm

SEEDS = (0, 1)


def _student(path):
    from declip_mm.apis import mmengine_safe_torch_load
    sd = mmengine_safe_torch_load(path)
    return sd.get('state_dict', sd)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """Every phase on a reduced world (tiny random towers, 1 epoch / 2 iterations, 2 seeds)."""
    out = str(tmp_path_factory.mktemp('mw'))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    paths = write_world(osp.join(out, 'world'), 0, n_caption=0, n_unlabeled=4, n_bench=2,
                        n_catseg_train=4)
    torch.manual_seed(0)
    cc = world_clip_config(embed_dim=32, depth=3, num_heads=2)
    clip = save_clip(build_clip_model(cc), cc, osp.join(out, 'towers', 'clip.pt'))
    vs = world_vfm_spec(embed_dim=32, depth=1, num_heads=2)
    vfm = save_vfm(build_vfm_backbone(vs), vs, osp.join(out, 'towers', 'vfm.pth'))
    inputs = E.WorldInputs(paths=paths, clip=clip, vfm=vfm, out=out, log=lambda m: None)
    settings = E.ExperimentSettings(seeds=SEEDS, variants=('content+context', 'no-decoupling'),
                                    declip_epochs=1, declip_batch=2, declip_warmup=1,
                                    region_variants=('content+context', ), catseg_iters=2,
                                    catseg_batch=2, catseg_out_indices=(0, 1), threads=1)
    results = {}
    E.phase_training_free(inputs, results, settings)
    E.phase_declip(inputs, results, settings)
    E.phase_proxy(inputs, results, settings)
    # the single-loss variants with one seed, the CAT-Seg heads with the second seed (fewer runs)
    E.phase_declip(inputs, results, replace(settings, seeds=(0, ), variants=('content', 'context')))
    E.phase_region_cls(inputs, results, settings)
    E.phase_catseg(inputs, results, replace(settings, seeds=(1, )))
    torch.set_num_threads(n)
    return dict(out=out, inputs=inputs, settings=settings, results=results, clip=clip)


def test_results_structure(run):
    r = run['results']
    assert set(r['training_free']) == set(E.TRAINING_FREE_MODES)
    for mode in E.TRAINING_FREE_MODES:
        assert len(r['training_free'][mode]['mIoU']) == 1
    assert set(r['declip']) == {'content', 'context', 'content+context', 'no-decoupling'}
    for variant, e in r['declip'].items():
        seeds = [0] if variant in ('content', 'context') else list(SEEDS)
        assert e['seeds'] == seeds and len(e['mIoU']) == len(seeds) == len(e['exports'])
        assert e['attn_mode'] == ('vanilla' if variant == 'no-decoupling' else 'csa')
    assert set(r['region_cls']['before']) == {'vanilla', 'csa'}
    assert len(r['region_cls']['after']['content+context']['thing']) == len(SEEDS)
    for v in ('clip', 'declip'):
        assert r['catseg'][v]['seeds'] == [1]
        assert all(len(r['catseg'][v][k]) == 1 for k in ('mIoU', 'mIoU.seen', 'mIoU.unseen'))
    assert r['catseg']['declip']['from'] == 'content+context'
    assert len(r['proxy']['clip']['mIoU']) == 1
    assert r['proxy']['declip']['seeds'] == list(SEEDS) == list(r['declip']['content+context']['seeds'])
    json.dumps(r)  # what tools/miniworld.py writes to results.json


def test_training_free_numbers_are_tools_test_numbers(run, tmp_path):
    """A direct tools/test.py call on the run's config gives the recorded mIoU; the modes differ in
    the config that ran (attn_mode)."""
    r = run['results']['training_free']
    for mode in ('kk', ):
        cfg = r[mode]['config']
        metrics = load_tool('test').main([cfg, '--work-dir', str(tmp_path / mode)])
        assert float(metrics['mIoU']) == r[mode]['mIoU'][0]
        from mmengine.config import Config
        c = Config.fromfile(cfg)
        assert c.model.backbone.attn_mode == mode
        assert c.model.backbone.pretrained == run['clip']['weights']
        assert c.test_dataloader.dataset.data_root == run['inputs'].paths['ade_root']


def test_declip_runs_train_the_variant_and_evaluate_the_export(run, tmp_path):
    from mmengine.config import Config
    r = run['results']['declip']
    out = run['out']
    clip_sd = torch.load(run['clip']['weights'], map_location='cpu')
    for variant, e in r.items():
        for seed, export in zip(e['seeds'], e['exports']):
            root = osp.join(out, 'experiments', 'declip', variant.replace('+', '_'), f'seed{seed}')
            c = Config.fromfile(osp.join(root, 'train', 'run_config.py'))
            assert c.randomness.seed == seed
            crops = [t for t in c.train_dataloader.dataset.pipeline if t.type == 'DeCLIPGridCrops']
            assert crops[0].seed == seed
            assert (c.model.vfm_teacher is None) == (variant == 'content')
            assert (c.model.content_loss.loss_weight == 0.0) == (variant == 'context')
            assert c.model.context_source == ('content' if variant == 'no-decoupling' else 'qk')
            assert c.model.student.pretrained == run['clip']['weights']
            assert osp.dirname(export) == osp.join(root, 'train')
        # the export is a trained, alpha-merged tower: not the CLIP's weights
        sd = _student(e['exports'][0])
        key = next(k for k in sd if k.endswith('blocks.2.attn.q_proj.weight'))
        ref = next(v for k, v in clip_sd.items() if k.endswith('blocks.2.attn.q_proj.weight'))
        assert not torch.equal(sd[key].float(), ref.float()), variant
    # the seeds change the run (other crops, other shuffling): other exports
    e = r['content+context']
    a, b = (_student(p) for p in e['exports'])
    assert any(not torch.equal(a[k], b[k]) for k in a if torch.is_tensor(a[k]))
    # the recorded mIoU is what tools/test.py gives for that export in the variant's mode
    root = osp.join(out, 'experiments', 'declip', 'no-decoupling', 'seed1')
    metrics = load_tool('test').main([osp.join(root, 'test', 'run_config.py'),
                                      r['no-decoupling']['exports'][1],
                                      '--work-dir', str(tmp_path / 'nd')])
    assert float(metrics['mIoU']) == r['no-decoupling']['mIoU'][1]
    c = Config.fromfile(osp.join(root, 'test', 'run_config.py'))
    assert c.model.backbone.attn_mode == 'vanilla'


def test_proxy_runs_are_the_proxy_config_on_each_tower(run, tmp_path):
    """The proxy phase: tools/test.py on the proxy config (ProxyCLIP's attention, the tiny VFM's
    weights and architecture) with the plain CLIP and with each seed's content+context export; the
    recorded mIoU is what tools/test.py gives; the run differs from the training-free run only in the
    attention (the plain CLIP's proxy and csa configs share the benchmark and towers)."""
    from mmengine.config import Config
    out, r = run['out'], run['results']
    spec = run['inputs'].vfm_spec()
    plain = Config.fromfile(r['proxy']['clip']['config'])
    assert plain.model.type == 'DeCLIPProxySegmentor' and plain.model.backbone.attn_mode == 'proxy'
    assert (plain.model.backbone.proxy_beta, plain.model.backbone.proxy_gamma) == (1.2, 3.0)
    assert plain.model.vfm.pretrained == run['inputs'].vfm['weights']
    assert plain.model.vfm.arch_overrides == spec['arch_overrides']
    assert plain.model.backbone.pretrained == run['clip']['weights']
    tf = Config.fromfile(r['training_free']['csa']['config'])
    assert plain.test_dataloader.dataset == tf.test_dataloader.dataset
    assert plain.model.logit_scale == tf.model.logit_scale
    wd = osp.join(out, 'experiments', 'proxy', 'declip', 'seed1')
    export = r['declip']['content+context']['exports'][1]
    m = load_tool('test').main([osp.join(wd, 'run_config.py'), export,
                                '--work-dir', str(tmp_path / 'px')])
    assert float(m['mIoU']) == r['proxy']['declip']['mIoU'][1]
    m0 = load_tool('test').main([r['proxy']['clip']['config'], '--work-dir', str(tmp_path / 'p0')])
    assert float(m0['mIoU']) == r['proxy']['clip']['mIoU'][0]


def test_region_cls_and_catseg_numbers_come_from_their_runs(run, tmp_path):
    from mmengine.config import Config
    out, r = run['out'], run['results']
    wd = osp.join(out, 'experiments', 'region_cls', 'after', 'content_context', 'seed1')
    m = load_tool('test').main([osp.join(wd, 'run_config.py'), r['declip']['content+context'][
        'exports'][1], '--work-dir', str(tmp_path / 'rc')])
    after = r['region_cls']['after']['content+context']
    assert float(m['region_cls/rois.thing.macc1']) == after['thing'][1]
    assert float(m['region_cls/rois.stuff.macc1']) == after['stuff'][1]
    # CAT-Seg: the head from the DeCLIP tower starts from that seed's export, trains on seen names
    seen, unseen = run['inputs'].seen_unseen
    for seed in (1, ):
        root = osp.join(out, 'experiments', 'catseg', 'declip', f'seed{seed}')
        c = Config.fromfile(osp.join(root, 'train', 'run_config.py'))
        assert c.model.backbone.pretrained == r['declip']['content+context']['exports'][seed]
        assert c.model.backbone.attn_mode == 'csa'
        assert list(c.train_dataloader.dataset.metainfo.classes) == seen
        assert c.model.class_names == run['inputs'].paths['seen_class_names']
        t = Config.fromfile(osp.join(root, 'test', 'run_config.py'))
        assert t.test_evaluator.class_groups == dict(seen=seen, unseen=unseen)
    plain = Config.fromfile(osp.join(out, 'experiments', 'catseg', 'clip', 'seed1', 'train',
                                     'run_config.py'))
    assert plain.model.backbone.pretrained == run['clip']['weights']
    assert plain.model.backbone.attn_mode == 'maskclip'
    root = osp.join(out, 'experiments', 'catseg', 'clip', 'seed1')
    m = load_tool('test').main([osp.join(root, 'test', 'run_config.py'),
                                osp.join(root, 'train', 'iter_2.pth'), '--work-dir',
                                str(tmp_path / 'cs')])
    for k in ('mIoU', 'mIoU.seen', 'mIoU.unseen'):
        assert float(m[k]) == r['catseg']['clip'][k][0]


def test_mean_std_and_table_against_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5):
        vals = rng.uniform(0, 100, n).tolist()
        m, s = E.mean_std(vals)
        assert m == pytest.approx(np.mean(vals), abs=1e-12)
        assert s == pytest.approx(np.std(vals, ddof=1) if n > 1 else 0.0, abs=1e-12)
    vals = [10.0, 12.5, 20.0]
    res = dict(training_free=dict(csa=dict(mIoU=[7.25])),
               declip={'content+context': dict(mIoU=vals, attn_mode='csa')},
               catseg=dict(declip={'mIoU': vals, 'mIoU.seen': vals, 'mIoU.unseen': [1.0, 3.0]}))
    cell = f'{np.mean(vals):.2f} ± {np.std(vals, ddof=1):.2f} (n=3)'
    res['proxy'] = dict(clip=dict(mIoU=[3.5]), declip=dict(mIoU=vals))
    table = E.format_table(res)
    assert '| proxy attention (tiny VFM), plain CLIP | mIoU | 3.50 |' in table
    assert f'| proxy attention (tiny VFM), DeCLIP tower (content + context) | mIoU | {cell} |' in table
    assert '| training-free, `csa` | mIoU | 7.25 |' in table
    assert f'| DeCLIP, content + context (`csa`) | mIoU | {cell} |' in table
    assert f'{cell} / 2.00 ± {np.std([1.0, 3.0], ddof=1):.2f} (n=2)' in table
    with pytest.raises(ValueError):
        E.mean_std([])


def _sample(pred, gt):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    s = SegDataSample()
    s.pred_sem_seg = PixelData(data=torch.as_tensor(pred)[None])
    s.gt_sem_seg = PixelData(data=torch.as_tensor(gt)[None])
    return s.to_dict()


@pytest.mark.parametrize('shape', [(5, 7), (16, 16)])
def test_class_group_iou_against_numpy(shape):
    classes = ('a', 'b', 'c', 'd', 'e')
    groups = dict(seen=['a', 'c', 'e'], unseen=['b', 'd'])
    rng = np.random.default_rng(shape[0])
    metric = ClassGroupIoUMetric(class_groups=groups, iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=classes)
    inter = np.zeros(5)
    union = np.zeros(5)
    for _ in range(3):
        gt = rng.integers(0, 4, shape)           # class 'e' never in the ground truth
        gt[0, 0] = 255                            # ignored pixel
        pred = rng.integers(0, 4, shape)          # nor predicted: its IoU is NaN, left out
        metric.process([], [_sample(pred, gt)])
        keep = gt != 255
        for c in range(5):
            p, g = (pred == c) & keep, (gt == c) & keep
            inter[c] += (p & g).sum()
            union[c] += (p | g).sum()
    got = metric.compute_metrics(metric.results)
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    assert got['mIoU.seen'] == pytest.approx(round(np.nanmean(iou[[0, 2, 4]]) * 100, 2))
    assert got['mIoU.unseen'] == pytest.approx(round(np.nanmean(iou[[1, 3]]) * 100, 2))
    assert got['IoU.b'] == pytest.approx(round(iou[1] * 100, 2))
    assert np.isnan(got['IoU.e'])
    with pytest.raises(ValueError, match='not dataset classes'):
        bad = ClassGroupIoUMetric(class_groups=dict(x=['zebra']))
        bad.dataset_meta = dict(classes=classes)
        bad.process([], [_sample(pred, gt)])
        bad.compute_metrics(bad.results)


def test_phases_registered_in_tools_miniworld():
    mw = load_tool('miniworld')
    names = list(mw.PHASES)
    assert names[-5:] == ['training_free', 'declip', 'proxy', 'region_cls', 'catseg']
    with pytest.raises(ValueError, match='unknown'):
        E.ExperimentSettings(variants=('contents', )).check()


def test_cli_schedule_options_reach_the_experiment_settings():
    mw = load_tool('miniworld')

    class Ctx:
        args = mw.parse_args(['--out', 'x', '--seeds', '3,4', '--declip-epochs', '2',
                              '--declip-images', '64', '--catseg-iters', '40', '--catseg-images',
                              '32', '--threads', '1'])

    s = E.settings_from_context(Ctx)
    assert (s.seeds, s.declip_epochs, s.declip_images, s.catseg_iters, s.catseg_images, s.threads) \
        == ((3, 4), 2, 64, 40, 32, 1)
    Ctx.args = mw.parse_args(['--out', 'x'])
    s = E.settings_from_context(Ctx)
    assert (s.seeds, s.declip_epochs, s.declip_images, s.catseg_iters) == ((0, 1, 2), None, None,
                                                                            None)


def test_cli_phase_uses_the_world_and_towers_of_earlier_phases(tmp_path, monkeypatch):
    """tools/miniworld.py --phases world,clip,vfm,training_free: the experiment phase reads the world
    and the towers the earlier phases recorded, and results.json holds its numbers."""
    from mmengine.config import Config

    from declip_mm.miniworld import shipped, tower_cache
    monkeypatch.setattr(tower_cache, 'WORLD_CLIP_CONFIG', world_clip_config(embed_dim=32, depth=1,
                                                                            num_heads=2))
    monkeypatch.setattr(tower_cache, 'WORLD_VFM', world_vfm_spec(embed_dim=32, depth=1, num_heads=2))
    monkeypatch.setattr(shipped, 'SHIPPED_DIR', '/nonexistent')
    quick = E.settings_from_context(type('Ctx', (), dict(args=type('A', (), dict(
        quick=True, threads=1)))))
    assert quick.seeds == (0, ) and quick.declip_epochs == 1
    monkeypatch.setattr(E, 'settings_from_context', lambda ctx: replace(quick, bench_images=2,
                                                                         modes=('qq', )))
    mw = load_tool('miniworld')
    out = str(tmp_path / 'mw')
    mw.main(['--out', out, '--phases', 'world,clip,vfm', '--quick', '--clip-steps', '1',
             '--vfm-steps', '1', '--threads', '1'])
    with pytest.raises(SystemExit, match='declip phase first'):
        mw.main(['--out', out, '--phases', 'region_cls', '--quick', '--threads', '1'])
    res = mw.main(['--out', out, '--phases', 'training_free', '--quick', '--threads', '1'])
    with open(osp.join(out, 'results.json')) as f:
        on_disk = json.load(f)
    assert on_disk['training_free'] == res['training_free']
    assert set(on_disk['training_free']) == {'qq'}
    c = Config.fromfile(on_disk['training_free']['qq']['config'])
    assert c.model.backbone.pretrained == on_disk['towers']['clip']['weights']
    assert c.model.backbone.attn_mode == 'qq'
    assert c.test_dataloader.dataset.data_root == on_disk['world']['paths']['ade_root']
