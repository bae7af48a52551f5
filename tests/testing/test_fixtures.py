import os

import numpy as np
import pytest
from PIL import Image

from declip_mm.testing import BENCHMARK_LAYOUTS

# mmseg's own dataset classes for the benchmarks it ships, with their val-split arguments
MMSEG_SETS = {
    'voc21': ('PascalVOCDataset', dict(data_prefix=dict(img_path='JPEGImages',
                                                        seg_map_path='SegmentationClass'),
                                       ann_file='ImageSets/Segmentation/val.txt')),
    'context60': ('PascalContextDataset', dict(
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
        ann_file='ImageSets/SegmentationContext/val.txt')),
    'context59': ('PascalContextDataset59', dict(
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
        ann_file='ImageSets/SegmentationContext/val.txt')),
    'coco_stuff164k': ('COCOStuffDataset', dict(data_prefix=dict(
        img_path='images/val2017', seg_map_path='annotations/val2017'))),
    'cityscapes': ('CityscapesDataset', dict(data_prefix=dict(
        img_path='leftImg8bit/val', seg_map_path='gtFine/val'))),
    'ade20k': ('ADE20KDataset', dict(data_prefix=dict(
        img_path='images/validation', seg_map_path='annotations/validation'))),
}


@pytest.mark.parametrize('name', sorted(BENCHMARK_LAYOUTS))
def test_fixture_layouts(fixture_data, name):
    root = fixture_data(name, num_images=3)
    lay = BENCHMARK_LAYOUTS[name]
    img_dir = os.path.join(root, lay['img_dir'])
    files = [f for _, _, fs in os.walk(img_dir) for f in fs]
    assert len(files) == 3 and all(f.endswith(lay['img_suffix']) for f in files)
    segs = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, lay['ann_dir']))
            for f in fs]
    assert len(segs) == 3 and all(s.endswith(lay['seg_suffix']) for s in segs)
    for s in segs:
        arr = np.asarray(Image.open(s))
        vals = set(np.unique(arr).tolist()) - {255}
        assert vals and vals <= set(lay['labels'])
    if name in MMSEG_SETS:
        import mmseg.datasets  # noqa: F401
        from mmseg.registry import DATASETS
        typ, kwargs = MMSEG_SETS[name]
        ds = DATASETS.build(dict(type=typ, data_root=root, pipeline=[], **kwargs))
        assert len(ds) == 3
        assert all(os.path.exists(d['seg_map_path']) for d in ds)
