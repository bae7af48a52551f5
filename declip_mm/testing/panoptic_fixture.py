"""A generated COCO-panoptic split in mmdet's layout, for region-classification tests and timings.

Written like the real ``panoptic_val2017``: segment ids RGB-encoded in the PNGs
(``id = R + 256 G + 256² B``, ids large enough to use all three channels), the json's ``bbox`` of a
segment is the tight pixel extent of its mask ``[x, y, w, h]`` (as COCO's), categories keep COCO's
non-contiguous ids and ``isthing`` flags.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

__all__ = ['PANOPTIC_FIXTURE_CATEGORIES', 'default_panoptic_images', 'write_panoptic_fixture',
           'id_to_rgb']

#: a few real COCO-panoptic categories (id, name, isthing); 'dog' never appears in the defaults
PANOPTIC_FIXTURE_CATEGORIES: Tuple[Tuple[int, str, int], ...] = (
    (1, 'person', 1), (3, 'car', 1), (18, 'dog', 1), (44, 'bottle', 1),
    (118, 'floor-wood', 0), (149, 'road', 0), (187, 'sky-other-merged', 0))

Rect = Tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), painted in order


def default_panoptic_images(size: Tuple[int, int] = (48, 64), num_images: int = 2,
                            regions: int = 5) -> List[dict]:
    """A layout per image: sky over road, then ``regions - 2`` objects (one of them 5x5 px, which the
    8² size filter drops when the image is small), cycling person / car / bottle / floor-wood."""
    h, w = size
    cats = (1, 3, 44, 118)
    out = []
    for i in range(num_images):
        segs = [(187, (0, 0, w, h // 2)), (149, (0, h // 2, w, h))]
        for k in range(max(regions - 2, 0)):
            if k == 0:
                segs.append((cats[(i + k) % 4], (1, 1, 6, 6)))  # 5x5: below 8x8
                continue
            bw, bh = max(w // 4, 4), max(h // 3, 4)
            x0 = (k * (w // max(regions - 2, 1)) + i * 3) % max(w - bw, 1)
            y0 = (k * 7 + i * 5) % max(h - bh, 1)
            segs.append((cats[(i + k) % 4], (x0, y0, x0 + bw, y0 + bh)))
        out.append(dict(size=(h, w), segments=segs))
    return out


def id_to_rgb(seg_id: int) -> Tuple[int, int, int]:
    return seg_id % 256, (seg_id // 256) % 256, (seg_id // 65536) % 256


def write_panoptic_fixture(data_dir: str, images: Optional[Sequence[dict]] = None,
                           categories: Sequence[Tuple[int, str, int]] = PANOPTIC_FIXTURE_CATEGORIES,
                           seed: int = 0, split: str = 'val2017',
                           palette: Optional[Dict[int, Sequence[int]]] = None,
                           noise: float = 8.0) -> str:
    """Write ``coco/`` below ``data_dir``: ``annotations/panoptic_{split}.json``, the PNG folder and
    the images.

    Args:
        data_dir: the ``data/`` folder.
        images: one dict per image, ``size`` (h, w) and ``segments``: ``(category_id, (x0, y0, x1,
            y1))`` rectangles painted in order (later ones cover earlier ones; a segment whose
            rectangle ends up fully covered is left out of the json). Defaults to
            :func:`default_panoptic_images`.
        categories: (id, name, isthing) of the json.
        seed: RNG seed of the colours and the pixel noise.
        split: split name.
        palette: RGB colour per category id (default: random colours).
        noise: std of the Gaussian pixel noise. Defaults to 8.

    Returns:
        str: the data root (``data_dir/coco``).
    """
    images = list(images) if images is not None else default_panoptic_images()
    rng = np.random.default_rng(seed)
    root = osp.join(data_dir, 'coco')
    img_dir, ann_dir = osp.join(root, split), osp.join(root, 'annotations')
    png_dir = osp.join(ann_dir, f'panoptic_{split}')
    for d in (img_dir, png_dir):
        os.makedirs(d, exist_ok=True)
    known = {c[0] for c in categories}
    colours: Dict[int, np.ndarray] = {c[0]: rng.integers(0, 256, 3).astype(np.float32)
                                      for c in categories}
    colours.update({k: np.asarray(v, dtype=np.float32) for k, v in (palette or {}).items()})
    js_images, js_anns = [], []
    for i, spec in enumerate(images):
        h, w = spec['size']
        img_id = 139 + i
        stem = f'{img_id:012d}'
        ids = np.zeros((h, w), dtype=np.int64)
        cat_of: Dict[int, int] = {}
        for k, (cat, (x0, y0, x1, y1)) in enumerate(spec['segments']):
            if cat not in known:
                raise ValueError(f'category {cat} is not in the fixture categories')
            seg_id = 70000 + 1000 * i + 37 * k + 1  # > 65535: the B channel is used too
            ids[y0:y1, x0:x1] = seg_id
            cat_of[seg_id] = cat
        img = np.zeros((h, w, 3), dtype=np.float32)
        segments = []
        for seg_id, cat in cat_of.items():
            m = ids == seg_id
            if not m.any():
                continue
            ys, xs = np.where(m)
            img[m] = colours[cat]
            segments.append(dict(id=int(seg_id), category_id=int(cat), iscrowd=0,
                                 area=int(m.sum()),
                                 bbox=[int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                       int(ys.max() - ys.min() + 1)]))
        rgb = np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], -1).astype(np.uint8)
        Image.fromarray(rgb).save(osp.join(png_dir, stem + '.png'))
        img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(osp.join(img_dir, stem + '.jpg'), quality=95)
        js_images.append(dict(id=img_id, file_name=stem + '.jpg', height=h, width=w))
        js_anns.append(dict(image_id=img_id, file_name=stem + '.png', segments_info=segments))
    js = dict(images=js_images, annotations=js_anns,
              categories=[dict(id=c, name=n, isthing=t, supercategory='fixture')
                          for c, n, t in categories])
    with open(osp.join(ann_dir, f'panoptic_{split}.json'), 'w') as f:
        json.dump(js, f)
    return root
