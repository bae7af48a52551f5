"""write_world (declip_mm/miniworld/layouts.py): every layout loads through the project's real dataset
classes and holds what the generator rendered (docs/miniworld.md)."""
from __future__ import annotations

import csv
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

import declip_mm.miniworld.dataset  # noqa: F401  (registers MiniWorldDataset)
from declip_mm.datasets.class_names import check_class_names, load_class_names
from declip_mm.datasets.panoptic_regions import rgb_to_id
from declip_mm.miniworld import (
    ALL_CLASSES,
    CLASS_INDEX,
    STUFF_CLASSES,
    THING_CLASSES,
    render_scene,
    write_world,
)
from declip_mm.miniworld.layouts import DEFAULT_UNSEEN, scene_seed
from declip_mm.registry import DATASETS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
COUNTS = dict(n_caption=6, n_unlabeled=5, n_bench=8, n_catseg_train=12)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    return write_world(str(tmp_path_factory.mktemp('world')), 3, **COUNTS)


def _close(jpg_path, image):
    """A JPEG (quality 95) decodes close to the rendered image."""
    got = np.asarray(Image.open(jpg_path).convert('RGB')).astype(np.float64)
    assert got.shape == image.shape
    assert np.abs(got - image).mean() < 4.0


def test_benchmark_loads_through_mmseg(world):
    ds = DATASETS.build(dict(
        type='MiniWorldDataset', data_root=world['ade_root'],
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]))
    assert len(ds) == COUNTS['n_bench'] and ds.metainfo['classes'] == ALL_CLASSES
    assert ds.reduce_zero_label
    for i in range(len(ds)):
        scene = render_scene(scene_seed(3, 'bench', i))
        s = ds[i]
        assert osp.basename(s['img_path']) == f'ADE_val_{i + 1:08d}.jpg'
        np.testing.assert_array_equal(s['gt_seg_map'], scene.label)   # PNG k + 1 -> class k
        _close(s['img_path'], scene.image)
    # the raw PNGs follow ADE's convention: 0 never written, class k stored as k + 1
    raw = np.asarray(Image.open(osp.join(world['bench_annotations'], 'ADE_val_00000001.png')))
    assert raw.min() >= 1 and raw.max() <= len(ALL_CLASSES)


def test_class_name_files(world):
    shipped = osp.join(REPO, 'configs', 'class_names', 'miniworld.txt')
    for path in (shipped, world['class_names']):
        names = load_class_names(path)
        assert [n[0] for n in names] == list(ALL_CLASSES)
        check_class_names(names, ALL_CLASSES, path)
    seen = load_class_names(world['seen_class_names'])
    assert [n[0] for n in seen] == [c for c in ALL_CLASSES if c not in DEFAULT_UNSEEN]


def test_training_free_config_builds_the_benchmark(world):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'miniworld',
                                   'declip_tiny-clip_training-free_miniworld-64.py'))
    assert 'declip_mm.miniworld.dataset' in cfg.custom_imports['imports']
    assert osp.samefile(cfg.model.class_names, osp.join(REPO, 'configs/class_names/miniworld.txt'))
    ds_cfg = cfg.test_dataloader.dataset.copy()
    ds_cfg['data_root'] = world['ade_root']
    ds = DATASETS.build(ds_cfg)
    check_class_names(load_class_names(cfg.model.class_names), ds.metainfo['classes'],
                      cfg.model.class_names)
    s = ds[0]
    assert tuple(s['inputs'].shape) == (3, 64, 64)
    np.testing.assert_array_equal(s['data_samples'].gt_sem_seg.data[0].numpy(),
                                  render_scene(scene_seed(3, 'bench', 0)).label)


def test_catseg_training_split_never_holds_unseen_classes(world):
    seen = world['seen_classes']
    assert set(seen) | set(world['unseen_classes']) == set(ALL_CLASSES)
    ann = world['catseg_annotations']
    files = sorted(os.listdir(ann))
    assert len(files) == COUNTS['n_catseg_train']
    held = {CLASS_INDEX[c] + 1 for c in world['unseen_classes']}
    stored = set()
    for f in files:
        stored |= set(np.unique(np.asarray(Image.open(osp.join(ann, f)))).tolist())
    assert not stored & held
    assert len(stored) >= 8          # the seen classes do appear
    # loaded with the seen classes only: mmseg re-indexes labels into the seen list
    ds = DATASETS.build(dict(
        type='MiniWorldDataset', data_root=world['ade_root'], metainfo=dict(classes=seen),
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]))
    assert ds.metainfo['classes'] == tuple(seen)
    lut = np.array([seen.index(c) if c in seen else 255 for c in ALL_CLASSES])
    for i in (0, 5):
        scene = render_scene(scene_seed(3, 'catseg_train', i), classes=seen)
        np.testing.assert_array_equal(ds[i]['gt_seg_map'], lut[scene.label])


def test_panoptic_regions_load(world):
    ds = DATASETS.build(dict(
        type='COCOPanopticRegionDataset', data_root=world['coco_root'],
        pipeline=[dict(type='LoadPanopticRegions', image_size=64, patch_size=8, crop_size=32,
                       min_size=1),
                  dict(type='DeCLIPLetterbox', size=64, key='img_tensor'),
                  dict(type='PackRegionInputs')]))
    assert ds.metainfo['classes'] == ALL_CLASSES
    assert ds.metainfo['is_thing'] == (True, ) * len(THING_CLASSES) + (False, ) * len(STUFF_CLASSES)
    assert len(ds) == COUNTS['n_bench']
    js = json.load(open(world['panoptic_json']))
    for i in range(len(ds)):
        scene = render_scene(scene_seed(3, 'bench', i))
        smp = ds[i]['data_samples']
        expect = [CLASS_INDEX[n] for n, _ in scene.objects] + sorted(
            CLASS_INDEX[c] for c in STUFF_CLASSES if c in scene.present)
        assert smp.labels.tolist() == expect
        ids = rgb_to_id(np.asarray(Image.open(osp.join(world['panoptic_pngs'],
                                                       f'{i + 1:012d}.png'))))
        info = js['annotations'][i]['segments_info']
        for seg, (name, mask) in zip(info, scene.objects):       # things: one segment each
            assert seg['category_id'] == CLASS_INDEX[name] + 1
            np.testing.assert_array_equal(ids == seg['id'], mask)
            ys, xs = np.nonzero(mask)
            assert seg['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                   ys.max() - ys.min() + 1]
        for seg in info[len(scene.objects):]:                     # stuff: all its pixels
            np.testing.assert_array_equal(ids == seg['id'], scene.label == seg['category_id'] - 1)
        assert (ids > 0).all()


def test_unlabeled_images_load(world):
    ds = DATASETS.build(dict(type='UnlabeledImageDataset', data_root=world['coco_root'],
                             img_dir='train2017', ann_file=None, pipeline=[]))
    assert len(ds) == COUNTS['n_unlabeled']
    for i in range(len(ds)):
        assert osp.basename(ds[i]['img_path']) == f'{i + 1:012d}.jpg'
        _close(ds[i]['img_path'], render_scene(scene_seed(3, 'unlabeled', i)).image)


def test_caption_pairs(world):
    with open(world['pairs_csv'], newline='') as f:   # as open_clip's CsvDataset reads it (sep '\t')
        rows = list(csv.DictReader(f, delimiter='\t'))
    lines = [json.loads(x) for x in open(world['pairs_jsonl'])]
    assert len(rows) == len(lines) == COUNTS['n_caption']
    for i, (row, line) in enumerate(zip(rows, lines)):
        scene = render_scene(scene_seed(3, 'pairs', i))
        assert row['title'] == line['caption'] == scene.caption
        assert osp.isabs(row['filepath'])
        assert osp.samefile(row['filepath'], osp.join(osp.dirname(world['pairs_jsonl']),
                                                      line['file']))
        _close(row['filepath'], scene.image)


def test_world_is_deterministic_and_checked(world, tmp_path):
    again = write_world(str(tmp_path / 'again'), 3, **COUNTS)
    for key in ('bench_annotations', 'panoptic_pngs', 'catseg_annotations', 'unlabeled_dir'):
        for f in sorted(os.listdir(world[key])):
            assert open(osp.join(world[key], f), 'rb').read() == \
                open(osp.join(again[key], f), 'rb').read(), (key, f)
    assert open(world['pairs_jsonl']).read() == open(again['pairs_jsonl']).read()
    manifest = json.load(open(world['manifest']))
    assert manifest['world_seed'] == 3 and manifest['unseen_classes'] == list(DEFAULT_UNSEEN)
    other = write_world(str(tmp_path / 'other'), 4, n_caption=1, n_unlabeled=0, n_bench=1,
                        n_catseg_train=0)
    assert open(osp.join(world['bench_annotations'], 'ADE_val_00000001.png'), 'rb').read() != \
        open(osp.join(other['bench_annotations'], 'ADE_val_00000001.png'), 'rb').read()
    with pytest.raises(ValueError, match='stuff'):
        write_world(str(tmp_path / 'bad'), 0, unseen_classes=STUFF_CLASSES, n_caption=0)
    with pytest.raises(ValueError, match='not miniworld classes'):
        write_world(str(tmp_path / 'bad'), 0, unseen_classes=('unicorn', ), n_caption=0)


def test_tools_test_runs_the_world_config(tmp_path):
    """tools/test.py evaluates the world's training-free config end to end (tiny random towers)."""
    from tf_helpers import load_tool, tiny_options
    root = write_world(str(tmp_path / 'world'), 0, n_caption=0, n_unlabeled=0, n_bench=2,
                       n_catseg_train=0)
    metrics = load_tool('test').main([
        osp.join(REPO, 'configs', 'miniworld', 'declip_tiny-clip_training-free_miniworld-64.py'),
        '--work-dir', str(tmp_path / 'wd'), '--cfg-options', *tiny_options(tmp_path),
        f'test_dataloader.dataset.data_root={root["ade_root"]}'])
    assert 0.0 <= metrics['mIoU'] <= 100.0 and 'aAcc' in metrics
