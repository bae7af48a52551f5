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
