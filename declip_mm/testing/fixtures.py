"""Generated fixture datasets in the real folder layouts of the eight benchmarks (docs/method.md §4).

Each image is a few coloured rectangles with a matching label map, so that a model (or a test) can
tell classes apart; labels are drawn from the ids that the benchmark's label files really contain.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

__all__ = ['BENCHMARK_LAYOUTS', 'TRAIN_LAYOUTS', 'write_benchmark_fixture']

# name: data_root, image dir, label dir, image suffix, label suffix, split file, label ids, city subdir
BENCHMARK_LAYOUTS: Dict[str, dict] = {
    'voc21': dict(data_root='VOCdevkit/VOC2012', img_dir='JPEGImages',
                  ann_dir='SegmentationClass', img_suffix='.jpg', seg_suffix='.png',
                  split='ImageSets/Segmentation/val.txt', labels=list(range(21))),
    'voc20': dict(data_root='VOCdevkit/VOC2012', img_dir='JPEGImages',
                  ann_dir='SegmentationClass', img_suffix='.jpg', seg_suffix='.png',
                  split='ImageSets/Segmentation/val.txt', labels=list(range(21))),
    'context60': dict(data_root='VOCdevkit/VOC2010', img_dir='JPEGImages',
                      ann_dir='SegmentationClassContext', img_suffix='.jpg', seg_suffix='.png',
                      split='ImageSets/SegmentationContext/val.txt', labels=list(range(60))),
    'context59': dict(data_root='VOCdevkit/VOC2010', img_dir='JPEGImages',
                      ann_dir='SegmentationClassContext', img_suffix='.jpg', seg_suffix='.png',
                      split='ImageSets/SegmentationContext/val.txt', labels=list(range(60))),
    'coco_stuff164k': dict(data_root='coco_stuff164k', img_dir='images/val2017',
                           ann_dir='annotations/val2017', img_suffix='.jpg',
                           seg_suffix='_labelTrainIds.png', labels=list(range(171))),
    'coco_object': dict(data_root='coco_stuff164k', img_dir='images/val2017',
                        ann_dir='annotations/val2017', img_suffix='.jpg',
                        seg_suffix='_instanceTrainIds.png', labels=list(range(81))),
    'cityscapes': dict(data_root='cityscapes', img_dir='leftImg8bit/val', ann_dir='gtFine/val',
                       img_suffix='_leftImg8bit.png', seg_suffix='_gtFine_labelTrainIds.png',
                       labels=list(range(19)), city='frankfurt'),
    'ade20k': dict(data_root='ade/ADEChallengeData2016', img_dir='images/validation',
                   ann_dir='annotations/validation', img_suffix='.jpg', seg_suffix='.png',
                   labels=list(range(151))),
}

#: training splits (same fields): COCO-Stuff164k train2017 for the CAT-Seg-style head (docs/catseg.md)
TRAIN_LAYOUTS: Dict[str, dict] = {
    'coco_stuff164k_train': dict(data_root='coco_stuff164k', img_dir='images/train2017',
                                 ann_dir='annotations/train2017', img_suffix='.jpg',
                                 seg_suffix='_labelTrainIds.png', labels=list(range(171))),
}


def _stem(name: str, i: int) -> str:
    if name == 'cityscapes':
        return f'frankfurt_{i:06d}_000019'
    if name.startswith('coco'):
        return f'{i + 139:012d}'
    if name.startswith('context'):
        return f'2008_{i:06d}'
    if name.startswith('voc'):
        return f'2007_{i:06d}'
    return f'ADE_val_{i + 1:08d}'


def _draw(rng: np.random.Generator, hw: Tuple[int, int], labels: Sequence[int],
          palette: np.ndarray, ignore_ratio: float) -> Tuple[np.ndarray, np.ndarray]:
    h, w = hw
    k = int(rng.integers(2, 5))
    chosen = rng.choice(np.asarray(labels), size=k, replace=False)
    seg = np.full((h, w), chosen[0], dtype=np.uint8)
    for lab in chosen[1:]:
        y0, x0 = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        y1, x1 = int(rng.integers(y0 + 2, h + 1)), int(rng.integers(x0 + 2, w + 1))
        seg[y0:y1, x0:x1] = lab
    if ignore_ratio > 0:
        seg[rng.random((h, w)) < ignore_ratio] = 255
    img = palette[seg].astype(np.float32) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8), seg


def write_benchmark_fixture(name: str, data_dir: str, num_images: int = 2,
                            sizes: Optional[List[Tuple[int, int]]] = None, seed: int = 0,
                            ignore_ratio: float = 0.02,
                            images: Optional[List[np.ndarray]] = None) -> str:
    """Write a small validation split of benchmark ``name`` under ``data_dir``.

    Args:
        name: a key of :data:`BENCHMARK_LAYOUTS` or :data:`TRAIN_LAYOUTS`.
        data_dir: the ``data/`` folder; the benchmark's own root is created below it.
        num_images: images to write. Defaults to 2.
        sizes: (h, w) per image; defaults alternate 48x64 and 64x40 (landscape and portrait).
        seed: RNG seed.
        ignore_ratio: fraction of pixels labelled 255 (ignored). Defaults to 0.02.
        images: optional RGB uint8 photos to use instead of painted rectangles (labels are then a
            coarse colour quantisation of the photo); resized to ``sizes``.

    Returns:
        str: the benchmark's data root (what a config's ``data_root`` should be).
    """
    layouts = {**BENCHMARK_LAYOUTS, **TRAIN_LAYOUTS}
    if name not in layouts:
        raise KeyError(f'unknown benchmark {name!r}; known: {sorted(layouts)}')
    lay = layouts[name]
    rng = np.random.default_rng(seed)
    root = osp.join(data_dir, lay['data_root'])
    img_dir, ann_dir = osp.join(root, lay['img_dir']), osp.join(root, lay['ann_dir'])
    if 'city' in lay:
        img_dir, ann_dir = osp.join(img_dir, lay['city']), osp.join(ann_dir, lay['city'])
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    sizes = sizes or [((48, 64) if i % 2 == 0 else (64, 40)) for i in range(num_images)]
    palette = rng.integers(0, 256, size=(256, 3)).astype(np.float32)
    labels = lay['labels']
    stems = []
    for i in range(num_images):
        hw = sizes[i % len(sizes)]
        if images is not None:
            photo = np.asarray(Image.fromarray(images[i % len(images)]).convert('RGB').resize(
                (hw[1], hw[0]), Image.BILINEAR))
            bins = (photo.astype(np.int64) // 86)  # 3 levels per channel -> up to 27 regions
            region = bins[..., 0] * 9 + bins[..., 1] * 3 + bins[..., 2]
            lut = rng.choice(np.asarray(labels), size=27, replace=len(labels) < 27)
            img, seg = photo, lut[region].astype(np.uint8)
        else:
            img, seg = _draw(rng, hw, labels, palette, ignore_ratio)
        stem = _stem(name, i)
        stems.append(stem)
        Image.fromarray(img).save(osp.join(img_dir, stem + lay['img_suffix']))
        Image.fromarray(seg).save(osp.join(ann_dir, stem + lay['seg_suffix']))
    if lay.get('split'):
        split = osp.join(root, lay['split'])
        os.makedirs(osp.dirname(split), exist_ok=True)
        with open(split, 'w') as f:
            f.write('\n'.join(stems) + '\n')
    return root
