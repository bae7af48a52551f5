import json
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from region_cls_helpers import pipeline, write_fixture

from declip_mm.datasets.panoptic_regions import rgb_to_id
from declip_mm.datasets.transforms import CLIP_MEAN, CLIP_STD, letterbox
from declip_mm.registry import DATASETS


def _dataset(root, pipe=None):
    return DATASETS.build(dict(type='COCOPanopticRegionDataset', data_root=root,
                               pipeline=pipe if pipe is not None else pipeline()))


def _norm(img):
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0
    return (t - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)


def test_fixture_is_in_the_real_layout(tmp_path):
    root = write_fixture(tmp_path)
    js = json.load(open(osp.join(root, 'annotations', 'panoptic_val2017.json')))
    png = np.asarray(Image.open(osp.join(root, 'annotations', 'panoptic_val2017',
                                         '000000000139.png')))
    ids = rgb_to_id(png)
    assert ids.max() > 65535 and png[..., 2].max() > 0   # the B channel is used
    for s in js['annotations'][0]['segments_info']:
        ys, xs = np.where(ids == s['id'])
        assert s['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert osp.isfile(osp.join(root, 'val2017', '000000000139.jpg'))


def test_regions_follow_the_official_rules(tmp_path):
    root = write_fixture(tmp_path)
    ds = _dataset(root)
    assert ds.metainfo['classes'] == ('person', 'car', 'dog', 'bottle', 'floor-wood', 'road',
                                      'sky-other-merged')
    assert ds.metainfo['is_thing'] == (True,) * 4 + (False,) * 3
    s = ds[0]
    smp, inp = s['data_samples'], s['inputs']
    # 7 segments: the 5x5 bottle (25 < 64) and the 8x8 floor-wood (stuff box 7x7 = 49) are dropped,
    # the 8x8 bottle (thing box 8x8 = 64) is kept
    assert smp.labels.tolist() == [6, 5, 0, 1, 3]
    assert smp.is_thing.tolist() == [False, False, True, True, True]
    # boxes in token units (64 px letterbox, patch 8, scale 1): things = GT box, stuff = mask2box
    exp = torch.tensor([[0, 0, 63, 31], [0, 32, 63, 63], [8, 8, 24, 24], [40, 40, 56, 56],
                        [32, 16, 40, 24]], dtype=torch.float32) / 8
    assert torch.equal(inp['boxes'], exp)
    # masks at the 8x8 grid: the aligned person block is tokens rows/cols 1-2
    person = torch.zeros(8, 8, dtype=torch.bool)
    person[1:3, 1:3] = True
    assert torch.equal(inp['masks'][2], person)
    # the person crop: 1.5x box (4, 4, 28, 28) of the original image, letterboxed to 32
    img = np.asarray(Image.open(osp.join(root, 'val2017', '000000000139.jpg')).convert('RGB'))
    ref, _ = letterbox(img[4:28, 4:28], 32, centre=True)
    assert torch.equal(inp['crops'][2], _norm(ref))
    # a stuff crop is its mask2box (inclusive maxima, as PIL crops it: rows 0-30, cols 0-62)
    ref, _ = letterbox(img[0:31, 0:63], 32, centre=True)
    assert torch.equal(inp['crops'][0], _norm(ref))


def test_non_square_image_letterbox_boxes_and_mask_resize(tmp_path):
    """48x64 image, 96 letterbox, patch 8 (12 x 12 tokens): boxes x 1.5 / 8; the mask is resized
    bicubic without antialias to round(48 * 12 / 64) x 12 = 9 x 12, zero-padded to 12 x 12 at the
    bottom, thresholded at > 0."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    from declip_mm.testing import write_panoptic_fixture
    images = [dict(size=(48, 64), segments=[(187, (0, 0, 64, 48)), (3, (10, 7, 31, 30))])]
    root = write_panoptic_fixture(str(tmp_path), images=images)
    s = _dataset(root, pipeline(size=96, patch=8, crop=32))[0]
    assert torch.allclose(s['inputs']['boxes'][1], torch.tensor([10, 7, 31, 30]) * 1.5 / 8.0)
    png = np.asarray(Image.open(osp.join(root, 'annotations', 'panoptic_val2017',
                                         '000000000139.png')))
    seg_id = int(s['data_samples'].seg_ids[1])
    m = torch.from_numpy(rgb_to_id(png) == seg_id).float()[None]
    # the official op: torchvision's tensor resize with antialias=None (= no antialias) then pad
    r = TF.resize(m, [9, 12], InterpolationMode.BICUBIC, antialias=False)
    ref = F.pad(r, (0, 0, 0, 3))[0] > 0
    assert ref.sum() > 0 and torch.equal(s['inputs']['masks'][1], ref)
    assert s['inputs']['img'].shape == (3, 96, 96)


def test_bad_inputs_give_clear_errors(tmp_path):
    root = write_fixture(tmp_path)
    with pytest.raises(FileNotFoundError, match='panoptic annotation file'):
        _dataset(str(tmp_path / 'nowhere'))
    ann = osp.join(root, 'annotations', 'panoptic_val2017.json')
    js = json.load(open(ann))
    js['annotations'][0]['segments_info'][2]['id'] = 123456   # not in the PNG
    json.dump(js, open(ann, 'w'))
    ds = _dataset(root)
    with pytest.raises(ValueError, match='segment id 123456 of image 139 is absent from its '
                                         'panoptic PNG'):
        ds[0]
    png1 = osp.join(root, 'annotations', 'panoptic_val2017', '000000000140.png')
    Image.open(png1).resize((32, 32), Image.NEAREST).save(png1)
    with pytest.raises(ValueError, match=r'panoptic PNG .*000000000140.png is \(32, 32\) but the '
                                         r'image is \(64, 64\)'):
        ds[1]
    shutil.rmtree(osp.join(root, 'annotations', 'panoptic_val2017'))
    with pytest.raises(FileNotFoundError, match='panoptic PNG folder .* not found .*unzip'):
        _dataset(root)
    with pytest.raises(ValueError, match='multiple of patch_size'):
        DATASETS.build(dict(type='COCOPanopticRegionDataset', data_root=root,
                            data_prefix=dict(img='val2017/', seg='val2017/'),
                            pipeline=pipeline(size=60, patch=8)))
