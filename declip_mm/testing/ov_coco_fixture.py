"""A generated OV-COCO detection fixture in mmdet's COCO layout (the F-ViT / OVR-CNN file names).

Layout under ``data_root`` (as ``data/coco/`` of the real data)::

    train2017/000000000001.jpg ...                      images
    val2017/000000100001.jpg ...
    zero-shot/instances_train2017_seen_2_65_cat.json    65 categories, annotations of base classes only
    zero-shot/instances_val2017_all_2.json              65 categories, base and novel annotations

Every image holds a few flat-coloured rectangles, one per annotation, with COCO's real category ids;
the colour is a function of the class so that a model could learn it.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from ..datasets.ov_coco_classes import (
    COCO_CATEGORY_IDS,
    OV_COCO_BASE_CLASSES,
    OV_COCO_CLASSES,
    OV_COCO_NOVEL_CLASSES,
)

__all__ = ['write_ov_coco_fixture', 'OV_COCO_TRAIN_ANN', 'OV_COCO_VAL_ANN']

OV_COCO_TRAIN_ANN = 'zero-shot/instances_train2017_seen_2_65_cat.json'
OV_COCO_VAL_ANN = 'zero-shot/instances_val2017_all_2.json'


def _colour(name: str) -> np.ndarray:
    rng = np.random.default_rng(COCO_CATEGORY_IDS[name])
    return rng.integers(30, 226, size=3).astype(np.uint8)


def _write_split(data_root: str, img_dir: str, ann_file: str, names: Sequence[str],
                 num_images: int, size: int, first_id: int, rng: np.random.Generator) -> Dict:
    os.makedirs(osp.join(data_root, img_dir), exist_ok=True)
    images: List[dict] = []
    anns: List[dict] = []
    for k in range(num_images):
        img_id = first_id + k
        h, w = size, size + 16 * (k % 2)  # one square and one landscape size
        img = np.full((h, w, 3), 110, np.uint8)
        for j in range(2):
            name = names[(2 * k + j) % len(names)]
            bw, bh = int(rng.integers(w // 4, w // 2)), int(rng.integers(h // 4, h // 2))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            img[y0:y0 + bh, x0:x0 + bw] = _colour(name)
            anns.append(dict(id=len(anns) + 1 + first_id * 10, image_id=img_id,
                             category_id=COCO_CATEGORY_IDS[name], bbox=[x0, y0, bw, bh],
                             area=float(bw * bh), iscrowd=0, segmentation=[]))
        fname = f'{img_id:012d}.jpg'
        Image.fromarray(img).save(osp.join(data_root, img_dir, fname), quality=95)
        images.append(dict(id=img_id, file_name=fname, height=h, width=w))
    cats = [dict(id=COCO_CATEGORY_IDS[n], name=n, supercategory='') for n in OV_COCO_CLASSES]
    out = dict(images=images, annotations=anns, categories=cats)
    path = osp.join(data_root, ann_file)
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(out, f)
    return out


def write_ov_coco_fixture(data_root: str, num_train: int = 4, num_val: int = 2, size: int = 64,
                          seed: int = 0, val_classes: Optional[Sequence[str]] = None) -> str:
    """Write the fixture and return ``data_root``.

    Args:
        data_root (str): folder to write into (created).
        num_train (int): training images (base-class annotations only). Defaults to 4.
        num_val (int): validation images. Defaults to 2.
        size (int): image height; widths alternate ``size`` and ``size + 16``. Defaults to 64.
        seed (int): RNG seed of the box positions. Defaults to 0.
        val_classes (sequence[str], optional): classes drawn in validation images; default: a base
            and a novel class alternately (``person``, ``cat``, ``car``, ``dog``, ...).
    """
    if num_train < 1 or num_val < 1:
        raise ValueError('need at least one training and one validation image')
    rng = np.random.default_rng(seed)
    _write_split(data_root, 'train2017', OV_COCO_TRAIN_ANN, OV_COCO_BASE_CLASSES, num_train, size,
                 1, rng)
    if val_classes is None:
        val_classes = [c for pair in zip(OV_COCO_BASE_CLASSES, OV_COCO_NOVEL_CLASSES) for c in pair]
    unknown = [c for c in val_classes if c not in OV_COCO_CLASSES]
    if unknown:
        raise ValueError(f'not OV-COCO classes: {unknown}')
    _write_split(data_root, 'val2017', OV_COCO_VAL_ANN, val_classes, num_val, size, 100001, rng)
    return data_root
