"""Unlabeled image sets for DeCLIP distillation (docs/method.md §3: COCO train2017 images, no labels).

The image list comes from a folder scan or from a COCO annotation file, whose ``images`` array is
read incrementally (the annotations themselves are never loaded into memory: instances_train2017.json
is ~450 MB).
"""
from __future__ import annotations

import json
import os
import os.path as osp
import re
from typing import Iterator, List, Optional, Sequence

from mmengine.dataset import BaseDataset

from ..registry import DATASETS

__all__ = ['UnlabeledImageDataset', 'iter_coco_image_files']

_IMG_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def iter_coco_image_files(path: str, chunk_size: int = 1 << 20) -> Iterator[str]:
    """Yield ``file_name`` of every entry of the top-level ``"images"`` array of a COCO json,
    decoding one object at a time."""
    dec = json.JSONDecoder()
    key = re.compile(r'"images"\s*:\s*\[')
    with open(path, encoding='utf-8') as f:
        buf = ''
        while True:  # find the '"images": [' that opens an array
            m = key.search(buf)
            if m:
                buf = buf[m.end():]
                break
            more = f.read(chunk_size)
            if not more:
                raise ValueError(f'{path}: no "images" array found (is this a COCO annotation file?)')
            buf = buf[-64:] + more
        while True:
            buf = buf.lstrip(' \t\r\n,')
            if buf.startswith(']'):
                return
            try:
                obj, end = dec.raw_decode(buf)
            except json.JSONDecodeError:
                more = f.read(chunk_size)
                if not more:
                    raise ValueError(f'{path}: truncated "images" array') from None
                buf += more
                continue
            yield obj['file_name']
            buf = buf[end:]


@DATASETS.register_module()
class UnlabeledImageDataset(BaseDataset):
    """Images without labels, for self-distillation.

    Args:
        data_root (str): root folder. Defaults to ``'data/coco'``.
        img_dir (str): image folder below ``data_root``. Defaults to ``'train2017'``.
        ann_file (str, optional): COCO annotation json whose ``images`` list defines the set (relative
            to ``data_root``); otherwise the folder is scanned (sorted, non-recursive).
        max_images (int, optional): keep only the first N images (debugging / quick runs).
        pipeline (list): transforms.
    """

    def __init__(self,
                 data_root: str = 'data/coco',
                 img_dir: str = 'train2017',
                 ann_file: Optional[str] = None,
                 max_images: Optional[int] = None,
                 suffixes: Sequence[str] = _IMG_EXTS,
                 pipeline: Sequence = (),
                 **kwargs) -> None:
        self.img_dir = img_dir
        self.max_images = max_images
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.epoch = 0  # set by DeCLIPEpochHook; seeds the per-image grid layouts
        super().__init__(ann_file=ann_file or '', data_root=data_root, pipeline=list(pipeline),
                         **kwargs)

    def load_data_list(self) -> List[dict]:
        img_root = osp.join(self.data_root, self.img_dir)
        if not osp.isdir(img_root):
            raise FileNotFoundError(f'image folder not found: {img_root!r} (see docs/datasets.md)')
        if self.ann_file:
            if not osp.isfile(self.ann_file):
                raise FileNotFoundError(f'annotation file not found: {self.ann_file!r}')
            names = list(iter_coco_image_files(self.ann_file))
        else:
            names = sorted(e.name for e in os.scandir(img_root)
                           if e.is_file() and e.name.lower().endswith(self.suffixes))
        if self.max_images is not None:
            names = names[:self.max_images]
        if not names:
            raise ValueError(f'no images found in {img_root!r}')
        return [dict(img_path=osp.join(img_root, n)) for n in names]

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        info['epoch'] = self.epoch
        return info
