import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from declip_mm.datasets import (
    GRID_LAYOUTS,
    DeCLIPGridCrops,
    DeCLIPLetterbox,
    LoadImageOrSkip,
    UnlabeledImageDataset,
    iter_coco_image_files,
)
from declip_mm.datasets.transforms import CLIP_MEAN, CLIP_STD, grid_cells


def test_the_24_layouts():
    expect = {(m, n) for m in range(1, 7) for n in range(1, 7) if math.ceil(m / 2) <= n <= min(2 * m, 6)}
    assert set(GRID_LAYOUTS) == expect and len(GRID_LAYOUTS) == 24


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_grid_sampler_layouts_counts_and_units():
    t = DeCLIPGridCrops(crop_size=32, max_crops=20, student_size=560, student_patch=16, seed=7)
    seen = set()
    img = _img(90, 150)
    for idx in range(300):
        out = t.transform(dict(img=img, sample_idx=idx, epoch=0))
        rows, cols = out['grid_layout']
        seen.add((rows, cols))
        k = out['crops'].shape[0]
        assert k == min(rows * cols, 20) and out['crop_boxes'].shape == (k, 4)
        assert out['crops'].shape[1:] == (3, 32, 32)
        # boxes are cells of the image extent, in student tokens: 560 / 150 / 16 per pixel
        scale = 560 / 150 / 16
        cells = torch.from_numpy(grid_cells(90, 150, rows, cols) * scale).float()
        for b in out['crop_boxes']:
            assert any(torch.allclose(b, c, atol=1e-5) for c in cells)
        assert out['crop_boxes'][:, 2].max() <= 150 * scale + 1e-4
        assert out['crop_boxes'][:, 3].max() <= 90 * scale + 1e-4
    assert seen == set(GRID_LAYOUTS)  # every layout is drawn, nothing else


def test_grid_sampler_is_seeded_per_image_and_epoch():
    t = DeCLIPGridCrops(crop_size=32, seed=3)
    img = _img(60, 80)
    a = t.transform(dict(img=img, sample_idx=5, epoch=1))
    b = t.transform(dict(img=img, sample_idx=5, epoch=1))
    assert torch.equal(a['crop_boxes'], b['crop_boxes']) and torch.equal(a['crops'], b['crops'])
    layouts = {t.transform(dict(img=img, sample_idx=5, epoch=e))['grid_layout'] for e in range(20)}
    assert len(layouts) > 3


def test_teacher_crop_is_centred_letterbox_of_the_cell():
    t = DeCLIPGridCrops(crop_size=32, layouts=[(1, 2)], seed=0)
    img = _img(40, 100)
    out = t.transform(dict(img=img, sample_idx=0, epoch=0))
    order = [0, 1] if out['crop_boxes'][0, 0] == 0 else [1, 0]
    left = out['crops'][order[0]]
    # the left cell is 40x50 -> 26x32 after resizing (longest side 32), centred: 3 rows pad on top
    cell = Image.fromarray(img[:, :50]).resize((32, 26), Image.BICUBIC)
    expect = np.zeros((32, 32, 3), np.uint8)
    expect[3:29] = np.asarray(cell)
    ref = (torch.from_numpy(expect).permute(2, 0, 1).float() / 255
           - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    assert torch.allclose(left, ref, atol=1e-6)


def test_letterbox_bottom_right():
    t = DeCLIPLetterbox(size=64, key='student_img')
    out = t.transform(dict(img=np.full((30, 60, 3), 255, np.uint8)))
    x = out['student_img']
    assert x.shape == (3, 64, 64) and out['student_img_valid_hw'] == (32, 64)
    white = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    black = -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD)
    assert torch.allclose(x[:, :32, :].mean((1, 2)), white, atol=1e-5)
    assert torch.allclose(x[:, 32:, :].mean((1, 2)), black, atol=1e-5)


def test_corrupt_image_is_skipped(tmp_path):
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'\x00garbage')
    with pytest.warns(UserWarning, match='skipping unreadable image'):
        assert LoadImageOrSkip().transform(dict(img_path=str(bad))) is None
    Image.fromarray(_img(20, 30)).convert('L').save(tmp_path / 'gray.png')
    out = LoadImageOrSkip().transform(dict(img_path=str(tmp_path / 'gray.png')))
    assert out['img'].shape == (20, 30, 3)


def test_unlabeled_dataset_folder_and_coco_list(tmp_path):
    img_dir = tmp_path / 'train2017'
    img_dir.mkdir()
    for i in range(5):
        Image.fromarray(_img(20, 30, i)).save(img_dir / f'{i:012d}.jpg')
    (img_dir / 'notes.txt').write_text('x')
    ds = UnlabeledImageDataset(data_root=str(tmp_path), img_dir='train2017', pipeline=[])
    assert len(ds) == 5 and ds[0]['img_path'].endswith('000000000000.jpg')
    assert ds.get_data_info(0)['epoch'] == 0
    ann = {'info': {'images': 'decoy', 'x': [1]}, 'images': [{'id': i, 'file_name': f'{i:012d}.jpg',
                                                    'height': 20} for i in (3, 1)],
           'annotations': [{'segmentation': [[1, 2] * 500]}] * 50}
    ann_file = tmp_path / 'instances.json'
    ann_file.write_text(json.dumps(ann, indent=1))
    assert list(iter_coco_image_files(str(ann_file), chunk_size=64)) == ['000000000003.jpg',
                                                                          '000000000001.jpg']
    ds = UnlabeledImageDataset(data_root=str(tmp_path), img_dir='train2017',
                               ann_file='instances.json', pipeline=[])
    assert [d['img_path'][-16:] for d in ds] == ['000000000003.jpg', '000000000001.jpg']
    with pytest.raises(FileNotFoundError, match='image folder not found'):
        UnlabeledImageDataset(data_root=str(tmp_path), img_dir='nope', pipeline=[]).full_init()
