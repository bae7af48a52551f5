"""CAT-Seg's class names (issue 21 item 3): the CAT-Seg configs train and evaluate with the names of
CAT-Seg's ``datasets/*.json`` (KU-CVLAB/CAT-Seg, embedded by DeCLIP's CAT-Seg branch), not with the
training-free benchmarks' SCLIP-style files whose multi-word names lost their spaces."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from declip_mm.datasets import check_class_names, load_class_names

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
NAMES = osp.join(ROOT, 'configs', 'class_names')

# (index, CAT-Seg name) of every line where CAT-Seg's json differs from the SCLIP-style file
ADE_DIFF = [(44, 'chest of drawers'), (56, 'pool table'), (58, 'screen door'), (64, 'coffee table'),
            (73, 'kitchen island'), (75, 'swivel chair'), (78, 'arcade machine'),
            (89, 'television receiver'), (91, 'dirt track'), (105, 'conveyer belt'),
            (109, 'swimming pool'), (123, 'trade name'), (136, 'traffic light'), (141, 'crt screen'),
            (144, 'bulletin board')]
COCO_DIFF = [(9, 'traffic light'), (10, 'fire hydrant'), (11, 'stop sign'), (12, 'parking meter'),
             (32, 'sports ball'), (34, 'baseball bat'), (35, 'baseball glove'), (38, 'tennis racket'),
             (40, 'wine glass'), (52, 'hot dog'), (58, 'potted plant'), (60, 'dining table'),
             (67, 'cell phone'), (77, 'teddy bear'), (78, 'hair drier')]
PC59_DIFF = [(49, 'diningtable')]
CITY_DIFF = [(6, 'traffic light'), (7, 'traffic sign')]

# file, SCLIP-style file, count, differing lines, a few entries equal in both, mmseg dataset class
FILES = {
    'catseg_ade150': ('ade20k', 150, ADE_DIFF, {0: 'wall', 7: 'bed', 149: 'flag'}, 'ADE20KDataset'),
    'catseg_coco_stuff171': ('coco_stuff164k', 171, COCO_DIFF,
                             {0: 'person', 79: 'toothbrush', 170: 'wood'}, 'COCOStuffDataset'),
    'catseg_context59': ('context59', 59, PC59_DIFF, {0: 'aeroplane', 39: 'pottedplant',
                                                      54: 'tvmonitor', 58: 'wood'},
                         'PascalContextDataset59'),
    'catseg_cityscapes': ('cityscapes', 19, CITY_DIFF, {0: 'road', 18: 'bicycle'},
                          'CityscapesDataset'),
}


def _lines(name):
    return [g[0] if len(g) == 1 else g for g in load_class_names(osp.join(NAMES, f'{name}.txt'))]


@pytest.mark.parametrize('name', sorted(FILES))
def test_catseg_name_files(name):
    import mmseg.datasets as mmseg_datasets
    sclip, count, diff, known, dataset = FILES[name]
    names, old = _lines(name), _lines(sclip)
    assert len(names) == count == len(old)
    assert all(isinstance(n, str) for n in names)  # one name per class, no synonyms
    got_diff = [(i, n) for i, (n, o) in enumerate(zip(names, old)) if n != o]
    assert got_diff == diff
    for i, n in diff:  # the SCLIP-style file is the same name without spaces (Context59: 'table')
        assert old[i] == ('table' if name == 'catseg_context59' else n.replace(' ', ''))
    for i, n in known.items():
        assert names[i] == n
    classes = getattr(mmseg_datasets, dataset).METAINFO['classes']
    check_class_names(names, classes, name)  # the dataset's class order
    with pytest.raises(ValueError, match='class order'):
        check_class_names(names[1:] + names[:1], classes, name)


CONFIG_FILES = {'ade20k': 'catseg_ade150', 'coco-stuff164k': 'catseg_coco_stuff171',
                'context59': 'catseg_context59', 'cityscapes': 'catseg_cityscapes'}


def test_catseg_configs_use_the_catseg_names():
    paths = sorted(glob.glob(osp.join(ROOT, 'configs', 'catseg', '*.py')))
    assert len(paths) == 12
    for path in paths:
        (key, ) = [k for k in CONFIG_FILES if f'_{k}-' in osp.basename(path)]
        cfg = Config.fromfile(path)
        assert osp.normpath(cfg.model.class_names) == osp.join(NAMES, f'{CONFIG_FILES[key]}.txt'), path
