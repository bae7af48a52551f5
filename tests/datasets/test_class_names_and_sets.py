import os.path as osp

import numpy as np
import pytest
from PIL import Image

from declip_mm.datasets import check_class_names, load_class_names

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLASS_FILES = {
    'voc21': 'PascalVOCDataset', 'voc20': 'DeCLIPPascalVOC20Dataset',
    'context60': 'DeCLIPPascalContext60Dataset', 'context59': 'DeCLIPPascalContext59Dataset',
    'coco_object': 'DeCLIPCOCOObjectDataset', 'coco_stuff164k': 'COCOStuffDataset',
    'cityscapes': 'CityscapesDataset', 'ade20k': 'ADE20KDataset',
}


@pytest.mark.parametrize('name', sorted(CLASS_FILES))
def test_shipped_class_files_follow_dataset_order(name):
    from mmseg.registry import DATASETS
    names = load_class_names(osp.join(ROOT, 'configs', 'class_names', f'{name}.txt'))
    classes = DATASETS.get(CLASS_FILES[name]).METAINFO['classes']
    check_class_names(names, classes, name)
    # a swapped pair is caught
    swapped = list(names)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    with pytest.raises(ValueError, match='class order'):
        check_class_names(swapped, classes, name)
    with pytest.raises(ValueError, match='classes but the dataset has'):
        check_class_names(names[:-1], classes, name)



@pytest.mark.parametrize('a, b', [('table', 'pool table'), ('light', 'traffic light'),
                                  ('screen', 'crt screen')])
def test_near_duplicate_swaps_are_refused(a, b):
    """Issue 14.6: a name contained in another one (table / pool table) in swapped positions."""
    from mmseg.registry import DATASETS
    classes = DATASETS.get('ADE20KDataset').METAINFO['classes']
    names = load_class_names(osp.join(ROOT, 'configs', 'class_names', 'ade20k.txt'))
    i, j = classes.index(a), classes.index(b)
    swapped = list(names)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    with pytest.raises(ValueError, match=rf"\(2 mismatch\(es\)\).*dataset '{a}'"):
        check_class_names(swapped, classes, 'ade20k')
    # exact names still pass in any case / spacing, and via the line's synonyms
    ok = [[c] for c in classes]
    ok[i], ok[j] = [a.upper()], [b.replace(' ', '') + 's', b.replace(' ', '-')]
    check_class_names(ok, classes, 'ade20k')


def test_renames_are_explicit():
    """Only the listed renames stand in for a class (VOC 'table' / 'ship'); no containment."""
    from declip_mm.datasets.class_names import CLASS_NAME_ALIASES
    voc = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
           'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
           'sheep', 'sofa', 'train', 'tvmonitor')
    names = [[c] for c in voc]
    names[4], names[11] = ['ship'], ['table']
    check_class_names(names, voc)
    assert CLASS_NAME_ALIASES['diningtable'] == ('table', )
    names[20] = ['monitor']  # contained in 'tvmonitor' but not a listed rename
    with pytest.raises(ValueError, match="line 21: dataset 'tvmonitor' vs file 'monitor'"):
        check_class_names(names, voc)

def test_file_format(tmp_path):
    f = tmp_path / 'c.txt'
    f.write_text('# comment\nsky; clouds\n\ncat;kitten ; \nroad\n')
    assert load_class_names(str(f)) == [['sky', 'clouds'], ['cat', 'kitten'], ['road']]
    assert load_class_names(str(f), separator=',') == [['sky; clouds'], ['cat;kitten ;'], ['road']]
    assert load_class_names(['a', ['b', 'c']]) == [['a'], ['b', 'c']]


def _label(ds, i=0):
    from mmseg.datasets.transforms import LoadAnnotations
    info = ds.get_data_info(i)
    return LoadAnnotations()(dict(info, seg_fields=[]))['gt_seg_map'], info['seg_map_path']


def test_reduce_zero_label_semantics(fixture_data):
    from mmseg.registry import DATASETS
    root = fixture_data('voc20', num_images=1)
    ds = DATASETS.build(dict(type='DeCLIPPascalVOC20Dataset', data_root=root, pipeline=[],
                             data_prefix=dict(img_path='JPEGImages',
                                              seg_map_path='SegmentationClass')))
    gt, path = _label(ds)
    raw = np.asarray(Image.open(path)).astype(np.int64)
    expect = np.where(raw == 0, 255, np.where(raw == 255, 255, raw - 1))
    assert np.array_equal(gt, expect)
    assert len(ds.metainfo['classes']) == 20
    root = fixture_data('coco_object', num_images=1)
    ds = DATASETS.build(dict(type='DeCLIPCOCOObjectDataset', data_root=root, pipeline=[],
                             data_prefix=dict(img_path='images/val2017',
                                              seg_map_path='annotations/val2017')))
    gt, path = _label(ds)
    assert np.array_equal(gt, np.asarray(Image.open(path)))  # no reduction: 0 is background
    assert ds.metainfo['classes'][0] == 'background' and len(ds.metainfo['classes']) == 81


def test_missing_split_file(tmp_path):
    from mmseg.registry import DATASETS
    (tmp_path / 'JPEGImages').mkdir()
    with pytest.raises((FileNotFoundError, AssertionError)):
        DATASETS.build(dict(type='DeCLIPPascalContext59Dataset', data_root=str(tmp_path),
                            pipeline=[], data_prefix=dict(img_path='JPEGImages',
                                                          seg_map_path='SegmentationClassContext')))
