"""Configs of the options beyond the paper (docs/method.md §6): they change only what they say."""
import os.path as osp

from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _load(name):
    return Config.fromfile(osp.join(ROOT, 'configs', 'declip', name + '.py'))


def _without(d, keys):
    return {k: v for k, v in d.items() if k not in keys}


def test_ml3_decouples_three_blocks_and_changes_nothing_else():
    entry, ml3 = _load('declip_vitb_dinov2').model.to_dict(), _load('declip_vitb_dinov2_ml3')
    m = ml3.model.to_dict()
    assert m['student']['decouple_last'] == 3
    assert m['context_block_weights'] == (0.5, 0.5, 1.0)
    assert _without(m['student'], {'decouple_last'}) == entry['student']
    assert _without(m, {'student', 'context_block_weights'}) == _without(entry, {'student'})


def test_dinov2_plus_sam_two_teachers_with_their_own_letterboxes():
    entry, cfg = _load('declip_vitb_dinov2'), _load('declip_vitb_dinov2+sam-b')
    m = cfg.model
    dinov2, sam = m.vfm_teacher
    assert dinov2 == entry.model.vfm_teacher
    assert (sam.arch, sam.precision) == ('sam_vitb', 'fp16')
    assert m.vfm_weights == (1.0, 1.0) and m.vfm_combine == 'loss'
    boxes = {t['key']: t for t in cfg.train_dataloader.dataset.pipeline
             if t['type'] == 'DeCLIPLetterbox'}
    assert boxes['vfm_img']['size'] == 490 and boxes['vfm_img_1']['size'] == 560   # 35 x 35 each
    assert boxes['vfm_img_1']['mean'] == (0.485, 0.456, 0.406)
    assert boxes['student_img'] == _pipeline_box(entry, 'student_img')
    assert _without(m.to_dict(), {'vfm_teacher', 'vfm_weights', 'vfm_combine'}) == \
        _without(entry.model.to_dict(), {'vfm_teacher'})


def _pipeline_box(cfg, key):
    (box, ) = [t for t in cfg.train_dataloader.dataset.pipeline
               if t['type'] == 'DeCLIPLetterbox' and t['key'] == key]
    return box
